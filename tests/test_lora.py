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


def test_a_base_frozen_in_the_compute_dtype_computes_the_same_embeddings_and_adapter_gradients(tiny_model_factory):
  """LoRA's frozen weights kept in bfloat16 (model.frozen_dtype) against the float32 ones every use casts to
  bfloat16: the same numbers, half the bytes; the adapters stay float32."""
  model_dir, _ = tiny_model_factory("llama31")
  wide, _ = load_decoder(model_dir, lora=LORA, dtype="bfloat16")
  narrow, cfg = load_decoder(model_dir, lora=LORA, dtype="bfloat16", frozen_dtype="bfloat16")
  for model in (wide, narrow):
    rng = np.random.default_rng(1)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
      if path[-1] == "lora_b":
        var[...] = jnp.asarray(rng.normal(0, 0.05, var.shape), jnp.float32)
  frozen = lambda m: nnx.state(m, nnx.Not(nnx.LoRAParam))  # noqa: E731
  assert {v.dtype for v in flat(frozen(narrow)).values()} == {np.dtype(jnp.bfloat16)}
  assert {v.dtype for v in flat(frozen(wide)).values()} == {np.dtype(np.float32)}
  assert {v.dtype for v in flat(nnx.state(narrow, nnx.LoRAParam)).values()} == {np.dtype(np.float32)}
  nbytes = lambda m: sum(v.nbytes for v in flat(frozen(m)).values())  # noqa: E731
  assert 2 * nbytes(narrow) == nbytes(wide)

  def loss(model):
    e = embed(model, IDS, MASK).astype(jnp.float32)
    return jnp.sum(e[0] * e[1]) - jnp.sum(e[2] * e[0])

  adapter_grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))

  np.testing.assert_array_equal(np.asarray(embed(narrow, IDS, MASK).astype(jnp.float32)),
                                np.asarray(embed(wide, IDS, MASK).astype(jnp.float32)))
  g_narrow, g_wide = flat(adapter_grads(narrow)), flat(adapter_grads(wide))
  assert g_narrow.keys() == g_wide.keys() and all(np.abs(g).max() > 0 for g in g_wide.values())
  for name in g_wide:
    np.testing.assert_array_equal(g_narrow[name], g_wide[name], err_msg=name)
  # The merged export keeps the adapters' precision: kernel (bf16) + delta (f32) is not rounded back to bf16.
  merged = flat(nnx.state(merge_lora(narrow), nnx.Param))
  assert merged["layers.mlp.up_proj.kernel"].dtype == np.float32
