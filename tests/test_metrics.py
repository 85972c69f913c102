"""rejax.eval.metrics equals pytrec_eval (trec_eval 9) to 1e-9, per query and in the mean, on random
runs full of edge cases and on a real BM25 run over the CACM fixture."""

from __future__ import annotations

import functools
import json
import pathlib
import random

import numpy as np
import pytest
import pytrec_eval

from rejax.eval.metrics import evaluate, rank_docs, remove_excluded, write_trec_run

REPO = pathlib.Path(__file__).resolve().parents[1]
CACM = REPO / "sample_data" / "cacm"
TOL = 1e-9
KS = (10, 100)
# Our name -> trec_eval measure. mrr@k has none: trec_eval's recip_rank has no cutoff (see reference below).
TREC_MEASURES = {"ndcg@10": "ndcg_cut_10", "ndcg@100": "ndcg_cut_100", "recall@10": "recall_10",
                 "recall@100": "recall_100", "map": "map"}
NAMES = (*TREC_MEASURES, "mrr@10", "mrr@100")


def _trec_eval_order(a: tuple[str, float], b: tuple[str, float]) -> int:
  """trec_eval's comp_sim_docno (form_res_rels.c): sim descending, then strcmp(docno2, docno1)."""
  (doc_a, sim_a), (doc_b, sim_b) = a, b
  if sim_a != sim_b:
    return -1 if sim_a > sim_b else 1
  return (doc_b > doc_a) - (doc_b < doc_a)


def _cut(run, k):
  return {qid: dict(sorted(scores.items(), key=functools.cmp_to_key(_trec_eval_order))[:k])
          for qid, scores in run.items()}


def trec_eval_reference(run, qrels) -> dict[str, dict[str, float]]:
  """pytrec_eval's per-query values under our names, for every query with judgments (absent: 0, as trec_eval -c)."""
  evaluator = pytrec_eval.RelevanceEvaluator(qrels, {*TREC_MEASURES.values(), "recip_rank"})
  full = evaluator.evaluate(run)
  # trec_eval only reports queries that are both judged and in the run (an empty ranking counts as in it).
  assert full.keys() == {q for q in run if qrels.get(q)}
  cut = {k: evaluator.evaluate(_cut(run, k)) for k in KS}
  reference = {}
  for qid in (q for q, judged in qrels.items() if judged):
    if qid not in full:
      reference[qid] = dict.fromkeys(NAMES, 0.0)
      continue
    reference[qid] = {name: full[qid][measure] for name, measure in TREC_MEASURES.items()}
    for k in KS:
      reference[qid][f"mrr@{k}"] = cut[k][qid]["recip_rank"]
      # The same from the uncut run: the first relevant doc is in the top k iff 1/rank >= 1/k.
      rr = full[qid]["recip_rank"]
      assert cut[k][qid]["recip_rank"] == (rr if rr * k >= 1 - 1e-12 else 0.0)
  return reference


def assert_matches_trec_eval(run, qrels) -> dict:
  ours = evaluate(run, qrels, ks=KS)
  reference = trec_eval_reference(run, qrels)
  assert ours["per_query"].keys() == reference.keys()
  assert ours["num_queries"] == len(reference)
  for qid, values in reference.items():
    assert ours["per_query"][qid] == pytest.approx(values, abs=TOL, rel=0), qid
  for name in NAMES:
    assert ours[name] == pytest.approx(np.mean([v[name] for v in reference.values()]), abs=TOL, rel=0), name
  return ours


def random_case(seed: int):
  """Graded qrels (negative and all-zero ones too) and a run with many tied scores, empty and missing queries."""
  rng = random.Random(seed)
  # Mixed lengths, cases and a non-ASCII id, so that docid order (strcmp on UTF-8) matters in ties.
  pool = [f"d{i}" for i in range(150)] + ["D", "d", "a-1", "zz", "\u00fc9", "\u00e9"]
  qrels, run = {}, {}
  for q in range(30):
    qid = f"q{q}"
    if q < 25:
      judged = rng.sample(pool, rng.randint(0, 20))
      qrels[qid] = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
    kind = rng.random()
    if kind < 0.1:
      continue  # the query is missing from the run
    docs = [] if kind < 0.2 else rng.sample(pool, rng.randint(1, len(pool)))
    coarse = rng.random() < 0.7
    run[qid] = {d: (rng.randint(-2, 4) / 2 if coarse else rng.gauss(0, 1)) for d in docs}
  qrels["q0"] = {"d1": 0, "d2": 0}  # judged, none relevant: evaluated, scores 0
  qrels["q1"] = {}  # no judgments: not a query of the qrels at all
  return run, qrels


@pytest.mark.parametrize("seed", range(25))
def test_random_runs_match_trec_eval(seed):
  assert_matches_trec_eval(*random_case(seed))


def test_ties_rank_by_docid_descending():
  assert rank_docs({"a": 1.0, "b": 1.0, "c": 2.0, "B": 1.0}) == ["c", "b", "a", "B"]
  qrels = {"q": {"a": 1}}
  ours = assert_matches_trec_eval({"q": {"a": 1.0, "b": 1.0}}, qrels)
  assert ours["per_query"]["q"]["mrr@10"] == 0.5  # "b" outranks the tied relevant "a"


def test_queries_without_relevant_docs_or_results_count_as_zero():
  qrels = {"hit": {"a": 1}, "no_relevant": {"a": 0}, "not_run": {"a": 1}}
  run = {"hit": {"a": 1.0}, "no_relevant": {"a": 1.0}, "not_judged": {"a": 1.0}}
  ours = assert_matches_trec_eval(run, qrels)
  assert ours["num_queries"] == 3
  assert ours["ndcg@10"] == pytest.approx(1 / 3)
  assert "not_judged" not in ours["per_query"]


def test_runs_are_not_cut_at_1000():
  run = {"q": {f"d{i:05d}": -float(i) for i in range(1500)}}
  ours = assert_matches_trec_eval(run, {"q": {"d01200": 1}})
  assert ours["map"] == pytest.approx(1 / 1201)


def test_removing_excluded_docs_equals_never_ranking_them():
  run, qrels = random_case(7)
  excluded = {}
  for qid, scores in run.items():
    ids = [f"x{qid}_{i}" for i in range(5)]
    excluded[qid] = set(ids)
    # Excluded docs take the top scores; some are even judged relevant, as a wrong gold id could be.
    top = max(scores.values(), default=0.0)
    polluted = {**scores, **{d: top + 1 + i for i, d in enumerate(ids)}}
    if qid in qrels:
      qrels[qid] = {**qrels[qid], ids[0]: 1}
    run[qid] = polluted
  clean = {qid: {d: s for d, s in scores.items() if d not in excluded[qid]} for qid, scores in run.items()}
  before = json.dumps(run, sort_keys=True)
  assert evaluate(remove_excluded(run, excluded), qrels) == evaluate(clean, qrels)
  assert evaluate(run, qrels) != evaluate(clean, qrels)
  assert json.dumps(run, sort_keys=True) == before  # the input is left as it was
  assert remove_excluded({"q": {"a": 1.0}}, {}) == {"q": {"a": 1.0}}


def test_trec_run_file_round_trips(tmp_path):
  run, qrels = random_case(3)
  run["q2"] = {"x": 1 / 3, "y": 1 / 3 + 1e-16, "z": np.float32(0.1)}  # repr keeps all these distinct
  path = tmp_path / "run.trec"
  write_trec_run(run, path, tag="bm25", k=100)
  lines = [line.split() for line in path.read_text().splitlines()]
  assert all(len(f) == 6 and f[1] == "Q0" and f[5] == "bm25" for f in lines)
  for qid in {f[0] for f in lines}:
    rows = [f for f in lines if f[0] == qid]
    assert [int(f[3]) for f in rows] == list(range(1, len(rows) + 1))
    assert [f[2] for f in rows] == rank_docs(run[qid])[:100]
  with path.open() as f:
    parsed = pytrec_eval.parse_run(f)
  assert evaluate(parsed, qrels, ks=(10,)) == evaluate(_cut(run, 100), qrels, ks=(10,))


def _read_beir(root: pathlib.Path):
  read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]
  corpus, queries = read(root / "corpus.jsonl"), read(root / "queries.jsonl")
  header, *rows = [line.split("\t") for line in (root / "qrels" / "test.tsv").read_text().splitlines()]
  assert header == ["query-id", "corpus-id", "score"]
  qrels = {}
  for qid, docid, score in rows:
    qrels.setdefault(qid, {})[docid] = int(score)
  return corpus, queries, qrels


def test_cacm_fixture_is_complete_beir():
  corpus, queries, qrels = _read_beir(CACM)
  assert len(corpus) == 3204 and len(queries) == 64 and len(qrels) == 52
  assert sum(map(len, qrels.values())) == 796
  assert all(row.keys() == {"_id", "title", "text"} and row["title"] for row in corpus)
  docids, qids = {row["_id"] for row in corpus}, {row["_id"] for row in queries}
  assert len(docids) == 3204 and qrels.keys() <= qids
  assert {d for judged in qrels.values() for d in judged} <= docids


@pytest.fixture(scope="module")
def cacm_bm25():
  """A real BM25 run on CACM (bm25s, English stopwords, no stemming), top 1000 per query, and its qrels."""
  bm25s = pytest.importorskip("bm25s")
  corpus, queries, qrels = _read_beir(CACM)
  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize([f"{row['title']}\n{row['text']}" for row in corpus], stopwords="en",
                                 show_progress=False), show_progress=False)
  query_tokens = bm25s.tokenize([row["text"] for row in queries], stopwords="en", return_ids=False,
                                show_progress=False)
  doc_idx, scores = retriever.retrieve(query_tokens, k=1000, show_progress=False, n_threads=1)
  run = {q["_id"]: {corpus[i]["_id"]: float(s) for i, s in zip(idx, sc)}
         for q, idx, sc in zip(queries, doc_idx, scores)}
  return run, qrels


def test_bm25_run_on_cacm_matches_trec_eval(cacm_bm25):
  run, qrels = cacm_bm25
  assert all(len(scores) == 1000 for scores in run.values())
  ours = assert_matches_trec_eval(run, qrels)
  assert ours["num_queries"] == 52
  assert 0.25 < ours["ndcg@10"] < 0.6  # a working BM25; near 0 would mean ids that do not line up
