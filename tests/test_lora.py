"""LoRA: a fresh adapter changes nothing, merging is exact, and training touches only the adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rejax.hf.load import load_decoder
from rejax.models import LoRAConfig, merge_lora
from rejax.models.pooling import embed

IDS = (jnp.arange(3 * 12, dtype=jnp.int32).reshape(3, 12) * 101) % 20000
MASK = (jnp.arange(12)[None, :] < jnp.array([[12], [7], [3]])).astype(jnp.int32)
LORA = LoRAConfig(rank=4, alpha=8.0, dropout=0.1)


def flat(state) -> dict:
  return {".".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(state)}


@pytest.fixture
def models(tiny_model_factory):
  model_dir, _ = tiny_model_factory("llama31")
  base, _ = load_decoder(model_dir)
  lora, cfg = load_decoder(model_dir, lora=LORA)
  return base, lora


def test_adapters_sit_on_the_papers_projections_and_start_as_identity(models):
  base, lora = models
  names = {k for k in flat(nnx.state(lora, nnx.LoRAParam))}
  projections = {f"layers.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")} | {
      f"layers.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")}
  assert names == {f"{p}.{ab}" for p in projections for ab in ("lora_a", "lora_b")}
  assert flat(nnx.state(lora, nnx.LoRAParam))["layers.mlp.up_proj.lora_a"].shape == (3, 64, 4)
  np.testing.assert_array_equal(embed(lora, IDS, MASK), embed(base, IDS, MASK))


def test_merged_model_equals_unmerged(models):
  _, lora = models
  rng = np.random.default_rng(0)
  for path, var in nnx.to_flat_state(nnx.state(lora, nnx.LoRAParam)):
    if path[-1] == "lora_b":  # make every adapter do something
      var[...] = jnp.asarray(rng.normal(0, 0.05, var.shape), var[...].dtype)
  unmerged = lora(IDS, MASK)
  merged_model = merge_lora(lora)
  assert not nnx.state(merged_model, nnx.LoRAParam)  # a plain decoder: exportable as HF weights
  real = np.asarray(MASK, bool)
  assert np.abs(np.asarray(merged_model(IDS, MASK)) - np.asarray(unmerged))[real].max() <= 1e-5


def test_training_step_changes_only_the_adapters(models):
  _, lora = models
  before = flat(nnx.state(lora))
  optimizer = nnx.Optimizer(lora, optax.adamw(1e-2), wrt=nnx.LoRAParam)
  assert {p[-1] for p, _ in nnx.to_flat_state(nnx.state(optimizer.opt_state))} >= {"lora_a"}
  assert len(jax.tree.leaves(optimizer.opt_state)) == 2 * 14 + 1  # mu, nu per adapter matrix, + count

  def loss(model):
    e = embed(model, IDS, MASK, dropout_key=jax.random.key(1))
    return -jnp.sum(e[0] * e[1])

  grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(lora)
  optimizer.update(lora, grads)
  after = flat(nnx.state(lora))
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed and all(k.endswith(("lora_a", "lora_b")) for k in changed)
  assert any(k.endswith("lora_b") for k in changed)


def test_dropout_is_a_function_of_the_key(models):
  _, lora = models
  for path, var in nnx.to_flat_state(nnx.state(lora, nnx.LoRAParam)):
    if path[-1] == "lora_b":
      var[...] = jnp.full(var.shape, 0.05, var[...].dtype)
  a1 = embed(lora, IDS, MASK, dropout_key=jax.random.key(7))
  a2 = embed(lora, IDS, MASK, dropout_key=jax.random.key(7))
  b = embed(lora, IDS, MASK, dropout_key=jax.random.key(8))
  no_dropout = embed(lora, IDS, MASK)
  np.testing.assert_array_equal(a1, a2)
  assert not np.allclose(a1, b) and not np.allclose(a1, no_dropout)
