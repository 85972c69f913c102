"""The map between our parameter paths and Hugging Face tensor names: one rule, transposes only.

Ours: `layers.self_attn.q_proj.kernel` [L, in, out] (layers stacked for scan).
HF:   `model.layers.{i}.self_attn.q_proj.weight` [out, in], one tensor per layer.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

# Tensors a checkpoint may hold that an embedding model does not use.
IGNORED_PREFIXES = ("lm_head.",)
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class TensorRef:
  """Where a parameter lives in an HF checkpoint: name pattern, per-layer or not, transposed or not."""

  hf_name: str  # with "{layer}" where the layer index goes
  stacked: bool  # one HF tensor per layer, stacked on our leading axis
  transpose: bool  # our [in, out] kernel is HF's [out, in] weight

  def name(self, layer: int | None = None) -> str:
    return self.hf_name.format(layer=layer)


def hf_ref(path: Sequence[str], prefix: str = "model.") -> TensorRef:
  """The HF tensor behind one of our parameter paths (e.g. ('layers', 'mlp', 'up_proj', 'kernel'))."""
  *modules, leaf = (str(p) for p in path)
  if modules == ["embed_tokens"] and leaf == "embedding":
    return TensorRef(f"{prefix}embed_tokens.weight", stacked=False, transpose=False)
  hf_leaf = {"kernel": "weight", "bias": "bias", "weight": "weight"}[leaf]
  stacked = modules[0] == "layers"
  module = ".".join(["layers.{layer}", *modules[1:]] if stacked else modules)
  return TensorRef(f"{prefix}{module}.{hf_leaf}", stacked=stacked, transpose=leaf == "kernel")


def is_ignored(hf_name: str) -> bool:
  return hf_name.startswith(IGNORED_PREFIXES) or hf_name.endswith(IGNORED_SUFFIXES)
