"""The embedding interface used for candidate mining: a rejax export (JAX), any sentence-transformers model,
or (no model) hashed bag-of-words.

Queries are formatted with the domain instruction by rejax.data.text.format_query, the one formatting
function of the project; documents get no instruction. Embeddings are float32 and L2-normalised.
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Protocol, Sequence

import numpy as np

from rejax.data.text import format_query
from synth.backends import resolve_model


class Embedder(Protocol):
  """Anything that embeds queries (with an instruction) and documents into one unit-norm space."""

  name: str  # identifies the model and settings (keys the corpus embedding cache)

  def embed(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """float32 [N, D], L2-normalised, in the order of `texts`."""


class RejaxEmbedder:
  """A rejax / Hugging Face decoder directory (Qwen3 or Llama) encoded by rejax.eval.encode.Encoder."""

  def __init__(self, model: str, *, dtype: str = "float32", max_length: int = 512, batch_size: int = 32):
    from rejax.eval.encode import Encoder

    self.encoder = Encoder.from_pretrained(model, dtype=dtype, max_length=max_length, batch_size=batch_size)
    self.name = f"rejax:{model}:{dtype}:{max_length}"

  def embed(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """Embeddings by the Encoder, which formats with format_query itself."""
    return self.encoder.encode(list(texts), instruction=instruction, progress=False)


class SentenceTransformerEmbedder:
  """A sentence-transformers model (e.g. gte-Qwen2-7B-instruct), queries formatted by format_query."""

  def __init__(self, model: str, *, device: str | None = None, max_length: int = 512, batch_size: int = 32,
               dtype: str = "float32"):
    import torch
    from sentence_transformers import SentenceTransformer

    self.model = SentenceTransformer(model, device=device, model_kwargs={"dtype": getattr(torch, dtype)})
    self.model.max_seq_length = max_length
    self.batch_size = batch_size
    self.name = f"sentence-transformers:{model}:{dtype}:{max_length}"

  def embed(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """Normalised embeddings of the formatted texts."""
    formatted = [format_query(t, instruction) for t in texts]
    emb = self.model.encode(formatted, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


class HashingEmbedder:
  """Hashed bag-of-words vectors: a lexical embedder with no model, for dry runs of a config and for tests."""

  def __init__(self, dim: int = 256):
    self.dim = dim
    self.name = f"hashing:{dim}"

  def embed(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """Unit-norm term-count vectors of the words (the instruction is ignored: it would match every query)."""
    out = np.zeros((len(texts), self.dim), np.float32)
    for row, text in enumerate(texts):
      for word in re.findall(r"\w+", text.lower()):
        out[row, int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little") % self.dim] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


EMBEDDERS = {"rejax": RejaxEmbedder, "sentence-transformers": SentenceTransformerEmbedder, "hashing": HashingEmbedder}


def make_embedder(config: Mapping, where: str = "embedder") -> Embedder:
  """The embedder a config block describes: `kind` ("rejax", "sentence-transformers" or "hashing"), `model`,
  settings."""
  config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  kind = config.pop("kind", None)
  if kind not in EMBEDDERS:
    raise ValueError(f"{where}.kind={kind!r}: expected {', '.join(map(repr, EMBEDDERS))}")
  if kind != "hashing":
    if "model" not in config:
      raise ValueError(f"{where}.model: missing")
    config["model"] = resolve_model(config["model"])
  return EMBEDDERS[kind](**config)
