"""Retrieval datasets in the BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv."""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Iterator

from rejax.data.text import format_document
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
                      qrels_file: pathlib.Path | str, corpus_file: pathlib.Path | str = "the corpus") -> None:
  """Raises InputError naming the dataset, where the judgments come from (`qrels_file`: a file, or a file and
  field) and the corpus when judgments point at documents the corpus lacks."""
  unknown = sorted({d for judged in qrels.values() for d in judged} - corpus.keys())
  if unknown:
    raise InputError(f"{name}: {len(unknown)} judged doc ids of {qrels_file} are not in {corpus_file}, "
                     f"e.g. {unknown[:3]}")


def check_judged_queries(qrels: dict[str, dict[str, int]], queries: dict[str, str], *, name: str,
                         qrels_file: pathlib.Path, queries_file: pathlib.Path) -> None:
  """Raises InputError naming the query ids and both files when judgments name queries the queries file lacks
  (such a query would silently score 0 in every mean)."""
  unknown = sorted(qrels.keys() - queries.keys())
  if unknown:
    raise InputError(f"{name}: {len(unknown)} query ids of {qrels_file} are not in {queries_file}, "
                     f"e.g. {unknown[:3]}")


def qrels_lines(path: str | pathlib.Path, *, trec: bool = False) -> Iterator[tuple[int, str, str, int]]:
  """(line number, query id, doc id, grade) of each `query-id corpus-id score` row of a qrels file (tab or space
  separated, plain or `.gz`) after an optional header line; trec=True also takes TREC's `query-id Q0 corpus-id
  score` rows. A malformed row or a grade out of range raises InputError naming file:line."""
  path = pathlib.Path(path)
  expected = "'query-id corpus-id score'" + (" or 'query-id Q0 corpus-id score'" if trec else "")
  for lineno, line in text_lines(path):
    fields = line.split()
    if lineno == 1 and not _INTEGER.fullmatch(fields[-1]):
      continue  # the header
    if len(fields) not in ((3, 4) if trec else (3,)) or not _INTEGER.fullmatch(fields[-1]):
      raise InputError(f"{path}:{lineno}: expected {expected}, got {line.strip()[:80]!r}")
    qid, docid, score = fields[0], fields[-2], fields[-1]
    digits = score.lstrip("-").lstrip("0")
    if len(digits) > len(str(MAX_GRADE)) or int(digits or 0) > MAX_GRADE:  # int() refuses over 4300 digits
      raise InputError(f"{path}:{lineno}: the score of query {qid!r}, doc {docid!r} is out of range "
                       f"({len(score)} digits; a grade is below 2**31 in magnitude)")
    yield lineno, qid, docid, int(score)


def read_qrels(path: pathlib.Path) -> dict[str, dict[str, int]]:
  """{query id: {doc id: grade}} of `query-id corpus-id score` rows after a header line (`qrels_lines`); a
  malformed or repeated judgment, a grade out of range, or a file without judgments raises InputError."""
  path = pathlib.Path(path)
  qrels: dict[str, dict[str, int]] = {}
  first_at: dict[tuple[str, str], int] = {}
  for lineno, qid, docid, grade in qrels_lines(path):
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
    corpus[str(doc["_id"])] = format_document(doc["text"], doc.get("title"))
  qrels_file = root / "qrels" / f"{split}.tsv"
  qrels = read_qrels(qrels_file)
  queries = {str(q["_id"]): q["text"]
             for q in read_rows(root / "queries.jsonl", QUERY_FIELDS, unique="_id", allow_empty=False)}
  check_judged_queries(qrels, queries, name=root.name, qrels_file=qrels_file, queries_file=root / "queries.jsonl")
  check_judged_docs(qrels, corpus, name=root.name, qrels_file=qrels_file)
  return RetrievalDataset(root.name, corpus, queries={q: t for q, t in queries.items() if q in qrels}, qrels=qrels)
