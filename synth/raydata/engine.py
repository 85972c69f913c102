"""The ray engine's unit runner: each stage's `process` runs on the driver, its requests on Ray.

A stage's `process(batch)` asks `ctx.chat` for answers one call at a time. Under this engine the first pass over
every pending unit stops at its first call (`Replay` raises `NeedAnswers`, recording the requests); all those
requests go to Ray as one dataset per backend (synth.raydata.processors), and as each unit's answers stream
back, its `process` runs again from the start with them, so the stage code and its results are those of the
local engine. A unit that asks again (annotate's score completion) waits for the next round. A unit is
written (atomically, by the driver, once) only when `process` returns: a failed or killed Ray task is retried by
Ray, a failed backend stops the stage with nothing of an unfinished unit recorded, and a killed driver leaves
only complete units, which a re-run skips.
"""

from __future__ import annotations

from typing import Callable, Sequence

from synth.backends.base import Sampling
from synth.raydata.processors import Ask, stream_answers
from synth.units import UnitRunner


class NeedAnswers(BaseException):
  """Control flow, not an error (so no `except Exception` takes it): the unit asked a call not yet answered."""

  def __init__(self, ask: Ask):
    super().__init__(ask.backend)
    self.ask = ask


class Replay:
  """Context.chat under the ray engine for one unit: the answers known so far, call by call, then NeedAnswers."""

  def __init__(self, known: list[list[str | None]]):
    self.known, self.calls = known, 0

  def chat(self, name: str, requests, sampling: Sampling) -> list[str | None]:
    if self.calls == len(self.known):
      raise NeedAnswers(Ask(name, list(requests), sampling))
    self.calls += 1
    return self.known[self.calls - 1]


class RayUnitRunner(UnitRunner):
  """A UnitRunner whose units' requests run on Ray, `ctx.config.ray` saying how many replicas and how big batches."""

  def __init__(self, ctx, directory, **kwargs):
    super().__init__(directory, **kwargs)
    self.ctx = ctx

  def work(self, batches: dict[int, Sequence[dict]], process: Callable[[Sequence[dict]], list[dict]],
           done: Callable[[int, Sequence[dict], list[dict]], object]) -> None:
    known: dict[int, list] = {unit: [] for unit in batches}
    asks: dict[int, Ask] = {}

    def attempt(unit: int) -> None:
      self.ctx.replay = Replay(known[unit])
      try:
        rows = process(batches[unit])
      except NeedAnswers as need:
        asks[unit] = need.ask
        return
      finally:
        self.ctx.replay = None
      done(unit, batches[unit], rows)

    for unit in batches:
      attempt(unit)
    block = self.ctx.config.ray
    backends = {name: b.to_dict() for name, b in self.ctx.config.backends.items()}
    while asks:
      this_round = dict(asks)
      asks.clear()
      for unit, answers in stream_answers(backends, this_round, dict(block.replicas), block.batch_size):
        known[unit].append(answers)
        attempt(unit)


def start_ray(address: str) -> None:
  """Connects to the Ray cluster at `address` ("" starts a local instance), once per process, quietly."""
  import logging

  import ray
  from ray.data import DataContext

  if not ray.is_initialized():
    ray.init(address=address or None, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
  context = DataContext.get_current()
  context.enable_progress_bars = False
  context.print_on_execution_start = False
  context.raise_original_map_exception = True  # our BackendError, not Ray's wrapper, reaches the stage
  # Ray Data's own account of a failure goes to the session's log files; the terminal gets synth's one line.
  logging.getLogger("ray.data").setLevel(logging.CRITICAL)
