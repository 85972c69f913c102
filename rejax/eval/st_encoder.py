"""A baseline embedder behind the same interface as `Encoder`: any sentence-transformers directory that rejax does
not encode itself (all-MiniLM-L6-v2, bge, ...: a model_type outside rejax.models.FAMILIES, or a pooling rejax does
not compute), encoded by sentence-transformers itself.

`rejax eval --model DIR` uses it for such a directory, so a baseline is scored with exactly the protocol,
search and metrics of our own models. It needs the `sentence-transformers` package (the dev extra).
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from rejax.data.text import format_query
from rejax.hf.sentence_transformers_layout import read_pooling
from rejax.models import SUPPORTED_MODEL_TYPES


def is_baseline_dir(model_dir: pathlib.Path) -> bool:
  """Whether `model_dir` is a sentence-transformers model that the JAX decoder does not encode as
  sentence-transformers would: an architecture it does not implement, or a pooling it does not compute."""
  config = model_dir / "config.json"
  if not (model_dir / "modules.json").is_file() or not config.is_file():
    return False
  if json.loads(config.read_text()).get("model_type") not in SUPPORTED_MODEL_TYPES:
    return True
  try:
    read_pooling(model_dir)
  except ValueError:
    return True
  return False


class SentenceTransformerEncoder:
  """Unit-norm float32 embeddings from a sentence-transformers model, with `Encoder`'s encode signature."""

  def __init__(self, model_dir: str | pathlib.Path, *, max_length: int = 512, batch_size: int = 32,
               dim: int | None = None):
    try:
      from sentence_transformers import SentenceTransformer
    except ImportError:
      raise RuntimeError(f"{model_dir}: a sentence-transformers model; evaluating it needs "
                         "`pip install sentence-transformers`") from None
    self.model_dir = pathlib.Path(model_dir)
    self.model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    # The model's own limit (256 word pieces for MiniLM) unless a smaller one is asked for.
    self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
    self.max_length = self.model.max_seq_length
    self.batch_size = batch_size
    self.dtype = "float32"
    self.dim = dim  # sentence-transformers' truncate_dim

  def encode(self, texts: Sequence[str], *, instruction: str | None = None, progress: bool = True,
             desc: str = "encode") -> np.ndarray:
    """Embeddings [N, D] float32, L2-normalised, in the order of `texts` (instruction formatted as ours)."""
    del desc
    texts = [format_query(t, instruction) for t in texts]
    return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=progress, truncate_dim=self.dim).astype(np.float32)
