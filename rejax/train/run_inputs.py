"""The inputs a run makes in its workdir before the loop starts: the base model directory, the converted dataset and
the (sharded) model, each made once by process 0 and found again on resume.

With a gs:// workdir both are written to the bucket (uploaded with their commit file last: config.json, the
dataset's manifest), the base model is staged to each host's local cache to be read (rejax.staging), and the
converted dataset is read from the bucket by Grain directly."""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import ml_collections
from jax.experimental import multihost_utils

from rejax.data.convert import MANIFEST, convert
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import load_decoder, model_config
from rejax.io import write_dir_atomic
from rejax.staging import staged
from rejax.storage import AnyPath, as_path, check_store
from rejax.models import config_from_hf_dict, init_decoder
from rejax.train.components import check_against_model


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


def build_model(config: ml_collections.ConfigDict, base_dir: pathlib.Path, mesh, runtime: dict):
  """(decoder, config): loaded from `base_dir`'s safetensors, or randomly initialised, created sharded; `runtime`
  as rejax.train.components.decoder_runtime gives it."""
  if any(base_dir.glob("*.safetensors")):
    check_against_model(model_config(base_dir, **runtime), config)  # before any weight is read
    return load_decoder(base_dir, mesh=mesh, lora_seed=config.seed, **runtime)
  if config.model.path:
    raise FileNotFoundError(f"model.path={config.model.path}: no *.safetensors in {base_dir}")
  cfg = config_from_hf_dict(json.loads((base_dir / "config.json").read_text()), **runtime)
  check_against_model(cfg, config)
  return init_decoder(cfg, seed=config.seed, mesh=mesh), cfg


def barrier(name: str) -> None:
  """Every process waits here until all arrive (a no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"rejax:{name}")
