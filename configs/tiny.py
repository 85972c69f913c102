"""The embedded default: a tiny random Qwen3-architecture embedder trained on the repo's sample data
(sample_data/reason_embed: 3 domains, 56 records) on CPU in about a minute.

COMMAND:
  rejax train --config configs/tiny.py --workdir runs/tiny
  rejax train --config configs/tiny.py:smollm2 --workdir runs/tiny-smollm2     # the real SmolLM2-135M, LoRA

Expected: about a minute on 2 CPU cores, a third of it compiling the one step shape (the run prints both); the
loss falls noisily from about 5 at step 1 toward 2 over the 40 steps (a random 2-layer model on 56
records). `runs/tiny/export` then loads with transformers and sentence-transformers.
"""

from __future__ import annotations

import pathlib

import ml_collections

from rejax.train.recipe import paper_config

DATA = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "reason_embed"

TINY_QWEN3 = {  # Qwen3 layout (qk-norm, GQA, tied embeddings) at toy size, with the real Qwen3 vocabulary
  "model_type": "qwen3", "architectures": ["Qwen3Model"], "vocab_size": 151936, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 16, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "max_position_embeddings": 4096, "tie_word_embeddings": True, "attention_bias": False,
  "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "float32",
}


def get_config(arg: str = ""):
  c = paper_config()
  c.total_steps = 40
  c.ckpt_every = 10
  c.seed = 0
  c.model.dtype = "float32"
  c.model.remat = "none"
  if arg == "smollm2":
    c.model.path = "asset:smollm2"
    c.optim.lr = 1e-4
  elif arg:
    raise ValueError(f"configs/tiny.py: unknown arg {arg!r}; use '' (tiny random Qwen3) or 'smollm2'")
  else:
    c.model.hf_config.update(TINY_QWEN3)
    c.model.tokenizer = "asset:qwen3-tokenizer"
    c.model.lora.enabled = False  # a random model learns through all its weights
    c.optim.lr = 1e-3
  c.data.path = str(DATA)
  c.data.domains = ml_collections.ConfigDict({"biology": (4, 4), "earth_science": (4, 4), "economics": (4, 4)})
  c.data.max_query_length = 64
  c.data.max_passage_length = 64
  c.data.min_bucket = 64  # one padded length (packing may still cut rows shorter: a few compiles)
  c.data.num_workers = 0
  c.loss.ri_start_step = 10
  c.optim.warmup_ratio = 0.1
  return c
