"""`rejax data convert`: released JSONL -> a TFDS dataset in ArrayRecord files, one split per domain.

The output directory is a plain TFDS dataset directory (`tfds.builder_from_directory(DIR)`,
`as_data_source(split=domain)`; no TensorFlow needed) plus `manifest.json` with per-domain counts.
It is built under the hidden `.DIR.partial-HOST-PID` and renamed into place only when complete, so a directory named
DIR is always a finished conversion. A gs:// output (ArrayRecord cannot be written to a bucket) is built in a local
temporary directory and uploaded with the manifest last: a dataset on a bucket without its manifest is not one.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import glob
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Iterator, Sequence

from rejax.data.records import RecordError, domain_of, has_teacher_scores, parse_record, tfds_features, to_example
from rejax.io import remove_stale_temps, temp_sibling
from rejax.rows import check_file, text_lines
from rejax.storage import as_path, is_remote, publish_dir

DATASET_NAME = "reason_embed"
MANIFEST = "manifest.json"


def expand_inputs(patterns: Sequence[str | os.PathLike]) -> dict[str, list[str]]:
  """Input files grouped by domain (from the file names), each domain's files sorted."""
  files = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.fspath(pattern)))
    if not matches:
      raise FileNotFoundError(f"no input file matches {os.fspath(pattern)!r}")
    files.extend(matches)
  by_domain: dict[str, list[str]] = collections.defaultdict(list)
  for path in dict.fromkeys(files):  # de-duplicated, order kept
    if not path.endswith((".jsonl", ".jsonl.gz")):
      raise RecordError(f"{path}: expected a .jsonl or .jsonl.gz file")
    check_file(pathlib.Path(path))  # a glob matches directories too
    if os.path.getsize(path) == 0:
      raise RecordError(f"{path}: empty file (no records)")
    by_domain[domain_of(path)].append(path)
  return {domain: sorted(paths) for domain, paths in sorted(by_domain.items())}


def read_lines(path: str) -> Iterator[tuple[int, str]]:
  """(line number, line) of a .jsonl or .jsonl.gz file, blank lines skipped; a file without any lines, invalid
  UTF-8 or a damaged .gz raise an error naming the file (and line)."""
  count = 0
  for count, (lineno, line) in enumerate(text_lines(path), start=1):
    yield lineno, line
  if not count:
    raise RecordError(f"{path}: no records (only blank lines)")


def _builder_class():
  """The TFDS builder (defined lazily: importing tensorflow_datasets takes a few seconds)."""
  import tensorflow_datasets as tfds

  class ReasonEmbed(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Training records in the reason-embed-data format; one split per domain."""

    name = DATASET_NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Released reason-embed-data schema (prompt, query, reasoning_query, pos, neg)."}

    def __init__(self, *, inputs: dict[str, list[str]], skip_invalid: bool, **kwargs):
      self._inputs, self._skip_invalid = inputs, skip_invalid
      self.skipped: dict[str, list[str]] = collections.defaultdict(list)
      self.unscored: dict[str, list[str]] = collections.defaultdict(list)  # records without teacher scores
      super().__init__(**kwargs)

    def _info(self):
      return self.dataset_info_from_configs(
        features=tfds_features(), disable_shuffling=True,  # records keep their input order
        description=__doc__, homepage="https://arxiv.org/abs/2510.08252")

    def _split_generators(self, dl_manager):
      del dl_manager
      return {domain: self._generate_examples(domain) for domain in self._inputs}

    def _generate_examples(self, domain):
      for path in self._inputs[domain]:
        for lineno, line in read_lines(path):
          where = f"{path}:{lineno}"
          try:
            record = parse_record(line, where)
          except RecordError as e:
            if not self._skip_invalid:
              raise
            self.skipped[domain].append(str(e))
            continue
          if not has_teacher_scores(record):
            self.unscored[domain].append(where)
          yield where, to_example(record, where)

  return ReasonEmbed


def convert(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, skip_invalid: bool = False,
            num_shards: int | None = None) -> dict:
  """Converts released JSONL files to a TFDS/ArrayRecord dataset at `output`; returns its manifest.

  `inputs` are paths or globs of `{domain}-formatted.jsonl[.gz]`. A malformed line raises RecordError
  naming `file:line` (nothing is left at `output`), or with skip_invalid=True is skipped and counted.
  `num_shards` per split overrides TFDS's size-based sharding (64 MiB .. 1 GiB per shard).
  """
  output = as_path(output, "--output")
  if output.exists():
    raise FileExistsError(f"{output} already exists; remove it or choose another --output")
  if is_remote(output):
    with tempfile.TemporaryDirectory(prefix="rejax-convert-") as local:
      manifest = convert(inputs, pathlib.Path(local) / "dataset", skip_invalid=skip_invalid, num_shards=num_shards)
      publish_dir(pathlib.Path(local) / "dataset", output, commit=MANIFEST)
    return manifest
  by_domain = expand_inputs(inputs)
  import tensorflow_datasets as tfds  # after the cheap checks: the import takes seconds
  output.parent.mkdir(parents=True, exist_ok=True)
  remove_stale_temps(output)  # what a killed conversion to the same output left
  staging = temp_sibling(output, "partial")
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir()
  try:
    builder = _builder_class()(inputs=by_domain, skip_invalid=skip_invalid, data_dir=str(staging),
                               file_format="array_record")
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints the staging path as if it were final
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=num_shards))
    version_dir = pathlib.Path(builder.data_dir)
    manifest = _manifest(builder, by_domain)
    (version_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    version_dir.rename(output)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  for domain, errors in builder.skipped.items():
    print(f"{domain}: skipped {len(errors)} invalid line(s), first: {errors[0]}", file=sys.stderr)
  return manifest


def _manifest(builder, by_domain: dict[str, list[str]]) -> dict:
  splits = builder.info.splits
  return {
    "format": "tfds/array_record", "dataset": DATASET_NAME, "version": str(builder.info.version),
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "domains": {domain: {"records": splits[domain].num_examples, "shards": splits[domain].num_shards,
                         "skipped": len(builder.skipped.get(domain, [])), "inputs": paths,
                         **_teacher_scores(splits[domain].num_examples, builder.unscored.get(domain, []))}
                for domain, paths in by_domain.items()},
    "records": sum(splits[d].num_examples for d in by_domain),
  }


def _teacher_scores(records: int, unscored: list[str]) -> dict:
  """The manifest's count of a domain's records with teacher scores (pos_scores and neg_scores, what distillation
  needs: rejax.data.pipeline) and the `file:line` of the first without them."""
  return {"scored": records - len(unscored), **({"first_unscored": unscored[0]} if unscored else {})}


def read_manifest(directory: str | os.PathLike) -> dict:
  """The manifest of a converted dataset; a clear error when `directory` is not one."""
  path = as_path(directory) / MANIFEST
  if not path.is_file():
    raise FileNotFoundError(f"{directory}: not a converted dataset (no {MANIFEST}); "
                            "create one with `rejax data convert --input GLOB --output DIR`")
  return json.loads(path.read_text())
