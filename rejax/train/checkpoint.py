"""Orbax checkpoints of a run: train state + data iterator + metadata (step, config, seed) per step.

Saves are asynchronous every `ckpt_every` steps and the last `keep` are kept; a step directory appears
only once complete, so the latest one is always restorable. Restore takes explicit target shardings,
so a run saved on one mesh continues on another (different shape or device count).

Frozen parameters (the base model under LoRA) are not saved: they are re-read from `model.path`.

With `best_metric` (config.eval.keep_best), the checkpoint with the highest dev figure is kept as well, by the
same Orbax manager: its preservation policy is "any of" LatestN(keep) and BestN(1), so rotation keeps the
latest `keep` for resuming and the best one besides. Orbax writes each save's figures next to it
(`checkpoints/<step>/metrics/metrics`) and reads them back when a manager opens the directory, so the best
step, and its figure, survive a resume and are what `rejax export --step best` finds.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from rejax.train.step import TrainState


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
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
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
    return self.manager.save(step, args=args, metrics=metrics, force=force)

  def restore_latest(self, target: TrainState, data_iterator, warn=print) -> tuple[int, TrainState]:
    """(step, state) of the newest checkpoint that restores whole, or (0, target) when there is none.

    A damaged newest checkpoint (a truncated file, a killed disk) falls back to the one before it: when an older
    one restores, the newer ones that did not are moved to `checkpoints.unreadable/` (kept for inspection, never
    deleted) with a warning naming each, so the run can save those steps again. When none restores, the newest
    one's error is raised and nothing is moved (that is a problem of the run, e.g. a different model).
    """
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
      (self.directory / str(step)).rename(aside / str(step))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

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
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
