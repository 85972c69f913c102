"""`rejax eval` on the real CACM collection: BM25 and a dense model, metrics checked by pytrec_eval."""

import json
import pathlib

import numpy as np
import pytest
import pytrec_eval

from rejax.cli import main
from rejax.eval.beir import load_beir, read_qrels
from rejax.eval.search import build_index, search
from tests.test_metrics import _cut

CACM = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "cacm"
MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100", "map": "map"}


def read_trec_run(path):
  run = {}
  for line in pathlib.Path(path).read_text().splitlines():
    qid, q0, docid, rank, score, tag = line.split()
    assert q0 == "Q0"
    run.setdefault(qid, {})[docid] = float(score)
  return run


def check_against_trec_eval(results_path, run_path):
  """Every metric of RESULTS.json equals pytrec_eval's on the written TREC run (queries without results count 0)."""
  results = json.loads(pathlib.Path(results_path).read_text())
  run = read_trec_run(run_path)
  qrels = read_qrels(CACM / "qrels" / "test.tsv")
  assert max(len(v) for v in run.values()) <= 1000
  evaluator = pytrec_eval.RelevanceEvaluator(qrels, {*MEASURES.values(), "recip_rank"})
  per_query = evaluator.evaluate(run)
  for ours, theirs in MEASURES.items():
    want = sum(per_query.get(q, {}).get(theirs, 0.0) for q in qrels) / len(qrels)
    assert abs(results[ours] - want) <= 1e-9, ours
  # mrr@10 is trec_eval's recip_rank on the run cut at 10 (trec_eval's order: score, then docid descending).
  cut10 = evaluator.evaluate(_cut(run, 10))
  want = sum(cut10.get(q, {}).get("recip_rank", 0.0) for q in qrels) / len(qrels)
  assert abs(results["mrr@10"] - want) <= 1e-9, "mrr@10"
  return results


def test_bm25_on_cacm(tmp_path):
  main(["eval", "--model", "bm25", "--dataset", str(CACM), "--output", str(tmp_path / "RESULTS.json"),
        "--run-out", str(tmp_path / "run.trec")])
  results = check_against_trec_eval(tmp_path / "RESULTS.json", tmp_path / "run.trec")
  assert 0.3 < results["ndcg@10"] < 0.7  # BM25 on CACM is a known-good baseline (~0.47 here)


def test_dense_model_on_cacm_with_embedding_cache(tiny_model_factory, tmp_path, capfd):
  model_dir, _ = tiny_model_factory("qwen3_untied")
  args = ["eval", "--model", str(model_dir), "--dataset", str(CACM), "--output", str(tmp_path / "RESULTS.json"),
          "--run-out", str(tmp_path / "run.trec"), "--max-length", "64", "--batch-size", "64",
          "--cache-dir", str(tmp_path / "cache"), "--instruction", "Given a query, retrieve relevant articles."]
  main(args)
  first = check_against_trec_eval(tmp_path / "RESULTS.json", tmp_path / "run.trec")
  assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
  capfd.readouterr()
  main(args)  # the corpus is not encoded again
  assert "cached embeddings" in capfd.readouterr().err
  assert json.loads((tmp_path / "RESULTS.json").read_text())["ndcg@10"] == first["ndcg@10"]


def test_excluded_ids_are_removed_before_the_top_k_cut():
  rng = np.random.default_rng(0)
  docs = rng.standard_normal((50, 8)).astype(np.float32)
  docs /= np.linalg.norm(docs, axis=1, keepdims=True)
  ids = [f"d{i}" for i in range(50)]
  query = docs[:1] * 0.9 + docs[1:2] * 0.1  # d0 then d1 at the top
  full = search(build_index(docs), ids, query, ["q"], k=50)["q"]
  top2 = list(full)[:2]
  got = search(build_index(docs), ids, query, ["q"], k=10, excluded={"q": set(top2)})["q"]
  assert list(got) == [d for d in full if d not in top2][:10]


def test_bad_qrels_line_is_named(tmp_path):
  (tmp_path / "qrels").mkdir()
  (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
  (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
  (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
  with pytest.raises(ValueError, match=r"test\.tsv:2: expected 'query-id corpus-id score'"):
    load_beir(tmp_path)
