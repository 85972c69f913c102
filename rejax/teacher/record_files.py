"""Released-format record files in and out: `{domain}-formatted.jsonl[.gz]` read and checked line by line
(rejax.data.records), written under the same names into a new directory built aside (rejax.io.write_dir_atomic)."""

from __future__ import annotations

import gzip
import json
import pathlib
from typing import Iterator

from rejax.data.records import RecordError, domain_of, parse_record
from rejax.io import write_dir_atomic
from rejax.storage import as_path
from rejax.rows import text_lines

PATTERNS = ("*-formatted.jsonl", "*-formatted.jsonl.gz")


def record_files(path: pathlib.Path, flag: str = "--input") -> list[pathlib.Path]:
  """The record files of `path`: the file itself, or a directory's `*-formatted.jsonl[.gz]`, sorted."""
  path = pathlib.Path(path)
  if path.is_file():
    files = [path]
  elif path.is_dir():
    files = sorted(f for pattern in PATTERNS for f in path.glob(pattern) if f.is_file())
    if not files:
      raise FileNotFoundError(f"{flag} {path}: no `{{domain}}-formatted.jsonl[.gz]` record files in the directory")
  else:
    raise FileNotFoundError(f"{flag} {path}: no such file or directory")
  for f in files:
    domain_of(str(f))  # a name without a domain fails here, as `rejax data convert` would
  return files


def read_records(path: pathlib.Path, *, negatives_required: bool = True) -> Iterator[tuple[str, dict]]:
  """(`file:line`, record) of each line, checked as `rejax data convert` checks it; with negatives_required=False
  a record may lack `neg` (records of positives only, whose negatives are to be mined)."""
  count = 0
  for lineno, line in text_lines(path):
    where = f"{path}:{lineno}"
    record = parse_record(line, where, negatives_required=negatives_required)
    count += 1
    yield where, record
  if not count:
    raise RecordError(f"{path}: no records")


def open_text(path: pathlib.Path, mode: str = "wt"):
  """A text file for writing, gzipped when its name ends with .gz."""
  return gzip.open(path, mode, encoding="utf-8") if path.name.endswith(".gz") else open(path, mode, encoding="utf-8")


def write_records_dir(output: pathlib.Path, files: dict[str, list[dict]], summary: dict, summary_name: str,
                      what: str) -> None:
  """Writes each `files[name]` as JSONL `output/name` and `summary` as `output/summary_name`, the directory built
  aside and renamed into place (uploaded with the summary last on a bucket); an existing `output` is refused."""

  def build(staging: pathlib.Path) -> None:
    for name, records in files.items():
      with open_text(staging / name) as f:
        for record in records:
          f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (staging / summary_name).write_text(json.dumps(summary, indent=2) + "\n")

  write_dir_atomic(output, build, what=what, commit=summary_name)


def check_new_output(output: pathlib.Path, flag: str = "--output") -> None:
  """Raises FileExistsError before any work when the output directory already exists."""
  if as_path(output).exists():
    raise FileExistsError(f"{flag} {output}: already exists; remove it or choose another directory")


