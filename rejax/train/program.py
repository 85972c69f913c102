"""The compiled program of a run, built one way for `rejax train` (real arrays) and `rejax plan` (abstract
ones): the optimizer, the jitted step with its shardings, the train state, the batch shapes the data can
produce, and the step compiled ahead of time per shape with its memory figures."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rejax.data.packing import max_segments
from rejax.data.text import bucket_lengths
from rejax.models import DecoderConfig, abstract_decoder
from rejax.sharding import batch_shards, batch_sharding, param_shardings
from rejax.train.optim import linear_warmup_decay, make_optimizer
from rejax.train.step import LossConfig, TrainState, jit_train_step, make_train_step, opt_state_shardings

COMPILED_STEPS = "compiled_steps.jsonl"  # in a workdir: one line per step shape compiled (shapes, seconds, memory)
BATCH_INPUTS = ("query", "passage", "reason")  # each a pair of [rows, length] int32 arrays: *_ids, *_mask


def make_tx(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The run's optimizer from `optim.*` and `total_steps`."""
  o = config.optim
  return make_optimizer(lr=o.lr, total_steps=config.total_steps, warmup_ratio=o.warmup_ratio, b1=o.b1, b2=o.b2,
                        eps=o.eps, weight_decay=o.weight_decay, clip_norm=o.clip_norm or None,
                        grad_divisor=o.grad_divisor)


def trained_variables(config: ml_collections.ConfigDict):
  """The nnx filter of what the run trains: the adapters with LoRA, else every parameter."""
  return nnx.LoRAParam if config.model.lora.enabled else nnx.Param


def loss_config(config: ml_collections.ConfigDict) -> LossConfig:
  return LossConfig(kind=config.loss.kind, temperature=config.loss.temperature,
                    ri_start_step=config.loss.ri_start_step, ri_clamp_max=config.loss.ri_clamp_max)


def reasoning_pass(config: ml_collections.ConfigDict, step: int) -> bool:
  """Whether step `step` of the run encodes the reasoning queries (RI-InfoNCE, from loss.ri_start_step)."""
  return loss_config(config).reasoning_pass(step)


def packed_row_multiple(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
  """Packed batches (`data.pack`) have rows in multiples of this: the batch shards, and GradCache's chunk."""
  return math.lcm(batch_shards(mesh), config.optim.grad_cache_chunk or 1)


def jitted_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                      state: TrainState, mesh: Mesh) -> Callable:
  """THE step of the run, jitted with the state's shardings and batches over the batch axes; `state` may be
  real or abstract (ShapeDtypeStructs with shardings): only its shardings are read."""
  step = make_train_step(graphdef, tx, loss_config(config), grad_cache_chunk=config.optim.grad_cache_chunk or None,
                         lr_schedule=linear_warmup_decay(config.optim.lr, config.total_steps,
                                                         config.optim.warmup_ratio))
  return jit_train_step(step, state)  # batches come placed over the batch axes (to_global_batch, abstract_batch)


def abstract_train_state(model_cfg: DecoderConfig, tx: optax.GradientTransformation, mesh: Mesh,
                         wrt) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) with the shapes, dtypes and shardings `init_train_state` gives a real model on `mesh`,
  and no memory: every leaf a ShapeDtypeStruct."""
  graphdef, state = abstract_decoder(model_cfg)
  shardings = param_shardings(state, mesh)

  def with_sharding(path, var):
    return var.replace(jax.ShapeDtypeStruct(var.shape, var.dtype, sharding=sharding_of[path]))

  sharding_of = dict(nnx.to_flat_state(shardings))
  state = nnx.map_state(with_sharding, state)
  model = nnx.merge(graphdef, state)
  graphdef, trainable, frozen = nnx.split(model, wrt, ...)
  opt_shardings = opt_state_shardings(tx, trainable)
  opt_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                           jax.eval_shape(tx.init, trainable), opt_shardings)
  replicated = NamedSharding(mesh, PartitionSpec())
  return graphdef, TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), trainable=trainable,
                              frozen=frozen, opt_state=opt_state)


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

  def abstract_batch(self, mesh: Mesh, packed: bool = False) -> dict[str, jax.ShapeDtypeStruct]:
    """The batch `rejax train` feeds the step, as ShapeDtypeStructs sharded like it. Packed: its worst case, a
    row per sequence (packing never needs more rows than sequences)."""
    def array(shape):
      return jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding(mesh, len(shape)))

    batch = {}
    for name in BATCH_INPUTS:
      rows, length = getattr(self, name)
      batch[f"{name}_ids"] = array((rows, length))
      if packed:
        batch.update({f"{name}_segments": array((rows, length)), f"{name}_last": array((rows, max_segments(length))),
                      f"{name}_index": array((rows,))})
      else:
        batch[f"{name}_mask"] = array((rows, length))
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
  """The jitted step lowered and compiled once per batch shape; `on_compile(shapes, seconds, compiled)` is
  told of each new one."""

  def __init__(self, jitted, on_compile: Callable[[dict[str, tuple[int, ...]], float, object], None]):
    self.jitted, self.on_compile, self.cache = jitted, on_compile, {}
    self.compile_seconds = 0.0  # spent compiling in the last call (0 when its shape was compiled before)

  def __call__(self, state, batch, key):
    signature = tuple(sorted((k, v.shape) for k, v in batch.items()))
    self.compile_seconds = 0.0
    if signature not in self.cache:
      start = time.perf_counter()
      compiled = self.jitted.lower(state, batch, key).compile()
      self.compile_seconds = time.perf_counter() - start
      self.on_compile({k: tuple(s) for k, s in signature if k.endswith("_ids")}, self.compile_seconds, compiled)
      self.cache[signature] = compiled
    return self.cache[signature](state, batch, key)
