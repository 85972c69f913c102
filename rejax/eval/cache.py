"""Embeddings cached on disk per (model weights, texts, settings), so a re-run does not re-encode a corpus."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
from typing import Callable, Sequence

import numpy as np


def save_npy_atomic(path: pathlib.Path, array: np.ndarray) -> None:
  """Write `array` to `path` via a temporary file, so a crash never leaves a half-written output."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "wb") as f:
    np.save(f, array)
  os.replace(tmp, path)


def default_cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("REJAX_CACHE", pathlib.Path.home() / ".cache" / "rejax")) / "embeddings"


def model_fingerprint(model_dir: pathlib.Path) -> list:
  """What identifies a model's weights cheaply: config.json and each weight file's name, size and mtime."""
  files = sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]
  return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]


def cache_key(model_dir: pathlib.Path, texts: Sequence[str], **settings) -> str:
  digest = hashlib.sha256()
  digest.update(json.dumps([str(model_dir.resolve()), model_fingerprint(model_dir), settings],
                           sort_keys=True, default=str).encode())
  for text in texts:
    digest.update(hashlib.sha256(text.encode()).digest())
  return digest.hexdigest()[:32]


def cached(cache_dir: pathlib.Path | None, key: str, compute: Callable[[], np.ndarray], what: str) -> np.ndarray:
  """`compute()`, or its earlier result stored under `key` in `cache_dir` (None: no caching). A cache file that
  cannot be read whole (truncated, corrupted, not a float matrix) is reported, recomputed and replaced."""
  if cache_dir is None:
    return compute()
  path = pathlib.Path(cache_dir) / f"{key}.npy"
  if path.is_file():
    try:
      array = np.load(path, allow_pickle=False)
      if array.ndim == 2 and array.dtype == np.float32:
        print(f"{what}: cached embeddings {path}", file=sys.stderr)
        return array
      problem = f"a {array.dtype} array of shape {array.shape}"
    except (ValueError, OSError, EOFError) as e:
      problem = f"unreadable ({type(e).__name__}: {e})"
    print(f"{what}: cached embeddings {path} are {problem}; recomputing them", file=sys.stderr)
  array = compute()
  save_npy_atomic(path, array)
  return array
