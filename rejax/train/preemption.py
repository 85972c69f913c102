"""A preemption notice ends the run at a step every process agrees on, with a complete checkpoint.

A TPU VM or spot node gets SIGTERM before it is taken away (maintenance, spot reclaim, Kubernetes), and SLURM sends
the signal asked for with `--signal=USR1@120` before the time limit. `catch_preemption` turns the run's signals
(`preemption.signals`, default SIGTERM and SIGUSR1) into a request, and the loop asks `agreed()` at the start of
every step: one all-gather of each process's signal (0 for none), so every process sees the same answer at the
same step even when only one of them was signalled. The step then runs, its checkpoint is saved and waited for,
every process meets the others once more, and `rejax train` exits with EXIT_PREEMPTED: run the same command to
resume, exactly where it stopped.

Why not JAX's own preemption sync point (which Orbax's `should_save` consults): it listens for SIGTERM only, and
only in a multi-process run. Installing these handlers replaces it (jax.distributed's notifier is a plain C signal
handler), so Orbax never saves on its own at a step the loop did not choose.

A second signal while the run is stopping only says so: nothing raises in the middle of the save. What no handler
can catch is the platform's SIGKILL at the end of its notice period: if the step and the save take longer than
the notice, the latest complete checkpoint is the one before (never a partial one: Orbax renames a step's directory
into place only when it is whole).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry"
UNCATCHABLE = ("SIGKILL", "SIGSTOP")


class Preempted(Exception):
  """The run stopped on a preemption signal with the checkpoint of `step` complete (it may have been saved earlier:
  a resumed run's first step, a `ckpt_every` step); the same command resumes from it."""

  def __init__(self, step: int, signals: dict[int, str]):
    self.step, self.signals = step, signals
    done = (f"saved checkpoint {step}; run the same command to resume from it" if step else
            "stopped before its first step; run the same command to start it")
    super().__init__(f"preempted ({describe(signals)}): {done}")


def describe(signals: dict[int, str]) -> str:
  """`SIGTERM to process 1, SIGUSR1 to process 3`: who was signalled."""
  return ", ".join(f"{name} to process {p}" for p, name in sorted(signals.items()))


def signal_problem(names: Sequence[str]) -> str | None:
  """Why `preemption.signals` cannot be used (an unknown or uncatchable name), naming it; else None."""
  for name in names:
    if name not in signal.Signals.__members__:
      return f"preemption.signals: {name!r} is not a signal name (e.g. SIGTERM, SIGUSR1)"
    if name in UNCATCHABLE:
      return f"preemption.signals: {name} cannot be caught"
  return None


class PreemptionRequest:
  """The signal this process got (0: none); `agreed()` is the run's collective answer."""

  def __init__(self):
    self.signum = 0
    self.stopping = False  # the processes agreed: the run is saving and stopping

  def handle(self, signum: int, frame=None) -> None:
    name = signal.Signals(signum).name
    if self.signum:
      _say(f"{name} again: already stopping; the checkpoint being saved is not interrupted (SIGKILL would leave "
           "the one before it as the latest)")
      return
    self.signum = signum
    _say(f"{name}: finishing the step in flight, then saving a checkpoint at a step every process agrees on and "
         f"exiting with status {EXIT_PREEMPTED} (run the same command to resume)")

  def agreed(self) -> dict[int, str]:
    """{process: signal name} of every process that has been signalled (empty: none); the same on every process,
    as it is one collective that every process calls at the same point of the same step."""
    signums = np.array([self.signum], np.int32)
    if jax.process_count() > 1:
      signums = np.asarray(multihost_utils.process_allgather(signums)).reshape(-1)
    signalled = {p: signal.Signals(int(s)).name for p, s in enumerate(signums) if s}
    self.stopping = self.stopping or bool(signalled)
    return signalled


@contextlib.contextmanager
def catch_preemption(names: Sequence[str]) -> Iterator[PreemptionRequest]:
  """Turns the signals `names` into a `PreemptionRequest` for the duration (the previous handlers come back after).
  Call it after jax.distributed.initialize, whose SIGTERM notifier it replaces. Off the main thread (where Python
  cannot install handlers) it catches nothing."""
  request = PreemptionRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous = {}
  try:
    for name in names:
      number = signal.Signals[name]
      previous[number] = signal.signal(number, request.handle)
    yield request
  finally:
    for number, handler in previous.items():
      signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _say(message: str) -> None:
  print(f"rejax train: process {jax.process_index()}: {message}", file=sys.stderr, flush=True)
