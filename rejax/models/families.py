"""The backbone families rejax implements, one row each, keyed by Hugging Face `model_type`.

A row says how the family's config.json spells what differs between families (per-head q/k norm, which
projections carry a bias, the sliding window) and what an export names and writes back. `config_from_hf_dict`
reads these rows, and `rejax.hf.export` writes through them; no other code switches on model_type. A new family
whose layers are the shared decoder's is one row of FAMILIES.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# A projection's bias: fixed by the family (True / False), or switched by a config.json key (its name).
Bias = bool | str


@dataclasses.dataclass(frozen=True)
class WindowSpelling:
  """How a config.json says that attention slides over the last `sliding_window` keys.

  switch_key: a boolean key that turns the window on (Qwen's `use_sliding_window`); None: the window key alone
    decides, null meaning no window (Mistral).
  """

  switch_key: str | None = None
  window_key: str = "sliding_window"

  def read(self, hf: Mapping[str, Any]) -> int | None:
    """The window in tokens, or None when every key is seen."""
    if self.switch_key is not None and not hf.get(self.switch_key, False):
      return None
    window = hf.get(self.window_key)
    return None if window is None else int(window)

  def write(self, window: int | None) -> dict[str, Any]:
    """The config.json keys that `read` turns back into `window`."""
    fields = {self.window_key: window}
    if self.switch_key is not None:
      fields[self.switch_key] = window is not None
    return fields


QWEN_WINDOW = WindowSpelling(switch_key="use_sliding_window")
MISTRAL_WINDOW = WindowSpelling()


@dataclasses.dataclass(frozen=True)
class Family:
  """One backbone family: a decoder of RMSNorm, RoPE, grouped-query attention and a gated MLP, and its spelling."""

  model_type: str
  transformers_class: str  # the bare (no LM head) transformers class an export names in `architectures`
  qk_norm: bool  # per-head RMSNorm on q and k (Qwen3's q_norm / k_norm)
  qkv_bias: Bias  # a bias on q_proj, k_proj and v_proj
  o_bias: Bias  # a bias on o_proj
  mlp_bias: Bias  # a bias on gate_proj, up_proj and down_proj
  sliding_window: WindowSpelling | None  # None: the family has no sliding window in transformers
  hidden_act: str = "silu"  # the gated MLP's activation (SwiGLU); the only one the decoder implements

  def biases(self, hf: Mapping[str, Any]) -> dict[str, bool]:
    """DecoderConfig's qkv_bias, o_bias and mlp_bias as `hf` (a parsed config.json) sets them."""
    return {name: bool(hf.get(rule, False)) if isinstance(rule, str) else rule
            for name, rule in self._bias_rules().items()}

  def config_fields(self, *, qkv_bias: bool, o_bias: bool, mlp_bias: bool, sliding_window: int | None) -> dict:
    """The config.json keys of this family (activation, biases, window) that `biases` and `window` read back as
    these values; ValueError when the family cannot say them (a bias it never has, two projections that share one
    key but differ, a window it has not)."""
    wanted = {"qkv_bias": qkv_bias, "o_bias": o_bias, "mlp_bias": mlp_bias}
    fields: dict[str, Any] = {"hidden_act": self.hidden_act}
    for name, rule in self._bias_rules().items():
      if not isinstance(rule, str):
        if wanted[name] != rule:
          raise ValueError(f"model_type={self.model_type!r} has {name}={rule} in transformers; "
                           f"cannot export {name}={wanted[name]}")
      elif fields.setdefault(rule, wanted[name]) != wanted[name]:
        raise ValueError(f"model_type={self.model_type!r} sets every projection under {rule!r} alike; "
                         f"cannot export {wanted}")
    if self.sliding_window is not None:
      fields.update(self.sliding_window.write(sliding_window))
    elif sliding_window is not None:
      raise ValueError(f"model_type={self.model_type!r} has no sliding window in transformers; "
                       f"cannot export sliding_window={sliding_window}")
    return fields

  def window(self, hf: Mapping[str, Any]) -> int | None:
    """The sliding window `hf` sets, in tokens, or None."""
    return self.sliding_window.read(hf) if self.sliding_window is not None else None

  def _bias_rules(self) -> dict[str, Bias]:
    return {"qkv_bias": self.qkv_bias, "o_bias": self.o_bias, "mlp_bias": self.mlp_bias}


FAMILIES: dict[str, Family] = {family.model_type: family for family in (
    Family("qwen3", "Qwen3Model", qk_norm=True, qkv_bias="attention_bias", o_bias="attention_bias", mlp_bias=False,
           sliding_window=QWEN_WINDOW),
    Family("llama", "LlamaModel", qk_norm=False, qkv_bias="attention_bias", o_bias="attention_bias",
           mlp_bias="mlp_bias", sliding_window=None),
    Family("qwen2", "Qwen2Model", qk_norm=False, qkv_bias=True, o_bias=False, mlp_bias=False,
           sliding_window=QWEN_WINDOW),
    Family("mistral", "MistralModel", qk_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False,
           sliding_window=MISTRAL_WINDOW),
)}

# The model_types rejax implements (their sentence-transformers directories are encoded by rejax itself).
SUPPORTED_MODEL_TYPES = frozenset(FAMILIES)


def family_of(model_type: str | None) -> Family:
  """The row of `model_type`; ValueError listing the supported ones otherwise."""
  if model_type not in FAMILIES:
    raise ValueError(f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")
  return FAMILIES[model_type]
