"""The settings of an SGLang engine block (`kind="sglang"`): run by Ray Data's SGLang processor under
engine="ray" only (synth.raydata.processors); there is no local SGLang backend (serve it, use kind="openai")."""

from __future__ import annotations

from typing import Any, Mapping


class SGLangSettings:
  """`model` and `engine_args` (SGLang engine arguments: tp_size, dp_size, mem_fraction_static, ...)."""

  def __init__(self, model: str, *, engine_args: Mapping[str, Any] | None = None):
    raise ValueError(f"{model}: kind='sglang' runs only under engine='ray' (Ray Data's SGLang processor)")
