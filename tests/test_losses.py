"""The losses equal METHOD.md section 2 written out in plain numpy (float64), and carry gradients only where
the method says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rejax.losses import infonce, ri_infonce


def unit_rows(rng, n, d):
  """Unit rows, rounded to float32 (what the model hands the loss) and kept in float64 for numpy."""
  x = rng.standard_normal((n, d))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)


def numpy_infonce(q, p, group_size, tau):
  """L_i = -log( exp s(q_i, p_{iG}) / sum_j exp s(q_i, p_j) ), s = cos / tau, one query at a time."""
  losses = []
  for i, qi in enumerate(q):
    s = np.array([qi @ pj / (np.linalg.norm(qi) * np.linalg.norm(pj)) for pj in p]) / tau
    m = s.max()
    losses.append(-(s[i * group_size] - m - np.log(np.exp(s - m).sum())))
  return np.array(losses)


def numpy_ri_infonce(q, p, q_reason, group_size, tau, kappa):
  l_q = numpy_infonce(q, p, group_size, tau)
  l_r = numpy_infonce(q_reason, p, group_size, tau)
  w = np.clip(l_q / (l_r + 1e-6), 0, kappa)
  w = w / w.sum()
  return (w * l_q).sum(), w, l_q


SHAPES = [(1, 2), (4, 2), (2, 16), (8, 16), (2, 64), (4, 64)]


@pytest.mark.parametrize("tau", [0.02, 0.05])
@pytest.mark.parametrize("batch,group", SHAPES)
def test_losses_equal_numpy(batch, group, tau):
  rng = np.random.default_rng(batch * 100 + group)
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  # reasoning queries near their positives for some rows (tiny L(q'): RI clamps), random for others
  q_reason = unit_rows(rng, batch, 32)
  q_reason[::2] = p[::group][::2] + 0.01 * q_reason[::2]
  q_reason = (q_reason / np.linalg.norm(q_reason, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)

  np.testing.assert_allclose(infonce(q, p, group_size=group, temperature=tau), numpy_infonce(q, p, group, tau),
                             rtol=1e-5)
  loss, aux = ri_infonce(jnp.asarray(q, jnp.float32), jnp.asarray(p, jnp.float32), jnp.asarray(q_reason, jnp.float32),
                         group_size=group, temperature=tau, clamp_max=5.0)
  want_loss, want_w, want_per_query = numpy_ri_infonce(q, p, q_reason, group, tau, 5.0)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(aux["weights"], want_w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(aux["per_query"], want_per_query, rtol=1e-5)
  np.testing.assert_allclose(aux["weights"].sum(), 1.0, rtol=1e-6)
  if batch > 1:
    assert float(aux["clamped_fraction"]) > 0  # the near-positive reasoning queries hit kappa


def test_gradient_flows_through_q_and_p_never_q_reason():
  rng = np.random.default_rng(0)
  q, p, qr = (jnp.asarray(unit_rows(rng, n, 16), jnp.float32) for n in (4, 32, 4))
  grads = jax.grad(lambda q, p, qr: ri_infonce(q, p, qr, group_size=8, temperature=0.02)[0], argnums=(0, 1, 2))(q, p, qr)
  assert np.abs(grads[0]).max() > 0 and np.abs(grads[1]).max() > 0
  np.testing.assert_array_equal(grads[2], np.zeros_like(qr))


def test_ri_start_step_switches_inside_one_compiled_step():
  rng = np.random.default_rng(1)
  q, p, qr = (jnp.asarray(unit_rows(rng, n, 16), jnp.float32) for n in (4, 16, 4))
  traces = []

  @jax.jit
  def step_loss(q, p, qr, step):
    traces.append(1)
    return ri_infonce(q, p, qr, group_size=4, temperature=0.02, use_ri=step >= 100)[0]

  before = step_loss(q, p, qr, jnp.int32(99))
  after = step_loss(q, p, qr, jnp.int32(100))
  assert len(traces) == 1
  want_ri, _, per_query = numpy_ri_infonce(np.asarray(q, np.float64), np.asarray(p, np.float64),
                                          np.asarray(qr, np.float64), 4, 0.02, 5.0)
  np.testing.assert_allclose(before, per_query.mean(), rtol=1e-5)
  np.testing.assert_allclose(after, want_ri, rtol=1e-5)


def test_bf16_embeddings_are_scored_in_fp32():
  rng = np.random.default_rng(2)
  q, p, qr = (unit_rows(rng, n, 64) for n in (4, 16, 4))
  loss32, _ = ri_infonce(*(jnp.asarray(x, jnp.float32) for x in (q, p, qr)), group_size=4, temperature=0.02)
  loss16, aux = ri_infonce(*(jnp.asarray(x, jnp.bfloat16) for x in (q, p, qr)), group_size=4, temperature=0.02)
  assert loss16.dtype == jnp.float32 and aux["per_query"].dtype == jnp.float32
  np.testing.assert_allclose(loss16, loss32, rtol=5e-2)


def test_shape_mismatch_names_the_shapes():
  with pytest.raises(ValueError, match=r"q \(2, 8\), p \(5, 8\), group_size 2"):
    infonce(jnp.zeros((2, 8)), jnp.zeros((5, 8)), group_size=2, temperature=0.02)
