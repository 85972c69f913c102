"""The ray engine (synth.raydata) on a local Ray instance (2 CPUs, one per test session) against the loopback
OpenAI-compatible server of tests/test_synth_openai.py: the same bytes as the local engine, the same promises.

The instance is started once (about 20 s on 2 loaded cores); the CLI runs in subprocesses join it through
`--config.ray.address`, so a killed driver leaves it up, as a real cluster would be.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import pytest

from tests.test_synth_openai import ChatServer
from tests.test_synth_stages import respond

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data.llm")

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY_ENV = "SYNTH_RAY_TEST_KEY"
SECRET = "sk-ray-test-0123456789abcdef"
FORMAT_FILES = ("format/cacm-formatted.jsonl", "arrayrecord")


@pytest.fixture(scope="session")
def ray_address():
  """A local Ray instance for the session (workers inherit the test key's variable); its GCS address."""
  os.environ[KEY_ENV] = SECRET  # before the start: Ray's workers take the environment of the process that starts it
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
  from ray.data import DataContext

  DataContext.get_current().enable_progress_bars = False
  yield ray.get_runtime_context().gcs_address
  ray.shutdown()


def scripted(body):
  """The deterministic server: the stage answers of tests/test_synth_stages.respond, except that every third
  annotation forgets its score tag and gets it by completion (the demo's `annotate.score_completion`)."""
  messages = body["messages"]
  if messages[-1]["role"] == "assistant" and messages[-1]["content"].endswith("<score>"):
    return 200, f"{1 + len(messages[-1]['content']) % 5}</score>"
  answer = respond(messages, None)
  if "<score>" in answer and int(hashlib.sha256(answer.encode()).hexdigest(), 16) % 3 == 0:
    return 200, answer.split("<score>")[0]
  return 200, answer


@pytest.fixture
def server():
  servers = []

  def start(reply=scripted):
    servers.append(ChatServer(reply))
    return servers[-1]

  yield start
  for s in servers:
    s.close()


def demo_args(workdir, url, *extra):
  """`synth run` of configs/synth/demo.py with the scripted server as generator and annotator, hashing mining."""
  backend = {"kind": "openai", "base_url": url, "model": "scripted", "api_key_env": KEY_ENV, "max_retries": 2,
             "backoff_s": 0.05}
  return ["run", "--config", "configs/synth/demo.py", "--no-progress", f"--config.workdir={workdir}",
          f"--config.backends.generator={backend}", f"--config.backends.annotator={backend}",
          "--config.embedder={'kind': 'hashing', 'dim': 128}", "--config.generate.unit_size=3",
          "--config.annotate.unit_size=12", *extra]


def tree(directory: pathlib.Path) -> dict[str, bytes]:
  """{relative path: bytes} of every file under `directory`."""
  return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def arrayrecords(workdir: pathlib.Path) -> list[dict]:
  import tensorflow_datasets as tfds

  from rejax.data.records import from_example

  source = tfds.builder_from_directory(str(workdir / "arrayrecord")).as_data_source()["cacm"]
  return [from_example(source[i]) for i in range(len(source))]


def test_ray_engine_writes_the_bytes_of_the_local_engine(ray_address, server, tmp_path, monkeypatch, capsys):
  from synth.cli import main

  monkeypatch.chdir(ROOT)
  url = server().url
  assert main(demo_args(tmp_path / "local", url)) == 0
  assert main(demo_args(tmp_path / "onray", url, "--engine", "ray", f"--config.ray.address={ray_address}")) == 0
  local, on_ray = tree(tmp_path / "local"), tree(tmp_path / "onray")
  assert {n: b for n, b in on_ray.items() if not n.startswith("arrayrecord/")} == \
         {n: b for n, b in local.items() if not n.startswith("arrayrecord/")}  # units, plans, summaries, outputs
  assert "format/cacm-formatted.jsonl" in local and on_ray.keys() == local.keys()
  # The ArrayRecord dataset holds its creation time and build paths (two local runs differ too): its records match.
  assert arrayrecords(tmp_path / "onray") == arrayrecords(tmp_path / "local")
  assert b'"completed": true' in local["annotate/cacm.jsonl"]  # the second round (score completion) ran
  assert SECRET not in capsys.readouterr().err
