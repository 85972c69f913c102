"""Synthesis configs: `configs/synth/NAME.py[:ARG]` files whose `get_config(arg)` returns a ConfigDict.

Overrides (`--config.KEY=VALUE`) use rejax's config machinery (one config system for the project), so a
typo in a key fails with the closest real key. A config must have every key of synth.defaults.base_config();
`validate` checks each backend's and the embedder's settings against what that kind takes, the domain
names, and the cross-field rules, naming the key, before any stage runs.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Mapping, Sequence

import ml_collections

from rejax.train.config import ConfigError, apply_overrides, missing_keys, read_config_file
from synth.backends import KINDS, backend_class
from synth.defaults import base_config
from synth.domains import domain_spec
from synth.embedders import EMBEDDERS

LLM_STAGES = ("filter", "generate", "annotate", "reason")
OPEN_BLOCKS = ("backends", "embedder", "domains", "ray.replicas")  # blocks whose entries each config names itself
ENGINES = ("local", "ray")
RAY_KINDS = ("openai", "vllm", "sglang")  # the backends Ray Data LLM has processors for


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The locked, validated config of `path.py[:arg]` with `--config.KEY=VALUE` overrides applied."""
  config = read_config_file(spec, module_prefix="synth_config")
  check_keys(config, f"--config {spec}")
  config.lock()
  apply_overrides(config, overrides)
  validate(config)
  return config


def stage_enabled(config: ml_collections.ConfigDict, stage: str) -> bool:
  """Whether a stage runs: filter and reason can be switched off (`STAGE.enabled`), the others always run."""
  return bool(config[stage].get("enabled", True))


def check_keys(config: ml_collections.ConfigDict, where: str) -> None:
  """ConfigError naming `where` and the keys of synth.defaults.base_config() that `config` lacks."""
  missing = missing_keys(config, base_config(), OPEN_BLOCKS)
  if missing:
    raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (a synth config starts from "
                      "synth.defaults.base_config(), which has them all)")


def check_block(block, where: str) -> Mapping:
  """`block` when it is a block of keys (a ConfigDict), else ConfigError naming `where`."""
  if not isinstance(block, ml_collections.ConfigDict):
    raise ConfigError(f"{where}={block!r}: expected a block of keys (a dict), got {type(block).__name__}")
  return block


def check_settings(cls: type, settings: Mapping, where: str, what: str) -> None:
  """ConfigError naming `where.KEY` for a setting `cls` requires but `settings` lacks, or one it does not take."""
  params = {name: p for name, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  required = [name for name, p in params.items() if p.default is p.empty]
  for name in required:
    if name not in settings:
      raise ConfigError(f"{where}.{name}: missing; the {what} needs {', '.join(required)}")
  for key in settings:
    if key not in params:
      close = difflib.get_close_matches(key, list(params), n=1)
      hint = f"did you mean {where}.{close[0]}?" if close else f"it takes {', '.join(params)}"
      raise ConfigError(f"{where}.{key}: not a setting of the {what} ({hint})")


def check_backend(block, where: str) -> None:
  """A backend block: a known kind, with exactly the settings that kind takes."""
  kind = check_block(block, where).get("kind")
  if kind not in KINDS:
    raise ConfigError(f"{where}.kind={kind!r}: expected one of {', '.join(KINDS)}")
  settings = {k: v for k, v in block.items() if k != "kind"}
  check_settings(backend_class(kind, where), settings, where, f"{kind} backend")
  if kind == "openai":
    urls = settings["base_url"]
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls or not all(str(url).startswith(("http://", "https://")) for url in urls):
      raise ConfigError(f"{where}.base_url={settings['base_url']!r}: expected http://HOST:PORT/v1 (or https://), "
                        "or a tuple of them (several servers)")


def check_embedder(block, where: str = "embedder") -> None:
  """The embedder block, when one is given (only the mine stage needs it): a known kind and its settings."""
  if not check_block(block, where):
    return
  kind = block.get("kind")
  if kind not in EMBEDDERS:
    raise ConfigError(f"{where}.kind={kind!r}: expected one of {', '.join(EMBEDDERS)}")
  check_settings(EMBEDDERS[kind], {k: v for k, v in block.items() if k != "kind"}, where, f"{kind} embedder")


def check_engine(config: ml_collections.ConfigDict) -> None:
  """`engine` is known; under "ray" every enabled LLM stage's backend is one Ray Data LLM runs, and
  `ray.replicas` names backends."""
  if config.engine not in ENGINES:
    raise ConfigError(f"engine={config.engine!r}: expected one of {', '.join(ENGINES)}")
  for name, count in config.ray.replicas.items():
    if name not in config.backends or not isinstance(count, int) or count < 1:
      raise ConfigError(f"ray.replicas.{name}={count!r}: expected a count >= 1 for one of the backends "
                        f"({', '.join(config.backends)})")
  if config.ray.batch_size < 1 or config.ray.embed_replicas < 1:
    raise ConfigError("ray.batch_size / ray.embed_replicas: must be >= 1")
  for stage in LLM_STAGES:
    kind = config.backends.get(config[stage].backend, {}).get("kind")
    if stage_enabled(config, stage) and config.engine == "local" and kind == "sglang":
      raise ConfigError(f"backends.{config[stage].backend}.kind='sglang' ({stage} stage): runs only under "
                        "engine='ray' (locally, serve it with SGLang and use kind='openai')")
    if stage_enabled(config, stage) and config.engine == "ray" and kind not in RAY_KINDS:
      raise ConfigError(f"backends.{config[stage].backend}.kind={kind!r} ({stage} stage): engine='ray' runs "
                        f"{', '.join(RAY_KINDS)} backends; use engine='local' for {kind}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Cross-field rules; raises ConfigError naming the key."""
  if not config.workdir:
    raise ConfigError("workdir: empty; set --config.workdir=DIR")
  if not config.domains:
    raise ConfigError("domains: no domain configured")
  for name, block in config.backends.items():
    check_backend(block, f"backends.{name}")
  check_embedder(config.embedder)
  for stage in LLM_STAGES:
    if stage_enabled(config, stage) and config[stage].backend not in config.backends:
      raise ConfigError(f"{stage}.backend={config[stage].backend!r}: no such entry in backends "
                        f"({', '.join(config.backends)})")
  check_engine(config)
  for stage in (*LLM_STAGES, "mine"):
    if config[stage].unit_size < 1:
      raise ConfigError(f"{stage}.unit_size={config[stage].unit_size}: must be >= 1")
  for key in ("lengths", "levels"):
    options = config.generate[key]
    if not options or any(len(o) != 2 or o[1] < 0 for o in options) or sum(o[1] for o in options) <= 0:
      raise ConfigError(f"generate.{key}: expected ((label, weight), ...) with weights >= 0 and a positive sum")
  if not 1 <= config.mine.keep <= config.mine.top_k:
    raise ConfigError(f"mine.keep={config.mine.keep}, mine.top_k={config.mine.top_k}: need 1 <= keep <= top_k")
  if not 1 <= config.format.neg_max_score < config.format.pos_min_score <= 5:
    raise ConfigError(f"format.neg_max_score={config.format.neg_max_score}, format.pos_min_score="
                      f"{config.format.pos_min_score}: need 1 <= neg_max_score < pos_min_score <= 5")
  if not 0 < config.sources.min_chars <= config.sources.max_chars:
    raise ConfigError("sources.min_chars / sources.max_chars: need 0 < min_chars <= max_chars")
  for name, block in config.domains.items():
    try:
      spec = domain_spec(name, check_block(block, f"domains.{name}"), f"domains.{name}")
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if not block.get("corpus"):
      raise ConfigError(f"domains.{spec.name}.corpus: empty; give the domain's corpus JSONL")


__all__ = ["ConfigError", "load_config", "stage_enabled", "validate"]
