"""Which of a query's ranked candidates may be its hard negatives, and which of them are taken: pure numpy.

The candidates of a query are its search hits with its positives (and their duplicates) already removed, ranked by
the mining model: `scores_qk[q, r]` is the score of the candidate of rank r (-inf where the search had fewer hits),
possibly rescored by a CrossEncoder. A candidate is kept when

    range_min <= r < K  (K = the search depth, --range-max)
    score <= pos - absolute_margin             (--absolute-margin: not within the margin of the positive)
    score <= pos - |pos| * relative_margin     (--relative-margin; sentence-transformers' sign-safe form)
    score <= max_score                         (--max-score)

with `pos` the query's lowest positive score (several positives: the hardest one decides, as sentence-transformers
does). Ranks are the search's, before any filter (FlagEmbedding's `range_for_sampling`; sentence-transformers skips
range_min of the candidates left after its filters instead).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SAMPLING = ("top", "random")


def candidate_mask(scores_qk: np.ndarray, pos_q: np.ndarray, *, range_min: int = 0,
                   absolute_margin: float | None = None, relative_margin: float | None = None,
                   max_score: float | None = None) -> np.ndarray:
  """bool [Q, K]: the candidates that may be negatives (rank window, margins to the positive, max score)."""
  scores_qk = np.asarray(scores_qk, dtype=np.float64)
  pos_q1 = np.asarray(pos_q, dtype=np.float64)[:, None]
  keep = np.isfinite(scores_qk)
  keep[:, :range_min] = False
  if absolute_margin is not None:
    keep &= scores_qk <= pos_q1 - absolute_margin
  if relative_margin is not None:
    keep &= scores_qk <= pos_q1 - np.abs(pos_q1) * relative_margin
  if max_score is not None:
    keep &= scores_qk <= max_score
  return keep


def choose(scores_k: np.ndarray, keep_k: np.ndarray, num: int, sampling: str,
           rng: np.random.Generator | None = None) -> np.ndarray:
  """The columns of one query's chosen negatives, highest score first: the `num` best kept ones ("top"), or `num`
  kept ones drawn uniformly without replacement by `rng` ("random"); all of them when fewer are kept."""
  kept = np.flatnonzero(keep_k)
  if sampling == "random" and len(kept) > num:
    kept = np.sort(rng.choice(kept, size=num, replace=False))
  elif sampling not in SAMPLING:
    raise ValueError(f"sampling {sampling!r}; expected one of {', '.join(SAMPLING)}")
  by_score = kept[np.argsort(-np.asarray(scores_k)[kept], kind="stable")]
  return by_score[:num]


def query_rng(seed: int, query_number: int) -> np.random.Generator:
  """The random generator of one query: a function of (seed, its number in the input), not of the others."""
  return np.random.default_rng([seed, query_number])


def choose_all(scores_qk: np.ndarray, keep_qk: np.ndarray, num: int, sampling: str, seed: int = 0,
               numbers: Sequence[int] | None = None) -> list[np.ndarray]:
  """`choose` for every query, query q drawing from query_rng(seed, numbers[q]) (default: q)."""
  numbers = range(len(scores_qk)) if numbers is None else numbers
  return [choose(s, k, num, sampling, query_rng(seed, n)) for s, k, n in zip(scores_qk, keep_qk, numbers)]
