"""Write a decoder's parameters as a Hugging Face safetensors checkpoint: the inverse of `rejax.hf.load`.

Names and transposes come from the one map in `rejax.hf.names`, with no prefix, as a bare `Qwen3Model` /
`LlamaModel` saves them. Each tensor is gathered to the host on its own (one layer of a stacked parameter
at a time, cast to the export dtype on its devices first), so host memory holds at most one shard. Shards
follow `save_pretrained`: one `model.safetensors`, or `model-0000i-of-0000n.safetensors` files plus
`model.safetensors.index.json` when the total is above `max_shard_size`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import secrets
import shutil
import tempfile
from typing import Any, Iterator, Sequence

import jax
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, which safetensors' numpy writer needs)
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from safetensors.numpy import save_file

from rejax.hf.names import hf_ref
from rejax.storage import as_path, is_remote, publish_dir

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclasses.dataclass(frozen=True)
class HFTensor:
  """One tensor of the HF checkpoint: its name, where it comes from in our state, and its HF shape."""

  name: str
  path: tuple[str, ...]
  layer: int | None  # index into our stacked leading axis, None for an unstacked parameter
  transpose: bool
  shape: tuple[int, ...]

  def nbytes(self, itemsize: int) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * itemsize


def parse_size(size: int | str) -> int:
  """A size in bytes from an int or a string such as "5GB" or "500MiB" (as `save_pretrained` takes)."""
  if isinstance(size, int):
    return size
  match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", str(size).upper())
  if not match:
    raise ValueError(f"max_shard_size={size!r}: expected bytes as an int or a string like '5GB' or '500MiB'")
  return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def hf_tensors(params: nnx.State) -> list[HFTensor]:
  """The HF tensors behind `params` in `save_pretrained`'s order: embeddings, layer 0, layer 1, ..., final norm."""
  tensors = []
  for path, var in nnx.to_flat_state(params):
    path = tuple(str(p) for p in path)
    ref = hf_ref(path, prefix="")
    shape = tuple(var.shape[1:] if ref.stacked else var.shape)
    shape = tuple(reversed(shape)) if ref.transpose else shape
    for layer in range(var.shape[0]) if ref.stacked else [None]:
      tensors.append(HFTensor(ref.name(layer), path, layer, ref.transpose, shape))

  def order(t: HFTensor):
    group = 1 if t.layer is not None else 0 if t.name.startswith("embed") else 2
    return group, t.layer or 0, t.name

  return sorted(tensors, key=order)


def plan_shards(tensors: Sequence[HFTensor], itemsize: int, max_bytes: int) -> list[list[HFTensor]]:
  """Tensors grouped into files in order, each file at most `max_bytes` unless one tensor alone is bigger."""
  shards: list[list[HFTensor]] = [[]]
  size = 0
  for t in tensors:
    if shards[-1] and size + t.nbytes(itemsize) > max_bytes:
      shards.append([])
      size = 0
    shards[-1].append(t)
    size += t.nbytes(itemsize)
  return shards


def host_tensor(array: jax.Array, tensor: HFTensor, dtype: Any) -> np.ndarray:
  """The HF tensor as a host numpy array in `dtype`, from a (possibly sharded, possibly multi-host) array.

  A collective when the array spans processes: every process must call it, in the same order.
  """
  part = array[tensor.layer] if tensor.layer is not None else array
  part = part.astype(dtype)  # on the devices: halves the transfer for bf16, and rounds exactly as numpy would
  if part.is_fully_addressable:
    host = np.asarray(jax.device_get(part))
  else:
    host = np.asarray(multihost_utils.process_allgather(part, tiled=True))
  return np.ascontiguousarray(host.T if tensor.transpose else host)


def shard_file_names(count: int) -> list[str]:
  """`model.safetensors` alone, or `model-0000i-of-0000n.safetensors` for i in 1..n."""
  if count == 1:
    return [SAFE_WEIGHTS_NAME]
  return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


@contextlib.contextmanager
def staged_directory(output: str | pathlib.Path, *, writer: bool = True) -> Iterator[pathlib.Path]:
  """Yields a new empty directory beside `output` to write into; when the block completes it replaces `output`
  whole (`replace_directory`), and on an error it is removed. So `output` only ever names a complete directory,
  the old one or the new one, even when the process is killed. A process that does not write (writer=False)
  gets `output` itself and nothing happens. A gs:// `output` is built in a local temporary directory and uploaded
  with config.json last (rejax.storage.publish_dir): an export on a bucket without config.json is not one."""
  if not writer:
    yield output
    return
  if is_remote(output):
    with tempfile.TemporaryDirectory(prefix="rejax-export-") as local:
      yield pathlib.Path(local)
      publish_dir(pathlib.Path(local), as_path(output), commit="config.json", replace=True)
    return
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  staging = output.with_name(f".{output.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
  staging.mkdir()
  try:
    yield staging
    replace_directory(staging, output)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def replace_directory(new: pathlib.Path, output: pathlib.Path) -> None:
  """Renames the complete directory `new` to `output`; an `output` already there is first renamed aside and
  removed only once `new` is in place (restored if that rename fails)."""
  if not output.exists() and not output.is_symlink():
    os.rename(new, output)
    return
  old = output.with_name(f".{output.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
  os.rename(output, old)
  try:
    os.rename(new, output)
  except BaseException:
    os.rename(old, output)
    raise
  if old.is_dir() and not old.is_symlink():
    shutil.rmtree(old)
  else:
    old.unlink()


def remove_stale_weights(output: pathlib.Path) -> None:
  """Delete weight files a previous export left (transformers would load a stale single file first)."""
  for old in [*output.glob("model*.safetensors"), output / SAFE_WEIGHTS_INDEX_NAME]:
    old.unlink(missing_ok=True)


def save_safetensors(params: nnx.State, output: str | pathlib.Path, *, dtype: Any,
                     max_shard_size: int | str = "5GB") -> list[str]:
  """The weight files written to `output` (process 0 writes; every process must call this): `params` in HF
  names and layout, cast to `dtype`, sharded above `max_shard_size` with an index as `save_pretrained` does."""
  output = pathlib.Path(output)
  writer = jax.process_index() == 0
  dtype = np.dtype(dtype)
  arrays = {tuple(str(p) for p in path): var[...] for path, var in nnx.to_flat_state(params)}
  shards = plan_shards(hf_tensors(params), dtype.itemsize, parse_size(max_shard_size))
  names = shard_file_names(len(shards))
  if writer:
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_weights(output)
  weight_map = {}
  for file, shard in zip(names, shards):
    tensors = {t.name: host_tensor(arrays[t.path], t, dtype) for t in shard}
    if writer:
      save_file(tensors, output / file, metadata={"format": "pt"})  # transformers requires the format key
    weight_map.update({name: file for name in tensors})
    del tensors
  if writer and len(names) > 1:
    total = sum(t.nbytes(dtype.itemsize) for shard in shards for t in shard)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (output / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
  return names
