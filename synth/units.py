"""Resumable work units: a stage's items, cut into fixed units, each persisted atomically when finished.

    STAGE/DOMAIN.units/plan.json              item count, unit size, fingerprint of the item keys
    STAGE/DOMAIN.units/unit-000012.jsonl      one result row per item of unit 12 (`drop` says why one was dropped)

A unit file appears only complete (written aside, then renamed), so a crash loses at most the unit in
flight, and a re-run skips every unit whose file exists. `--shard i/N` runs the units u with u % N == i;
whichever process finds every unit present merges them, in unit order, into the stage's output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from rejax.io import write_text_atomic
from rejax.rows import read_rows
from synth.report import redact, say


@dataclasses.dataclass(frozen=True)
class Shard:
  """This process's share of the units: those with `unit % count == index`."""

  index: int = 0
  count: int = 1

  @classmethod
  def parse(cls, text: str) -> Shard:
    """The Shard of `i/N` (0 <= i < N)."""
    try:
      index, count = (int(x) for x in text.split("/"))
    except ValueError:
      raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= index < count:
      raise ValueError(f"--shard {text!r}: need 0 <= i < N")
    return cls(index, count)

  def owns(self, unit: int) -> bool:
    return unit % self.count == self.index


def write_jsonl_atomic(path: pathlib.Path, rows: Iterable[dict]) -> None:
  """Writes rows as JSONL whole or not at all (rejax.io: a full disk is one line, nothing half-written); secrets
  are redacted."""
  write_text_atomic(path, "".join(redact(json.dumps(row, ensure_ascii=False)) + "\n" for row in rows), what="rows")


def read_jsonl(path: pathlib.Path) -> list[dict]:
  """The rows of a JSONL file this package wrote; a bad line names file:line."""
  return read_rows(path)


class UnitRunner:
  """Runs `process` over the pending units of one (stage, domain) and merges them once all exist."""

  def __init__(self, directory: pathlib.Path, *, unit_size: int, shard: Shard = Shard(), desc: str = "",
               progress: bool = True):
    if unit_size < 1:
      raise ValueError(f"unit_size={unit_size}: must be >= 1")
    self.directory, self.unit_size, self.shard, self.desc, self.progress = directory, unit_size, shard, desc, progress

  def unit_path(self, unit: int) -> pathlib.Path:
    return self.directory / f"unit-{unit:06d}.jsonl"

  def run(self, items: Sequence[dict], keys: Sequence[str],
          process: Callable[[Sequence[dict]], list[dict]]) -> list[dict] | None:
    """All result rows in item order once every unit is done (None while other shards still have units).

    `keys` identify the items (a re-run with different items or unit size is refused rather than mixed
    with old units); `process` gets one unit's items and returns one row per item.
    """
    self._check_plan(len(items), keys)
    n_units = -(-len(items) // self.unit_size)
    mine = [u for u in range(n_units) if self.shard.owns(u)]
    pending = [u for u in mine if not self.unit_path(u).exists()]
    size = lambda u: len(items[u * self.unit_size : (u + 1) * self.unit_size])  # noqa: E731
    total = sum(size(u) for u in mine)
    with tqdm(total=total, initial=total - sum(size(u) for u in pending), desc=self.desc, unit="item",
              disable=not self.progress) as bar:
      self.work({u: items[u * self.unit_size : (u + 1) * self.unit_size] for u in pending}, process,
                lambda unit, batch, rows: (self.finish_unit(unit, batch, rows), bar.update(len(batch))))
    missing = [u for u in range(n_units) if not self.unit_path(u).exists()]
    if missing:
      say(f"{self.desc}: {len(missing)} of {n_units} units belong to other shards and are not done yet; "
          "the last shard to finish merges them")
      return None
    return [row for u in range(n_units) for row in read_jsonl(self.unit_path(u))]

  def work(self, batches: dict[int, Sequence[dict]], process: Callable[[Sequence[dict]], list[dict]],
           done: Callable[[int, Sequence[dict], list[dict]], object]) -> None:
    """Runs `process` on each pending unit's batch, in unit order, handing its rows to `done(unit, batch, rows)`
    (the ray engine runs them otherwise: synth.raydata.engine)."""
    for unit, batch in batches.items():
      done(unit, batch, process(batch))

  def finish_unit(self, unit: int, batch: Sequence[dict], rows: list[dict]) -> None:
    """Persists one finished unit (whole or not at all)."""
    if len(rows) != len(batch):
      raise AssertionError(f"{self.desc}: unit {unit} gave {len(rows)} rows for {len(batch)} items")
    write_jsonl_atomic(self.unit_path(unit), rows)

  def _check_plan(self, n_items: int, keys: Sequence[str]) -> None:
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    plan = {"items": n_items, "unit_size": self.unit_size, "fingerprint": digest}
    path = self.directory / "plan.json"
    if path.exists():
      old = json.loads(path.read_text())
      if old != plan:
        raise RuntimeError(f"{path}: the work changed since these units were written (was {old}, now {plan}); "
                           f"delete {self.directory} to start this stage over")
      return
    write_text_atomic(path, json.dumps(plan) + "\n", what="the stage's plan")
