"""Generation through any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, SGLang, `transformers serve`).

Requests run `concurrency` at a time. A request that times out, cannot connect, or gets HTTP 408, 429
or 5xx is retried with exponential backoff (a server's `Retry-After` is honoured); when its retries
run out the whole batch fails with BackendError, so nothing of it is persisted and a re-run retries it.
Any other HTTP error rejects that one request (its answer is None; the stage counts it as dropped).
The API key is read from an environment variable and sent only in the Authorization header: it is never
logged, printed or put in an error message.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from synth.backends.base import BackendError, Messages, Sampling, continues

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAIBackend:
  """A client for one model behind an OpenAI-compatible server."""

  def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16,
               timeout_s: float = 600.0, max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
               extra_body: Mapping[str, Any] | None = None):
    self.url = base_url.rstrip("/") + "/chat/completions"
    self.model = model
    self.api_key_env = api_key_env
    self._api_key = os.environ.get(api_key_env) if api_key_env else None
    self.concurrency, self.timeout_s = concurrency, timeout_s
    self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
    self.extra_body = dict(extra_body or {})
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="synth-http")

  def __repr__(self) -> str:  # never the key itself
    key = f"${self.api_key_env} set" if self._api_key else "no key"
    return f"OpenAIBackend({self.url}, model={self.model!r}, {key})"

  def payload(self, messages: Messages, sampling: Sampling) -> dict:
    """The JSON body of one request; a final assistant message is continued (vLLM / SGLang extension)."""
    body = {"model": self.model, "messages": [dict(m) for m in messages], "temperature": sampling.temperature,
            "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, **self.extra_body}
    if sampling.seed is not None:
      body["seed"] = sampling.seed
    if continues(messages):
      body.update(add_generation_prompt=False, continue_final_message=True)
    return body

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """Each request's `choices[0].message.content`, in order; None for a request the server rejected."""
    futures = [self._pool.submit(self._post, self.payload(m, sampling), i) for i, m in enumerate(requests)]
    try:
      return [f.result() for f in futures]
    except BackendError:
      for f in futures:
        f.cancel()
      raise

  def _post(self, body: dict, index: int) -> str | None:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if self._api_key:
      headers["Authorization"] = f"Bearer {self._api_key}"
    for attempt in range(self.max_retries + 1):
      wait, why = None, ""
      try:
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
          return _content(json.loads(response.read()))
      except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode("utf-8", "replace")
        if e.code not in RETRY_STATUS:
          print(f"[synth] {self.url}: request {index} rejected: HTTP {e.code}: {detail}", file=sys.stderr)
          return None
        why, wait = f"HTTP {e.code}: {detail}", _retry_after(e.headers)
      except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
        why = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
      except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        print(f"[synth] {self.url}: request {index}: malformed response ({type(e).__name__}: {e})", file=sys.stderr)
        return None
      if attempt == self.max_retries:
        raise BackendError(f"{self.url}: request {index} failed after {self.max_retries + 1} attempts; last: {why}")
      delay = wait if wait is not None else min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
      time.sleep(delay * (1 + 0.1 * random.random()))  # jitter keeps concurrent retries apart
    raise AssertionError("unreachable")

  def close(self) -> None:
    """Stops the worker threads."""
    self._pool.shutdown(wait=False, cancel_futures=True)


def _content(response: dict) -> str | None:
  return response["choices"][0]["message"]["content"]


def _retry_after(headers) -> float | None:
  value = headers.get("Retry-After") if headers else None
  try:
    return float(value) if value is not None else None
  except ValueError:
    return None
