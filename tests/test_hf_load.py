"""Loading HF checkpoints: layouts and dtypes that occur in the wild, and errors that name the tensor."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import CheckpointError, load_decoder
from tests.tiny_models import make_tiny_model


@pytest.fixture
def llama_dir(tiny_model_factory, tmp_path):
  """A private copy of the tiny Llama checkpoint that a test may damage."""
  src, _ = tiny_model_factory("llama31")
  return shutil.copytree(src, tmp_path / "model")


def rewrite_tensors(model_dir, edit):
  path = model_dir / "model.safetensors"
  tensors = load_file(path)
  edit(tensors)
  save_file(tensors, path, metadata={"format": "pt"})


def reference_output(model_dir):
  model, _ = load_decoder(model_dir)
  ids = jnp.arange(12, dtype=jnp.int32).reshape(2, 6) + 100
  return np.asarray(model(ids, jnp.ones_like(ids)))


def test_sharded_index_and_bf16_storage_load_the_same_weights(tiny_model_factory, qwen3_tokenizer_dir, tmp_path):
  single, torch_base = tiny_model_factory("qwen3_untied")
  sharded = tmp_path / "sharded"
  make_tiny_model("qwen3_untied", qwen3_tokenizer_dir, sharded, max_shard_size="1MB")
  assert (sharded / "model.safetensors.index.json").is_file()
  assert len(list(sharded.glob("*.safetensors"))) > 2
  np.testing.assert_array_equal(reference_output(sharded), reference_output(single))

  bare = tmp_path / "bare"  # a base-model checkpoint: tensor names without the "model." prefix
  torch_base.save_pretrained(bare)
  np.testing.assert_array_equal(reference_output(bare), reference_output(single))

  import torch
  from transformers import AutoModel

  bf16 = tmp_path / "bf16"
  AutoModel.from_pretrained(single, dtype=torch.bfloat16).save_pretrained(bf16)
  model, _ = load_decoder(bf16)  # stored bf16, loaded into fp32 parameters
  assert model.layers.mlp.up_proj.kernel[...].dtype == jnp.float32
  stored = load_file(bf16 / "model.safetensors")["layers.1.mlp.up_proj.weight"]
  np.testing.assert_array_equal(np.asarray(model.layers.mlp.up_proj.kernel[...][1]), stored.astype(np.float32).T)


def test_missing_tensor_is_named(llama_dir):
  rewrite_tensors(llama_dir, lambda t: t.pop("model.layers.2.self_attn.k_proj.weight"))
  with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.2\.self_attn\.k_proj\.weight'"):
    load_decoder(llama_dir)


def test_misshapen_tensor_is_named(llama_dir):
  def shrink(t):
    t["model.layers.0.mlp.down_proj.weight"] = t["model.layers.0.mlp.down_proj.weight"][:, :10]
  rewrite_tensors(llama_dir, shrink)
  with pytest.raises(CheckpointError, match=r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape \(64, 10\), "
                                             r"expected \(64, 96\)"):
    load_decoder(llama_dir)


def test_unexpected_tensor_is_named(llama_dir):
  rewrite_tensors(llama_dir, lambda t: t.update({"model.layers.0.self_attn.extra.weight": np.zeros(3, np.float32)}))
  with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.extra\.weight'"):
    load_decoder(llama_dir)


def test_truncated_file_is_named(llama_dir):
  path = llama_dir / "model.safetensors"
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.raises(CheckpointError, match="model.safetensors"):
    load_decoder(llama_dir)


def test_unsupported_model_type_lists_the_supported_ones(llama_dir):
  config = json.loads((llama_dir / "config.json").read_text())
  config["model_type"] = "gemma"
  (llama_dir / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"unsupported model_type 'gemma'; supported: llama, mistral, qwen2, qwen3"):
    load_decoder(llama_dir)


def test_hub_id_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HOME", str(tmp_path))
  with pytest.raises(RuntimeError, match=r"could not fetch 'Qwen/Qwen3-8B' from the Hugging Face hub.*local model"):
    resolve_model_dir("Qwen/Qwen3-8B")
  with pytest.raises(FileNotFoundError, match="not a model directory"):
    resolve_model_dir(str(tmp_path / "no" / "such" / "dir"))


@pytest.mark.parametrize("name", ["qwen3_tied", "llama31", "qwen2", "mistral"])
def test_parameters_are_named_after_hf_modules(tiny_model_factory, name):
  """Every family's parameters, biases included (Qwen2: q, k, v and not o), are the transformers model's."""
  from flax import nnx

  model_dir, torch_model = tiny_model_factory(name)
  model, _ = load_decoder(model_dir)
  ours = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  theirs = {n.replace("layers.0.", "layers.") for n, _ in torch_model.named_parameters()
            if not n.startswith("layers.") or n.startswith("layers.0.")}
  as_hf = {n.replace(".kernel", ".weight").replace("embed_tokens.embedding", "embed_tokens.weight") for n in ours}
  assert as_hf == theirs
