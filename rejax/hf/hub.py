"""The Hugging Face hub, once for models and datasets: which arguments are hub ids (`is_hub_id`), fetching a repo's
files with snapshot_download (`snapshot`, a one-line RuntimeError naming the repo when it cannot), and model
arguments (`resolve_model_dir`: a local directory, `asset:NAME`, or a hub id). `rejax.eval.hub_data` builds
on this for the benchmark datasets."""

from __future__ import annotations

import pathlib

from rejax.assets import asset_dir
from rejax.staging import staged
from rejax.storage import as_path, is_remote

# What an embedding model needs from a hub repo: config, weights, tokenizer. Not *.bin, not GGUF.
_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "1_Pooling/*", "2_Normalize/*"]


def is_hub_id(source: str | pathlib.Path) -> bool:
  """True when `source` is not a local path but reads as a hub id `org/name`."""
  path = pathlib.Path(source).expanduser()
  name = str(source)
  if is_remote(name):
    return False
  return not path.exists() and name.count("/") == 1 and not name.startswith((".", "/", "~"))


def snapshot(repo_id: str, patterns: list[str], *, what: str, advice: str,
             repo_type: str | None = None) -> pathlib.Path:
  """A local directory holding the files of hub repo `repo_id` that match `patterns` (snapshot_download).

  Raises RuntimeError `could not fetch WHAT from the Hugging Face hub (ERROR). Offline? ADVICE` when they cannot be
  fetched (offline, HF_HUB_OFFLINE=1 and not cached, no access); `what` names the repo.
  """
  from huggingface_hub import snapshot_download  # only when a hub id is really asked for

  try:
    return pathlib.Path(snapshot_download(repo_id, repo_type=repo_type, allow_patterns=patterns))
  except Exception as e:
    raise RuntimeError(
        f"could not fetch {what} from the Hugging Face hub ({type(e).__name__}: {e}). Offline? {advice}") from e


def resolve_model_dir(model: str | pathlib.Path, what: str = "model") -> pathlib.Path:
  """A local directory holding the model: `model` itself if it is one, `asset:NAME` from rejax.assets
  (the offline tokenizers and SmolLM2), a gs:// directory staged on this host (rejax.staging), else its hub
  snapshot. `what` names the flag or config key in errors."""
  asset = asset_dir(model)
  if asset is not None:
    return asset
  if is_remote(model):
    return staged(as_path(model, what), what, required="config.json")
  path = pathlib.Path(model).expanduser()
  if path.is_dir():
    return path
  name = str(model)
  if not is_hub_id(name):
    raise FileNotFoundError(f"{name}: not a model directory (and not a hub id of the form 'org/name')")
  return snapshot(name, _PATTERNS, what=repr(name), advice=(
      "Pass a local model directory instead, or download it on a connected machine "
      f"(`huggingface-cli download {name}`) and point HF_HOME at that cache."))


def check_push_target(repo_id: str, output: str | pathlib.Path, flag: str = "--push-to-hub") -> None:
  """Raises InputError, before any work, when `output` cannot be pushed to hub repo `repo_id`: a malformed id, an
  output on a bucket (uploads are of a local directory), or a hub switched off here (HF_HUB_OFFLINE=1)."""
  from huggingface_hub import constants
  from huggingface_hub.utils import HFValidationError, validate_repo_id

  from rejax.errors import InputError

  try:
    validate_repo_id(repo_id)
  except HFValidationError as e:
    raise InputError(f"{flag} {repo_id}: not a hub repo id ORG/NAME ({str(e).splitlines()[0]})") from None
  if "/" not in repo_id:
    raise InputError(f"{flag} {repo_id}: give the repo as ORG/NAME (a user or organisation, then the model's name)")
  if is_remote(output):
    raise InputError(f"{flag} uploads a local directory; --output {output} is on a bucket: export to a local "
                     "directory to push it")
  if constants.HF_HUB_OFFLINE:
    raise InputError(f"{flag} {repo_id}: the hub is switched off here (HF_HUB_OFFLINE=1); export without it, then "
                     f"`huggingface-cli upload {repo_id} {output}` where the hub can be reached")


def push_to_hub(output: pathlib.Path, repo_id: str, flag: str = "--push-to-hub") -> str:
  """Uploads the directory `output` to hub model repo `repo_id` (created if needed); returns the commit's URL.
  A failure (no network, no token, no rights) is one RuntimeError line saying the export itself is complete."""
  from huggingface_hub import HfApi

  api = HfApi()
  try:
    api.create_repo(repo_id, exist_ok=True)
    commit = api.upload_folder(folder_path=str(output), repo_id=repo_id, commit_message="Upload a rejax export")
  except Exception as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise RuntimeError(f"{flag} {repo_id}: the upload failed ({type(e).__name__}: {reason}); the export is complete "
                       f"in {output}: upload it with `huggingface-cli upload {repo_id} {output}`") from e
  return str(getattr(commit, "commit_url", commit))
