"""Contamination check on real BRIGHT example queries (tests/fixtures/bright) vs a synthetic set."""

from __future__ import annotations

import collections
import gzip
import json
import pathlib

import numpy as np

from synth.contamination import check, max_similarity, tokens

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CACM = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "cacm"
BRIGHT = [FIXTURES / "bright" / "examples" / f"{task}.jsonl.gz" for task in ("pony", "theoremqa_theorems")]


def bright_queries() -> list[str]:
  return [json.loads(line)["query"] for path in BRIGHT for line in gzip.open(path, "rt", encoding="utf-8")]


def weighted_jaccard(a: str, b: str) -> float:
  """The reference: sum of min over sum of max of two bags of words."""
  ca, cb = collections.Counter(tokens(a)), collections.Counter(tokens(b))
  union = sum((ca | cb).values())
  return sum((ca & cb).values()) / union if union else 0.0


def synthetic_set(evaluation: list[str]) -> list[str]:
  """Three copies of evaluation queries, two edits of them, and the CACM topics (unrelated)."""
  cacm = [json.loads(line)["text"] for line in open(CACM / "queries.jsonl", encoding="utf-8")]
  words = evaluation[5].split()
  edited = [" ".join(words[: len(words) // 2]), evaluation[130].upper()]  # half of one; one upper-cased
  return [evaluation[0], evaluation[100], evaluation[150], *edited, *cacm[:30]]


def test_max_similarity_equals_the_pairwise_reference():
  evaluation = bright_queries()
  synthetic = synthetic_set(evaluation) + ["", "the the the"]
  best, arg = max_similarity(synthetic, evaluation)
  for i, text in enumerate(synthetic):
    pairwise = np.array([weighted_jaccard(text, e) for e in evaluation])
    assert best[i] == pairwise.max()
    assert pairwise[arg[i]] == pairwise.max()
  assert best[:3].tolist() == [1.0, 1.0, 1.0] and arg[:3].tolist() == [0, 100, 150]
  assert best[4] == 1.0  # case does not matter


def test_check_writes_summary_and_histogram(tmp_path):
  evaluation = bright_queries()
  assert len(evaluation) == 112 + 76
  synthetic = tmp_path / "synthetic-formatted.jsonl"
  synthetic.write_text("".join(json.dumps({"query": q}) + "\n" for q in synthetic_set(evaluation)))
  summary = check([str(synthetic)], [str(p) for p in BRIGHT], tmp_path / "out")
  assert summary["n_synthetic"] == 35 and summary["n_eval"] == 188
  assert summary["at_least"]["0.95"] == 3 + 1  # the copies and the upper-cased one
  assert 0.3 < summary["closest"][4]["similarity"] < 0.8  # the half query
  assert summary["closest"][0]["synthetic"] == summary["closest"][0]["eval"]
  cacm_best = max_similarity(synthetic_set(evaluation)[5:], evaluation)[0]
  assert cacm_best.max() < 0.3  # unrelated queries stay far from BRIGHT's
  assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
  png = (tmp_path / "out" / "histogram.png").read_bytes()
  assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
