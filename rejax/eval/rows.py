"""Rows of a dataset file as the Hugging Face hub serves them: parquet, JSONL or gzipped JSONL."""

from __future__ import annotations

import gzip
import json
import pathlib

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")


def read_rows(path: str | pathlib.Path, required: tuple[str, ...] = ()) -> list[dict]:
  """The rows of `path` as dicts; a bad or incomplete row raises ValueError naming file:row."""
  path = pathlib.Path(path)
  if path.name.endswith(".parquet"):
    rows = _parquet_rows(path)
  elif path.name.endswith((".jsonl", ".jsonl.gz")):
    rows = _jsonl_rows(path)
  else:
    raise ValueError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")
  out = []
  for lineno, row in rows:
    missing = [k for k in required if k not in row]
    if missing:
      raise ValueError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
    out.append(row)
  return out


def _jsonl_rows(path: pathlib.Path):
  opener = gzip.open if path.name.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
      yield lineno, row


def _parquet_rows(path: pathlib.Path):
  """(row number from 1, row) pairs; parquet list columns come back as Python lists."""
  import pyarrow.parquet as pq

  try:
    table = pq.read_table(path)
  except Exception as e:  # pyarrow raises its own error types for a damaged file
    raise ValueError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
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


def read_split(root: pathlib.Path, config: str, split: str, required: tuple[str, ...] = ()) -> list[dict]:
  """The rows of one split of one config (all its shards, in order); see `find_split_files`."""
  return [row for path in find_split_files(root, config, split) for row in read_rows(path, required)]
