"""The batches of the GPU check: the paper's per-device batch at full length, and the same shape with the varied
lengths of real training data, padded as `rejax train`'s pipeline pads (`data.pack=False`) or as PyTorch's
reference pads (FlagEmbedding: each input to its longest sequence, in multiples of 8).

Varied lengths come from the repository's ReasonEmbed-format records (sample_data/reason_embed: formatted query,
positive and negatives, reasoning query), in tokens estimated as characters / 4 (the real Qwen3 tokenizer gives
4.05 characters per token on these files), capped at the maximum length; the ids are random. No tokenizer is
needed, so the check runs where none can be downloaded. `scale` shrinks every length alike (the CPU mode's
64-token sequences keep the spread of the real 512-token ones).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from bench.real_data import FIXTURE, INPUTS, pad_like_flagembedding
from bench.train_step import make_batch
from rejax.data.text import bucket_length, format_query, pad_batch

CHARS_PER_TOKEN = 4


def full_batch(queries: int, group: int, length: int, vocab: int) -> dict[str, np.ndarray]:
  """Every sequence `length` real tokens (no padding): the paper's batch at its maximum length."""
  return make_batch(queries, group, length, vocab)


def fixture_records() -> list[dict]:
  """The records of sample_data/reason_embed, domains interleaved (as the pipeline draws one domain per step,
  interleaving keeps a small batch from being all one domain's lengths)."""
  domains = [[json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
             for path in sorted(pathlib.Path(FIXTURE).glob("*.jsonl"))]
  longest = max(map(len, domains))
  return [records[i] for i in range(longest) for records in domains if i < len(records)]


def estimated_tokens(text: str, max_length: int, scale: float = 1.0) -> int:
  """Tokens of `text` plus its EOS, estimated from its characters and times `scale`, within [2, max_length]."""
  return int(np.clip(math.ceil(len(text) * scale / CHARS_PER_TOKEN) + 1, 2, max_length))


def varied_lengths(queries: int, group: int, max_length: int, scale: float = 1.0) -> dict[str, np.ndarray]:
  """Per input, the lengths of one step's sequences: `queries` records, each with its formatted query, its
  reasoning query and `group` passages (the positive, then negatives, cycled where a record has fewer)."""
  records = fixture_records()
  if queries > len(records):
    raise ValueError(f"{queries} queries: the fixture has only {len(records)} records")
  lengths = {name: [] for name in INPUTS}
  for record in records[:queries]:
    for name, text in (("query", record["query"]), ("reason", record["reasoning_query"])):
      lengths[name].append(estimated_tokens(format_query(text, record["prompt"]), max_length, scale))
    negatives = record["neg"] or record["pos"]
    passages = [record["pos"][0]] + [negatives[i % len(negatives)] for i in range(group - 1)]
    lengths["passage"] += [estimated_tokens(text, max_length, scale) for text in passages]
  return {name: np.asarray(values) for name, values in lengths.items()}


def varied_batch(queries: int, group: int, max_length: int, vocab: int, *, scale: float = 1.0,
                 seed: int = 0) -> dict[str, np.ndarray]:
  """A host batch as the pipeline gives it: random ids of the varied lengths, right-padded per input to the
  power-of-two bucket of its longest sequence (from 16, capped at `max_length`)."""
  rng = np.random.default_rng(seed)
  batch = {}
  for name, lengths in varied_lengths(queries, group, max_length, scale).items():
    sequences = [rng.integers(1, vocab, n, dtype=np.int32) for n in lengths]
    ids, mask = pad_batch(sequences, bucket_length(int(lengths.max()), max_length), pad_id=0)
    batch[f"{name}_ids"], batch[f"{name}_mask"] = ids, mask
  return batch


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The batch as the PyTorch reference trainer pads it (bench.real_data.pad_like_flagembedding)."""
  return pad_like_flagembedding(batch)
