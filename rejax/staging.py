"""Local copies of bucket inputs, made once per host: what must be a local file to be read (a model's safetensors,
memory-mapped slice by slice; a tokenizer; an evaluation dataset) is copied from `gs://` into a cache on this host's
disk and found there again by the next command, unless the bucket's objects changed (their names and sizes).

The cache is $REJAX_STAGING_DIR, else ~/.cache/rejax/staged, laid out as BUCKET/PATH. A copy appears whole
(rejax.io: built in a hidden sibling and renamed), so two commands on one host never read half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys
from typing import Callable

from rejax.io import write_dir_atomic, write_file_atomic, write_text_atomic
from rejax.storage import AnyPath, bucket_of, check_store, copy_file, files_under, is_remote

_CHUNK = 16 << 20


def staging_root() -> pathlib.Path:
  """Where staged copies live on this host: $REJAX_STAGING_DIR, else ~/.cache/rejax/staged."""
  configured = os.environ.get("REJAX_STAGING_DIR")
  return pathlib.Path(configured).expanduser() if configured else pathlib.Path.home() / ".cache" / "rejax" / "staged"


def staged(path: AnyPath, what: str, *, required: str | None = None,
           log: Callable[[str], None] | None = None) -> pathlib.Path:
  """A local copy of `path` (a file or a directory; returned as is when local). `required`: a file the directory
  must hold (config.json of a model: an upload that never completed is refused, not staged); `log` hears what is
  copied (default: a line on stderr, as a copy of a big model takes a while). Raises FileNotFoundError naming `what`
  when nothing is at `path`."""
  if not is_remote(path):
    return pathlib.Path(path)
  check_store(path, what)
  listing = _listing(path)
  if listing is None:
    raise FileNotFoundError(f"{what} {path}: no such object or directory")
  if required and required not in listing:
    raise FileNotFoundError(f"{what} {path}: no {required} (not a complete directory: an upload that did not "
                            "finish, or the wrong path)")
  digest = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]
  bucket = bucket_of(path)
  local = staging_root() / bucket / str(path)[len("gs://") + len(bucket) + 1:]
  stamp = local.with_name(f".{local.name}.staged.json")
  if local.exists() and stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
    return local
  total = sum(listing.values())
  (log or _to_stderr)(f"staging {path} ({len(listing)} file(s), {total / 2**20:.1f} MiB) into {local}")
  if "" in listing:  # one object
    write_file_atomic(local, lambda f: _copy_into(path, f), what=what, size=total)
  else:
    write_dir_atomic(local, lambda staging: [copy_file(path / name, staging / name) for name in listing],
                     what=what, size=total, replace=True)
  write_text_atomic(stamp, json.dumps({"source": str(path), "digest": digest, "bytes": total}) + "\n")
  return local


def _to_stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _copy_into(source: AnyPath, f) -> None:
  with source.open("rb") as src:
    shutil.copyfileobj(src, f, _CHUNK)


def _listing(path: AnyPath) -> dict[str, int] | None:
  """{relative name: size} of the objects at `path` ({"": size} for one object); None when there are none."""
  if path.is_file():
    return {"": path.stat().length}
  if not path.is_dir():
    return None
  return {name: entry.stat().length for name, entry in files_under(path)}
