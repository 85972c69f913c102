"""The run's step as the devices run it, built one way for `rejax train` (real arrays) and `rejax plan` (abstract
ones): jitted with its shardings, over a real or abstract train state, for the batch shapes the data can produce,
compiled ahead of time per shape with its memory figures (logged, and kept in WORKDIR/compiled_steps.jsonl)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from rejax.data.packing import max_segments
from rejax.data.text import bucket_lengths
from rejax.io import append_text
from rejax.sharding import batch_shards, batch_sharding
from rejax.storage import AnyPath
from rejax.train.compiler_warnings import describe_resharding, resharding, stderr_lines
from rejax.train.components import Components
from rejax.train.state import TrainState, jit_train_step
from rejax.train.step import make_train_step

COMPILED_STEPS = "compiled_steps.jsonl"  # in a workdir: one line per step shape compiled (shapes, seconds, memory)
BATCH_INPUTS = ("query", "passage", "reason")  # each a pair of [rows, length] int32 arrays: *_ids, *_mask


def packed_row_multiple(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
  """Packed batches (`data.pack`) have rows in multiples of this: the batch shards, and GradCache's chunk."""
  return math.lcm(batch_shards(mesh), config.optim.grad_cache_chunk or 1)


def jitted_train_step(parts: Components, graphdef: nnx.GraphDef, state: TrainState) -> Callable:
  """THE step of the run, jitted with the state's shardings and batches over the batch axes; `state` may be
  real or abstract (ShapeDtypeStructs with shardings): only its shardings are read."""
  step = make_train_step(graphdef, parts.optimizer, parts.loss, grad_cache_chunk=parts.grad_cache_chunk,
                         lr_schedule=parts.schedule)
  return jit_train_step(step, state)  # batches come placed over the batch axes (to_global_batch, abstract_batch)


@dataclasses.dataclass(frozen=True)
class BatchShape:
  """One compiled shape of the step: (rows, padded length) per input."""

  query: tuple[int, int]
  passage: tuple[int, int]
  reason: tuple[int, int]

  @property
  def name(self) -> str:
    (b, q), (p, t), (_, r) = self.query, self.passage, self.reason
    return f"{b}x{p // b} q{q} p{t} r{r}"

  def ids_shapes(self) -> dict[str, tuple[int, int]]:
    return {f"{name}_ids": getattr(self, name) for name in BATCH_INPUTS}

  def abstract_batch(self, mesh: Mesh, packed: bool = False, teacher: bool = False) -> dict[str, jax.ShapeDtypeStruct]:
    """The batch `rejax train` feeds the step, as ShapeDtypeStructs sharded like it. Packed: its worst case, a
    row per sequence (packing never needs more rows than sequences). `teacher`: with the teacher's scores of each
    group (a loss that distils)."""
    def array(shape, dtype=jnp.int32):
      return jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(mesh, len(shape)))

    batch = {}
    for name in BATCH_INPUTS:
      rows, length = getattr(self, name)
      batch[f"{name}_ids"] = array((rows, length))
      if packed:
        batch.update({f"{name}_segments": array((rows, length)), f"{name}_last": array((rows, max_segments(length))),
                      f"{name}_index": array((rows,))})
      else:
        batch[f"{name}_mask"] = array((rows, length))
    if teacher:
      batch["teacher_scores"] = array((self.query[0], self.passage[0] // self.query[0]), jnp.float32)
    return batch


def batch_shapes(config: ml_collections.ConfigDict, domains: Mapping[str, tuple[int, int]], *,
                 all_buckets: bool = False) -> list[BatchShape]:
  """The step shapes of `domains`' distinct (global batch, G): at the longest length buckets (the memory worst
  case), or with `all_buckets` every combination of buckets the pipeline can pad to."""
  d = config.data
  query_buckets = bucket_lengths(d.max_query_length, d.min_bucket) if all_buckets else [d.max_query_length]
  passage_buckets = bucket_lengths(d.max_passage_length, d.min_bucket) if all_buckets else [d.max_passage_length]
  shapes = []
  for batch, group in sorted({tuple(map(int, setting)) for setting in domains.values()}, key=lambda s: (-s[1], s)):
    for q in query_buckets:
      for p in passage_buckets:
        for r in query_buckets:
          shapes.append(BatchShape(query=(batch, q), passage=(batch * group, p), reason=(batch, r)))
  return shapes


def memory_figures(compiled) -> dict[str, int] | None:
  """Per-device bytes of a compiled step (arguments, outputs, aliased, temporaries, code, and the peak they
  add up to), or None where the backend does not report them."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend reports it
    return None
  if m is None:
    return None
  figures = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
             "alias_bytes": m.alias_size_in_bytes, "temp_bytes": m.temp_size_in_bytes,
             "code_bytes": m.generated_code_size_in_bytes}
  figures["peak_bytes"] = (figures["argument_bytes"] + figures["output_bytes"] - figures["alias_bytes"]
                           + figures["temp_bytes"] + figures["code_bytes"])
  return {k: int(v) for k, v in figures.items()}


def describe_memory(figures: dict[str, int] | None) -> str:
  if figures is None:
    return "memory analysis unavailable"
  gib = 1024**3
  return (f"per device: arguments {figures['argument_bytes'] / gib:.2f} GiB, outputs "
          f"{figures['output_bytes'] / gib:.2f} GiB (aliased {figures['alias_bytes'] / gib:.2f}), temporaries "
          f"{figures['temp_bytes'] / gib:.2f} GiB, peak {figures['peak_bytes'] / gib:.2f} GiB")


class CompiledSteps:
  """The jitted step lowered and compiled once per batch shape. Each new shape is logged (`log`) with its compile
  time and memory figures, which process 0 also appends to `workdir`/COMPILED_STEPS."""

  def __init__(self, jitted, log: Callable[[str], None], workdir: AnyPath):
    self.jitted, self.log, self.record = jitted, log, workdir / COMPILED_STEPS
    self.cache = {}
    self.compile_seconds = 0.0  # spent compiling in the last call (0 when its shape was compiled before)

  def __call__(self, state, batch, key):
    signature = tuple(sorted((k, v.shape) for k, v in batch.items()))
    self.compile_seconds = 0.0
    if signature not in self.cache:
      start = time.perf_counter()
      with stderr_lines() as compiler_said:
        compiled = self.jitted.lower(state, batch, key).compile()
      self.compile_seconds = time.perf_counter() - start
      self._recorded({k: tuple(s) for k, s in signature if k.endswith("_ids")}, self.compile_seconds, compiled,
                     resharding(compiler_said))
      self.cache[signature] = compiled
    return self.cache[signature](state, batch, key)

  def _recorded(self, shapes: dict[str, tuple[int, ...]], seconds: float, compiled,
                reshardings: Sequence[str] = ()) -> None:
    figures = memory_figures(compiled)
    named = ', '.join(f'{k} {s}' for k, s in shapes.items())
    self.log(f"compiled the step for {named} in {seconds:.1f}s; {describe_memory(figures)}")
    if reshardings:
      self.log(f"warning: for {named}, {describe_resharding(reshardings)}")
    if jax.process_index() == 0:
      record = {"shapes": {k: list(s) for k, s in shapes.items()}, "compile_seconds": round(seconds, 2),
                **(figures or {}), "involuntary_reshardings": len(reshardings)}
      append_text(self.record, json.dumps(record) + "\n", what="the compiled step's memory figures to")
