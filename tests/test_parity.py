"""The Flax decoder computes what transformers (PyTorch) computes from the same checkpoint."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rejax.data.text import format_query, load_tokenizer, pad_batch, tokenize
from rejax.hf.load import load_decoder
from rejax.models.pooling import embed
from tests.tiny_models import TINY_CONFIGS

TEXTS = [
    format_query("Why do some cells divide faster than others, and what limits it?",
                 "Given a Biology post, retrieve relevant passages that help answer the post."),
    "Mitosis is the part of the cell cycle in which replicated chromosomes are separated into two nuclei.",
    "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n        if target - x in seen:"
    "\n            return [seen[target - x], i]\n        seen[x] = i",
    "Short.",
    "Le théorème de Pythagore: a² + b² = c² — 直角三角形",
]


def padded_batch(tokenizer, side: str, max_length: int = 128):
  """Real token ids of TEXTS, padded right or left; pad ids are arbitrary (masked)."""
  seqs = tokenize(tokenizer, TEXTS, max_length)
  ids, mask = pad_batch(seqs, max(map(len, seqs)), pad_id=tokenizer.eos_token_id)
  if side == "left":
    shift = mask.shape[1] - mask.sum(1)
    ids = np.stack([np.roll(row, s) for row, s in zip(ids, shift)])
    mask = np.stack([np.roll(row, s) for row, s in zip(mask, shift)])
  return ids, mask


def torch_reference(base_model, ids, mask):
  """HF final hidden states [B, T, D] and last-real-token embeddings [B, D] (normalised in numpy)."""
  with torch.no_grad():
    hidden = base_model(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  last = np.array([np.flatnonzero(row)[-1] for row in mask])
  pooled = hidden[np.arange(len(ids)), last].astype(np.float64)
  return hidden, pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", list(TINY_CONFIGS))  # every tiny model, so every family
def test_fp32_matches_transformers(tiny_model_factory, name, side):
  model_dir, torch_model = tiny_model_factory(name)
  ids, mask = padded_batch(load_tokenizer(model_dir), side)
  hidden_ref, emb_ref = torch_reference(torch_model, ids, mask)

  model, _ = load_decoder(model_dir)
  hidden = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
  emb = np.asarray(embed(model, jnp.asarray(ids), jnp.asarray(mask)))

  real = mask.astype(bool)
  assert np.abs(hidden - hidden_ref)[real].max() <= 1e-4
  assert (emb * emb_ref).sum(-1).min() >= 0.99999


@pytest.mark.parametrize("name", ["qwen3_tied", "llama31"])
def test_bf16_compute_close_to_transformers_fp32(tiny_model_factory, name):
  model_dir, torch_model = tiny_model_factory(name)
  ids, mask = padded_batch(load_tokenizer(model_dir), "right")
  _, emb_ref = torch_reference(torch_model, ids, mask)
  for param_dtype in ("float32", "bfloat16"):  # training (fp32 master) and inference (bf16 weights)
    model, _ = load_decoder(model_dir, param_dtype=param_dtype, dtype="bfloat16")
    emb = np.asarray(embed(model, jnp.asarray(ids), jnp.asarray(mask)))
    assert emb.dtype == np.float32
    assert (emb * emb_ref).sum(-1).min() >= 0.999


def test_bidirectional_config_attends_both_ways_as_transformers_does(tiny_model_factory):
  """config.json `is_causal: false` (gte-Qwen2 style) gives causal=False, and transformers 5.23 then attends both
  ways too (masking_utils builds a bidirectional mask): the first token's state depends on the tokens after it."""
  model_dir, torch_model = tiny_model_factory("qwen2_bidirectional")
  assert torch_model.config.is_causal is False
  ids, mask = padded_batch(load_tokenizer(model_dir), "right")
  hidden_ref, _ = torch_reference(torch_model, ids, mask)
  bidirectional, cfg = load_decoder(model_dir)
  causal, _ = load_decoder(model_dir, causal=True)
  assert cfg.causal is False
  hidden = np.asarray(bidirectional(jnp.asarray(ids), jnp.asarray(mask)))
  first_causal = np.asarray(causal(jnp.asarray(ids), jnp.asarray(mask)))[:, 0]
  assert np.abs(hidden[:, 0] - hidden_ref[:, 0]).max() <= 1e-4
  assert np.abs(first_causal - hidden_ref[:, 0]).max() > 1e-2  # the test would notice causal attention


def test_left_and_right_padding_give_the_same_embeddings(tiny_model_factory):
  model_dir, _ = tiny_model_factory("llama31")
  tokenizer = load_tokenizer(model_dir)
  model, _ = load_decoder(model_dir)
  right = embed(model, *map(jnp.asarray, padded_batch(tokenizer, "right")))
  left = embed(model, *map(jnp.asarray, padded_batch(tokenizer, "left")))
  np.testing.assert_allclose(np.asarray(left), np.asarray(right), atol=1e-6)


@pytest.mark.slow
def test_smollm2_135m_matches_transformers(smollm2_dir):
  """The real 135M model. Its hidden states reach |h| ~ 50, where transformers' own fp32 result is 1.1e-4
  away from exact; so the 1e-4 bound is taken against transformers in float64 (the exact answer) and the
  fp32 comparison is bounded relative to |h|."""
  from transformers import AutoModel

  reference = {dt: AutoModel.from_pretrained(smollm2_dir, dtype=dt, attn_implementation="eager").eval()
               for dt in (torch.float32, torch.float64)}
  tokenizer = load_tokenizer(smollm2_dir)
  model, cfg = load_decoder(smollm2_dir)
  assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_key_value_heads) == (30, 576, 3)
  for side in ("right", "left"):
    ids, mask = padded_batch(tokenizer, side)
    real = mask.astype(bool)
    hidden = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
    emb = np.asarray(embed(model, jnp.asarray(ids), jnp.asarray(mask)))
    # (transformers' float64 eager attention yields NaN for left padding: the fp32 run is the reference there)
    for dt, ref in reference.items() if side == "right" else [(torch.float32, reference[torch.float32])]:
      hidden_ref, emb_ref = torch_reference(ref, ids, mask)
      diff = np.abs(hidden - hidden_ref)[real].max()
      rel = diff / np.abs(hidden_ref)[real].max()
      cos = (emb * emb_ref).sum(-1).min()
      print(f"SmolLM2-135M {side} padding vs transformers {dt}: max |hidden diff| = {diff:.3g} "
            f"({rel:.2g} of max |h|), min cosine = {cos:.8f}")
      assert diff <= 1e-4 if dt == torch.float64 else rel <= 1e-5
      assert cos >= 0.99999
  bf16, _ = load_decoder(smollm2_dir, dtype="bfloat16")
  ids, mask = padded_batch(tokenizer, "right")
  emb = np.asarray(embed(bf16, jnp.asarray(ids), jnp.asarray(mask)))
  cos = (emb * torch_reference(reference[torch.float32], ids, mask)[1]).sum(-1).min()
  print(f"SmolLM2-135M bf16 compute: min cosine = {cos:.6f}")
  assert cos >= 0.999
