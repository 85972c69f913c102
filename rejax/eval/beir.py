"""Retrieval datasets in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv."""

from __future__ import annotations

import dataclasses
import json
import pathlib


@dataclasses.dataclass
class RetrievalDataset:
  """A corpus, queries, relevance judgments, and per-query ids to leave out of the ranking (BRIGHT)."""

  name: str
  corpus: dict[str, str]  # doc id -> text (title on its own first line when there is one)
  queries: dict[str, str]  # query id -> text
  qrels: dict[str, dict[str, int]]  # query id -> {doc id: grade}
  excluded: dict[str, set[str]] = dataclasses.field(default_factory=dict)
  instruction: str | None = None


def read_jsonl(path: pathlib.Path, required: tuple[str, ...]):
  """The objects of a JSONL file; a bad line raises ValueError naming file:line and the problem."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
      missing = [k for k in required if k not in record]
      if missing:
        raise ValueError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
      yield record


def read_qrels(path: pathlib.Path) -> dict[str, dict[str, int]]:
  """`query-id corpus-id score` rows after a header line (tab or space separated)."""
  qrels: dict[str, dict[str, int]] = {}
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      fields = line.split()
      if lineno == 1 and fields and not fields[-1].lstrip("-").isdigit():
        continue  # the header
      if not fields:
        continue
      if len(fields) != 3 or not fields[2].lstrip("-").isdigit():
        raise ValueError(f"{path}:{lineno}: expected 'query-id corpus-id score', got {line.strip()!r}")
      qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
  return qrels


def load_beir(directory: str | pathlib.Path, split: str = "test") -> RetrievalDataset:
  """A BEIR-layout dataset; only queries that have judgments in `split` are kept."""
  root = pathlib.Path(directory)
  for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
    if not (root / needed).is_file():
      raise FileNotFoundError(f"{root / needed}: missing; a BEIR dataset has corpus.jsonl, queries.jsonl, "
                              f"qrels/{split}.tsv")
  corpus = {}
  for doc in read_jsonl(root / "corpus.jsonl", ("_id", "text")):
    title = doc.get("title") or ""
    corpus[str(doc["_id"])] = f"{title}\n{doc['text']}" if title else doc["text"]
  qrels = read_qrels(root / "qrels" / f"{split}.tsv")
  queries = {str(q["_id"]): q["text"] for q in read_jsonl(root / "queries.jsonl", ("_id", "text"))
             if str(q["_id"]) in qrels}
  unknown = sorted({d for judged in qrels.values() for d in judged} - corpus.keys())
  if unknown:
    raise ValueError(f"{root / 'qrels' / f'{split}.tsv'}: {len(unknown)} judged doc ids not in the corpus, "
                     f"e.g. {unknown[:3]}")
  return RetrievalDataset(root.name, corpus, queries, qrels)
