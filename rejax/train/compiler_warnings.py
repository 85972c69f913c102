"""The compiler's warnings that a compiled step spends memory and interconnect for nothing, caught as it compiles.

XLA's SPMD partitioner warns "[SPMD] Involuntary full rematerialization. The compiler cannot go from sharding A
to B efficiently for HLO operation ..." when a tensor must be gathered whole and re-split between two layouts.
It writes that from C++ to the process's standard error (file descriptor 2), not through Python's logging, once
per compile: `rejax train` and `rejax plan` catch it there and say it in one line per compiled shape, so a user
sees it on a CPU run or in a plan before a pod pays for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

RESHARDING = "Involuntary full rematerialization"
_TENSOR = re.compile(r"= (\w+\[[\d,]*\])")
_OP = re.compile(r'op_name="([^"]+)"')


@contextlib.contextmanager
def stderr_lines() -> Iterator[list[str]]:
  """The lines written to file descriptor 2 inside the block (C++ included), also passed on to it after."""
  lines: list[str] = []
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as caught:
    os.dup2(caught.fileno(), 2)
    try:
      yield lines
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      caught.seek(0)
      text = caught.read()
      if text:
        os.write(2, text)
      lines.extend(text.decode(errors="replace").splitlines())


def resharding(lines: list[str]) -> list[str]:
  """The compiler's "Involuntary full rematerialization" warnings among `lines`."""
  return [line for line in lines if RESHARDING in line]


def describe_resharding(warnings: list[str]) -> str | None:
  """One line for a compiled shape's involuntary reshardings (the first one's tensor and op), or None."""
  if not warnings:
    return None
  tensor, op = _TENSOR.search(warnings[0]), _OP.search(warnings[0])
  where = " ".join(filter(None, [tensor and tensor.group(1), op and f"at {op.group(1)}"]))
  return (f"the compiler gathers {len(warnings)} tensor(s) whole to re-split them ('{RESHARDING}'"
          f"{', first: ' + where if where else ''}): memory and interconnect spent for nothing on a pod")
