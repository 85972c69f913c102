"""Matryoshka embeddings (Kusupati et al., 2022; sentence-transformers' MatryoshkaLoss): a loss summed over
prefixes of the embedding, each prefix truncated and renormalised, so that the first `dim` numbers of a vector are
an embedding by themselves (`rejax encode --dim`, `SentenceTransformer(..., truncate_dim=)`).

    L = sum_k w_k * L_inner(q[:, :d_k], p[:, :d_k], q'[:, :d_k], teacher)     every prefix renormalised to unit length

With distillation (rejax.losses.distill) the inner loss is the distilled one: the teacher's scores are the target of
every prefix, as sentence-transformers' MatryoshkaLoss wraps a distillation loss.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rejax.losses.base import WrappedLoss


def truncated(x_nd: jax.Array, dim: int, eps: float = 1e-12) -> jax.Array:
  """The first `dim` numbers of each row, scaled to unit L2 norm (float32)."""
  x = x_nd[:, :dim].astype(jnp.float32)
  return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


@dataclasses.dataclass(frozen=True)
class Matryoshka(WrappedLoss):
  """`inner` (any loss of rejax.losses.LOSSES, distilled or not) at each prefix size of `dims`, weighted by
  `weights`. Reports `loss_dim_{d}` per size and the inner loss's scalars at the largest size."""

  dims: tuple[int, ...]
  weights: tuple[float, ...]

  def __post_init__(self):
    if not self.dims or any(not isinstance(d, int) or d < 1 for d in self.dims) or len(set(self.dims)) < len(self.dims):
      raise ValueError(f"loss.matryoshka_dims={self.dims}: expected distinct sizes >= 1, e.g. (576, 256, 64)")
    if len(self.weights) != len(self.dims) or not all(w > 0 for w in self.weights):
      raise ValueError(f"loss.matryoshka_weights={self.weights}: expected one weight > 0 per size of "
                       f"loss.matryoshka_dims={self.dims} (or () for 1.0 each)")

  def describe(self) -> str:
    weights = ", ".join(f"{w:g}" for w in self.weights)
    return f"{self.inner.describe()} at Matryoshka sizes {', '.join(map(str, self.dims))} (weights {weights})"

  def __call__(self, q, p, q_reason, step, teacher=None):
    if max(self.dims) > q.shape[-1]:
      raise ValueError(f"loss.matryoshka_dims={self.dims}: the model's embeddings have {q.shape[-1]} numbers")
    total, scalars = 0.0, {}
    for dim, weight in sorted(zip(self.dims, self.weights), reverse=True):
      reason = None if q_reason is None else truncated(q_reason, dim)
      value, inner_scalars = self.inner(truncated(q, dim), truncated(p, dim), reason, step, teacher)
      total = total + weight * value
      if not scalars:  # the largest size's statistics (accuracy, RI weights, ...)
        scalars.update(inner_scalars)
      scalars[f"loss_dim_{dim}"] = value
    return total, scalars
