"""The generation interface every backend implements: batched chat requests in, completion texts out.

A request is a list of chat messages (`{"role": ..., "content": ...}`). When the last message is the
assistant's, the backend continues that message instead of starting a new turn (a response prefix), and
returns only the continuation.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol, Sequence

Messages = Sequence[Mapping[str, str]]


class BackendError(RuntimeError):
  """The backend could not serve a batch (bad key, server down, retries exhausted, no answer to any request).

  The message is one line naming the backend (URL) and the cause; the unit in flight is not persisted.
  """


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Per-stage sampling settings, passed to every backend unchanged."""

  temperature: float = 1.0
  top_p: float = 1.0
  max_tokens: int = 512
  seed: int | None = None


class Backend(Protocol):
  """Anything that answers batches of chat requests."""

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """One completion per request, in request order; None where that one request failed for good."""

  def close(self) -> None:
    """Frees the model or connections; the backend is unusable afterwards."""


def continues(messages: Messages) -> bool:
  """True when the request ends with an assistant message to be continued (a response prefix)."""
  return bool(messages) and messages[-1]["role"] == "assistant"
