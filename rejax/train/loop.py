"""`rejax train`: the whole run, top to bottom in data-flow order.

    distributed init -> workdir lock -> mesh -> model (load, shard) -> data -> state (+ resume)
    -> step (AOT per shape) -> loop (input, agreed stop, step, metrics, dev evaluation, checkpoint) -> export

The same command on the same workdir resumes from the latest complete checkpoint and, because a batch
is a pure function of (seed, step) and the step of (state, batch, seed), continues exactly as if it
had never stopped. A preemption signal ends it after a step every process agrees on, once that step's checkpoint
is complete (rejax.train.preemption); `rejax train` then exits with status 75.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any

import jax
import ml_collections

from rejax.data import text
from rejax.data.pipeline import close_at_exit, make_dataset
from rejax.io import write_text_atomic
from rejax.sharding import make_mesh, use_mesh
from rejax.storage import AnyPath, as_path, check_store
from rejax.train import distributed
from rejax.train.checkpoint import Checkpointer
from rejax.train.config import to_json, validate
from rejax.train.evaluate import DevEval, is_due
from rejax.train.export_run import check_own_export_dir, export_run, own_export_dir
from rejax.train.flops import peak_flops
from rejax.train.goodput import step_work
from rejax.train.lock import lock_workdir, releases_workdir_lock
from rejax.train.logger import RunLogger
from rejax.train.peers import watch_peers
from rejax.train.preemption import Preempted, PreemptionRequest, catch_preemption, describe
from rejax.train.profile import StepProfiler
from rejax.train.compiled_step import CompiledSteps, jitted_train_step, packed_row_multiple
from rejax.train.components import components
from rejax.train.resume_config import CONFIG_CHANGES, check_resume, describe_changes, record_resume_changes
from rejax.train.run_inputs import barrier, base_model_dir, build_model, dataset_dir
from rejax.train.state import init_train_state
from rejax.train.step_metrics import LateMetrics, Pending


@releases_workdir_lock
def train(config: ml_collections.ConfigDict, workdir: str | AnyPath, *, coordinator: str | None = None,
          num_processes: int | None = None, process_id: int | None = None,
          heartbeat_timeout: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns the last logged metrics. A multi-process run's processes
  watch each other (rejax.train.peers): when one is lost, or fails, the others stop with one line naming it.
  A preemption signal (`preemption.signals`) to any process stops them all after one step, with a checkpoint:
  `Preempted` is raised once it is complete (rejax.train.preemption)."""
  distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout)
  validate(config, jax.device_count())
  watch = watch_peers(heartbeat_timeout)
  try:
    with catch_preemption(config.preemption.signals) as preemption:  # after initialize: it replaces JAX's notifier
      last = _train(config, workdir, preemption)
  except Preempted:  # an orderly stop: every process saved the same step and is stopping too
    if watch is not None:
      watch.finish()
    raise
  except BaseException as e:
    if watch is not None:
      watch.explain(e)  # a collective that failed because a peer is gone: the watch ends the run naming it
      watch.stop()
    raise
  if watch is not None:
    watch.finish()
  return last


def _train(config: ml_collections.ConfigDict, workdir: str | AnyPath, preemption: PreemptionRequest) -> dict[str, Any]:
  # ---------------------------------------------------------------- workdir and the config's objects
  workdir = as_path(workdir, "--workdir")  # a local directory or gs://BUCKET/PATH (rejax.storage)
  check_store(workdir, "--workdir")
  lock_workdir(workdir, warn=_warn)  # a second run on this workdir stops here; released when train() ends
  changed = check_resume(config, workdir)  # a key a resumed run may not change (model, data, loss) stops here
  parts = components(config)  # decoder runtime, schedule and optimizer, loss, trained variables, pipeline
  primary = jax.process_index() == 0

  # ---------------------------------------------------------------- mesh
  mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, dcn_data=config.mesh.dcn_data)
  with use_mesh(mesh):
    # ------------------------------------------------------------- model: load or initialise, sharded
    base_dir = base_model_dir(config, workdir)
    replace_export = check_own_export_dir(config, workdir, base_dir)  # a bad export_dir fails before training
    model, model_cfg = build_model(config, base_dir, mesh, parts.decoder_runtime)

    # ------------------------------------------------------------- data: this process's rows of each batch
    block, blocks = distributed.batch_rows(mesh, config.mesh.dcn_data * config.mesh.data * config.mesh.fsdp)
    pipeline = parts.pipeline_for(dataset_dir(config, workdir), base_dir)
    data_iter = close_at_exit(iter(make_dataset(pipeline, num_steps=config.total_steps, process_index=block,
                                                process_count=blocks, num_workers=config.data.num_workers)))
    tokenizer = text.load_tokenizer(base_dir)
    pad_id = text.pad_id_of(tokenizer)

    # ------------------------------------------------------------- train state, resumed if a checkpoint exists
    graphdef, state = init_train_state(model, parts.optimizer, wrt=parts.trained)
    del model
    checkpoints = Checkpointer(workdir, every=config.ckpt_every, keep=config.keep_checkpoints,
                               best_metric=config.eval.metric if config.eval.keep_best else None)
    start, state = checkpoints.restore_latest(state, data_iter, warn=_warn)
    if not start and primary:
      workdir.mkdir(parents=True, exist_ok=True)
      write_text_atomic(workdir / "config.json", to_json(config) + "\n", what="the run's config")
    elif changed:  # config.json becomes this command's config (export_dir, eval, ...); the change is recorded
      record_resume_changes(config, workdir, changed, start)
      _warn(f"resuming at step {start} with {describe_changes(changed)} (recorded in {workdir / CONFIG_CHANGES})"
            + ("; the learning-rate schedule now spans the new total_steps" if "total_steps" in changed else ""))
    logger = RunLogger(workdir, total_steps=config.total_steps, start_step=start)
    logger.info(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices, {jax.process_count()} process(es); "
                f"{'resuming at step ' + str(start) if start else 'starting'}; model {base_dir}")
    dev_eval = DevEval(config.eval, graphdef, state, tokenizer, mesh, logger) if config.eval.every else None

    # ------------------------------------------------------------- the step, compiled ahead of time per shape
    compiled = CompiledSteps(jitted_train_step(parts, graphdef, state), logger.info, workdir)
    key = jax.random.key(config.seed)
    pack_rows = packed_row_multiple(config, mesh) if config.data.pack else None
    profiler = StepProfiler(workdir, config.profile.start_step, config.profile.steps, logger.info)
    metrics = LateMetrics(logger, config.log_every, config.total_steps, peak_flops() * jax.device_count())

    # ------------------------------------------------------------- the loop
    checkpoint_meta = {"seed": config.seed, "config": json.loads(to_json(config))}
    signalled, saved = {}, start  # signalled: process -> signal, once they agree to stop; saved: the last step saved
    try:
      for step in range(start, config.total_steps):
        signalled = preemption.agreed()  # one answer on every process: stop before this step, save the one before
        if signalled:
          metrics.resolve_now()
          logger.info(f"stopping before step {step + 1} ({describe(signalled)}); saving step {step}")
          if step > saved:
            logger.flush()
            checkpoints.save(step, state, data_iter, {"step": step, **checkpoint_meta}, force=True)
          break
        waited = time.perf_counter()
        host_batch = next(data_iter)
        waited = time.perf_counter() - waited
        batch = distributed.to_global_batch(host_batch, mesh, pad_id, pack_rows=pack_rows)
        with profiler.step(step + 1, previous_outputs=state):
          state, step_metrics = compiled(state, batch, key)
        profiler.after(step + 1, step_metrics)
        metrics.compiled(compiled.compile_seconds)
        computed = {k: v.shape for k, v in batch.items() if k.endswith("_ids")}
        work = step_work(model_cfg, host_batch, computed, parts.loss.reasoning_pass(step), blocks)
        metrics.dispatched(Pending(step + 1, step_metrics, work, waited, profiled=profiler.covers(step + 1)))

        eval_due = is_due(step + 1, config.eval, config.total_steps)
        save_due = checkpoints.manager.should_save(step + 1) or step + 1 == config.total_steps
        if eval_due or save_due:  # this step's record first: its figures join it, its checkpoint may rank by them
          figures = metrics.resolve_now(functools.partial(dev_eval, state, step + 1) if eval_due else None)
        if save_due:
          logger.flush()  # on a bucket metrics.jsonl is rewritten now and then: whole up to every checkpoint
          checkpoints.save(step + 1, state, data_iter, {"step": step + 1, **checkpoint_meta},
                           figures=figures if eval_due else None, force=step + 1 == config.total_steps)
          saved = step + 1
      metrics.resolve_now()
    finally:
      profiler.close()
      checkpoints.wait()  # a save in flight completes even when the run stops on an error
      logger.close()
    if signalled:  # no export: it could outlast the notice period; the same command resumes, then exports
      checkpoints.close()
      barrier("preempted")  # every process's part of the checkpoint is written before any process exits
      raise Preempted(step, signalled)

    # ------------------------------------------------------------- export (process 0 writes)
    if config.export_dir:  # a resumed or re-run run replaces its previous export, renamed into place when complete
      export_run(workdir, own_export_dir(config, workdir), overwrite=replace_export,
                 step=checkpoints.best_step() if config.eval.export_best else None)
    checkpoints.close()
  return metrics.last


def _warn(message: str) -> None:
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)
