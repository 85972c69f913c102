"""Orbax checkpoints of a run: train state + data iterator + metadata (step, config, seed) per step.

Saves are asynchronous every `ckpt_every` steps and the last `keep` are kept; a step directory appears
only once complete, so the latest one is always restorable. Restore takes explicit target shardings,
so a run saved on one mesh continues on another (different shape or device count).

Frozen parameters (the base model under LoRA) are not saved: they are re-read from `model.path`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from rejax.train.step import TrainState


def _saved_part(state: TrainState) -> dict[str, Any]:
  return {"step": state.step, "trainable": state.trainable, "opt_state": state.opt_state}


class Checkpointer:
  """Saves and restores (state, data iterator, metadata) under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str | pathlib.Path, *, every: int, keep: int, async_save: bool = True):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: TrainState, data_iterator, meta: dict, *, force: bool = False) -> bool:
    """Starts saving `step` if it is due (or `force`); returns whether it started."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(_saved_part(state)),
                              data=grain.checkpoint.CheckpointSave(data_iterator),
                              meta=ocp.args.JsonSave(meta))
    return self.manager.save(step, args=args, force=force)

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
