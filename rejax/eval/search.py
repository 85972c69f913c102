"""Exact (or approximate) inner-product search with faiss, excluded ids removed before the top-k cut.

An approximate index is sized for its corpus and searched wide enough that every query gets its full top k:
a narrow search (an IVF cell per document, nprobe 1) returns a handful of hits, which would score as a bad ranking.
"""

from __future__ import annotations

import sys

import faiss
import numpy as np

MIN_DOCS_PER_CELL = 39  # faiss's minimum of training points per IVF centroid (it warns below)


def ivf_cells(num_docs: int, nlist: int = 1024) -> int:
  """The IVF cells for a corpus of `num_docs`: at most `nlist`, at most one per MIN_DOCS_PER_CELL documents, >= 1."""
  return max(1, min(nlist, num_docs // MIN_DOCS_PER_CELL))


def build_index(doc_emb: np.ndarray, kind: str = "flat", nlist: int = 1024) -> faiss.Index:
  """An inner-product index over unit-norm document embeddings: exact ("flat", fp32) or "hnsw" / "ivf"."""
  if doc_emb.ndim != 2 or not len(doc_emb):
    raise ValueError(f"cannot index {doc_emb.shape[0] if doc_emb.ndim else 0} documents: the corpus is empty")
  d = doc_emb.shape[1]
  emb = np.ascontiguousarray(doc_emb, dtype=np.float32)
  if kind == "flat":
    index = faiss.IndexFlatIP(d)
  elif kind == "hnsw":
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
  elif kind == "ivf":
    cells = ivf_cells(len(emb), nlist)
    if cells < nlist:
      print(f"ivf index: {cells} cell(s) for {len(emb)} documents instead of {nlist} (faiss needs "
            f"{MIN_DOCS_PER_CELL} documents a cell)", file=sys.stderr)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells, faiss.METRIC_INNER_PRODUCT)
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
  scores, idx = complete_search(index, np.ascontiguousarray(query_emb, dtype=np.float32), depth)
  run = {}
  for qid, row_scores, row_idx in zip(query_ids, scores, idx):
    skip = excluded.get(qid, set())
    hits = [(doc_ids[i], float(s)) for s, i in zip(row_scores, row_idx) if i >= 0 and doc_ids[i] not in skip]
    run[qid] = dict(hits[:k])
  return run


def complete_search(index: faiss.Index, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
  """(scores, ids) of faiss's top `depth` for every query, an approximate index's search widened (IVF nprobe, HNSW
  efSearch) until every query has `depth` hits; raises RuntimeError if even the widest search falls short."""
  if isinstance(index, faiss.IndexIVF):  # probe cells holding about 4x depth documents, not faiss's default 1
    index.nprobe = max(index.nprobe, min(index.nlist, -(-4 * depth * index.nlist // max(index.ntotal, 1))))
  scores, idx = index.search(queries, depth)
  widened = False
  while (idx < 0).any() and _widen(index, depth):
    widened = True
    short = np.nonzero((idx < 0).any(axis=1))[0]
    scores[short], idx[short] = index.search(queries[short], depth)
  if widened:
    ivf = isinstance(index, faiss.IndexIVF)
    setting = f"nprobe {index.nprobe} of {index.nlist}" if ivf else f"efSearch {index.hnsw.efSearch}"
    print(f"approximate index: search widened to {setting} so that every query gets its top {depth}", file=sys.stderr)
  if (idx < 0).any():
    raise RuntimeError(f"the approximate index returned fewer than {depth} hits for "
                       f"{int((idx < 0).any(axis=1).sum())} queries; use --index flat")
  return scores, idx


def _widen(index: faiss.Index, depth: int) -> bool:
  """Whether a wider search was set up (nprobe or efSearch doubled, up to exhaustive)."""
  if isinstance(index, faiss.IndexIVF):
    if index.nprobe >= index.nlist:
      return False
    index.nprobe = min(index.nlist, 2 * index.nprobe)
    return True
  hnsw = getattr(index, "hnsw", None)
  if hnsw is not None and hnsw.efSearch < index.ntotal:
    hnsw.efSearch = min(index.ntotal, max(2 * hnsw.efSearch, depth))
    return True
  return False
