"""Decoder settings that must not change the maths: activation checkpointing and config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rejax.models import config_from_hf_dict, init_decoder
from rejax.models.pooling import embed

TINY = dict(model_type="qwen3", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6)


def loss_and_grads(remat: str):
  model = init_decoder(config_from_hf_dict(TINY, remat=remat), seed=3)
  ids = jnp.arange(2 * 10, dtype=jnp.int32).reshape(2, 10) % 512
  mask = jnp.array([[1] * 10, [1] * 6 + [0] * 4], jnp.int32)

  def loss(model):
    e = embed(model, ids, mask)
    return jnp.sum(e[0] * e[1])

  return nnx.jit(nnx.value_and_grad(loss))(model)


@pytest.mark.parametrize("remat", ["full", "dots", "mlp", "mlp_up"])
def test_remat_gives_the_same_loss_and_gradients(remat):
  want_loss, want_grads = loss_and_grads("none")
  got_loss, got_grads = loss_and_grads(remat)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
  for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
    # XLA may reorder sums in the recomputation: bound the error relative to the gradient's scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))


def test_bad_settings_name_the_key():
  with pytest.raises(ValueError, match="remat='some'"):
    config_from_hf_dict(TINY, remat="some")
  with pytest.raises(ValueError, match="unsupported rope_type 'yarn'"):
    config_from_hf_dict({**TINY, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}})
  with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
    config_from_hf_dict(TINY, dtype="fp8")
