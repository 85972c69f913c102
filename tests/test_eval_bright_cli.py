"""`rejax eval --bright` end to end on the shipped examples and a tiny synthetic corpus: BM25 and a tiny dense
model in bfloat16; per-task metrics equal pytrec_eval on the written runs; the report compares both."""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import pytrec_eval

from rejax.cli import main
from tests.bright_fixture import make_bright_dir, read_examples
from tests.test_eval_cli import read_trec_run
from tests.test_metrics import TREC_MEASURES, _cut

TASKS = ("leetcode", "pony")


@pytest.fixture(scope="module")
def bright_dir(tmp_path_factory):
  return make_bright_dir(tmp_path_factory.mktemp("bright"), TASKS)


def check_task_against_trec_eval(task_results: dict, run_path: pathlib.Path, task: str) -> None:
  """The task's metrics equal pytrec_eval on its run file, with qrels and exclusions read straight from the examples."""
  rows = read_examples(task)
  qrels = {row["id"]: dict.fromkeys(row["gold_ids"], 1) for row in rows}
  run = read_trec_run(run_path)
  for row in rows:
    assert not set(run.get(row["id"], {})) & set(row["excluded_ids"]), row["id"]
  evaluator = pytrec_eval.RelevanceEvaluator(qrels, {*TREC_MEASURES.values(), "recip_rank"})
  full, cut10 = evaluator.evaluate(run), evaluator.evaluate(_cut(run, 10))
  for ours, theirs in TREC_MEASURES.items():
    if ours in task_results:
      want = sum(full.get(q, {}).get(theirs, 0.0) for q in qrels) / len(qrels)
      assert task_results[ours] == pytest.approx(want, abs=1e-9, rel=0), (task, ours)
  want = sum(cut10.get(q, {}).get("recip_rank", 0.0) for q in qrels) / len(qrels)
  assert task_results["mrr@10"] == pytest.approx(want, abs=1e-9, rel=0), (task, "mrr@10")


def check_benchmark_outputs(results_path: pathlib.Path) -> dict:
  results = json.loads(results_path.read_text())
  assert results["tasks"] == list(TASKS)  # the paper's order, whatever order --tasks named them in
  for task in TASKS:
    check_task_against_trec_eval(results["per_task"][task], results_path.parent / "runs" / f"{task}.trec", task)
    assert results["per_task"][task]["instruction"].startswith("Given a")
  for name in ("ndcg@10", "recall@10", "recall@100", "map", "mrr@10"):
    mean = math.fsum(results["per_task"][t][name] for t in TASKS) / len(TASKS)
    assert results[name] == results["average"][name] == pytest.approx(mean, abs=1e-12)
  table = results_path.with_suffix(".md").read_text().splitlines()
  assert "| metric | leetcode | pony | Average |" in table
  assert any(line.startswith("| nDCG@10 |") for line in table)
  return results


def check_report_row(results_dir: pathlib.Path, label: str, results: dict) -> None:
  """The eval refreshed the report of results/bright: a row for the model ending in its average, and a PNG."""
  table = (results_dir / "table.md").read_text()
  assert "| model | leetcode | pony | Average |" in table
  row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
  assert row.endswith(f" {100 * results['ndcg@10']:.1f} |")
  assert (results_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bright_bm25(bright_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the default output: results/bright/{model}/RESULTS.json
  main(["eval", "--model", "bm25", "--bright", str(bright_dir), "--tasks", "pony,leetcode"])
  results = check_benchmark_outputs(tmp_path / "results" / "bright" / "bm25" / "RESULTS.json")
  # Gold docs rank once a query's excluded docs are gone (other queries' excluded docs still compete).
  assert results["per_task"]["leetcode"]["ndcg@10"] > 0.2
  check_report_row(tmp_path / "results" / "bright", "bm25", results)


def test_bright_tiny_model_in_bfloat16(bright_dir, tiny_model_factory, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  model_dir, _ = tiny_model_factory("qwen3_untied")
  main(["eval", "--model", str(model_dir), "--bright", str(bright_dir), "--tasks", "leetcode,pony",
        "--dtype", "bfloat16", "--max-length", "32", "--batch-size", "128", "--cache-dir", str(tmp_path / "cache")])
  results = check_benchmark_outputs(tmp_path / "results" / "bright" / model_dir.name / "RESULTS.json")
  pony_gold = {d for row in read_examples("pony") for d in row["gold_ids"]}
  assert results["per_task"]["pony"]["num_docs"] == len(pony_gold) + 60  # the synthetic corpus: gold + fillers
  check_report_row(tmp_path / "results" / "bright", model_dir.name, results)


def test_report_over_a_directory(tmp_path):
  for name, value in (("a", 0.25), ("b", 0.5)):
    (tmp_path / name).mkdir()
    per_task = {t: {"ndcg@10": value} for t in TASKS}
    (tmp_path / name / "RESULTS.json").write_text(json.dumps(
        {"benchmark": "BRIGHT", "model": name, "tasks": list(TASKS), "per_task": per_task,
         "average": {"ndcg@10": value}}))
  (tmp_path / "cacm").mkdir()
  (tmp_path / "cacm" / "RESULTS.json").write_text(json.dumps({"dataset": "cacm", "model": "bm25", "ndcg@10": 0.4}))
  main(["eval", "--report", str(tmp_path)])
  assert (tmp_path / "table.md").read_text().splitlines()[2:] == [
      "| model | leetcode | pony | cacm | Average |", "|:---|---:|---:|---:|---:|",
      "| a | 25.0 | 25.0 | - | 25.0 |", "| b | 50.0 | 50.0 | - | 50.0 |", "| cacm | - | - | 40.0 | - |"]
  assert (tmp_path / "chart.png").stat().st_size > 1000


def test_benchmark_argument_errors(bright_dir, tmp_path, capsys):
  with pytest.raises(SystemExit, match="unknown BRIGHT task"):
    main(["eval", "--model", "bm25", "--bright", str(bright_dir), "--tasks", "pony,biolgy",
          "--output", str(tmp_path / "R.json")])
  with pytest.raises(SystemExit, match="--dataset needs --output"):
    main(["eval", "--model", "bm25", "--dataset", str(tmp_path)])
  with pytest.raises(SystemExit, match="--bright needs --model"):
    main(["eval", "--bright", str(bright_dir)])
  with pytest.raises(SystemExit, match="--run-out applies to --dataset only"):
    main(["eval", "--model", "bm25", "--bright", str(bright_dir), "--run-out", str(tmp_path / "x.trec")])
  with pytest.raises(SystemExit):  # argparse: one source at a time
    main(["eval", "--model", "bm25", "--bright", str(bright_dir), "--dataset", str(tmp_path)])
  with pytest.raises(SystemExit, match="no RESULTS.json"):
    main(["eval", "--report", str(tmp_path)])
