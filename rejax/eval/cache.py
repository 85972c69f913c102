"""Embeddings cached on disk per (model weights, texts, settings), so a re-run does not re-encode a corpus."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
from typing import Callable, Sequence

import numpy as np

from rejax.io import WriteError, write_npy_atomic


def save_npy_atomic(path: pathlib.Path, array: np.ndarray, what: str = "embeddings") -> None:
  """Writes `array` to `path` whole or not at all (rejax.io.write_npy_atomic): a crash or a full disk leaves the
  previous file, and the error (rejax.io.WriteError) names `what`, the path and the bytes it needed."""
  write_npy_atomic(path, array, what=what)


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
  cannot be read whole (truncated, corrupted, not a float matrix) is reported, recomputed and replaced; a cache
  that cannot be written (disk full, read-only) is reported and the result returned all the same."""
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
  try:
    save_npy_atomic(path, array, what="the embedding cache")
  except WriteError as e:  # the embeddings are computed: a cache that cannot take them must not lose them
    print(f"{what}: warning: {e}; continuing without caching them", file=sys.stderr)
  return array
