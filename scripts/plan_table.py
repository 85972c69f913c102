"""The README's `rejax plan` table from `rejax plan --json` outputs: one row per (config, topology, shape).

COMMAND (each plan compiles one 8B step per shape, minutes on a laptop):
  for c in qwen3_4b qwen3_8b llama3_1_8b; do
    rejax plan --config configs/$c.py:v5p-32 --topology v5p:2x2x4 --json plans/$c-v5p.json
    rejax plan --config configs/$c.py:v5e-16 --topology v5e:4x4 --json plans/$c-v5e.json
  done
  python scripts/plan_table.py plans/*.json
"""

from __future__ import annotations

import json
import pathlib
import sys

GIB = 1024**3


def rows(path: pathlib.Path) -> list[str]:
  report = json.loads(path.read_text())
  out = []
  for shape in report["shapes"]:
    remedy = shape.get("remedy")
    if shape["fits"]:
      verdict = "yes"
    elif remedy:
      verdict = "with " + ", ".join(f"`{o}`" for o in remedy["overrides"]) + f" ({remedy['peak_bytes'] / GIB:.1f} GiB)"
    else:
      verdict = "no"
    seconds = shape["estimated_seconds"]
    mfu = shape["estimated_mfu"]
    out.append(f"| {path.stem} | {shape['name']} | {shape['argument_bytes'] / GIB:.2f} "
               f"| {shape['temp_bytes'] / GIB:.2f} "
               f"| {shape['peak_bytes'] / GIB:.2f} / {report['device_memory_bytes'] / GIB:.2f} | {verdict} "
               f"| {shape['flops'] / 1e15:.1f} | {f'{seconds:.2f}' if seconds else '-'} "
               f"| {f'{mfu:.2f}' if mfu else '-'} "
               f"| {shape['compile_seconds']:.0f} |")
  return out


def main(paths: list[str]) -> None:
  print("| plan | shape (B x G, lengths) | arguments GiB | temporaries GiB | peak / HBM GiB | fits | PFLOP/step "
        "| est. s/step | est. MFU | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for path in paths:
    print("\n".join(rows(pathlib.Path(path))))


if __name__ == "__main__":
  main(sys.argv[1:])
