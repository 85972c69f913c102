"""InfoNCE and RI-InfoNCE (ReasonEmbed's Redapter) over the global batch, as docs/method.md#ri-infonce describes.

Layout: q, q_reason [B, D]; p [B*G, D] with query i's positive at row i*G and its G-1 hard negatives after it.
Every query is scored against all B*G passages, so in-batch and (under jit on global arrays) cross-device
passages are negatives too. Scores are float32 whatever the inputs' dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RI_EPS = 1e-6


def similarity_scores(q_bd: jax.Array, p_nd: jax.Array, temperature: float) -> jax.Array:
  """cos(q, p) / temperature as float32 [B, B*G] (inputs are unit-norm)."""
  # Cast before the matmul: bf16 scores / 0.02 would move the loss by whole units. HIGHEST stops CPU/TPU from
  # running the float32 matmul as bf16 passes.
  q = q_bd.astype(jnp.float32)
  p = p_nd.astype(jnp.float32)
  return jnp.einsum("bd,nd->bn", q, p, precision=jax.lax.Precision.HIGHEST) / temperature


def _check_shapes(q_bd: jax.Array, p_nd: jax.Array, group_size: int) -> None:
  if (q_bd.ndim != 2 or p_nd.ndim != 2 or q_bd.shape[1] != p_nd.shape[1]
      or p_nd.shape[0] != q_bd.shape[0] * group_size):
    raise ValueError(f"expected q [B, D] and p [B*group_size, D]; got q {q_bd.shape}, p {p_nd.shape}, "
                     f"group_size {group_size}")


def _is_positive(batch: int, group_size: int) -> jax.Array:
  """[B, B*G] mask, true at each query's own positive (column i*G)."""
  return jnp.arange(batch * group_size)[None, :] == (jnp.arange(batch) * group_size)[:, None]


def infonce_from_scores(scores_bn: jax.Array, group_size: int) -> jax.Array:
  """Per-query loss [B]: -log softmax over all passages, taken at the query's own positive."""
  is_positive = _is_positive(scores_bn.shape[0], group_size)
  positive = jnp.sum(jnp.where(is_positive, scores_bn, 0.0), axis=1, keepdims=True)
  # L = log(1 + sum_neg exp(s_neg - s_pos)) = softplus(logsumexp_neg(s_neg - s_pos)). Same value as
  # logsumexp(s) - s_pos, but softplus keeps the digits of a tiny loss (an easy query, or the q' pass RI divides
  # by) that the difference of two float32 scores of size ~1/tau would cancel away.
  negatives = jax.nn.logsumexp(scores_bn - positive, axis=1, where=~is_positive)
  return jax.nn.softplus(negatives)


def infonce(q: jax.Array, p: jax.Array, *, group_size: int, temperature: float) -> jax.Array:
  """Per-query InfoNCE losses [B] of q against every passage of p."""
  _check_shapes(q, p, group_size)
  return infonce_from_scores(similarity_scores(q, p, temperature), group_size)


def ri_infonce(q: jax.Array, p: jax.Array, q_reason: jax.Array, *, group_size: int, temperature: float,
               clamp_max: float = 5.0, use_ri: bool | jax.Array = True) -> tuple[jax.Array, dict]:
  """(loss, aux): the RI-weighted sum of per-query InfoNCE losses, and what the trainer logs.

  RI_i = L_i(q) / (L_i(q') + 1e-6), clipped to [0, clamp_max] and normalised over the batch; the weights and
  the q' pass carry no gradient. `use_ri` may be traced (e.g. `step >= ri_start_step`): when false the
  weights are uniform, i.e. the plain mean, with no recompilation.
  """
  _check_shapes(q, p, group_size)
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


def retrieval_stats(scores_bn: jax.Array, group_size: int, temperature: float) -> dict[str, jax.Array]:
  """In-batch accuracy, mean positive cosine and mean hardest-negative cosine (no gradient)."""
  cos = jax.lax.stop_gradient(scores_bn) * temperature
  batch = cos.shape[0]
  is_positive = _is_positive(batch, group_size)
  positive = jnp.sum(jnp.where(is_positive, cos, 0.0), axis=1)
  hardest_negative = jnp.max(jnp.where(is_positive, -jnp.inf, cos), axis=1)
  return {
      "accuracy": jnp.mean(jnp.argmax(cos, axis=1) == jnp.arange(batch) * group_size),
      "pos_sim": jnp.mean(positive),
      "hardest_neg_sim": jnp.mean(hardest_negative),
  }
