"""The one seam between a run's ConfigDict and the typed objects it is built from: how the decoder runs, the
learning-rate schedule and the optimizer (built once, from the same schedule), the loss, what is trained, and the
input pipeline's settings. `rejax train`, `rejax plan` and `rejax export` read the config only through here
(and the other keys only where they are used: mesh, data.path, eval.*, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from rejax.data.pipeline import PipelineConfig
from rejax.losses import ContrastiveLoss, Distillation, Matryoshka, make_loss
from rejax.errors import ConfigError
from rejax.models import DecoderConfig, LoRAConfig, as_dtype, window_problem
from rejax.train.optim import linear_warmup_decay, make_optimizer


@dataclasses.dataclass(frozen=True)
class Components:
  decoder_runtime: dict[str, Any]  # DecoderConfig's runtime fields: dtypes, remat, attention, LoRA
  schedule: optax.Schedule  # lr(step), which the optimizer follows and the step logs
  optimizer: optax.GradientTransformation
  loss: ContrastiveLoss | Distillation | Matryoshka
  trained: type[nnx.Variable]  # the nnx filter of what the run trains: nnx.LoRAParam with LoRA, else nnx.Param
  grad_cache_chunk: int | None  # rows per GradCache chunk; None = off
  pipeline: PipelineConfig  # without its directories: `pipeline_for` adds them

  def pipeline_for(self, data_dir: str, tokenizer_dir: str) -> PipelineConfig:
    return dataclasses.replace(self.pipeline, data_dir=str(data_dir), tokenizer_dir=str(tokenizer_dir))


def components(config: ml_collections.ConfigDict) -> Components:
  """The run's typed objects; raises ValueError naming the key of a setting they refuse (e.g. `loss.kind`)."""
  o, d = config.optim, config.data
  schedule = linear_warmup_decay(o.lr, config.total_steps, o.warmup_ratio)
  loss = make_loss(config.loss)
  return Components(
      decoder_runtime=decoder_runtime(config.model),
      schedule=schedule,
      optimizer=make_optimizer(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                               clip_norm=o.clip_norm or None, grad_divisor=o.grad_divisor),
      loss=loss,
      trained=nnx.LoRAParam if config.model.lora.enabled else nnx.Param,
      grad_cache_chunk=o.grad_cache_chunk or None,
      pipeline=PipelineConfig(data_dir="", tokenizer_dir="", domain_settings=dict(d.domains),
                              max_query_length=d.max_query_length, max_passage_length=d.max_passage_length,
                              min_bucket=d.min_bucket, seed=config.seed, teacher_scores=loss.uses_teacher),
  )


ATTENTION = {"causal": True, "bidirectional": False}  # model.attention -> DecoderConfig.causal


def decoder_runtime(model: ml_collections.ConfigDict) -> dict[str, Any]:
  """How the run executes the decoder (`model.*`: dtypes, remat, attention, LoRA) and, where the config sets them,
  the embedder's attention direction and pooling: keyword arguments of DecoderConfig beside config.json's."""
  lora = LoRAConfig(rank=model.lora.rank, alpha=model.lora.alpha, dropout=model.lora.dropout,
                    targets=tuple(model.lora.targets)) if model.lora.enabled else None
  runtime = dict(dtype=jnp.dtype(model.dtype), param_dtype=jnp.dtype(model.param_dtype), remat=model.remat,
                 attention_impl=model.attention_impl or None, lora=lora, frozen_dtype=frozen_dtype(model))
  attention, pooling = model.get("attention", ""), model.get("pooling", "")  # absent in runs of rejax before them
  if attention:
    runtime["causal"] = ATTENTION[attention]
  if pooling:
    runtime["pooling"] = pooling
  return runtime


def frozen_dtype(model: ml_collections.ConfigDict) -> Any:
  """The dtype LoRA's frozen base weights are kept in: `model.frozen_dtype`, "" = the compute dtype `model.dtype`
  (every use casts them to it anyway); None (param_dtype) without LoRA, or for a run saved before the key existed."""
  name = model.get("frozen_dtype", None)
  if name and not model.lora.enabled:
    raise ConfigError(f"model.frozen_dtype={name!r}: only LoRA has frozen weights (model.lora.enabled=False)")
  if name is None or not model.lora.enabled:
    return None
  try:
    return as_dtype(name or model.dtype)
  except ValueError as e:
    raise ConfigError(f"model.frozen_dtype={name!r}: {e}") from None


def check_against_model(model_cfg: DecoderConfig, config: ml_collections.ConfigDict) -> None:
  """ConfigError, naming the key, for a setting the model cannot honour: a sliding window shorter than the run's
  longest input, or a Matryoshka size beyond its hidden size."""
  dims = tuple(config.loss.get("matryoshka_dims", ()) or ())
  if dims and max(dims) > model_cfg.hidden_size:
    raise ConfigError(f"loss.matryoshka_dims={dims}: the model's embeddings have {model_cfg.hidden_size} numbers "
                      f"(hidden_size), so no size may exceed it")
  d = config.data
  key, length = max((("data.max_query_length", d.max_query_length), ("data.max_passage_length", d.max_passage_length)),
                    key=lambda item: item[1])
  problem = window_problem(model_cfg, length, key)
  if problem:
    raise ConfigError(problem)
