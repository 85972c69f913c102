"""Rows of a dataset file as the Hugging Face hub serves them (parquet, JSONL or gzipped JSONL), checked against a
schema: the one input-validation layer of `rejax encode`, `rejax eval` and `rejax data`.

    read_rows(path, {"_id": ID, "text": str, "title": optional(str)}, unique="_id", allow_empty=False)

A schema maps each field to what it must hold: a type, a tuple of types, or a `Field` (`optional(...)`,
`list_of(...)`); a plain sequence of names only requires the fields. Every problem raises InputError naming
`file:line` and the field or id: a value of the wrong type (bools are not integers, NaN and 1e999 are not ids),
a lone surrogate, a duplicate id, invalid JSON or UTF-8, an empty file, a directory, a damaged `.gz`.

Callers with checks of their own read through the same layers: `jsonl_rows` (line number, object) of a JSONL file,
`text_lines` the lines of any text file, `parse_json_line` one line.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import pathlib
import re
import zlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

from rejax.errors import InputError

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")

_JSON_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
                    dict: "an object", type(None): "null"}
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True)
class Field:
  """What one field holds: a value of one of `types` (any value when empty), or a list of such values when
  `is_list`; an `optional` field may be absent or null."""

  types: tuple[type, ...] = ()
  optional: bool = False
  is_list: bool = False


ID = Field((str, int))  # a row id: a JSON string or integer (compared as a string, as the loaders key by str)


def optional(*types: type) -> Field:
  """A field that may be absent or null, else one of `types`."""
  return Field(tuple(types), optional=True)


def list_of(*types: type, optional: bool = False) -> Field:
  """A field holding a list whose items are each one of `types`."""
  return Field(tuple(types), optional=optional, is_list=True)


# A BEIR corpus row (`corpus.jsonl`): what `rejax eval` and `rejax data pairs` read.
CORPUS_FIELDS = {"_id": ID, "text": str, "title": optional(str)}

Schema = Mapping[str, Any] | Sequence[str]


def as_fields(schema: Schema) -> dict[str, Field]:
  """The schema as {name: Field}: types and tuples of types become required Fields, bare names any value."""
  if not isinstance(schema, Mapping):
    return {name: Field() for name in schema}
  fields = {}
  for name, spec in schema.items():
    if isinstance(spec, Field):
      fields[name] = spec
    else:
      fields[name] = Field(tuple(spec) if isinstance(spec, tuple) else (spec,))
  return fields


def read_rows(path: str | pathlib.Path, schema: Schema = (), *, unique: str | tuple[str, ...] | None = None,
              allow_empty: bool = True) -> list[dict]:
  """The rows of `path` as dicts, each checked against `schema`; `unique` names an id field (or fields, together)
  that must not repeat, and allow_empty=False refuses a file without rows. Problems raise InputError naming
  file:line."""
  path = pathlib.Path(path)
  return list(_checked_rows(path, as_fields(schema), unique, {}, allow_empty))


def read_split(root: pathlib.Path, config: str, split: str, schema: Schema = (), *,
               unique: str | tuple[str, ...] | None = None, allow_empty: bool = True) -> list[dict]:
  """The rows of one split of one config (all its shards, in order, `unique` across them); see
  `find_split_files` and `read_rows`."""
  fields, seen = as_fields(schema), {}
  rows = [row for path in find_split_files(root, config, split)
          for row in _checked_rows(path, fields, unique, seen, allow_empty=True)]
  if not rows and not allow_empty:
    raise InputError(f"{root / config}: no rows for {split!r}")
  return rows


def _checked_rows(path: pathlib.Path, fields: dict[str, Field], unique: str | tuple[str, ...] | None,
                  seen: dict, allow_empty: bool) -> Iterator[dict]:
  """The rows of one file, checked; `seen` maps the ids met so far (this file and earlier ones) to file:line."""
  keys = (unique,) if isinstance(unique, str) else tuple(unique or ())
  fields = {**{k: ID for k in keys}, **fields}  # an id field is required even when the schema does not say so
  count = 0
  for lineno, row in _rows(path):
    where = f"{path}:{lineno}"
    check_row(row, fields, where)
    if keys:
      key = tuple(str(row[k]) for k in keys)
      if key in seen:
        shown = repr(key[0]) if len(key) == 1 else repr(key)
        raise InputError(f"{where}: duplicate {', '.join(keys)} {shown} (first at {seen[key]})")
      seen[key] = where
    count += 1
    yield row
  if not count and not allow_empty:
    raise InputError(f"{path}: empty file (no rows)")


def check_row(row: dict, fields: dict[str, Field], where: str) -> None:
  """Raises InputError naming `where` and the field unless `row` holds every field as `fields` says."""
  missing = [name for name, field in fields.items() if name not in row and not field.optional]
  if missing:
    raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
  for name, field in fields.items():
    value = row.get(name)
    if value is None and field.optional:
      continue
    problem = _value_problem(value, field)
    if problem:
      raise InputError(f"{where}: field `{name}` {problem}")


def _value_problem(value: Any, field: Field) -> str | None:
  """Why `value` does not fit `field`, or None."""
  if field.is_list:
    if not isinstance(value, list):
      return f"must be a list, got {_describe(value)}"
    for i, item in enumerate(value):
      problem = _value_problem(item, Field(field.types))
      if problem:
        return f"item {i} {problem}"
    return None
  if field.types and not _is_instance(value, field.types):
    wanted = " or ".join(_kind_of_type(t) for t in field.types)
    return f"must be {wanted}, got {_describe(value)}"
  if isinstance(value, str):
    bad = _SURROGATE.search(value)
    if bad:  # a JSON escape such as \ud800 decodes to a string no tokenizer or UTF-8 writer accepts
      return f"holds a lone surrogate {bad.group()!r} at character {bad.start()} (not valid Unicode)"
  return None


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
  if isinstance(value, bool):  # JSON true/false are not ids or counts, though Python's bool is an int
    return bool in types
  return isinstance(value, types)


def _kind_of_type(t: type) -> str:
  """How messages name a type ("a string", "an integer", ...)."""
  return _JSON_TYPE_NAMES.get(t, t.__name__)


def _kind(value: Any) -> str:
  """The JSON kind of a value, as messages name it ("a string", "null", ...)."""
  return _kind_of_type(type(value))


def _describe(value: Any) -> str:
  """The kind and a short repr of a value, for a message."""
  text = repr(value)
  return f"{_kind(value)} {text[:40] + '...' if len(text) > 40 else text}" if value is not None else "null"


def check_file(path: pathlib.Path) -> pathlib.Path:
  """`path`, checked to be an existing regular file (FileNotFoundError, or InputError for a directory)."""
  if path.is_dir():
    raise InputError(f"{path}: is a directory, not a file")
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such file")
  return path


def check_output_file(path: pathlib.Path | None, flag: str) -> None:
  """Raises InputError naming `flag` when the output file `path` cannot be written because a directory is in the
  way: checked before any work, so a long run does not fail at its last step."""
  if path is not None and pathlib.Path(path).is_dir():
    raise InputError(f"{flag} {path}: is a directory; expected a file path")


def text_lines(path: str | pathlib.Path) -> Iterator[tuple[int, str]]:
  """(line number, line) of a UTF-8 text file, plain or gzipped (`.gz`), blank lines skipped and a leading BOM
  dropped. Invalid UTF-8 raises InputError naming file:line; a damaged or non-gzip `.gz` one naming the file."""
  path = check_file(pathlib.Path(path))
  opener = gzip.open if path.name.endswith(".gz") else open
  lineno = 0
  try:
    with opener(path, "rb") as f:
      for lineno, raw in enumerate(f, start=1):
        line = _decode(raw, path, lineno)
        if line.strip():
          yield lineno, line
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    after = f" after line {lineno}" if lineno else ""
    raise InputError(f"{path}: not a complete gzip file ({e or type(e).__name__}){after}") from None


def _decode(raw: bytes, path: pathlib.Path, lineno: int) -> str:
  try:
    return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
  except UnicodeDecodeError as e:
    raise InputError(f"{path}:{lineno}: invalid UTF-8 (byte {raw[e.start]:#04x} at byte offset {e.start})") from None


def _rows(path: pathlib.Path) -> Iterable[tuple[int, dict]]:
  if path.name.endswith(".parquet"):
    return _parquet_rows(check_file(path))
  if path.name.endswith((".jsonl", ".jsonl.gz")):
    return jsonl_rows(path)
  raise InputError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")


def jsonl_rows(path: str | pathlib.Path) -> Iterator[tuple[int, dict]]:
  """(line number, object) of each line of a JSONL file, plain or gzipped (`.gz`), unchecked against any schema:
  the reader under `read_rows`, for callers with their own checks. Problems raise InputError as `text_lines` and
  `parse_json_line` say, naming file:line."""
  path = pathlib.Path(path)
  for lineno, line in text_lines(path):
    yield lineno, parse_json_line(line, f"{path}:{lineno}")


def parse_json_line(line: str, where: str) -> dict:
  """The JSON object of one JSONL line; invalid JSON (an integer of over 4300 digits and nesting deeper than the
  stack included) or another kind of value raises InputError naming `where` (`file:line`)."""
  try:
    row = json.loads(line)
  except json.JSONDecodeError as e:
    raise InputError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
  except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; nesting deeper than the stack
    raise InputError(f"{where}: invalid JSON: {e}") from None
  if not isinstance(row, dict):
    raise InputError(f"{where}: expected a JSON object, got {_kind(row)}")
  return row


def _parquet_rows(path: pathlib.Path) -> Iterator[tuple[int, dict]]:
  """(row number from 1, row) pairs; parquet list columns come back as Python lists."""
  import pyarrow.parquet as pq

  try:
    table = pq.read_table(path)
  except Exception as e:  # pyarrow raises its own error types for a damaged file
    raise InputError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
  yield from enumerate(table.to_pylist(), start=1)


def find_split_files(root: pathlib.Path, config: str, split: str) -> list[pathlib.Path]:
  """The files of one split of one config: `{config}/{split}-*.parquet` shards (as the hub serves them),
  else `{config}/{split}.parquet`, `.jsonl` or `.jsonl.gz`. Raises FileNotFoundError naming what was tried."""
  folder = root / config
  shards = sorted(folder.glob(f"{split}-*-of-*.parquet"))
  if shards:
    return shards
  for suffix in SUFFIXES:
    if (folder / f"{split}{suffix}").is_file():
      return [folder / f"{split}{suffix}"]
  raise FileNotFoundError(f"{folder}: no file for {split!r}; expected {split}-00000-of-00001.parquet "
                          f"(the hub's layout) or {split}.parquet / {split}.jsonl / {split}.jsonl.gz")
