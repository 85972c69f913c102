"""The embedder settings of DecoderConfig: bidirectional attention (causal=False) and mean pooling, on padded and
packed rows, with XLA and splash attention, and through an export to sentence-transformers."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rejax.data.packing import pack
from rejax.data.text import load_tokenizer
from rejax.eval.encode import Encoder
from rejax.eval.st_encoder import is_baseline_dir
from rejax.hf.export import export_model
from rejax.hf.load import load_decoder, model_config
from rejax.hf.sentence_transformers_layout import read_pooling
from rejax.models import config_from_hf_dict, init_decoder
from rejax.models.pooling import embed, embed_packed
from tests.test_parity import TEXTS, padded_batch

TINY = dict(model_type="qwen2", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6)
SETTINGS = [(True, "last_token"), (False, "last_token"), (True, "mean"), (False, "mean")]


def random_batch(rows: int, length: int, seed: int = 0):
  """Right-padded random token rows of mixed lengths (the first one full)."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, length + 1, rows)
  lengths[0] = length
  mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
  return np.where(mask, rng.integers(1, TINY["vocab_size"], (rows, length)), 0).astype(np.int32), mask


def transformers_mean(torch_model, ids, mask) -> np.ndarray:
  """sentence-transformers' mean_tokens on transformers' hidden states, L2-normalised (numpy, float64)."""
  with torch.no_grad():
    hidden = torch_model(input_ids=torch.tensor(ids, dtype=torch.long),
                         attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  mean = (hidden * mask[..., None]).sum(1).astype(np.float64) / mask.sum(1, keepdims=True)
  return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mean_pooling_is_the_mean_of_transformers_real_tokens(tiny_model_factory, side):
  model_dir, torch_model = tiny_model_factory("qwen2_bidirectional")
  ids, mask = padded_batch(load_tokenizer(model_dir), side)
  model, cfg = load_decoder(model_dir, pooling="mean")
  assert (cfg.pooling, cfg.causal) == ("mean", False)
  emb = np.asarray(embed(model, jnp.asarray(ids), jnp.asarray(mask)))
  assert (emb * transformers_mean(torch_model, ids, mask)).sum(-1).min() >= 0.99999


@pytest.mark.parametrize("causal,pooling", SETTINGS)
def test_packed_rows_equal_padded_rows(causal, pooling):
  model = init_decoder(config_from_hf_dict(TINY, causal=causal, pooling=pooling), seed=1)
  ids, mask = random_batch(12, 48)
  want = np.asarray(embed(model, ids, mask))
  packed = pack(ids, mask, 0)
  assert packed.rows < len(ids)  # several sequences share a row
  slots = np.asarray(embed_packed(model, packed.ids, packed.segments, packed.last))
  got = slots.reshape(-1, slots.shape[-1])[packed.index]
  np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("causal,pooling", [s if s in ((True, "last_token"), (False, "mean")) else  # the others: slow
                                            pytest.param(*s, marks=pytest.mark.slow) for s in SETTINGS])
def test_packed_gradients_are_finite_and_equal_padded_ones(causal, pooling):
  """An empty slot of a packed row (mean pooling gives it a zero vector) has no gradient: the weights' gradient of a
  loss on the real sequences is finite and equals the padded rows' (the NaN of |x|' at x = 0 must not leak in)."""
  import jax
  from flax import nnx

  model = init_decoder(config_from_hf_dict(TINY, causal=causal, pooling=pooling), seed=1)
  ids, mask = random_batch(12, 48)
  packed = pack(ids, mask, 0)
  assert np.any(np.asarray(packed.last) == 0) or packed.rows * packed.last.shape[1] > len(ids)  # an empty slot
  target = np.random.default_rng(3).standard_normal((len(ids), TINY["hidden_size"])).astype(np.float32)
  graphdef, params = nnx.split(model)

  def padded_loss(params):
    return jnp.sum(embed(nnx.merge(graphdef, params), ids, mask) * target)

  def packed_loss(params):
    slots = embed_packed(nnx.merge(graphdef, params), packed.ids, packed.segments, packed.last)
    return jnp.sum(slots.reshape(-1, slots.shape[-1])[packed.index] * target)

  want, got = jax.grad(padded_loss)(params), jax.grad(packed_loss)(params)
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    assert np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("packed", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["padded", "packed"])
def test_bidirectional_splash_equals_xla(packed):
  """The splash kernel's full mask with the padding (or the packed segments) as segment ids: XLA's bidirectional
  attention at every real position (the same Pallas kernel, interpreted on CPU)."""
  ids, mask = random_batch(6, 40, seed=2)
  rows = pack(ids, mask, 0) if packed else None
  results = {}
  for impl in (None, "splash_interpret"):
    model = init_decoder(config_from_hf_dict(TINY, causal=False, pooling="mean", attention_impl=impl), seed=3)
    if packed:
      hidden = np.asarray(model(rows.ids, rows.segments, packed=True)) * (rows.segments > 0)[..., None]
      results[impl] = hidden, np.asarray(embed_packed(model, rows.ids, rows.segments, rows.last))
    else:
      hidden = np.asarray(model(ids, mask)) * mask[..., None]
      results[impl] = hidden, np.asarray(embed(model, ids, mask))
  for got, want in zip(results["splash_interpret"], results[None]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_mean_pooling_bidirectional_export_encodes_as_sentence_transformers(tiny_model_factory, tmp_path):
  """An export of a bidirectional mean-pooling model: config.json says `is_causal: false`, 1_Pooling/ says
  mean_tokens; transformers' hidden states, sentence-transformers' embeddings and `rejax encode` on the export (which
  reads the pooling from 1_Pooling/) agree with the in-memory model."""
  from sentence_transformers import SentenceTransformer
  from transformers import AutoModel

  model_dir, _ = tiny_model_factory("qwen2_bidirectional")
  model, cfg = load_decoder(model_dir, pooling="mean")
  out = export_model(model, tmp_path / "export", base_dir=model_dir, max_seq_length=40)
  assert json.loads((out / "config.json").read_text())["is_causal"] is False
  assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
  assert read_pooling(out) == "mean" and not is_baseline_dir(out)

  exported = AutoModel.from_pretrained(out, dtype=torch.float32).eval()
  ids, mask = padded_batch(load_tokenizer(out), "right")
  ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
  real = mask.astype(bool)
  with torch.no_grad():
    theirs = exported(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  assert np.abs(theirs - ours)[real].max() <= 1e-5

  st = SentenceTransformer(str(out), device="cpu").encode(TEXTS, batch_size=2)
  encoder = Encoder.from_pretrained(out, max_length=40, batch_size=4)
  assert model_config(out).pooling == "mean"
  rejax = encoder.encode(TEXTS, progress=False)
  in_memory = Encoder(model, load_tokenizer(model_dir), max_length=40, batch_size=4).encode(TEXTS, progress=False)
  assert (st * rejax).sum(-1).min() >= 0.9999
  assert (in_memory * rejax).sum(-1).min() >= 0.99999


def test_a_pooling_rejax_does_not_compute_is_left_to_sentence_transformers(tiny_model_factory, tmp_path):
  model_dir, _ = tiny_model_factory("qwen2")
  model, _ = load_decoder(model_dir)
  out = export_model(model, tmp_path / "export", base_dir=model_dir)
  assert read_pooling(out) == "last_token" and not is_baseline_dir(out)
  pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
  (out / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_lasttoken": False,
                                                             "pooling_mode_cls_token": True}))
  with pytest.raises(ValueError, match="pooling cls_token; rejax computes lasttoken or mean_tokens only"):
    read_pooling(out)
  assert is_baseline_dir(out)
