"""Where a command's files live: a local path or a `gs://` URL, through one path type.

`as_path` turns what a user gave (`--workdir gs://bucket/runs/x`, `--config.data.path=/data/re`) into the path
every module then uses: a `pathlib.Path` for a local path, an `etils.epath.Path` for a bucket. epath,
because Orbax is built on it (the CheckpointManager takes it as is), and because it gives a bucket pathlib's API
(`/`, `exists`, `read_text`, `open`, `iterdir`, `glob`) through gcsfs, or tf.io.gfile where TensorFlow is
installed; so code written for local paths reads the same for a bucket. Its `resolve()` and `absolute()` turn a
URL into a local `gs:` folder, so nothing here calls them on a remote path (`same_or_inside` compares instead).

An object store has no append, no rename and no flock. What the rest of rejax does instead:
  * a file that grows (metrics.jsonl, compiled_steps.jsonl, TensorBoard events) is rewritten whole: one upload
    is one object, which a reader sees whole or not at all;
  * a directory that must appear whole (an export, the base model, a converted dataset) is built locally and
    uploaded file by file with its commit file last (`publish_dir`: config.json, or a dataset's manifest), and
    an old one is removed commit file first; readers take a directory as complete only when its commit file is
    there, so a killed upload leaves nothing a later run mistakes for complete;
  * inputs that must be local files (a model's safetensors, memory-mapped; a tokenizer; an evaluation dataset)
    are staged once per host into a local cache (`staged`), refreshed when the bucket's objects change;
  * the run lock (rejax.train.lock) is an object created only if absent.

`check_store` asks the store, with a bounded timeout and no retries, whether the bucket exists and the
credentials are good, so a bad URL is one line before any work, not minutes of a client's retries.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Callable, Iterator, Union

from etils import epath

from rejax.errors import InputError, StorageError, one_line

AnyPath = Union[pathlib.Path, epath.Path]

REMOTE_SCHEMES = ("gs://",)
# Schemes a user may try that rejax cannot write faithfully (Orbax takes only gs:// as remote: an s3:// path
# would become a local `s3:` folder), refused with one line instead.
_UNSUPPORTED = ("s3://", "gcs://", "az://", "abfs://", "hdfs://", "http://", "https://", "file://")
CHECK_TIMEOUT_S = 20.0  # seconds for the store to answer `check_store`
_CHUNK = 16 << 20




def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` names an object in a bucket (`gs://...`)."""
  return str(path).startswith(REMOTE_SCHEMES)


def as_path(path: str | os.PathLike, what: str = "path") -> AnyPath:
  """The path a command uses for `path`: a pathlib.Path (as given, `~` expanded), or an epath.Path for
  `gs://bucket/...` (without a trailing slash).
  `what` names the flag or config key in the error for a scheme rejax does not write (`s3://`, `http://`)."""
  if isinstance(path, epath.Path) and is_remote(path):
    return path
  text = os.fspath(path)
  if is_remote(text):
    bucket = text.split("/")[2]
    if not bucket:
      raise InputError(f"{what} {text}: no bucket name (expected gs://BUCKET/PATH)")
    return epath.Path(text.rstrip("/"))
  if text.lower().startswith(_UNSUPPORTED):
    raise InputError(f"{what} {text}: rejax reads and writes local paths and gs:// URLs only")
  return pathlib.Path(text).expanduser()


def bucket_of(path: AnyPath) -> str:
  return str(path).split("/")[2]


def same_or_inside(path: AnyPath, other: AnyPath) -> bool:
  """Whether `path` is `other` or lies inside it (symlinks resolved for local paths; never across stores)."""
  if is_remote(path) != is_remote(other):
    return False
  if not is_remote(path):
    return pathlib.Path(path).resolve().is_relative_to(pathlib.Path(other).resolve())
  a, b = str(path).rstrip("/"), str(other).rstrip("/")
  return a == b or a.startswith(b + "/")


# ---------------------------------------------------------------------------------------------------- the store
def check_store(path: AnyPath, what: str) -> None:
  """Raises StorageError, naming `what` and the URL, unless `path`'s bucket exists and this process's credentials
  may use it; the store must answer within CHECK_TIMEOUT_S (no retries). Nothing for a local path."""
  if not is_remote(path):
    return
  bucket = bucket_of(path)
  try:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud import storage  # noqa: F401 - its absence is the error below
  except ImportError as e:
    raise StorageError(f"{what} {path}: gs:// needs google-cloud-storage and gcsfs (rejax's dependencies; "
                       f"reinstall rejax): {e}") from None
  import requests

  try:
    storage_client().get_bucket(bucket, timeout=CHECK_TIMEOUT_S, retry=None)
  except auth.DefaultCredentialsError as e:
    raise StorageError(f"{what} {path}: no Google Cloud credentials ({one_line(e)[:200]}); on a TPU VM or GCE the "
                       "VM's service account provides them, elsewhere run `gcloud auth application-default login` "
                       "or set GOOGLE_APPLICATION_CREDENTIALS") from None
  except api.NotFound:
    raise StorageError(f"{what} {path}: bucket gs://{bucket} does not exist (create it, or check the name)") from None
  except (api.Forbidden, api.Unauthorized, auth.RefreshError) as e:
    raise StorageError(f"{what} {path}: these credentials may not use bucket gs://{bucket} ({one_line(e)[:200]})") \
        from None
  except (requests.exceptions.RequestException, api.ServiceUnavailable, api.GatewayTimeout, OSError) as e:
    raise StorageError(f"{what} {path}: the store did not answer within {CHECK_TIMEOUT_S:.0f}s "
                       f"({type(e).__name__}: {one_line(e)[:200]})") from None


def storage_client():
  """A google-cloud-storage client. Its project is only billed for what it creates, and rejax creates no bucket:
  $GOOGLE_CLOUD_PROJECT if set, else a placeholder (no metadata-server lookup for one)."""
  from google.cloud import storage

  return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "rejax")


# ---------------------------------------------------------------------------------------------------- directories
def files_under(directory: AnyPath) -> Iterator[tuple[str, AnyPath]]:
  """(relative name, path) of every file under `directory`, recursively (one listing per level on a bucket)."""
  stack = [(directory, "")]
  while stack:
    current, prefix = stack.pop()
    for entry in sorted(current.iterdir()):
      name = f"{prefix}{entry.name}"
      if entry.is_dir():
        stack.append((entry, name + "/"))
      else:
        yield name, entry


def copy_file(source: AnyPath, target: AnyPath) -> int:
  """Copies one file between any two stores, streamed; returns its bytes."""
  copied = 0
  if not is_remote(target):
    pathlib.Path(target).parent.mkdir(parents=True, exist_ok=True)
  with source.open("rb") as src, target.open("wb") as dst:
    while chunk := src.read(_CHUNK):
      dst.write(chunk)
      copied += len(chunk)
  return copied


def remove_dir(directory: AnyPath, commit: str | None = None) -> None:
  """Removes `directory` and what it holds; on a bucket, its `commit` file first (so a reader never takes what
  is left for complete while the rest goes)."""
  if not directory.exists():
    return
  if is_remote(directory):
    if commit and (directory / commit).exists():
      (directory / commit).unlink()
    directory.rmtree()
  elif directory.is_dir():
    shutil.rmtree(directory)
  else:
    directory.unlink()


def publish_dir(local: pathlib.Path, target: AnyPath, *, commit: str, replace: bool = False) -> AnyPath:
  """Puts the complete local directory `local` at `target` so that `target/commit` exists only once every other
  file is there: the files are uploaded, `commit` last, after an existing `target` is removed `commit` first (only
  with `replace`; otherwise an existing one is a FileExistsError)."""
  assert is_remote(target), target  # a local target is renamed into place (rejax.io.write_dir_atomic)
  if not (local / commit).is_file():
    raise AssertionError(f"{local}: no commit file {commit}")
  if target.exists() and any(target.iterdir()):
    if not replace:
      raise FileExistsError(f"{target} already exists")
    remove_dir(target, commit)
  names = [name for name, _ in files_under(local) if name != commit]
  for name in names + [commit]:
    copy_file(local / name, target / name)
  return target


def write_dir_remote(target: epath.Path, build: Callable[[pathlib.Path], object], *, commit: str,
                     replace: bool = False) -> epath.Path:
  """Builds a directory locally through `build(staging)` and publishes it to the bucket path `target`."""
  with tempfile.TemporaryDirectory(prefix="rejax-upload-") as staging:
    build(pathlib.Path(staging))
    return publish_dir(pathlib.Path(staging), target, commit=commit, replace=replace)
