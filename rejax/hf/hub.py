"""Resolve a model argument: a local Hugging Face directory, or a hub id fetched with snapshot_download."""

from __future__ import annotations

import pathlib

from rejax.errors import InputError

# What an embedding model needs from a hub repo: config, weights, tokenizer. Not *.bin, not GGUF.
_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "1_Pooling/*", "2_Normalize/*"]


def resolve_model_dir(model: str | pathlib.Path) -> pathlib.Path:
  """A local directory holding the model: `model` itself if it is one, `asset:NAME` from rejax.assets
  (the offline tokenizers and SmolLM2), else its hub snapshot."""
  if str(model).startswith("asset:"):
    from rejax import assets

    name = str(model).removeprefix("asset:")
    if name not in assets.ASSETS:
      raise InputError(f"{model}: unknown asset {name!r}; known: {', '.join(assets.ASSETS)}")
    return assets.fetch(name)
  path = pathlib.Path(model).expanduser()
  if path.is_dir():
    return path
  name = str(model)
  if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
    raise FileNotFoundError(f"{name}: not a model directory (and not a hub id of the form 'org/name')")
  from huggingface_hub import snapshot_download  # only when a hub id is really asked for

  try:
    return pathlib.Path(snapshot_download(name, allow_patterns=_PATTERNS))
  except Exception as e:
    raise RuntimeError(
        f"could not fetch {name!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
        "Offline? Pass a local model directory instead, or download it on a connected machine "
        f"(`huggingface-cli download {name}`) and point HF_HOME at that cache."
    ) from e
