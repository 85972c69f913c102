"""The ray engine (synth.raydata) on a local Ray instance (2 CPUs, one per test session) against the loopback
OpenAI-compatible server of tests/test_synth_openai.py: the same bytes as the local engine, the same promises.

The instance is started once (about 20 s on 2 loaded cores); the CLI runs in subprocesses join it through
`--config.ray.address`, so a killed driver leaves it up, as a real cluster would be.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

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


def session_logs() -> pathlib.Path:
  """This Ray instance's session directory (logs of the driver, raylet, workers and Ray Data)."""
  return pathlib.Path(ray._private.worker._global_node.get_session_dir_path())


def files_holding(directory: pathlib.Path, text: str) -> list[str]:
  return [str(p) for p in directory.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_a_401_stops_the_stage_in_one_line_and_the_key_is_nowhere(ray_address, server, tmp_path, monkeypatch, capsys):
  from synth.cli import main

  monkeypatch.chdir(ROOT)
  echo = lambda body: (401, "invalid key")  # noqa: E731
  url = server(echo).url
  rc = main(["generate", *demo_args(tmp_path / "w", url, "--engine", "ray")[1:]])
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.startswith("synth generate:")]
  assert rc == 1 and len(lines) == 1, err
  assert "backends.generator" in lines[0] and "HTTP 401" in lines[0] and f"${KEY_ENV}, which is set" in lines[0]
  assert not list((tmp_path / "w").rglob("unit-*")) and not (tmp_path / "w" / "generate" / "cacm.jsonl").exists()
  assert SECRET not in err
  assert files_holding(tmp_path / "w", SECRET) == [] and files_holding(session_logs(), SECRET) == []


def kill_sender_once(marker: pathlib.Path):
  """A reply that, the first time, SIGKILLs the Ray worker running the HTTP stage (the process that sent it)."""
  def reply(body):
    if not marker.exists():
      marker.write_text("killed")
      for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
          if b"HttpRequestUDF" in (proc / "cmdline").read_bytes():
            os.kill(int(proc.name), 9)
        except OSError:
          pass
    return scripted(body)
  return reply


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_and_each_unit_written_once(ray_address, server, tmp_path, monkeypatch):
  from synth.cli import main

  monkeypatch.chdir(ROOT)
  reference = server()
  assert main(["generate", *demo_args(tmp_path / "ref", reference.url)[1:]]) == 0
  killer = server(kill_sender_once(tmp_path / "marker"))
  assert main(["generate", *demo_args(tmp_path / "ray", killer.url, "--engine", "ray")[1:]]) == 0
  assert (tmp_path / "marker").exists() and len(killer.bodies) > len(reference.bodies)  # the batch was sent again
  assert tree(tmp_path / "ray" / "generate") == tree(tmp_path / "ref" / "generate")


@pytest.mark.slow
def test_a_killed_driver_leaves_complete_units_and_a_rerun_resumes(ray_address, server, tmp_path):
  from tests.processes import kill_when

  reference = server()
  work = tmp_path / "w"
  slow = server(lambda body: (__import__("time").sleep(0.5), scripted(body))[1])
  args = demo_args(work, slow.url, "--engine", "ray", f"--config.ray.address={ray_address}",
                   "--config.ray.batch_size=1")
  command = [sys.executable, "-m", "synth.cli", "generate", *args[1:]]
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  units = work / "generate" / "cacm.units"
  kill_when(proc, lambda: len(list(units.glob("unit-*.jsonl"))) >= 1, timeout=300)
  done_before = sorted(p.name for p in units.glob("unit-*.jsonl"))
  assert 1 <= len(done_before) < 3
  assert all(len(p.read_text().splitlines()) == 3 for p in units.glob("unit-*.jsonl"))  # only whole units
  asked_before = len(slow.bodies)
  rerun = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert len(slow.bodies) - asked_before <= 8 - 3 * len(done_before)  # finished units are not asked again
  from synth.cli import main

  assert main(["generate", *demo_args(tmp_path / "ref", reference.url)[1:]]) == 0
  assert tree(work / "generate") == tree(tmp_path / "ref" / "generate")


def test_vllm_and_sglang_processor_configs_are_built_from_backend_blocks():
  """Built, not run (no engine starts: vLLM and SGLang need GPUs and `ray[llm]`)."""
  from synth.backends import Sampling
  from synth.raydata.processors import processor_config, request_row

  vllm = {"kind": "vllm", "model": "Qwen/Qwen3-8B", "engine_args": {"tensor_parallel_size": 2, "max_model_len": 8192}}
  config = processor_config(vllm, replicas=4, batch_size=64)
  assert (type(config).__name__, config.model_source, config.concurrency, config.batch_size) == \
         ("vLLMEngineProcessorConfig", "Qwen/Qwen3-8B", 4, 64)
  assert config.engine_kwargs["tensor_parallel_size"] == 2 and config.engine_kwargs["max_model_len"] == 8192
  sglang = processor_config({"kind": "sglang", "model": "m", "engine_args": {"tp_size": 8}}, replicas=1, batch_size=8)
  assert type(sglang).__name__ == "SGLangEngineProcessorConfig" and sglang.engine_kwargs["tp_size"] == 8
  messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Question:"}]
  row = request_row(vllm, messages, Sampling(temperature=0.7, top_p=0.9, max_tokens=5, seed=3))
  params = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 5, "seed": 3}
  assert row == {"messages": messages, "sampling_params": params}
  http = request_row({"kind": "openai", "model": "m"}, messages, Sampling(seed=1))["payload"]
  assert http["continue_final_message"] is True and http["seed"] == 1  # the body the local backend sends


def test_engine_settings_are_checked_before_any_work(tmp_path, monkeypatch, capsys):
  from synth.cli import main

  monkeypatch.chdir(ROOT)
  base = ["generate", "--config", "configs/synth/demo.py", f"--config.workdir={tmp_path}"]
  assert main([*base, "--engine", "ray"]) == 1  # the demo's transformers backend has no Ray processor
  served = "{'kind': 'openai', 'base_url': 'http://127.0.0.1:9/v1', 'model': 'm'}"
  assert main([*base, "--config.engine=ray", f"--config.backends.generator={served}",
               f"--config.backends.annotator={served}", "--shard", "0/2"]) == 1
  assert main([*base, "--config.engine=rays"]) == 1
  lines = capsys.readouterr().err.splitlines()
  assert "engine='ray' runs openai, vllm, sglang backends" in lines[0]
  assert "--shard 0/2: with engine='ray' Ray schedules the units" in lines[1]
  assert "engine='rays': expected one of local, ray" in lines[2] and len(lines) == 3
  assert not list(tmp_path.iterdir())


@pytest.fixture
def transformers_serve(tmp_path):
  """`transformers serve` with SmolLM2-135M-Instruct (the asset, offline) on a free loopback port: its base URL
  and the model name it serves (the directory it was started with)."""
  import socket
  import urllib.request

  from rejax.assets import fetch

  model = str(fetch("smollm2"))
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  command = [str(pathlib.Path(sys.executable).parent / "transformers"), "serve", model, "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu", "--dtype", "float32"]
  log = (tmp_path / "serve.log").open("w")
  proc = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT)
  try:
    for _ in range(600):
      try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
        break
      except OSError:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        __import__("time").sleep(0.5)
    yield f"http://127.0.0.1:{port}/v1", model
  finally:
    proc.terminate()
    proc.wait(timeout=60)


@pytest.mark.slow
def test_transformers_serve_with_smollm2_answers_the_ray_engine_as_it_answers_the_local_one(
    ray_address, transformers_serve, tmp_path, monkeypatch):
  """A real model behind a real OpenAI-compatible server: the generate stage of the demo through Ray Data's HTTP
  processor writes the queries the local engine writes (seeded sampling, one request at a time on the server).
  transformers serve refuses the continuation fields (422), so the answers start without a response prefix."""
  from synth.cli import main

  monkeypatch.chdir(ROOT)
  url, model = transformers_serve
  backend = {"kind": "openai", "base_url": url, "model": model, "max_retries": 2, "backoff_s": 0.5}

  def generate(workdir, *extra):
    return main(["generate", "--config", "configs/synth/demo.py", "--no-progress", f"--config.workdir={workdir}",
                 f"--config.backends.generator={backend}", f"--config.backends.annotator={backend}",
                 "--config.embedder={'kind': 'hashing', 'dim': 128}", "--config.generate.response_prefix=",
                 "--config.generate.unit_size=3", *extra])

  assert generate(tmp_path / "local") == 0
  assert generate(tmp_path / "onray", "--engine", "ray", f"--config.ray.address={ray_address}") == 0
  local = tree(tmp_path / "local" / "generate")
  assert tree(tmp_path / "onray" / "generate") == local
  queries = [json.loads(line) for line in local["cacm.jsonl"].decode().splitlines()]
  assert queries and all(q["query"].strip() for q in queries)
