"""Killing or signalling a training subprocess at a chosen point, for the resume and preemption tests."""

from __future__ import annotations

import signal
import subprocess
import threading
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


class StderrLines:
  """A process's stderr read line by line in a thread as it runs (tqdm's carriage returns end lines too), so a test
  can act when a line appears and still read all of it once the process ends."""

  def __init__(self, proc: subprocess.Popen):
    self.proc, self.lines = proc, []
    self._thread = threading.Thread(target=self._read, daemon=True)
    self._thread.start()

  def _read(self) -> None:
    for line in self.proc.stderr:
      self.lines.append(line.rstrip("\n"))

  def wait_for(self, text: str, timeout: float = 300) -> str:
    """The first line containing `text`, once it has appeared; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while True:
      found = next((line for line in list(self.lines) if text in line), None)
      if found is not None:
        return found
      assert self.proc.poll() is None or self._thread.is_alive(), f"no line with {text!r}:\n{self.text()[-3000:]}"
      assert time.monotonic() < deadline, f"no line with {text!r} in {timeout}s:\n{self.text()[-3000:]}"
      time.sleep(0.02)

  def finish(self, timeout: float = 600) -> int:
    """Waits for the process and the rest of its stderr; returns its exit status."""
    self.proc.wait(timeout=timeout)
    self._thread.join(timeout=30)
    return self.proc.returncode

  def text(self) -> str:
    return "\n".join(self.lines)
