"""What `rejax eval` does with its arguments: one BEIR dataset, a benchmark (rejax.eval.benchmarks), or a report.

    --dataset DIR --output RESULTS.json [--run-out RUN.trec]    one dataset
    --BENCHMARK DIR|HUB_ID [--tasks a,b] [--output ...]         its tasks (or those named), paper order:
                                                                --bright DIR|xlangai/BRIGHT, --r2med DIR|R2MED
    --report DIR                                                table.md + chart.png of the models in DIR

A benchmark's output defaults to `results/{benchmark}/{model name}/RESULTS.json`; the report of
`results/{benchmark}/` is then refreshed, so every model evaluated there is compared in one chart.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Callable

from rejax.eval.benchmark import run_benchmark
from rejax.eval.benchmarks import BENCHMARKS, DATASET, benchmark_options, flags_taking, in_words
from rejax.eval.metrics import write_trec_run
from rejax.eval.report import write_report
from rejax.eval.retrieve import run_model
from rejax.io import write_text_atomic
from rejax.rows import check_output_file

REPORT = "report"


def eval_mode(args: argparse.Namespace) -> str:
  """Which of "dataset", a benchmark's name (rejax.eval.benchmarks.BENCHMARKS) or "report" the arguments ask for;
  a flag that does not apply to it, or one it needs and lacks, raises ValueError."""
  mode = next(m for m in (DATASET.name, *BENCHMARKS, REPORT) if getattr(args, m) is not None)
  if mode != REPORT and not args.model:
    raise ValueError(f"--{mode} needs --model (a model directory, a hub id, or bm25)")
  if mode == DATASET.name and args.output is None:
    raise ValueError(f"--{DATASET.name} needs --output RESULTS.json")
  if args.tasks and mode not in BENCHMARKS:
    raise ValueError(f"--tasks applies to {in_words([b.flag for b in BENCHMARKS.values()])} only")
  if args.run_out and mode != DATASET.name:
    raise ValueError(f"--run-out applies to --{DATASET.name} only; a benchmark writes runs/{{task}}.trec beside "
                     "RESULTS.json")
  if getattr(args, "dim", None) and args.model == "bm25":
    raise ValueError("--dim applies to a dense model (a Matryoshka prefix of its embeddings), not bm25")
  if args.split != "test" and mode != DATASET.name:
    raise ValueError(f"--split applies to --{DATASET.name} only")
  for option in benchmark_options().values():
    owners = flags_taking(option.name)
    if getattr(args, option.name) and f"--{mode}" not in owners:
      raise ValueError(f"{option.flag} applies to {in_words(owners)} only")
  return mode


def model_name(model: str) -> str:
  """A folder name for a model argument: `bm25`, a directory's name, or a hub id's name."""
  return pathlib.Path(str(model).rstrip("/")).name or "model"


def requested_tasks(tasks: str | None) -> list[str] | None:
  """The task names of a --tasks value (`a,b`); None when absent (every task)."""
  return [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None


def run_eval(args: argparse.Namespace, make_encoder: Callable[[argparse.Namespace], object]) -> None:
  """Run the evaluation the arguments describe and write its outputs."""
  mode = eval_mode(args)
  check_output_file(args.output, "--output")
  check_output_file(args.run_out, "--run-out")
  if mode == REPORT:
    table, chart = write_report(args.report)
    print(f"wrote {table} and {chart}", file=sys.stderr)
    return
  if args.max_length is None:
    args.max_length = (DATASET if mode == DATASET.name else BENCHMARKS[mode]).max_length
  if mode == DATASET.name:
    dataset = DATASET.load(getattr(args, DATASET.name), split=args.split)  # before the model: bad data fails first
    _eval_dataset(args, dataset, None if args.model == "bm25" else make_encoder(args))
    return
  benchmark = BENCHMARKS[mode]
  options = {option.name: getattr(args, option.name) for option in benchmark.options}
  tasks = benchmark.check_tasks(requested_tasks(args.tasks))  # before the model: a bad task or directory fails first
  load_task = benchmark.task_loader(getattr(args, mode), tasks, instruction=args.instruction, **options)
  encoder = None if args.model == "bm25" else make_encoder(args)
  default_output = args.output is None
  if default_output:
    args.output = pathlib.Path("results") / mode / model_name(args.model) / "RESULTS.json"
  run_benchmark(benchmark.results_name(options), tasks, load_task, args.model, encoder, output=args.output,
                k=args.top_k, index_kind=args.index, cache_dir=args.cache_dir)
  print(f"wrote {args.output}, {args.output.with_suffix('.md')} and {args.output.parent / 'runs'}/",
        file=sys.stderr)
  if default_output:
    table, chart = write_report(args.output.parent.parent)
    print(f"wrote {table} and {chart}", file=sys.stderr)


def _eval_dataset(args: argparse.Namespace, dataset, encoder) -> None:
  dataset.instruction = args.instruction
  run, results = run_model(dataset, args.model, encoder, k=args.top_k, index_kind=args.index,
                           cache_dir=args.cache_dir)
  write_text_atomic(args.output, json.dumps(results, indent=2) + "\n", what="results")
  if args.run_out:
    write_trec_run(run, args.run_out, tag="rejax" if args.model != "bm25" else "bm25", k=args.top_k)
  print(f"wrote {args.output}" + (f" and {args.run_out}" if args.run_out else ""), file=sys.stderr)
