"""The steps' metrics, fetched one step late so the host never waits on the device: step N's scalars are read
(and checked, timed, logged) once step N+1 is dispatched, or at once where the loop needs them (an evaluation,
a checkpoint, a stop)."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax

from rejax.train.goodput import StepWork
from rejax.train.logger import RunLogger


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the run stopped before saving anything after it."""


@dataclasses.dataclass
class Pending:
  """A dispatched step whose metrics are not fetched yet."""

  step: int
  metrics: dict
  work: StepWork
  input_wait_s: float
  profiled: bool = False  # traced by the profiler: its timing figures (slowed by the trace) are not logged
  since: float = 0.0  # when the step before it had finished (its metrics arrived, its evaluation was done)
  excluded: float = 0.0  # seconds within its interval that were not its own (the next shape's compile)
  dispatched: float = dataclasses.field(default_factory=time.perf_counter)
  resolved: float = 0.0

  def resolve(self, logger: RunLogger, log_every: int, total: int, flops_per_s: float,
              evaluate: Callable[[], dict[str, float]] | None = None) -> dict[str, float]:
    """Fetches, checks and logs the step's scalars, with `evaluate()`'s figures (run after the step is timed)."""
    values = {k: float(v) for k, v in jax.device_get(self.metrics).items()}
    # The step's time is from the previous step's end (or this one's dispatch, if later) to its metrics: with the
    # host a step ahead, dispatch-to-metrics would also count the wait for the step before.
    seconds = time.perf_counter() - max(self.dispatched, self.since) - self.excluded
    if not math.isfinite(values["loss"]):
      raise NonFiniteLossError(
          f"loss is {values['loss']} at step {self.step}; stopped without saving it. The last good checkpoint "
          "is the latest under checkpoints/; lower optim.lr, check the data, or resume with the same command.")
    if self.profiled:
      values.update(profiled=1.0)
    else:
      values.update(self.work.rates(seconds, flops_per_s), step_s=seconds, input_wait_s=self.input_wait_s)
    self.resolved = time.perf_counter()
    if evaluate is not None:
      values.update(evaluate())
      self.resolved = time.perf_counter()
    if self.step % log_every == 0 or self.step == total or evaluate is not None:
      logger.log(self.step, values)
    logger.advance()
    return values


class LateMetrics:
  """At most one step in flight: `dispatched` resolves the step before (logging it) and holds the new one;
  `resolve_now` resolves the one held; `last` is the newest resolved step's figures."""

  def __init__(self, logger: RunLogger, log_every: int, total_steps: int, flops_per_s: float):
    self.logger, self.log_every, self.total_steps, self.flops_per_s = logger, log_every, total_steps, flops_per_s
    self.pending: Pending | None = None
    self.last: dict[str, float] = {}
    self.resolved_at = 0.0  # when the last resolved step had finished (0: none yet this run)

  def compiled(self, seconds: float) -> None:
    """A new step shape took `seconds` to compile while the held step ran: not that step's time."""
    if self.pending is not None:
      self.pending.excluded += seconds

  def dispatched(self, step: Pending) -> None:
    self.resolve_now()
    step.since = self.resolved_at
    self.pending = step

  def resolve_now(self, evaluate: Callable[[], dict[str, float]] | None = None) -> dict[str, float]:
    """The held step's figures (and `evaluate()`'s), logged; `last` when no step is held."""
    if self.pending is not None:
      self.last = self.pending.resolve(self.logger, self.log_every, self.total_steps, self.flops_per_s, evaluate)
      self.resolved_at, self.pending = self.pending.resolved, None
    return self.last
