"""`make demo`: the main job on a real model, through the commands a user types, on 2 CPU cores.

    rejax data pairs --corpus tests/fixtures/cacm/corpus.jsonl --output runs/demo/pairs   # title -> body pairs
    rejax train --config configs/smollm2.py --workdir runs/demo                          # SmolLM2-135M, LoRA
    rejax eval --model {base, runs/demo/export, bm25, all-MiniLM-L6-v2} --dataset tests/fixtures/cacm ...

then `runs/demo/report.md` (the table printed at the end) and `runs/demo/curve.png` (training loss and dev
nDCG@10 over the steps). The training data comes from the CACM documents only; CACM's queries and
judgments are the held-out test. Running it again resumes: finished steps are skipped, corpus embeddings of
unchanged models come from the cache.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shlex
import subprocess
import sys
import time

from rejax.eval.report import markdown_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACM = ROOT / "tests" / "fixtures" / "cacm"
WORKDIR = ROOT / "runs" / "demo"
COLUMNS = ("ndcg@10", "recall@100", "mrr@10")


def _recipe():
  """configs/smollm2.py as a module: the recipe, and the evaluation protocol it documents."""
  spec = importlib.util.spec_from_file_location("rejax_demo_recipe", ROOT / "configs" / "smollm2.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def rejax(*args: str) -> None:
  """Runs one `rejax` command as a user would, echoing it."""
  print("\n$ rejax " + shlex.join(args), flush=True)
  subprocess.run([sys.executable, "-m", "rejax.cli", *args], check=True, cwd=ROOT)


def evaluate(label: str, model: str, instruction: str | None, max_length: int, cache: pathlib.Path) -> dict:
  """RESULTS.json of `model` on CACM (written to runs/demo/cacm/{label}.json), evaluated if not there yet."""
  out = WORKDIR / "cacm" / f"{label}.json"
  if not out.is_file() or model.endswith("export"):  # the export changes when training resumes; re-score it
    rejax("eval", "--model", model, "--dataset", str(CACM), "--output", str(out), "--max-length", str(max_length),
          "--cache-dir", str(cache), *(["--instruction", instruction] if instruction else []))
  return json.loads(out.read_text())


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
  ax.set_ylabel("InfoNCE loss", color="tab:blue")
  dev = [(r["step"], r["eval/ndcg@10"]) for r in records if "eval/ndcg@10" in r]
  if base_dev is not None:
    dev = [(0, base_dev)] + dev
  right = ax.twinx()
  right.plot([s for s, _ in dev], [v for _, v in dev], "o-", color="tab:orange", label="dev nDCG@10")
  right.set_ylabel("dev nDCG@10 (held-out CACM titles)", color="tab:orange")
  right.set_ylim(0, 1)
  ax.set_title("SmolLM2-135M-Instruct + LoRA on CACM title -> body pairs")
  fig.tight_layout()
  fig.savefig(path)


def report(rows: dict[str, dict], minutes: float, recipe) -> str:
  """report.md: what ran, the table, and how to read it."""
  header = ["model (CACM, 52 judged queries)", "nDCG@10", "recall@100", "MRR@10"]
  table = markdown_table(header, [[name] + [f"{r[c]:.4f}" for c in COLUMNS] for name, r in rows.items()])
  return (f"# make demo: does it learn?\n\n{table}\n"
          f"Training: `rejax train --config configs/smollm2.py` ({recipe.SUMMARY}). Evaluation: the CACM test "
          f"collection (3,204 documents, title + text, at most {recipe.EVAL_MAX_LENGTH} tokens each; exact inner-"
          "product search), queries with the instruction "
          f"`{recipe.INSTRUCTION}` for the SmolLM2 models, none for all-MiniLM-L6-v2 (its own protocol). BM25 is "
          f"bm25s over the full text. The training never saw a CACM query or judgment.\n\n"
          f"Wall time of this demo: {minutes:.1f} minutes. Curve: curve.png (training loss, dev nDCG@10).\n")


def main() -> None:
  recipe = _recipe()
  start = time.perf_counter()
  cache = ROOT / ".cache" / "embeddings"
  pairs = WORKDIR / "pairs"
  print(f"== 1/4 training data: CACM titles -> bodies, BM25 hard negatives, a held-out dev set ({pairs})", flush=True)
  if not (pairs / "pairs.json").is_file():
    rejax("data", "pairs", "--corpus", str(CACM / "corpus.jsonl"), "--output", str(pairs))

  print("\n== 2/4 train SmolLM2-135M-Instruct with LoRA (dev nDCG@10 logged during training)", flush=True)
  rejax("train", "--config", str(ROOT / "configs" / "smollm2.py"), "--workdir", str(WORKDIR))

  print("\n== 3/4 evaluate on CACM: the untrained base, the trained export, BM25, all-MiniLM-L6-v2", flush=True)
  base = str(_asset_dir("smollm2"))
  rows = {"SmolLM2-135M-Instruct, untrained": evaluate("base", base, recipe.INSTRUCTION, recipe.EVAL_MAX_LENGTH, cache),
          "SmolLM2-135M-Instruct + rejax LoRA": evaluate("trained", str(WORKDIR / "export"), recipe.INSTRUCTION,
                                                         recipe.EVAL_MAX_LENGTH, cache),
          "BM25 (bm25s)": evaluate("bm25", "bm25", None, recipe.EVAL_MAX_LENGTH, cache)}
  minilm = _asset_dir("all-minilm-l6-v2", required=False)
  if minilm is not None:
    rows["all-MiniLM-L6-v2"] = evaluate("all-minilm-l6-v2", str(minilm), None, recipe.EVAL_MAX_LENGTH, cache)

  print("\n== 4/4 report", flush=True)
  base_dev = _base_dev_ndcg(base, recipe, cache)
  draw_curve(WORKDIR / "metrics.jsonl", base_dev, WORKDIR / "curve.png")
  text = report(rows, (time.perf_counter() - start) / 60, recipe)
  (WORKDIR / "report.md").write_text(text)
  print("\n" + text)
  print(f"run: {WORKDIR} (metrics.jsonl, tensorboard/, checkpoints/)\nexport: {WORKDIR / 'export'} "
        f"(AutoModel / SentenceTransformer)\nreport: {WORKDIR / 'report.md'}, {WORKDIR / 'curve.png'}")


def _base_dev_ndcg(base: str, recipe, cache: pathlib.Path) -> float | None:
  """The untrained model's dev nDCG@10 (the curve's step 0), from `rejax eval` on the dev set."""
  out = WORKDIR / "pairs" / "base-dev.json"
  if not out.is_file():
    rejax("eval", "--model", base, "--dataset", str(WORKDIR / "pairs" / "dev"), "--output", str(out),
          "--max-length", str(recipe.EVAL_MAX_LENGTH), "--cache-dir", str(cache), "--instruction", recipe.INSTRUCTION)
  return json.loads(out.read_text())["ndcg@10"]


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
