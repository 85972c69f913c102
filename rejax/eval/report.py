"""A comparison of every model evaluated into one directory: `table.md` and a bar chart `chart.png`.

Each RESULTS.json under the directory (at any depth) is one model, labelled by its folder relative to
the directory (`results/bright/qwen3-8b/RESULTS.json` -> `qwen3-8b`). A benchmark's RESULTS.json gives
one column per task plus Average; a single dataset's gives one column named after the dataset.
"""

from __future__ import annotations

import json
import pathlib

from rejax.io import write_text_atomic

AVERAGE = "Average"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  """A GitHub markdown table; the first column left-aligned, the others right-aligned."""
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def scores_by_column(results: dict, metric: str) -> dict[str, float]:
  """{column: value} of one RESULTS.json: its tasks then Average (a benchmark), or {dataset: value}."""
  if "per_task" in results:
    return {**{t: results["per_task"][t][metric] for t in results["tasks"]}, AVERAGE: results["average"][metric]}
  return {results.get("dataset", "dataset"): results[metric]}


def collect(directory: pathlib.Path, metric: str = "ndcg@10") -> tuple[list[str], dict[str, dict[str, float]]]:
  """(columns in first-seen order with Average last, {model label: {column: value}}) of the RESULTS.json under
  `directory`, sorted by path. A file that is not a RESULTS.json of ours raises ValueError naming it."""
  columns: list[str] = []
  models: dict[str, dict[str, float]] = {}
  for path in sorted(pathlib.Path(directory).rglob("RESULTS.json")):
    try:
      results = json.loads(path.read_text())
      scores = scores_by_column(results, metric)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise ValueError(f"{path}: not a rejax RESULTS.json with {metric!r} ({type(e).__name__}: {e})") from None
    label = path.parent.relative_to(directory).as_posix()
    models[label if label != "." else pathlib.Path(str(results.get("model", "model"))).name] = scores
    columns += [c for c in scores if c not in columns and c != AVERAGE]
  if any(AVERAGE in s for s in models.values()):
    columns.append(AVERAGE)
  return columns, models


def draw_chart(columns: list[str], models: dict[str, dict[str, float]], path: pathlib.Path, metric: str) -> None:
  """A grouped bar chart (one group per column, one bar per model, values x100) saved as PNG."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # no global backend: safe inside other programs
  from matplotlib.figure import Figure

  width = 0.8 / max(len(models), 1)
  fig = Figure(figsize=(max(6.0, 0.9 * len(columns) * max(1.0, len(models) / 3) + 2), 4.2), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for i, (label, scores) in enumerate(models.items()):
    xs = [j + (i - (len(models) - 1) / 2) * width for j, c in enumerate(columns) if c in scores]
    ax.bar(xs, [100 * scores[c] for c in columns if c in scores], width, label=label)
  crowded = len(columns) > 4
  ax.set_xticks(range(len(columns)), columns, rotation=30 if crowded else 0, ha="right" if crowded else "center")
  ax.set_ylabel(f"{metric} (x100)")
  ax.grid(axis="y", alpha=0.3)
  ax.set_axisbelow(True)
  ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(models), 4), fontsize="small", frameon=False)
  fig.tight_layout()
  fig.savefig(path)


def write_report(directory: str | pathlib.Path, metric: str = "ndcg@10") -> tuple[pathlib.Path, pathlib.Path]:
  """(table.md, chart.png) written in `directory`, comparing `metric` for every model evaluated there."""
  directory = pathlib.Path(directory)
  columns, models = collect(directory, metric)
  if not models:
    raise FileNotFoundError(f"{directory}: no RESULTS.json under it; run `rejax eval` into it first")
  rows = [[label, *(f"{100 * s[c]:.1f}" if c in s else "-" for c in columns)] for label, s in models.items()]
  table = directory / "table.md"
  write_text_atomic(table, f"{metric} (x100)\n\n" + markdown_table(["model", *columns], rows),
                    what="report table")
  chart = directory / "chart.png"
  draw_chart(columns, models, chart, metric)
  return table, chart
