"""The extension points work as docs/extending.md says: a loss is its class and a row of rejax.losses.LOSSES (its
settings then come from the config's `loss` block, and the train step logs what it reports)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rejax import losses
from rejax.losses import ContrastiveLoss, make_loss
from rejax.losses.scores import similarity_scores
from rejax.models import config_from_hf_dict, init_decoder
from rejax.train.config import ConfigError, validate
from rejax.train.recipe import paper_config
from rejax.train.state import init_train_state
from rejax.train.step import make_train_step
from tests.test_train_step import TINY, B, G, make_batch


@dataclasses.dataclass(frozen=True)
class PositiveMargin(ContrastiveLoss):
  """A new loss, as a user would add it: hinge on (hardest negative - positive + margin), with its own setting."""

  kind = "positive_margin"
  margin: float = 0.2

  def __post_init__(self):
    super().__post_init__()
    if self.margin < 0:
      raise ValueError(f"loss.margin={self.margin}: must be >= 0")

  def __call__(self, q, p, q_reason, step, teacher=None):
    group = self.group_size_of(q, p)
    cos = similarity_scores(q, p, 1.0)
    positive_at = jnp.arange(q.shape[0]) * group
    positive = cos[jnp.arange(q.shape[0]), positive_at]
    negative = jnp.max(jnp.where(jnp.arange(p.shape[0])[None] == positive_at[:, None], -jnp.inf, cos), axis=1)
    hinge = jax.nn.relu(negative - positive + self.margin)
    return jnp.mean(hinge), {"active_fraction": jnp.mean(hinge > 0)}


@pytest.fixture
def registered(monkeypatch):
  monkeypatch.setitem(losses.LOSSES, PositiveMargin.kind, PositiveMargin)


def config_with_margin(margin: float):
  c = paper_config()
  c.model.hf_config.update(TINY)
  c.loss.kind = "positive_margin"
  c.loss.margin = margin  # the one recipe key a new setting needs
  return c


def test_a_registered_loss_is_built_validated_and_trained_with(registered):
  validate(config_with_margin(0.3), device_count=1)
  with pytest.raises(ConfigError, match=r"^loss.margin=-1.0: must be >= 0$"):
    validate(config_with_margin(-1.0), device_count=1)
  loss = make_loss(config_with_margin(0.3).loss)
  assert loss == PositiveMargin(temperature=0.02, margin=0.3)

  # The step encodes no reasoning queries for it (no reason_* inputs needed) and logs what it reports; one SGD
  # step with lr 1 moves the parameters by exactly the loss's gradient, taken here independently of the step.
  model = init_decoder(config_from_hf_dict(TINY), seed=0)
  tx = optax.sgd(1.0)
  graphdef, state = init_train_state(model, tx)
  batch = {k: v for k, v in make_batch().items() if not k.startswith("reason")}
  new_state, metrics = jax.jit(make_train_step(graphdef, tx, loss))(state, batch, jax.random.key(0))
  assert set(metrics) == {"loss", "grad_norm", "active_fraction"}

  from flax import nnx

  from rejax.models.pooling import embed

  def reference_loss(trainable):
    model = nnx.merge(graphdef, trainable, state.frozen)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 3)
    q = embed(model, batch["query_ids"], batch["query_mask"], keys[0])
    p = embed(model, batch["passage_ids"], batch["passage_mask"], keys[1])
    return loss(q, p, None, 0)[0]

  value, grads = jax.value_and_grad(reference_loss)(state.trainable)
  np.testing.assert_allclose(metrics["loss"], value, rtol=1e-6)
  assert 0 < float(metrics["loss"]) and metrics["active_fraction"] > 0
  assert q_rows_per_group_ok(batch)
  np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-5)
  moved = jax.tree.map(lambda a, b: a - b, state.trainable, new_state.trainable)
  for got, want in zip(jax.tree.leaves(moved), jax.tree.leaves(grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def q_rows_per_group_ok(batch) -> bool:
  return batch["passage_ids"].shape[0] == B * G and batch["query_ids"].shape[0] == B


def test_a_run_refuses_a_sliding_window_shorter_than_its_inputs_naming_the_key():
  """Mistral's window: a run whose longest input fits in it is exact (accepted); a longer one is refused with one
  line naming the window and the config key, before any weight is read (run_inputs.build_model, rejax plan)."""
  from rejax.train.components import check_against_model, components
  from tests.tiny_models import TINY_CONFIGS, VOCAB_SIZE

  hf = {**TINY_CONFIGS["mistral"], "vocab_size": VOCAB_SIZE["mistral"], "sliding_window": 256}
  config = paper_config()
  config.data.max_query_length, config.data.max_passage_length = 128, 256
  check_against_model(config_from_hf_dict(hf, **components(config).decoder_runtime), config)
  config.data.max_passage_length = 512
  with pytest.raises(ConfigError) as error:
    check_against_model(config_from_hf_dict(hf, **components(config).decoder_runtime), config)
  assert str(error.value) == ("model config.json sliding_window=256 is shorter than data.max_passage_length 512: "
                              "rejax attends over whole sequences only")


@pytest.mark.parametrize("attention,pooling,causal,pooled", [("", "", True, "last_token"),
                                                              ("bidirectional", "mean", False, "mean"),
                                                              ("causal", "last_token", True, "last_token")])
def test_the_embedder_settings_reach_the_decoder_config(attention, pooling, causal, pooled):
  """model.attention / model.pooling override config.json's is_causal and the default pooling; "" keeps them."""
  from rejax.train.components import components

  config = paper_config()
  config.model.attention, config.model.pooling = attention, pooling
  cfg = config_from_hf_dict(TINY, **components(config).decoder_runtime)
  assert (cfg.causal, cfg.pooling) == (causal, pooled)
  bidirectional = config_from_hf_dict({**TINY, "is_causal": False}, **components(config).decoder_runtime)
  assert bidirectional.causal is (False if attention != "causal" else True)
