"""A profile of a few steps (`profile.start_step`, `profile.steps`), for TensorBoard's profile plugin or XProf.

The window is steps start_step .. start_step + steps - 1, numbered as metrics.jsonl numbers them (step N is the
N-th update). Every host traces its own devices, so a straggler host shows in its own trace: a trace of host 0
alone would show its chips waiting in the collectives and not why. Each host traces into a local temporary
directory and copies its `HOST-PROCESS.xplane.pb` into

    WORKDIR/profile/plugins/profile/steps_A-B/

(a local workdir or a bucket alike), one directory per window named by its steps, so the hosts of one window are
one run in `tensorboard --logdir WORKDIR/profile` (or `xprof --logdir`). Each step is a `StepTraceAnnotation`
("train", step_num=N), which is how the profiler's step view finds the steps.

The window opens when the step before it has finished on the device and closes when its last step has, so the
trace holds those steps and nothing else; the loop leaves their timing figures (step_s, tokens/s, MFU) out of
metrics.jsonl, since tracing slows them.
"""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
from typing import Callable, Iterator

import jax

from rejax.io import HOST
from rejax.storage import AnyPath, copy_file, files_under

PROFILE_DIR = "profile"  # in a workdir: `tensorboard --logdir WORKDIR/profile`


class StepProfiler:
  """Traces the steps of a window with jax.profiler; `step(n)` wraps the dispatch of step n (1-based)."""

  def __init__(self, workdir: AnyPath, start_step: int, steps: int, log: Callable[[str], None]):
    self.first, self.last = start_step, start_step + steps - 1
    self.enabled = steps > 0
    self.target = workdir / PROFILE_DIR / "plugins" / "profile" / f"steps_{self.first}-{self.last}"
    self.log = log
    self._local: tempfile.TemporaryDirectory | None = None

  def covers(self, step: int) -> bool:
    return self.enabled and self.first <= step <= self.last

  @contextlib.contextmanager
  def step(self, step: int, previous_outputs=None) -> Iterator[None]:
    """Around the dispatch of `step`: opens the window at its first step (once `previous_outputs`, the step
    before's, are computed) and annotates each traced step."""
    if not self.covers(step):
      yield
      return
    if self._local is None:
      jax.block_until_ready(previous_outputs)
      self._local = tempfile.TemporaryDirectory(prefix="rejax-profile-")
      jax.profiler.start_trace(self._local.name)
      self.log(f"profiling steps {self.first}-{self.last} into {self.target}")
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      yield

  def after(self, step: int, outputs) -> None:
    """After the dispatch of `step`: at the window's last step, waits for `outputs` and writes the trace."""
    if self._local is None or step != self.last:
      return
    jax.block_until_ready(outputs)
    self.close()

  def close(self) -> None:
    """Stops a trace in progress (a run that ends inside its window) and copies this host's files."""
    if self._local is None:
      return
    jax.profiler.stop_trace()
    name = f"{HOST}-{jax.process_index()}.xplane.pb"  # processes sharing a host get one file each
    written = [copy_file(path, self.target / name)
               for _, path in files_under(pathlib.Path(self._local.name)) if path.name.endswith(".xplane.pb")]
    self._local.cleanup()
    self._local = None
    self.log(f"profile of steps {self.first}-{self.last} written to {self.target} ({sum(written) / 2**20:.1f} MiB "
             f"from this host); view it with `tensorboard --logdir {self.target.parent.parent.parent}`")
