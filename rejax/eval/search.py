"""Exact (or approximate) inner-product search with faiss, excluded ids removed before the top-k cut."""

from __future__ import annotations

import faiss
import numpy as np


def build_index(doc_emb: np.ndarray, kind: str = "flat", nlist: int = 1024) -> faiss.Index:
  """An inner-product index over unit-norm document embeddings: exact ("flat", fp32) or "hnsw" / "ivf"."""
  d = doc_emb.shape[1]
  emb = np.ascontiguousarray(doc_emb, dtype=np.float32)
  if kind == "flat":
    index = faiss.IndexFlatIP(d)
  elif kind == "hnsw":
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
  elif kind == "ivf":
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, min(nlist, len(emb)), faiss.METRIC_INNER_PRODUCT)
    index.train(emb)
  else:
    raise ValueError(f"index kind {kind!r}; expected 'flat', 'hnsw' or 'ivf'")
  index.add(emb)
  return index


def search(index: faiss.Index, doc_ids: list[str], query_emb: np.ndarray, query_ids: list[str], k: int,
           excluded: dict[str, set[str]] | None = None) -> dict[str, dict[str, float]]:
  """{query id: {doc id: score}} with each query's top k after dropping its excluded ids."""
  excluded = excluded or {}
  extra = max((len(v) for v in excluded.values()), default=0)
  depth = min(k + extra, len(doc_ids))
  scores, idx = index.search(np.ascontiguousarray(query_emb, dtype=np.float32), depth)
  run = {}
  for qid, row_scores, row_idx in zip(query_ids, scores, idx):
    skip = excluded.get(qid, set())
    hits = [(doc_ids[i], float(s)) for s, i in zip(row_scores, row_idx) if i >= 0 and doc_ids[i] not in skip]
    run[qid] = dict(hits[:k])
  return run
