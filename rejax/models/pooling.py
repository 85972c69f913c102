"""Sentence embeddings from hidden states: the last real token, L2-normalised."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def last_token_pool(hidden_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
  """Hidden state [B, D] of each row's last real token; right and left padding alike."""
  t = mask_bt.shape[-1]
  last = t - 1 - jnp.argmax(mask_bt[:, ::-1].astype(jnp.int32), axis=-1)
  return jnp.take_along_axis(hidden_btd, last[:, None, None], axis=1)[:, 0]


def l2_normalize(x_bd: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows scaled to unit L2 norm, in float32 (as torch.nn.functional.normalize)."""
  x = x_bd.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def embed(model, input_ids_bt: jax.Array, mask_bt: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
  """Unit-norm float32 embeddings [B, D] of token batches: the encoder's whole forward."""
  return l2_normalize(last_token_pool(model(input_ids_bt, mask_bt, dropout_key), mask_bt))


def embed_packed(model, input_ids_rt: jax.Array, segments_rt: jax.Array, last_rs: jax.Array,
                 dropout_key: jax.Array | None = None) -> jax.Array:
  """Unit-norm float32 embeddings [R, S, D] of packed rows: slot s of row r is the hidden state at position
  `last_rs[r, s]`, the last token of the sequence in that slot (empty slots point anywhere; nothing reads them)."""
  hidden_rtd = model(input_ids_rt, segments_rt, dropout_key, packed=True)
  return l2_normalize(jnp.take_along_axis(hidden_rtd, last_rs[:, :, None], axis=1))
