"""MODEL -> the scorer that mines negatives and scores (query, document) pairs with it.

    a rejax / Hugging Face decoder directory   DecoderBiEncoder: rejax.eval.encode.Encoder, queries
                                               `Instruct: {prompt}\\nQuery: {query}`, cosine (unit-norm embeddings)
    a sentence-transformers model directory    SentenceTransformerBiEncoder: the model's own similarity (cosine or
                                               dot); queries with its `query` prompt when it has one, else formatted
                                               as ours (as `rejax eval` scores such a baseline)
    a sentence-transformers CrossEncoder       CrossEncoderScorer: `CrossEncoder.predict` of (query, document), the
                                               query without instruction; its activation (sigmoid), or raw logits
    bm25                                       Bm25: bm25s over the corpus, plain queries (mining only)

A directory may also be a hub id (fetched by rejax.hf.hub; offline it fails in one line) or `asset:NAME`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from rejax.data.text import format_query
from rejax.errors import InputError

BM25 = "bm25"
KINDS = ("decoder", "sentence-transformers", "cross-encoder", BM25)


def model_kind(model_dir: pathlib.Path, flag: str) -> str:
  """Which scorer a local model directory makes (`KINDS`), read from its config files only (no weights)."""
  from rejax.eval.st_encoder import is_baseline_dir
  from rejax.models import SUPPORTED_MODEL_TYPES

  st_config, config = model_dir / "config_sentence_transformers.json", model_dir / "config.json"
  if not config.is_file():
    raise InputError(f"{flag} {model_dir}: no config.json; expected a Hugging Face / sentence-transformers model "
                     f"directory or `{BM25}`")
  if st_config.is_file() and json.loads(st_config.read_text()).get("model_type") == "CrossEncoder":
    return "cross-encoder"
  hf = json.loads(config.read_text())
  if any(a.endswith("ForSequenceClassification") for a in hf.get("architectures") or []):
    return "cross-encoder"
  if is_baseline_dir(model_dir):
    return "sentence-transformers"
  if hf.get("model_type") in SUPPORTED_MODEL_TYPES:
    return "decoder"
  raise InputError(f"{flag} {model_dir}: model_type {hf.get('model_type')!r} is neither a decoder rejax encodes "
                   f"({', '.join(SUPPORTED_MODEL_TYPES)}) nor a sentence-transformers model (no modules.json) nor a "
                   "CrossEncoder")


def resolve(model: str, flag: str) -> tuple[str, pathlib.Path | None]:
  """(kind, local directory) of MODEL: `bm25`, or a directory, `asset:NAME` or hub id (fetched here)."""
  if model == BM25:
    return BM25, None
  from rejax.hf.hub import resolve_model_dir

  model_dir = resolve_model_dir(model, flag)
  return model_kind(model_dir, flag), model_dir


class BiEncoder:
  """Queries and documents embedded apart; a pair's score is the inner product of its embeddings."""

  model_dir: pathlib.Path
  cache_settings: dict  # what, beside the weights and texts, decides the document embeddings (the embedding cache)

  def encode_queries(self, queries: Sequence[str], instructions: Sequence[str | None], *,
                     progress: bool = True) -> np.ndarray:
    raise NotImplementedError

  def encode_documents(self, texts: Sequence[str], *, progress: bool = True) -> np.ndarray:
    raise NotImplementedError

  def score_pairs(self, queries: Sequence[str], instructions: Sequence[str | None], documents: Sequence[str], *,
                  progress: bool = True) -> np.ndarray:
    """float64 [N]: the score of each (query, document), each distinct text embedded once."""
    q_keys = list(zip(queries, instructions))
    q_unique, q_row = _unique(q_keys)
    d_unique, d_row = _unique(documents)
    q_ud = self.encode_queries([q for q, _ in q_unique], [i for _, i in q_unique], progress=progress)
    d_ud = self.encode_documents(d_unique, progress=progress)
    return np.einsum("nd,nd->n", q_ud[q_row].astype(np.float64), d_ud[d_row].astype(np.float64))


def _unique(items: Sequence) -> tuple[list, np.ndarray]:
  """(distinct items in first-seen order, the row of each item among them)."""
  rows: dict = {}
  index = np.array([rows.setdefault(item, len(rows)) for item in items], dtype=np.int64)
  return list(rows), index


class DecoderBiEncoder(BiEncoder):
  """A decoder encoded by rejax (data parallel over every device), queries formatted by format_query."""

  def __init__(self, model_dir: pathlib.Path, *, dtype: str = "float32", max_length: int = 512, batch_size: int = 32):
    import jax

    from rejax.eval.encode import Encoder
    from rejax.sharding import make_mesh, use_mesh

    mesh = make_mesh(data=jax.device_count())
    with use_mesh(mesh):
      self.encoder = Encoder.from_pretrained(model_dir, dtype=dtype, max_length=max_length, batch_size=batch_size,
                                             mesh=mesh)
    self.model_dir = model_dir
    self.cache_settings = dict(max_length=self.encoder.max_length, dtype=str(self.encoder.dtype))  # rejax eval's

  def encode_queries(self, queries, instructions, *, progress=True):
    texts = [format_query(q, i) for q, i in zip(queries, instructions)]
    return self.encoder.encode(texts, progress=progress, desc="encode queries")

  def encode_documents(self, texts, *, progress=True):
    return self.encoder.encode(list(texts), progress=progress, desc="encode documents")


class SentenceTransformerBiEncoder(BiEncoder):
  """A sentence-transformers bi-encoder: its similarity, its prompts, encoded by sentence-transformers itself."""

  def __init__(self, model_dir: pathlib.Path, *, max_length: int = 512, batch_size: int = 32):
    from sentence_transformers import SentenceTransformer

    self.model = SentenceTransformer(str(model_dir), local_files_only=True)
    self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
    similarity = self.model.similarity_fn_name or "cosine"
    if similarity not in ("cosine", "dot"):
      raise InputError(f"{model_dir}: similarity {similarity!r}; mining and teacher scores take a cosine or dot "
                       "product model")
    self.normalize = similarity == "cosine"  # then the inner product is the cosine, else the model's dot product
    self.batch_size = batch_size
    self.model_dir = model_dir
    self.cache_settings = dict(max_length=self.model.max_seq_length, dtype="float32")  # rejax eval's, when cosine
    if not self.normalize:
      self.cache_settings["normalized"] = False
    if self.model.prompts.get("document"):
      self.cache_settings["document_prompt"] = self.model.prompts["document"]

  def _encode(self, method, texts, progress):
    return np.asarray(method(list(texts), batch_size=self.batch_size, normalize_embeddings=self.normalize,
                             convert_to_numpy=True, show_progress_bar=progress), dtype=np.float32)

  def encode_queries(self, queries, instructions, *, progress=True):
    if not self.model.prompts.get("query"):  # no query prompt of its own (sentence-transformers fills in ""): ours
      queries = [format_query(q, i) for q, i in zip(queries, instructions)]
    return self._encode(self.model.encode_query, queries, progress)

  def encode_documents(self, texts, *, progress=True):
    return self._encode(self.model.encode_document, texts, progress)


class CrossEncoderScorer:
  """A sentence-transformers CrossEncoder (reranker): one forward per (query, document)."""

  def __init__(self, model_dir: pathlib.Path, *, max_length: int = 512, batch_size: int = 32, logits: bool = False):
    from sentence_transformers import CrossEncoder

    self.model = CrossEncoder(str(model_dir), local_files_only=True)
    if self.model.max_length is None or self.model.max_length > max_length:
      self.model.max_length = max_length
    self.model_dir = model_dir
    self.batch_size = batch_size
    self.logits = logits

  def score_pairs(self, queries: Sequence[str], instructions: Sequence[str | None], documents: Sequence[str], *,
                  progress: bool = True) -> np.ndarray:
    """float64 [N]: CrossEncoder.predict of each (query, document); the instructions are not the reranker's."""
    del instructions
    if not len(queries):
      return np.zeros(0)
    import torch

    activation = torch.nn.Identity() if self.logits else None
    scores = self.model.predict(list(zip(queries, documents)), batch_size=self.batch_size, activation_fn=activation,
                                show_progress_bar=progress, convert_to_numpy=True)
    return np.asarray(scores, dtype=np.float64).reshape(len(queries))


class Bm25:
  """BM25 over a corpus (bm25s, English stopwords, no stemming: `rejax eval --model bm25`'s)."""

  def __init__(self, documents: Sequence[str]):
    import bm25s

    self.retriever = bm25s.BM25()
    self.retriever.index(bm25s.tokenize(list(documents), stopwords="en", show_progress=False), show_progress=False)

  def query_scores(self, query: str) -> np.ndarray:
    """float64 [num documents]: the BM25 score of every document for `query`."""
    import bm25s

    tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
    return np.asarray(self.retriever.get_scores(tokens), dtype=np.float64)


def load_scorer(kind: str, model_dir: pathlib.Path, *, dtype: str = "float32", max_length: int = 512,
                batch_size: int = 32, logits: bool = False):
  """The scorer of a resolved model (not bm25, which is built over a corpus: Bm25)."""
  if kind == "decoder":
    return DecoderBiEncoder(model_dir, dtype=dtype, max_length=max_length, batch_size=batch_size)
  if kind == "sentence-transformers":
    return SentenceTransformerBiEncoder(model_dir, max_length=max_length, batch_size=batch_size)
  if kind == "cross-encoder":
    return CrossEncoderScorer(model_dir, max_length=max_length, batch_size=batch_size, logits=logits)
  raise ValueError(f"no scorer of kind {kind!r}")
