"""Contamination check (the paper's Figure 3): how close is each synthetic query to any evaluation query?

Similarity is the weighted Jaccard of bag-of-words counts, sum_t min(a_t, b_t) / sum_t max(a_t, b_t),
over lower-cased word tokens. For integer counts, sum_t min(a_t, b_t) = sum_k <[a >= k], [b >= k]>, so
all pairs come from a few sparse matrix products; the max over evaluation queries is kept per synthetic
query. Writes `summary.json` and `histogram.png`.
"""

from __future__ import annotations

import collections
import glob
import json
import pathlib
import re
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from rejax.rows import jsonl_rows

_WORD = re.compile(r"\w+")
ROWS_PER_CHUNK = 2048  # synthetic queries scored at once: a [chunk, n_eval] dense block


def tokens(text: str) -> list[str]:
  """Lower-cased word tokens."""
  return _WORD.findall(text.lower())


def _counts(texts: Sequence[str], vocab: dict[str, int]) -> sp.csr_matrix:
  rows, cols, vals = [], [], []
  for r, text in enumerate(texts):
    for term, n in collections.Counter(tokens(text)).items():
      rows.append(r)
      cols.append(vocab.setdefault(term, len(vocab)))
      vals.append(n)
  return sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(vocab) or 1), dtype=np.float64)


def max_similarity(synthetic: Sequence[str], evaluation: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """(max weighted Jaccard [Ns], index of the closest evaluation query [Ns]) per synthetic query."""
  vocab: dict[str, int] = {}
  a, b = _counts(synthetic, vocab), _counts(evaluation, vocab)
  width = len(vocab) or 1
  a.resize((a.shape[0], width))
  b.resize((b.shape[0], width))
  top = int(max(a.max() if a.nnz else 0, b.max() if b.nnz else 0))
  levels_b = [(b >= k).astype(np.float64).T.tocsc() for k in range(1, top + 1)]
  size_a, size_b = np.asarray(a.sum(1)).ravel(), np.asarray(b.sum(1)).ravel()
  best, arg = np.zeros(a.shape[0]), np.zeros(a.shape[0], dtype=np.int64)
  for start in range(0, a.shape[0], ROWS_PER_CHUNK):
    chunk = a[start : start + ROWS_PER_CHUNK]
    inter = np.zeros((chunk.shape[0], b.shape[0]))
    for k, level in enumerate(levels_b, start=1):
      inter += ((chunk >= k).astype(np.float64) @ level).toarray()
    union = size_a[start : start + chunk.shape[0], None] + size_b[None, :] - inter
    sim = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    arg[start : start + chunk.shape[0]] = sim.argmax(1) if b.shape[0] else 0
    best[start : start + chunk.shape[0]] = sim.max(1) if b.shape[0] else 0.0
  return best, arg


def read_queries(patterns: Sequence[str]) -> list[str]:
  """The `query` (else `text`) of every line of the JSONL(.gz) files matching `patterns`."""
  out = []
  for pattern in patterns:
    files = sorted(glob.glob(str(pattern)))
    if not files:
      raise FileNotFoundError(f"{pattern}: no file matches")
    for path in files:
      for lineno, record in jsonl_rows(path):
        text = record.get("query", record.get("text"))
        if not isinstance(text, str):
          raise ValueError(f"{path}:{lineno}: no `query` or `text` string")
        out.append(text)
  return out


def histogram(similarity: np.ndarray, path: pathlib.Path, bins: int, title: str) -> None:
  """Writes a histogram of the similarities (log count axis) as a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
  ax.hist(similarity, bins=bins, range=(0.0, 1.0), color="#4c72b0", edgecolor="white", log=True)
  ax.set_xlabel("max weighted Jaccard similarity to an evaluation query")
  ax.set_ylabel("synthetic queries")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def check(synthetic: Sequence[str], evaluation: Sequence[str], output: str | pathlib.Path, *, bins: int = 50,
          top: int = 10) -> dict:
  """Summary of the synthetic-vs-evaluation similarities (written with a histogram to `output`)."""
  syn, ev = read_queries(synthetic), read_queries(evaluation)
  if not syn or not ev:
    raise ValueError(f"contamination check needs queries on both sides ({len(syn)} synthetic, {len(ev)} eval)")
  best, arg = max_similarity(syn, ev)
  output = pathlib.Path(output)
  output.mkdir(parents=True, exist_ok=True)
  order = np.argsort(-best, kind="stable")[:top]
  summary = {
    "n_synthetic": len(syn), "n_eval": len(ev), "mean": float(best.mean()), "median": float(np.median(best)),
    "p99": float(np.quantile(best, 0.99)), "max": float(best.max()),
    "at_least": {str(t): int((best >= t).sum()) for t in (0.5, 0.8, 0.95)},
    "closest": [{"similarity": float(best[i]), "synthetic": syn[i], "eval": ev[arg[i]]} for i in order],
  }
  (output / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
  histogram(best, output / "histogram.png", bins, f"{len(syn)} synthetic vs {len(ev)} evaluation queries")
  return summary
