"""`rejax train` end to end, as a user runs it (subprocesses with their own device counts): a killed run
resumes to the same weights, sharded and multi-process runs log the single-device losses, a checkpoint
moves between meshes, a NaN stops the run cleanly, and the export loads in transformers and
sentence-transformers like `rejax encode` sees it."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.processes import kill_when, run_processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12
BASE = [f"--config.total_steps={STEPS}", "--config.ckpt_every=4", "--config.keep_checkpoints=3"]
MESH_222 = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]


def train_cmd(workdir: pathlib.Path, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "rejax.cli", "train", "--config", str(ROOT / "configs" / "tiny.py"),
          "--workdir", str(workdir), *BASE, *overrides]


def env_with(devices: int) -> dict[str, str]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
             HF_HUB_OFFLINE="1")
  env.pop("PYTEST_XDIST_WORKER", None)
  return env


def run(cmd: list[str], devices: int, check: bool = True) -> subprocess.CompletedProcess:
  proc = subprocess.run(cmd, env=env_with(devices), cwd=ROOT, capture_output=True, text=True, timeout=600)
  if check and proc.returncode:
    raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{_error_part(proc.stderr)}")
  return proc


def _error_part(stderr: str) -> str:
  """The first traceback (or the tail) of a failed run's stderr, without interpreter-shutdown noise."""
  noise = stderr.find("Exception ignored")
  stderr = stderr[:noise] if noise > 0 else stderr
  return stderr[-5000:]


def losses(workdir: pathlib.Path) -> dict[int, float]:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in records}


def exported_weights(export_dir: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  weights = {}
  for f in sorted(export_dir.glob("*.safetensors")):
    weights.update(load_file(f))
  return weights


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> pathlib.Path:
  """The uninterrupted run on one device."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  run(train_cmd(workdir), devices=1)
  return workdir


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory) -> pathlib.Path:
  """The same run on a 2x2x2 mesh of 8 devices."""
  workdir = tmp_path_factory.mktemp("sharded") / "run"
  run(train_cmd(workdir, *MESH_222, "--config.export_dir="), devices=8)
  return workdir


@pytest.mark.slow  # ~3 min; the default suite's kill -9 resume is tests/test_pod.py's (2 hosts on gs://, same check)
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(reference_run, tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(train_cmd(workdir), env=env_with(1), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  # kill -9 mid-run: after the step-4 checkpoint, while steps 6+ are being computed
  kill_when(proc, lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 6, poll=0.05)
  assert not (workdir / "export").exists()
  run(train_cmd(workdir), devices=1)  # the same command again

  assert losses(workdir) == pytest.approx(losses(reference_run), rel=1e-6, abs=1e-7)
  resumed, reference = exported_weights(workdir / "export"), exported_weights(reference_run / "export")
  assert resumed.keys() == reference.keys()
  for name in reference:
    np.testing.assert_allclose(resumed[name], reference[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow  # two resumed runs per part
@pytest.mark.parametrize("part", ["state", "data"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before_and_resumes_to_the_same_weights(
    reference_run, tmp_path, part):
  workdir = tmp_path / "run"
  shutil.copytree(reference_run, workdir, ignore=shutil.ignore_patterns("export"))
  latest = workdir / "checkpoints" / str(STEPS)
  files = [f for f in (latest / part).rglob("*.json" if part == "data" else "*") if f.is_file()]
  victim = max(files, key=lambda f: f.stat().st_size)  # the data iterator's state, or the largest array file
  victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a file cut in half, as by a full disk

  proc = run(train_cmd(workdir), devices=1)  # the same command again
  warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: checkpoint")]
  assert len(warning) == 1 and str(latest) in warning[0] and "checkpoints.unreadable" in warning[0]
  assert (workdir / "checkpoints.unreadable" / str(STEPS) / victim.relative_to(latest)).is_file()  # kept, not deleted
  assert losses(workdir) == pytest.approx(losses(reference_run), rel=1e-6, abs=1e-7)
  resumed, reference = exported_weights(workdir / "export"), exported_weights(reference_run / "export")
  for name in reference:
    np.testing.assert_allclose(resumed[name], reference[name], rtol=0, atol=1e-6, err_msg=name)


def test_2x2x2_mesh_logs_the_single_device_losses(reference_run, sharded_run):
  reference, sharded = losses(reference_run), losses(sharded_run)
  assert sorted(sharded) == list(range(1, STEPS + 1))
  for step in reference:
    assert sharded[step] == pytest.approx(reference[step], rel=1e-4), step


@pytest.mark.slow  # ~1 min more; `make test-slow`
def test_checkpoint_written_on_8_devices_resumes_on_4(reference_run, sharded_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(sharded_run, workdir)
  shutil.rmtree(workdir / "checkpoints" / str(STEPS))  # as if the 8-device run stopped after step 8
  proc = run(train_cmd(workdir, "--config.mesh.data=1", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
                       "--config.export_dir="), devices=4)
  assert "resuming at step 8" in proc.stderr
  reference, resumed = losses(reference_run), losses(workdir)
  assert sorted(resumed) == list(range(1, STEPS + 1))
  for step in range(9, STEPS + 1):
    assert resumed[step] == pytest.approx(reference[step], rel=1e-4), step


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # ~1.5 min more; `make test-slow`
def test_two_processes_of_4_devices_log_the_one_process_8_device_losses(sharded_run, tmp_path):
  workdir = tmp_path / "run"
  coordinator = f"127.0.0.1:{_free_port()}"
  run_processes([train_cmd(workdir, *MESH_222, "--config.export_dir=", "--coordinator", coordinator,
                           "--num-processes", "2", "--process-id", str(i)) for i in range(2)],
                env=env_with(4), cwd=ROOT)
  reference, multi = losses(sharded_run), losses(workdir)
  assert sorted(multi) == list(range(1, STEPS + 1))
  for step in reference:
    assert multi[step] == pytest.approx(reference[step], rel=1e-4), step


def test_a_run_resumed_with_more_steps_and_another_export_dir_trains_them_and_exports_there(reference_run, tmp_path):
  """The issue's case: a finished run resumed with --config.total_steps and --config.export_dir changed."""
  workdir = tmp_path / "run"
  shutil.copytree(reference_run, workdir)
  proc = run(train_cmd(workdir, f"--config.total_steps={STEPS + 1}", "--config.export_dir=export2"), devices=1)
  assert f"resuming at step {STEPS} with export_dir \"export\" -> \"export2\", total_steps {STEPS} -> {STEPS + 1}" \
      in proc.stderr
  assert max(losses(workdir)) == STEPS + 1
  assert json.loads((workdir / "config.json").read_text())["export_dir"] == "export2"
  [change] = [json.loads(line) for line in (workdir / "config_changes.jsonl").read_text().splitlines()]
  assert change["step"] == STEPS and set(change["changes"]) == {"total_steps", "export_dir"}
  assert exported_weights(workdir / "export2").keys() == exported_weights(reference_run / "export").keys()


@pytest.mark.slow  # a resumed run under the profiler
def test_a_profile_holds_the_steps_asked_and_their_timings_are_left_out_of_the_metrics(reference_run, tmp_path):
  """Steps 13-14 of 15 traced (the reference run resumed for 3 more steps), read back with jax's own reader."""
  from jax.profiler import ProfileData

  workdir = tmp_path / "run"
  shutil.copytree(reference_run, workdir)
  run(train_cmd(workdir, f"--config.total_steps={STEPS + 3}", "--config.log_every=1",
                f"--config.profile.start_step={STEPS + 1}", "--config.profile.steps=2"), devices=1)
  window = workdir / "profile" / "plugins" / "profile" / f"steps_{STEPS + 1}-{STEPS + 2}"
  [trace] = window.glob("*.xplane.pb")
  traced = sorted(int(dict(event.stats)["step_num"]) for plane in ProfileData.from_file(str(trace)).planes
                  for line in plane.lines for event in line.events if event.name == "train")
  assert traced == [STEPS + 1, STEPS + 2]
  records = {r["step"]: r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}
  for step in (STEPS + 1, STEPS + 2):
    assert records[step]["profiled"] == 1 and "step_s" not in records[step] and "loss" in records[step]
  assert "step_s" in records[STEPS + 3] and "profiled" not in records[STEPS + 3]


@pytest.mark.slow  # a run of its own
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  proc = run(train_cmd(workdir, "--config.optim.lr=1e30", "--config.optim.clip_norm=0.0",
                       "--config.optim.warmup_ratio=0.0", "--config.ckpt_every=1"), devices=1, check=False)
  assert proc.returncode != 0
  message = next(line for line in proc.stderr.splitlines() if line.startswith("rejax train: error:"))
  assert "loss is nan at step" in message or "loss is inf at step" in message
  bad_step = int(message.split(" at step ")[1].split(";")[0])
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) == bad_step - 1
  assert not (workdir / "export").exists()


def test_export_loads_in_transformers_and_sentence_transformers_as_rejax_encodes_it(reference_run):
  from sentence_transformers import SentenceTransformer
  from transformers import AutoModel

  from rejax.eval.encode import Encoder

  export = reference_run / "export"
  assert type(AutoModel.from_pretrained(export)).__name__ == "Qwen3Model"
  instruction = "Given a Biology post, retrieve relevant passages that help answer the post."  # the fixture's
  queries = ["Why do moths circle lamps?", "How do glaciers carve valleys?"]
  documents = ["Insects navigate by keeping a distant light at a fixed angle.", "Ice erodes rock by plucking."]
  st = SentenceTransformer(str(export), device="cpu")
  ours = Encoder.from_pretrained(export, max_length=64, batch_size=8)
  st_q = st.encode(queries, prompt_name="biology", normalize_embeddings=True)
  ours_q = ours.encode(queries, instruction=instruction)
  st_d, ours_d = st.encode(documents, normalize_embeddings=True), ours.encode(documents)
  for a, b in ((st_q, ours_q), (st_d, ours_d)):
    cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9999, cos


@pytest.mark.slow  # ~1 min; by default: tests/test_embedder_settings.py (packed gradients, export = ST) and
# tests/test_extension_points.py (the settings reach the DecoderConfig)
def test_a_bidirectional_mean_pooling_run_exports_a_model_that_loads_as_such(tmp_path):
  """model.attention=bidirectional and model.pooling=mean train and export a model whose config.json says
  is_causal: false and whose sentence-transformers pooling is the mean: transformers builds it bidirectional, and
  sentence-transformers encodes as rejax does (the same settings on both sides)."""
  from sentence_transformers import SentenceTransformer
  from transformers import AutoModel

  from rejax.eval.encode import Encoder

  workdir = tmp_path / "run"
  run(train_cmd(workdir, "--config.total_steps=4", "--config.model.attention=bidirectional",
                "--config.model.pooling=mean"), devices=1)
  export = workdir / "export"
  assert json.loads((export / "config.json").read_text())["is_causal"] is False
  assert json.loads((export / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
  assert AutoModel.from_pretrained(export).config.is_causal is False
  from rejax.hf.load import model_config

  assert (model_config(export).causal, model_config(export).pooling) == (False, "mean")  # what rejax encode reads
  documents = ["Insects navigate by keeping a distant light at a fixed angle.", "Ice erodes rock by plucking."]
  st = SentenceTransformer(str(export), device="cpu").encode(documents, normalize_embeddings=True)
  ours = Encoder.from_pretrained(export, max_length=64, batch_size=8)
  cos = np.sum(st * ours.encode(documents), axis=1) / np.linalg.norm(st, axis=1)
  assert cos.min() >= 0.9999, cos


def test_push_to_hub_is_refused_offline_before_any_work_and_a_failed_upload_keeps_the_export(reference_run,
                                                                                              tmp_path):
  """`rejax export --push-to-hub`: with HF_HUB_OFFLINE=1 (every test's setting) one line before anything is written;
  online but with the hub unreachable (a closed port on 127.0.0.1: a real connection error, nothing mocked) the export
  is complete and one line says the upload failed and how to retry it."""
  export = [sys.executable, "-m", "rejax.cli", "export", "--workdir", str(reference_run), "--push-to-hub"]
  offline = run(export + ["me/tiny", "--output", str(tmp_path / "a")], devices=1, check=False)
  assert offline.returncode == 1 and not (tmp_path / "a").exists()
  assert offline.stderr.strip().splitlines()[-1] == (
      f"rejax export: error: --push-to-hub me/tiny: the hub is switched off here (HF_HUB_OFFLINE=1); export without "
      f"it, then `huggingface-cli upload me/tiny {tmp_path / 'a'}` where the hub can be reached")
  bad_id = run(export + ["not a repo", "--output", str(tmp_path / "b")], devices=1, check=False)
  assert bad_id.returncode == 1 and "--push-to-hub not a repo: not a hub repo id ORG/NAME" in bad_id.stderr
  env = dict(env_with(1), HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_not_a_real_token")
  unreachable = subprocess.run(export + ["me/tiny", "--output", str(tmp_path / "c")], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
  last = unreachable.stderr.strip().splitlines()[-1]
  assert unreachable.returncode == 1 and last.startswith("rejax export: error: --push-to-hub me/tiny: the upload "
                                                         "failed ("), last
  assert last.endswith(f"the export is complete in {tmp_path / 'c'}: upload it with `huggingface-cli upload me/tiny "
                       f"{tmp_path / 'c'}`") and "hf_not_a_real_token" not in unreachable.stderr
  assert (tmp_path / "c" / "README.md").is_file() and any((tmp_path / "c").glob("*.safetensors"))


CONFIG_ERRORS = [
  (["--config.model.pooling=cls", "--config.mesh.tensor=8"],
   "model.pooling='cls': expected one of 'last_token', 'mean' (or '' for the model's own)"),
  (["--config.model.attention=sliding", "--config.mesh.tensor=8"],
   "model.attention='sliding': expected one of 'causal', 'bidirectional' (or '' for the model's own)"),
  (["--config.optim.lrr=1"], "--config.optim.lrr: no such config key (did you mean optim.lr?)"),
  (["--config.optim.lr=fast"], "--config.optim.lr=fast: could not convert string to float"),
  (["--config.mesh.data=3"], "mesh.data x mesh.fsdp x mesh.tensor = 3 x 1 x 1 = 3, but there are 8 devices"),
  (["--config.model.path=/no/such/model", "--config.mesh.tensor=8"], "/no/such/model: not a model directory"),
]


@pytest.mark.parametrize("overrides,message", CONFIG_ERRORS)
def test_bad_config_is_a_one_line_error_naming_it(overrides, message, tmp_path):
  from rejax.cli import main

  with pytest.raises(SystemExit) as exit_info:
    main(["train", "--config", str(ROOT / "configs" / "tiny.py"), "--workdir", str(tmp_path / "w"), *overrides])
  text = str(exit_info.value)
  assert message in text and "\n" not in text
