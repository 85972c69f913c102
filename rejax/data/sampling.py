"""Which records make each global batch, and which passages each record contributes: pure numpy.

Everything here is a function of (seed, epoch, ...) only, never of worker, process or wall-clock
state, so any process can rebuild any step's batch and a resumed run sees the batches it would have.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class DomainBatches:
  """A domain's global batch (queries per step, over all processes) and group size G (1 pos + G-1 neg)."""

  name: str
  records: int
  batch_size: int
  group_size: int

  def __post_init__(self):
    if self.batch_size < 1 or self.group_size < 2:
      raise ValueError(f"domain {self.name}: batch_size must be >= 1 and group_size >= 2, "
                       f"got ({self.batch_size}, {self.group_size})")

  @property
  def batches_per_epoch(self) -> int:
    return self.records // self.batch_size  # the remainder is dropped, as the reference does


def _rng(*key: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def epoch_batches(domains: Sequence[DomainBatches], seed: int, epoch: int) -> list[tuple[int, np.ndarray]]:
  """The global batches of one epoch, in order: (domain position, record indices within the domain).

  Each domain's records are shuffled and cut into full batches; the batches of all domains are then
  shuffled together, so every batch holds ONE domain and the domains interleave.
  """
  batches = []
  for d, spec in enumerate(domains):
    order = _rng(seed, epoch, d, 0).permutation(spec.records)
    batches += [(d, order[b * spec.batch_size:(b + 1) * spec.batch_size]) for b in range(spec.batches_per_epoch)]
  if not batches:
    raise ValueError("no full batch in any domain: every domain has fewer records than its batch size "
                     + ", ".join(f"{s.name}: {s.records} < {s.batch_size}" for s in domains))
  return [batches[i] for i in _rng(seed, epoch, len(domains), 1).permutation(len(batches))]


def group_picks(pos: Sequence[str], neg: Sequence[str], group_size: int, seed: int, epoch: int,
                domain: int, index: int, where: str = "") -> tuple[int, list[int]]:
  """(index into `pos` of the positive, indices into `neg` of the G-1 negatives) for one record at one epoch.

  The positive is uniform over `pos`; negatives are drawn without replacement from `neg` minus any
  text that is also a positive of the record, the pool repeated when it is shorter than G-1.
  """
  rng = _rng(seed, epoch, domain, index, 2)
  positive = int(rng.integers(len(pos)))
  positives = set(pos)
  pool = [i for i, text in enumerate(neg) if text not in positives]
  if not pool:
    raise ValueError(f"{where or f'record {index}'}: every negative is also a positive; nothing to sample")
  repeats = -(-(group_size - 1) // len(pool))
  picks = rng.choice(len(pool) * repeats, size=group_size - 1, replace=False)
  return positive, [pool[i % len(pool)] for i in picks]


def sample_group(pos: Sequence[str], neg: Sequence[str], group_size: int, seed: int, epoch: int,
                 domain: int, index: int, where: str = "") -> list[str]:
  """[positive, G-1 negatives] for one record at one epoch: the texts `group_picks` picks."""
  positive, negatives = group_picks(pos, neg, group_size, seed, epoch, domain, index, where)
  return [pos[positive]] + [neg[i] for i in negatives]


def group_scores(record: Mapping, positive: int, negatives: Sequence[int]) -> list[float]:
  """The teacher's scores of a group's passages, in its order: `pos_scores` of the positive, then `neg_scores` of
  each negative (the record's optional fields, rejax.data.records)."""
  return [float(record["pos_scores"][positive])] + [float(record["neg_scores"][i]) for i in negatives]


def process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
  """The contiguous part of a global batch that one process loads (global row order is process order)."""
  if batch_size % process_count:
    raise ValueError(f"global batch {batch_size} is not divisible by the {process_count} processes")
  per = batch_size // process_count
  return slice(process_index * per, (process_index + 1) * per)


def domain_batches(counts: Mapping[str, int], settings: Mapping[str, tuple[int, int]],
                   default: tuple[int, int] | None = None) -> list[DomainBatches]:
  """DomainBatches for the domains of a dataset, in name order, from per-domain (batch, G) settings."""
  specs = []
  for name in sorted(counts):
    if name in settings:
      batch, group = settings[name]
    elif default is not None:
      batch, group = default
    else:
      raise ValueError(f"domain {name!r} of the data has no (batch_size, group_size) setting; "
                       f"known: {', '.join(sorted(settings))}")
    specs.append(DomainBatches(name, counts[name], int(batch), int(group)))
  return specs
