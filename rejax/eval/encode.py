"""Encode texts with a decoder: tokenise, sort by length, run jitted batches over the devices, restore order."""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from rejax.data.text import bucket_length, format_query, load_tokenizer, pad_batch, pad_id_of, tokenize
from rejax.models.pooling import embed


class Encoder:
  """A model and its tokenizer, turning texts into unit-norm float32 embeddings.

  The model may be abstract (`nnx.eval_shape`): then every call brings the weights (`encode_tokens(weights=)`),
  as a training run's dev evaluation does with the parameters of the moment.
  """

  def __init__(self, model, tokenizer, *, max_length: int = 512, batch_size: int = 32, mesh: Mesh | None = None,
               model_dir: pathlib.Path | None = None):
    if batch_size < 1:  # range(0, n, batch) would encode nothing, or fail deep inside numpy
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.model_dir = model_dir  # where the weights came from (keys the embedding cache)
    self.tokenizer = tokenizer
    self.max_length = max_length
    self.dtype = model.cfg.dtype
    self.pad_id = pad_id_of(tokenizer)
    self._graphdef, self._state = nnx.split(model)
    devices = mesh.devices.size if mesh is not None else 1
    self.batch_size = -(-batch_size // devices) * devices  # every device gets the same number of rows
    # Batches shard over every device of the mesh (parameters keep their own shardings). The embeddings come
    # back replicated, so every process of a multi-process mesh can read all of them.
    self._batch_sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names)) if mesh is not None else None
    replicated = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None
    self._embed = jax.jit(self._forward, out_shardings=replicated)

  @classmethod
  def from_pretrained(cls, model_dir: str | pathlib.Path, *, dtype: str = "float32", mesh: Mesh | None = None,
                      **kwargs) -> Encoder:
    """An Encoder for a local HF model directory or hub id; `dtype` sets both parameter and compute dtype."""
    from rejax.hf.hub import resolve_model_dir
    from rejax.hf.load import load_decoder

    model_dir = resolve_model_dir(model_dir)
    tokenizer = load_tokenizer(model_dir)  # first: a broken tokenizer fails before the weights are read
    model, _ = load_decoder(model_dir, mesh=mesh, param_dtype=dtype, dtype=dtype)
    return cls(model, tokenizer, mesh=mesh, model_dir=model_dir, **kwargs)

  def _forward(self, states, ids_bt, mask_bt):
    return embed(nnx.merge(self._graphdef, *states), ids_bt, mask_bt)

  def encode(self, texts: Sequence[str], *, instruction: str | None = None, progress: bool = True,
             desc: str = "encode") -> np.ndarray:
    """Embeddings [N, D] float32, L2-normalised, in the order of `texts`."""
    return self.encode_tokens(self.tokenize(texts, instruction=instruction), progress=progress, desc=desc)

  def tokenize(self, texts: Sequence[str], *, instruction: str | None = None) -> list[list[int]]:
    """Token ids per text (formatted as a query when `instruction` is given), EOS last, at most max_length."""
    return tokenize(self.tokenizer, [format_query(t, instruction) for t in texts], self.max_length)

  def encode_tokens(self, token_ids: Sequence[Sequence[int]], *, weights: tuple | None = None, progress: bool = True,
                    desc: str = "encode") -> np.ndarray:
    """Embeddings [N, D] float32, L2-normalised, of tokenised texts in their order.

    `weights`: nnx.States of the model (merged in order, e.g. a train state's trainable and frozen parts) to
    encode with instead of the Encoder's own; one compiled forward serves any weights of the same shardings.
    """
    weights = (self._state,) if weights is None else tuple(weights)
    # Longest first: the first batch compiles the biggest shape, and padding per batch stays minimal.
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    out = np.zeros((len(token_ids), 0), np.float32)
    with tqdm(total=len(token_ids), desc=desc, unit="text", disable=not progress) as bar:
      for start in range(0, len(order), self.batch_size):
        rows = order[start : start + self.batch_size]
        batch = [list(token_ids[i]) for i in rows]
        emb = self._encode_batch(batch, weights)
        if out.shape[1] == 0:
          out = np.zeros((len(token_ids), emb.shape[1]), np.float32)
        out[rows] = emb
        bar.update(len(rows))
    return out

  def _encode_batch(self, batch: list[list[int]], weights: tuple) -> np.ndarray:
    """Embeddings of one batch, padded to a fixed (batch_size, bucket) shape so compiles are few."""
    length = bucket_length(max(len(s) for s in batch), self.max_length)
    padded = batch + [[self.pad_id]] * (self.batch_size - len(batch))
    ids, mask = pad_batch(padded, length, self.pad_id)
    if self._batch_sharding is not None:
      # Every process holds the whole batch and places its devices' rows (one process or many alike).
      ids, mask = (jax.make_array_from_callback(x.shape, self._batch_sharding, lambda index, x=x: x[index])
                   for x in (ids, mask))
    return np.asarray(self._embed(weights, ids, mask))[: len(batch)]
