"""The run lock of a workdir on a bucket (`gs://`): what `rejax.train.lock.RunLock` is on a local file system.

A bucket has no flock, and nothing ends a lock when its holder dies. What Cloud Storage does have is a write that
succeeds only if the object's generation is the one named (`ifGenerationMatch`); generation 0 means "only if
absent". So:

  * taking the lock creates `WORKDIR/run.lock` only if absent; a second run meets HTTP 412 and refuses, naming the
    holder from the object's body ({"pid", "host", "started", "workdir", "argv", "heartbeat"});
  * the holder rewrites its body every HEARTBEAT_S seconds (again only if the generation is still its own), so a
    lock whose heartbeat is older than STALE_AFTER_S is known to be left by a run that is gone (a preempted pod, a
    killed job); so is one whose holder is a process of this host that no longer runs. Either is taken over with
    a warning, by a write conditioned on the stale generation: of two runs that find the same stale lock, one wins.
    A lock of another host that beat lately is watched for up to STALE_AFTER_S: a new beat refuses the run, no
    beat takes it over (so a pod restarted after a preemption resumes within two minutes);
  * release deletes the object, conditioned on the holder's generation.

What it does not protect: a run whose heartbeat stops for STALE_AFTER_S while it still runs (a host frozen for
minutes) can lose its lock to a second run. Both then write the workdir; the second one's warning names the first.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
from typing import Callable

from rejax.io import HOST, process_alive
from rejax.storage import bucket_of, storage_client

HEARTBEAT_S = 30.0
STALE_AFTER_S = 120.0
_POLL_S = 5.0


class BucketLock:
  """The lock of a workdir on a bucket; `acquire` raises the error `in_use(holder_text)` builds when it is held."""

  def __init__(self, workdir, in_use: Callable[[str], Exception]):
    self.workdir = workdir
    self.path = workdir / "run.lock"
    self._in_use = in_use
    self._bucket = None
    self._name = ""
    self._generation: int | None = None
    self._started = ""
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def acquire(self, warn: Callable[[str], None] = print) -> BucketLock:
    from google.api_core import exceptions as api

    client = storage_client()
    self._name = str(self.path)[len("gs://") + len(bucket_of(self.path)) + 1:]
    self._bucket = client.bucket(bucket_of(self.path))
    self._started = _now()
    try:
      self._write(if_generation_match=0)
      self._start_heartbeat()
      return self
    except api.PreconditionFailed:
      pass
    try:
      current = self._bucket.get_blob(self._name)  # a fresh Blob: one that knows a generation reads only that one
      generation = current.generation
      body = current.download_as_bytes(if_generation_match=generation)
    except (AttributeError, api.NotFound, api.PreconditionFailed):  # released or replaced meanwhile: once more
      return self._retake(warn)
    holder = _parse(body)
    why = _stale_reason(holder)
    if why is None and holder.get("host") == HOST:  # a live process of this host
      raise self._in_use(_describe(holder))
    if why is None:  # another host's run, beating lately: gone only if it stops beating (a preempted pod)
      why = self._wait_for_stale(holder, generation, warn)
    try:
      self._write(if_generation_match=generation)
    except api.PreconditionFailed:  # another run took the stale lock first
      raise self._in_use("another run that took over the stale lock at the same time") from None
    warn(f"{self.path}: taking over the stale lock of {_describe(holder)}: {why}")
    self._start_heartbeat()
    return self

  def _wait_for_stale(self, holder: dict, generation: int, warn) -> str:
    """Watches a lock whose holder may still run until it beats (refused: the error names it) or goes stale
    (returns why); at most STALE_AFTER_S."""
    warn(f"{self.path}: held by {_describe(holder)}; waiting up to {STALE_AFTER_S:.0f}s for its heartbeat (a run "
         "that still beats keeps the workdir; one that stopped, e.g. preempted, is taken over)")
    while True:
      time.sleep(_POLL_S)
      current = self._bucket.get_blob(self._name)
      if current is None:
        return "it was released"
      if current.generation != generation:
        raise self._in_use(_describe(holder))
      why = _stale_reason(holder)
      if why is not None:
        return why

  def _retake(self, warn) -> BucketLock:
    from google.api_core import exceptions as api

    try:
      self._write(if_generation_match=0)
    except api.PreconditionFailed:
      raise self._in_use("a run that took it a moment ago") from None
    self._start_heartbeat()
    return self

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)
    if self._generation is None:
      return
    generation, self._generation = self._generation, None
    try:
      self._bucket.blob(self._name).delete(if_generation_match=generation)
    except Exception:  # noqa: BLE001 - taken over, or the store is gone: nothing of ours to remove
      pass

  def _write(self, *, if_generation_match: int) -> None:
    body = json.dumps({"pid": os.getpid(), "host": HOST, "started": self._started, "workdir": str(self.workdir),
                       "argv": sys.argv, "heartbeat": _now()}) + "\n"
    blob = self._bucket.blob(self._name)
    blob.upload_from_string(body, content_type="application/json", if_generation_match=if_generation_match)
    self._generation = blob.generation

  def _start_heartbeat(self) -> None:
    self._thread = threading.Thread(target=self._beat, name="rejax-lock-heartbeat", daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self._write(if_generation_match=self._generation)
      except Exception as e:  # noqa: BLE001 - a missed beat is retried; a lost lock is said once
        if type(e).__name__ == "PreconditionFailed":
          print(f"warning: {self.path}: another run took over this run's lock", file=sys.stderr, flush=True)
          self._generation = None
          return


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _parse(body: bytes) -> dict:
  try:
    holder = json.loads(body.decode("utf-8"))
    return holder if isinstance(holder, dict) else {}
  except ValueError:
    return {}


def _describe(holder: dict) -> str:
  if "pid" not in holder:
    return "a process whose lock cannot be read"
  return f"pid {holder['pid']} on {holder.get('host')}, since {holder.get('started')}"


def _stale_reason(holder: dict) -> str | None:
  """Why the lock `holder` names is left by a run that is gone, or None when it may still run."""
  if holder.get("host") == HOST and isinstance(holder.get("pid"), int) and holder["pid"] != os.getpid() \
      and not process_alive(holder["pid"]):
    return "that process no longer runs on this host (killed or crashed)"
  try:
    age = time.time() - datetime.datetime.fromisoformat(holder["heartbeat"]).timestamp()
  except (KeyError, TypeError, ValueError):
    return "its body is unreadable"
  if age > STALE_AFTER_S:
    return f"its last heartbeat is {age:.0f}s old (a live run beats every {HEARTBEAT_S:.0f}s)"
  return None
