"""The optimizer of the recipe (docs/method.md#training-recipe) as optax: AdamW, 10% linear warmup then linear
decay to 0, clip 1.0.

Matches `torch.optim.AdamW` + `transformers.get_linear_schedule_with_warmup` + `clip_grad_norm_` step for
step (tests/test_optim.py), including HF's first step at lr 0 and its ceil(total * ratio) warmup.
"""

from __future__ import annotations

import math

import optax


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
  """Warmup length as HF Trainer computes it: ceil(total_steps * warmup_ratio)."""
  return math.ceil(total_steps * warmup_ratio)


def linear_warmup_decay(peak_lr: float, total_steps: int, warmup_ratio: float = 0.1) -> optax.Schedule:
  """lr(step): 0 -> peak over the warmup, then linearly down to 0 at total_steps (HF's linear schedule)."""
  warmup = warmup_steps(total_steps, warmup_ratio)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak_lr, max(warmup, 1)),
       optax.linear_schedule(peak_lr, 0.0, max(total_steps - warmup, 1))],
      boundaries=[warmup],
  )


def make_optimizer(lr: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   weight_decay: float = 0.0, clip_norm: float | None = 1.0,
                   grad_divisor: float = 1.0) -> optax.GradientTransformation:
  """AdamW at `lr` (a constant, or the run's schedule: `linear_warmup_decay`) after global-norm clipping.

  grad_divisor: the reference release runs W data-parallel ranks that each compute the same global loss,
  and DDP averages their gradients, so it steps on grad(global loss) / W. A single-program JAX step computes
  grad(global loss) itself. Set grad_divisor=W to reproduce the reference exactly; it only matters where
  clipping engages (AdamW is otherwise invariant to the gradient's scale, up to eps).
  """
  transforms = []
  if grad_divisor != 1.0:
    transforms.append(optax.scale(1.0 / grad_divisor))
  if clip_norm is not None:
    transforms.append(optax.clip_by_global_norm(clip_norm))
  transforms.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*transforms)
