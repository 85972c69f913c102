"""Per-stage, per-domain accounting: how many items came in, how many went out, and why the rest were dropped."""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from typing import Iterable, Mapping


@dataclasses.dataclass
class StageSummary:
  """Counts of one stage over one domain; `n_in == n_out + sum(dropped.values())`."""

  stage: str
  domain: str
  n_in: int
  n_out: int
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.n_in != self.n_out + sum(self.dropped.values()):
      raise AssertionError(f"{self.stage}/{self.domain}: {self.n_in} in != {self.n_out} out + dropped {self.dropped}")

  def line(self) -> str:
    """One human-readable line: `stage domain: in -> out (dropped: reason n, ...)`."""
    why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]))
    return f"{self.stage:<9} {self.domain}: {self.n_in} in -> {self.n_out} out" + (f" (dropped: {why})" if why else "")

  def save(self, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

  @classmethod
  def load(cls, path: pathlib.Path) -> StageSummary:
    return cls(**json.loads(path.read_text()))


def split_rows(rows: Iterable[dict]) -> tuple[list[dict], collections.Counter]:
  """(kept rows, count per drop reason) of result rows, where a dropped row carries `drop`."""
  kept, dropped = [], collections.Counter()
  for row in rows:
    if row.get("drop"):
      dropped[row["drop"]] += 1
    else:
      kept.append(row)
  return kept, dropped


def merge_counts(*counters: Mapping[str, int]) -> dict[str, int]:
  """The sum of several reason -> count maps, as a plain dict."""
  total: collections.Counter = collections.Counter()
  for counter in counters:
    total.update(counter)
  return dict(total)
