"""One evaluation: encode (or BM25-index) a dataset, search, score. Returns RESULTS.json's content."""

from __future__ import annotations

import pathlib
import sys
import time

from rejax.eval.beir import RetrievalDataset
from rejax.eval.cache import cache_key, cached
from rejax.eval.metrics import evaluate, remove_excluded

Run = dict[str, dict[str, float]]


def bm25_run(dataset: RetrievalDataset, k: int) -> Run:
  """BM25 (bm25s, English stopwords, no stemming) top-k per query, excluded ids removed first."""
  import bm25s

  doc_ids = list(dataset.corpus)
  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize(list(dataset.corpus.values()), stopwords="en", show_progress=False),
                  show_progress=False)
  query_ids = list(dataset.queries)
  tokens = bm25s.tokenize([dataset.queries[q] for q in query_ids], stopwords="en", return_ids=False,
                          show_progress=False)
  extra = max((len(v) for v in dataset.excluded.values()), default=0)
  idx, scores = retriever.retrieve(tokens, k=min(k + extra, len(doc_ids)), show_progress=False, n_threads=1)
  run = {q: {doc_ids[i]: float(s) for i, s in zip(row_idx, row_scores)}
         for q, row_idx, row_scores in zip(query_ids, idx, scores)}
  return {q: dict(list(hits.items())[:k]) for q, hits in remove_excluded(run, dataset.excluded).items()}


def dense_run(dataset: RetrievalDataset, encoder, model_dir: pathlib.Path, *, k: int, instruction: str | None,
              index_kind: str = "flat", cache_dir: pathlib.Path | None = None) -> Run:
  """Encode corpus (cached) and queries with `encoder`, then faiss top-k with excluded ids removed."""
  from rejax.eval.search import build_index, search

  doc_ids, query_ids = list(dataset.corpus), list(dataset.queries)
  settings = dict(max_length=encoder.max_length, dtype=str(encoder.dtype))
  if getattr(encoder, "dim", None):  # a Matryoshka prefix (--dim): its own cache entries
    settings["dim"] = encoder.dim
  docs = [dataset.corpus[d] for d in doc_ids]
  doc_emb = cached(cache_dir, cache_key(model_dir, docs, **settings),
                   lambda: encoder.encode(docs, desc=f"{dataset.name} corpus"), f"{dataset.name} corpus")
  queries = [dataset.queries[q] for q in query_ids]
  query_emb = encoder.encode(queries, instruction=instruction, desc=f"{dataset.name} queries")
  return search(build_index(doc_emb, index_kind), doc_ids, query_emb, query_ids, k, dataset.excluded)


def evaluate_run(dataset: RetrievalDataset, run: Run, model: str, seconds: float) -> dict:
  """RESULTS.json content: the metrics (fractions), the query count, and what produced them."""
  scores = evaluate(run, dataset.qrels)
  per_query = scores.pop("per_query")
  print(f"{dataset.name}: nDCG@10 {scores['ndcg@10']:.4f}  recall@100 {scores['recall@100']:.4f}  "
        f"({len(dataset.queries)} queries, {seconds:.1f} s)", file=sys.stderr)
  return {**scores, "dataset": dataset.name, "model": model, "instruction": dataset.instruction,
          "num_docs": len(dataset.corpus), "seconds": round(seconds, 2), "per_query": per_query}


def run_model(dataset: RetrievalDataset, model: str, encoder=None, *, k: int = 1000, index_kind: str = "flat",
              cache_dir: pathlib.Path | None = None) -> tuple[Run, dict]:
  """(run, results) of `model` on `dataset`: "bm25", or the model directory that `encoder` was loaded from."""
  start = time.perf_counter()
  if model == "bm25":
    run = bm25_run(dataset, k)
  else:
    run = dense_run(dataset, encoder, encoder.model_dir, k=k, instruction=dataset.instruction,
                    index_kind=index_kind, cache_dir=cache_dir)
  return run, evaluate_run(dataset, run, model, time.perf_counter() - start)
