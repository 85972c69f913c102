"""Several slices (mesh.dcn_data): the mesh stacks whole slices along `data`, one slice's mesh is exactly jax's, the
config rules name mesh.dcn_data, and a real run of two processes, each a slice of 2 CPU devices, logs the losses
of a one-device run."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import sys

import jax
import numpy as np
import pytest
from jax.sharding import AxisType

from rejax.sharding import MESH_AXES, hybrid_device_grid, make_mesh
from rejax.train.config import ConfigError, apply_overrides, load_config_file, validate
from tests.processes import run_processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = str(ROOT / "configs" / "tiny.py")
STEPS = 6


@dataclasses.dataclass(frozen=True)
class FakeDevice:
  """What jax's mesh_utils reads of a non-TPU device, with the slice a TPU multislice device carries."""
  id: int
  slice_index: int
  process_index: int = 0
  platform: str = "cpu"
  device_kind: str = "cpu"


def ids(grid: np.ndarray) -> list:
  return np.vectorize(lambda d: d.id)(grid).tolist()


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 2), (8, 1, 1), (1, 4, 2), (1, 1, 8)])
def test_one_slice_mesh_is_the_mesh_jax_makes(shape):
  expected = jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3,
                           devices=jax.devices()[:int(np.prod(shape))])
  mesh = make_mesh(*shape, devices=jax.devices()[:int(np.prod(shape))], dcn_data=1)
  assert mesh == expected and mesh.axis_names == MESH_AXES
  assert mesh.devices.tolist() == expected.devices.tolist()


def test_two_slices_are_stacked_whole_along_data_with_fsdp_and_tensor_inside_a_slice():
  devices = [FakeDevice(i, slice_index=i % 2) for i in range(8)]  # the two slices' devices interleaved
  grid = hybrid_device_grid((1, 2, 2), 2, devices)
  assert grid.shape == (2, 2, 2)  # data = dcn_data x data
  assert ids(grid) == [[[0, 2], [4, 6]],   # slice 0 in its own order, as (fsdp, tensor)
                       [[1, 3], [5, 7]]]   # slice 1


def test_the_data_axis_holds_each_slice_data_block_adjacent():
  devices = [FakeDevice(i, slice_index=i // 4) for i in range(8)]
  grid = hybrid_device_grid((2, 2, 1), 2, devices)
  assert grid.shape == (4, 2, 1)
  assert [{d.slice_index for d in row.flat} for row in grid] == [{0}, {0}, {1}, {1}]
  assert ids(grid) == [[[0], [1]], [[2], [3]], [[4], [5]], [[6], [7]]]


def test_devices_in_one_slice_count_each_process_as_a_slice():
  # CPU devices of a jax.distributed run report slice_index 0 each; one process alone reports none
  devices = [FakeDevice(i, slice_index=0, process_index=1 - i // 2) for i in range(4)]
  assert ids(hybrid_device_grid((1, 2, 1), 2, devices)) == [[[2], [3]], [[0], [1]]]  # process 0's devices first


def test_dcn_data_other_than_the_number_of_slices_fails_in_one_line():
  with pytest.raises(ValueError, match=r"^mesh.dcn_data=2: the 8 devices are in 1 process\(es\), each taken as a "
                                       r"slice \(no slices reported\); mesh.dcn_data must equal that number"):
    make_mesh(1, 4, 1, dcn_data=2)  # this test process: one process, 8 CPU devices
  with pytest.raises(ValueError, match=r"^mesh.dcn_data=3: the 9 devices are in 2 slice\(s\)"):
    hybrid_device_grid((3, 1, 1), 3, [FakeDevice(i, slice_index=i % 2) for i in range(9)])


@pytest.mark.parametrize("overrides, message", [
    (["mesh.dcn_data=0"], "mesh.dcn_data=0: must be >= 1"),
    (["mesh.dcn_data=2", "mesh.fsdp=2"],
     "mesh.dcn_data x mesh.data x mesh.fsdp x mesh.tensor = 2 x 1 x 2 x 1 = 4, but there are 8 devices"),
    (["mesh.dcn_data=2", "mesh.data=2", "mesh.fsdp=2"],
     "data.domains.biology: global batch 4 is not divisible by mesh.dcn_data x mesh.data x mesh.fsdp = 2 x 2 x 2 = 8"),
])
def test_config_rules_name_mesh_dcn_data(overrides, message):
  config = apply_overrides(load_config_file(TINY), [f"--config.{o}" for o in overrides])
  with pytest.raises(ConfigError) as error:
    validate(config, 8)
  assert str(error.value) == message


def test_every_config_has_dcn_data_1_and_a_multislice_mesh_that_validates():
  config = load_config_file(TINY)
  assert config.mesh.dcn_data == 1
  validate(apply_overrides(config, ["--config.mesh.dcn_data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]), 8)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(workdir: pathlib.Path, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "rejax.cli", "train", "--config", TINY, "--workdir", str(workdir),
          f"--config.total_steps={STEPS}", f"--config.ckpt_every={STEPS}", "--config.export_dir=", *overrides]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
             HF_HUB_OFFLINE="1")
  env.pop("PYTEST_XDIST_WORKER", None)
  return env


def _losses(workdir: pathlib.Path) -> dict[int, float]:
  return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.slow  # two runs, one of two processes: ~2.5 min of CPU, 4.5 min on a loaded 2-core machine
def test_two_slices_of_two_devices_log_the_one_device_losses(tmp_path):
  run_processes([_train(tmp_path / "one")], env=_env(1), cwd=ROOT)
  coordinator = f"127.0.0.1:{_free_port()}"
  slices = ["--config.mesh.dcn_data=2", "--config.mesh.fsdp=2"]  # a process = a slice: fsdp inside, data across
  run_processes([_train(tmp_path / "two", *slices, "--coordinator", coordinator, "--num-processes", "2",
                        "--process-id", str(i)) for i in range(2)], env=_env(2), cwd=ROOT)
  reference, multislice = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert sorted(multislice) == list(range(1, STEPS + 1)) == sorted(reference)
  for step in reference:
    assert multislice[step] == pytest.approx(reference[step], rel=1e-4), step


def test_several_slices_of_one_host_each_start_jax_distributed_without_a_coordinator(monkeypatch):
  from rejax.train import distributed

  calls = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.2")  # this slice's one host
  monkeypatch.delenv("SLURM_NTASKS", raising=False)
  monkeypatch.setenv("MEGASCALE_NUM_SLICES", "1")
  distributed.initialize()
  assert calls == []  # one host, one slice: nothing to join
  monkeypatch.setenv("MEGASCALE_NUM_SLICES", "2")
  distributed.initialize()
  assert calls == [{}]  # jax's TPU cluster detection finds the other slices' hosts
