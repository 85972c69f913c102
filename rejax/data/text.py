"""The one place where text becomes tokens: query/document formatting and EOS-terminated tokenisation.

Training, evaluation, export and synthesis all go through these functions, so a model is always fed
exactly what it was trained on.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np


def format_query(text: str, instruction: str | None) -> str:
  """`Instruct: {instruction}\\nQuery: {text}`, or the text alone when there is no instruction."""
  return f"Instruct: {instruction}\nQuery: {text}" if instruction else text


def format_document(text: str, title: str | None = None) -> str:
  """Documents get no instruction; a title, when there is one, goes on its own first line."""
  return f"{title}\n{text}" if title else text


def load_tokenizer(model_dir: str | pathlib.Path):
  """The model directory's fast tokenizer, checked to have an EOS token (pooling needs it)."""
  from transformers import AutoTokenizer

  tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
  if tokenizer.eos_token_id is None:
    raise ValueError(f"{model_dir}: the tokenizer has no eos_token; set one in tokenizer_config.json")
  return tokenizer


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
  """Token ids per text with the tokenizer's defaults, ending in EOS, at most `max_length` long.

  EOS is appended unless the tokenizer already put it last; over-long texts are truncated so that the
  final EOS survives (its hidden state is the embedding).
  """
  if max_length < 2:
    raise ValueError(f"max_length must be >= 2 (one token and EOS), got {max_length}")
  eos = tokenizer.eos_token_id
  encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
  out = []
  for ids in encoded:
    if not ids or ids[-1] != eos:
      ids = ids[: max_length - 1] + [eos]
    out.append(ids)
  return out


def pad_batch(token_ids: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """(input_ids, attention_mask), both int32 [B, length], right-padded."""
  ids = np.full((len(token_ids), length), pad_id, dtype=np.int32)
  mask = np.zeros((len(token_ids), length), dtype=np.int32)
  for row, seq in enumerate(token_ids):
    if len(seq) > length:
      raise ValueError(f"sequence {row} has {len(seq)} tokens, more than the padded length {length}")
    ids[row, : len(seq)] = seq
    mask[row, : len(seq)] = 1
  return ids, mask


def bucket_length(n: int, max_length: int, minimum: int = 16) -> int:
  """The padded length for a longest sequence of n tokens: the next power of two (>= minimum), capped.

  A few fixed buckets keep the number of compiled shapes small and known.
  """
  length = minimum
  while length < n:
    length *= 2
  return min(length, max_length)


def pad_id_of(tokenizer) -> int:
  """The padding id: the tokenizer's pad token, else EOS (padding is masked out either way)."""
  return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
