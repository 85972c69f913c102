"""The one logging path of a run: metrics.jsonl + TensorBoard + a progress bar, written by process 0.

On a bucket (a gs:// workdir) there is no append: metrics.jsonl is rewritten whole, at most every
`REMOTE_FLUSH_S` seconds (Cloud Storage takes about one write per second to an object) and at every `flush()`
(the loop calls it before each checkpoint, so the lines up to a checkpoint are never lost) and at `close()`.
TensorBoard's event file is rewritten whole too, by tensorboardX's own gs:// writer.
"""

from __future__ import annotations

import json
import sys
import time

import jax

from rejax.io import write_error, write_text_atomic
from rejax.storage import AnyPath, is_remote

REMOTE_FLUSH_S = 30.0


class RunLogger:
  """Writes each logged step's scalars; on resume, forgets lines past the restored step first."""

  def __init__(self, workdir: AnyPath, *, total_steps: int, start_step: int):
    self.active = jax.process_index() == 0
    self.path = workdir / "metrics.jsonl"
    self._tensorboard = None
    self._bar = None
    self._remote = is_remote(workdir)
    self._lines: list[str] = []  # on a bucket: the whole file, rewritten by flush()
    self._flushed = time.monotonic()
    if not self.active:
      return
    workdir.mkdir(parents=True, exist_ok=True)
    kept = _truncate_after(self.path, start_step)
    from tensorboardX import SummaryWriter
    from tqdm import tqdm

    self._tensorboard = SummaryWriter(str(workdir / "tensorboard"), purge_step=start_step + 1)
    self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                     file=sys.stderr)
    if self._remote:
      self._lines, self._file = kept, None
    else:
      self._file = open(self.path, "a", encoding="utf-8")

  def info(self, message: str) -> None:
    if self.active:
      (self._bar.write if self._bar else print)(message, file=sys.stderr)

  def log(self, step: int, scalars: dict[str, float]) -> None:
    """Records the scalars of `step` (1-based: the number of updates done)."""
    if not self.active:
      return
    record = {"step": step, **scalars, "time": round(time.time(), 3)}
    line = json.dumps(record) + "\n"
    try:
      if self._remote:
        self._lines.append(line)
        if time.monotonic() - self._flushed >= REMOTE_FLUSH_S:
          self.flush()
      else:
        self._file.write(line)
        self._file.flush()
    except OSError as e:  # a line cut by a full disk is dropped on resume (_truncate_after)
      raise write_error(e, f"the metrics of step {step} to", self.path, size=len(line)) from e
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)
    shown = {k: scalars[k] for k in ("loss", "tokens_per_s", "padding_fraction", "mfu") if k in scalars}
    self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

  def advance(self, steps: int = 1) -> None:
    if self.active:
      self._bar.update(steps)

  def flush(self) -> None:
    """Makes every logged line durable (on a bucket: rewrites metrics.jsonl whole); TensorBoard too."""
    if not self.active:
      return
    if self._remote:
      write_text_atomic(self.path, "".join(self._lines), what="metrics")
      self._flushed = time.monotonic()
    self._tensorboard.flush()

  def close(self) -> None:
    if self.active:
      if self._remote:
        self.flush()
      else:
        self._file.close()
      self._tensorboard.close()
      self._bar.close()


def _truncate_after(path: AnyPath, step: int) -> list[str]:
  """Drops records of steps > `step` (logged after the checkpoint a resumed run starts from), and lines a crash
  cut; returns the lines kept. The file is replaced whole (rejax.io): a full disk leaves it as it was, with a
  one-line WriteError."""
  if not path.exists():
    return []
  kept = [line + "\n" for line in path.read_text(encoding="utf-8").splitlines()
          if line.strip() and _step_of(line) is not None and _step_of(line) <= step]
  write_text_atomic(path, "".join(kept), what="metrics",
                    legacy=[] if is_remote(path) else [path.name + ".tmp"])  # the temporary of earlier versions
  return kept


def _step_of(line: str) -> int | None:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None  # a line cut by a crash
