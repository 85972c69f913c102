"""Writes that never leave a half-written output, and fail with one line when the disk is full or the target is
read-only.

A file is written to a hidden sibling `.NAME.tmp-HOST-PID` (flushed and fsynced, so a full disk shows up before the
rename, also on file systems that report it late) and renamed over NAME only when complete; a directory is built
whole in `.NAME.partial-HOST-PID` and renamed into place (the one it replaces is moved to `.NAME.old-HOST-PID` and
removed after). On any OSError the temporary is removed, the previous NAME is left as it was, and a `WriteError`
says what was being written, where, why (ENOSPC, EROFS, EACCES, EDQUOT, ...) and, when known, how many bytes it
needed and how many were free.

On a bucket (`gs://`, rejax.storage) there is no rename: a file is written to a local temporary and uploaded as
one object, which readers see whole or not at all; a directory is built locally and uploaded with its `commit`
file last (config.json for a model), an old one removed commit file first, so that a directory without its commit
file is never taken for complete. Errors are the same one-line WriteError.

A writer killed with kill -9 cannot remove its temporary: the next write of the same target removes the siblings
of writers on this host whose process is gone (and the fixed names older versions used); those of a live process,
or of another host, are left alone (they are hidden and never read).
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import re
import shutil
import socket
import tempfile
from typing import BinaryIO, Callable, Iterable

import numpy as np

from rejax.errors import WriteError
from rejax.storage import AnyPath, as_path, copy_file, is_remote, write_dir_remote

HOST = socket.gethostname()

# The errors of a target that cannot take the write, with what to do about each.
STORAGE_ERRNOS = {
  errno.ENOSPC: "free some space and run the command again",
  errno.EDQUOT: "free some space (or raise the quota) and run the command again",
  errno.EROFS: "the file system is mounted read-only",
  errno.EACCES: "this user may not write there",
  errno.EPERM: "this user may not write there",
}

_TEMP_KINDS = ("tmp", "partial", "old")
# `.NAME.KIND-HOST-PID` (this module), `.NAME.tmp-PID` and `.NAME.tmp` (earlier versions of rejax).
_TEMP_SUFFIX = re.compile(r"\.(?P<kind>tmp|partial|old)(?:-(?:(?P<host>.+)-)?(?P<pid>\d+))?")



# ---------------------------------------------------------------------------------------------------- messages
def storage_errno(error: BaseException) -> int | None:
  """The OS error code behind `error`: an OSError's errno anywhere in its chain, or one named in the text of a
  library's wrapper (tensorstore, under Orbax: `... No space left on device [os_error_code='28']`)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    text = str(error)
    code = re.search(r"os_error_code='?(\d+)", text)
    if code:
      return int(code.group(1))
    for known in STORAGE_ERRNOS:
      if os.strerror(known) in text:
        return known
    error = error.__cause__ or error.__context__
  return None


def format_bytes(count: int) -> str:
  """`count` bytes for a person: 512 B, 11.4 KiB, 1.0 GiB."""
  value = float(count)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if value < 1024 or unit == "TiB":
      return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
    value /= 1024
  raise AssertionError("unreachable")


def free_bytes(path: str | os.PathLike) -> int | None:
  """The bytes free to this user on the file system of `path` (or of its nearest existing parent)."""
  if is_remote(path):
    return None
  path = pathlib.Path(path).absolute()
  for candidate in (path, *path.parents):
    if candidate.exists():
      try:
        return shutil.disk_usage(candidate).free
      except OSError:
        return None
  return None


def write_error(error: BaseException, what: str, path: str | os.PathLike, *, size: int | None = None,
                estimated: bool = False, note: str = "", advice: str | None = None) -> WriteError:
  """The one-line WriteError for `error` met while writing `what` to `path`: the OS's reason, and for a full disk
  the bytes it needed (`size`, `estimated` or exact) and those free; then `note` and what to do (`advice`, or the
  usual advice for the error)."""
  if isinstance(error, WriteError):
    return error
  code = storage_errno(error)
  reason = f"{os.strerror(code)} ({errno.errorcode.get(code, code)})" if code else str(error)
  space = ""
  if code in (errno.ENOSPC, errno.EDQUOT):
    free = free_bytes(path)
    needed = f"it needs {'about ' if estimated else ''}{format_bytes(size)}" if size else ""
    space = "; ".join(filter(None, [needed, f"{format_bytes(free)} free there" if free is not None else ""]))
  parts = [f"could not write {what} {path}: {reason}", space, note,
           STORAGE_ERRNOS.get(code, "") if advice is None else advice]
  return WriteError("; ".join(p for p in parts if p), code, path)


# ---------------------------------------------------------------------------------------------------- temporaries
def process_alive(pid: int) -> bool:
  """Whether a process `pid` runs on this host (one of another user counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def temp_sibling(path: pathlib.Path, kind: str) -> pathlib.Path:
  """The hidden sibling of `path` this process writes before the rename: `.NAME.KIND-HOST-PID`."""
  assert kind in _TEMP_KINDS, kind
  return path.with_name(f".{path.name}.{kind}-{HOST}-{os.getpid()}")


def is_stale_temp(path: pathlib.Path, sibling_name: str) -> bool:
  """Whether `sibling_name` is a temporary of `path` whose writer is gone: one from an earlier version (no owner),
  or of a process of this host that is no longer alive. Ours, a live writer's and another host's are kept."""
  prefix = f".{path.name}"
  if not sibling_name.startswith(prefix):
    return False
  match = _TEMP_SUFFIX.fullmatch(sibling_name[len(prefix):])
  if not match:
    return False
  if match["pid"] is None:
    return True
  pid, host = int(match["pid"]), match["host"] or HOST
  return host == HOST and pid != os.getpid() and not process_alive(pid)


def remove_stale_temps(path: str | os.PathLike, legacy: Iterable[str] = ()) -> list[pathlib.Path]:
  """Removes the temporaries of `path` that killed writers left (see `is_stale_temp`), and the sibling names in
  `legacy` (fixed temporaries of earlier versions); returns what it removed. Never fails a write."""
  path, legacy = pathlib.Path(path), set(legacy)
  if not path.parent.is_dir():
    return []
  removed = []
  try:
    siblings = [p for p in path.parent.iterdir()
                if is_stale_temp(path, p.name) or p.name in legacy and p.name != path.name]
  except OSError:
    return []
  for sibling in siblings:
    _remove(sibling)
    removed.append(sibling)
  return removed


def _kept(path: pathlib.Path) -> str:
  """What a failed write says of the target: an existing one is as it was."""
  try:
    return "the previous one is unchanged" if path.exists() else ""
  except OSError:
    return ""


def _remove(path: pathlib.Path) -> None:
  """Removes a file or a directory tree; missing is fine, and so is failing (the caller reports its own error)."""
  try:
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    else:
      path.unlink(missing_ok=True)
  except OSError:
    pass


# ---------------------------------------------------------------------------------------------------- files
def write_file_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, what: str = "file",
                      size: int | None = None, legacy: Iterable[str] = ()) -> pathlib.Path:
  """Writes `path` through `write(f)` on a binary temporary sibling, renamed over `path` when complete.

  `what` names the output in the error ("embeddings", "metrics"); `size` is the bytes it needs, when known;
  `legacy` lists fixed sibling names earlier versions used as temporaries (removed). Raises WriteError.
  """
  if is_remote(path):
    return _write_object(path, write, what=what, size=size)
  path = pathlib.Path(path)
  tmp = temp_sibling(path, "tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, legacy)
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _remove(tmp)  # first, so that the error counts the space it held as free
    raise write_error(e, what, path, size=size, note=_kept(path)) from e
  finally:
    _remove(tmp)
  return path


def _write_object(path: AnyPath, write: Callable[[BinaryIO], object], *, what: str, size: int | None) -> AnyPath:
  """Writes a bucket object through `write(f)` on a local temporary, then one upload (seen whole or not at all)."""
  path = as_path(path)
  with tempfile.NamedTemporaryFile(prefix="rejax-upload-") as tmp:
    try:
      write(tmp)
      tmp.flush()
    except OSError as e:
      raise write_error(e, what, tmp.name, size=size, note=f"(the local copy of {path})") from e
    try:
      copy_file(pathlib.Path(tmp.name), path)
    except Exception as e:  # noqa: BLE001 - gcsfs, aiohttp and tf.io.gfile raise their own types
      raise write_error(e, what, path, size=size) from e
  return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, what: str = "file",
                       legacy: Iterable[str] = ()) -> pathlib.Path:
  """Writes `data` to `path` whole or not at all (see write_file_atomic)."""
  return write_file_atomic(path, lambda f: f.write(data), what=what, size=len(data), legacy=legacy)


def write_text_atomic(path: str | os.PathLike, text: str, *, what: str = "file",
                      legacy: Iterable[str] = ()) -> pathlib.Path:
  """Writes `text` (UTF-8) to `path` whole or not at all (see write_file_atomic)."""
  return write_bytes_atomic(path, text.encode("utf-8"), what=what, legacy=legacy)


def write_npy_atomic(path: str | os.PathLike, array, *, what: str = "array",
                     legacy: Iterable[str] = ()) -> pathlib.Path:
  """Writes `array` as .npy (no pickles) to `path` whole or not at all (see write_file_atomic)."""
  return write_file_atomic(path, lambda f: np.save(f, array, allow_pickle=False), what=what,
                           size=npy_size(array), legacy=legacy)


def append_text(path: str | os.PathLike, text: str, *, what: str = "file") -> None:
  """Appends `text` to the file `path` (created if missing). A bucket has no append: the object is read and
  rewritten whole, so use this for files that stay small (a line per compiled shape, not per step)."""
  if is_remote(path):
    path = as_path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text_atomic(path, old + text, what=what)
    return
  try:
    with open(path, "a", encoding="utf-8") as f:
      f.write(text)
  except OSError as e:
    raise write_error(e, what, path, size=len(text)) from e


def npy_size(array) -> int:
  """The bytes of `array` as a .npy file: its data and the format's header."""
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
  return header.tell() + array.nbytes


# ---------------------------------------------------------------------------------------------------- directories
def write_dir_atomic(path: str | os.PathLike, build: Callable[[pathlib.Path], object], *, what: str = "directory",
                     size: int | None = None, replace: bool = False, legacy: Iterable[str] = (),
                     commit: str | None = None) -> pathlib.Path:
  """Builds the directory `path` through `build(staging)` in a hidden sibling, renamed into place when complete.

  An existing `path` is replaced only with `replace` (moved aside, then removed once the new one is in place; put
  back if the rename fails); otherwise it is a FileExistsError. `what`, `size` and `legacy` as for
  write_file_atomic. Raises WriteError. On a bucket the directory is uploaded with its file `commit` last (required
  there: the file whose presence says the directory is complete).
  """
  if is_remote(path):
    if commit is None:
      raise ValueError(f"{what} {path}: a directory on a bucket needs a commit file")
    try:
      return write_dir_remote(path, build, commit=commit, replace=replace)
    except FileExistsError:
      raise
    except Exception as e:  # noqa: BLE001 - gcsfs, aiohttp and tf.io.gfile raise their own types
      raise write_error(e, what, path, size=size) from e
  path = pathlib.Path(path)
  staging, old = temp_sibling(path, "partial"), temp_sibling(path, "old")
  moved_aside = False
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, legacy)
    _remove(staging)
    staging.mkdir()
    build(staging)
    if path.exists() or path.is_symlink():
      if not replace:
        raise FileExistsError(errno.EEXIST, "exists", str(path))
      os.rename(path, old)
      moved_aside = True
    os.rename(staging, path)
  except OSError as e:
    _remove(staging)
    if moved_aside and not path.exists():
      _put_back(old, path)
    raise write_error(e, what, path, size=size, note=_kept(path)) from e
  finally:
    _remove(staging)
  if moved_aside:
    _remove(old)  # only once the new directory is in place
  return path


def _put_back(old: pathlib.Path, path: pathlib.Path) -> None:
  """Renames the directory a failed replacement moved aside back to `path` (left as `old` if even that fails)."""
  try:
    os.rename(old, path)
  except OSError:
    pass
