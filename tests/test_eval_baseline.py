"""`rejax eval --model DIR` on a sentence-transformers baseline (all-MiniLM-L6-v2): the embeddings are
sentence-transformers' own and the metrics pytrec_eval's, on a slice of the real CACM collection."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytrec_eval

from rejax.cli import main
from rejax.data.weak_pairs import write_beir
from rejax.eval.st_encoder import is_baseline_dir
from rejax.rows import read_rows

CACM = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "cacm"


def _cacm_slice(directory: pathlib.Path) -> tuple[dict, dict, dict]:
  """The 60 documents judged for CACM queries 10-19 plus 40 others, those queries and their judgments."""
  qrels = {}
  for line in (CACM / "qrels" / "test.tsv").read_text().splitlines()[1:]:
    q, d, g = line.split("\t")
    if 10 <= int(q) < 20:
      qrels.setdefault(q, {})[d] = int(g)
  judged = {d for j in qrels.values() for d in j}
  corpus = [d for d in read_rows(CACM / "corpus.jsonl") if d["_id"] in judged]
  corpus += [d for d in read_rows(CACM / "corpus.jsonl")[:200] if d["_id"] not in judged][: 100 - len(corpus)]
  queries = {q["_id"]: q["text"] for q in read_rows(CACM / "queries.jsonl") if q["_id"] in qrels}
  write_beir(directory, corpus=corpus, queries=queries, qrels=qrels, split="test")
  return {d["_id"]: d for d in corpus}, queries, qrels


def test_minilm_is_scored_with_sentence_transformers_embeddings_and_trec_eval_metrics(minilm_dir, tmp_path):
  from sentence_transformers import SentenceTransformer

  assert is_baseline_dir(minilm_dir)
  corpus, queries, qrels = _cacm_slice(tmp_path / "cacm")
  main(["eval", "--model", str(minilm_dir), "--dataset", str(tmp_path / "cacm"), "--output", str(tmp_path / "r.json"),
        "--cache-dir", str(tmp_path / "cache")])
  results = json.loads((tmp_path / "r.json").read_text())

  model = SentenceTransformer(str(minilm_dir), device="cpu")
  doc_ids, query_ids = list(corpus), list(queries)
  docs = model.encode([f"{corpus[d]['title']}\n{corpus[d]['text']}" for d in doc_ids], normalize_embeddings=True)
  scores = model.encode([queries[q] for q in query_ids], normalize_embeddings=True) @ docs.T
  run = {q: {doc_ids[j]: float(scores[i, j]) for j in np.argsort(-scores[i])} for i, q in enumerate(query_ids)}
  per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
  assert abs(results["ndcg@10"] - np.mean([v["ndcg_cut_10"] for v in per_query.values()])) < 1e-6
  assert abs(results["recall@100"] - np.mean([v["recall_100"] for v in per_query.values()])) < 1e-6
  assert results["ndcg@10"] > 0.3  # a real embedder, not noise: CACM's judged documents rank high


def test_a_decoder_directory_is_not_a_baseline(tmp_path):
  (tmp_path / "modules.json").write_text("[]")
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
  assert not is_baseline_dir(tmp_path)
  assert not is_baseline_dir(tmp_path / "missing")
