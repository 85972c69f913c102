"""Teacher distillation (docs/method.md#distillation): the KL and margin-MSE terms equal their formulas in plain
numpy, the KL term is FlagEmbedding's `distill_loss("kl_div")` up to the teacher's entropy (same gradient), the
wrapper adds it to any loss (through Matryoshka too), and one train step moves the weights by the gradient of
(contrastive + weight x distill) taken independently of the step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rejax.losses import Distillation, InfoNCE, Matryoshka, RIInfoNCE, kl_distill, make_loss, margin_mse
from rejax.losses.distill import group_scores
from rejax.losses.matryoshka import truncated
from tests.test_losses import f32, numpy_infonce, numpy_scores, unit_rows


def numpy_log_softmax(x):
  m = x.max(axis=-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def numpy_own_group(q, p, group, tau):
  """s_ij = cos(q_i, p_{i*G + j}) / tau [B, G]."""
  return np.stack([numpy_scores(q[i:i + 1], p[i * group:(i + 1) * group], tau)[0] for i in range(len(q))])


def numpy_kl(student, teacher, teacher_temperature):
  """Per query: sum_j t_j log(t_j / s_j), t = softmax(teacher / T), s = softmax(student)."""
  t_log = numpy_log_softmax(teacher / teacher_temperature)
  return (np.exp(t_log) * (t_log - numpy_log_softmax(student))).sum(axis=1)


def numpy_margin_mse(student, teacher, teacher_temperature):
  """Per query: mean over negatives j of ((s_0 - s_j) - (t_0 - t_j) / T)^2, one pair at a time."""
  out = []
  for s, t in zip(student, teacher / teacher_temperature):
    out.append(np.mean([((s[0] - s[j]) - (t[0] - t[j])) ** 2 for j in range(1, len(s))]))
  return np.array(out)


def flagembedding_kl_div(teacher_scores, student_scores):
  """FlagEmbedding's AbsEmbedderModel.distill_loss('kl_div', ...) in jnp, as it is written there: the teacher targets
  softmax(teacher_scores) (AbsEmbedderModel.forward), and -mean over queries of sum_j targets_j * log_softmax(s)_j."""
  targets = jax.nn.softmax(teacher_scores, axis=-1)
  return -jnp.mean(jnp.sum(jax.nn.log_softmax(student_scores, axis=-1) * targets, axis=-1))


def batch_with_teacher(seed, batch, group, dim=32):
  rng = np.random.default_rng(seed)
  q, p = unit_rows(rng, batch, dim), unit_rows(rng, batch * group, dim)
  teacher = rng.normal(0.0, 3.0, (batch, group)).astype(np.float32).astype(np.float64)
  return q, p, teacher


@pytest.mark.parametrize("batch,group", [(1, 2), (4, 4), (3, 16)])
@pytest.mark.parametrize("teacher_temperature", [1.0, 0.5, 4.0])
def test_kl_and_margin_mse_equal_numpy(batch, group, teacher_temperature):
  q, p, teacher = batch_with_teacher(batch * 10 + group, batch, group)
  student = numpy_own_group(q, p, group, 0.02)
  got_student = group_scores(*f32(q, p), group, 0.02)
  np.testing.assert_allclose(got_student, student, rtol=1e-5)
  np.testing.assert_allclose(kl_distill(got_student, jnp.float32(teacher), teacher_temperature),
                             numpy_kl(student, teacher, teacher_temperature), rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(margin_mse(got_student, jnp.float32(teacher), teacher_temperature),
                             numpy_margin_mse(student, teacher, teacher_temperature), rtol=1e-4)


def test_kl_is_flagembeddings_kl_div_less_the_teachers_entropy_with_the_same_gradient():
  """FlagEmbedding's 'kl_div' (in-batch negatives, no cross-device) is the InfoNCE over the batch plus its
  distill_loss at weight 1 and no teacher temperature; ours is that value less the teacher's mean entropy (a constant
  of the data), and the gradients with respect to the embeddings are the same."""
  batch, group, tau = 4, 8, 0.05
  q, p, teacher = (jnp.asarray(a, jnp.float32) for a in batch_with_teacher(3, batch, group))
  ours = Distillation(InfoNCE(temperature=tau), distill="kl", distill_weight=1.0, distill_temperature=1.0)

  def flagembedding(q, p):
    scores = q @ p.T / tau  # compute_score: q p^T / temperature, [B, B*G]
    local = scores.reshape(batch, batch, group)[jnp.arange(batch), jnp.arange(batch)]  # get_local_score [B, G]
    targets = jnp.arange(batch) * group
    contrastive = -jnp.mean(jax.nn.log_softmax(scores, axis=-1)[jnp.arange(batch), targets])  # cross_entropy, mean
    return contrastive + flagembedding_kl_div(teacher, local)

  def ours_value(q, p):
    return ours(q, p, None, 0, teacher)[0]

  t = jax.nn.softmax(teacher, axis=-1)
  entropy = -jnp.mean(jnp.sum(t * jnp.log(t), axis=-1))
  np.testing.assert_allclose(jax.jit(ours_value)(q, p) + entropy, jax.jit(flagembedding)(q, p), rtol=1e-5)
  for got, want in zip(jax.jit(jax.grad(ours_value, (0, 1)))(q, p), jax.jit(jax.grad(flagembedding, (0, 1)))(q, p)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("inner", [InfoNCE(temperature=0.02), RIInfoNCE(temperature=0.02, ri_start_step=0)])
@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_the_wrapper_adds_the_weighted_term_of_the_own_group_and_no_gradient_to_the_teacher(inner, kind):
  batch, group, weight, temperature = 4, 4, 0.3, 2.0
  q, p, teacher = batch_with_teacher(5, batch, group)
  q_reason = unit_rows(np.random.default_rng(9), batch, 32)
  loss = Distillation(inner, distill=kind, distill_weight=weight, distill_temperature=temperature)
  value, scalars = loss(*f32(q, p), jnp.float32(q_reason), 0, jnp.float32(teacher))
  inner_value, inner_scalars = inner(*f32(q, p), jnp.float32(q_reason), 0)
  formula = numpy_kl if kind == "kl" else numpy_margin_mse
  term = formula(numpy_own_group(q, p, group, 0.02), teacher, temperature).mean()
  np.testing.assert_allclose(scalars["distill_loss"], term, rtol=2e-4)
  np.testing.assert_allclose(scalars["contrastive_loss"], inner_value, rtol=1e-6)
  np.testing.assert_allclose(value, inner_value + weight * term, rtol=2e-4)
  assert set(scalars) == {*inner_scalars, "contrastive_loss", "distill_loss"}
  if isinstance(inner, InfoNCE):
    np.testing.assert_allclose(inner_value, numpy_infonce(q, p, group, 0.02).mean(), rtol=1e-5)
  teacher_grad = jax.grad(lambda t: loss(*f32(q, p), jnp.float32(q_reason), 0, t)[0])(jnp.float32(teacher))
  assert not np.any(teacher_grad)


def test_matryoshka_distils_at_every_size():
  batch, group = 2, 4
  q, p, teacher = (jnp.asarray(a, jnp.float32) for a in batch_with_teacher(7, batch, group))
  settings = {"kind": "infonce", "distill": "margin_mse", "distill_weight": 0.5, "distill_temperature": 2.0}
  loss = make_loss({**settings, "matryoshka_dims": (32, 8), "matryoshka_weights": (1.0, 0.25)})
  assert isinstance(loss, Matryoshka) and isinstance(loss.inner, Distillation) and loss.uses_teacher
  alone = make_loss(settings)
  want = sum(w * alone(truncated(q, d), truncated(p, d), None, 0, teacher)[0] for d, w in ((32, 1.0), (8, 0.25)))
  np.testing.assert_allclose(loss(q, p, None, 0, teacher)[0], want, rtol=1e-6)
  assert "distill_loss" in loss(q, p, None, 0, teacher)[1]


@pytest.mark.parametrize("settings,message", [
    ({"distill": "mse"}, r"^loss.distill='mse': expected one of 'kl', 'margin_mse'$"),
    ({"distill_weight": -0.5}, r"^loss.distill_weight=-0.5: must be >= 0 \(0 = no distillation\)$"),
    ({"distill_weight": 1.0, "distill_temperature": 0.0}, r"^loss.distill_temperature=0.0: must be > 0$"),
])
def test_bad_distillation_settings_name_their_key(settings, message):
  from rejax.train.config import ConfigError, validate
  from rejax.train.recipe import paper_config
  from tests.test_train_step import TINY

  config = paper_config()
  config.model.hf_config.update(TINY)
  config.loss.update(settings)
  with pytest.raises(ConfigError, match=message):
    validate(config, device_count=1)


def test_off_by_default_described_on_the_model_card_and_refused_without_the_batchs_teacher_scores(tmp_path):
  from rejax.train.components import components
  from rejax.train.recipe import paper_config
  from rejax.train.run_card import run_card

  config = paper_config()
  assert not components(config).loss.uses_teacher and not components(config).pipeline.teacher_scores
  config.loss.distill_weight = 0.5
  parts = components(config)
  assert parts.loss.uses_teacher and parts.pipeline.teacher_scores
  described = run_card(config, tmp_path, tmp_path, 0).training["loss"]  # what the model card says of the loss
  assert described == ("ri_infonce (temperature 0.02, ri_start_step 100, ri_clamp_max 5.0) + 0.5 x kl distillation "
                       "from teacher scores (teacher temperature 1)")
  q, p, _ = batch_with_teacher(1, 2, 4)
  with pytest.raises(ValueError, match=r"^loss.distill_weight=0.5 needs the batch's teacher scores"):
    parts.loss(*f32(q, p), None, 0)


def test_one_step_moves_the_weights_by_the_gradient_of_contrastive_plus_weighted_distill():
  """One SGD step (lr 1) with `kl` distillation on a tiny model: the update is the gradient of InfoNCE + 0.5 x
  KL(softmax(teacher / 2) || softmax(own group scores / tau)), both written here from their formulas."""
  from flax import nnx

  from rejax.models import config_from_hf_dict, init_decoder
  from rejax.models.pooling import embed
  from rejax.train.state import init_train_state
  from rejax.train.step import make_train_step
  from tests.test_train_step import TINY, B, G, make_batch

  tau, weight, teacher_temperature = 0.05, 0.5, 2.0
  loss = make_loss({"kind": "infonce", "temperature": tau, "distill": "kl", "distill_weight": weight,
                    "distill_temperature": teacher_temperature})
  model = init_decoder(config_from_hf_dict(TINY), seed=0)
  tx = optax.sgd(1.0)
  graphdef, state = init_train_state(model, tx)
  batch = {k: v for k, v in make_batch().items() if not k.startswith("reason")}
  batch["teacher_scores"] = np.random.default_rng(0).normal(0, 3, (B, G)).astype(np.float32)
  new_state, metrics = jax.jit(make_train_step(graphdef, tx, loss))(state, batch, jax.random.key(0))
  assert {"loss", "grad_norm", "contrastive_loss", "distill_loss"} <= set(metrics)

  def reference(trainable):
    model = nnx.merge(graphdef, trainable, state.frozen)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 3)
    q = embed(model, batch["query_ids"], batch["query_mask"], keys[0]).astype(jnp.float32)
    p = embed(model, batch["passage_ids"], batch["passage_mask"], keys[1]).astype(jnp.float32)
    scores = jnp.dot(q, p.T, precision="highest") / tau
    contrastive = -jnp.mean(jax.nn.log_softmax(scores, axis=-1)[jnp.arange(B), jnp.arange(B) * G])
    own = scores.reshape(B, B, G)[jnp.arange(B), jnp.arange(B)]
    t = jax.nn.softmax(batch["teacher_scores"] / teacher_temperature, axis=-1)
    kl = jnp.mean(jnp.sum(t * (jnp.log(t) - jax.nn.log_softmax(own, axis=-1)), axis=-1))
    return contrastive + weight * kl, kl

  (value, kl), grads = jax.jit(jax.value_and_grad(reference, has_aux=True))(state.trainable)
  np.testing.assert_allclose(metrics["loss"], value, rtol=1e-5)
  np.testing.assert_allclose(metrics["distill_loss"], kl, rtol=1e-4)
  assert float(kl) > 0.01  # the term is not negligible
  moved = jax.tree.map(lambda a, b: a - b, state.trainable, new_state.trainable)
  for got, want in zip(jax.tree.leaves(moved), jax.tree.leaves(grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(jnp.abs(want).max()))
