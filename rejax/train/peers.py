"""A lost process stops the whole run with one line naming it.

When one process of a multi-process run dies (kill -9, OOM, its host gone), the others wait for it in the next
collective. JAX's coordination service notices the missing heartbeats after its timeout and then aborts every
process with a multi-line fatal log and a stack trace. Before that, `watch_peers` says it in one line: each process
bumps a counter under `rejax/alive/<i>` in the coordination service's key-value store every BEAT_S seconds and reads
the others'. A process whose counter has not moved for `lost_after` seconds (by the reader's own clock, so hosts'
clocks need not agree), and that has not said it finished, is lost: the reader prints

    rejax train: error: process 2 of 4 (host tpu-w-2) stopped answering 10s ago: it was killed, crashed or ...

and exits with status 1. It must exit from the watching thread (`os._exit`): the main thread is blocked inside a
collective that will never complete. A collective that fails instead (gloo notices the closed connection before the
heartbeats do) is explained the same way: the main thread waits for the watch to name the lost process
(`explain`). Process 0 hosts the coordination service, so it leaves a few beats after the others; when it is the
one lost, JAX's own abort may still come first. A process that returns from the run says so (`rejax/done/<i>`)
first, so a peer that finishes later (process 0 writing the export) is not taken for lost.

`lost_after` is half of jax.distributed's heartbeat timeout, so this line comes before JAX's own abort. The beat is a
Python thread; it needs the GIL once every BEAT_S seconds, which JAX, Orbax and the tokenizers release in their
long calls.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import jax

from rejax.io import HOST
from rejax.train.compiler_warnings import original_stderr

BEAT_S = 2.0
# What a collective's error says when the process at the other end went away.
_PEER_GONE = ("closed by peer", "Connection reset", "Gloo", "NCCL", "heartbeat", "UNAVAILABLE", "Socket closed")
JAX_HEARTBEAT_TIMEOUT_S = 100  # jax.distributed.initialize's default


class PeerWatch:
  """The beating and watching thread of one process (see the module docstring); `finish()` on success."""

  def __init__(self, lost_after: float):
    from jax._src import distributed

    self.client = distributed.global_state.client
    self.lost_after = lost_after
    self.me, self.count = jax.process_index(), jax.process_count()
    self._stop = threading.Event()
    self.client.key_value_set(f"rejax/host/{self.me}", HOST, allow_overwrite=True)
    self._thread = threading.Thread(target=self._run, name="rejax-peer-watch", daemon=True)
    self._thread.start()

  def explain(self, error: BaseException) -> None:
    """If `error` is a collective that failed because a peer went away (gloo's or NCCL's connection to it closed
    before JAX noticed), waits for the watch to name the lost process: it then ends this process with its line.
    Returns (at most lost_after + 2 beats later) when no peer is lost: `error` is this process's own."""
    if not any(sign in str(error) for sign in _PEER_GONE):
      return
    self._thread.join(timeout=self.lost_after + 2 * BEAT_S)

  def stop(self) -> None:
    """Stops beating without saying done: this process failed, and the others are to stop too, naming it."""
    self._stop.set()

  def finish(self) -> None:
    """Tells the others this process is done (not lost), and stops watching."""
    self._stop.set()
    try:
      self.client.key_value_set(f"rejax/done/{self.me}", "1", allow_overwrite=True)
    except Exception:  # noqa: BLE001 - the service is going away with the run
      pass

  def _run(self) -> None:
    beats, seen = 0, {}  # process -> (its last counter, when it last moved by this host's clock)
    while not self._stop.wait(BEAT_S):
      beats += 1
      try:
        self.client.key_value_set(f"rejax/alive/{self.me}", str(beats), allow_overwrite=True)
        alive = dict(self.client.key_value_dir_get("rejax/alive/"))
        done = {key.rsplit("/", 1)[-1] for key, _ in self.client.key_value_dir_get("rejax/done/")}
      except Exception as e:  # noqa: BLE001 - the coordination service itself is gone with process 0
        if self._stop.is_set():
          return
        _lost(f"process 0 of {self.count} (the coordinator) stopped answering ({type(e).__name__})")
      now = time.monotonic()
      for other in range(self.count):
        if other == self.me or str(other) in done:
          continue
        value = alive.get(f"rejax/alive/{other}")
        last = seen.get(other)
        if last is None or value != last[0]:
          seen[other] = (value, now)
        elif now - last[1] > self.lost_after and not self._stop.is_set():
          _lost(f"process {other} of {self.count} (host {self._host(other)}) stopped answering "
                f"{now - last[1]:.0f}s ago")

  def _host(self, process: int) -> str:
    try:
      return self.client.key_value_try_get(f"rejax/host/{process}")
    except Exception:  # noqa: BLE001
      return "unknown"


def _lost(what: str) -> None:
  message = (f"rejax train: error: {what}: it was killed, crashed or lost its host; every process of this run stops. "
             "Run the same command on every host to resume from the latest checkpoint\n")
  sys.stderr.flush()
  os.write(original_stderr(), message.encode())  # not through a compile's capture of fd 2: os._exit follows
  if jax.process_index() == 0:  # it hosts the coordination service: leave last, so the others can say it too
    time.sleep(3 * BEAT_S)
  os._exit(1)


def watch_peers(heartbeat_timeout: int | None) -> PeerWatch | None:
  """Starts watching the other processes of a multi-process run (None for one process)."""
  if jax.process_count() == 1:
    return None
  return PeerWatch(lost_after=0.5 * (heartbeat_timeout or JAX_HEARTBEAT_TIMEOUT_S))
