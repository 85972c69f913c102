"""RI-InfoNCE, ReasonEmbed's Redapter (docs/method.md#ri-infonce): each query's InfoNCE loss weighted by how much
harder it is than its reasoning-augmented twin q'."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rejax.losses.base import ContrastiveLoss
from rejax.losses.infonce import infonce, infonce_from_scores
from rejax.losses.scores import check_shapes, retrieval_stats, similarity_scores

RI_EPS = 1e-6


def ri_infonce(q: jax.Array, p: jax.Array, q_reason: jax.Array, *, group_size: int, temperature: float,
               clamp_max: float = 5.0, use_ri: bool | jax.Array = True) -> tuple[jax.Array, dict]:
  """(loss, aux): the RI-weighted sum of per-query InfoNCE losses, and what the trainer logs.

  RI_i = L_i(q) / (L_i(q') + 1e-6), clipped to [0, clamp_max] and normalised over the batch; the weights and
  the q' pass carry no gradient. `use_ri` may be traced (e.g. `step >= ri_start_step`): when false the
  weights are uniform, i.e. the plain mean, with no recompilation.
  """
  check_shapes(q, p, group_size)
  if q_reason.shape != q.shape:
    raise ValueError(f"q_reason {q_reason.shape} must have the shape of q {q.shape}")
  scores = similarity_scores(q, p, temperature)
  per_query = infonce_from_scores(scores, group_size)
  per_query_reason = infonce(jax.lax.stop_gradient(q_reason), jax.lax.stop_gradient(p), group_size=group_size,
                             temperature=temperature)
  ri = jax.lax.stop_gradient(per_query) / (per_query_reason + RI_EPS)
  clipped = jnp.clip(ri, 0.0, clamp_max)
  total = jnp.sum(clipped)
  uniform = jnp.full_like(clipped, 1.0 / clipped.shape[0])
  # total == 0 only when every L_i(q) underflowed to 0: the loss is 0 either way, and uniform weights avoid 0/0.
  weights = jnp.where(use_ri & (total > 0), clipped / jnp.where(total > 0, total, 1.0), uniform)
  weights = jax.lax.stop_gradient(weights)
  loss = jnp.sum(weights * per_query)
  aux = {"weights": weights, "per_query": per_query, "per_query_reason": per_query_reason, "ri": ri,
         "clamped_fraction": jnp.mean(ri > clamp_max), **retrieval_stats(scores, group_size, temperature)}
  return loss, aux


@dataclasses.dataclass(frozen=True)
class RIInfoNCE(ContrastiveLoss):
  """RI-InfoNCE from step `ri_start_step` on (the plain mean before it, and no q' pass), RI clipped at
  `ri_clamp_max`. Reports the weights' spread (1.0 = the plain mean's weight) and the clamped fraction."""

  kind = "ri_infonce"
  uses_reasoning = True

  ri_start_step: int = 100
  ri_clamp_max: float = 5.0

  def __post_init__(self):
    super().__post_init__()
    if self.ri_start_step < 0:
      raise ValueError(f"loss.ri_start_step={self.ri_start_step}: must be >= 0")
    if not self.ri_clamp_max > 0:
      raise ValueError(f"loss.ri_clamp_max={self.ri_clamp_max}: must be > 0")

  def reasoning_pass(self, step):
    return step >= self.ri_start_step

  def __call__(self, q, p, q_reason, step, teacher=None):
    temperature = self.temperature_at(step)
    loss, aux = ri_infonce(q, p, q_reason, group_size=self.group_size_of(q, p), temperature=temperature,
                           clamp_max=self.ri_clamp_max, use_ri=self.reasoning_pass(step))
    w = aux["weights"] * aux["weights"].shape[0]  # 1.0 = the plain mean's weight
    scalars = {k: aux[k] for k in ("accuracy", "pos_sim", "hardest_neg_sim")}
    if self.temperature_warmup_steps:
      scalars["temperature"] = temperature
    scalars.update(ri_weight_mean=jnp.mean(w), ri_weight_min=jnp.min(w), ri_weight_max=jnp.max(w),
                   ri_clamped_fraction=aux["clamped_fraction"])
    return loss, scalars
