"""Real variable-length inputs for the benchmarks, from the repository's training data (the ReasonEmbed-format
fixture in sample_data/reason_embed): train-step batches as `rejax train`'s pipeline builds them, and the
texts of its passages for encoding; plus the padding the PyTorch reference applies (FlagEmbedding's collator:
every input padded to its longest sequence, in multiples of 8)."""

from __future__ import annotations

import json
import pathlib
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "sample_data" / "reason_embed"
INPUTS = ("query", "passage", "reason")


def train_batches(tokenizer_dir, *, queries: int, group: int, max_query_length: int, max_passage_length: int,
                  steps: int, vocab_size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`steps` host batches of the pipeline (`*_ids/_mask`, padded to power-of-two buckets from 16), every
  domain at (queries, group); ids of a tokenizer bigger than the model's `vocab_size` are folded into it (the
  lengths are what the benchmark needs)."""
  from rejax.data.convert import convert
  from rejax.data.pipeline import PipelineConfig, make_dataset

  domains = sorted(path.name.split("-")[0] for path in FIXTURE.glob("*.jsonl"))
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = pathlib.Path(tmp) / "data"
    convert([str(FIXTURE / "*.jsonl")], data_dir)
    config = PipelineConfig(data_dir=str(data_dir), tokenizer_dir=str(tokenizer_dir),
                            domain_settings={d: (queries, group) for d in domains},
                            max_query_length=max_query_length, max_passage_length=max_passage_length, seed=seed)
    batches = list(iter(make_dataset(config, num_steps=steps)))
  out = []
  for batch in batches:
    for name in INPUTS:
      ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
      batch[f"{name}_ids"] = np.where(mask > 0, ids % vocab_size, 0).astype(np.int32)
    out.append({k: v for k, v in batch.items() if k.endswith(("_ids", "_mask"))})
  return out


def passage_texts(limit: int | None = None) -> list[str]:
  """Every positive and negative passage of the fixture, in file order (duplicates dropped)."""
  seen: dict[str, None] = {}
  for path in sorted(FIXTURE.glob("*.jsonl")):
    for line in path.read_text(encoding="utf-8").splitlines():
      record = json.loads(line)
      for text in [*record["pos"], *record["neg"]]:
        seen.setdefault(text, None)
  texts = list(seen)
  return texts[:limit] if limit else texts


def pad_like_flagembedding(batch: dict[str, np.ndarray], multiple: int = 8) -> dict[str, np.ndarray]:
  """Each input cut to its longest real sequence, rounded up to `multiple`: what the reference trainer feeds."""
  out = {}
  for name in INPUTS:
    ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
    length = min(ids.shape[1], -(-int(mask.sum(axis=1).max()) // multiple) * multiple)
    out[f"{name}_ids"], out[f"{name}_mask"] = ids[:, :length], mask[:, :length]
  return out


def computed_tokens(batch: dict[str, np.ndarray], names=INPUTS) -> int:
  return int(sum(batch[f"{name}_ids"].size for name in names))
