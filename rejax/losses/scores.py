"""Scores of queries against passages, and the retrieval statistics every loss reports.

Layout (docs/method.md#training-data): q [B, D]; p [B*G, D] with query i's positive at row i*G and its G-1 hard
negatives after it. Every query is scored against all B*G passages, so in-batch and (under jit on global arrays)
cross-device passages are negatives too. Scores are float32 whatever the inputs' dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def similarity_scores(q_bd: jax.Array, p_nd: jax.Array, temperature: float) -> jax.Array:
  """cos(q, p) / temperature as float32 [B, B*G] (inputs are unit-norm)."""
  # Cast before the matmul: bf16 scores / 0.02 would move the loss by whole units. HIGHEST stops CPU/TPU from
  # running the float32 matmul as bf16 passes.
  q = q_bd.astype(jnp.float32)
  p = p_nd.astype(jnp.float32)
  return jnp.einsum("bd,nd->bn", q, p, precision=jax.lax.Precision.HIGHEST) / temperature


def check_shapes(q_bd: jax.Array, p_nd: jax.Array, group_size: int) -> None:
  if (q_bd.ndim != 2 or p_nd.ndim != 2 or q_bd.shape[1] != p_nd.shape[1]
      or p_nd.shape[0] != q_bd.shape[0] * group_size):
    raise ValueError(f"expected q [B, D] and p [B*group_size, D]; got q {q_bd.shape}, p {p_nd.shape}, "
                     f"group_size {group_size}")


def is_positive(batch: int, group_size: int) -> jax.Array:
  """[B, B*G] mask, true at each query's own positive (column i*G)."""
  return jnp.arange(batch * group_size)[None, :] == (jnp.arange(batch) * group_size)[:, None]


def retrieval_stats(scores_bn: jax.Array, group_size: int, temperature: float) -> dict[str, jax.Array]:
  """In-batch accuracy, mean positive cosine and mean hardest-negative cosine (no gradient)."""
  cos = jax.lax.stop_gradient(scores_bn) * temperature
  batch = cos.shape[0]
  positive_bn = is_positive(batch, group_size)
  positive = jnp.sum(jnp.where(positive_bn, cos, 0.0), axis=1)
  hardest_negative = jnp.max(jnp.where(positive_bn, -jnp.inf, cos), axis=1)
  return {
      "accuracy": jnp.mean(jnp.argmax(cos, axis=1) == jnp.arange(batch) * group_size),
      "pos_sim": jnp.mean(positive),
      "hardest_neg_sim": jnp.mean(hardest_negative),
  }
