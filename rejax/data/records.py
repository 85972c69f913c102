"""The training record: the released reason-embed-data JSONL schema, its validation, and its TFDS form.

A record is one line of `{domain}-formatted.jsonl`:

    {"prompt": str, "query": str, "reasoning_query": str, "pos": [str, ...], "neg": [str, ...],
     "train_group_size": int?, "batch_size": int?, "pos_scores": [float]?, "neg_scores": [float]?, ...}

`prompt` is the task instruction (queries are formatted `Instruct: {prompt}\\nQuery: {query}`).
Fields beyond these are kept verbatim (as JSON in `extra`), so a conversion never loses data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from rejax.errors import InputError, RecordError
from rejax.rows import parse_json_line

REQUIRED = ("prompt", "query", "pos", "neg")
OPTIONAL_INTS = ("train_group_size", "batch_size")
OPTIONAL_FLOATS = ("pos_scores", "neg_scores")
UNSET = -1  # stored for an absent optional integer
DOMAIN_PATTERN = re.compile(r"^[a-z0-9_]+$")




def domain_of(path: str) -> str:
  """The domain named by a released file name: `biology-formatted.jsonl[.gz]` -> `biology`."""
  name = path.rsplit("/", 1)[-1]
  for suffix in (".gz", ".jsonl", "-formatted"):
    name = name.removesuffix(suffix)
  if not DOMAIN_PATTERN.match(name):
    raise RecordError(f"{path}: cannot take a domain from the file name ({name!r}); name files "
                      "`{domain}-formatted.jsonl` with a domain of lowercase letters, digits and `_`")
  return name


def parse_record(line: str, where: str, *, negatives_required: bool = True) -> dict[str, Any]:
  """The validated record of one JSONL line; `where` (`file:line`) prefixes every error. With
  negatives_required=False, `neg` may be missing or empty (records whose negatives are still to be mined)."""
  try:
    record = parse_json_line(line, where)
  except InputError as e:  # a RecordError, as every problem of a record: `rejax data convert --skip-invalid` skips it
    raise RecordError(str(e)) from None
  if not negatives_required and not record.get("neg"):
    record.setdefault("neg", [])
  missing = [k for k in REQUIRED if k not in record]
  if missing:
    raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
  for key in ("prompt", "query", "reasoning_query"):
    if key in record and not isinstance(record[key], str):
      raise RecordError(f"{where}: `{key}` must be a string, got {type(record[key]).__name__}")
  for key in ("pos", "neg"):
    texts = record[key]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
      raise RecordError(f"{where}: `{key}` must be a list of strings")
    if not texts and (key == "pos" or negatives_required):
      raise RecordError(f"{where}: `{key}` is empty; a record needs at least one positive and one negative")
  for key in OPTIONAL_INTS:
    value = record.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise RecordError(f"{where}: `{key}` must be a positive integer, got {value!r}")
  for key, texts in zip(OPTIONAL_FLOATS, ("pos", "neg")):
    scores = record.get(key)
    if scores is None:
      continue
    if not isinstance(scores, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                               and math.isfinite(s) for s in scores):
      raise RecordError(f"{where}: `{key}` must be a list of finite numbers")
    if len(scores) != len(record[texts]):
      raise RecordError(f"{where}: `{key}` has {len(scores)} entries for {len(record[texts])} `{texts}`")
  return record


def has_teacher_scores(record: dict[str, Any]) -> bool:
  """Whether a record carries a teacher's scores of every passage (`pos_scores` and `neg_scores`)."""
  return "pos_scores" in record and "neg_scores" in record


def tfds_features():
  """The TFDS FeaturesDict of a stored record (texts are UTF-8; absent optionals are UNSET / empty)."""
  import tensorflow_datasets as tfds

  text = tfds.features.Text()
  return tfds.features.FeaturesDict({
    "prompt": tfds.features.Text(doc="Task instruction: queries are `Instruct: {prompt}\\nQuery: {query}`."),
    "query": tfds.features.Text(doc="The query."),
    "reasoning_query": tfds.features.Text(doc="Reasoning-expanded rewrite of the query (RI-InfoNCE); may be empty."),
    "pos": tfds.features.Sequence(text, doc="Positive documents."),
    "neg": tfds.features.Sequence(text, doc="Hard-negative documents."),
    "train_group_size": tfds.features.Scalar(np.int32, doc=f"Optional group size G; {UNSET} when absent."),
    "batch_size": tfds.features.Scalar(np.int32, doc=f"Optional per-device batch; {UNSET} when absent."),
    "pos_scores": tfds.features.Sequence(np.float64, doc="Optional scores of `pos`; empty when absent."),
    "neg_scores": tfds.features.Sequence(np.float64, doc="Optional scores of `neg`; empty when absent."),
    "present": tfds.features.Sequence(text, doc="Names of the optional fields the source record had."),
    "extra": tfds.features.Text(doc="Any other fields of the source line, as a JSON object."),
    "source": tfds.features.Text(doc="`file:line` of the source record."),
  })


OPTIONAL = ("reasoning_query", *OPTIONAL_INTS, *OPTIONAL_FLOATS)


def to_example(record: dict[str, Any], source: str) -> dict[str, Any]:
  """The TFDS example of a validated record."""
  extra = {k: v for k, v in record.items() if k not in REQUIRED and k not in OPTIONAL}
  return {
    "prompt": record["prompt"], "query": record["query"], "reasoning_query": record.get("reasoning_query", ""),
    "pos": record["pos"], "neg": record["neg"],
    **{k: record.get(k) or UNSET for k in OPTIONAL_INTS},
    **{k: record.get(k, []) for k in OPTIONAL_FLOATS},
    "present": [k for k in OPTIONAL if k in record],
    "extra": json.dumps(extra, ensure_ascii=False) if extra else "",
    "source": source,
  }


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def from_example(example: dict[str, Any]) -> dict[str, Any]:
  """The record a stored example came from: the exact inverse of `to_example`."""
  present = {_text(k) for k in example["present"]}
  record: dict[str, Any] = {"prompt": _text(example["prompt"]), "query": _text(example["query"])}
  if "reasoning_query" in present:
    record["reasoning_query"] = _text(example["reasoning_query"])
  record["pos"] = [_text(t) for t in example["pos"]]
  record["neg"] = [_text(t) for t in example["neg"]]
  record.update({k: int(example[k]) for k in OPTIONAL_INTS if k in present})
  record.update({k: [float(s) for s in example[k]] for k in OPTIONAL_FLOATS if k in present})
  if _text(example["extra"]):
    record.update(json.loads(_text(example["extra"])))
  return record
