"""Orbax checkpoints of a run: train state + data iterator + metadata (step, config, seed) per step.

Saves are asynchronous every `ckpt_every` steps and the last `keep` are kept; a step directory appears
only once complete, so the latest one is always restorable. Restore takes explicit target shardings,
so a run saved on one mesh continues on another (different shape or device count).

Frozen parameters (the base model under LoRA) are not saved: they are re-read from `model.path`.

A save that the disk cannot take (full, over quota, read-only) surfaces where Orbax raises it, in `save` (the
previous asynchronous save, or this one's start) or `wait`; it becomes one `rejax.io.WriteError` line naming the
step, the bytes it needed and the step to resume from, and its unfinished `N.orbax-checkpoint-tmp*` directory is
removed (Orbax's own error logs of it, tracebacks from its threads, are silenced). The unfinished directory a
killed run leaves is removed by the next run's `restore_latest`; `rejax export` never removes anything.

With `best_metric` (config.eval.keep_best), the checkpoint with the highest dev figure is kept as well, by the
same Orbax manager: its preservation policy is "any of" LatestN(keep) and BestN(1), so rotation keeps the
latest `keep` for resuming and the best one besides. Orbax writes each save's figures next to it
(`checkpoints/<step>/metrics/metrics`) and reads them back when a manager opens the directory, so the best
step, and its figure, survive a resume and are what `rejax export --step best` finds.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import pathlib
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from rejax.io import STORAGE_ERRNOS, storage_errno, write_error
from rejax.storage import as_path, copy_file, files_under, is_remote, remove_dir
from rejax.train.state import TrainState

UNFINISHED = "*.orbax-checkpoint-tmp*"  # a step Orbax is still writing (or was, when its process was killed)


def _saved_part(state: TrainState) -> dict[str, Any]:
  return {"step": state.step, "trainable": state.trainable, "opt_state": state.opt_state}


def _best_key(metric: str):
  """Returns the ranking key of a save's figures: `eval/{metric}`, then the earlier step (a later checkpoint
  replaces the best only by beating it). Figures without the metric (saved under another eval.metric) rank last."""
  return lambda figures: (figures.get(f"eval/{metric}", -math.inf), -figures.get("step", 0))


class Checkpointer:
  """Saves and restores (state, data iterator, metadata) under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str | pathlib.Path, *, every: int, keep: int, async_save: bool = True,
               best_metric: str | None = None):
    workdir = as_path(workdir)
    self.directory = (workdir if is_remote(workdir) else workdir.absolute()) / "checkpoints"
    self.best_metric = best_metric
    if best_metric is None:
      options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                             enable_async_checkpointing=async_save)
    else:
      # best_fn turns on Orbax's metrics (written with each save, read back on open, best_step()); the policy,
      # not max_to_keep, decides what rotation deletes. A save without figures is kept only while it is recent.
      policy = ocp.checkpoint_managers.AnyPreservationPolicy([
          ocp.checkpoint_managers.LatestN(n=keep),
          ocp.checkpoint_managers.BestN(get_metric_fn=_best_key(best_metric), n=1,
                                        keep_checkpoints_without_metrics=False)])
      options = ocp.CheckpointManagerOptions(save_interval_steps=every, enable_async_checkpointing=async_save,
                                             best_fn=_best_key(best_metric), best_mode="max",
                                             preservation_policy=policy)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "meta"))
    self._failure: Exception | None = None  # a save that failed for lack of space, reported once
    self._in_flight_bytes = 0
    _quiet_orbax_storage_errors()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the highest `best_metric` (the earliest of equals); None without figures or best_metric."""
    return self.manager.best_step() if self.best_metric is not None else None

  def save(self, step: int, state: TrainState, data_iterator, meta: dict, *, figures: dict | None = None,
           force: bool = False) -> bool:
    """Starts saving `step` if it is due (or `force`), ranked by the `eval/*` scalars of `figures` when the best is
    kept; returns whether it started."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(_saved_part(state)),
                              data=grain.checkpoint.CheckpointSave(data_iterator),
                              meta=ocp.args.JsonSave(meta))
    metrics = None
    if figures and self.best_metric is not None:
      metrics = {**{k: v for k, v in figures.items() if k.startswith("eval/")}, "step": step}
    previous_bytes, self._in_flight_bytes = self._in_flight_bytes, _bytes_of(_saved_part(state))
    try:
      if force or self.manager.should_save(step):
        _check_writable(self.directory)  # Orbax meets a read-only directory with a 5-minute timeout, not its error
      return self.manager.save(step, args=args, metrics=metrics, force=force)
    except Exception as e:
      raise self._storage_failure(e, step, max(previous_bytes, self._in_flight_bytes)) from e

  def restore_latest(self, target: TrainState, data_iterator, warn=print) -> tuple[int, TrainState]:
    """(step, state) of the newest checkpoint that restores whole, or (0, target) when there is none.

    A damaged newest checkpoint (a truncated file, a killed disk) falls back to the one before it: when an older
    one restores, the newer ones that did not are moved to `checkpoints.unreadable/` (kept for inspection, never
    deleted) with a warning naming each, so the run can save those steps again. When none restores, the newest
    one's error is raised and nothing is moved (that is a problem of the run, e.g. a different model).
    """
    self.remove_unfinished(warn)
    failed: list[tuple[int, Exception]] = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state, _ = self.restore(step, target, data_iterator)
      except Exception as e:  # noqa: BLE001 - Orbax and the file system raise many types for a damaged checkpoint
        failed.append((step, e))
        continue
      for bad, error in failed:
        self._set_aside(bad, error, warn)
      return step, state
    if failed:
      raise failed[0][1]
    return 0, target

  def _set_aside(self, step: int, error: Exception, warn) -> None:
    aside = self.directory.with_name("checkpoints.unreadable")
    if jax.process_index() == 0:
      aside.mkdir(exist_ok=True)
      if is_remote(aside):  # no rename on a bucket: copied, then removed commit file first
        for name, path in files_under(self.directory / str(step)):
          copy_file(path, aside / str(step) / name)
        remove_dir(self.directory / str(step), commit="commit_success.txt")
      else:
        (self.directory / str(step)).rename(aside / str(step))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"rejax:set_aside:{step}")
    self.manager.reload()
    warn(f"checkpoint {self.directory / str(step)} could not be restored ({type(error).__name__}: "
         f"{str(error).splitlines()[0][:200] if str(error) else ''}); moved to {aside / str(step)}, resuming from an "
         "earlier checkpoint")

  def restore(self, step: int, target: TrainState, data_iterator) -> tuple[TrainState, dict]:
    """(state, meta) of `step`, arrays placed in `target`'s shardings; the data iterator restored in place."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            _saved_part(target))
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              data=grain.checkpoint.CheckpointRestore(data_iterator),
                              meta=ocp.args.JsonRestore())
    restored = self.manager.restore(step, args=args)
    saved = restored["state"]
    state = target.replace(step=saved["step"], trainable=saved["trainable"], opt_state=saved["opt_state"])
    return state, restored["meta"]

  def restore_params(self, step: int, target_trainable) -> tuple[Any, dict]:
    """(trainable params, meta) of `step` without optimizer or data state (for export)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target_trainable)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
                                  item={"trainable": abstract},
                                  restore_args={"trainable": ocp.checkpoint_utils.construct_restore_args(abstract)},
                                  partial_restore=True),
                              meta=ocp.args.JsonRestore())
    restored = self.manager.restore(step, args=args)
    return restored["state"]["trainable"], restored["meta"]

  def wait(self) -> None:
    """Blocks until the save in flight is written; a storage failure already reported is not raised again."""
    if self._failure is not None:
      return
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      raise self._storage_failure(e, None, self._in_flight_bytes) from e

  def remove_unfinished(self, warn=None) -> list[pathlib.Path]:
    """Removes the `N.orbax-checkpoint-tmp*` directories of saves that never completed (process 0; the others
    wait for it), naming them in `warn` when given; returns them. Only a run that holds the workdir calls it."""
    unfinished = sorted(self.directory.glob(UNFINISHED)) if self.directory.is_dir() else []
    if jax.process_index() == 0:
      for path in unfinished:
        remove_dir(path)
      if unfinished and warn is not None:
        warn(f"removed the unfinished checkpoint save(s) {', '.join(p.name for p in unfinished)} in "
             f"{self.directory} (left by a run that stopped while saving)")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("rejax:remove_unfinished")
    return unfinished

  def _storage_failure(self, error: Exception, step: int | None, size: int) -> Exception:
    """`error` itself, unless it is the disk refusing the save (ENOSPC, EDQUOT, EROFS, EACCES): then the one-line
    WriteError, once its unfinished directory is removed. Names the step Orbax was writing and where to resume."""
    if self._failure is not None:
      return self._failure
    if storage_errno(error) not in STORAGE_ERRNOS:
      return error
    unfinished = [p for p in sorted(self.directory.glob(UNFINISHED)) if p.name.split(".")[0].isdigit()]
    if jax.process_index() == 0:
      for path in unfinished:
        shutil.rmtree(path, ignore_errors=True)
    steps = [int(p.name.split(".")[0]) for p in unfinished]
    unfinished = [p for p in unfinished if not p.exists()]  # what a read-only disk let go
    step = max(steps) if steps else step
    latest = self.manager.latest_step()
    resume = f"from step {latest}" if latest is not None else "from the start (no complete checkpoint)"
    fix = "free some space, then" if storage_errno(error) in (errno.ENOSPC, errno.EDQUOT) else "once it is writable,"
    self._failure = write_error(
        error, f"checkpoint step {step}" if step is not None else "a checkpoint",
        self.directory / str(step) if step is not None else self.directory, size=size or None, estimated=True,
        note=f"removed its unfinished {', '.join(p.name for p in unfinished)}" if unfinished else "",
        advice=f"{fix} the same command resumes the run {resume}")
    return self._failure

  def close(self) -> None:
    self.manager.close()


def _check_writable(directory: pathlib.Path) -> None:
  """Raises the OSError of creating a file in `directory` (read-only file system, no permission), if any. A bucket
  was checked when the run started (rejax.storage.check_store)."""
  if is_remote(directory):
    return
  probe = directory / f".write-probe-{os.getpid()}"
  os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
  probe.unlink()


def _bytes_of(tree) -> int:
  """The bytes of the arrays of `tree` (all processes'): about what a checkpoint of it takes on disk."""
  return int(sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(tree)))


class _StorageErrorFilter(logging.Filter):
  """Drops Orbax's error records of a save the disk refused: it logs them, tracebacks from its threads included,
  before raising the error that `Checkpointer` reports as one line (with the traceback in its chain, for --debug)."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR or "orbax" not in record.pathname:
      return True
    error = record.exc_info[1] if record.exc_info else None
    return storage_errno(error if error is not None else Exception(record.getMessage())) not in STORAGE_ERRNOS


def _quiet_orbax_storage_errors() -> None:
  absl_logger = logging.getLogger("absl")
  if not any(isinstance(f, _StorageErrorFilter) for f in absl_logger.filters):
    absl_logger.addFilter(_StorageErrorFilter())
