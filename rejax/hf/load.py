"""Load a Hugging Face safetensors checkpoint into a (sharded) decoder, tensor by tensor.

Every parameter is built with `jax.make_array_from_callback`: each device's shard is read from the
memory-mapped safetensors file(s) as just that slice, so no device and no host buffer ever holds the whole
model, and on a multi-host mesh each process reads only what its own devices hold.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, which safetensors' numpy reader needs)
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from safetensors import safe_open

from rejax.errors import CheckpointError
from rejax.hf.hub import resolve_model_dir
from rejax.hf.names import TensorRef, hf_ref, is_ignored
from rejax.hf.sentence_transformers_layout import read_pooling
from rejax.models import Decoder, DecoderConfig, abstract_decoder, init_state, load_config
from rejax.sharding import param_shardings


class SafetensorsCheckpoint:
  """The tensors of one checkpoint directory (single file or sharded with an index), opened lazily."""

  def __init__(self, model_dir: str | pathlib.Path):
    self.dir = pathlib.Path(model_dir)
    self._handles: dict[str, Any] = {}
    index = self.dir / "model.safetensors.index.json"
    if index.is_file():
      weight_map = json.loads(index.read_text())["weight_map"]
    else:
      files = sorted(self.dir.glob("*.safetensors"))
      if not files:
        raise FileNotFoundError(f"{self.dir}: no *.safetensors files and no model.safetensors.index.json")
      weight_map = {}
      for file in files:
        weight_map.update({name: file.name for name in self._open(file.name).keys()})
    self.file_of: dict[str, str] = weight_map
    # The prefix of the base model's tensors: "model." in a *ForCausalLM checkpoint, "" in a bare model.
    self.prefix = "model." if any(n.startswith("model.") for n in weight_map) else ""

  def _open(self, file: str):
    """The memory-mapped reader of one file of the checkpoint (opened once)."""
    if file not in self._handles:
      path = self.dir / file
      if not path.is_file():
        raise CheckpointError(f"{path}: listed in the checkpoint but does not exist")
      try:
        self._handles[file] = safe_open(path, framework="numpy")
      except Exception as e:  # truncated or corrupted header
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from e
    return self._handles[file]

  def _slice(self, name: str):
    return self._open(self.file_of[name]).get_slice(name)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._slice(name).get_shape())

  def read(self, name: str, index: tuple[slice, ...] = ()) -> np.ndarray:
    """The slice `index` of tensor `name` (only that slice is read from disk)."""
    try:
      return np.asarray(self._slice(name)[index] if index else self._slice(name)[:])
    except Exception as e:  # a truncated or corrupted file surfaces here
      raise CheckpointError(f"tensor {name!r} in {self.dir / self.file_of[name]}: cannot be read: {e}") from e


def _expected_hf_shape(ref: TensorRef, our_shape: tuple[int, ...]) -> tuple[int, ...]:
  shape = our_shape[1:] if ref.stacked else our_shape
  return tuple(reversed(shape)) if ref.transpose else tuple(shape)


def check_tensors(ckpt: SafetensorsCheckpoint, abstract_state: nnx.State, num_layers: int) -> None:
  """Raise CheckpointError naming every missing, unexpected or misshapen tensor."""
  expected: dict[str, tuple[int, ...]] = {}
  for path, var in nnx.to_flat_state(abstract_state):
    ref = hf_ref(path, ckpt.prefix)
    hf_shape = _expected_hf_shape(ref, var.shape)
    for layer in range(num_layers) if ref.stacked else [None]:
      expected[ref.name(layer)] = hf_shape
  present = set(ckpt.file_of)
  problems = [f"missing tensor {n!r} (expected shape {s})" for n, s in expected.items() if n not in present]
  problems += [f"unexpected tensor {n!r}" for n in sorted(present - set(expected)) if not is_ignored(n)]
  problems += [
      f"tensor {n!r} has shape {ckpt.shape(n)}, expected {s}"
      for n, s in expected.items()
      if n in present and ckpt.shape(n) != s
  ]
  if problems:
    raise CheckpointError(f"{ckpt.dir}: checkpoint does not match the model:\n  " + "\n  ".join(problems))


def _load_param(ckpt: SafetensorsCheckpoint, ref: TensorRef, var, sharding: NamedSharding) -> jax.Array:
  """One parameter as a global array, each device's shard read straight from disk and cast to its dtype."""
  dtype = var.dtype

  def read_shard(index: tuple[slice, ...]) -> np.ndarray:
    index = tuple(index) + (slice(None),) * (len(var.shape) - len(index))
    layers, rest = (index[0], index[1:]) if ref.stacked else (None, index)
    hf_index = tuple(reversed(rest)) if ref.transpose else rest

    def one(layer=None) -> np.ndarray:
      x = ckpt.read(ref.name(layer), hf_index)
      return (x.T if ref.transpose else x).astype(dtype)

    if layers is None:
      return one()
    return np.stack([one(i) for i in range(var.shape[0])[layers]])

  return jax.make_array_from_callback(var.shape, sharding, read_shard)


def model_config(model_dir: str | pathlib.Path, **runtime) -> DecoderConfig:
  """The DecoderConfig of a local HF model directory: its config.json, and the pooling its sentence-transformers
  1_Pooling/config.json declares (when there is one and `runtime` does not set `pooling`, or sets it to None)."""
  if runtime.get("pooling") is None:
    runtime.pop("pooling", None)
    declared = read_pooling(model_dir)
    if declared is not None:
      runtime["pooling"] = declared
  return load_config(model_dir, **runtime)


def load_decoder(
    model: str | pathlib.Path, *, mesh: Mesh | None = None, lora_seed: int = 0, **runtime
) -> tuple[Decoder, DecoderConfig]:
  """(decoder, config) from a local HF directory or hub id; `runtime` sets param_dtype, dtype, remat, ...

  With `mesh`, parameters land in the shardings the logical rules give (bind rules with
  `rejax.sharding.use_mesh`); without, on the default device. The pooling is the directory's sentence-transformers
  pooling unless `runtime` says (`model_config`). With `lora=LoRAConfig(...)`, fresh adapters
  (B = 0, so the model starts out unchanged) are added on top of the loaded weights.
  """
  model_dir = resolve_model_dir(model)
  cfg = model_config(model_dir, **runtime)
  graphdef, full_state = abstract_decoder(cfg)
  adapters, abstract_state = nnx.split_state(full_state, nnx.LoRAParam, ...)
  ckpt = SafetensorsCheckpoint(model_dir)
  check_tensors(ckpt, abstract_state, cfg.num_hidden_layers)
  if mesh is None:
    sharding_of = {path: SingleDeviceSharding(jax.devices()[0]) for path, _ in nnx.to_flat_state(abstract_state)}
  else:
    sharding_of = dict(nnx.to_flat_state(param_shardings(abstract_state, mesh)))

  def load(path, var):
    return var.replace(_load_param(ckpt, hf_ref(path, ckpt.prefix), var, sharding_of[path]))

  loaded = nnx.map_state(load, abstract_state)
  if cfg.lora is not None:
    adapters = init_state(cfg, seed=lora_seed, mesh=mesh, wrt=nnx.LoRAParam)
  return nnx.merge(graphdef, loaded, adapters), cfg
