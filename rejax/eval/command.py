"""What `rejax eval` does with its arguments: one BEIR dataset, a benchmark (BRIGHT, R2MED), or a report.

    --dataset DIR --output RESULTS.json [--run-out RUN.trec]    one dataset
    --bright DIR|xlangai/BRIGHT [--tasks a,b] [--output ...]    12 tasks (or those named), paper order
    --r2med DIR|R2MED [--tasks a,b] [--output ...]              8 tasks
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

from rejax.eval import bright, r2med
from rejax.eval.beir import load_beir
from rejax.eval.benchmark import run_benchmark
from rejax.eval.metrics import write_trec_run
from rejax.eval.report import write_report
from rejax.eval.retrieve import run_model
from rejax.io import write_text_atomic
from rejax.rows import check_output_file

# Max tokens per text when --max-length is not given (docs/method.md#protocol; BEIR datasets: the encode default).
PROTOCOL_MAX_LENGTH = {"bright": 8192, "r2med": 512, "dataset": 512}


def eval_mode(args: argparse.Namespace) -> str:
  """Which of "dataset", "bright", "r2med", "report" the arguments ask for; missing ones raise ValueError."""
  mode = next(m for m in ("dataset", "bright", "r2med", "report") if getattr(args, m) is not None)
  if mode != "report" and not args.model:
    raise ValueError(f"--{mode} needs --model (a model directory, a hub id, or bm25)")
  if mode == "dataset" and args.output is None:
    raise ValueError("--dataset needs --output RESULTS.json")
  if args.tasks and mode not in ("bright", "r2med"):
    raise ValueError("--tasks applies to --bright and --r2med only")
  if args.run_out and mode != "dataset":
    raise ValueError("--run-out applies to --dataset only; a benchmark writes runs/{task}.trec beside RESULTS.json")
  if args.split != "test" and mode != "dataset":
    raise ValueError("--split applies to --dataset only")
  if args.long_documents and mode != "bright":
    raise ValueError("--long-documents applies to --bright only")
  return mode


def model_name(model: str) -> str:
  """A folder name for a model argument: `bm25`, a directory's name, or a hub id's name."""
  return pathlib.Path(str(model).rstrip("/")).name or "model"


def run_eval(args: argparse.Namespace, make_encoder: Callable[[argparse.Namespace], object]) -> None:
  """Run the evaluation the arguments describe and write its outputs."""
  mode = eval_mode(args)
  check_output_file(args.output, "--output")
  check_output_file(args.run_out, "--run-out")
  if mode == "report":
    table, chart = write_report(args.report)
    print(f"wrote {table} and {chart}", file=sys.stderr)
    return
  if args.max_length is None:
    args.max_length = PROTOCOL_MAX_LENGTH[mode]
  if mode == "dataset":
    dataset = load_beir(args.dataset, split=args.split)  # before the model: bad data fails in a second
    _eval_dataset(args, dataset, None if args.model == "bm25" else make_encoder(args))
    return
  encoder = None if args.model == "bm25" else make_encoder(args)
  default_output = args.output is None
  if default_output:
    args.output = pathlib.Path("results") / mode / model_name(args.model) / "RESULTS.json"
  _eval_benchmark(mode, args, encoder)
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


def _eval_benchmark(mode: str, args: argparse.Namespace, encoder) -> None:
  requested = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
  if mode == "bright":
    tasks = bright.check_tasks(requested)
    root = bright.bright_root(args.bright, tasks, args.long_documents)
    load = lambda task: bright.load_bright_task(root, task, long_documents=args.long_documents,
                                                instruction=args.instruction)
    name = "BRIGHT (long documents)" if args.long_documents else "BRIGHT"
  else:
    tasks = bright.check_tasks(requested, r2med.TASKS, "R2MED")
    load = lambda task: r2med.load_r2med_task(args.r2med, task, instruction=args.instruction)
    name = "R2MED"
  run_benchmark(name, tasks, load, args.model, encoder, output=args.output, k=args.top_k, index_kind=args.index,
                cache_dir=args.cache_dir)
  print(f"wrote {args.output}, {args.output.with_suffix('.md')} and {args.output.parent / 'runs'}/",
        file=sys.stderr)
