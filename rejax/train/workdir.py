"""What a run needs in its workdir before the loop starts: the base model directory, the converted
dataset and the (sharded) model, each made once by process 0 and found again on resume.

With a gs:// workdir both are written to the bucket (uploaded with their commit file last: config.json, the
dataset's manifest), the base model is staged to each host's local cache to be read (rejax.staging), and the
converted dataset is read from the bucket by Grain directly."""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils

from rejax.data.convert import MANIFEST, convert
from rejax.errors import InputError
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import load_decoder
from rejax.io import append_text, write_dir_atomic, write_text_atomic
from rejax.staging import staged
from rejax.storage import AnyPath, as_path, check_store
from rejax.models import LoRAConfig, config_from_hf_dict, init_decoder
from rejax.train.config import to_json


def decoder_runtime(config: ml_collections.ConfigDict) -> dict:
  """How the run executes the decoder (dtypes, remat, attention, LoRA): the `runtime` of DecoderConfig."""
  m = config.model
  lora = LoRAConfig(rank=m.lora.rank, alpha=m.lora.alpha, dropout=m.lora.dropout,
                    targets=tuple(m.lora.targets)) if m.lora.enabled else None
  return dict(dtype=jnp.dtype(m.dtype), param_dtype=jnp.dtype(m.param_dtype), remat=m.remat,
              attention_impl=m.attention_impl or None, lora=lora)


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


def base_model_dir(config: ml_collections.ConfigDict, workdir: AnyPath) -> pathlib.Path:
  """The local HF directory the run starts from: model.path (staged on this host if it is on a bucket), or for a
  random model `workdir/base_model` (model.hf_config as config.json + the tokenizer of model.tokenizer), written
  once by process 0 (and staged by every host from a bucket)."""
  if config.model.path:
    return resolve_model_dir(config.model.path, what="model.path")
  base = workdir / "base_model"
  if jax.process_index() == 0 and not (base / "config.json").is_file():
    write_base_model(base, resolve_model_dir(config.model.tokenizer, what="model.tokenizer"),
                     config.model.hf_config.to_dict())
  barrier("base_model")
  return staged(base, "the run's base_model", required="config.json")


def write_base_model(base: AnyPath, tokenizer_dir: pathlib.Path, hf_config: dict) -> None:
  """`base`: the tokenizer files of `tokenizer_dir` and `hf_config` as config.json, built in a hidden sibling and
  renamed into place whole (rejax.io.write_dir_atomic), so a full disk or a kill never leaves half a model; an
  incomplete `base` (no config.json) is replaced."""
  files = [f for f in tokenizer_dir.iterdir() if f.is_file() and (
      f.name.startswith(("tokenizer", "special_tokens")) or f.name in ("vocab.json", "merges.txt"))]
  config_text = json.dumps(hf_config, indent=2) + "\n"

  def build(staging: pathlib.Path) -> None:
    for f in files:
      shutil.copy(f, staging / f.name)
    (staging / "config.json").write_text(config_text)

  write_dir_atomic(base, build, what="the base model", size=sum(f.stat().st_size for f in files) + len(config_text),
                   replace=True, legacy=[f"{base.name}.partial"],  # the staging directory of earlier versions
                   commit="config.json")


def dataset_dir(config: ml_collections.ConfigDict, workdir: AnyPath) -> AnyPath:
  """data.path if it is a converted dataset (read where it is, a bucket too); if it holds released JSONL instead,
  its conversion under `workdir/data` (made once, by process 0)."""
  path = as_path(config.data.path, "data.path")
  check_store(path, "data.path")
  if (path / MANIFEST).is_file():
    return path
  if not path.is_dir() or not (list(path.glob("*.jsonl")) or list(path.glob("*.jsonl.gz"))):
    raise FileNotFoundError(f"data.path={config.data.path}: neither a converted dataset (no {MANIFEST}) nor a "
                            "directory of `{domain}-formatted.jsonl[.gz]` files")
  converted = workdir / "data"
  if jax.process_index() == 0 and not (converted / MANIFEST).is_file():
    convert([str(staged(path, "data.path") / "*.jsonl*")], converted)
  barrier("dataset")
  return converted


def build_model(config: ml_collections.ConfigDict, base_dir: pathlib.Path, mesh):
  """(decoder, config): loaded from `base_dir`'s safetensors, or randomly initialised, created sharded."""
  runtime = decoder_runtime(config)
  if any(base_dir.glob("*.safetensors")):
    return load_decoder(base_dir, mesh=mesh, lora_seed=config.seed, **runtime)
  if config.model.path:
    raise FileNotFoundError(f"model.path={config.model.path}: no *.safetensors in {base_dir}")
  cfg = config_from_hf_dict(json.loads((base_dir / "config.json").read_text()), **runtime)
  return init_decoder(cfg, seed=config.seed, mesh=mesh), cfg


def barrier(name: str) -> None:
  """Every process waits here until all arrive (a no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"rejax:{name}")
