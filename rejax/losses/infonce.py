"""InfoNCE over the global batch (docs/method.md#infonce): -log softmax over all B*G passages at each query's
own positive, averaged over the queries."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rejax.losses.base import ContrastiveLoss
from rejax.losses.scores import check_shapes, is_positive, retrieval_stats, similarity_scores


def infonce_from_scores(scores_bn: jax.Array, group_size: int) -> jax.Array:
  """Per-query loss [B]: -log softmax over all passages, taken at the query's own positive."""
  positive_bn = is_positive(scores_bn.shape[0], group_size)
  positive = jnp.sum(jnp.where(positive_bn, scores_bn, 0.0), axis=1, keepdims=True)
  # L = log(1 + sum_neg exp(s_neg - s_pos)) = softplus(logsumexp_neg(s_neg - s_pos)). Same value as
  # logsumexp(s) - s_pos, but softplus keeps the digits of a tiny loss (an easy query, or the q' pass RI divides
  # by) that the difference of two float32 scores of size ~1/tau would cancel away.
  negatives = jax.nn.logsumexp(scores_bn - positive, axis=1, where=~positive_bn)
  return jax.nn.softplus(negatives)


def infonce(q: jax.Array, p: jax.Array, *, group_size: int, temperature: float) -> jax.Array:
  """Per-query InfoNCE losses [B] of q against every passage of p."""
  check_shapes(q, p, group_size)
  return infonce_from_scores(similarity_scores(q, p, temperature), group_size)


@dataclasses.dataclass(frozen=True)
class InfoNCE(ContrastiveLoss):
  """The plain mean of the per-query InfoNCE losses (the paper's ablation without RI weights)."""

  kind = "infonce"

  def __call__(self, q, p, q_reason, step, teacher=None):
    group_size = self.group_size_of(q, p)
    check_shapes(q, p, group_size)
    temperature = self.temperature_at(step)
    scores = similarity_scores(q, p, temperature)
    scalars = retrieval_stats(scores, group_size, temperature)
    if self.temperature_warmup_steps:
      scalars["temperature"] = temperature
    return jnp.mean(infonce_from_scores(scores, group_size)), scalars
