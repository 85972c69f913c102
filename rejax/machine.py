"""The machine a figure was measured on, in the words that matter for a CPU's speed: the CPU model (with its family,
model and cache: "AMD EPYC" alone names several generations) and the vector extensions the matmul libraries
dispatch on. `make demo`'s report and the benchmarks in bench/ print it beside their timings."""

from __future__ import annotations

import pathlib
import platform

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                "amx_bf16")


CPUINFO = pathlib.Path("/proc/cpuinfo")


def cpu_model(info: pathlib.Path = CPUINFO) -> str:
  """/proc/cpuinfo's `model name` with its family, model and cache size ("AMD EPYC" alone names several
  generations), or the platform's processor string elsewhere."""
  if not info.exists():
    return platform.processor() or platform.machine()
  fields = {}
  for line in info.read_text().splitlines():
    key, _, value = line.partition(":")
    if not key.strip():
      break  # the first core's block only
    fields.setdefault(key.strip(), value.strip())
  return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family', '?')} model "
          f"{fields.get('model', '?')}, cache {fields.get('cache size', '?')})")


def vector_flags(info: pathlib.Path = CPUINFO) -> list[str]:
  """The extensions of VECTOR_FLAGS the CPU reports (the first core's flags)."""
  if not info.exists():
    return []
  for line in info.read_text().splitlines():
    if line.startswith("flags"):
      have = set(line.split(":", 1)[1].split())
      return [f for f in VECTOR_FLAGS if f in have]
  return []
