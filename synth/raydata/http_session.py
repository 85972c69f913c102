"""The aiohttp session Ray Data's HTTP request stage posts with: our API key and our reading of HTTP statuses.

Ray's stage retries 408, 429, 502, 503, 504, timeouts and dropped connections itself (`max_retries`, doubling
from `backoff_s`); it keeps whatever `response.json()` gives. So the session (1) turns HTTP 500 into a dropped
connection, which Ray retries as synth.backends.openai_http does, and (2) answers `json()` with the status and
the raw body, so that `read_answer` applies the local backend's rules: 200 an answer, 400/413/422 a refusal of
that one request, anything else (401, 403, 404) fails the stage. The key is read on the worker from the
environment variable the backend block names: it never travels through Ray's task arguments or logs.
"""

from __future__ import annotations

import functools
import json
import os

import aiohttp

from synth.backends.base import BackendError
from synth.backends.openai_http import DETAIL_CHARS, REJECTED_STATUS, key_hint
from synth.report import redact, register_secret


class StatusResponse(aiohttp.ClientResponse):
  """A response whose `json()` is `{"status", "text"}`: Ray's stage hands it on as the row's `http_response`."""

  async def json(self, **kwargs) -> dict:
    # Redacted here, on the worker: a body that echoes the key must not enter Ray's rows (or its error logs).
    return {"status": self.status, "text": redact(await self.text(errors="replace"))}


class ServerError(aiohttp.ClientConnectionError):
  """HTTP 500, raised where Ray's stage retries a dropped connection."""


async def _retry_500(response: aiohttp.ClientResponse) -> None:
  if response.status == 500:
    raise ServerError(f"HTTP 500 {response.reason}")


def open_session(api_key_env: str, timeout_s: float) -> aiohttp.ClientSession:
  """A session that sends `Authorization: Bearer $API_KEY_ENV` (when set) and reads statuses as above."""
  key = os.environ.get(api_key_env) if api_key_env else None
  register_secret(key)
  headers = {"Authorization": f"Bearer {key}"} if key else {}
  return aiohttp.ClientSession(headers=headers, response_class=StatusResponse, raise_for_status=_retry_500,
                               timeout=aiohttp.ClientTimeout(total=timeout_s))


def session_factory(api_key_env: str, timeout_s: float):
  """The `session_factory` of HttpRequestProcessorConfig: picklable, holding the variable's name, not the key."""
  return functools.partial(open_session, api_key_env, timeout_s)


def read_answer(url: str, response: dict, api_key_env: str) -> tuple[str | None, str]:
  """(answer, "") or (None, why the server refused this request); BackendError when it cannot serve any."""
  key = os.environ.get(api_key_env) if api_key_env else None
  register_secret(key)  # this worker's redaction knows the key too
  status, text = int(response["status"]), str(response["text"])
  if status == 200:
    try:
      return json.loads(text)["choices"][0]["message"]["content"], ""
    except (ValueError, KeyError, IndexError, TypeError) as e:
      raise BackendError(f"{url}: HTTP 200 but not a chat completion ({type(e).__name__}); is base_url the "
                         "server's /v1 address?") from None
  why = redact(f"HTTP {status}: {' '.join(text.split())[:DETAIL_CHARS] or '(empty body)'}")
  if status in REJECTED_STATUS:
    return None, why
  raise BackendError(f"{url}: {why}{key_hint(status, api_key_env, key is not None)}")
