"""On an 8-device CPU mesh, loaded parameters carry the rule table's shardings and compute the same thing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from rejax.hf.load import load_decoder
from rejax.models.pooling import embed
from rejax.sharding import make_mesh, use_mesh

# What DEFAULT_RULES ask for, written out by hand: FSDP over `fsdp` on the hidden dim, Megatron over `tensor`.
EXPECTED_SPECS = {
    "embed_tokens.embedding": P("tensor", "fsdp"),
    "layers.self_attn.q_proj.kernel": P(None, "fsdp", "tensor"),
    "layers.self_attn.k_proj.kernel": P(None, "fsdp", "tensor"),
    "layers.self_attn.o_proj.kernel": P(None, "tensor", "fsdp"),
    "layers.mlp.gate_proj.kernel": P(None, "fsdp", "tensor"),
    "layers.mlp.down_proj.kernel": P(None, "tensor", "fsdp"),
    "layers.input_layernorm.weight": P(None, None),
    "norm.weight": P(None),
}


def flat_params(model) -> dict:
  return {".".join(map(str, p)): v[...] for p, v in nnx.to_flat_state(nnx.state(model))}


def forward(model, ids, mask):
  return embed(model, ids, mask)


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 1, 8)])
def test_sharded_load_and_forward_match_one_device(tiny_model_factory, mesh_shape):
  model_dir, _ = tiny_model_factory("qwen3_untied")
  ids = (jnp.arange(8 * 16, dtype=jnp.int32).reshape(8, 16) * 37) % 5000
  mask = (jnp.arange(16)[None, :] < jnp.arange(8, 16)[:, None]).astype(jnp.int32)  # 8 different lengths
  single, _ = load_decoder(model_dir)
  expected = np.asarray(forward(single, ids, mask))
  single_params = flat_params(single)

  mesh = make_mesh(*mesh_shape)
  with use_mesh(mesh):
    model, _ = load_decoder(model_dir, mesh=mesh)
    params = flat_params(model)
    for name, spec in EXPECTED_SPECS.items():
      sharding = params[name].sharding
      want = P(*(None if entry is not None and mesh.shape[entry] == 1 else entry for entry in spec))
      assert sharding.mesh == mesh
      assert sharding.is_equivalent_to(jax.sharding.NamedSharding(mesh, want), params[name].ndim), name
      # each device holds exactly its slice of the one-device parameter
      whole = np.asarray(single_params[name])
      for shard in params[name].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), whole[shard.index])
    batch = jax.sharding.NamedSharding(mesh, P(("data", "fsdp")))
    got = nnx.jit(forward)(model, jax.device_put(ids, batch), jax.device_put(mask, batch))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_mesh_size_must_match_device_count():
  with pytest.raises(ValueError, match=r"mesh.data x mesh.fsdp x mesh.tensor = 2 x 2 x 1 = 4, but there are 8 devices"):
    make_mesh(2, 2, 1)
