"""Reading a domain's corpus and the test-set gold ids that must never be sources."""

from __future__ import annotations

import gzip
import json
import pathlib
from typing import Iterator

from rejax.data.text import format_document

ID_FIELDS = ("_id", "id", "doc_id")
TEXT_FIELDS = ("text", "content", "contents")


def read_jsonl_any(path: str | pathlib.Path) -> Iterator[tuple[str, dict]]:
  """(`file:line`, object) of a .jsonl or .jsonl.gz file, blank lines skipped; bad JSON names file:line."""
  path = str(path)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        yield f"{path}:{lineno}", json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None


def read_corpus(path: str | pathlib.Path, limit: int = 0) -> dict[str, str]:
  """{doc id: text} of a JSONL corpus: BEIR (`_id`, `title`?, `text`) or BRIGHT documents (`id`, `content`);
  only the first `limit` documents when limit > 0."""
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"{path}: corpus file not found")
  corpus: dict[str, str] = {}
  for where, record in read_jsonl_any(path):
    doc_id = next((record[k] for k in ID_FIELDS if k in record), None)
    text = next((record[k] for k in TEXT_FIELDS if k in record), None)
    if doc_id is None or not isinstance(text, str):
      raise ValueError(f"{where}: a corpus line needs an id ({'/'.join(ID_FIELDS)}) and a text "
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
    for where, record in read_jsonl_any(path):
      if not isinstance(record.get("gold_ids"), list):
        raise ValueError(f"{where}: expected a BRIGHT example with a `gold_ids` list")
      gold.update(map(str, record["gold_ids"]))
    return gold
  gold = set()
  for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
    fields = line.split()
    if not fields or (lineno == 1 and not fields[-1].lstrip("-").isdigit()):
      continue  # blank, or the BEIR header
    if len(fields) not in (3, 4) or not fields[-1].lstrip("-").isdigit():
      raise ValueError(f"{path}:{lineno}: expected `qid doc score` or `qid Q0 doc score`, got {line.strip()!r}")
    if int(fields[-1]) > 0:
      gold.add(fields[-2])
  return gold
