"""The device mesh (data, fsdp, tensor), the one table mapping logical axis names onto it, and shardings.

Parameters and activations are annotated with logical names (`embed`, `heads`, `batch`, ...). Only the rule
table below names mesh axes; configs may replace it. Batches shard over data x fsdp, parameters FSDP-style
over `fsdp` and Megatron-style over `tensor`.

Several slices (multislice): `dcn_data` data-parallel groups across the data-centre network, one per TPU slice
(per process on CPU). They are the outer, slower part of the `data` axis: the mesh's `data` axis has
dcn_data x data devices, slice by slice, and `fsdp` and `tensor` stay inside a slice. The axes, the rule table and
every sharding are those of one slice, so dcn_data = 1 is exactly the one-slice mesh.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

import jax
from flax import nnx
from flax.core import spmd
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or tuple of axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),
    ("norm", None),
    ("lora_rank", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("lookup_batch", "data"),  # the embedding lookup's rows, between the table's layout and ACT_BTD (decoder.py)
)


def mesh_shape_problem(data: int, fsdp: int, tensor: int, device_count: int, dcn_data: int = 1) -> str | None:
  """Why a (data, fsdp, tensor) mesh, times `dcn_data` slices, cannot be laid over `device_count` devices, naming
  the config keys; else None."""
  for key, size in (("dcn_data", dcn_data), ("data", data), ("fsdp", fsdp), ("tensor", tensor)):
    if size < 1:
      return f"mesh.{key}={size}: must be >= 1"
  total = dcn_data * data * fsdp * tensor
  if total != device_count:
    keys, sizes = ("mesh.data", "mesh.fsdp", "mesh.tensor"), (data, fsdp, tensor)
    if dcn_data > 1:  # named only when set: most runs are one slice
      keys, sizes = ("mesh.dcn_data",) + keys, (dcn_data,) + sizes
    return f"{' x '.join(keys)} = {' x '.join(map(str, sizes))} = {total}, but there are {device_count} devices"
  return None


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None, *,
              dcn_data: int = 1) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` (default: all), checking the sizes multiply up; with dcn_data > 1
  its `data` axis spans dcn_data slices (`hybrid_device_grid`)."""
  devices = list(jax.devices() if devices is None else devices)
  problem = mesh_shape_problem(data, fsdp, tensor, len(devices), dcn_data)
  if problem:
    raise ValueError(problem)
  if dcn_data == 1:
    return jax.make_mesh((data, fsdp, tensor), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)
  return Mesh(hybrid_device_grid((data, fsdp, tensor), dcn_data, devices), MESH_AXES,
              axis_types=(AxisType.Auto,) * 3)


def hybrid_device_grid(slice_shape: Sequence[int], dcn_data: int, devices: Sequence) -> np.ndarray:
  """Devices [dcn_data x data, fsdp, tensor]: each slice's devices laid out as `slice_shape` over its own
  interconnect, the slices stacked along `data`, so only the data-parallel gradient reduction crosses the DCN.

  Slices are the devices' `slice_index` (TPU multislice). Devices all in one slice or without one (CPU and GPU
  report none, or 0 for every device) count each process as a slice, as jax's `process_is_granule` does.
  """
  by_slice = len({getattr(d, "slice_index", 0) for d in devices}) > 1
  count = len({d.slice_index if by_slice else d.process_index for d in devices})
  if count != dcn_data:
    where = f"{count} slice(s)" if by_slice else f"{count} process(es), each taken as a slice (no slices reported)"
    raise ValueError(f"mesh.dcn_data={dcn_data}: the {len(devices)} devices are in {where}; mesh.dcn_data must "
                     "equal that number (one data-parallel group per slice)")
  # A layout that splits no physical axis is tried first (where one exists, each slice's is jax.make_mesh's);
  # splitting is allowed after that, as jax.make_mesh allows it on v5e.
  return mesh_utils.create_hybrid_device_mesh(tuple(slice_shape), (dcn_data, 1, 1), devices,
                                              process_is_granule=not by_slice, allow_split_physical_axes=True)


def every_device_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over every device of the mesh, whatever the axes are called (data-parallel encoding)."""
  return NamedSharding(mesh, PartitionSpec(mesh.axis_names))


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Iterator[Mesh]:
  """Make `mesh` current and bind the logical rules, for model creation, loading and jitted steps."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(tuple(rules)):
    yield mesh


def _bound_rules() -> tuple[tuple[str, Any], ...]:
  return tuple(spmd.get_logical_axis_rules())


def logical_to_spec(logical_axes: Sequence[str | None], rules=None) -> PartitionSpec:
  """The PartitionSpec for logical axis names under `rules` (default: the bound ones)."""
  table = dict(rules if rules is not None else (_bound_rules() or DEFAULT_RULES))
  return PartitionSpec(*(table.get(name) if name is not None else None for name in logical_axes))


def _axis_size(mesh: Mesh, entry: Any) -> int:
  if entry is None:
    return 1
  names = entry if isinstance(entry, tuple) else (entry,)
  return math.prod(mesh.shape[n] for n in names)


def fit_spec_to_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh, what: str = "") -> PartitionSpec:
  """`spec` with every dimension the mesh does not divide evenly replicated instead (logged)."""
  fitted = []
  for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if entry is not None and dim % _axis_size(mesh, entry) != 0:
      logging.warning("%s: dimension %d is not divisible by mesh axes %s; replicating it", what, dim, entry)
      entry = None
    fitted.append(entry)
  return PartitionSpec(*fitted)


def param_shardings(abstract_state: nnx.State, mesh: Mesh, rules=None) -> nnx.State:
  """NamedSharding per parameter, from its `out_sharding` logical names (replicated when it has none)."""

  def sharding_of(path, var) -> NamedSharding:
    names = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
    name = ".".join(str(p) for p in path)
    spec = fit_spec_to_shape(logical_to_spec(names, rules), var.shape, mesh, name)
    return NamedSharding(mesh, spec)

  return nnx.map_state(sharding_of, abstract_state)


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """`x` constrained to the sharding its logical axes map to; a no-op outside a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  spec = logical_to_spec(logical_axes)
  if any(entry is not None and d % _axis_size(mesh, entry) for d, entry in zip(x.shape, spec)):
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec) if isinstance(mesh, Mesh) else spec)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Sharding of a [batch, ...] array: batch over the data-parallel axes, the rest replicated."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1)))



def batch_shards(mesh: Mesh) -> int:
  """How many ways `batch_sharding` splits the batch rows: the size of the mesh axes "batch" maps to."""
  return _axis_size(mesh, logical_to_spec(("batch",))[0])
