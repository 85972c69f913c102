"""Encode texts with a decoder: tokenise, sort by length, run jitted batches over the devices, restore order."""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from rejax.data.packing import first_fit_decreasing, lay_out, max_segments
from rejax.data.text import bucket_length, format_query, load_tokenizer, pad_batch, pad_id_of, tokenize
from rejax.errors import InputError
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import load_decoder, model_config
from rejax.models import window_problem
from rejax.models.pooling import embed, embed_packed, l2_normalize
from rejax.sharding import every_device_sharding


def truncate_rows(x_nd: np.ndarray, dim: int | None) -> np.ndarray:
  """The first `dim` numbers of each row, renormalised to unit length (a Matryoshka prefix); all of them for None.
  As sentence-transformers' `truncate_dim` with `normalize_embeddings=True`."""
  return x_nd if dim is None else np.asarray(l2_normalize(x_nd[:, :dim]))


def refuse_window(cfg, max_length: int) -> None:
  """Raises InputError when texts of `max_length` tokens are longer than the model's sliding window."""
  problem = window_problem(cfg, max_length)
  if problem is not None:
    raise InputError(problem)


def refuse_dim(cfg, dim: int | None) -> None:
  """Raises InputError when `dim` (--dim) is more numbers than the model's embeddings have."""
  if dim is not None and not 1 <= dim <= cfg.hidden_size:
    raise InputError(f"--dim {dim}: the model's embeddings have {cfg.hidden_size} numbers; give 1..{cfg.hidden_size}")


class Encoder:
  """A model and its tokenizer, turning texts into unit-norm float32 embeddings (pooled as the model's config says).

  The model may be abstract (`nnx.eval_shape`): then every call brings the weights (`encode_tokens(weights=)`),
  as a training run's dev evaluation does with the parameters of the moment.
  """

  def __init__(self, model, tokenizer, *, max_length: int = 512, batch_size: int = 32, mesh: Mesh | None = None,
               model_dir: pathlib.Path | None = None, pack: bool = True, dim: int | None = None):
    if batch_size < 1:  # range(0, n, batch) would encode nothing, or fail deep inside numpy
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    refuse_window(model.cfg, max_length)
    refuse_dim(model.cfg, dim)
    self.dim = dim  # None: whole embeddings; N: their first N numbers, renormalised (truncate_rows)
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
    self._batch_sharding = every_device_sharding(mesh) if mesh is not None else None
    replicated = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None
    self._embed = jax.jit(self._forward, out_shardings=replicated)
    self._embed_packed = jax.jit(self._forward_packed, out_shardings=replicated)
    self.pack = pack  # batches of `batch_size` rows, each packed with several texts (rejax.data.packing)

  @classmethod
  def from_pretrained(cls, model_dir: str | pathlib.Path, *, dtype: str = "float32", mesh: Mesh | None = None,
                      max_length: int = 512, **kwargs) -> Encoder:
    """An Encoder for a local HF model directory or hub id; `dtype` sets both parameter and compute dtype. The
    pooling is the directory's sentence-transformers pooling when it has one (1_Pooling/config.json)."""
    model_dir = resolve_model_dir(model_dir)
    cfg = model_config(model_dir)  # before the weights are read
    refuse_window(cfg, max_length)
    refuse_dim(cfg, kwargs.get("dim"))
    tokenizer = load_tokenizer(model_dir)  # first: a broken tokenizer fails before the weights are read
    model, _ = load_decoder(model_dir, mesh=mesh, param_dtype=dtype, dtype=dtype)
    return cls(model, tokenizer, max_length=max_length, mesh=mesh, model_dir=model_dir, **kwargs)

  def _forward(self, states, ids_bt, mask_bt):
    return embed(nnx.merge(self._graphdef, *states), ids_bt, mask_bt)

  def _forward_packed(self, states, ids_rt, segments_rt, last_rs):
    return embed_packed(nnx.merge(self._graphdef, *states), ids_rt, segments_rt, last_rs)

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
    empty = next((i for i, ids in enumerate(token_ids) if len(ids) == 0), None)
    if empty is not None:
      raise ValueError(f"text {empty} has no tokens: nothing to embed (tokenize() always ends texts with EOS)")
    # Longest first: the first batch compiles the biggest shape, and padding per batch stays minimal.
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    out = None
    next_batch = self._next_packed_batch if self.pack else self._next_padded_batch
    with tqdm(total=len(token_ids), desc=desc, unit="text", disable=not progress) as bar:
      while order:
        rows, emb = next_batch(order, token_ids, weights)
        if out is None:
          out = np.zeros((len(token_ids), emb.shape[1]), np.float32)
        out[rows] = emb
        bar.update(len(rows))
    return truncate_rows(out, self.dim) if out is not None else np.zeros((0, 0), np.float32)

  def _next_padded_batch(self, order: list[int], token_ids, weights) -> tuple[list[int], np.ndarray]:
    """(texts, their embeddings) of the next batch: the next `batch_size` of `order` (taken off it)."""
    rows, order[:] = order[: self.batch_size], order[self.batch_size :]
    return rows, self._encode_batch([list(token_ids[i]) for i in rows], weights)

  def _next_packed_batch(self, order: list[int], token_ids, weights) -> tuple[list[int], np.ndarray]:
    """(texts, their embeddings) of the next packed batch: `batch_size` rows as long as the longest text left
    (its bucket), filled first-fit from `order` (longest first); the texts it takes are removed from `order`."""
    length = bucket_length(len(token_ids[order[0]]), self.max_length)
    candidates = order[: self.batch_size * max_segments(length)]
    lengths = np.array([len(token_ids[i]) for i in candidates])
    row, offset = first_fit_decreasing(lengths, length, max_segments(length))
    taken = row < self.batch_size
    rows = [i for i, t in zip(candidates, taken) if t]
    order[:] = [i for i, t in zip(candidates, taken) if not t] + order[len(candidates) :]
    packed = lay_out([np.asarray(token_ids[i]) for i in rows], row[taken], offset[taken], self.batch_size, length,
                     self.pad_id)
    arrays = self._place(packed.ids, packed.segments, packed.last)
    slots = np.asarray(self._embed_packed(weights, *arrays))
    return rows, slots.reshape(-1, slots.shape[-1])[packed.index]

  def _place(self, *arrays: np.ndarray):
    """The arrays as the jitted forward takes them: sharded over the mesh's devices when there is one."""
    if self._batch_sharding is None:
      return arrays
    # Every process holds the whole batch and places its devices' rows (one process or many alike).
    return tuple(jax.make_array_from_callback(x.shape, self._batch_sharding, lambda index, x=x: x[index])
                 for x in arrays)

  def _encode_batch(self, batch: list[list[int]], weights: tuple) -> np.ndarray:
    """Embeddings of one batch, padded to a fixed (batch_size, bucket) shape so compiles are few."""
    length = bucket_length(max(len(s) for s in batch), self.max_length)
    padded = batch + [[self.pad_id]] * (self.batch_size - len(batch))
    ids, mask = self._place(*pad_batch(padded, length, self.pad_id))
    return np.asarray(self._embed(weights, ids, mask))[: len(batch)]
