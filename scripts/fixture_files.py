"""Writes the files of a sample collection, or compares them with a directory: the shared tail of make_*_fixture.py."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def parse_args(description: str, source: str, source_help: str, output: str) -> argparse.Namespace:
  """The scripts' command line: SOURCE, --output DIR (default `output`), --check DIR."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument(source, type=pathlib.Path, help=source_help)
  parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path(output))
  parser.add_argument("--check", type=pathlib.Path, metavar="DIR",
                      help="write nothing; exit 1 unless DIR's files are byte for byte what would be written")
  return parser.parse_args()


def jsonl(rows: list[dict]) -> bytes:
  """One `json.dumps(row, ensure_ascii=False)` a line, UTF-8, "\\n" line ends."""
  return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def beir_files(corpus: list[dict], queries: list[dict], judgments: list[tuple[str, str, int]]) -> dict[str, bytes]:
  """The BEIR layout's files: corpus.jsonl, queries.jsonl and qrels/test.tsv (a header, then `query-id corpus-id
  grade` a line)."""
  tsv = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{grade}\n" for q, d, grade in judgments)
  return {"corpus.jsonl": jsonl(corpus), "queries.jsonl": jsonl(queries), "qrels/test.tsv": tsv.encode("utf-8")}


def write_or_check(files: dict[str, bytes], output: pathlib.Path, check: pathlib.Path | None) -> None:
  """Writes {relative path: bytes} under `output`; with `check`, writes nothing and exits with status 1
  naming every file under `check` that is missing or differs from those bytes."""
  if check is None:
    for name, data in files.items():
      (output / name).parent.mkdir(parents=True, exist_ok=True)
      (output / name).write_bytes(data)
    return
  differ = [name for name, data in files.items() if not (check / name).is_file() or (check / name).read_bytes() != data]
  if differ:
    sys.exit(f"{check}: not what this script writes: {', '.join(differ)}")
  print(f"{check}: {', '.join(files)} are byte for byte what this script writes")
