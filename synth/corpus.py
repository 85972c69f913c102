"""Reading a domain's corpus and the test-set gold ids that must never be sources."""

from __future__ import annotations

import pathlib

from rejax.data.text import format_document
from rejax.eval.beir import qrels_lines
from rejax.rows import jsonl_rows

ID_FIELDS = ("_id", "id", "doc_id")
TEXT_FIELDS = ("text", "content", "contents")


def read_corpus(path: str | pathlib.Path, limit: int = 0) -> dict[str, str]:
  """{doc id: text} of a JSONL corpus: BEIR (`_id`, `title`?, `text`) or BRIGHT documents (`id`, `content`);
  only the first `limit` documents when limit > 0."""
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"{path}: corpus file not found")
  corpus: dict[str, str] = {}
  for lineno, record in jsonl_rows(path):
    doc_id = next((record[k] for k in ID_FIELDS if k in record), None)
    text = next((record[k] for k in TEXT_FIELDS if k in record), None)
    if doc_id is None or not isinstance(text, str):
      raise ValueError(f"{path}:{lineno}: a corpus line needs an id ({'/'.join(ID_FIELDS)}) and a text "
                       f"({'/'.join(TEXT_FIELDS)})")
    corpus[str(doc_id)] = format_document(text, record.get("title") or None)
    if len(corpus) == limit:
      break
  return corpus


def read_gold_ids(path: str | pathlib.Path) -> set[str]:
  """Judged-relevant doc ids of a qrels file (BEIR `.tsv` or TREC `qid Q0 doc rel`) or of BRIGHT examples
  (`.jsonl[.gz]` rows with `gold_ids`)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: gold-id file not found")
  if path.name.endswith((".jsonl", ".jsonl.gz")):
    gold = set()
    for lineno, record in jsonl_rows(path):
      if not isinstance(record.get("gold_ids"), list):
        raise ValueError(f"{path}:{lineno}: expected a BRIGHT example with a `gold_ids` list")
      gold.update(map(str, record["gold_ids"]))
    return gold
  return {docid for _, _, docid, grade in qrels_lines(path, trec=True) if grade > 0}
