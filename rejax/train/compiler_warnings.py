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
import threading
from typing import Iterator

RESHARDING = "Involuntary full rematerialization"
_TENSOR = re.compile(r"= (\w+\[[\d,]*\])")
_OP = re.compile(r'op_name="([^"]+)"')


_ORIGINAL_STDERR: list[int] = []  # while stderr_lines() is active: the descriptor fd 2 had before it


def original_stderr() -> int:
  """The descriptor of the process's real standard error: a message that must not wait for a compile to end (the
  process is about to `os._exit`) goes straight there."""
  return _ORIGINAL_STDERR[-1] if _ORIGINAL_STDERR else 2


@contextlib.contextmanager
def stderr_lines() -> Iterator[list[str]]:
  """The lines written to file descriptor 2 inside the block (C++ included), each passed on to the real stderr as
  it comes (through a pipe and a thread), so nothing is held back or lost if the process dies meanwhile."""
  lines: list[str] = []
  sys.stderr.flush()
  saved = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)
  chunks: list[bytes] = []

  def pump():
    try:
      while data := os.read(read_end, 1 << 16):
        chunks.append(data)
        os.write(saved, data)
    except OSError:
      pass

  thread = threading.Thread(target=pump, name="rejax-stderr", daemon=True)
  thread.start()
  _ORIGINAL_STDERR.append(saved)
  try:
    yield lines
  finally:
    sys.stderr.flush()
    _ORIGINAL_STDERR.pop()
    os.dup2(saved, 2)  # the pipe's last writer gone: the thread reads to its end
    thread.join(timeout=10)
    if not thread.is_alive():  # (a child started inside the block may hold the pipe: then leave it be)
      os.close(read_end)
      os.close(saved)
    lines.extend(b"".join(chunks).decode(errors="replace").splitlines())


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
