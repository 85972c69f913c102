"""Preemption, as a platform does it: SIGTERM to one process of a running `rejax train` (a TPU VM's maintenance
event, a spot reclaim, SLURM's `--signal`). Every process stops at the same step with a complete checkpoint and
exit status 75, and the same command resumes to the export of a run that was never interrupted (1e-6).

Each interrupted run is compared with the same processes uninterrupted: two processes of one device each, or one
process of two devices (mesh.data=2 both). Between the two layouts the weights differ by up to 7e-6 (XLA's
in-process collectives and gloo's do not compile to the same sums), which is not what these tests check."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.gcs_server import free_port
from tests.processes import StderrLines
from tests.test_train_run import env_with

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12
EXIT_PREEMPTED = 75  # README "Exit status of `rejax`"
BASE = [f"--config.total_steps={STEPS}", "--config.ckpt_every=4", "--config.keep_checkpoints=3",
        "--config.log_every=1", "--config.mesh.data=2"]


def train_cmd(workdir: pathlib.Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "rejax.cli", "train", "--config", str(ROOT / "configs" / "tiny.py"),
          "--workdir", str(workdir), *BASE, *extra]


def start(commands: list[list[str]], devices: int) -> list[StderrLines]:
  return [StderrLines(subprocess.Popen(cmd, env=env_with(devices), cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)) for cmd in commands]


def processes(workdir: pathlib.Path, count: int) -> list[list[str]]:
  """The commands of a `count`-process run (one device each) on `workdir`."""
  coordinator = f"127.0.0.1:{free_port()}"
  return [train_cmd(workdir, "--coordinator", coordinator, "--num-processes", str(count), "--process-id", str(i))
          for i in range(count)]


def logged_steps(workdir: pathlib.Path) -> int:
  path = workdir / "metrics.jsonl"
  return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_steps(run: StderrLines, workdir: pathlib.Path, steps: int) -> None:
  """Until metrics.jsonl holds `steps` steps (the run is then past its compiles, mid-way through the steps)."""
  deadline = time.monotonic() + 300
  while logged_steps(workdir) < steps:
    assert run.proc.poll() is None, f"the run ended before it could be signalled:\n{run.text()[-3000:]}"
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(0.02)


def saved_step(run: StderrLines) -> int:
  """The step the run says it saved before exiting on the preemption."""
  line = next((line for line in run.lines if "rejax train: preempted" in line), None)
  assert line is not None, run.text()[-3000:]
  return int(line.split("saved checkpoint ")[1].split(";")[0])


def check_complete(workdir: pathlib.Path, step: int, processes: int) -> None:
  """The checkpoint of `step` is whole (committed by Orbax, every item in it, every process's data iterator) and
  nothing is half-written."""
  checkpoints = workdir / "checkpoints"
  assert not list(checkpoints.glob("*.orbax-checkpoint-tmp*")), sorted(p.name for p in checkpoints.iterdir())
  saved = checkpoints / str(step)
  assert (saved / "commit_success.txt").is_file(), sorted(p.name for p in saved.iterdir())
  for item in ("state", "data", "meta"):
    assert (saved / item / "commit_success.txt").is_file(), item
  assert sorted(p.name for p in (saved / "data").glob("process_*.json")) == [
      f"process_{i}-of-{processes}.json" for i in range(processes)]
  assert json.loads((saved / "meta" / "metadata").read_text())["step"] == step


def exported_weights(export_dir: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  weights = {}
  for f in sorted(export_dir.glob("*.safetensors")):
    weights.update(load_file(f))
  assert weights, f"no export in {export_dir}"
  return weights


def assert_same_weights(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6, err_msg=name)


def run_ok(commands: list[list[str]], devices: int) -> None:
  runs = start(commands, devices)
  statuses = [run.finish() for run in runs]
  assert statuses == [0] * len(runs), "\n\n".join(run.text()[-3000:] for run in runs)


@pytest.fixture(scope="module")
def two_process_reference(tmp_path_factory) -> pathlib.Path:
  """The uninterrupted run: two processes of one device each."""
  workdir = tmp_path_factory.mktemp("reference2") / "run"
  run_ok(processes(workdir, 2), devices=1)
  return workdir


@pytest.fixture(scope="module")
def one_process_reference(tmp_path_factory) -> pathlib.Path:
  """The uninterrupted run: one process of two devices."""
  workdir = tmp_path_factory.mktemp("reference1") / "run"
  run_ok([train_cmd(workdir)], devices=2)
  return workdir


@pytest.mark.slow  # 6 min: three two-process runs
def test_sigterm_to_one_process_of_two_stops_both_at_one_step_and_the_same_command_resumes(two_process_reference,
                                                                                          tmp_path):
  workdir = tmp_path / "run"
  commands = processes(workdir, 2)
  runs = start(commands, devices=1)
  wait_for_steps(runs[0], workdir, 5)
  runs[1].proc.send_signal(signal.SIGTERM)  # the process that does not write the metrics, nor host the service
  statuses = [run.finish() for run in runs]
  assert statuses == [EXIT_PREEMPTED] * 2, "\n\n".join(run.text()[-3000:] for run in runs)
  steps = {saved_step(run) for run in runs}
  assert len(steps) == 1, steps  # both processes saved the same step
  step = steps.pop()
  assert 5 <= step < STEPS
  assert "SIGTERM to process 1" in runs[0].wait_for("stopping before step")  # process 0 learnt it from process 1
  check_complete(workdir, step, processes=2)
  assert not (workdir / "export").exists()  # no export before the last step

  resumed = start(commands, devices=1)  # the same command
  assert [run.finish() for run in resumed] == [0, 0], "\n\n".join(run.text()[-3000:] for run in resumed)
  assert f"resuming at step {step}" in resumed[0].text()
  assert_same_weights(exported_weights(workdir / "export"), exported_weights(two_process_reference / "export"))


@pytest.mark.slow  # ~2 min more (its own reference run); the default suite stops a 2-process run
def test_a_second_sigterm_while_saving_leaves_the_checkpoint_whole_and_the_run_resumes(one_process_reference,
                                                                                        tmp_path):
  workdir = tmp_path / "run"
  [run] = start([train_cmd(workdir)], devices=2)
  wait_for_steps(run, workdir, 5)
  run.proc.send_signal(signal.SIGTERM)
  run.wait_for("stopping before step")  # printed just before the checkpoint is saved
  run.proc.send_signal(signal.SIGTERM)
  assert run.finish() == EXIT_PREEMPTED, run.text()[-3000:]
  assert "SIGTERM again: already stopping" in run.text()
  step = saved_step(run)
  check_complete(workdir, step, processes=1)

  [resumed] = start([train_cmd(workdir)], devices=2)
  assert resumed.finish() == 0, resumed.text()[-3000:]
  assert_same_weights(exported_weights(workdir / "export"), exported_weights(one_process_reference / "export"))
