"""The TPU splash-attention path (`attention_impl="splash"`) gives XLA's masked causal attention at every real
position of right-padded rows, forward and backward, on one device and under a (data, fsdp, tensor) mesh: the
same Pallas kernel, interpreted on CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rejax.models import config_from_hf_dict, init_decoder
from rejax.models.pooling import embed
from rejax.sharding import make_mesh, use_mesh

TINY = {"model_type": "qwen3", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
        "rope_theta": 1e6, "tie_word_embeddings": True}


def right_padded_batch(rows: int, length: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, length + 1, rows)
  lengths[0] = length
  mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(1, TINY["vocab_size"], (rows, length)), 0).astype(np.int32)
  return jnp.asarray(ids), jnp.asarray(mask)


def embeddings_and_grads(impl, ids, mask, mesh=None):
  cfg = config_from_hf_dict(TINY, attention_impl=impl)
  model = init_decoder(cfg, seed=3, mesh=mesh)
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(params):
    e = embed(nnx.merge(graphdef, params), ids, mask)
    return jnp.sum(e * jnp.arange(e.shape[-1], dtype=e.dtype)), e

  (_, e), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  hidden = jax.jit(lambda p: nnx.merge(graphdef, p)(ids, mask))(params)
  return np.asarray(e), jax.tree.map(np.asarray, grads), np.asarray(hidden) * np.asarray(mask)[..., None]


def assert_close_gradients(actual, desired):
  """fp32 gradients summed in another order: within 1e-5 of the tensor's largest entry."""
  np.testing.assert_allclose(actual, desired, rtol=1e-4, atol=1e-5 * float(np.abs(desired).max()))


@pytest.mark.parametrize("length", [16, pytest.param(128, marks=pytest.mark.slow)])
def test_splash_equals_xla_attention_on_right_padded_rows(length):
  ids, mask = right_padded_batch(6, length)
  reference = embeddings_and_grads(None, ids, mask)
  splash = embeddings_and_grads("splash_interpret", ids, mask)
  np.testing.assert_allclose(splash[2], reference[2], rtol=1e-5, atol=1e-5)  # every real position's hidden state
  np.testing.assert_allclose(splash[0], reference[0], rtol=1e-5, atol=1e-5)
  jax.tree.map(assert_close_gradients, splash[1], reference[1])


def test_splash_under_a_mesh_splits_rows_and_heads_and_equals_one_device():
  ids, mask = right_padded_batch(8, 32, seed=1)
  reference = embeddings_and_grads(None, ids, mask)
  mesh = make_mesh(2, 2, 2)
  with use_mesh(mesh):
    sharded = embeddings_and_grads("splash_interpret", ids, mask, mesh)
  np.testing.assert_allclose(sharded[0], reference[0], rtol=1e-5, atol=1e-5)
  jax.tree.map(assert_close_gradients, sharded[1], reference[1])
