"""Our optax chain steps exactly like torch.optim.AdamW + HF's linear warmup schedule + clip_grad_norm_."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from rejax.train.optim import linear_warmup_decay, make_optimizer


def torch_run(params, grads_per_step, *, lr, total, warmup_ratio, weight_decay, clip, divisor):
  from transformers import get_linear_schedule_with_warmup

  tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
  opt = torch.optim.AdamW(tensors, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
  warmup = int(np.ceil(total * warmup_ratio))
  sched = get_linear_schedule_with_warmup(opt, warmup, total)
  lrs = []
  for grads in grads_per_step:
    for t, g in zip(tensors, grads):
      t.grad = torch.tensor(g / divisor, dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_(tensors, clip)
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()
  return [t.detach().numpy() for t in tensors], lrs


@pytest.mark.parametrize("grad_scale,divisor,weight_decay", [(0.01, 1.0, 0.0), (10.0, 1.0, 0.0), (10.0, 8.0, 0.01)])
def test_optimizer_matches_torch_adamw_with_hf_schedule(grad_scale, divisor, weight_decay):
  rng = np.random.default_rng(0)
  params = [rng.standard_normal((5, 3)), rng.standard_normal(7)]
  total = 12  # ceil(1.2) = 2 warmup steps, then 10 of decay; the first step runs at lr 0 in both
  grads_per_step = [[grad_scale * rng.standard_normal(p.shape) for p in params] for _ in range(total)]

  want, torch_lrs = torch_run(params, grads_per_step, lr=1e-2, total=total, warmup_ratio=0.1,
                              weight_decay=weight_decay, clip=1.0, divisor=divisor)

  tx = make_optimizer(linear_warmup_decay(1e-2, total, 0.1), weight_decay=weight_decay, clip_norm=1.0,
                      grad_divisor=divisor)
  got = [jnp.asarray(p, jnp.float32) for p in params]
  state = tx.init(got)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p))
  for grads in grads_per_step:
    updates, state = update([jnp.asarray(g, jnp.float32) for g in grads], state, got)
    got = optax.apply_updates(got, updates)

  schedule = linear_warmup_decay(1e-2, total, 0.1)
  np.testing.assert_allclose([schedule(i) for i in range(total)], torch_lrs, rtol=1e-6, atol=1e-12)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
