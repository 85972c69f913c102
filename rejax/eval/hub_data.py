"""Resolve a benchmark argument: a local directory, or a Hugging Face dataset repo fetched on demand."""

from __future__ import annotations

import pathlib


def is_hub_id(source: str | pathlib.Path) -> bool:
  """True when `source` is not a local path but reads as a hub id `org/name`."""
  path = pathlib.Path(source).expanduser()
  name = str(source)
  return not path.exists() and name.count("/") == 1 and not name.startswith((".", "/", "~"))


def dataset_snapshot(repo_id: str, patterns: list[str]) -> pathlib.Path:
  """A local directory holding the files of hub dataset `repo_id` that match `patterns`.

  Raises RuntimeError naming the dataset when it cannot be fetched (offline, HF_HUB_OFFLINE=1, no access).
  """
  from huggingface_hub import snapshot_download  # only when a hub id is really asked for

  try:
    return pathlib.Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))
  except Exception as e:
    raise RuntimeError(
        f"could not fetch the dataset {repo_id!r} ({', '.join(patterns)}) from the Hugging Face hub "
        f"({type(e).__name__}: {e}). Offline? Download it on a connected machine "
        f"(`huggingface-cli download --repo-type dataset {repo_id}`) and pass its local directory instead."
    ) from e
