"""A deterministic backend whose answers come from a Python function: for tests and dry runs."""

from __future__ import annotations

from typing import Callable, Sequence

from synth.backends.base import Messages, Sampling


class ScriptedBackend:
  """Answers each request with `respond(messages, sampling)`; records every request it saw."""

  def __init__(self, respond: Callable[[Messages, Sampling], str | None]):
    self.respond = respond
    self.calls: list[tuple[Messages, Sampling]] = []
    self.batches = 0

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """`respond`'s answer per request, in order."""
    self.batches += 1
    answers = []
    for messages in requests:
      self.calls.append((messages, sampling))
      answers.append(self.respond(messages, sampling))
    return answers

  def close(self) -> None:
    """Nothing to free."""
