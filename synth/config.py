"""Synthesis configs: `configs/synth/NAME.py[:ARG]` files whose `get_config(arg)` returns a ConfigDict.

Overrides (`--config.KEY=VALUE`) use rejax's config machinery (one config system for the project), so a
typo in a key fails with the closest real key. `validate` checks cross-field rules and names the keys.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from rejax.train.config import ConfigError, apply_overrides, read_config_file, split_overrides
from synth.backends import KINDS
from synth.domains import domain_spec

LLM_STAGES = ("filter", "generate", "annotate", "reason")


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The locked, validated config of `path.py[:arg]` with `KEY=VALUE` overrides applied."""
  config = read_config_file(spec, module_prefix="synth_config")
  config.lock()
  apply_overrides(config, overrides)
  validate(config)
  return config


def stage_enabled(config: ml_collections.ConfigDict, stage: str) -> bool:
  """Whether a stage runs: filter and reason can be switched off (`STAGE.enabled`), the others always run."""
  return bool(config[stage].get("enabled", True))


def validate(config: ml_collections.ConfigDict) -> None:
  """Cross-field rules; raises ConfigError naming the key."""
  if not config.workdir:
    raise ConfigError("workdir: empty; set --config.workdir=DIR")
  if not config.domains:
    raise ConfigError("domains: no domain configured")
  for name, block in config.backends.items():
    if block.get("kind") not in KINDS:
      raise ConfigError(f"backends.{name}.kind={block.get('kind')!r}: expected one of {', '.join(KINDS)}")
  for stage in LLM_STAGES:
    if stage_enabled(config, stage) and config[stage].backend not in config.backends:
      raise ConfigError(f"{stage}.backend={config[stage].backend!r}: no such entry in backends "
                        f"({', '.join(config.backends)})")
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
    if not block.get("corpus"):
      raise ConfigError(f"domains.{name}.corpus: empty; give the domain's corpus JSONL")
    try:
      domain_spec(name, block, f"domains.{name}")
    except ValueError as e:
      raise ConfigError(str(e)) from None


__all__ = ["ConfigError", "load_config", "split_overrides", "stage_enabled", "validate"]
