"""Generation through any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, SGLang, `transformers serve`).

Requests run `concurrency` at a time; with several servers (`base_url` a tuple of URLs), request i of a batch
goes to server i % N. What an HTTP failure means decides what happens to the batch:
  HTTP 400, 413, 422   the server refuses that one request (too long for the context, say): its answer is None
                       and the stage counts it as dropped; a batch whose every request is refused fails instead
  HTTP 408, 429, 5xx,  transient: retried with exponential backoff (a server's `Retry-After` is honoured)
  timeouts, no connection
  anything else        the server cannot serve any request (401/403 a bad key, 404 a wrong base_url or model):
                       the batch fails at once
A failed batch raises BackendError (one line: URL and cause) after the other requests are stopped, so
nothing of it is persisted and a re-run after the server is fixed does the work. The API key is read from
an environment variable, sent only in the Authorization header and registered with synth.report, so an
error body or answer that echoes it is printed and written as `***`.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import random
import socket
import threading
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from synth.backends.base import BackendError, Messages, Sampling, continues
from synth.report import redact, register_secret, say

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
REJECTED_STATUS = {400, 413, 422}  # about one request; any other status is about the server
TRANSPORT_ERRORS = (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException)
DETAIL_CHARS = 200  # of an error body, in a message
BODY_BYTES = 1 << 16  # read (and redacted) before the message takes its first DETAIL_CHARS


class OpenAIBackend:
  """A client for one model behind an OpenAI-compatible server."""

  def __init__(self, base_url: str | Sequence[str], model: str, *, api_key_env: str = "OPENAI_API_KEY",
               concurrency: int = 16, timeout_s: float = 600.0, max_retries: int = 5, backoff_s: float = 1.0,
               max_backoff_s: float = 60.0, extra_body: Mapping[str, Any] | None = None):
    self.urls = chat_urls(base_url)  # request i of a batch goes to server i % len(urls)
    self.url = self.urls[0] if len(self.urls) == 1 else "{" + ", ".join(self.urls) + "}"
    self.model = model
    self.api_key_env = api_key_env
    self._api_key = os.environ.get(api_key_env) if api_key_env else None
    register_secret(self._api_key)
    self.concurrency, self.timeout_s = concurrency, timeout_s
    self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
    self.extra_body = dict(extra_body or {})
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="synth-http")

  def __repr__(self) -> str:  # never the key itself
    key = f"${self.api_key_env} set" if self._api_key else "no key"
    return f"OpenAIBackend({self.url}, model={self.model!r}, {key})"

  def payload(self, messages: Messages, sampling: Sampling) -> dict:
    """The JSON body of one request (`chat_payload`)."""
    return chat_payload(self.model, messages, sampling, self.extra_body)

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """Each request's `choices[0].message.content`, in order; None for a request the server refused.

    Raises BackendError when a request cannot be served (the others are stopped) or every one is refused.
    """
    stop = threading.Event()
    futures = [self._pool.submit(self._post, self.urls[i % len(self.urls)], self.payload(m, sampling), stop)
               for i, m in enumerate(requests)]
    concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
    failed = next((f for f in futures if f.done() and f.exception() is not None), None)
    if failed is not None:
      stop.set()
      for f in futures:
        f.cancel()
      raise failed.exception()
    results = [f.result() for f in futures]
    refused = [(i, why) for i, (_, why) in enumerate(results) if why]
    if refused and len(refused) == len(results):
      raise BackendError(f"{self.url}: the server refused all {len(results)} requests of the batch; "
                         f"first: {refused[0][1]}")
    for i, why in refused:
      say(f"{self.url}: request {i} refused: {why}")
    return [answer for answer, _ in results]

  def _post(self, url: str, body: dict, stop: threading.Event) -> tuple[str | None, str]:
    """(answer, "") or (None, why the server refused this request); BackendError when it cannot be served."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if self._api_key:
      headers["Authorization"] = f"Bearer {self._api_key}"
    for attempt in range(self.max_retries + 1):
      if stop.is_set():  # another request of the batch failed: its error is the batch's
        return None, ""
      wait = None
      try:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
          return self._content(url, response.read()), ""
      except urllib.error.HTTPError as e:
        why = redact(_one_line(f"HTTP {e.code} {e.reason}: {_detail(e)}"))
        if e.code in REJECTED_STATUS:
          return None, why
        if e.code not in RETRY_STATUS:
          raise BackendError(f"{url}: {why}{key_hint(e.code, self.api_key_env, bool(self._api_key))}") from None
        wait = _retry_after(e.headers)
      except TRANSPORT_ERRORS as e:
        why = self._transport_failure(e)
      if attempt == self.max_retries:
        raise BackendError(f"{url}: a request failed after {self.max_retries + 1} attempts; last: {why}")
      delay = wait if wait is not None else min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
      stop.wait(delay * (1 + 0.1 * random.random()))  # jitter keeps concurrent retries apart
    raise AssertionError("unreachable")

  def _content(self, url: str, raw: bytes) -> str | None:
    """`choices[0].message.content` of a response body; BackendError when it is not a chat completion."""
    try:
      return json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
      raise BackendError(f"{url}: HTTP 200 but not a chat completion ({type(e).__name__}: "
                         f"{redact(_one_line(str(e)))}); is base_url the server's /v1 address?") from None


  def _transport_failure(self, error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, ConnectionRefusedError):
      return "connection refused (is the server running?)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
      return f"no answer within timeout_s={self.timeout_s:g}"
    return redact(_one_line(f"{type(reason).__name__}: {reason}"))

  def close(self) -> None:
    """Stops the worker threads."""
    self._pool.shutdown(wait=False, cancel_futures=True)


def chat_payload(model: str, messages: Messages, sampling: Sampling, extra_body: Mapping[str, Any]) -> dict:
  """The JSON body of one chat request; a final assistant message is continued (vLLM / SGLang extension)."""
  body = {"model": model, "messages": [dict(m) for m in messages], "temperature": sampling.temperature,
          "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, **extra_body}
  if sampling.seed is not None:
    body["seed"] = sampling.seed
  if continues(messages):
    body.update(add_generation_prompt=False, continue_final_message=True)
  return body


def chat_urls(base_url: str | Sequence[str]) -> list[str]:
  """The `/chat/completions` address of each server of `base_url` (one URL, or several)."""
  urls = [base_url] if isinstance(base_url, str) else list(base_url)
  return [url.rstrip("/") + "/chat/completions" for url in urls]


def key_hint(status: int, api_key_env: str, key_set: bool) -> str:
  """For HTTP 401/403, where the key comes from and whether it is set (never the key); else ""."""
  if status not in (401, 403):
    return ""
  if not api_key_env:
    return " (no API key is sent: api_key_env is empty)"
  return f" (the API key comes from ${api_key_env}, which is {'set' if key_set else 'not set'})"


def _one_line(text: str) -> str:
  return " ".join(text.split())


def _detail(error: urllib.error.HTTPError) -> str:
  """The start of an error body on one line, the key taken out (a server may echo the request's headers)."""
  try:
    body = error.read(BODY_BYTES).decode("utf-8", "replace")
  except (OSError, http.client.HTTPException):
    body = ""
  return _one_line(redact(body))[:DETAIL_CHARS] or "(empty body)"


def _retry_after(headers) -> float | None:
  value = headers.get("Retry-After") if headers else None
  try:
    return float(value) if value is not None else None
  except ValueError:
    return None
