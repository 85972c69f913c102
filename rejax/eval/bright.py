"""BRIGHT (xlangai/BRIGHT): the 12 tasks, their query instructions, and a loader per task.

The hub dataset has one config per kind of row and one split per task:
  examples/{task}-00000-of-00001.parquet    id, query, reasoning, gold_ids, gold_ids_long, excluded_ids, gold_answer
  documents/{task}-00000-of-00001.parquet   id, content   (the short-document setting of the paper)
  long_documents/{task}-...parquet          id, content   (judged by gold_ids_long)
A local directory in that layout works, as does `{config}/{task}.jsonl[.gz]` (the anserini-tools copy of
the examples), or the hub id itself when online.
"""

from __future__ import annotations

import pathlib

from rejax.domains import INSTRUCTIONS
from rejax.errors import InputError
from rejax.eval import benchmark
from rejax.eval.beir import RetrievalDataset, check_judged_docs
from rejax.eval.hub_data import dataset_snapshot
from rejax.hf.hub import is_hub_id
from rejax.rows import ID, list_of, read_split

HUB_ID = "xlangai/BRIGHT"

# The paper's task order, and the query instruction of each task (rejax.domains, the one table of the 12).
TASKS = tuple(INSTRUCTIONS)

# BRIGHT writes ["N/A"] for "nothing excluded"; its own evaluation skips that id too.
NOT_AN_ID = "N/A"

EXAMPLE_FIELDS = {"id": ID, "query": str, "gold_ids": list_of(str, int), "gold_ids_long": list_of(str, int),
                  "excluded_ids": list_of(str, int)}
DOCUMENT_FIELDS = {"id": ID, "content": str}


def check_tasks(tasks: list[str] | None) -> list[str]:
  """BRIGHT's `tasks` (all when None) in the paper's order; an unknown name raises ValueError naming it."""
  return benchmark.check_tasks(tasks, TASKS, "BRIGHT")


def bright_root(source: str | pathlib.Path, tasks: list[str], long_documents: bool = False) -> pathlib.Path:
  """The local directory of `source`, fetching only the needed files from the hub when it is a hub id."""
  if not is_hub_id(source):
    root = pathlib.Path(source).expanduser()
    if not root.is_dir():
      raise FileNotFoundError(f"{root}: not a BRIGHT directory (examples/, documents/) nor a hub id")
    return root
  corpus = "long_documents" if long_documents else "documents"
  return dataset_snapshot(str(source), [f"{config}/{task}-*" for task in tasks for config in ("examples", corpus)])


def load_bright_examples(root: pathlib.Path, task: str) -> list[dict]:
  """The task's example rows, fields as in the files, checked (EXAMPLE_FIELDS; ids unique)."""
  return read_split(root, "examples", task, EXAMPLE_FIELDS, unique="id", allow_empty=False)


def load_bright_task(root: str | pathlib.Path, task: str, *, long_documents: bool = False,
                     instruction: str | None = None) -> RetrievalDataset:
  """One BRIGHT task: queries and gold ids from `examples`, the corpus from `documents` (or `long_documents`).

  Every gold id is relevant with grade 1; `excluded_ids` (less BRIGHT's "N/A") are each query's ids to drop
  from its ranking before the cut. `instruction` defaults to the task's (INSTRUCTIONS).
  """
  root = pathlib.Path(root)
  check_tasks([task])
  gold_field = "gold_ids_long" if long_documents else "gold_ids"
  queries, qrels, excluded = {}, {}, {}
  for row in load_bright_examples(root, task):
    qid = str(row["id"])
    queries[qid] = row["query"]
    qrels[qid] = {str(d): 1 for d in row[gold_field]}
    excluded[qid] = {str(d) for d in row["excluded_ids"]} - {NOT_AN_ID}
    clash = qrels[qid].keys() & excluded[qid]
    if clash:
      raise InputError(f"BRIGHT {task}: query {qid!r} has gold ids that are also excluded: {sorted(clash)[:3]}")
  config = "long_documents" if long_documents else "documents"
  corpus = {str(row["id"]): row["content"]
            for row in read_split(root, config, task, DOCUMENT_FIELDS, unique="id", allow_empty=False)}
  check_judged_docs(qrels, corpus, name=f"BRIGHT {task}", qrels_file=f"{root / 'examples'} ({gold_field})",
                    corpus_file=root / config)
  return RetrievalDataset(task, corpus, queries, qrels, {q: e for q, e in excluded.items() if e},
                          instruction if instruction is not None else INSTRUCTIONS[task])
