"""`make demo`: the embedded default end to end on CPU, through the same commands a user types.

    rejax train  --config configs/tiny.py --workdir runs/demo     # tiny Qwen3 on the repo's fixture data
    rejax export --workdir runs/demo --output runs/demo/hf        # transformers + sentence-transformers
    rejax encode --model runs/demo/hf ...                         # a few queries and documents

Then prints what each query retrieves and where everything went. Running it again resumes (the run is
complete, so training is skipped) and re-exports.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTRUCTION = "Given a Biology post, retrieve relevant passages that help answer the post."
QUERIES = ["Why are insects attracted to artificial light at night?",
           "How do plants know which direction is up when they grow?"]
DOCUMENTS = [
    "Moths navigate by keeping a distant light source at a constant angle; a nearby lamp bends that path "
    "into a spiral.",
    "Plant cells sense gravity with starch-filled amyloplasts that settle to the bottom of the cell, which "
    "redirects auxin and bends the root downwards.",
    "Inflation is measured with a consumer price index over a basket of goods.",
    "Glaciers carve U-shaped valleys by plucking and abrading the bedrock beneath them.",
]


def rejax(*args: str) -> None:
  """Runs one `rejax` command as a user would, echoing it."""
  print("\n$ rejax " + shlex.join(args), flush=True)
  subprocess.run([sys.executable, "-m", "rejax.cli", *args], check=True, cwd=ROOT)


def encode(model: pathlib.Path, texts: list[str], out: pathlib.Path, *extra: str) -> np.ndarray:
  jsonl = out.with_suffix(".jsonl")
  jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  rejax("encode", "--model", str(model), "--input", str(jsonl), "--output", str(out), "--max-length", "64",
        "--batch-size", "8", *extra)
  return np.load(out)


def main() -> None:
  workdir = ROOT / "runs" / "demo"
  export = workdir / "hf"
  rejax("train", "--config", "configs/tiny.py", "--workdir", str(workdir), "--config.export_dir=")
  rejax("export", "--workdir", str(workdir), "--output", str(export))
  queries = encode(export, QUERIES, workdir / "queries.npy", "--instruction", INSTRUCTION)
  documents = encode(export, DOCUMENTS, workdir / "documents.npy")

  scores = queries @ documents.T
  for query, row in zip(QUERIES, scores):
    print(f"\n{query}")
    for rank, doc in enumerate(np.argsort(-row)[:3], start=1):
      print(f"  {rank}. {row[doc]:.3f}  {DOCUMENTS[doc][:90]}")
  losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  print(f"\nloss: {losses[0]:.3f} at step 1 -> {losses[-1]:.3f} at step {len(losses)} (a 2-layer random model on "
        "56 records: it learns the fixture, not retrieval)")
  print(f"run:        {workdir}  (metrics.jsonl, tensorboard/, checkpoints/, config.json)")
  print(f"export:     {export}  (AutoModel / SentenceTransformer)")
  print(f"embeddings: {workdir}/{{queries,documents}}.npy")


if __name__ == "__main__":
  main()
