"""What synth prints and writes, with its secrets taken out.

A backend that reads an API key registers it (`register_secret`); every line synth prints (`say`, the CLI's
error line) and every JSONL file it writes under the workdir (synth.units.write_jsonl_atomic) goes through
`redact`, which replaces each registered key with `***`. So a server that echoes the Authorization header
in an error body, or even in an answer, never gets the key onto the terminal, into a log or into a file.
Values shorter than MIN_SECRET_CHARS are placeholders such as `EMPTY` (local servers ignore the key);
taking those out would mangle ordinary text, so they are not treated as secrets.
"""

from __future__ import annotations

import json
import sys

MASK = "***"
MIN_SECRET_CHARS = 8
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
  """Treats `value` (and its JSON-escaped form) as a secret from now on in this process."""
  if value and len(value) >= MIN_SECRET_CHARS:
    _secrets.add(value)
    _secrets.add(json.dumps(value)[1:-1])


def redact(text: str) -> str:
  """`text` with every registered secret replaced by `***` (longest first, so no part of one survives)."""
  for secret in sorted(_secrets, key=len, reverse=True):
    text = text.replace(secret, MASK)
  return text


def say(text: str) -> None:
  """A `[synth] ...` progress or warning line on stderr, redacted."""
  print(f"[synth] {redact(text)}", file=sys.stderr, flush=True)
