"""InfoNCE and RI-InfoNCE (ReasonEmbed's Redapter) over the global batch; METHOD.md section 2 is the spec.

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
  q = q_bd.astype(jnp.float32)
  p = p_nd.astype(jnp.float32)
  return jnp.einsum("bd,nd->bn", q, p, precision=jax.lax.Precision.HIGHEST) / temperature


def _check_shapes(q_bd, p_nd, group_size: int) -> None:
  if q_bd.ndim != 2 or p_nd.ndim != 2 or p_nd.shape[0] != q_bd.shape[0] * group_size:
    raise ValueError(f"expected q [B, D] and p [B*group_size, D]; got q {q_bd.shape}, p {p_nd.shape}, "
                     f"group_size {group_size}")


def _positive_index(batch: int, group_size: int) -> jax.Array:
  return jnp.arange(batch) * group_size


def infonce_from_scores(scores_bn: jax.Array, group_size: int) -> jax.Array:
  """Per-query loss [B]: -log softmax over all passages, taken at the query's own positive.

  Written as log(1 + sum_{j != pos} exp(s_j - s_pos)) rather than logsumexp(s) - s_pos: an easy query's loss
  is tiny, and subtracting two scores of ~1/tau would leave only a few correct digits of it in float32.
  """
  positive_idx = _positive_index(scores_bn.shape[0], group_size)
  positive = jnp.take_along_axis(scores_bn, positive_idx[:, None], axis=1)
  is_positive = jnp.arange(scores_bn.shape[1])[None, :] == positive_idx[:, None]
  margins = jnp.where(is_positive, -jnp.inf, scores_bn - positive)  # s_j - s_pos over the negatives
  top = jnp.maximum(jnp.max(margins, axis=1, keepdims=True), 0.0)
  rest = jnp.sum(jnp.exp(margins - top), axis=1)
  top = top[:, 0]
  # top == 0 (the positive scores highest): log1p keeps the digits of a small loss.
  return jnp.where(top > 0, top + jnp.log(jnp.exp(-top) + rest), jnp.log1p(rest))


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
  uniform = jnp.full_like(clipped, 1.0 / clipped.shape[0])
  weights = jax.lax.stop_gradient(jnp.where(use_ri, clipped / jnp.sum(clipped), uniform))
  loss = jnp.sum(weights * per_query)
  aux = {"weights": weights, "per_query": per_query, "per_query_reason": per_query_reason, "ri": ri,
         "clamped_fraction": jnp.mean(ri > clamp_max), **retrieval_stats(scores, group_size, temperature)}
  return loss, aux


def retrieval_stats(scores_bn: jax.Array, group_size: int, temperature: float) -> dict[str, jax.Array]:
  """In-batch accuracy, mean positive cosine and mean hardest-negative cosine (no gradient)."""
  scores_bn = jax.lax.stop_gradient(scores_bn)
  batch = scores_bn.shape[0]
  positive_idx = _positive_index(batch, group_size)
  is_positive = jnp.arange(scores_bn.shape[1])[None, :] == positive_idx[:, None]
  positive = jnp.take_along_axis(scores_bn, positive_idx[:, None], axis=1)[:, 0]
  hardest_negative = jnp.max(jnp.where(is_positive, -jnp.inf, scores_bn), axis=1)
  return {
      "accuracy": jnp.mean(jnp.argmax(scores_bn, axis=1) == positive_idx),
      "pos_sim": jnp.mean(positive) * temperature,
      "hardest_neg_sim": jnp.mean(hardest_negative) * temperature,
  }
