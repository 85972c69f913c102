"""The shipped sample collections (sample_data/) are the bytes their PROVENANCE.md records: every data file
has its sha256 there, and no recorded file is missing. Rebuilding them needs the upstream files (see
sample_data/README.md: `scripts/make_*_fixture.py SOURCE --check DIR`)."""

from __future__ import annotations

import hashlib
import pathlib
import re

import pytest

SAMPLE_DATA = pathlib.Path(__file__).resolve().parents[1] / "sample_data"
COLLECTIONS = ("cacm", "clinical_trials", "reason_embed", "stackexchange")


def recorded_sha256(provenance: pathlib.Path) -> dict[str, str]:
  """{file: sha256} from the table rows `| `file` | ... | `sha256` |` of a PROVENANCE.md."""
  return dict(re.findall(r"^\| `([\w./-]+)` \|.*\| `([0-9a-f]{64})` \|$", provenance.read_text(encoding="utf-8"), re.M))


@pytest.mark.parametrize("name", COLLECTIONS)
def test_shipped_files_have_the_sha256_in_provenance(name):
  root = SAMPLE_DATA / name
  shipped = {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(root.rglob("*")) if path.is_file() and path.name != "PROVENANCE.md"}
  assert shipped and recorded_sha256(root / "PROVENANCE.md") == shipped


def test_every_collection_is_listed():
  assert sorted(p.name for p in SAMPLE_DATA.iterdir() if p.is_dir()) == list(COLLECTIONS)
  readme = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
  assert all(f"| `{name}/` |" in readme for name in COLLECTIONS)
