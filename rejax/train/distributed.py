"""Multi-process set-up and the host -> global batch hand-off.

One process per host (TPU VM worker, GPU node or task). `initialize` starts jax.distributed: detected
on TPU pods and SLURM when no coordinator is given, explicit otherwise. Each process then loads only
the batch rows its devices hold (`batch_rows`), and `to_global_batch` stitches the processes' rows
into global arrays, after agreeing on one padded length per input so every process compiles the same
shapes.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from rejax.data.packing import pack
from rejax.sharding import batch_sharding, batch_shards


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               heartbeat_timeout: int | None = None) -> None:
  """Starts jax.distributed when running multi-process; a no-op for one process.

  With `coordinator` (host:port), num_processes and process_id are required. Without, JAX's cluster
  detection is used when a TPU pod, several TPU slices or a SLURM job is visible (TPU_WORKER_HOSTNAMES,
  MEGASCALE_NUM_SLICES, SLURM_NTASKS > 1).
  `heartbeat_timeout` (seconds; JAX's default 100 when None): how long a lost process (killed, crashed, its host
  gone) may be silent before the coordination service stops every other process, naming it.
  """
  timeouts = {} if heartbeat_timeout is None else {"heartbeat_timeout_seconds": heartbeat_timeout}
  if coordinator:
    if num_processes is None or process_id is None:
      raise ValueError("--coordinator needs --num-processes and --process-id")
    # CPU devices need a collectives backend to talk across processes; GPU/TPU ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                               **timeouts)
  elif _cluster_visible():
    jax.distributed.initialize(**timeouts)


def _cluster_visible() -> bool:
  tpu_pod = len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
  # several slices of one host each: one worker hostname per slice, the slice count from the multislice runtime
  multislice = int(os.environ.get("MEGASCALE_NUM_SLICES", "1")) > 1
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  return tpu_pod or multislice or slurm


def batch_rows(mesh: Mesh, global_rows: int) -> tuple[int, int]:
  """(block index, block count): this process loads rows block*n/count .. (block+1)*n/count of a batch.

  Read from the batch sharding itself, so it holds for any mesh: processes whose devices hold the
  same rows (a model axis across hosts) get the same block.
  """
  sharding = batch_sharding(mesh, 1)
  starts = sorted({idx[0].start or 0 for idx in sharding.devices_indices_map((global_rows,)).values()})
  mine = sorted({idx[0].start or 0 for idx in sharding.addressable_devices_indices_map((global_rows,)).values()})
  per_process = len(mine)
  count = len(starts) // per_process
  block = starts.index(mine[0]) // per_process
  if mine != starts[block * per_process:(block + 1) * per_process]:
    raise ValueError(f"mesh {dict(mesh.shape)}: this process's batch rows are not one contiguous block; "
                     "order the mesh so each process's devices are adjacent on the batch axes")
  return block, count


def agreed_lengths(batch: Mapping[str, np.ndarray]) -> dict[str, int]:
  """The padded length per `*_ids` input: the maximum over all processes."""
  names = sorted(k for k in batch if k.endswith("_ids"))
  local = np.array([batch[k].shape[1] for k in names], np.int32)
  if jax.process_count() > 1:
    local = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(names)).max(axis=0)
  return dict(zip(names, map(int, local)))


def to_global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, pad_id: int, *,
                    pack_rows: int | None = None) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global arrays sharded over the batch axes (same shapes everywhere).

  `pack_rows` (a multiple of the global rows, e.g. the batch shards) packs each input's sequences into rows
  (rejax.data.packing): `*_ids/_segments/_last` [rows, ...] and `*_index` [sequences] replace `*_ids/_mask`.
  `teacher_scores` [queries, G], when the batch has them, is placed as the queries are (never packed).
  """
  out = {}
  for ids_key, length in agreed_lengths(batch).items():
    name = ids_key.removesuffix("_ids")
    ids, mask = batch[ids_key], batch[f"{name}_mask"]
    extra = length - ids.shape[1]
    if extra:
      ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_id)
      mask = np.pad(mask, ((0, 0), (0, extra)))
    local = {"ids": ids, "mask": mask} if pack_rows is None else _packed_local(ids, mask, pad_id, pack_rows, mesh)
    for part, x in local.items():
      out[f"{name}_{part}"] = jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)
  if "teacher_scores" in batch:
    scores = np.asarray(batch["teacher_scores"], np.float32)
    out["teacher_scores"] = jax.make_array_from_process_local_data(batch_sharding(mesh, scores.ndim), scores)
  return out


def _packed_local(ids: np.ndarray, mask: np.ndarray, pad_id: int, global_multiple: int,
                  mesh: Mesh) -> dict[str, np.ndarray]:
  """This process's rows packed, with as many rows as every other process's (the maximum) and the sequence
  index pointing at the global slots (this process's rows come after those of the blocks before it)."""
  block, blocks = batch_rows(mesh, batch_shards(mesh))
  if global_multiple % blocks:
    raise ValueError(f"packed rows in multiples of {global_multiple} do not split over {blocks} processes")
  packed = pack(ids, mask, pad_id, row_multiple=global_multiple // blocks)
  rows = packed.rows
  if jax.process_count() > 1:  # one row length (the longest any process chose), then one rows count
    length = int(np.max(multihost_utils.process_allgather(np.int32(packed.ids.shape[1]))))
    if length != packed.ids.shape[1]:
      packed = pack(ids, mask, pad_id, row_multiple=global_multiple // blocks, length=length)
    rows = int(np.max(multihost_utils.process_allgather(np.int32(packed.rows))))
    packed = packed.with_rows(rows, pad_id)
  offset = block * rows * packed.last.shape[1]
  return {"ids": packed.ids, "segments": packed.segments, "last": packed.last, "index": packed.index + offset}
