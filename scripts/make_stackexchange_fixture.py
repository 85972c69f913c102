"""Writes a StackExchange answer-retrieval collection in the BEIR layout (sample_data/stackexchange/) from
BRIGHT's examples files: each post is a query, each post's accepted answer a document, judged relevant to it.

COMMAND: python scripts/make_stackexchange_fixture.py BRIGHT_EXAMPLES_DIR [--output sample_data/stackexchange]
         python scripts/make_stackexchange_fixture.py BRIGHT_EXAMPLES_DIR --check sample_data/stackexchange

BRIGHT_EXAMPLES_DIR holds BRIGHT's examples files as {task}.jsonl.gz (sample_data/README.md: where to get them).
With --check nothing is written; the exit status is 1, naming the file, unless DIR holds exactly these bytes.

A held-out collection of fields other than computing (biology, psychology, sustainable living) for checking
that a model trained on the CACM recipe generalises. Deterministic: the same inputs give byte-identical files.
Answers lose StackExchange's `$\\begingroup$` / `$\\endgroup$` markers and surrounding whitespace, nothing else.
"""

import gzip
import json

from fixture_files import beir_files, parse_args, write_or_check

DOMAINS = ("biology", "psychology", "sustainable_living")
MARKERS = ("$\\begingroup$", "$\\endgroup$")


def clean_answer(text: str) -> str:
  for marker in MARKERS:
    text = text.replace(marker, "")
  return text.strip()


def main() -> None:
  args = parse_args(__doc__.split("\n")[0], "examples",
                    "directory of BRIGHT {task}.jsonl.gz examples files", "sample_data/stackexchange")
  corpus, queries, qrels = [], [], []
  for domain in DOMAINS:
    with gzip.open(args.examples / f"{domain}.jsonl.gz", "rt", encoding="utf-8") as f:
      for line in f:
        row = json.loads(line)
        answer = clean_answer(row["gold_answer"])
        if not answer or answer == "N/A":
          continue
        qid, did = f"{domain}-{row['id']}", f"{domain}-{row['id']}-answer"
        queries.append({"_id": qid, "text": row["query"].strip()})
        corpus.append({"_id": did, "title": "", "text": answer})
        qrels.append((qid, did, 1))
  write_or_check(beir_files(corpus, queries, qrels), args.output, args.check)
  if args.check is None:
    print(f"wrote {len(queries)} queries and {len(corpus)} documents to {args.output}")


if __name__ == "__main__":
  main()
