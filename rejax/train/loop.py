"""`rejax train`: the whole run, top to bottom in data-flow order.

    distributed init -> mesh -> model (load, shard) -> data -> state (+ resume) -> step (AOT per shape)
    -> loop (input, step, metrics, dev evaluation, checkpoint) -> export

The same command on the same workdir resumes from the latest complete checkpoint and, because a batch
is a pure function of (seed, step) and the step of (state, batch, seed), continues exactly as if it
had never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import shutil
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rejax.data import text
from rejax.data.convert import MANIFEST, convert
from rejax.data.pipeline import PipelineConfig, make_dataset, tokens_in
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import load_decoder
from rejax.models import LoRAConfig, config_from_hf_dict, init_decoder
from rejax.sharding import batch_sharding, make_mesh, use_mesh
from rejax.train import distributed
from rejax.train.checkpoint import Checkpointer
from rejax.train.config import to_json, validate
from rejax.train.evaluate import DevEval, is_due
from rejax.train.export_run import check_own_export_dir, export_run, own_export_dir
from rejax.train.flops import peak_flops, train_step_flops
from rejax.train.logger import RunLogger
from rejax.train.optim import linear_warmup_decay, make_optimizer
from rejax.train.step import LossConfig, init_train_state, jit_train_step, make_train_step


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the run stopped before saving anything after it."""


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, coordinator: str | None = None,
          num_processes: int | None = None, process_id: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns the last logged metrics."""
  # ---------------------------------------------------------------- distributed init, config rules
  distributed.initialize(coordinator, num_processes, process_id)
  validate(config, jax.device_count())
  workdir = pathlib.Path(workdir)
  primary = jax.process_index() == 0

  # ---------------------------------------------------------------- mesh
  mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  with use_mesh(mesh):
    # ------------------------------------------------------------- model: load or initialise, sharded
    base_dir = base_model_dir(config, workdir)
    replace_export = check_own_export_dir(config, workdir, base_dir)  # a bad export_dir fails before training
    model, model_cfg = build_model(config, base_dir, mesh)

    # ------------------------------------------------------------- data: this process's rows of each batch
    data_dir = dataset_dir(config, workdir)
    block, blocks = distributed.batch_rows(mesh, config.mesh.data * config.mesh.fsdp)
    pipeline = PipelineConfig(
        data_dir=str(data_dir), tokenizer_dir=str(base_dir), domain_settings=dict(config.data.domains),
        max_query_length=config.data.max_query_length, max_passage_length=config.data.max_passage_length,
        min_bucket=config.data.min_bucket, seed=config.seed)
    data_iter = iter(make_dataset(pipeline, num_steps=config.total_steps, process_index=block, process_count=blocks,
                                  num_workers=config.data.num_workers))
    tokenizer = text.load_tokenizer(base_dir)
    pad_id = text.pad_id_of(tokenizer)

    # ------------------------------------------------------------- train state, resumed if a checkpoint exists
    tx = make_optimizer(lr=config.optim.lr, total_steps=config.total_steps, warmup_ratio=config.optim.warmup_ratio,
                        b1=config.optim.b1, b2=config.optim.b2, eps=config.optim.eps,
                        weight_decay=config.optim.weight_decay, clip_norm=config.optim.clip_norm or None,
                        grad_divisor=config.optim.grad_divisor)
    graphdef, state = init_train_state(model, tx, wrt=nnx.LoRAParam if model_cfg.lora else nnx.Param)
    del model
    checkpoints = Checkpointer(workdir, every=config.ckpt_every, keep=config.keep_checkpoints,
                               best_metric=config.eval.metric if config.eval.keep_best else None)
    start, state = checkpoints.restore_latest(state, data_iter, warn=_warn)
    if not start and primary:
      workdir.mkdir(parents=True, exist_ok=True)
      (workdir / "config.json").write_text(to_json(config) + "\n")
    logger = RunLogger(workdir, total_steps=config.total_steps, start_step=start)
    logger.info(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices, {jax.process_count()} process(es); "
                f"{'resuming at step ' + str(start) if start else 'starting'}; model {base_dir}")
    dev_eval = DevEval(config.eval, graphdef, state, tokenizer, mesh, logger) if config.eval.every else None

    # ------------------------------------------------------------- the step, compiled ahead of time per shape
    loss_cfg = LossConfig(kind=config.loss.kind, temperature=config.loss.temperature,
                          ri_start_step=config.loss.ri_start_step, ri_clamp_max=config.loss.ri_clamp_max)
    step_fn = make_train_step(graphdef, tx, loss_cfg, grad_cache_chunk=config.optim.grad_cache_chunk or None,
                              lr_schedule=linear_warmup_decay(config.optim.lr, config.total_steps,
                                                              config.optim.warmup_ratio))
    compiled = CompiledSteps(jit_train_step(step_fn, state, batch_sharding(mesh, 2)), logger)
    key = jax.random.key(config.seed)
    flops_per_s = peak_flops() * jax.device_count()

    # ------------------------------------------------------------- the loop
    checkpoint_meta = {"seed": config.seed, "config": json.loads(to_json(config))}
    pending, last = None, {}
    try:
      for step in range(start, config.total_steps):
        waited = time.perf_counter()
        host_batch = next(data_iter)
        waited = time.perf_counter() - waited
        batch = distributed.to_global_batch(host_batch, mesh, pad_id)
        state, metrics = compiled(state, batch, key)
        shapes = {k: v.shape for k, v in batch.items() if k.endswith("_ids")}
        reasoning_pass = config.loss.kind == "ri_infonce" and step >= config.loss.ri_start_step
        flops = train_step_flops(model_cfg, shapes, reasoning_pass)
        tokens = tokens_in(host_batch) * blocks  # this process's real tokens, times the row blocks
        done = Pending(step + 1, metrics, tokens, flops, waited)
        if pending is not None:
          last = pending.resolve(logger, config.log_every, config.total_steps, flops_per_s)
        pending = done
        eval_due = is_due(step + 1, config.eval, config.total_steps)
        save_due = checkpoints.manager.should_save(step + 1) or step + 1 == config.total_steps
        if eval_due or save_due:  # this step's record first: its figures join it, its checkpoint may rank by them
          evaluate = functools.partial(dev_eval, state, step + 1) if eval_due else None
          last, pending = pending.resolve(logger, config.log_every, config.total_steps, flops_per_s, evaluate), None
        if save_due:
          checkpoints.save(step + 1, state, data_iter, {"step": step + 1, **checkpoint_meta},
                           figures=last if eval_due else None, force=step + 1 == config.total_steps)
      if pending is not None:
        last = pending.resolve(logger, config.log_every, config.total_steps, flops_per_s)
    finally:
      checkpoints.wait()  # a save in flight completes even when the run stops on an error
      logger.close()

    # ------------------------------------------------------------- export (process 0 writes)
    if config.export_dir:  # a resumed or re-run run replaces its previous export, renamed into place when complete
      export_run(workdir, own_export_dir(config, workdir), overwrite=replace_export,
                 step=checkpoints.best_step() if config.eval.export_best else None)
    checkpoints.close()
  return last


@dataclasses.dataclass
class Pending:
  """A dispatched step whose metrics are fetched one step later, so the host never waits on the device."""

  step: int
  metrics: dict
  tokens: int
  flops: float
  input_wait_s: float
  dispatched: float = dataclasses.field(default_factory=time.perf_counter)

  def resolve(self, logger: RunLogger, log_every: int, total: int, flops_per_s: float,
              evaluate: Callable[[], dict[str, float]] | None = None) -> dict[str, float]:
    """Fetches, checks and logs the step's scalars, with `evaluate()`'s figures (run after the step is timed)."""
    values = {k: float(v) for k, v in jax.device_get(self.metrics).items()}
    seconds = time.perf_counter() - self.dispatched
    if not math.isfinite(values["loss"]):
      raise NonFiniteLossError(
          f"loss is {values['loss']} at step {self.step}; stopped without saving it. The last good checkpoint "
          "is the latest under checkpoints/; lower optim.lr, check the data, or resume with the same command.")
    values.update(tokens_per_s=self.tokens / seconds, mfu=self.flops / seconds / flops_per_s,
                  step_s=seconds, input_wait_s=self.input_wait_s)
    if evaluate is not None:
      values.update(evaluate())
    if self.step % log_every == 0 or self.step == total or evaluate is not None:
      logger.log(self.step, values)
    logger.advance()
    return values


class CompiledSteps:
  """The jitted step lowered and compiled once per batch shape, with its memory analysis logged."""

  def __init__(self, jitted, logger: RunLogger):
    self.jitted, self.logger, self.cache = jitted, logger, {}

  def __call__(self, state, batch, key):
    signature = tuple(sorted((k, v.shape) for k, v in batch.items()))
    if signature not in self.cache:
      start = time.perf_counter()
      compiled = self.jitted.lower(state, batch, key).compile()
      shapes = ", ".join(f"{k} {tuple(s)}" for k, s in signature if k.endswith("_ids"))
      self.logger.info(f"compiled the step for {shapes} in {time.perf_counter() - start:.1f}s; "
                       f"{_memory_summary(compiled)}")
      self.cache[signature] = compiled
    return self.cache[signature](state, batch, key)


def _memory_summary(compiled) -> str:
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend reports it
    return "memory analysis unavailable"
  if m is None:
    return "memory analysis unavailable"
  gib = 1024**3
  return (f"per device: arguments {m.argument_size_in_bytes / gib:.2f} GiB, outputs {m.output_size_in_bytes / gib:.2f} "
          f"GiB (aliased {m.alias_size_in_bytes / gib:.2f}), temporaries {m.temp_size_in_bytes / gib:.2f} GiB")


def base_model_dir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> pathlib.Path:
  """The HF directory the run starts from: model.path, or for a random model `workdir/base_model`
  (model.hf_config as config.json + the tokenizer of model.tokenizer), written once by process 0."""
  if config.model.path:
    return resolve_model_dir(config.model.path)
  base = workdir / "base_model"
  if jax.process_index() == 0 and not (base / "config.json").is_file():
    tokenizer_dir = resolve_model_dir(config.model.tokenizer)
    staging = workdir / "base_model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for f in tokenizer_dir.iterdir():
      if f.is_file() and (f.name.startswith(("tokenizer", "special_tokens")) or f.name in ("vocab.json", "merges.txt")):
        shutil.copy(f, staging / f.name)
    (staging / "config.json").write_text(json.dumps(config.model.hf_config.to_dict(), indent=2) + "\n")
    staging.rename(base)
  _barrier("base_model")
  return base


def dataset_dir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> pathlib.Path:
  """data.path if it is a converted dataset; if it holds released JSONL instead, its conversion under
  `workdir/data` (made once, by process 0)."""
  path = pathlib.Path(config.data.path)
  if (path / MANIFEST).is_file():
    return path
  if not path.is_dir() or not (list(path.glob("*.jsonl")) or list(path.glob("*.jsonl.gz"))):
    raise FileNotFoundError(f"data.path={config.data.path}: neither a converted dataset (no {MANIFEST}) nor a "
                            "directory of `{domain}-formatted.jsonl[.gz]` files")
  converted = workdir / "data"
  if jax.process_index() == 0 and not (converted / MANIFEST).is_file():
    convert([str(path / "*.jsonl*")], converted)
  _barrier("dataset")
  return converted


def build_model(config: ml_collections.ConfigDict, base_dir: pathlib.Path, mesh):
  """(decoder, config): loaded from `base_dir`'s safetensors, or randomly initialised, created sharded."""
  m = config.model
  lora = LoRAConfig(rank=m.lora.rank, alpha=m.lora.alpha, dropout=m.lora.dropout,
                    targets=tuple(m.lora.targets)) if m.lora.enabled else None
  runtime = dict(dtype=jnp.dtype(m.dtype), param_dtype=jnp.dtype(m.param_dtype), remat=m.remat,
                 attention_impl=m.attention_impl or None, lora=lora)
  if any(base_dir.glob("*.safetensors")):
    return load_decoder(base_dir, mesh=mesh, lora_seed=config.seed, **runtime)
  if config.model.path:
    raise FileNotFoundError(f"model.path={config.model.path}: no *.safetensors in {base_dir}")
  cfg = config_from_hf_dict(json.loads((base_dir / "config.json").read_text()), **runtime)
  return init_decoder(cfg, seed=config.seed, mesh=mesh), cfg


def _warn(message: str) -> None:
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"rejax:{name}")
