"""Export a decoder (LoRA merged) as a Hugging Face model directory that transformers and sentence-transformers
load as they are.

    from rejax.hf.export import export_model
    export_model(model, "hf/my-embedder", base_dir="Qwen/Qwen3-8B")   # model: an NNX Decoder, LoRA or not

    AutoModel.from_pretrained("hf/my-embedder")             # Qwen3Model, LlamaModel, ...: final hidden states
    SentenceTransformer("hf/my-embedder").encode(queries, prompt_name="biology")   # == rejax encode

The directory holds: a README.md model card (`rejax.hf.model_card`), the weights as safetensors in the base model's
dtype (`rejax.hf.save`), config.json
for the bare architecture (its family's class; `is_causal: false` for a bidirectional model), the tokenizer with
EOS appended by its post-processor (`rejax.hf.tokenizer`), and the sentence-transformers files with the model's
pooling and one prompt per task instruction (`rejax.hf.sentence_transformers_layout`).
Local paths only. On several processes every one must call `export_model` (weights are gathered
collectively); process 0 writes. The directory is built beside `output` and renamed into place when complete, so
`output` never holds half an export; a non-empty `output` is replaced only with overwrite=True.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from rejax.data.text import MIN_LENGTH
from rejax.domains import INSTRUCTIONS as BRIGHT_INSTRUCTIONS  # the same strings training and BRIGHT use
from rejax.errors import ExportError
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import model_config
from rejax.hf.model_card import CardFacts, model_card
from rejax.hf.save import save_safetensors, staged_directory
from rejax.hf.sentence_transformers_layout import query_prompts, write_sentence_transformers_files
from rejax.hf.tokenizer import save_eos_tokenizer
from rejax.models import Decoder, DecoderConfig, family_of, merge_lora
from rejax.models.config import as_dtype
from rejax.storage import as_path, same_or_inside

# Keys of a base config.json that the export rewrites (or that describe a checkpoint, not an architecture).
_REWRITTEN_KEYS = {"architectures", "model_type", "dtype", "torch_dtype", "transformers_version", "rope_theta",
                   "rope_scaling", "rope_parameters", "auto_map", "quantization_config", "_name_or_path",
                   "_model_name_or_path", "is_causal"}
# How the model was run, not what it is: the re-read config.json takes them from the model.
_RUNTIME_FIELDS = ("param_dtype", "dtype", "frozen_dtype", "attention_impl", "remat", "scan_unroll")


def architecture_fields(cfg: DecoderConfig) -> dict[str, Any]:
  """The config.json fields that `rejax.models.config_from_hf_dict` reads, from a DecoderConfig (its inverse):
  the ones every family shares, then the family's own (biases, sliding window: rejax/models/families.py)."""
  rope = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rope_theta}
  fields = dict(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
      num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
      num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps,
      rope_parameters=rope, tie_word_embeddings=cfg.tie_word_embeddings,
  )
  if not cfg.causal:  # transformers' masking_utils then builds bidirectional masks; absent means causal
    fields["is_causal"] = False
  return {**fields, **family_of(cfg.model_type).config_fields(
      qkv_bias=cfg.qkv_bias, o_bias=cfg.o_bias, mlp_bias=cfg.mlp_bias, sliding_window=cfg.sliding_window)}


def hf_config(cfg: DecoderConfig, base: Mapping[str, Any] | None, dtype: str):
  """The transformers config of the bare model: `cfg`'s architecture, the rest (max_position_embeddings,
  token ids, ...) from the base model's config.json when there is one."""
  from transformers import AutoConfig

  fields = {k: v for k, v in (base or {}).items() if k not in _REWRITTEN_KEYS}
  config = AutoConfig.for_model(cfg.model_type, **{**fields, **architecture_fields(cfg)}, dtype=dtype)
  config.architectures = [family_of(cfg.model_type).transformers_class]
  return config


def _base_config(base_dir: pathlib.Path) -> dict[str, Any] | None:
  path = base_dir / "config.json"
  return json.loads(path.read_text()) if path.is_file() else None


def check_export_dir(output: pathlib.Path, base_dir: pathlib.Path, *, overwrite: bool = False,
                     what: str = "output") -> None:
  """Raises ExportError (naming `what`, e.g. `--output`) unless `output` may receive an export: not the base model
  directory nor one holding it, not a file, and absent or empty unless `overwrite` (it is then replaced whole)."""
  if same_or_inside(output, base_dir) and same_or_inside(base_dir, output):
    raise ExportError(f"{what} {output} is the base model directory; export to a new directory")
  if same_or_inside(base_dir, output):
    raise ExportError(f"{what} {output} holds the base model directory {base_dir}; export to a new directory")
  if output.exists() and not output.is_dir():
    raise ExportError(f"{what} {output}: is a file, not a directory")
  if not overwrite and output.is_dir() and any(output.iterdir()):
    remedy = {"--output": "pass --overwrite", "export_dir": "empty it"}.get(what, "pass overwrite=True")
    raise ExportError(f"{what} {output}: not empty; export to a new directory, or {remedy} to replace it whole")


def _dtype_name(dtype) -> str:
  return np.dtype(as_dtype(dtype)).name


def export_model(model: Decoder, output: str | pathlib.Path, *, base_dir: str | pathlib.Path,
                 dtype: str | None = None, instructions: Mapping[str, str] | None = None,
                 max_seq_length: int = 512, max_shard_size: int | str = "5GB",
                 overwrite: bool = False, matryoshka_dims: Sequence[int] = (),
                 card: CardFacts | None = None) -> pathlib.Path:
  """The directory `output`, now holding `model` (adapters merged) for transformers and sentence-transformers.

  model: an NNX Decoder, with or without LoRA, its parameters on any mesh (or one device).
  base_dir: the HF directory (or hub id) the model was loaded from. Its tokenizer is exported; its
    config.json, when present, supplies the fields a DecoderConfig does not hold and the default dtype.
  dtype: of the saved weights ("float32", "bfloat16", "float16"); default: the base config's `dtype` /
    `torch_dtype`, else the model's parameter dtype.
  instructions: prompt name -> task instruction, saved as sentence-transformers prompts
    `Instruct: {instruction}\\nQuery: `; default: the BRIGHT tasks' (BRIGHT_INSTRUCTIONS).
  max_seq_length: sentence-transformers' truncation length (EOS kept, as `rejax encode --max-length`).
  max_shard_size: above this total, weights are split into files of at most this size with an index.
  overwrite: replace a non-empty `output` (whole; see `check_export_dir` for what is never replaced).
  matryoshka_dims: the prefix sizes the model was trained at (loss.matryoshka_dims), recorded in
    config_sentence_transformers.json; load one with `SentenceTransformer(output, truncate_dim=N)`.
  card: what the README.md model card says of the training and its results (default: the base model only).
  """
  card = card or CardFacts(base_model=str(base_dir))
  output = as_path(output, "output")
  base_dir = resolve_model_dir(base_dir)
  check_export_dir(output, base_dir, overwrite=overwrite)
  base = _base_config(base_dir)
  if base is not None and base.get("model_type") != model.cfg.model_type:
    raise ValueError(f"{base_dir}/config.json: model_type {base.get('model_type')!r} does not match the "
                     f"model's {model.cfg.model_type!r}")
  if dtype is None:
    dtype = (base or {}).get("dtype") or (base or {}).get("torch_dtype") or model.cfg.param_dtype
  dtype = _dtype_name(dtype)
  if max_seq_length < MIN_LENGTH:
    raise ValueError(f"max_seq_length must be >= {MIN_LENGTH} (one token and EOS), got {max_seq_length}")
  prompts = query_prompts(BRIGHT_INSTRUCTIONS if instructions is None else instructions)

  merged = merge_lora(model)
  writer = jax.process_index() == 0
  with staged_directory(output, writer=writer) as staging:
    save_safetensors(nnx.state(merged, nnx.Param), staging, dtype=dtype, max_shard_size=max_shard_size)
    if writer:
      cfg = merged.cfg
      hf_config(cfg, base, dtype).save_pretrained(staging)
      save_eos_tokenizer(base_dir, staging)
      write_sentence_transformers_files(staging, hidden_size=cfg.hidden_size, max_seq_length=max_seq_length,
                                        prompts=prompts, pooling=cfg.pooling, matryoshka_dims=matryoshka_dims)
      (staging / "README.md").write_text(model_card(cfg, card, prompts=prompts, max_seq_length=max_seq_length,
                                                    matryoshka_dims=matryoshka_dims, name=output.name),
                                         encoding="utf-8")
      reread = model_config(staging, **{f: getattr(cfg, f) for f in _RUNTIME_FIELDS})
      if reread != cfg:
        raise AssertionError(f"{output}: config.json and 1_Pooling/ do not read back as the model's config: "
                             f"{reread} != {cfg}")
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("rejax.hf.export: written")
  return output
