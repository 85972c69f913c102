"""The decoder's architecture numbers, read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax.numpy as jnp

from rejax.models.families import family_of
from rejax.models.lora import LoRAConfig

# config.json of the backbones the paper trains, so a run can be planned (`rejax plan`) without the hub.
HUB_CONFIGS = pathlib.Path(__file__).parent / "hub_configs"

# None: XLA's attention (any backend); "cudnn": fused flash attention on NVIDIA GPUs; "splash": the Pallas splash
# kernel on TPU (rejax/models/splash.py); "splash_interpret": the same kernel interpreted, on any backend (tests).
ATTENTION_IMPLS = (None, "xla", "cudnn", "splash", "splash_interpret")

# How a sequence's embedding is taken from its final hidden states (rejax/models/pooling.py), before L2 norm.
POOLINGS = ("last_token", "mean")
# model.remat, from the most activations kept (least recomputed) to the fewest: "none" keeps every activation,
# "dots" every projection's output, "mlp" the MLP's gate and up outputs, "mlp_up" the up output, "full" only each
# layer's input (rejax.models.decoder; rejax.train.flops counts what each recomputes)
REMAT_POLICIES = ("none", "dots", "mlp", "mlp_up", "full")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Architecture of a decoder of one of the families (rejax/models/families.py), how it embeds (attention
  direction, pooling), plus how to run it (dtypes, attention, remat)."""

  model_type: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  rms_norm_eps: float
  rope_theta: float
  rope_scaling: dict[str, Any] | None = None  # HF `rope_parameters` minus theta; None = plain RoPE
  qkv_bias: bool = False  # a bias on q_proj, k_proj, v_proj
  o_bias: bool = False  # a bias on o_proj
  mlp_bias: bool = False
  qk_norm: bool = False
  tie_word_embeddings: bool = False
  # The window of a sliding-window family (config.json's sliding_window), or None. rejax attends over whole
  # sequences, which is exact for sequences no longer than the window; longer ones are refused (window_problem).
  sliding_window: int | None = None
  # The embedder: causal (the decoder as pretrained) or bidirectional attention (config.json `is_causal: false`,
  # as gte-Qwen2 / LLM2Vec / GritLM), and the pooling of final hidden states (see POOLINGS).
  causal: bool = True
  pooling: str = "last_token"
  # How to run it, not what it is: fp32 master weights with bf16 compute for training,
  # bf16 weights for inference.
  param_dtype: Any = jnp.float32
  dtype: Any = jnp.float32
  # With LoRA, the dtype of the weights it leaves frozen (every one but the adapters); None = param_dtype. Every
  # use casts a weight to `dtype` first, so frozen weights stored in `dtype` compute exactly the same numbers with
  # half the memory and all-gather bytes of float32 ones (rejax.train.components sets it so by default).
  frozen_dtype: Any = None
  attention_impl: str | None = None  # see ATTENTION_IMPLS
  remat: str = "none"  # activation checkpointing per layer: one of REMAT_POLICIES (rejax.models.decoder)
  # Layers per iteration of the layer scan (nnx.scan's `unroll`); True unrolls the whole stack, which compiles
  # slower but lets XLA's cost analysis count every layer (tests/test_flops.py).
  scan_unroll: int | bool = 1
  lora: LoRAConfig | None = None  # adapters on the matching projections; None = full fine-tuning

  def __post_init__(self):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat={self.remat!r}; expected one of {', '.join(REMAT_POLICIES)}")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl={self.attention_impl!r}; expected one of {ATTENTION_IMPLS}")
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}; expected one of {POOLINGS}")
    if self.sliding_window is not None and self.sliding_window < 1:
      raise ValueError(f"sliding_window={self.sliding_window}; expected a positive number of tokens or None")
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                       f"num_key_value_heads={self.num_key_value_heads}")

  def replace(self, **changes) -> DecoderConfig:
    return dataclasses.replace(self, **changes)

  @property
  def base_param_dtype(self) -> Any:
    """The dtype of the base weights (all but LoRA's adapters): frozen_dtype under LoRA when set, else param_dtype."""
    return self.frozen_dtype if self.lora is not None and self.frozen_dtype is not None else self.param_dtype


def window_problem(cfg: DecoderConfig, max_length: int, what: str = "--max-length") -> str | None:
  """One line saying why sequences of `max_length` tokens (the setting `what`) cannot be encoded exactly, or None.

  rejax attends over whole sequences: exact for a sliding-window model while no sequence is longer than its window
  (a query then sees every key the window would let it see), wrong beyond it.
  """
  if cfg.sliding_window is None or max_length <= cfg.sliding_window:
    return None
  return (f"model config.json sliding_window={cfg.sliding_window} is shorter than {what} {max_length}: "
          "rejax attends over whole sequences only")


def as_dtype(name_or_dtype) -> Any:
  """The jnp dtype for a name such as "bfloat16" (a dtype passes through)."""
  if isinstance(name_or_dtype, str):
    if name_or_dtype not in _DTYPES:
      raise ValueError(f"unknown dtype {name_or_dtype!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name_or_dtype]
  return name_or_dtype


def _rope_settings(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
  """(theta, scaling) from either config layout: v5 `rope_parameters` or v4 `rope_theta`+`rope_scaling`."""
  params = dict(hf.get("rope_parameters") or {})
  theta = params.pop("rope_theta", hf.get("rope_theta", 10000.0))
  if not params and hf.get("rope_scaling"):
    params = dict(hf["rope_scaling"])
  rope_type = params.pop("rope_type", params.pop("type", "default"))
  if rope_type == "default":
    return float(theta), None
  if rope_type != "llama3":
    raise ValueError(f"unsupported rope_type {rope_type!r}; supported: 'default', 'llama3'")
  return float(theta), {"rope_type": rope_type, **params}


def config_from_hf_dict(hf: dict[str, Any], **runtime) -> DecoderConfig:
  """A DecoderConfig from a parsed HF config.json; `runtime` sets dtypes, attention_impl, remat, lora, and may
  override the embedder settings `causal` (default: config.json's `is_causal`) and `pooling`."""
  family = family_of(hf.get("model_type"))
  if hf.get("hidden_act", family.hidden_act) != family.hidden_act:
    raise ValueError(f"unsupported hidden_act {hf['hidden_act']!r}; only {family.hidden_act!r} (SwiGLU)")
  runtime.setdefault("causal", bool(hf.get("is_causal", True)))
  heads = hf["num_attention_heads"]
  theta, scaling = _rope_settings(hf)
  for key in ("param_dtype", "dtype", "frozen_dtype"):
    if runtime.get(key) is not None:
      runtime[key] = as_dtype(runtime[key])
  return DecoderConfig(
      model_type=family.model_type,
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_hidden_layers=hf["num_hidden_layers"],
      num_attention_heads=heads,
      num_key_value_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      rms_norm_eps=hf["rms_norm_eps"],
      rope_theta=theta,
      rope_scaling=scaling,
      **family.biases(hf),
      qk_norm=family.qk_norm,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      sliding_window=family.window(hf),
      **runtime,
  )


def load_config(model_dir: str | pathlib.Path, **runtime) -> DecoderConfig:
  """The DecoderConfig of a local HF model directory (its config.json)."""
  path = pathlib.Path(model_dir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face model directory")
  try:
    hf = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
  return config_from_hf_dict(hf, **runtime)


def shipped_hf_config(hub_id: str) -> dict[str, Any] | None:
  """The config.json the package ships for `hub_id` (e.g. "Qwen/Qwen3-8B"), or None."""
  path = HUB_CONFIGS / (hub_id.replace("/", "--") + ".json")
  return json.loads(path.read_text()) if "/" in hub_id and path.is_file() else None
