"""Writes the files of a sample collection, or compares them with a directory: the shared tail of make_*_fixture.py."""

from __future__ import annotations

import json
import pathlib
import sys


def jsonl(rows: list[dict]) -> bytes:
  """One `json.dumps(row, ensure_ascii=False)` a line, UTF-8, "\\n" line ends."""
  return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def write_or_check(files: dict[str, bytes], output: pathlib.Path, check: pathlib.Path | None) -> None:
  """Writes {relative path: bytes} under `output`; with `check`, writes nothing and exits with status 1
  naming every file under `check` that is missing or differs from those bytes."""
  if check is None:
    for name, data in files.items():
      (output / name).parent.mkdir(parents=True, exist_ok=True)
      (output / name).write_bytes(data)
    return
  differ = [name for name, data in files.items() if not (check / name).is_file() or (check / name).read_bytes() != data]
  if differ:
    sys.exit(f"{check}: not what this script writes: {', '.join(differ)}")
  print(f"{check}: {', '.join(files)} are byte for byte what this script writes")
