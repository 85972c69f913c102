"""The README's "Will it fit?" table from `rejax plan --json` outputs: one row per plan, its batch families
joined by " / ", then, for a plan made with --remat-search, each family's figures under every remat policy.

COMMAND (each plan compiles one 8B step per family, minutes on a laptop; --remat-search up to three times that):
  for c in qwen3_4b qwen3_8b llama3_1_8b; do
    rejax plan --config configs/$c.py:v5p-32 --topology v5p:2x2x4 --remat-search --json plans/$c-v5p.json
    rejax plan --config configs/$c.py:v5e-16 --topology v5e:4x4 --json plans/$c-v5e.json
  done
  python scripts/plan_table.py plans/*.json

A plan is named by its file's stem. MFU counts the model FLOPs of the step (rejax/train/flops.py: a LoRA step's
frozen matmuls forward and activation-gradient only); HFU the FLOPs it executes (full remat's second forward
included); both over the compiler's estimated time at the chip's bf16 peak. The frozen weights and the all-gathered
bytes are per chip: what FSDP keeps and what one pass over the model gathers.
"""

from __future__ import annotations

import json
import pathlib
import sys

GIB = 1024**3
HEADER = ("| plan | family (B x G) | peak / HBM GiB | frozen weights GiB | all-gathered GiB per pass | est. s/step "
          "| est. MFU | est. HFU | compile s |\n|---|---|---|---|---|---|---|---|---|")


def joined(values: list, spec: str) -> str:
  """" / "-joined values in `spec`, "-" for a missing one; one value when all are equal."""
  cells = ["-" if v is None else format(v, spec) for v in values]
  return cells[0] if len(set(cells)) == 1 else " / ".join(cells)


def family(shape: dict) -> str:
  """"16x64" from the shape's name ("16x64 q512 p512 r512")."""
  return shape["name"].split()[0]


def peak(shape: dict) -> str:
  if shape.get("refused"):
    return f"refused ({shape['temp_bytes'] / GIB:.0f} GiB of temporaries)"
  return f"{shape['peak_bytes'] / GIB:.1f}" + ("" if shape["fits"] else " (does not fit)")


def plan_row(name: str, report: dict) -> str:
  shapes = report["shapes"]
  return (f"| {name} | {' / '.join(map(family, shapes))} | {' / '.join(map(peak, shapes))} of "
          f"{report['device_memory_bytes'] / GIB:.1f} "
          f"| {joined([s['frozen_bytes'] / GIB for s in shapes], '.2f')} "
          f"| {joined([s['gather_bytes_per_pass'] / GIB for s in shapes], '.2f')} "
          f"| {joined([s['estimated_seconds'] for s in shapes], '.2f')} "
          f"| {joined([s['estimated_mfu'] for s in shapes], '.2f')} "
          f"| {joined([s.get('estimated_hfu') for s in shapes], '.2f')} "
          f"| {joined([s['compile_seconds'] for s in shapes], '.0f')} |")


def remat_lines(name: str, report: dict) -> list[str]:
  """Per remat policy: each family's peak GiB and est. s/step and the MFU that time gives; then the choice."""
  if "remat" not in report:
    return []
  lines = []
  for policy in next(iter(report["shapes"]))["remat_policies"]:
    cells = []
    for shape in report["shapes"]:
      found = shape["remat_policies"][policy]
      seconds = found["estimated_seconds"]
      mfu = shape["estimated_mfu"] * shape["estimated_seconds"] / seconds if seconds and shape["estimated_mfu"] \
          else None
      fits = "" if found["fits"] else " (does not fit)"
      cells.append(f"{family(shape)}: {found['peak_bytes'] / GIB:.1f} GiB{fits}"
                   + (f", {seconds:.2f} s, MFU {mfu:.2f}" if seconds and found["fits"] else ""))
    lines.append(f"- {name}, `model.remat={policy}`: " + "; ".join(cells))
  best = report["remat"]
  lines.append(f"- {name}: the search names `model.remat={best['policy']}` (by {best['by']})" if best["policy"]
               else f"- {name}: no remat policy fits every family")
  return lines


def main(paths: list[str]) -> None:
  reports = [(pathlib.Path(p).stem, json.loads(pathlib.Path(p).read_text())) for p in paths]
  print(HEADER)
  for name, report in reports:
    print(plan_row(name, report))
  remat = [line for name, report in reports for line in remat_lines(name, report)]
  if remat:
    print("\n" + "\n".join(remat))


if __name__ == "__main__":
  main(sys.argv[1:])
