"""The run directory's lock: one `rejax train` per workdir at a time.

Two runs on one workdir would interleave their checkpoints, metrics and exports (each believing it resumes the
other), so the second refuses at once, naming the workdir and the holder. The lock is `WORKDIR/run.lock`:

  * an exclusive `fcntl.flock` on it is what holds the workdir. The kernel drops it when the holder's process
    ends in any way (exit, exception, kill -9, OOM kill), so a dead run can never block the next one;
  * its body is a line of JSON, {"pid", "host", "started", "workdir", "argv"}, written once the flock is held and
    emptied on release: it names the holder in a refusal. A body left with no flock held is a stale lock (its
    holder was killed): the next run takes it over with a warning naming the old holder. When the flock is free
    but the body names a process that still runs on this host and holds this very workdir (a file system that
    does not enforce flock), the run refuses; a reused pid (a process younger than the lock) or a workdir copied
    from a running one's is stale.

On a bucket (a gs:// workdir) there is no flock: `rejax.train.bucket_lock.BucketLock` holds the workdir instead,
with an object created only if absent and kept alive by a heartbeat (its docstring says what that guarantees).

Multi-host runs (jax.process_count() > 1): only process 0 takes the lock, and its verdict is broadcast, so every
process of a refused run stops at the same point with the same kind of one-line error, and the processes of one
run never refuse each other. One lock per run, not per process: process 0 writes what the workdir holds besides
the checkpoints (config, metrics, base model, export), a second run is a second process 0, and a per-process lock
would let a second run with another process count or host layout overlap the first one's processes.

The lock is released (flock dropped, body emptied) when the function decorated with `releases_workdir_lock`
returns or raises; a workdir the lock itself created, still empty but for the lock, is removed again, so a run
that fails before writing anything leaves no trace.
"""

from __future__ import annotations

import atexit
import contextvars
import dataclasses
import datetime
import errno
import fcntl
import functools
import json
import os
import pathlib
import sys
import time
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from rejax.errors import WorkdirInUseError
from rejax.io import HOST, process_alive, write_error
from rejax.storage import is_remote
from rejax.train.bucket_lock import BucketLock

LOCK_FILE = "run.lock"

_held: contextvars.ContextVar[list | None] = contextvars.ContextVar("rejax_workdir_locks", default=None)




@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds (or last held) a lock, as its body says; all None for an empty or unreadable body."""

  pid: int | None = None
  host: str | None = None
  started: str | None = None
  workdir: str | None = None

  @classmethod
  def parse(cls, body: bytes) -> Holder:
    try:
      fields = json.loads(body.decode("utf-8"))
      return cls(pid=int(fields["pid"]), host=str(fields["host"]), started=str(fields["started"]),
                 workdir=fields.get("workdir"))
    except (ValueError, KeyError, TypeError, AttributeError):
      return cls()

  def __str__(self) -> str:
    if self.pid is None:
      return "a process that has not yet written its pid"
    return f"pid {self.pid} on {self.host}, since {self.started}"

  def still_running(self, workdir: pathlib.Path) -> bool:
    """Whether the holder is a live process of this host that started no later than the lock (not a reused pid),
    holding this `workdir` (not the one a copied workdir was copied from)."""
    if self.pid is None or self.host != HOST or self.pid == os.getpid() or not process_alive(self.pid):
      return False
    if self.workdir is not None and self.workdir != str(workdir.resolve()):
      return False
    began = _process_start_time(self.pid)
    try:
      locked = datetime.datetime.fromisoformat(self.started).timestamp()
    except (TypeError, ValueError):
      return True
    return began is None or began <= locked + 1.0


class RunLock:
  """The lock of one workdir (see the module docstring); `acquire` raises WorkdirInUseError when it is held."""

  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self._fd: int | None = None
    self._created_workdir = False

  def acquire(self, warn: Callable[[str], None] = print) -> RunLock:
    """Holds the workdir, creating it if needed; warns when it takes over a stale lock."""
    self._created_workdir = not self.workdir.exists()
    fd = self._open_locked(warn)
    try:
      previous = Holder.parse(_read(fd))
      if previous.still_running(self.workdir):
        raise self._in_use(previous, " (its flock is not held: this file system does not enforce flock)")
      if previous.pid is not None:
        warn(f"{self.path}: taking over the stale lock of {previous}: that run ended without releasing it "
             "(killed or crashed)")
      _write_body(fd, self.workdir)
    except BaseException:
      os.close(fd)
      raise
    self._fd = fd
    return self

  def release(self) -> None:
    """Lets the workdir go: body emptied, flock dropped; an otherwise empty workdir the lock created is removed."""
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      os.ftruncate(fd, 0)
      if self._created_workdir and [p.name for p in self.workdir.iterdir()] == [LOCK_FILE]:
        self.path.unlink()
        self.workdir.rmdir()
    except OSError:
      pass
    finally:
      os.close(fd)  # drops the flock

  def _open_locked(self, warn: Callable[[str], None]) -> int:
    """An fd of the lock file holding its flock, or WorkdirInUseError. Retries when the file it locked was
    removed or replaced meanwhile (by a releasing run that removed its empty workdir)."""
    for _ in range(10):
      try:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
      except OSError as e:
        raise write_error(e, "the run lock", self.path, note=f"--workdir {self.workdir} must be writable") from e
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _holder_of(fd)
        os.close(fd)
        raise self._in_use(holder) from None
      except OSError as e:  # ENOLCK, EINVAL: no flock on this file system; the body still names a live holder
        if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
          os.close(fd)
          raise
        warn(f"{self.path}: this file system cannot lock files ({os.strerror(e.errno)}); a second run on this "
             "workdir is refused only while the first one runs on this host")
      if _same_file(fd, self.path):
        return fd
      os.close(fd)
    raise WorkdirInUseError(f"--workdir {self.workdir}: could not lock {self.path}: it keeps being replaced")

  def _in_use(self, holder: Holder, why: str = "") -> WorkdirInUseError:
    return _in_use(self.workdir, f"{holder}{why}")


# ---------------------------------------------------------------------------------------------------- the run's lock
def lock_workdir(workdir: str | pathlib.Path, warn: Callable[[str], None] = print) -> RunLock | None:
  """Takes the run's lock of `workdir` (process 0; see the module docstring for multi-host runs) until the
  enclosing `releases_workdir_lock` function returns (or the process exits, outside one). Raises
  WorkdirInUseError on every process when another run holds it."""
  lock, refusal = None, None
  if jax.process_index() == 0:
    try:
      if is_remote(workdir):
        lock = BucketLock(workdir, lambda holder: _in_use(workdir, holder)).acquire(warn)
      else:
        lock = RunLock(workdir).acquire(warn)
    except Exception as e:  # noqa: BLE001 - every process must hear of it before process 0 raises
      refusal = e
  if jax.process_count() > 1:
    refused = int(multihost_utils.broadcast_one_to_all(np.int32(refusal is not None)))
    if refused and refusal is None:
      raise WorkdirInUseError(f"--workdir {workdir}: process 0 of this run could not lock it (see its error)")
  if refusal is not None:
    raise refusal
  if lock is not None:
    held = _held.get()
    if held is None:
      atexit.register(lock.release)
    else:
      held.append(lock)
  return lock


def releases_workdir_lock(fn: Callable) -> Callable:
  """Decorates a function that calls `lock_workdir`: the lock it takes is released when it returns or raises."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    token = _held.set([])
    try:
      return fn(*args, **kwargs)
    finally:
      for lock in reversed(_held.get()):
        lock.release()
      _held.reset(token)

  return wrapper


# ---------------------------------------------------------------------------------------------------- helpers
def _in_use(workdir, holder: str) -> WorkdirInUseError:
  return WorkdirInUseError(
      f"--workdir {workdir}: in use by another rejax train ({holder}); two runs on one workdir would "
      f"overwrite each other's checkpoints. Wait for it to end or stop it (the lock is {workdir / LOCK_FILE})")


def _read(fd: int) -> bytes:
  return os.pread(fd, 1 << 20, 0)


def _holder_of(fd: int) -> Holder:
  """The holder a held lock names; a holder that has just taken it may not have written it yet: wait a little."""
  for _ in range(20):
    holder = Holder.parse(_read(fd))
    if holder.pid is not None:
      return holder
    time.sleep(0.05)
  return Holder()


def _write_body(fd: int, workdir: pathlib.Path) -> None:
  """Names this process in the lock. A full disk leaves the body empty: the flock still holds the workdir."""
  started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  body = json.dumps({"pid": os.getpid(), "host": HOST, "started": started, "workdir": str(workdir.resolve()),
                     "argv": sys.argv}) + "\n"
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, body.encode("utf-8"), 0)
    os.fsync(fd)
  except OSError:
    pass


def _same_file(fd: int, path: pathlib.Path) -> bool:
  try:
    return os.fstat(fd).st_ino == os.stat(path).st_ino
  except FileNotFoundError:
    return False


def _process_start_time(pid: int) -> float | None:
  """When process `pid` started (seconds since the epoch), from /proc; None where that is not available."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    boot = next(float(line.split()[1]) for line in pathlib.Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError, StopIteration):
    return None
