"""The family table (rejax/models/families.py): every row reads its config.json spelling and export writes it back;
the shipped hub configs read; a sliding window shorter than the length asked for is refused in one line."""

import json
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from rejax.cli import main
from rejax.hf.export import architecture_fields
from rejax.models import FAMILIES, config_from_hf_dict, init_decoder, window_problem
from rejax.models.config import shipped_hf_config
from tests.test_encode_cli import TEXTS, transformers_embeddings, write_jsonl

TINY = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6)

# Per family, configs that exercise each of its own keys (biases, sliding window, attention direction).
SPELLINGS = {
    "qwen3": [{}, {"attention_bias": True, "use_sliding_window": True, "sliding_window": 256}],
    "llama": [{}, {"attention_bias": True, "mlp_bias": True, "is_causal": False}],
    "qwen2": [{}, {"use_sliding_window": True, "sliding_window": 1024, "is_causal": False}],
    "mistral": [{"sliding_window": None}, {"sliding_window": 4096}],
}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_export_fields_read_back_as_the_same_config(model_type):
  assert set(SPELLINGS) == set(FAMILIES)  # a new row needs its spellings here
  for spelling in SPELLINGS[model_type]:
    cfg = config_from_hf_dict({"model_type": model_type, **TINY, **spelling})
    assert config_from_hf_dict({"model_type": model_type, **architecture_fields(cfg)}) == cfg


def test_every_family_has_a_tiny_model_for_the_parity_tests():
  """tests/test_parity.py compares every tiny model with transformers: a new row of FAMILIES needs one there."""
  from tests.tiny_models import TINY_CONFIGS

  assert {c["model_type"] for c in TINY_CONFIGS.values()} == set(FAMILIES)


def test_each_family_reads_its_own_spelling():
  read = lambda model_type, **keys: config_from_hf_dict({"model_type": model_type, **TINY, **keys})  # noqa: E731
  qwen2 = read("qwen2", attention_bias=False, sliding_window=4096, use_sliding_window=False)
  assert (qwen2.qkv_bias, qwen2.o_bias, qwen2.mlp_bias, qwen2.qk_norm, qwen2.sliding_window) == (True, False, False,
                                                                                                  False, None)
  llama = read("llama", attention_bias=True, mlp_bias=True)
  assert (llama.qkv_bias, llama.o_bias, llama.mlp_bias, llama.qk_norm) == (True, True, True, False)
  qwen3 = read("qwen3", attention_bias=True, mlp_bias=True)  # Qwen3 has no mlp_bias key in transformers
  assert (qwen3.qkv_bias, qwen3.o_bias, qwen3.mlp_bias, qwen3.qk_norm) == (True, True, False, True)
  assert read("qwen3", sliding_window=4096).sliding_window is None  # the window needs use_sliding_window
  assert read("mistral", sliding_window=4096).sliding_window == 4096
  assert read("mistral", is_causal=False).causal is False
  overridden = config_from_hf_dict({"model_type": "mistral", **TINY, "is_causal": False}, causal=True)
  assert overridden.causal is True  # a run may override config.json
  with pytest.raises(ValueError, match="unsupported hidden_act 'gelu'; only 'silu'"):
    read("mistral", hidden_act="gelu")


def test_export_refuses_what_a_family_cannot_say():
  with pytest.raises(ValueError, match="model_type='qwen2' has o_bias=False in transformers"):
    architecture_fields(config_from_hf_dict({"model_type": "qwen2", **TINY}).replace(o_bias=True))
  with pytest.raises(ValueError, match="model_type='llama' sets every projection under 'attention_bias' alike"):
    architecture_fields(config_from_hf_dict({"model_type": "llama", **TINY}).replace(qkv_bias=True))
  with pytest.raises(ValueError, match="model_type='llama' has no sliding window in transformers"):
    architecture_fields(config_from_hf_dict({"model_type": "llama", **TINY}).replace(sliding_window=64))


@pytest.mark.parametrize("hub_id,numbers", [
    ("Alibaba-NLP/gte-Qwen2-7B-instruct", dict(model_type="qwen2", hidden_size=3584, num_hidden_layers=28,
                                              num_key_value_heads=4, head_dim=128, qkv_bias=True, o_bias=False,
                                              sliding_window=None, causal=False)),
    ("intfloat/e5-mistral-7b-instruct", dict(model_type="mistral", hidden_size=4096, num_hidden_layers=32,
                                            num_key_value_heads=8, head_dim=128, qkv_bias=False, o_bias=False,
                                            sliding_window=4096, causal=True)),
])
def test_shipped_hub_configs_read(hub_id, numbers):
  cfg = config_from_hf_dict(shipped_hf_config(hub_id))
  assert {key: getattr(cfg, key) for key in numbers} == numbers


def test_window_problem_is_one_line_naming_window_and_length():
  cfg = config_from_hf_dict({"model_type": "mistral", **TINY, "sliding_window": 4096})
  assert window_problem(cfg, 4096) is None and window_problem(cfg, 512) is None
  assert window_problem(cfg, 8192) == ("model config.json sliding_window=4096 is shorter than --max-length 8192: "
                                       "rejax attends over whole sequences only")
  assert window_problem(cfg.replace(sliding_window=None), 10**6) is None
  assert "max_passage_length 8192" in window_problem(cfg, 8192, what="max_passage_length")


def test_decoder_refuses_rows_longer_than_the_window():
  model = init_decoder(config_from_hf_dict({"model_type": "mistral", **TINY, "sliding_window": 16}))
  ids = jnp.ones((1, 16), jnp.int32)
  assert model(ids, jnp.ones_like(ids)).shape == (1, 16, 32)
  ids = jnp.ones((1, 17), jnp.int32)
  with pytest.raises(ValueError, match="rows of 17 tokens exceed the model's sliding_window=16"):
    model(ids, jnp.ones_like(ids))


def encode_args(model_dir, tmp_path, max_length):
  write_jsonl(tmp_path / "in.jsonl", TEXTS)
  return ["encode", "--model", str(model_dir), "--input", str(tmp_path / "in.jsonl"),
          "--output", str(tmp_path / "out.npy"), "--max-length", str(max_length), "--batch-size", "4"]


def test_encode_refuses_a_window_shorter_than_max_length(tiny_model_factory, tmp_path):
  src, _ = tiny_model_factory("mistral")
  model_dir = shutil.copytree(src, tmp_path / "model")
  config = json.loads((model_dir / "config.json").read_text())
  (model_dir / "config.json").write_text(json.dumps({**config, "sliding_window": 64}))
  line = ("model config.json sliding_window=64 is shorter than --max-length 128: "
          "rejax attends over whole sequences only")
  with pytest.raises(SystemExit, match=re.escape(line) + "$"):
    main(encode_args(model_dir, tmp_path, 128))
  assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("name", ["mistral", "qwen2", "qwen2_bidirectional"])
def test_encode_matches_transformers(tiny_model_factory, tmp_path, name):
  """Mistral's 4096-token window is longer than --max-length: accepted, and exact."""
  from rejax.data.text import load_tokenizer

  model_dir, torch_model = tiny_model_factory(name)
  main(encode_args(model_dir, tmp_path, 48))
  got = np.load(tmp_path / "out.npy")
  want = transformers_embeddings(torch_model, load_tokenizer(model_dir), TEXTS, 48)
  assert got.shape == (len(TEXTS), 64)
  assert (got * want).sum(1).min() >= 0.99999
