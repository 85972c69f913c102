"""The train step: GradCache computes the same gradients, and sharded runs equal one device (with teacher
distillation on: its scores are an input of the loss sharded as the queries are)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rejax.models import config_from_hf_dict, init_decoder
from rejax.sharding import batch_sharding, make_mesh, use_mesh
from rejax.losses import make_loss
from rejax.train.optim import linear_warmup_decay, make_optimizer
from rejax.train.state import init_train_state, jit_train_step
from rejax.train.step import make_train_step

TINY = dict(model_type="qwen3", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6)
B, G = 8, 4


def make_batch(seed=0, lengths=(16, 24, 12)):
  rng = np.random.default_rng(seed)

  def tokens(n, t):
    ids = rng.integers(1, 512, (n, t), dtype=np.int32)
    real = rng.integers(3, t + 1, n)
    mask = (np.arange(t)[None, :] < real[:, None]).astype(np.int32)
    return ids * mask, mask

  (qi, qm), (pi, pm), (ri, rm) = tokens(B, lengths[0]), tokens(B * G, lengths[1]), tokens(B, lengths[2])
  return {"query_ids": qi, "query_mask": qm, "passage_ids": pi, "passage_mask": pm, "reason_ids": ri,
          "reason_mask": rm, "teacher_scores": rng.normal(0.0, 3.0, (B, G)).astype(np.float32)}


DISTILL = {"distill_weight": 0.5, "distill_temperature": 2.0}  # the steps below distil too (rejax.losses.distill)


def flat(state) -> dict:
  return {p: np.asarray(v[...] if hasattr(v, "get_value") else v) for p, v in nnx.to_flat_state(state)}


@pytest.mark.parametrize("kind", [pytest.param("infonce", marks=pytest.mark.slow), "ri_infonce"])  # RI: the superset
def test_grad_cache_equals_full_batch_gradients(kind):
  # SGD with lr 1: new params = params - grads, so equal updates mean equal gradients
  model = init_decoder(config_from_hf_dict(TINY), seed=0)
  loss_cfg = make_loss({"kind": kind, "ri_start_step": 0, "distill": "kl", **DISTILL}, group_size=G)
  tx = optax.sgd(1.0)
  results = []
  for chunk in (None, 2, 4):
    graphdef, state = init_train_state(model, tx)
    step = jax.jit(make_train_step(graphdef, tx, loss_cfg, grad_cache_chunk=chunk))
    new_state, metrics = step(state, make_batch(), jax.random.key(0))
    results.append((float(metrics["loss"]), flat(new_state.trainable), float(metrics["grad_norm"]),
                    float(metrics["distill_loss"])))
  (loss, params, norm, distill), others = results[0], results[1:]
  assert distill > 0.01  # the distillation term takes part
  for other_loss, other_params, other_norm, other_distill in others:
    np.testing.assert_allclose(other_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(other_distill, distill, rtol=1e-5)
    np.testing.assert_allclose(other_norm, norm, rtol=1e-5)
    for k in params:
      np.testing.assert_allclose(other_params[k], params[k], rtol=1e-5, atol=1e-6 * np.abs(params[k]).max())


def run_steps(mesh, lora: bool, tx, steps, distill: bool = True):
  """Steps of RI-InfoNCE, with distillation when `distill`: `kl` for full training, `margin_mse` for LoRA (both
  kinds sharded)."""
  from rejax.models import LoRAConfig

  cfg = config_from_hf_dict(TINY, lora=LoRAConfig(rank=4, alpha=8.0, dropout=0.1) if lora else None)
  settings = {"kind": "ri_infonce", "distill": "margin_mse" if lora else "kl", **(DISTILL if distill else {})}
  loss_cfg = make_loss(settings, group_size=G, ri_start_step=1)
  with use_mesh(mesh):
    model = init_decoder(cfg, seed=0, mesh=mesh)
    if lora:  # non-zero B so that the adapters matter from the first step
      for path, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        if path[-1] == "lora_b":
          var[...] = jnp.full(var.shape, 0.01, var[...].dtype)
    graphdef, state = init_train_state(model, tx, wrt=nnx.LoRAParam if lora else nnx.Param)
    step = jit_train_step(make_train_step(graphdef, tx, loss_cfg), state, batch_sharding(mesh, 2))
    initial = flat(state.trainable)
    losses = []
    for i in range(steps):
      batch = {k: jax.device_put(v, batch_sharding(mesh, v.ndim)) for k, v in make_batch(i).items()}
      state, metrics = step(state, batch, jax.random.key(0))
      losses.append(float(metrics["loss"]))
  return losses, {k: v - initial[k] for k, v in flat(state.trainable).items()}, state


@functools.lru_cache(maxsize=None)
def one_device_sgd_step(lora: bool):
  losses, updates, _ = run_steps(make_mesh(1, 1, 1, devices=jax.devices()[:1]), lora, optax.sgd(1.0), steps=1)
  return losses, updates


# By default both kinds of training on the mesh that uses every axis (data 2 x fsdp 2 x tensor 2); the other
# meshes with `make test-slow`.
@pytest.mark.parametrize("lora,shape", [(lora, shape) if shape == (2, 2, 2) else
                                        pytest.param(lora, shape, marks=pytest.mark.slow)
                                        for lora in (False, True)
                                        for shape in ((8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 1, 8))])
def test_sharded_step_gives_one_device_gradients(lora, shape):
  """SGD with lr 1: the update is minus the gradient. Compared at rtol 1e-5, plus 1e-5 of each tensor's
  largest entry for entries where the batch sum cancels (8 devices sum the batch in another order)."""
  want_losses, want_params = one_device_sgd_step(lora)
  losses, params, _ = run_steps(make_mesh(*shape), lora, optax.sgd(1.0), steps=1)
  np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
  for k in want_params:
    scale = np.abs(want_params[k]).max()
    np.testing.assert_allclose(params[k], want_params[k], rtol=1e-5, atol=1e-5 * scale, err_msg=f"{shape} {k}")


def test_sharded_adamw_steps_equal_one_device():
  """Two AdamW steps with RI switching on at step 1. Adam divides by sqrt(v) + 1e-8, so a gradient entry
  near 1e-8, or one whose sign flips between steps, turns reduction-order rounding into update noise of up
  to ~1e-2 * lr: updates are compared at that absolute bound, losses at rtol 1e-5. Without distillation: its
  larger loss (~20 at tau 0.02) turns that update noise into step-2 losses ~1e-5 apart (the SGD steps above check
  it sharded)."""
  lr = 1e-2
  tx = make_optimizer(linear_warmup_decay(lr, 10, warmup_ratio=0.0))
  one = make_mesh(1, 1, 1, devices=jax.devices()[:1])
  want_losses, want_params, _ = run_steps(one, False, tx, steps=2, distill=False)
  losses, params, state = run_steps(make_mesh(2, 2, 2), False, tx, steps=2, distill=False)
  np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
  for k in want_params:
    np.testing.assert_allclose(params[k], want_params[k], rtol=1e-5, atol=1e-2 * lr, err_msg=k)
  # the optimizer state holds moments only for what trains
  assert len(jax.tree.leaves(state.opt_state)) == 2 * len(want_params) + 2
