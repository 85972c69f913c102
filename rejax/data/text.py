"""The one place where text becomes tokens: query/document formatting and EOS-terminated tokenisation.

Training, evaluation, export and synthesis all go through these functions, so a model is always fed
exactly what it was trained on.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from rejax.errors import InputError

MIN_LENGTH = 2  # the shortest sequence an embedding is read from: one token and the EOS whose state is the embedding


def format_query(text: str, instruction: str | None) -> str:
  """`Instruct: {instruction}\\nQuery: {text}`, or the text alone when there is no instruction."""
  return f"Instruct: {instruction}\nQuery: {text}" if instruction else text


def format_document(text: str, title: str | None = None) -> str:
  """Documents get no instruction; a title, when there is one, goes on its own first line."""
  return f"{title}\n{text}" if title else text


# The files a Hugging Face tokenizer is built from; a directory with none of them loads a near-empty tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def load_tokenizer(model_dir: str | pathlib.Path):
  """The model directory's fast tokenizer, checked to be whole: its files exist and load, it has an EOS token
  (pooling needs it), and its vocabulary fits config.json's vocab_size. Problems raise InputError naming the
  directory: a tokenizer missing or half written would otherwise embed every text alike."""
  from transformers import AutoTokenizer

  model_dir = pathlib.Path(model_dir)
  if model_dir.is_dir() and not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
    raise InputError(f"{model_dir}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); copy the model's "
                     "tokenizer into the directory")
  try:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
  except Exception as e:  # transformers and the Rust tokenizers raise many types (even bare Exception) for a bad file
    raise InputError(f"{model_dir}: the tokenizer does not load ({type(e).__name__}: {_first_line(e)}); "
                     "are its files complete?") from e
  if tokenizer.eos_token_id is None:
    raise InputError(f"{model_dir}: the tokenizer has no eos_token; set one in tokenizer_config.json")
  check_vocabulary(tokenizer, model_dir)
  return tokenizer


def check_vocabulary(tokenizer, model_dir: pathlib.Path) -> None:
  """Raises InputError unless the tokenizer's size is plausible for config.json's vocab_size (when there is one):
  no larger (ids past the embedding table), and at least half of it (fewer means missing tokenizer files)."""
  config = model_dir / "config.json"
  if not config.is_file():
    return
  try:
    vocab_size = json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
  except (ValueError, UnicodeDecodeError) as e:
    raise InputError(f"{config}: not valid JSON ({e})") from None
  if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
    return  # composite configs keep it elsewhere; the model loader checks its own
  size = len(tokenizer)
  if size > vocab_size:
    raise InputError(f"{model_dir}: the tokenizer has {size} tokens, more than config.json's vocab_size "
                     f"{vocab_size}: ids past the embedding table; is this the model's own tokenizer?")
  if size < vocab_size // 2:
    raise InputError(f"{model_dir}: the tokenizer has only {size} tokens for config.json's vocab_size {vocab_size}; "
                     "its files (tokenizer.json, ...) are missing or incomplete")


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
  """Token ids per text with the tokenizer's defaults, ending in EOS, at most `max_length` long.

  EOS is appended unless the tokenizer already put it last; over-long texts are truncated so that the
  final EOS survives (its hidden state is the embedding).
  """
  if max_length < MIN_LENGTH:
    raise ValueError(f"max_length must be >= {MIN_LENGTH} (one token and EOS), got {max_length}")
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


def bucket_lengths(max_length: int, minimum: int = 16) -> list[int]:
  """Every padded length `bucket_length` can give: the powers of two from `minimum` below `max_length`, then it."""
  lengths, length = [], minimum
  while length < max_length:
    lengths.append(length)
    length *= 2
  return lengths + [max_length]


def pad_id_of(tokenizer) -> int:
  """The padding id: the tokenizer's pad token, else EOS (padding is masked out either way)."""
  return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
