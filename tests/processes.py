"""Killing a training subprocess at a chosen point, for the kill -9 resume tests."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Callable


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300, poll: float = 0.02) -> None:
  """Sends SIGKILL to `proc` as soon as `ready()` holds; fails if the process ends first or nothing happens in
  `timeout` seconds (its stderr's tail in the message)."""
  deadline = time.monotonic() + timeout
  while not ready():
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read()[-3000:]}"
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(poll)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def run_processes(commands: list[list[str]], *, env: dict, cwd, timeout: float = 600) -> None:
  """Runs the commands at once (e.g. the processes of one multi-process run) and fails with the stderr tail of
  any that does not exit 0."""
  procs = [subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for command in commands]
  errors = [p.communicate(timeout=timeout)[1] for p in procs]
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-4000:]
