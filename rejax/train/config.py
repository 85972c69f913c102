"""Training configs: `configs/NAME.py[:ARG]` files whose `get_config(arg)` returns an ml_collections
ConfigDict, `--config.KEY=VALUE` overrides on the locked dict (ml_collections.config_flags), and the
cross-field rules (`validate`).

Every error names the key (and, for a file, the file and line), so a typo fails before anything is loaded.
The file is read here rather than by config_flags.DEFINE_config_file, whose loader reports a missing file
as a deferred multi-line IOError and an exception in get_config without the config file's line.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import pathlib
import re
import traceback
from typing import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from rejax.data.text import MIN_LENGTH
from rejax.errors import ConfigError, one_line

# Blocks of a training config whose keys each config names itself (the others must have paper_config()'s keys).
OPEN_BLOCKS = ("model.hf_config", "data.domains")


def read_config_file(spec: str, module_prefix: str = "rejax_config") -> ml_collections.ConfigDict:
  """`get_config(arg)` of `path.py[:arg]`, unlocked; errors name the file."""
  path, _, arg = spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise ConfigError(f"--config {path}: no such file")
  module_spec = importlib.util.spec_from_file_location(f"{module_prefix}_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:  # the file's own line, not the interpreter's stack
    raise ConfigError(f"--config {e.filename or path}:{e.lineno}: syntax error: {e.msg}") from None
  except Exception as e:
    raise ConfigError(f"--config {_raised_at(e, file)}: {type(e).__name__} while loading: {e}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"--config {path}: defines no get_config(arg)")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ConfigError:
    raise
  except Exception as e:
    call = f"get_config({arg!r})" if arg else "get_config()"
    raise ConfigError(f"--config {_raised_at(e, file)}: {type(e).__name__} in {call}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"--config {spec}: get_config returned {type(config).__name__}, not a ConfigDict")
  return config


def _raised_at(error: BaseException, file: pathlib.Path) -> str:
  """`file:line` of the last line of `file` in the error's traceback (else just `file`)."""
  frames = [f for f in traceback.extract_tb(error.__traceback__) if pathlib.Path(f.filename) == file.absolute()
            or pathlib.Path(f.filename) == file]
  return f"{file}:{frames[-1].lineno}" if frames else str(file)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The training config of `path.py[:arg]`, checked for every key of paper_config() and locked."""
  from rejax.train.recipe import paper_config

  config = read_config_file(spec)
  missing = missing_keys(config, paper_config(), OPEN_BLOCKS)
  if missing:
    raise ConfigError(f"--config {spec}: missing key(s) {', '.join(missing)} (a training config starts from "
                      "rejax.train.recipe.paper_config(), which has them all)")
  config.lock()
  return config


def missing_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                 open_blocks: Sequence[str] = (), prefix: str = "") -> list[str]:
  """The dotted keys of `reference` that `config` lacks (a block given as a plain value lacks all of its keys);
  the keys inside `open_blocks` are the config's own and not compared."""
  missing = []
  for key, value in reference.items():
    dotted = prefix + key
    if key not in config:
      missing.append(dotted)
    elif isinstance(value, ml_collections.ConfigDict) and dotted not in open_blocks:
      given = config[key]
      missing += (missing_keys(given, value, open_blocks, dotted + ".") if isinstance(given, ml_collections.ConfigDict)
                  else [f"{dotted}.{k}" for k in value])
  return missing


def _has(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def _keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      out += _keys(value, f"{prefix}{key}.")
  return out


def apply_overrides(config: ml_collections.ConfigDict, args: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies command-line overrides to the locked config, in place, with ml_collections.config_flags.

  `args` are the tokens as typed: `--config.KEY=VALUE`, `--config.KEY VALUE`, and for a bool also
  `--config.KEY` / `--noconfig.KEY`. Each value is parsed as the type of the key's current value (a tuple
  as a Python literal, a sub-dict replaced whole by a dict literal). An unknown key, a value of the wrong
  type, or any other token is a ConfigError naming it.
  """
  args = list(args)
  if not args:
    return config
  argv = ["rejax", *args]
  flag_values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, lock_config=True, sys_argv=argv)
    unparsed = flag_values(argv, known_only=True)[1:]
  except (AttributeError, KeyError) as e:  # config_flags resolves every override's key when it defines the flags
    raise ConfigError(_unknown_key(config, args) or f"--config: {one_line(e)}") from None
  except flags.Error as e:  # a value the key's type does not parse: "flag --config.KEY=VALUE: why"
    raise ConfigError(one_line(e).removeprefix("flag ")) from None
  if unparsed:
    raise ConfigError(f"unrecognized arguments: {' '.join(unparsed)} (overrides are --config.KEY=VALUE)")
  return config


def _unknown_key(config: ml_collections.ConfigDict, args: Sequence[str]) -> str | None:
  """The message for the first override whose key the config lacks, with the closest real key."""
  for arg in args:
    match = re.match(r"--?(?:no)?config\.([^=]+)", arg)
    if match and not _has(config, match.group(1)):
      key = match.group(1)
      close = difflib.get_close_matches(key, _keys(config), n=1)
      return f"--config.{key}: no such config key" + (f" (did you mean {close[0]}?)" if close else "")
  return None


def validate(config: ml_collections.ConfigDict, device_count: int) -> None:
  """Cross-field rules; raises ConfigError naming the keys involved."""
  from rejax.losses import make_loss
  from rejax.sharding import mesh_shape_problem

  mesh = config.mesh
  problem = mesh_shape_problem(mesh.data, mesh.fsdp, mesh.tensor, device_count, mesh.dcn_data)
  if problem:
    raise ConfigError(problem)
  for key in ("total_steps", "ckpt_every", "log_every"):
    if config[key] < 1:
      raise ConfigError(f"{key}={config[key]}: must be >= 1")
  try:  # the loss's own rules (kind, its settings), as the run will build it
    make_loss(config.loss)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  batch_shards = mesh.dcn_data * mesh.data * mesh.fsdp
  shard_keys = (f"mesh.dcn_data x mesh.data x mesh.fsdp = {mesh.dcn_data} x {mesh.data} x {mesh.fsdp}"
                if mesh.dcn_data > 1 else "mesh.data x mesh.fsdp")
  chunk = config.optim.grad_cache_chunk
  if chunk and chunk % batch_shards:
    raise ConfigError(f"optim.grad_cache_chunk={chunk} is not a multiple of {shard_keys} = {batch_shards}: a chunk "
                      "smaller than the batch shards leaves devices idle and makes the compiler gather its rows whole")
  for domain, setting in config.data.domains.items():
    if len(setting) != 2:
      raise ConfigError(f"data.domains.{domain}={setting}: expected (global batch, group size)")
    batch, group = setting
    if group < 2:
      raise ConfigError(f"data.domains.{domain}: group size {group} < 2 (one positive and >= 1 negative)")
    if batch % batch_shards:
      raise ConfigError(f"data.domains.{domain}: global batch {batch} is not divisible by {shard_keys} "
                        f"= {batch_shards}")
    if chunk and (batch % chunk or (batch * group) % chunk):
      raise ConfigError(f"optim.grad_cache_chunk={chunk} must divide data.domains.{domain}'s {batch} queries "
                        f"and {batch * group} passages")
  for key in ("max_query_length", "max_passage_length"):
    if config.data[key] < MIN_LENGTH:
      raise ConfigError(f"data.{key}={config.data[key]}: must be >= {MIN_LENGTH} (a token and EOS)")
  validate_stops(config)
  model_settings_problem(config.model)
  if not config.model.path and not config.model.hf_config:
    raise ConfigError("model.path is empty and model.hf_config is empty: give a model directory / hub id, "
                      "or an architecture to initialise randomly")
  validate_eval(config)


def model_settings_problem(model: ml_collections.ConfigDict) -> None:
  """The embedder settings `model.attention` and `model.pooling`, and `model.frozen_dtype`; raises ConfigError
  naming the key."""
  from rejax.models.config import POOLINGS
  from rejax.train.components import ATTENTION, frozen_dtype

  for key, allowed in (("attention", ATTENTION), ("pooling", POOLINGS)):
    if model[key] and model[key] not in allowed:
      raise ConfigError(f"model.{key}={model[key]!r}: expected one of {', '.join(repr(a) for a in allowed)} "
                        "(or '' for the model's own)")
  frozen_dtype(model)


def validate_stops(config: ml_collections.ConfigDict) -> None:
  """The rules of `preemption.*` and `profile.*`; raises ConfigError naming the key."""
  from rejax.train.preemption import signal_problem

  problem = signal_problem(config.preemption.signals)
  if problem:
    raise ConfigError(problem)
  profile = config.profile
  if profile.steps < 0:
    raise ConfigError(f"profile.steps={profile.steps}: must be >= 0 (0 = no profile)")
  if profile.steps and profile.start_step < 1:
    raise ConfigError(f"profile.start_step={profile.start_step}: must be >= 1 (step N is the N-th update)")


def validate_eval(config: ml_collections.ConfigDict) -> None:
  """The rules of `eval.*` (the dev evaluation during training); raises ConfigError naming the keys.

  The dataset is checked here, before any model loads, so a wrong path fails in seconds.
  """
  from rejax.eval.beir import missing_beir_files
  from rejax.eval.metrics import query_metrics

  ev = config.eval
  for key, minimum in (("every", 0), ("max_length", MIN_LENGTH), ("batch_size", 1)):
    if ev[key] < minimum:
      raise ConfigError(f"eval.{key}={ev[key]}: must be >= {minimum}")
  known = tuple(query_metrics([], {}))  # the names rejax.eval.metrics.evaluate averages
  if ev.metric not in known:
    raise ConfigError(f"eval.metric={ev.metric!r}: expected one of {', '.join(known)}")
  if ev.export_best and not ev.keep_best:
    raise ConfigError("eval.export_best=True needs eval.keep_best=True (the best checkpoint must be kept to export it)")
  if ev.keep_best and not ev.every:
    raise ConfigError("eval.keep_best=True needs eval.every > 0 (and eval.dataset): the best is found by evaluating")
  if not ev.every:
    return
  if not ev.dataset:
    raise ConfigError(f"eval.every={ev.every} needs eval.dataset: a BEIR directory (corpus.jsonl, queries.jsonl, "
                      f"qrels/{ev.split}.tsv)")
  missing = missing_beir_files(ev.dataset, ev.split)
  if missing:
    raise ConfigError(f"eval.dataset={ev.dataset}: missing {', '.join(missing)} (eval.split={ev.split!r}; a BEIR "
                      f"directory has corpus.jsonl, queries.jsonl, qrels/{{split}}.tsv)")
  if ev.keep_best and config.ckpt_every % ev.every:
    raise ConfigError(f"ckpt_every={config.ckpt_every} is not a multiple of eval.every={ev.every}: with "
                      "eval.keep_best every checkpoint step must be evaluated")


def to_json(config: ml_collections.ConfigDict) -> str:
  """The config as JSON (stored with every checkpoint)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
