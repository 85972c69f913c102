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
