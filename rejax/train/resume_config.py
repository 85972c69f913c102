"""What a resumed run may change in its config, and the record of what it changed: the same command on the same
workdir continues its run, and a key that would make the checkpoints someone else's (model, data, loss, optimizer)
is refused with one line naming it."""

from __future__ import annotations

import datetime
import json

import jax
import ml_collections

from rejax.errors import InputError
from rejax.io import append_text, write_text_atomic
from rejax.storage import AnyPath
from rejax.train.config import to_json


# What a resumed run may change (a key, or a section and all its keys): how the run goes on, never what it trains.
# Every other key must be as the workdir's config.json has it: other weights (model.*), batches (data.*, seed),
# objective (loss.*) or optimizer (optim.*) would continue the checkpoints as if they were their own.
CHANGEABLE_ON_RESUME = ("total_steps", "ckpt_every", "keep_checkpoints", "log_every", "export_dir", "eval", "mesh",
                        "preemption", "profile", "data.num_workers", "data.pack", "data.min_bucket",
                        "optim.grad_cache_chunk", "model.remat", "model.attention_impl")
CONFIG_CHANGES = "config_changes.jsonl"  # in a workdir: one line per start that changed a key of CHANGEABLE_ON_RESUME


def check_resume(config: ml_collections.ConfigDict, workdir: AnyPath) -> dict[str, tuple]:
  """{key: (its value in the workdir's config.json, this command's)} for the keys a resumed run changes (empty for a
  new workdir); raises InputError naming the first other key that differs, with both values. Keys one of the two
  configs lacks (added or removed by another rejax version) are not compared."""
  path = workdir / "config.json"
  if not path.is_file():
    return {}
  try:
    saved = _flat(json.loads(path.read_text(encoding="utf-8")))
  except ValueError as e:
    raise InputError(f"{path}: not valid JSON ({e}); is --workdir {workdir} a rejax run?") from None
  ours = _flat(json.loads(to_json(config)))
  changed = {key: (saved[key], ours[key]) for key in sorted(saved.keys() & ours.keys()) if saved[key] != ours[key]}
  for key, (theirs, mine) in changed.items():
    if not any(key == allowed or key.startswith(allowed + ".") for allowed in CHANGEABLE_ON_RESUME):
      raise InputError(f"--workdir {workdir}: holds a run with {key}={_short(theirs)} (its config.json), and this "
                       f"command's config has {key}={_short(mine)}; a resumed run may change only "
                       f"{', '.join(CHANGEABLE_ON_RESUME)}. Resume it with {key}={_short(theirs)}, or use a new "
                       "--workdir")
  return changed


def record_resume_changes(config: ml_collections.ConfigDict, workdir: AnyPath, changed: dict[str, tuple],
                          step: int) -> None:
  """Makes `config` the run's config.json and appends what changed, at which step, to CONFIG_CHANGES (process 0)."""
  if not changed or jax.process_index() != 0:
    return
  record = {"step": step, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "changes": {key: {"from": theirs, "to": mine} for key, (theirs, mine) in changed.items()}}
  append_text(workdir / CONFIG_CHANGES, json.dumps(record) + "\n", what="the config's changes to")
  write_text_atomic(workdir / "config.json", to_json(config) + "\n", what="the run's config")


def describe_changes(changed: dict[str, tuple]) -> str:
  return ", ".join(f"{key} {_short(theirs)} -> {_short(mine)}" for key, (theirs, mine) in changed.items())


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
  """{dotted key: value} of a config's JSON; a dict-valued key whose dict is empty (model.hf_config of a model
  loaded from model.path) is one value."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _short(value) -> str:
  text = json.dumps(value, sort_keys=True, default=str)
  return text if len(text) <= 80 else text[:77] + "..."
