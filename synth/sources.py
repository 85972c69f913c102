"""Which corpus documents become sources, and the per-source random choices (length, education level)."""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

import numpy as np

from synth.textproc import content_hash, stable_seed


def select_sources(corpus: Mapping[str, str], gold: set[str], *, min_chars: int, max_chars: int,
                   max_sources: int, seed: int) -> tuple[list[str], collections.Counter]:
  """(source doc ids in corpus order, why each other document was left out).

  Test-set gold documents, documents outside [min_chars, max_chars] and repeated texts are never
  sources; of the rest, `max_sources` are sampled without replacement with `seed`.
  """
  dropped: collections.Counter = collections.Counter()
  seen: set[str] = set()
  eligible = []
  for doc_id, text in corpus.items():
    digest = content_hash(text)
    if doc_id in gold:
      dropped["test gold document"] += 1
    elif len(text) < min_chars:
      dropped[f"shorter than {min_chars} chars"] += 1
    elif len(text) > max_chars:
      dropped[f"longer than {max_chars} chars"] += 1
    elif digest in seen:
      dropped["duplicate source text"] += 1
    else:
      seen.add(digest)
      eligible.append(doc_id)
  if len(eligible) > max_sources:
    keep = np.sort(np.random.default_rng(seed).choice(len(eligible), size=max_sources, replace=False))
    dropped["not sampled (over max_sources)"] += len(eligible) - max_sources
    eligible = [eligible[i] for i in keep]
  return eligible, dropped


def weighted_choice(options: Sequence[tuple[str, float]], *key: object) -> str:
  """One option label drawn with probability proportional to its weight, a pure function of `key`."""
  labels = [label for label, _ in options]
  weights = np.array([weight for _, weight in options], dtype=np.float64)
  if len(labels) == 0 or (weights < 0).any() or weights.sum() <= 0:
    raise ValueError(f"weighted options need non-negative weights with a positive sum, got {list(options)}")
  u = np.random.default_rng(stable_seed(*key)).random()
  index = int(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"))
  return labels[min(index, len(labels) - 1)]  # rounding may leave the last cumulative sum just below 1
