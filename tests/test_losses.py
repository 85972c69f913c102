"""The losses equal docs/method.md#infonce and docs/method.md#ri-infonce written out in plain numpy (float64),
and carry gradients only where the method says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rejax.losses import infonce, ri_infonce, similarity_scores


def unit_rows(rng, n, d):
  """Unit rows, rounded to float32 (what the model hands the loss) and kept in float64 for numpy."""
  x = rng.standard_normal((n, d))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)


# Jitted once per shape: one compile is much faster than eager dispatch compiling every primitive.
jit_infonce = jax.jit(infonce, static_argnames=("group_size", "temperature"))
jit_ri_infonce = jax.jit(ri_infonce, static_argnames=("group_size", "temperature", "clamp_max"))


def f32(*arrays):
  return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


def numpy_scores(q, p, tau):
  """s(x, d) = cos(x, d) / tau, one pair at a time."""
  return np.array([[qi @ pj / (np.linalg.norm(qi) * np.linalg.norm(pj)) for pj in p] for qi in q]) / tau


def numpy_infonce(q, p, group_size, tau):
  """L_i = -log( exp s(q_i, p_{iG}) / sum_j exp s(q_i, p_j) ) over all B*G passages."""
  losses = []
  for i, s in enumerate(numpy_scores(q, p, tau)):
    m = s.max()
    losses.append(-(s[i * group_size] - m - np.log(np.exp(s - m).sum())))
  return np.array(losses)


def numpy_ri_infonce(q, p, q_reason, group_size, tau, kappa):
  """(loss, weights, L(q), L(q'), unclipped RI) of RI-InfoNCE."""
  l_q = numpy_infonce(q, p, group_size, tau)
  l_r = numpy_infonce(q_reason, p, group_size, tau)
  ri = l_q / (l_r + 1e-6)
  w = np.clip(ri, 0, kappa)
  w = w / w.sum()
  return (w * l_q).sum(), w, l_q, l_r, ri


def numpy_retrieval_stats(q, p, group_size):
  """In-batch accuracy, mean positive cosine, mean over queries of the highest non-positive cosine."""
  cos = numpy_scores(q, p, 1.0)
  pos = np.arange(len(q)) * group_size
  negatives = cos.copy()
  negatives[np.arange(len(q)), pos] = -np.inf
  return {"accuracy": np.mean(cos.argmax(axis=1) == pos), "pos_sim": cos[np.arange(len(q)), pos].mean(),
          "hardest_neg_sim": negatives.max(axis=1).mean()}


def reasoning_queries(rng, p, group_size):
  """q' for a batch: even rows sit next to their positive (tiny L(q'), so RI clamps), odd rows are random."""
  batch = len(p) // group_size
  q_reason = unit_rows(rng, batch, p.shape[1])
  q_reason[::2] = p[::group_size][::2] + 0.01 * q_reason[::2]
  return (q_reason / np.linalg.norm(q_reason, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)


SHAPES = [(1, 2), (4, 2), (2, 16), (8, 16), (1, 64), (2, 64), (4, 64)]


@pytest.mark.parametrize("tau", [0.02, 0.05])
@pytest.mark.parametrize("batch,group", SHAPES)
def test_infonce_equals_numpy(batch, group, tau):
  rng = np.random.default_rng(batch * 100 + group)
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  got = jit_infonce(*f32(q, p), group_size=group, temperature=tau)
  assert got.shape == (batch,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, numpy_infonce(q, p, group, tau), rtol=1e-5)


@pytest.mark.parametrize("tau", [0.02, 0.05])
@pytest.mark.parametrize("batch,group", SHAPES)
def test_ri_infonce_equals_numpy(batch, group, tau):
  rng = np.random.default_rng(batch * 100 + group + 1)
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  q_reason = reasoning_queries(rng, p, group)

  loss, aux = jit_ri_infonce(*f32(q, p, q_reason), group_size=group, temperature=tau, clamp_max=5.0)
  want_loss, want_w, want_l_q, want_l_r, want_ri = numpy_ri_infonce(q, p, q_reason, group, tau, 5.0)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(aux["weights"], want_w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(aux["weights"].sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(aux["per_query"], want_l_q, rtol=1e-5)
  # L(q') of the near-positive rows is ~1e-13: compared absolutely, far below the 1e-6 that RI adds to it
  np.testing.assert_allclose(aux["per_query_reason"], want_l_r, rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(aux["ri"], want_ri, rtol=1e-5)
  np.testing.assert_allclose(aux["clamped_fraction"], np.mean(want_ri > 5.0))
  assert np.all(want_ri[::2] > 5.0)  # the near-positive reasoning queries do hit kappa
  for name, want in numpy_retrieval_stats(q, p, group).items():
    np.testing.assert_allclose(aux[name], want, rtol=1e-5, err_msg=name)


def numpy_weighted_infonce_grads(q, p, weights, group_size, tau):
  """d/dq and d/dp of sum_i w_i L_i with w held constant, for s = q.p / tau (the inputs are unit rows)."""
  s = q @ p.T / tau
  softmax = np.exp(s - s.max(axis=1, keepdims=True))
  softmax /= softmax.sum(axis=1, keepdims=True)
  d_scores = softmax
  d_scores[np.arange(len(q)), np.arange(len(q)) * group_size] -= 1.0  # dL_i/ds_ij = softmax_ij - [j is i's positive]
  d_scores *= weights[:, None] / tau
  return d_scores @ p, d_scores.T @ q


def test_gradient_flows_through_q_and_p_never_q_reason_or_weights():
  rng = np.random.default_rng(0)
  q, p = unit_rows(rng, 4, 16), unit_rows(rng, 32, 16)
  q_reason = reasoning_queries(rng, p, 8)
  loss = lambda q, p, qr: ri_infonce(q, p, qr, group_size=8, temperature=0.05)[0]
  grad_q, grad_p, grad_reason = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*f32(q, p, q_reason))
  np.testing.assert_array_equal(grad_reason, np.zeros_like(q_reason))
  _, weights, _, _, _ = numpy_ri_infonce(q, p, q_reason, 8, 0.05, 5.0)
  assert np.ptp(weights) > 0.1  # RI weighting is really on, so a gradient through w would show
  want_q, want_p = numpy_weighted_infonce_grads(q, p, weights, 8, 0.05)
  assert np.abs(want_q).max() > 0.1 and np.abs(want_p).max() > 0.1
  np.testing.assert_allclose(grad_q, want_q, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad_p, want_p, rtol=1e-4, atol=1e-5)


def test_ri_start_step_switches_inside_one_compiled_step():
  rng = np.random.default_rng(1)
  q, p = unit_rows(rng, 4, 16), unit_rows(rng, 16, 16)
  q_reason = reasoning_queries(rng, p, 4)
  traces = []

  @jax.jit
  def step_loss(q, p, q_reason, step):
    traces.append(1)
    return ri_infonce(q, p, q_reason, group_size=4, temperature=0.02, use_ri=step >= 100)

  before, aux_before = step_loss(*f32(q, p, q_reason), jnp.int32(99))
  after, aux_after = step_loss(*f32(q, p, q_reason), jnp.int32(100))
  assert len(traces) == 1 and step_loss._cache_size() == 1
  want_ri, want_w, per_query, _, _ = numpy_ri_infonce(q, p, q_reason, 4, 0.02, 5.0)
  np.testing.assert_allclose(before, per_query.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux_before["weights"], np.full(4, 0.25))
  np.testing.assert_allclose(after, want_ri, rtol=1e-5)
  np.testing.assert_allclose(aux_after["weights"], want_w, rtol=1e-5)
  assert abs(float(after) - float(before)) > 1e-3  # the switch changed the loss


def test_bf16_embeddings_are_scored_in_fp32():
  rng = np.random.default_rng(2)
  q, p = unit_rows(rng, 4, 64), unit_rows(rng, 16, 64)
  q_reason = reasoning_queries(rng, p, 4)
  bf16 = tuple(jnp.asarray(x, jnp.bfloat16) for x in (q, p, q_reason))
  assert similarity_scores(bf16[0], bf16[1], 0.02).dtype == jnp.float32
  loss16, aux16 = jit_ri_infonce(*bf16, group_size=4, temperature=0.02)
  assert loss16.dtype == jnp.float32 and aux16["per_query"].dtype == jnp.float32
  # the bf16 values themselves, scored in float32: the only difference from bf16 input is the input rounding
  loss_rounded, aux_rounded = jit_ri_infonce(*(x.astype(jnp.float32) for x in bf16), group_size=4, temperature=0.02)
  np.testing.assert_allclose(loss16, loss_rounded, rtol=1e-6)
  np.testing.assert_allclose(aux16["per_query"], aux_rounded["per_query"], rtol=1e-6)
  # and that rounding moves the loss only a little from the float32 embeddings' loss
  loss32, aux32 = jit_ri_infonce(*f32(q, p, q_reason), group_size=4, temperature=0.02)
  np.testing.assert_allclose(loss16, loss32, rtol=5e-2)
  np.testing.assert_allclose(aux16["per_query"], aux32["per_query"], rtol=5e-2)


@pytest.mark.parametrize("q_shape,p_shape,message", [
    ((2, 8), (5, 8), r"q \(2, 8\), p \(5, 8\), group_size 2"),  # rows are not B*G
    ((2, 8), (4, 6), r"q \(2, 8\), p \(4, 6\), group_size 2"),  # embedding widths differ
    ((2, 8), (4,), r"q \(2, 8\), p \(4,\), group_size 2"),  # p is not a matrix
])
def test_shape_mismatch_names_the_shapes(q_shape, p_shape, message):
  with pytest.raises(ValueError, match=message):
    infonce(jnp.zeros(q_shape), jnp.zeros(p_shape), group_size=2, temperature=0.02)
  with pytest.raises(ValueError, match=message):
    ri_infonce(jnp.zeros(q_shape), jnp.zeros(p_shape), jnp.zeros(q_shape), group_size=2, temperature=0.02)


def test_reasoning_query_shape_mismatch_names_the_shapes():
  with pytest.raises(ValueError, match=r"q_reason \(3, 8\) .* q \(2, 8\)"):
    ri_infonce(jnp.zeros((2, 8)), jnp.zeros((4, 8)), jnp.zeros((3, 8)), group_size=2, temperature=0.02)


def test_a_batch_solved_to_float32_precision_gives_zero_loss_not_nan():
  """Every L_i(q) underflows to 0 (each negative scores >= 100 below the positive): no 0/0 in RI, no NaN."""
  q = np.eye(2, 16)  # orthogonal queries: the other query's passages score 0
  p = np.repeat(-q, 4, axis=0)  # hard negatives opposite their query
  p[::4] = q
  loss, aux = jit_ri_infonce(*f32(q, p, q), group_size=4, temperature=0.01)
  assert np.all(np.asarray(aux["per_query"]) < 1e-30) and 0.0 <= float(loss) < 1e-30  # 0 where denormals flush
  np.testing.assert_allclose(aux["weights"], [0.5, 0.5])
  loss_fn = lambda q, p: ri_infonce(q, p, q, group_size=4, temperature=0.01)[0]
  grads = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(*f32(q, p))
  assert all(np.isfinite(g).all() for g in grads)


def test_loss_classes_report_what_numpy_computes():
  """The registry's losses, as the step calls them: the value and the scalars the run logs (RI weights scaled so
  that 1.0 is the plain mean's weight) equal numpy's; RI is off before ri_start_step (the plain mean)."""
  from rejax.losses import make_loss

  rng = np.random.default_rng(7)
  batch, group, tau = 4, 8, 0.05
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  q_reason = reasoning_queries(rng, p, group)
  plain = numpy_infonce(q, p, group, tau)
  want_loss, want_w, *_ = numpy_ri_infonce(q, p, q_reason, group, tau, 5.0)
  settings = {"kind": "ri_infonce", "temperature": tau, "ri_start_step": 3, "ri_clamp_max": 5.0}
  ri = make_loss(settings)
  assert ri.uses_reasoning and not ri.reasoning_pass(2) and ri.reasoning_pass(3)
  loss, scalars = jax.jit(ri)(*f32(q, p, q_reason), jnp.int32(3))
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  for name, want in (("ri_weight_mean", 1.0), ("ri_weight_min", batch * want_w.min()),
                     ("ri_weight_max", batch * want_w.max())):
    np.testing.assert_allclose(scalars[name], want, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(jax.jit(ri)(*f32(q, p, q_reason), jnp.int32(2))[0], plain.mean(), rtol=1e-5)

  nce = make_loss({**settings, "kind": "infonce"})  # the RI keys are RI's: InfoNCE reads only its own
  assert type(nce).__name__ == "InfoNCE" and not nce.uses_reasoning and not nce.reasoning_pass(10**6)
  loss, scalars = jax.jit(nce)(*f32(q, p), None, jnp.int32(0))
  np.testing.assert_allclose(loss, plain.mean(), rtol=1e-5)
  assert set(scalars) == {"accuracy", "pos_sim", "hardest_neg_sim"}
  for name, want in numpy_retrieval_stats(q, p, group).items():
    np.testing.assert_allclose(scalars[name], want, rtol=1e-5, err_msg=name)


def test_the_temperature_warm_up_scores_at_the_scheduled_tau_in_every_loss():
  """With loss.temperature_warmup_steps = W the step numbered t scores at tau_t = tau_0^(1 - t/W) tau^(t/W) (then
  tau): each loss, and the distillation's student scores, equal numpy's at that tau, inside one compiled step."""
  from rejax.losses import make_loss
  from tests.test_distill import numpy_kl, numpy_own_group  # (test_distill imports this module's helpers)

  rng = np.random.default_rng(11)
  batch, group, warmup, tau0, tau = 4, 4, 8, 1.0, 0.02
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  q_reason = reasoning_queries(rng, p, group)
  teacher = rng.standard_normal((batch, group)).astype(np.float32)
  schedule = {"temperature": tau, "temperature_warmup_steps": warmup, "initial_temperature": tau0}

  def kl_at(t):  # FlagEmbedding's KL over each query's own group, the student's scores at tau t
    return numpy_kl(numpy_own_group(q, p, group, t), teacher.astype(np.float64), 0.05).mean()

  nce = jax.jit(make_loss({"kind": "infonce", **schedule}))
  ri = jax.jit(make_loss({"kind": "ri_infonce", "ri_start_step": 0, **schedule}))
  kd = jax.jit(make_loss({"kind": "infonce", "distill_weight": 1.0, "distill_temperature": 0.05, **schedule}))
  for step in (0, 2, 4, 8, 30):
    want_tau = tau0 ** (1 - min(step / warmup, 1)) * tau ** min(step / warmup, 1)
    plain = numpy_infonce(q, p, group, want_tau).mean()
    np.testing.assert_allclose(nce(*f32(q, p), None, jnp.int32(step))[0], plain, rtol=2e-5, err_msg=step)
    np.testing.assert_allclose(ri(*f32(q, p, q_reason), jnp.int32(step))[0],
                               numpy_ri_infonce(q, p, q_reason, group, want_tau, 5.0)[0], rtol=2e-5, err_msg=step)
    value, scalars = kd(*f32(q, p), None, jnp.int32(step), jnp.asarray(teacher))
    np.testing.assert_allclose(scalars["distill_loss"], kl_at(want_tau), rtol=2e-5, atol=1e-6, err_msg=step)
    np.testing.assert_allclose(value, plain + kl_at(want_tau), rtol=2e-5, err_msg=step)
    np.testing.assert_allclose(scalars["pos_sim"], numpy_retrieval_stats(q, p, group)["pos_sim"], rtol=1e-5)
  assert make_loss({"kind": "infonce", "temperature": tau}).temperature_at(0) == tau  # off: the float itself


@pytest.mark.parametrize("settings,message", [
  ({"kind": "infonce", "temperature_warmup_steps": -1}, "loss.temperature_warmup_steps=-1: must be an integer >= 0"),
  ({"kind": "infonce", "initial_temperature": 0.0}, "loss.initial_temperature=0.0: must be > 0"),
  ({"kind": "contrastive"}, "loss.kind='contrastive': expected one of 'infonce', 'ri_infonce'"),
  ({"kind": "infonce", "temperature": 0.0}, "loss.temperature=0.0: must be > 0"),
  ({"kind": "ri_infonce", "ri_clamp_max": -1.0}, "loss.ri_clamp_max=-1.0: must be > 0"),
  ({"kind": "ri_infonce", "ri_start_step": -5}, "loss.ri_start_step=-5: must be >= 0"),
])
def test_a_bad_loss_setting_names_its_key(settings, message):
  from rejax.losses import make_loss

  with pytest.raises(ValueError) as error:
    make_loss(settings)
  assert str(error.value) == message
