"""The devices a run is planned for, without having them: a TPU slice by its topology name, or several such
slices joined by the data-centre network (compiled by libtpu on any machine), or `cpu:N` host devices (compiled
by XLA:CPU, the same code path in `make test`)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re

import jax

from rejax.errors import InputError
from rejax.train.flops import chip_of

TOPOLOGY_FORMS = "a TPU topology such as v5p:2x2x4, v5e:4x4, v6e:4x4, or cpu:N"


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str
  devices: tuple
  device_kind: str
  device_memory_bytes: int
  peak_flops: float | None  # bf16 matmul peak per device; None where it is not known (CPU)
  slices: int = 1  # TPU slices (multislice); `devices` are those of every slice


def parse_memory(text: str) -> int:
  """Bytes from `64MiB`, `16GiB`, `95GB`, `1.5TiB` or a plain number of bytes."""
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)?\s*", text, flags=re.IGNORECASE)
  if not match:
    raise ValueError(f"expected a size such as 64MiB or 16GiB, got {text!r}")
  number, unit = float(match.group(1)), (match.group(2) or "B").upper()
  scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
           "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
  if number * scale < 1:
    raise ValueError(f"must be at least one byte, got {text!r}")
  return int(number * scale)


def use_cpu_devices(count: int) -> None:
  """Asks for `count` host devices before the CPU backend starts (a no-op once it has started)."""
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    try:
      jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend is already up: resolve_topology checks what it has
      pass


def resolve_topology(name: str, device_memory_bytes: int | None = None, num_slices: int = 1) -> Topology:
  """The devices of `name` (see TOPOLOGY_FORMS), in `num_slices` slices of it; `device_memory_bytes` overrides the
  chip table's memory."""
  if num_slices < 1:
    raise InputError(f"--num-slices {num_slices}: must be >= 1")
  if name.startswith("cpu:"):
    if num_slices > 1:
      raise InputError(f"--num-slices {num_slices}: --topology {name} is one process's devices, one slice; "
                       "plan several slices of a TPU topology (e.g. v5p:2x2x4)")
    return _cpu_topology(name, device_memory_bytes)
  if not re.fullmatch(r"v[0-9][a-z]*:[0-9]+(x[0-9]+)*", name):
    raise InputError(f"--topology {name}: expected {TOPOLOGY_FORMS}")
  if importlib.util.find_spec("libtpu") is None:
    raise InputError(f"--topology {name}: compiling for TPU needs libtpu: pip install 'rejax[tpu]' "
                     "(jax[tpu] for this jax version)")
  # Compiling takes no TPU: let this process load libtpu beside a training one on the same host (its lock
  # file would refuse), and keep libtpu's start-up chatter about the missing TPU hardware quiet.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  os.environ.setdefault("TPU_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("TPU_STDERR_LOG_LEVEL", "3")
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no metadata server off Google Cloud; TPU VMs set these
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", _accelerator_type(name))
  from jax.experimental import topologies

  slices = {"num_slices": num_slices} if num_slices > 1 else {}  # one slice: the description jax had without it
  try:
    devices = tuple(topologies.get_topology_desc(platform="tpu", topology_name=name, **slices).devices)
  except Exception as e:
    raise InputError(f"--topology {name}: libtpu does not know this topology ({type(e).__name__}: {e})") from None
  kind = devices[0].device_kind
  if len({(getattr(d, "slice_index", 0), tuple(d.coords)) for d in devices}) < len(devices):
    raise InputError(f"--topology {name}: libtpu lists each TensorCore of a {kind} chip as a device, and jax meshes "
                     "need one device per chip; plan for a v5p, v5e or v6e topology instead")
  chip = chip_of(kind)
  if chip is None and device_memory_bytes is None:
    raise InputError(f"--topology {name}: no memory figure for device kind {kind!r}; give --device-memory")
  return Topology(name, devices, kind, device_memory_bytes or chip[1], chip[0] if chip else None, num_slices)


def _accelerator_type(topology: str) -> str:
  """The Cloud TPU accelerator type of a topology name (v5p:2x2x4 -> v5p-32: v4/v5p count TensorCores, two per
  chip; v5e/v6e count chips), which libtpu asks for at start-up; the compile itself reads the topology."""
  generation, _, dims = topology.partition(":")
  chips = 1
  for size in dims.split("x"):
    chips *= int(size)
  if generation in ("v5e", "v5litepod"):
    return f"v5litepod-{chips}"
  if generation in ("v4", "v5p"):
    return f"{generation}-{2 * chips}"
  return f"{generation}-{chips}"


def _cpu_topology(name: str, device_memory_bytes: int | None) -> Topology:
  count_text = name.removeprefix("cpu:")
  if not count_text.isdigit() or int(count_text) < 1:
    raise InputError(f"--topology {name}: expected cpu:N with N >= 1 host devices")
  count = int(count_text)
  use_cpu_devices(count)
  devices = jax.devices("cpu")
  if len(devices) < count:
    raise InputError(f"--topology {name}: this process has {len(devices)} CPU devices (set before JAX started, "
                     f"e.g. by XLA_FLAGS=--xla_force_host_platform_device_count); cannot plan for {count}")
  host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return Topology(name, tuple(devices[:count]), devices[0].device_kind, device_memory_bytes or host_memory // count,
                  None)
