"""Tiny random checkpoints of every family (Qwen3, Llama-3.1, Qwen2, Mistral) built with transformers, saved as
real HF directories."""

from __future__ import annotations

import pathlib

import pytest

# The real families' embedding sizes (Qwen3 pads its 151,669 tokens to 151,936, as its config.json does). Mistral's
# own tokenizer is not available offline: its tiny models use Llama-3.1's, and its embedding size.
VOCAB_SIZE = {"qwen3": 151936, "llama": 128256, "qwen2": 151936, "mistral": 128256}
TOKENIZER = {"qwen3": "qwen3", "qwen2": "qwen3", "llama": "llama-3.1", "mistral": "llama-3.1"}

# Architectures the parity tests cover; each is small but exercises one feature of the real families.
TINY_CONFIGS = {
    # head_dim (24) != hidden/heads (16), tied embeddings, GQA 4:2, a bias on the attention projections.
    "qwen3_tied": dict(model_type="qwen3", hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=True,
                       attention_bias=True, rms_norm_eps=1e-6),
    # untied embeddings, GQA 8:2 (4 queries per KV head), the real family's rope theta.
    "qwen3_untied": dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}),
    # Llama-3.1: llama3 rope scaling, theta 500000, eps 1e-5.
    "llama31": dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                    max_position_embeddings=131072,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192}),
    # Qwen2: a bias on q, k and v (always) and none on o, no q/k norm, untied, GQA 4:2.
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}),
    # gte-Qwen2 style: the same with bidirectional attention (config.json `is_causal: false`), tied embeddings.
    "qwen2_bidirectional": dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                                tie_word_embeddings=True, is_causal=False),
    # Mistral: GQA 4:1, head_dim (32) != hidden/heads (16), and its 4096-token sliding window (longer than any text
    # here, so attention over the whole sequence is exact).
    "mistral": dict(model_type="mistral", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-5,
                    sliding_window=4096),
}


def make_tiny_model(name: str, tokenizer_dir: pathlib.Path, out_dir: pathlib.Path, *, seed: int = 0,
                    **save_kwargs):
  """Save a seeded random tiny model + the real tokenizer to `out_dir`; return the torch model (eval)."""
  import torch
  from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

  tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
  spec = dict(TINY_CONFIGS[name])
  model_type = spec.pop("model_type")
  config = AutoConfig.for_model(model_type, vocab_size=VOCAB_SIZE[model_type],
                                eos_token_id=tokenizer.eos_token_id, attn_implementation="eager", **spec)
  torch.manual_seed(seed)
  model = AutoModelForCausalLM.from_config(config)
  with torch.no_grad():  # RMSNorm weights start at 1: perturb them so a wrong norm cannot hide
    for pname, param in model.named_parameters():
      if "norm" in pname or pname.endswith("bias"):
        param.add_(0.1 * torch.randn_like(param))
  model.save_pretrained(out_dir, **save_kwargs)
  tokenizer.save_pretrained(out_dir)
  return model.eval()


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory, qwen3_tokenizer_dir, llama31_tokenizer_dir):
  """`make(name) -> (dir, torch base model)`, cached per name for the session."""
  cache: dict[str, tuple[pathlib.Path, object]] = {}
  tokenizer_dirs = {"qwen3": qwen3_tokenizer_dir, "llama-3.1": llama31_tokenizer_dir}

  def make(name: str):
    if name not in cache:
      tokenizer_dir = tokenizer_dirs[TOKENIZER[TINY_CONFIGS[name]["model_type"]]]
      out = tmp_path_factory.mktemp(name)
      model = make_tiny_model(name, tokenizer_dir, out)
      cache[name] = (out, model.model)
    return cache[name]

  return make
