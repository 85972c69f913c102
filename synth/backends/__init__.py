"""Generation backends behind one interface (`Backend.chat`); each imported only when it is asked for."""

from __future__ import annotations

from typing import Mapping

from rejax.assets import asset_dir
from synth.backends.base import Backend, BackendError, Messages, Sampling, continues

KINDS = ("transformers", "vllm", "openai", "sglang")


def resolve_model(model: str) -> str:
  """A model path: `asset:NAME` is fetched with rejax.assets (e.g. `asset:smollm2`), anything else is as given."""
  directory = asset_dir(model)
  return model if directory is None else str(directory)


def backend_class(kind: str, where: str) -> type:
  """The class of a backend kind (its module imported; the heavy libraries load only when one is built)."""
  if kind == "transformers":
    from synth.backends.transformers_backend import TransformersBackend

    return TransformersBackend
  if kind == "vllm":
    from synth.backends.vllm_backend import VLLMBackend

    return VLLMBackend
  if kind == "openai":
    from synth.backends.openai_http import OpenAIBackend

    return OpenAIBackend
  if kind == "sglang":
    from synth.backends.sglang_settings import SGLangSettings

    return SGLangSettings
  raise ValueError(f"{where}.kind={kind!r}: expected one of {', '.join(KINDS)}")


def make_backend(config: Mapping, where: str) -> Backend:
  """The backend a config block describes (`kind` plus that kind's settings); `where` names the block in errors."""
  config = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # plain values all the way down
  kind = config.get("kind")
  settings = {k: v for k, v in config.items() if k != "kind"}
  cls = backend_class(kind, where)
  if "model" not in settings:
    raise ValueError(f"{where}.model: missing")
  if kind != "openai":  # a served model is named as the server knows it
    settings["model"] = resolve_model(settings["model"])
  return cls(**settings)


__all__ = ["Backend", "BackendError", "KINDS", "Messages", "Sampling", "backend_class", "continues", "make_backend",
           "resolve_model"]
