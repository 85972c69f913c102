"""Writes a StackExchange answer-retrieval collection in the BEIR layout (tests/fixtures/stackexchange/) from
BRIGHT's examples files: each post is a query, each post's accepted answer a document, judged relevant to it.

COMMAND: python scripts/make_stackexchange_fixture.py BRIGHT_EXAMPLES_DIR [--output tests/fixtures/stackexchange]

A held-out collection of fields other than computing (biology, psychology, sustainable living) for checking
that a model trained on the CACM recipe generalises. Deterministic: the same inputs give byte-identical files.
Answers lose StackExchange's `$\\begingroup$` / `$\\endgroup$` markers and surrounding whitespace, nothing else.
"""

import argparse
import gzip
import json
import pathlib

DOMAINS = ("biology", "psychology", "sustainable_living")
MARKERS = ("$\\begingroup$", "$\\endgroup$")


def clean_answer(text: str) -> str:
  for marker in MARKERS:
    text = text.replace(marker, "")
  return text.strip()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("examples", type=pathlib.Path, help="directory of BRIGHT {task}.jsonl.gz examples files")
  parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("tests/fixtures/stackexchange"))
  args = parser.parse_args()
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
        qrels.append((qid, did))
  (args.output / "qrels").mkdir(parents=True, exist_ok=True)
  for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
    with open(args.output / name, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  with open(args.output / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    f.writelines(f"{q}\t{d}\t1\n" for q, d in qrels)
  print(f"wrote {len(queries)} queries and {len(corpus)} documents to {args.output}")


if __name__ == "__main__":
  main()
