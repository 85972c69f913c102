"""Builds sample_data/reason_embed/: a small training set in the released reason-embed-data format.

Real text, re-arranged: BRIGHT "examples" rows (castorini/anserini-tools, see PROVENANCE.md) give each
record its `query` (the StackExchange post), its `reasoning_query` (BRIGHT's `reasoning` field, a
written account of what the post needs) and its positives (the paragraphs of the post's accepted
answer, `gold_answer`); negatives are answer paragraphs of other posts in the same domain. List
lengths vary on purpose (1-4 positives, 2-40 negatives, some pools shorter than a group), and a few
records carry the optional `train_group_size`, `batch_size`, `pos_scores`, `neg_scores` fields.

  python scripts/make_train_fixture.py BRIGHT_EXAMPLES_DIR [--output sample_data/reason_embed]
  python scripts/make_train_fixture.py BRIGHT_EXAMPLES_DIR --check sample_data/reason_embed

BRIGHT_EXAMPLES_DIR holds BRIGHT's examples files as {task}.jsonl.gz (sample_data/README.md: where to get them).
Deterministic: the same inputs give byte-identical files. With --check nothing is written; the exit status is
1, naming the file, unless DIR holds exactly these bytes.
"""

from __future__ import annotations

import gzip
import json
import random

from fixture_files import jsonl, parse_args, write_or_check

DOMAINS = {  # domain -> (records, instruction: docs/method.md#query-instructions)
  "biology": (24, "Given a Biology post, retrieve relevant passages that help answer the post."),
  "earth_science": (20, "Given an Earth Science post, retrieve relevant passages that help answer the post."),
  "economics": (12, "Given an Economics post, retrieve relevant passages that help answer the post."),
}
MAX_CHARS = 700


def paragraphs(answer: str) -> list[str]:
  """The answer's non-trivial paragraphs, each cut to MAX_CHARS."""
  parts = [p.strip().replace("$\\begingroup$", "").replace("$\\endgroup$", "").strip() for p in answer.split("\n\n")]
  return [p[:MAX_CHARS] for p in parts if len(p) >= 80]


def build_domain(rows: list[dict], domain: str, count: int, instruction: str) -> list[dict]:
  rng = random.Random(f"reason-embed-fixture/{domain}")
  rows = [r for r in rows if len(paragraphs(r["gold_answer"])) >= 1][:count]
  answers = [paragraphs(r["gold_answer"]) for r in rows]
  records = []
  for i, row in enumerate(rows):
    pos = answers[i][: rng.randint(1, 4)]
    pool = [p for j, a in enumerate(answers) if j != i for p in a]
    neg = rng.sample(pool, min(len(pool), rng.choice([2, 5, 9, 15, 24, 40])))
    record = {"prompt": instruction, "query": row["query"][: 2 * MAX_CHARS],
              "reasoning_query": row["reasoning"][: 2 * MAX_CHARS], "pos": pos, "neg": neg}
    if i % 5 == 1:
      record.update(train_group_size=16, batch_size=8)
    if i % 7 == 3:
      record.update(pos_scores=[5.0] * len(pos), neg_scores=[float(rng.randint(1, 2)) for _ in neg])
    records.append(record)
  return records


def main() -> None:
  args = parse_args(__doc__.splitlines()[0], "source",
                    "directory of BRIGHT {task}.jsonl.gz examples files", "sample_data/reason_embed")
  files = {}
  for domain, (count, instruction) in DOMAINS.items():
    with gzip.open(args.source / f"{domain}.jsonl.gz", "rt", encoding="utf-8") as f:
      rows = [json.loads(line) for line in f]
    records = build_domain(rows, domain, count, instruction)
    files[f"{domain}-formatted.jsonl"] = jsonl(records)
    if args.check is None:
      print(f"{domain}: {len(records)} records")
  write_or_check(files, args.output, args.check)


if __name__ == "__main__":
  main()
