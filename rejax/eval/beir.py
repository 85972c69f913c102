"""Retrieval datasets in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv."""

from __future__ import annotations

import dataclasses
import pathlib

from rejax.eval.rows import read_rows


@dataclasses.dataclass
class RetrievalDataset:
  """A corpus, queries, relevance judgments, and per-query ids to leave out of the ranking (BRIGHT)."""

  name: str
  corpus: dict[str, str]  # doc id -> text (title on its own first line when there is one)
  queries: dict[str, str]  # query id -> text
  qrels: dict[str, dict[str, int]]  # query id -> {doc id: grade}
  excluded: dict[str, set[str]] = dataclasses.field(default_factory=dict)
  instruction: str | None = None


def check_judged_docs(qrels: dict[str, dict[str, int]], corpus: dict[str, str], *, name: str,
                      qrels_file: pathlib.Path) -> None:
  """Raises ValueError naming the dataset and qrels file when judgments point at documents the corpus lacks."""
  unknown = sorted({d for judged in qrels.values() for d in judged} - corpus.keys())
  if unknown:
    raise ValueError(f"{name}: {len(unknown)} judged doc ids of {qrels_file} are not in the corpus, "
                     f"e.g. {unknown[:3]}")


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


def missing_beir_files(directory: str | pathlib.Path, split: str = "test") -> list[str]:
  """Returns the files of the BEIR layout (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) that `directory` lacks."""
  root = pathlib.Path(directory)
  return [name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (root / name).is_file()]


def load_beir(directory: str | pathlib.Path, split: str = "test") -> RetrievalDataset:
  """A BEIR-layout dataset; only queries that have judgments in `split` are kept."""
  root = pathlib.Path(directory)
  missing = missing_beir_files(root, split)
  if missing:
    raise FileNotFoundError(f"{root / missing[0]}: missing; a BEIR dataset has corpus.jsonl, queries.jsonl, "
                            f"qrels/{split}.tsv")
  corpus = {}
  for doc in read_rows(root / "corpus.jsonl", ("_id", "text")):
    title = doc.get("title") or ""
    corpus[str(doc["_id"])] = f"{title}\n{doc['text']}" if title else doc["text"]
  qrels = read_qrels(root / "qrels" / f"{split}.tsv")
  queries = {str(q["_id"]): q["text"] for q in read_rows(root / "queries.jsonl", ("_id", "text"))
             if str(q["_id"]) in qrels}
  check_judged_docs(qrels, corpus, name=root.name, qrels_file=root / "qrels" / f"{split}.tsv")
  return RetrievalDataset(root.name, corpus, queries, qrels)
