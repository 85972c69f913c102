"""What every loss is: a frozen dataclass of its settings (`loss.*` keys of a run's config) that scores the
global batch's embeddings and says which scalars it reports, whether a step needs the reasoning queries and whether
it needs the teacher's scores."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ContrastiveLoss:
  """The settings every loss has. Subclasses add theirs as fields (each a `loss.NAME` key) and implement
  `__call__`; a subclass that needs the reasoning queries sets `uses_reasoning` and overrides `reasoning_pass`."""

  kind: ClassVar[str]  # the `loss.kind` that selects it (its key in rejax.losses.LOSSES)
  uses_reasoning: ClassVar[bool] = False  # whether any step encodes the reasoning queries q'
  uses_teacher: ClassVar[bool] = False  # whether it reads the batch's teacher scores (the pipeline then loads them)

  temperature: float = 0.02
  group_size: int | None = None  # None: passage rows / query rows of each batch (domains differ)
  # A temperature warm-up: tau moves from initial_temperature to temperature over the first steps, evenly in
  # log(tau) (0 steps = off, the paper's). See `temperature_at`.
  temperature_warmup_steps: int = 0
  initial_temperature: float = 1.0

  def __post_init__(self):
    if not self.temperature > 0:
      raise ValueError(f"loss.temperature={self.temperature}: must be > 0")
    if not (isinstance(self.temperature_warmup_steps, int) and self.temperature_warmup_steps >= 0):
      raise ValueError(f"loss.temperature_warmup_steps={self.temperature_warmup_steps}: must be an integer >= 0")
    if not self.initial_temperature > 0:
      raise ValueError(f"loss.initial_temperature={self.initial_temperature}: must be > 0")

  def temperature_at(self, step) -> float | jax.Array:
    """tau of the update numbered `step` (an int, or the traced step count): `temperature`, or during the first
    `temperature_warmup_steps` updates exp((1 - f) log(initial_temperature) + f log(temperature)), f = step / warmup.

    For a backbone that is no embedder yet: its scores carry noise and no relevance, and at a small tau that noise
    alone costs more than scoring every passage the same (ln of the batch's passages), a reward for collapsing every
    embedding onto one point; at a large tau the noise costs almost nothing. configs/smollm2.py measures what it
    does to SmolLM2's first steps (relevance is learnt ~6 steps sooner; the collapse itself remains).
    """
    if not self.temperature_warmup_steps:
      return self.temperature
    f = jnp.minimum(jnp.asarray(step, jnp.float32) / self.temperature_warmup_steps, 1.0)
    return jnp.exp((1.0 - f) * math.log(self.initial_temperature) + f * math.log(self.temperature))

  def reasoning_pass(self, step) -> bool | jax.Array:
    """Whether the step numbered `step` (an int, or the traced step count) encodes the reasoning queries."""
    return False

  def describe(self) -> str:
    """`kind (setting value, ...)`: the loss and its settings, for people (the model card)."""
    unused = () if self.temperature_warmup_steps else ("temperature_warmup_steps", "initial_temperature")
    settings = ", ".join(f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self)
                         if getattr(self, f.name) is not None and f.name not in unused)
    return f"{self.kind} ({settings})"

  def group_size_of(self, q: jax.Array, p: jax.Array) -> int:
    """G of the batch: `group_size`, or passages per query; raises ValueError when the rows do not divide."""
    group_size = self.group_size or p.shape[0] // q.shape[0]
    if p.shape[0] != q.shape[0] * group_size:
      raise ValueError(f"{p.shape[0]} passages for {q.shape[0]} queries: not {group_size} per query")
    return group_size

  def __call__(self, q: jax.Array, p: jax.Array, q_reason: jax.Array | None, step: jax.Array,
               teacher: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(the scalar loss, the scalars the run logs) of unit-norm q [B, D] against p [B*G, D]; `q_reason` [B, D]
    when `reasoning_pass(step)` may be true, else None; `step` the traced count of updates before this one;
    `teacher` [B, G] float32, a teacher's scores of each query's group in the passages' order (no gradient), when
    the batch has them (the run distils), else None."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class WrappedLoss:
  """A loss that wraps another (`inner`, any loss of the registry or another wrapper): it takes the inner loss's
  temperature, its reasoning schedule and its need of teacher scores unless it says otherwise."""

  inner: ContrastiveLoss | WrappedLoss

  @property
  def temperature(self) -> float:
    return self.inner.temperature

  def temperature_at(self, step) -> float | jax.Array:
    return self.inner.temperature_at(step)

  @property
  def uses_reasoning(self) -> bool:
    return self.inner.uses_reasoning

  @property
  def uses_teacher(self) -> bool:
    return self.inner.uses_teacher

  def reasoning_pass(self, step) -> bool | jax.Array:
    return self.inner.reasoning_pass(step)

  def group_size_of(self, q: jax.Array, p: jax.Array) -> int:
    return self.inner.group_size_of(q, p)
