"""The demo's models on held-out collections of other fields: trained (and base) vs BM25 vs all-MiniLM-L6-v2.

COMMAND (after `make demo`): .venv/bin/python scripts/check_generalisation.py
  [--export runs/demo/export] [--dataset sample_data/stackexchange] [--max-length 256] [--with-base]

The default collection is StackExchange answer retrieval (biology, psychology, sustainable living posts ->
their accepted answers; sample_data/stackexchange/PROVENANCE.md), which the CACM recipe never saw. Long documents:
`--dataset sample_data/clinical_trials --max-length 512` (TREC 2021 Clinical Trials: patients -> trial records of 575
words on average; its PROVENANCE.md).
Writes `runs/demo/<dataset>/` (one RESULTS.json per model) and prints the table.
"""

import argparse
import pathlib

from rejax import demo
from rejax.eval.report import markdown_table


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--export", type=pathlib.Path, default=demo.WORKDIR / "export")
  parser.add_argument("--dataset", type=pathlib.Path, default=demo.ROOT / "sample_data" / "stackexchange")
  parser.add_argument("--max-length", type=int, default=256)
  parser.add_argument("--with-base", action="store_true", help="also evaluate the untrained SmolLM2")
  args = parser.parse_args()
  rows = demo.compare(args.dataset, demo.WORKDIR / args.dataset.name, args.export, demo.recipe_module(),
                      demo.ROOT / ".cache" / "embeddings", args.max_length,
                      with_base=args.with_base)
  header = [f"model ({args.dataset.name}, {len(next(iter(rows.values()))['per_query'])} queries)", "nDCG@10",
            "recall@100", "MRR@10"]
  print(markdown_table(header, [[name] + [f"{r[c]:.4f}" for c in demo.COLUMNS] for name, r in rows.items()]))


if __name__ == "__main__":
  main()
