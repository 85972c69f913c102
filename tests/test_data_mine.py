"""`rejax data mine`: the window / margin / sampling rule against loops over a brute-force numpy ranking, the faiss
path against the same ranking of random embeddings, the command end to end with all-MiniLM-L6-v2 (and a
CrossEncoder) against sentence-transformers called here, bad inputs refused in one line before any model loads,
and its records taken by `rejax data convert`."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from rejax.cli import main
from rejax.data.records import parse_record
from rejax.data.text import format_query
from rejax.teacher.mine import MineSettings, bm25_candidates, dense_candidates, select
from rejax.teacher.mine_inputs import from_records, read_corpus
from rejax.teacher.window import candidate_mask, choose, query_rng
from tests.teacher_fixtures import small_collection, tiny_cross_encoder_dir, write_jsonl  # noqa: F401

SETTINGS = [
  MineSettings(range_min=0, range_max=10, negatives=3),
  MineSettings(range_min=2, range_max=25, negatives=4, absolute_margin=0.05, sampling="random", seed=7),
  MineSettings(range_min=1, range_max=30, negatives=5, relative_margin=0.1, max_score=0.4),
  MineSettings(range_min=0, range_max=40, negatives=6, absolute_margin=-0.1, relative_margin=0.02, max_score=0.9,
               sampling="random", seed=3),
]


def reference_negatives(scores_qn, excluded, positives, s: MineSettings) -> list[list[tuple[int, float]]]:
  """(document, score) of each query's negatives, best first, from the whole score matrix with plain loops."""
  out = []
  for q, row in enumerate(scores_qn):
    ranked = [int(n) for n in np.argsort(-row, kind="stable") if int(n) not in excluded[q]][: s.range_max]
    pos = min(row[p] for p in positives[q])
    kept = []
    for rank, n in enumerate(ranked):
      score = row[n]
      if rank < s.range_min:
        continue
      if s.absolute_margin is not None and score > pos - s.absolute_margin:
        continue
      if s.relative_margin is not None and score > pos - abs(pos) * s.relative_margin:
        continue
      if s.max_score is not None and score > s.max_score:
        continue
      kept.append(rank)
    if s.sampling == "random" and len(kept) > s.negatives:
      kept = sorted(query_rng(s.seed, q).choice(kept, size=s.negatives, replace=False))
    chosen = sorted(kept, key=lambda rank: -row[ranked[rank]])[: s.negatives]
    out.append([(ranked[rank], float(row[ranked[rank]])) for rank in chosen])
  return out


def test_candidate_mask_is_the_window_and_the_margins_below_the_lowest_positive():
  rng = np.random.default_rng(0)
  scores_qk = -np.sort(-rng.uniform(-1, 1, (30, 20)), axis=1)
  scores_qk[::4, 15:] = -np.inf  # queries with fewer hits than the window
  pos_q = rng.uniform(-1, 1, 30)
  for am, rm, ms in [(None, None, None), (0.1, None, None), (None, 0.2, None), (0.0, 0.05, 0.3)]:
    keep = candidate_mask(scores_qk, pos_q, range_min=3, absolute_margin=am, relative_margin=rm, max_score=ms)
    for q in range(30):
      for r in range(20):
        s, p = scores_qk[q, r], pos_q[q]
        expected = (r >= 3 and np.isfinite(s) and (am is None or s <= p - am)
                    and (rm is None or s <= p - abs(p) * rm) and (ms is None or s <= ms))
        assert keep[q, r] == expected, (am, rm, ms, q, r)


def test_choose_takes_the_best_or_a_seeded_draw_of_the_kept_candidates_best_first():
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
  keep = np.array([False, True, True, False, True, True, True])
  assert choose(scores, keep, 3, "top").tolist() == [1, 2, 4]
  drawn = choose(scores, keep, 3, "random", np.random.default_rng([5, 0]))
  assert drawn.tolist() == choose(scores, keep, 3, "random", np.random.default_rng([5, 0])).tolist()
  assert set(drawn) <= {1, 2, 4, 5, 6} and list(scores[drawn]) == sorted(scores[drawn], reverse=True)
  draws = {tuple(choose(scores, keep, 3, "random", np.random.default_rng([s, 0]))) for s in range(20)}
  assert len(draws) > 3  # seeds differ
  assert choose(scores, keep, 9, "random", np.random.default_rng(0)).tolist() == [1, 2, 4, 5, 6]  # all, when short


class RandomEmbeddings:
  """A bi-encoder whose embeddings are given: each text's row of a random unit matrix (the query's by its text)."""

  def __init__(self, model_dir, texts, queries, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(texts) + len(queries), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    self.rows = {t: emb[i] for i, t in enumerate(texts)}
    self.rows.update({("q", t): emb[len(texts) + i] for i, t in enumerate(queries)})
    self.model_dir, self.cache_settings = model_dir, {}

  def encode_documents(self, texts, *, progress=True):
    return np.stack([self.rows[t] for t in texts])

  def encode_queries(self, queries, instructions, *, progress=True):
    return np.stack([self.rows["q", t] for t in queries])


@pytest.mark.parametrize("settings", SETTINGS, ids=range(len(SETTINGS)))
def test_faiss_mining_of_random_embeddings_equals_brute_force_numpy(small_collection, tmp_path, settings):
  corpus = read_corpus(small_collection / "corpus.jsonl")
  queries = from_records(small_collection / "records", corpus)["cacm-formatted.jsonl"]
  scorer = RandomEmbeddings(tmp_path, corpus.texts, [q.record["query"] for q in queries])
  found = dense_candidates(scorer, corpus, queries, settings.range_max, progress=False)
  _, chosen = select(found, settings)

  doc_nd = scorer.encode_documents(corpus.texts).astype(np.float64)
  q_qd = scorer.encode_queries([q.record["query"] for q in queries], None).astype(np.float64)
  excluded = [{n for n, t in enumerate(corpus.texts) if t in q.record["pos"] or t == q.record["query"]}
              for q in queries]
  expected = reference_negatives(q_qd @ doc_nd.T, excluded, [q.positive_rows for q in queries], settings)
  assert any(expected) and sum(map(len, expected)) < settings.negatives * len(queries) or settings == SETTINGS[0]
  for q, cols in enumerate(chosen):
    assert found.rows_qk[q, cols].tolist() == [n for n, _ in expected[q]]
    np.testing.assert_allclose(found.scores_qk[q, cols], [s for _, s in expected[q]], atol=1e-5)


def lucene_bm25(documents: list[str], query: str, k1: float = 1.5, b: float = 0.75) -> np.ndarray:
  """BM25 scores of every document for `query` by Lucene's formula (bm25s's default method), written from the
  formula over bm25s's tokens (English stopwords): idf = ln(1 + (N - df + 0.5) / (df + 0.5)), each query token
  occurrence adding idf x tf / (tf + k1 (1 - b + b |d| / avgdl))."""
  import math
  from collections import Counter

  import bm25s

  tokens = bm25s.tokenize(documents, stopwords="en", return_ids=False, show_progress=False)
  counts = [Counter(d) for d in tokens]
  df = Counter(t for d in tokens for t in set(d))
  avgdl = sum(map(len, tokens)) / len(tokens)
  scores = np.zeros(len(documents))
  for t in bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]:
    idf = math.log(1 + (len(tokens) - df[t] + 0.5) / (df[t] + 0.5))
    for n, tf in enumerate(counts):
      if tf[t]:
        scores[n] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(tokens[n]) / avgdl))
  return scores


BM25_SETTINGS = [
  MineSettings(range_min=0, range_max=10, negatives=3),
  MineSettings(range_min=1, range_max=30, negatives=4, absolute_margin=1.0, sampling="random", seed=5),
  MineSettings(range_min=0, range_max=15, negatives=6, relative_margin=0.8, max_score=2.0),
]


@pytest.mark.parametrize("settings", BM25_SETTINGS, ids=range(len(BM25_SETTINGS)))
def test_bm25_mining_equals_the_lucene_formula_in_numpy(small_collection, settings):
  corpus = read_corpus(small_collection / "corpus.jsonl")
  queries = from_records(small_collection / "records", corpus)["cacm-formatted.jsonl"]
  found = bm25_candidates(corpus, queries, settings.range_max, progress=False)
  _, chosen = select(found, settings)

  scores_qn = np.stack([lucene_bm25(corpus.texts, q.record["query"]) for q in queries])
  excluded = [{n for n, t in enumerate(corpus.texts) if t in q.record["pos"] or t == q.record["query"]}
              for q in queries]
  expected = reference_negatives(scores_qn, excluded, [q.positive_rows for q in queries], settings)
  assert sum(map(len, expected)) > len(queries)
  for q, cols in enumerate(chosen):  # documents sharing no word with the query tie at 0: corpus order, as argsort's
    assert found.rows_qk[q, cols].tolist() == [n for n, _ in expected[q]]
    np.testing.assert_allclose(found.scores_qk[q, cols], [s for _, s in expected[q]], rtol=1e-5, atol=1e-6)


def _mine(*flags):
  main(["data", "mine", *map(str, flags)])


def _records(directory: pathlib.Path, name="cacm-formatted.jsonl") -> list[dict]:
  path = directory / name
  return [parse_record(line, f"{path}:{n}") for n, line in enumerate(path.read_text().splitlines(), 1)]


def test_mine_with_minilm_equals_sentence_transformers_and_numpy(small_collection, minilm_dir, tmp_path):
  from sentence_transformers import SentenceTransformer

  out = tmp_path / "mined"
  _mine("--model", minilm_dir, "--corpus", small_collection / "corpus.jsonl", "--input",
        small_collection / "records", "--output", out, "--range-min", 1, "--range-max", 30, "--negatives", 4,
        "--sampling", "random", "--seed", 11, "--relative-margin", 0.05, "--include-scores", "--cache-dir",
        tmp_path / "cache")
  corpus = read_corpus(small_collection / "corpus.jsonl")
  inputs = [json.loads(line) for line in (small_collection / "records" / "cacm-formatted.jsonl").open()]
  model = SentenceTransformer(str(minilm_dir), device="cpu")
  doc_nd = model.encode(corpus.texts, normalize_embeddings=True).astype(np.float64)
  q_qd = model.encode([format_query(r["query"], r["prompt"]) for r in inputs], normalize_embeddings=True)
  scores_qn = q_qd.astype(np.float64) @ doc_nd.T
  excluded = [{n for n, t in enumerate(corpus.texts) if t in r["pos"] or t == r["query"]} for r in inputs]
  positives = [[corpus.texts.index(p) for p in r["pos"]] for r in inputs]
  settings = MineSettings(range_min=1, range_max=30, negatives=4, sampling="random", seed=11, relative_margin=0.05)
  expected = reference_negatives(scores_qn, excluded, positives, settings)

  mined = _records(out)
  assert len(mined) == sum(1 for e in expected if e)
  by_source = {r["source_id"]: r for r in mined}
  for q, r in enumerate(inputs):
    if not expected[q]:
      assert r["source_id"] not in by_source
      continue
    got = by_source[r["source_id"]]
    assert got["neg"] == [corpus.texts[n] for n, _ in expected[q]]
    np.testing.assert_allclose(got["neg_scores"], [s for _, s in expected[q]], atol=1e-5)
    np.testing.assert_allclose(got["pos_scores"], [scores_qn[q, p] for p in positives[q]], atol=1e-5)
    assert {k: v for k, v in got.items() if k not in ("neg", "neg_scores", "pos_scores")} == \
        {k: v for k, v in r.items() if k not in ("neg", "neg_scores", "pos_scores")}
  summary = json.loads((out / "mine.json").read_text())
  assert summary["records"] == len(mined) and summary["negatives"] == 4 and summary["sampling"] == "random"


@pytest.mark.slow  # a minute on 2 busy cores: MiniLM and a CrossEncoder loaded twice (by the command and here)
def test_cross_encoder_rescoring_equals_cross_encoder_predict(small_collection, minilm_dir, tiny_cross_encoder_dir,
                                                              tmp_path):
  from sentence_transformers import CrossEncoder, SentenceTransformer

  out = tmp_path / "mined"
  _mine("--model", minilm_dir, "--cross-encoder", tiny_cross_encoder_dir, "--corpus", small_collection / "corpus.jsonl",
        "--input", small_collection / "records", "--output", out, "--range-min", 2, "--range-max", 12,
        "--negatives", 3, "--absolute-margin", 0.0, "--include-scores", "--cache-dir", tmp_path / "cache")
  corpus = read_corpus(small_collection / "corpus.jsonl")
  inputs = [json.loads(line) for line in (small_collection / "records" / "cacm-formatted.jsonl").open()]
  model = SentenceTransformer(str(minilm_dir), device="cpu")
  scores_qn = (model.encode([format_query(r["query"], r["prompt"]) for r in inputs], normalize_embeddings=True)
               @ model.encode(corpus.texts, normalize_embeddings=True).T)
  reranker = CrossEncoder(str(tiny_cross_encoder_dir), device="cpu")
  by_source = {r["source_id"]: r for r in _records(out)}
  assert by_source
  for q, r in enumerate(inputs):
    ranked = [int(n) for n in np.argsort(-scores_qn[q], kind="stable")
              if corpus.texts[n] not in r["pos"] and corpus.texts[n] != r["query"]][2:12]
    ce = reranker.predict([(r["query"], corpus.texts[n]) for n in ranked])
    pos = reranker.predict([(r["query"], p) for p in r["pos"]])
    kept = [(float(s), n) for s, n in zip(ce, ranked) if s <= pos.min()]
    expected = sorted(kept, key=lambda sn: -sn[0])[:3]
    if not expected:
      assert r["source_id"] not in by_source
      continue
    got = by_source[r["source_id"]]
    assert got["neg"] == [corpus.texts[n] for _, n in expected]
    np.testing.assert_allclose(got["neg_scores"], [s for s, _ in expected], atol=1e-5)
    np.testing.assert_allclose(got["pos_scores"], pos, atol=1e-5)


def test_bm25_mining_of_beir_queries_writes_records_that_rejax_data_convert_takes(tmp_path):
  from rejax.data.convert import convert

  cacm = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "cacm"
  out = tmp_path / "mined"
  _mine("--model", "bm25", "--corpus", cacm / "corpus.jsonl", "--input", cacm, "--split", "test", "--output", out,
        "--negatives", 5, "--range-min", 3)
  records = _records(out)
  corpus = read_corpus(cacm / "corpus.jsonl")
  for r in records:
    assert len(r["neg"]) == 5 and not set(r["neg"]) & set(r["pos"]) and "pos_scores" not in r
    assert all(n in corpus.rows_of_text for n in r["pos"] + r["neg"])
  manifest = convert([str(out / "cacm-formatted.jsonl")], tmp_path / "arrayrecord")
  assert manifest["records"] == len(records) == json.loads((out / "mine.json").read_text())["records"]


@pytest.mark.parametrize("case", ["qrels_doc", "positive", "empty_window", "negatives", "margin", "sampling",
                                  "titles"])
def test_bad_input_is_one_line_naming_file_and_line_or_flag_before_any_model_loads(case, small_collection, tmp_path,
                                                                                   capsys):
  corpus = small_collection / "corpus.jsonl"
  records = small_collection / "records"
  flags = ["--model", tmp_path / "no-such-model", "--corpus", corpus, "--input", records, "--output", tmp_path / "o"]
  if case == "qrels_doc":
    beir = tmp_path / "beir"
    write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "a query"}])
    (beir / "qrels").mkdir()
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tCACM-404404\t1\n")
    flags[5], expected = beir, f"{beir / 'qrels' / 'train.tsv'}:2: document 'CACM-404404' is not in {corpus}"
  elif case == "positive":
    bad = write_jsonl(tmp_path / "in" / "x-formatted.jsonl",
                      [json.loads((records / "cacm-formatted.jsonl").open().readline()),
                       {"prompt": "p", "query": "q", "pos": ["not a document"]}])
    flags[5], expected = bad, f"{bad}:2: positive 1 of 1 is not a document of {corpus}"
  elif case == "titles":
    body = json.loads(corpus.open().readline())["text"]
    bad = write_jsonl(tmp_path / "in" / "x-formatted.jsonl", [{"prompt": "p", "query": "q", "pos": [body]}])
    flags[5], expected = bad, "without its title: pass --no-titles"
  elif case == "empty_window":
    flags += ["--range-min", 5, "--range-max", 5]
    expected = "--range-min 5 is not below --range-max 5: the window of ranks [range-min, range-max) is empty"
  elif case == "negatives":
    flags += ["--range-min", 8, "--range-max", 10, "--negatives", 3]
    expected = "--negatives 3: the window [--range-min 8, --range-max 10) holds only 2 candidates"
  elif case == "margin":
    flags += ["--relative-margin", 1.5]
    expected = "--relative-margin 1.5: must be in [0, 1)"
  else:
    flags += ["--sampling", "best"]
    expected = "argument --sampling: invalid choice: 'best'"
  with pytest.raises(SystemExit) as exit_info:
    _mine(*flags)
  message = str(exit_info.value.code) if exit_info.value.code != 2 else capsys.readouterr().err.strip().splitlines()[-1]
  assert expected in message and "\n" not in message
  assert "no-such-model" not in message and not (tmp_path / "o").exists()


def test_a_hub_id_that_cannot_be_fetched_is_one_line(small_collection, tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    _mine("--model", "no-org/no-model", "--corpus", small_collection / "corpus.jsonl", "--input",
          small_collection / "records", "--output", tmp_path / "o")
  message = str(exit_info.value.code)
  assert message.startswith("rejax data mine: error: could not fetch 'no-org/no-model' from the Hugging Face hub")
  assert "Offline?" in message and "\n" not in message


@pytest.mark.slow
def test_records_mined_from_the_sample_data_train(tmp_path, minilm_dir):
  """The sample records' negatives mined again with MiniLM from a corpus of all their texts, then 2 steps of
  configs/tiny.py on them."""
  import os
  import subprocess
  import sys

  root = pathlib.Path(__file__).resolve().parent.parent
  texts = sorted({t for f in (root / "sample_data" / "reason_embed").glob("*.jsonl") for line in f.open()
                  for t in json.loads(line)["pos"] + json.loads(line)["neg"]})
  corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": str(i), "text": t} for i, t in enumerate(texts)])
  _mine("--model", minilm_dir, "--corpus", corpus, "--input", root / "sample_data" / "reason_embed", "--output",
        tmp_path / "mined", "--negatives", 8, "--range-min", 2, "--relative-margin", 0.05, "--include-scores",
        "--cache-dir", tmp_path / "cache")
  run = subprocess.run([sys.executable, "-m", "rejax.cli", "train", "--config", str(root / "configs" / "tiny.py"),
                        "--workdir", str(tmp_path / "run"), f"--config.data.path={tmp_path / 'mined'}",
                        "--config.total_steps=2", "--config.ckpt_every=2", "--config.export_dir="],
                       capture_output=True, text=True, cwd=root, timeout=900,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
  assert run.returncode == 0, run.stderr[-3000:]
  assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") >= 2


def test_records_to_be_mined_may_lack_negatives_but_nothing_else():
  """Mining inputs (positives only) pass `parse_record(..., negatives_required=False)`; what convert refuses
  otherwise is still refused, and negatives' scores without negatives are an error, not dropped."""
  from rejax.data.records import RecordError

  line = json.dumps({"prompt": "p", "query": "q", "pos": ["a"]})
  assert parse_record(line, "in.jsonl:1", negatives_required=False)["neg"] == []
  with pytest.raises(RecordError, match=r"^in.jsonl:1: missing field\(s\) neg$"):
    parse_record(line, "in.jsonl:1")
  empty = json.dumps({"prompt": "p", "query": "q", "pos": ["a"], "neg": []})
  assert parse_record(empty, "in.jsonl:2", negatives_required=False)["neg"] == []
  with pytest.raises(RecordError, match=r"^in.jsonl:2: `neg` is empty"):
    parse_record(empty, "in.jsonl:2")
  with pytest.raises(RecordError, match=r"^in.jsonl:3: `pos` is empty"):
    parse_record(json.dumps({"prompt": "p", "query": "q", "pos": []}), "in.jsonl:3", negatives_required=False)
  with pytest.raises(RecordError, match=r"^in.jsonl:4: `neg_scores` has 1 entries for 0 `neg`"):
    parse_record(json.dumps({"prompt": "p", "query": "q", "pos": ["a"], "neg_scores": [0.5]}), "in.jsonl:4",
                 negatives_required=False)
