"""`make demo`: the embedded default end to end on CPU: fetch SmolLM2-135M, `rejax encode` queries and
documents through the command line, and print what each query retrieves."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np

from rejax import assets

INSTRUCTION = "Given a question, retrieve passages that answer it."
QUERIES = ["How do plants turn sunlight into energy?", "What sorting algorithm runs in n log n time?"]
DOCUMENTS = [
    "Photosynthesis converts light energy into chemical energy stored in glucose inside chloroplasts.",
    "Merge sort divides the list in halves, sorts each recursively and merges them in O(n log n).",
    "The French Revolution began in 1789 with the storming of the Bastille.",
    "Chlorophyll absorbs red and blue light, which drives the light-dependent reactions.",
    "Quicksort picks a pivot and partitions the array; its average running time is O(n log n).",
    "Mount Everest is the highest mountain above sea level.",
]


def rejax_encode(model: pathlib.Path, texts: list[str], out: pathlib.Path, *extra: str) -> np.ndarray:
  jsonl = out.with_suffix(".jsonl")
  jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  cmd = [sys.executable, "-m", "rejax.cli", "encode", "--model", str(model), "--input", str(jsonl),
         "--output", str(out), "--max-length", "128", "--batch-size", "8", *extra]
  print("$ rejax " + " ".join(cmd[3:]), flush=True)
  subprocess.run(cmd, check=True)
  return np.load(out)


def main() -> None:
  workdir = pathlib.Path("runs/demo")
  workdir.mkdir(parents=True, exist_ok=True)
  model = assets.fetch("smollm2")
  queries = rejax_encode(model, QUERIES, workdir / "queries.npy", "--instruction", INSTRUCTION)
  documents = rejax_encode(model, DOCUMENTS, workdir / "documents.npy")
  scores = queries @ documents.T
  for query, row in zip(QUERIES, scores):
    print(f"\n{query}")
    for rank, doc in enumerate(np.argsort(-row)[:3], start=1):
      print(f"  {rank}. {row[doc]:.3f}  {DOCUMENTS[doc]}")
  print(f"\nmodel: {model}\nembeddings: {workdir.resolve()}/{{queries,documents}}.npy")


if __name__ == "__main__":
  main()
