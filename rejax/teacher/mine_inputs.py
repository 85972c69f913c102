"""What `rejax data mine` mines for: the corpus, and each query with its positives among the corpus's documents,
from released-format records or a BEIR directory (queries.jsonl + qrels/{split}.tsv). Read and checked whole before
any model is loaded: a problem is one error naming file:line."""

from __future__ import annotations

import dataclasses
import pathlib

from rejax.data.records import RecordError, domain_of
from rejax.data.text import format_document
from rejax.errors import InputError
from rejax.eval.beir import QUERY_FIELDS, missing_beir_files, qrels_lines
from rejax.rows import CORPUS_FIELDS, read_rows
from rejax.teacher.record_files import read_records, record_files


@dataclasses.dataclass
class Corpus:
  """The documents negatives are mined from: ids and texts in file order, the rows holding each text."""

  path: pathlib.Path
  ids: list[str]
  texts: list[str]  # as the records hold them: `title\ntext` with titles, else `text`
  bodies: dict[str, str]  # the `text` field of each titled document (to say when --no-titles is meant)
  rows_of_text: dict[str, list[int]]
  row_of_id: dict[str, int]


def read_corpus(path: pathlib.Path, *, titles: bool = True) -> Corpus:
  """The BEIR corpus.jsonl at `path` ({"_id", "text", "title"?}); a document is `title\\ntext` (rejax eval's form)
  with titles, its `text` alone without."""
  rows = read_rows(path, CORPUS_FIELDS, unique="_id", allow_empty=False)
  ids = [str(r["_id"]) for r in rows]
  texts = [format_document(r["text"], r.get("title") if titles else None) for r in rows]
  rows_of_text: dict[str, list[int]] = {}
  for i, text in enumerate(texts):
    rows_of_text.setdefault(text, []).append(i)
  bodies = {r["text"]: str(r["_id"]) for r in rows if titles and r.get("title")}
  return Corpus(pathlib.Path(path), ids, texts, bodies, rows_of_text, {d: i for i, d in enumerate(ids)})


@dataclasses.dataclass
class MiningQuery:
  """One query to mine for: the record it becomes (its `neg` to be replaced), its positives' corpus rows."""

  where: str  # file:line of the record, or the qrels file and query id
  record: dict
  positive_rows: list[int]  # one corpus row per positive of the record, in its order
  excluded_rows: set[int]  # never a negative: every document holding a positive's text or the query's


def _excluded(corpus: Corpus, texts: list[str]) -> set[int]:
  return {row for text in texts for row in corpus.rows_of_text.get(text, ())}


def from_records(input_path: pathlib.Path, corpus: Corpus) -> dict[str, list[MiningQuery]]:
  """{output file name: its queries} of the record files at `input_path` (a file or a directory); every positive
  must be a document of the corpus."""
  out = {}
  for path in record_files(input_path):
    queries = []
    for where, record in read_records(path, negatives_required=False):
      rows = []
      for n, text in enumerate(record["pos"], start=1):
        if text not in corpus.rows_of_text:
          hint = ""
          if text in corpus.bodies:
            hint = (f" (it is the `text` of document {corpus.bodies[text]!r} without its title: pass --no-titles to "
                    "mine documents as their `text` alone)")
          raise RecordError(f"{where}: positive {n} of {len(record['pos'])} is not a document of {corpus.path}{hint}")
        rows.append(corpus.rows_of_text[text][0])
      queries.append(MiningQuery(where, record, rows, _excluded(corpus, [*record["pos"], record["query"]])))
    out[path.name] = queries
  return out


def from_beir(directory: pathlib.Path, corpus: Corpus, *, split: str, instruction: str,
              domain: str | None = None) -> dict[str, list[MiningQuery]]:
  """{`{domain}-formatted.jsonl`: its queries} of a BEIR directory's queries and judgments: each query with a
  positive judgment (grade > 0) becomes a record {prompt: instruction, query, pos, qid}; a judged document
  missing from the corpus, or a judged query missing from queries.jsonl, fails naming qrels file:line."""
  directory = pathlib.Path(directory)
  missing = [m for m in missing_beir_files(directory, split) if m != "corpus.jsonl"]
  if missing:
    raise FileNotFoundError(f"--input {directory}: no {missing[0]}; a BEIR directory has queries.jsonl and "
                            f"qrels/{split}.tsv (--split)")
  domain = domain or directory.name
  domain_of(f"{domain}-formatted.jsonl")  # a domain name of lowercase letters, digits and `_`, or one line why not
  queries_file, qrels_file = directory / "queries.jsonl", directory / "qrels" / f"{split}.tsv"
  queries = {str(q["_id"]): q["text"] for q in read_rows(queries_file, QUERY_FIELDS, unique="_id", allow_empty=False)}
  positives: dict[str, list[tuple[str, int]]] = {}
  for lineno, qid, docid, grade in qrels_lines(qrels_file):
    where = f"{qrels_file}:{lineno}"
    if qid not in queries:
      raise InputError(f"{where}: query {qid!r} is not in {queries_file}")
    if docid not in corpus.row_of_id:
      raise InputError(f"{where}: document {docid!r} is not in {corpus.path}")
    if grade > 0:
      positives.setdefault(qid, []).append((docid, lineno))
  mined = []
  for qid, judged in positives.items():
    rows = [corpus.row_of_id[d] for d, _ in judged]
    pos = [corpus.texts[r] for r in rows]
    record = {"prompt": instruction, "query": queries[qid], "pos": pos, "qid": qid}
    mined.append(MiningQuery(f"{qrels_file}:{judged[0][1]}", record, rows, _excluded(corpus, [*pos, queries[qid]])))
  if not mined:
    raise InputError(f"{qrels_file}: no positive judgment (grade > 0); nothing to mine for")
  return {f"{domain}-formatted.jsonl": mined}


def is_beir_dir(path: pathlib.Path) -> bool:
  """Whether `path` is a directory of BEIR queries (queries.jsonl and a qrels/ directory) rather than records."""
  return path.is_dir() and (path / "queries.jsonl").is_file() and (path / "qrels").is_dir()
