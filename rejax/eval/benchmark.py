"""A benchmark of several tasks (an entry of rejax.eval.benchmarks): one retrieval run per task, metrics per task and
averaged.

Writes, next to RESULTS.json:
  RESULTS.md         metrics x tasks in the paper's order, with an Average column (x100, as in the paper)
  runs/{task}.trec   the TREC run of each task
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Callable, Sequence

from rejax.eval.beir import RetrievalDataset
from rejax.eval.metrics import write_trec_run
from rejax.eval.report import markdown_table
from rejax.eval.retrieve import run_model
from rejax.io import write_text_atomic

METRICS = {"ndcg@10": "nDCG@10", "recall@10": "Recall@10", "recall@100": "Recall@100", "map": "MAP",
           "mrr@10": "MRR@10"}


def check_tasks(tasks: Sequence[str] | None, known: Sequence[str], benchmark: str) -> list[str]:
  """`tasks` (all of `known` when None) in the paper's order; an unknown name raises ValueError naming it and the
  tasks of `benchmark`."""
  if tasks is None:
    return list(known)
  unknown = [t for t in tasks if t not in known]
  if unknown:
    raise ValueError(f"unknown {benchmark} task(s) {', '.join(unknown)}; the tasks are {', '.join(known)}")
  return [t for t in known if t in tasks]


def average_over_tasks(per_task: dict[str, dict]) -> dict[str, float]:
  """The unweighted mean of each metric over the tasks, as BRIGHT averages (docs/method.md#metrics)."""
  return {m: math.fsum(r[m] for r in per_task.values()) / len(per_task) for m in METRICS}


def results_table(results: dict) -> str:
  """Markdown: one row per metric, one column per task in order, then Average; values x100."""
  tasks = results["tasks"]
  rows = [[label, *(f"{100 * results['per_task'][t][m]:.1f}" for t in tasks), f"{100 * results['average'][m]:.1f}"]
          for m, label in METRICS.items()]
  title = f"{results['benchmark']}: {results['model']}\n\n"
  return title + markdown_table(["metric", *tasks, "Average"], rows)


def run_benchmark(benchmark: str, tasks: Sequence[str], load_task: Callable[[str], RetrievalDataset], model: str,
                  encoder=None, *, output: pathlib.Path, k: int = 1000, index_kind: str = "flat",
                  cache_dir: pathlib.Path | None = None) -> dict:
  """RESULTS.json's content for `model` on `tasks`, each loaded by `load_task` only when its turn comes
  (corpora can be large); also writes RESULTS.json, RESULTS.md and runs/{task}.trec beside `output`."""
  output = pathlib.Path(output)
  per_task, runs = {}, {}
  for task in tasks:
    dataset = load_task(task)
    runs[task], per_task[task] = run_model(dataset, model, encoder, k=k, index_kind=index_kind, cache_dir=cache_dir)
  # Written once every task has run: a task that fails to load leaves the previous outputs as they were.
  (output.parent / "runs").mkdir(parents=True, exist_ok=True)
  for task, run in runs.items():
    write_trec_run(run, output.parent / "runs" / f"{task}.trec", tag="bm25" if model == "bm25" else "rejax", k=k)
  average = average_over_tasks(per_task)
  results = {"benchmark": benchmark, "model": model, "tasks": list(tasks), **average, "average": average,
             "per_task": per_task}
  write_text_atomic(output, json.dumps(results, indent=2) + "\n", what="results")
  write_text_atomic(output.with_suffix(".md"), results_table(results), what="results table")
  print(f"{benchmark} average over {len(tasks)} tasks: nDCG@10 {average['ndcg@10']:.4f}", file=sys.stderr)
  return results
