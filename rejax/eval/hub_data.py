"""Resolve a benchmark argument: a local directory, or a Hugging Face dataset repo fetched on demand (the hub
rules and the fetch itself are rejax.hf.hub's)."""

from __future__ import annotations

import pathlib

from rejax.hf.hub import snapshot


def dataset_snapshot(repo_id: str, patterns: list[str]) -> pathlib.Path:
  """A local directory holding the files of hub dataset `repo_id` that match `patterns`.

  Raises RuntimeError naming the dataset when it cannot be fetched (offline, HF_HUB_OFFLINE=1, no access).
  """
  return snapshot(repo_id, patterns, repo_type="dataset", what=f"the dataset {repo_id!r} ({', '.join(patterns)})",
                  advice="Download it on a connected machine "
                         f"(`huggingface-cli download --repo-type dataset {repo_id}`) and pass its local directory "
                         "instead.")
