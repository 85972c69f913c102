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


NO_RESHARDING_STEP = """
import jax, numpy as np, optax
from rejax.models import config_from_hf_dict, init_decoder
from rejax.sharding import batch_sharding, make_mesh, use_mesh
from rejax.losses import make_loss
from rejax.train.state import init_train_state, jit_train_step
from rejax.train.step import make_train_step
hf = dict(model_type="qwen3", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
          num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6)
rng = np.random.default_rng(0)
batch = {}
for name, rows in (("query", 4), ("passage", 16), ("reason", 4)):
  batch[name + "_ids"] = rng.integers(1, 512, (rows, 64), dtype=np.int32)
  batch[name + "_mask"] = np.ones((rows, 64), np.int32)
mesh = make_mesh(2, 2, 1)
with use_mesh(mesh):
  tx = optax.adamw(1e-3)
  graphdef, state = init_train_state(init_decoder(config_from_hf_dict(hf), seed=0, mesh=mesh), tx)
  step = jit_train_step(make_train_step(graphdef, tx, make_loss({"kind": "ri_infonce"}, group_size=4),
                                        grad_cache_chunk=GRAD_CACHE_CHUNK), state, batch_sharding(mesh, 2))
  batch = {k: jax.device_put(v, batch_sharding(mesh, v.ndim)) for k, v in batch.items()}
  print("loss", float(step(state, batch, jax.random.key(0))[1]["loss"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("grad_cache_chunk", [None, 2])
def test_a_data_by_fsdp_step_compiles_without_involuntary_resharding(grad_cache_chunk):
  """On a data 2 x fsdp 2 mesh, full fine-tuning: the embedding lookup's backward pass used to gather a [B, T, D]
  cotangent whole and re-split it (XLA's "[SPMD] Involuntary full rematerialization" warning); decoder.ACT_LOOKUP
  makes the way between the table's layout and the activations' two cheap steps. With GradCache, the reasoning
  pass's [B, D] output (a lax.cond) was gathered whole to meet the loss's layout; the loss's embeddings are now
  constrained to the batch layout (step.EMBEDDINGS)."""
  import os
  import subprocess
  import sys

  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  program = f"GRAD_CACHE_CHUNK = {grad_cache_chunk}\n" + NO_RESHARDING_STEP
  done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "loss" in done.stdout
  assert "Involuntary full rematerialization" not in done.stderr


def resharded_program():
  """(a jitted function, its argument) the SPMD partitioner can only reshard by gathering whole: 3 rows split over
  4 devices, then re-split by the last axis (XLA's "Involuntary full rematerialization")."""
  from jax.sharding import Mesh, NamedSharding

  mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "fsdp"))

  def reshard(x):
    x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(("data", "fsdp"), None, None)))
    return jax.lax.with_sharding_constraint(x * 2, NamedSharding(mesh, P(None, None, "data")))
  return jax.jit(reshard), jax.device_put(jnp.ones((3, 64, 64)), NamedSharding(mesh, P()))


def test_an_involuntary_resharding_is_caught_as_it_compiles_and_said_in_one_line(capfd):
  from rejax.train.compiler_warnings import RESHARDING, describe_resharding, resharding, stderr_lines

  reshard, x = resharded_program()
  with stderr_lines() as said:
    reshard.lower(x).compile()
  found = resharding(said)
  assert len(found) == 1
  line = describe_resharding(found)
  assert "1 tensor(s)" in line and "f32[1,64,64] at jit(reshard)/sharding_constraint" in line and "\n" not in line
  assert RESHARDING in capfd.readouterr().err  # still on stderr for whoever reads it
  with stderr_lines() as said:
    jax.jit(lambda y: y * 2).lower(x).compile()
  assert describe_resharding(resharding(said)) is None


def test_the_train_log_and_compiled_steps_record_say_it(tmp_path):
  import json

  from rejax.train.compiled_step import COMPILED_STEPS, CompiledSteps

  reshard, x = resharded_program()
  logged = []
  steps = CompiledSteps(jax.jit(lambda state, batch, key: reshard(batch["query_ids"])), logged.append, tmp_path)
  steps(None, {"query_ids": x}, None)
  assert len(logged) == 2 and logged[1].startswith("warning: for query_ids (3, 64, 64), the compiler gathers 1")
  (record,) = [json.loads(line) for line in (tmp_path / COMPILED_STEPS).read_text().splitlines()]
  assert record["involuntary_reshardings"] == 1


def test_what_is_written_while_a_compile_is_caught_reaches_stderr_at_once(capfd):
  """A peer's last words (peers._lost, then os._exit) must not wait for the compile to end."""
  import os
  import time

  from rejax.train.compiler_warnings import original_stderr, stderr_lines

  with stderr_lines() as said:
    os.write(2, b"through the pipe\n")
    os.write(original_stderr(), b"around it\n")
    for _ in range(100):
      err = capfd.readouterr().err
      if "through the pipe" in err:
        break
      time.sleep(0.05)
    assert "through the pipe" in err
  assert said == ["through the pipe"] and original_stderr() == 2
