"""Sentence embeddings from hidden states, as the model's config says (`cfg.pooling`), L2-normalised: the last real
token's hidden state ("last_token") or the mean over the real tokens ("mean")."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def last_token_pool(hidden_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
  """Hidden state [B, D] of each row's last real token; right and left padding alike."""
  t = mask_bt.shape[-1]
  last = t - 1 - jnp.argmax(mask_bt[:, ::-1].astype(jnp.int32), axis=-1)
  return jnp.take_along_axis(hidden_btd, last[:, None, None], axis=1)[:, 0]


def segment_mean_pool(hidden_rtd: jax.Array, segments_rt: jax.Array, slots: int) -> jax.Array:
  """Mean [R, S, D] float32 over the tokens of each slot's segment in packed rows: slot s is segment s + 1
  (rejax.data.packing.lay_out); an empty slot gets zeros."""
  in_slot_rts = (segments_rt[:, :, None] == jnp.arange(1, slots + 1, dtype=segments_rt.dtype)).astype(jnp.float32)
  sums_rsd = jnp.einsum("rtd,rts->rsd", hidden_rtd.astype(jnp.float32), in_slot_rts)
  return sums_rsd / jnp.maximum(jnp.sum(in_slot_rts, axis=1), 1.0)[:, :, None]


def mean_pool(hidden_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
  """Mean [B, D] float32 of each row's real tokens' hidden states (sentence-transformers' mean_tokens): a padded
  row is a packed row of one segment (its real tokens, mask 1)."""
  return segment_mean_pool(hidden_btd, mask_bt, 1)[:, 0]


def l2_normalize(x_bd: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows scaled to unit L2 norm, in float32: x / max(|x|, eps), as torch.nn.functional.normalize.

  Written as sqrt(max(|x|^2, eps^2)), the same value, so that a zero row (an empty packed slot under mean pooling,
  which nothing reads) has a zero gradient: the derivative of |x| at 0 is 0/0, and its NaN would reach the weights
  through the zero cotangent of that row.
  """
  x = x_bd.astype(jnp.float32)
  return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def embed(model, input_ids_bt: jax.Array, mask_bt: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
  """Unit-norm float32 embeddings [B, D] of token batches: the encoder's whole forward."""
  hidden_btd = model(input_ids_bt, mask_bt, dropout_key)
  pool = mean_pool if model.cfg.pooling == "mean" else last_token_pool
  return l2_normalize(pool(hidden_btd, mask_bt))


def embed_packed(model, input_ids_rt: jax.Array, segments_rt: jax.Array, last_rs: jax.Array,
                 dropout_key: jax.Array | None = None) -> jax.Array:
  """Unit-norm float32 embeddings [R, S, D] of packed rows, one per slot: slot s of row r is the sequence of
  segment s + 1, whose last token is at `last_rs[r, s]` (empty slots point anywhere; nothing reads them)."""
  hidden_rtd = model(input_ids_rt, segments_rt, dropout_key, packed=True)
  if model.cfg.pooling == "mean":
    return l2_normalize(segment_mean_pool(hidden_rtd, segments_rt, last_rs.shape[1]))
  return l2_normalize(jnp.take_along_axis(hidden_rtd, last_rs[:, :, None], axis=1))
