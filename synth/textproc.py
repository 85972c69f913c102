"""Small text functions of the stages: query cleanup, stand-alone check, answer parsing, content hashes."""

from __future__ import annotations

import hashlib
import re

_FENCE = re.compile(r"^```[\w+-]*\n(.*?)\n?```$", re.S)
_LABEL = re.compile(r"^(?:\*\*)?(?:query|question|new query|generated query)(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.I)
_PREAMBLE = re.compile(r"^(?:here is|here's|sure[,!.]?)[^\n]*:\s*\n", re.I)
_QUOTES = ('"', "'", "\u201c\u201d", "\u2018\u2019", "`")
# A reference back to the text the query was written from: "the passage", "this document", "the above text".
_SOURCE_REF = re.compile(
  r"\b(?:the|this|that|above|given|provided|following|attached)\s+"
  r"(?:passage|document|text|article|excerpt|paper|snippet|source|context|reading)s?\b", re.I)
_SCORE = re.compile(r"<score>\s*([0-9]+)\s*</score>", re.I)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.I)


def clean_query(text: str) -> str:
  """The generated query without a preamble, a `Query:` label, wrapping quotes or a code fence."""
  previous = None
  text = text.strip()
  while text != previous:  # wrappers nest in any order: a fence around a label around quotes
    previous = text
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _LABEL.sub("", text, count=1).strip()
    fenced = _FENCE.match(text)
    if fenced:
      text = fenced.group(1).strip()
    for quote in _QUOTES:
      if len(text) >= 2 and text.startswith(quote[0]) and text.endswith(quote[-1]):
        text = text[1:-1].strip()
  return text


def refers_to_source(text: str) -> bool:
  """True when the query points at its source ("the passage", "this document"): it would not stand alone."""
  return _SOURCE_REF.search(text) is not None


def parse_score(text: str, low: int = 1, high: int = 5) -> int | None:
  """The integer in the last `<score>N</score>` of an annotation, or None when absent or out of [low, high]."""
  found = _SCORE.findall(text or "")
  if not found:
    return None
  score = int(found[-1])
  return score if low <= score <= high else None


def parse_completed_score(tail: str, low: int = 1, high: int = 5) -> int | None:
  """The integer a continuation of an open `<score>` tag starts with (the closing tag may be missing), or None."""
  match = re.match(r"\s*([0-9]+)(?![0-9.])", tail or "")
  score = int(match.group(1)) if match else None
  return score if score is not None and low <= score <= high else None


def parse_yes_no(text: str) -> bool | None:
  """True / False for an answer starting with Yes / No, else None."""
  match = _YES_NO.match(text or "")
  return None if match is None else match.group(1).lower() == "yes"


def normalise(text: str) -> str:
  """Lower case with whitespace collapsed: the form duplicates are judged on."""
  return " ".join(text.lower().split())


def content_hash(text: str) -> str:
  """A short stable hash of the normalised text."""
  return hashlib.sha256(normalise(text).encode()).hexdigest()[:16]


def stable_seed(*parts: object) -> int:
  """A 64-bit seed from any printable values, equal across processes and machines (unlike hash())."""
  return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")
