"""Retrieval datasets in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv."""

from __future__ import annotations

import dataclasses
import pathlib
import re

from rejax.errors import InputError
from rejax.rows import CORPUS_FIELDS, ID, read_rows, text_lines

QUERY_FIELDS = {"_id": ID, "text": str}
MAX_GRADE = 2**31 - 1  # trec_eval's grades are C ints; a bigger one would overflow nDCG's float gains
_INTEGER = re.compile(r"-?[0-9]+")


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
  """Raises InputError naming the dataset and qrels file when judgments point at documents the corpus lacks."""
  unknown = sorted({d for judged in qrels.values() for d in judged} - corpus.keys())
  if unknown:
    raise InputError(f"{name}: {len(unknown)} judged doc ids of {qrels_file} are not in the corpus, "
                     f"e.g. {unknown[:3]}")


def check_judged_queries(qrels: dict[str, dict[str, int]], queries: dict[str, str], *, name: str,
                         qrels_file: pathlib.Path, queries_file: pathlib.Path) -> None:
  """Raises InputError naming the query ids and both files when judgments name queries the queries file lacks
  (such a query would silently score 0 in every mean)."""
  unknown = sorted(qrels.keys() - queries.keys())
  if unknown:
    raise InputError(f"{name}: {len(unknown)} query ids of {qrels_file} are not in {queries_file}, "
                     f"e.g. {unknown[:3]}")


def read_qrels(path: pathlib.Path) -> dict[str, dict[str, int]]:
  """{query id: {doc id: grade}} of `query-id corpus-id score` rows after a header line (tab or space separated);
  a malformed or repeated judgment, a grade out of range, or a file without judgments raises InputError."""
  path = pathlib.Path(path)
  qrels: dict[str, dict[str, int]] = {}
  first_at: dict[tuple[str, str], int] = {}
  for lineno, line in text_lines(path):
    fields = line.split()
    if lineno == 1 and not _INTEGER.fullmatch(fields[-1]):
      continue  # the header
    if len(fields) != 3 or not _INTEGER.fullmatch(fields[2]):
      raise InputError(f"{path}:{lineno}: expected 'query-id corpus-id score', got {line.strip()[:80]!r}")
    qid, docid, grade = fields[0], fields[1], int(fields[2])
    if abs(grade) > MAX_GRADE:
      raise InputError(f"{path}:{lineno}: the score of query {qid!r}, doc {docid!r} is out of range "
                       f"({len(fields[2])} digits; a grade is below 2**31 in magnitude)")
    if (qid, docid) in first_at:
      raise InputError(f"{path}:{lineno}: duplicate judgment of query {qid!r}, doc {docid!r} "
                       f"(first at line {first_at[qid, docid]})")
    first_at[qid, docid] = lineno
    qrels.setdefault(qid, {})[docid] = grade
  if not qrels:
    raise InputError(f"{path}: no judgments (expected 'query-id corpus-id score' rows after the header)")
  return qrels


def missing_beir_files(directory: str | pathlib.Path, split: str = "test") -> list[str]:
  """Returns the files of the BEIR layout (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) that `directory` lacks."""
  root = pathlib.Path(directory)
  return [name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (root / name).exists()]


def load_beir(directory: str | pathlib.Path, split: str = "test") -> RetrievalDataset:
  """A BEIR-layout dataset; only queries that have judgments in `split` are kept."""
  root = pathlib.Path(directory)
  if root.exists() and not root.is_dir():
    raise InputError(f"{root}: not a directory; a BEIR dataset is a directory with corpus.jsonl, "
                     f"queries.jsonl, qrels/{split}.tsv")
  missing = missing_beir_files(root, split)
  if missing:
    raise FileNotFoundError(f"{root / missing[0]}: missing; a BEIR dataset has corpus.jsonl, queries.jsonl, "
                            f"qrels/{split}.tsv")
  corpus = {}
  for doc in read_rows(root / "corpus.jsonl", CORPUS_FIELDS, unique="_id", allow_empty=False):
    title = doc.get("title") or ""
    corpus[str(doc["_id"])] = f"{title}\n{doc['text']}" if title else doc["text"]
  qrels_file = root / "qrels" / f"{split}.tsv"
  qrels = read_qrels(qrels_file)
  queries = {str(q["_id"]): q["text"]
             for q in read_rows(root / "queries.jsonl", QUERY_FIELDS, unique="_id", allow_empty=False)}
  check_judged_queries(qrels, queries, name=root.name, qrels_file=qrels_file, queries_file=root / "queries.jsonl")
  check_judged_docs(qrels, corpus, name=root.name, qrels_file=qrels_file)
  return RetrievalDataset(root.name, corpus, queries={q: t for q, t in queries.items() if q in qrels}, qrels=qrels)
