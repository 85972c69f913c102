"""Retrieval metrics with trec_eval's conventions: pure functions over runs and qrels.

    run:   {qid: {docid: score}}   higher scores rank first
    qrels: {qid: {docid: grade}}   integer grades; a doc missing from a query's qrels has grade 0

Conventions, each checked against pytrec_eval (trec_eval 9) in tests/test_metrics.py:
- Ranking: score descending, ties broken by docid descending (trec_eval's strcmp order). The whole
  run is ranked; trec_eval's -M cap is unlimited by default, so nothing is cut at 1000.
- nDCG@k: gain = grade (negative grades gain 0), discount 1 / log2(rank + 1) with ranks from 1, and
  the ideal DCG is that of the query's judged docs sorted by grade (trec_eval `ndcg_cut_k`).
- Relevant, for recall, AP and reciprocal rank, means grade >= 1 (trec_eval's default -l 1).
- MRR@k: 1 / rank of the first relevant doc if it is in the top k, else 0. trec_eval has no cutoff
  version; this equals its `recip_rank` on the run cut at k.
- A query is "in the qrels" when it has at least one judgment. One whose judgments are all below 1 is
  NOT skipped: trec_eval evaluates it and it scores 0 on every metric here.
- `evaluate` averages over every query in the qrels; one absent from the run scores 0 (trec_eval -c).
  Run queries without judgments are ignored.
"""

from __future__ import annotations

import math
import pathlib

from rejax.io import write_text_atomic

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

RELEVANCE_LEVEL = 1


def rank_docs(scores: dict[str, float]) -> list[str]:
  """Returns the docids in trec_eval's order: score descending, then docid descending."""
  if any(math.isnan(s) for s in scores.values()):
    raise ValueError("a run score is NaN; trec_eval's order is undefined for NaN")
  return [docid for docid, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def _num_relevant(judged: dict[str, int]) -> int:
  return sum(grade >= RELEVANCE_LEVEL for grade in judged.values())


def ndcg_at_k(ranking: list[str], judged: dict[str, int], k: int) -> float:
  """Returns nDCG@k of one ranking (trec_eval `ndcg_cut_k`)."""
  dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
  ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
  ideal = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
  return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranking: list[str], judged: dict[str, int], k: int) -> float:
  """Returns the fraction of the query's relevant docs found in the top k (trec_eval `recall_k`)."""
  num_relevant = _num_relevant(judged)
  if num_relevant == 0:
    return 0.0
  return sum(judged.get(d, 0) >= RELEVANCE_LEVEL for d in ranking[:k]) / num_relevant


def average_precision(ranking: list[str], judged: dict[str, int]) -> float:
  """Returns AP over the whole ranking, unretrieved relevant docs adding 0 (trec_eval `map`)."""
  num_relevant = _num_relevant(judged)
  if num_relevant == 0:
    return 0.0
  hits, precision_sum = 0, 0.0
  for i, d in enumerate(ranking):
    if judged.get(d, 0) >= RELEVANCE_LEVEL:
      hits += 1
      precision_sum += hits / (i + 1)
  return precision_sum / num_relevant


def reciprocal_rank_at_k(ranking: list[str], judged: dict[str, int], k: int) -> float:
  """1 / rank of the first relevant doc within the top k, else 0 (trec_eval `recip_rank` on the run cut at k)."""
  for i, d in enumerate(ranking[:k]):
    if judged.get(d, 0) >= RELEVANCE_LEVEL:
      return 1.0 / (i + 1)
  return 0.0


def query_metrics(ranking: list[str], judged: dict[str, int], ks: tuple[int, ...] = (10, 100)) -> dict[str, float]:
  """Returns {"ndcg@k", "recall@k", "mrr@k" for each k in ks, "map"} of one query."""
  values = {}
  for k in ks:
    values[f"ndcg@{k}"] = ndcg_at_k(ranking, judged, k)
    values[f"recall@{k}"] = recall_at_k(ranking, judged, k)
    values[f"mrr@{k}"] = reciprocal_rank_at_k(ranking, judged, k)
  values["map"] = average_precision(ranking, judged)
  return values


def evaluate(run: Run, qrels: Qrels, ks: tuple[int, ...] = (10, 100)) -> dict:
  """Returns the means over the queries in qrels (`ndcg@10`, `recall@10`, `recall@100`, `mrr@10`, `map`, ...),
  `num_queries`, and `per_query` {qid: {metric: value}}."""
  per_query = {
      qid: query_metrics(rank_docs(run.get(qid, {})), judged, ks)
      for qid, judged in sorted(qrels.items()) if judged
  }
  if not per_query:
    raise ValueError("qrels hold no judgments")
  names = next(iter(per_query.values())).keys()
  means = {name: math.fsum(values[name] for values in per_query.values()) / len(per_query) for name in names}
  return {**means, "num_queries": len(per_query), "per_query": per_query}


def remove_excluded(run: Run, excluded: dict[str, set[str]]) -> Run:
  """Returns a copy of run without each query's excluded docids (BRIGHT's `excluded_ids`).

  Apply it before cutting a ranking to its top k, so that excluded docs do not take the place of others.
  """
  return {
      qid: {d: s for d, s in scores.items() if d not in excluded.get(qid, ())}
      for qid, scores in run.items()
  }


def write_trec_run(run: Run, path: str | pathlib.Path, tag: str, k: int = 1000) -> None:
  """Writes the top k of each query as `qid Q0 docid rank score tag` lines, queries sorted, ranks from 1.

  Scores are written with repr, which round-trips floats exactly: rounding could turn distinct scores
  into ties that trec_eval would reorder by docid.
  """
  lines = []
  for qid in sorted(run):
    scores = run[qid]
    lines += [f"{qid} Q0 {docid} {i + 1} {float(scores[docid])!r} {tag}\n"
              for i, docid in enumerate(rank_docs(scores)[:k])]
  write_text_atomic(path, "".join(lines), what="TREC run")
