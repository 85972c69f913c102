"""The shipped BRIGHT example files, read independently of rejax, and a tiny synthetic corpus for them."""

from __future__ import annotations

import gzip
import json
import pathlib
import random
import shutil

BRIGHT = pathlib.Path(__file__).parent / "fixtures" / "bright"
SHIPPED_TASKS = ("leetcode", "pony", "theoremqa_theorems")  # paper order


def read_examples(task: str) -> list[dict]:
  """The rows of the shipped examples file, with gzip and json only."""
  with gzip.open(BRIGHT / "examples" / f"{task}.jsonl.gz", "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def synthetic_documents(rows: list[dict], num_fillers: int = 60, seed: int = 0) -> list[dict]:
  """{"id", "content"} rows holding every gold and excluded id of `rows`, plus fillers.

  A gold doc holds the first half of a query that names it, an excluded doc the whole query: a lexical or
  a semantic retriever puts excluded docs first, so they must be removed for gold docs to rank.
  """
  rng = random.Random(seed)
  content: dict[str, str] = {}
  for row in rows:
    words = row["query"].split()
    for doc_id in row["gold_ids"]:
      content.setdefault(doc_id, " ".join(words[: max(1, len(words) // 2)]))
    for doc_id in row["excluded_ids"]:
      if doc_id != "N/A":
        content.setdefault(doc_id, row["query"])
  vocabulary = sorted({w for row in rows for w in row["query"].split()})
  for i in range(num_fillers):
    content[f"filler/{i}.txt"] = " ".join(rng.choices(vocabulary, k=40))
  return [{"id": doc_id, "content": text} for doc_id, text in content.items()]


def write_parquet(rows: list[dict], path: pathlib.Path) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), path)


def make_bright_dir(root: pathlib.Path, tasks=SHIPPED_TASKS) -> pathlib.Path:
  """A BRIGHT directory: the shipped examples (.jsonl.gz) and synthetic `documents/{task}-00000-of-00001.parquet`."""
  for task in tasks:
    (root / "examples").mkdir(parents=True, exist_ok=True)
    shutil.copy(BRIGHT / "examples" / f"{task}.jsonl.gz", root / "examples")
    write_parquet(synthetic_documents(read_examples(task)), root / "documents" / f"{task}-00000-of-00001.parquet")
  return root
