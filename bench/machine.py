"""The machine a benchmark ran on, printed beside its ratios: a rejax / PyTorch ratio on a CPU is a ratio of two
matmul libraries (XLA:CPU's own kernels against PyTorch's oneDNN / MKL), each with its own use of the vector
units and of the cores, so the same code gives different ratios on machines of the same nominal size.

    python -m bench.machine

Prints the CPU model and the vector extensions the libraries dispatch on (AVX2, AVX-512, AMX), the cores this
process may use (os.cpu_count, the affinity mask, the cgroup's CPU quota), PyTorch's kernel level and threads,
and each stack's measured fp32 (and bf16) matmul peak.
"""

from __future__ import annotations

import math
import os
import pathlib
import time

import numpy as np

from rejax.machine import cpu_model, vector_flags

def cgroup_cpus() -> float | None:
  """The cgroup (v2) CPU quota in cores, or None without one."""
  quota = pathlib.Path("/sys/fs/cgroup/cpu.max")
  if not quota.exists():
    return None
  limit, period = quota.read_text().split()[:2]
  return None if limit == "max" else int(limit) / int(period)


def usable_cores() -> int:
  """The cores this process may run on: the affinity mask, capped by the cgroup quota (os.cpu_count() sees
  neither, and a thread pool sized by it oversubscribes a container)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  quota = cgroup_cpus()
  return max(1, min(cores, math.ceil(quota))) if quota else cores


def _fastest(fn, repeats: int) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def _peak(matmul_of_size, repeats: int, largest: int = 2048, budget_s: float = 1.0) -> tuple[float, int]:
  """(FLOP/s of the fastest n^3 matmul, n): n is `largest`, or smaller where one matmul would take longer than
  `budget_s` at the rate of a 256^3 one (PyTorch's bfloat16 on a CPU without AVX-512 BF16 runs at well under
  1 GFLOP/s: a 2048^3 one would take minutes)."""
  probe = 2 * 256**3 / _fastest(matmul_of_size(256), 1)
  n = max(256, min(largest, int((probe * budget_s / 2) ** (1 / 3)) // 256 * 256))
  return 2 * n**3 / _fastest(matmul_of_size(n), repeats), n


def jax_matmul_peak(dtype: str = "float32", n: int = 2048) -> tuple[float, int]:
  """(FLOP/s, n) of JAX's fastest n^3 matmul on its default device (rejax.train.flops.measured_matmul_peak)."""
  from rejax.train.flops import measured_matmul_peak

  return measured_matmul_peak(dtype, n=n), n


def torch_matmul_peak(dtype: str = "float32", repeats: int = 5) -> tuple[float, int]:
  """(FLOP/s, n) of PyTorch's fastest n^3 matmul on the CPU, at its current thread count."""
  import torch

  def of_size(n):
    a = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)).to(getattr(torch, dtype))

    def run():
      with torch.inference_mode():
        a @ a
    return run
  return _peak(of_size, repeats)


def describe(dtypes: tuple[str, ...] = ("float32",), jax_peaks: dict[str, float] | None = None) -> list[str]:
  """The machine's lines: CPU, cores, each stack's kernels and measured matmul peak per dtype. `jax_peaks`: JAX's
  peaks a benchmark already measured (2048^3, by dtype name), so that the figure printed is the one it divides by."""
  import jax
  import torch

  quota = cgroup_cpus()
  lines = [f"cpu: {cpu_model()}; vector: {' '.join(vector_flags()) or 'none reported'}",
           f"cores: os.cpu_count {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, cgroup quota "
           f"{'none' if quota is None else f'{quota:g}'} -> {usable_cores()} used",
           f"jax {jax.__version__} ({jax.devices()[0].platform}, XLA's own kernels); torch {torch.__version__} "
           f"(kernels {torch.backends.cpu.get_cpu_capability()}, oneDNN {torch.backends.mkldnn.is_available()}, "
           f"MKL {torch.backends.mkl.is_available()}, {torch.get_num_threads()} threads)"]
  for dtype in dtypes:
    known = (jax_peaks or {}).get(dtype)
    jax_peak, jax_n = (known, 2048) if known else jax_matmul_peak(dtype)
    torch_peak, torch_n = torch_matmul_peak(dtype)
    lines.append(f"matmul peak {dtype}: JAX {jax_peak / 1e9:.1f} GFLOP/s ({jax_n}^3), PyTorch "
                 f"{torch_peak / 1e9:.1f} GFLOP/s ({torch_n}^3); JAX / PyTorch {jax_peak / torch_peak:.2f}x")
  return lines


def main() -> None:
  import torch

  torch.set_num_threads(usable_cores())
  print("\n".join(describe(("float32", "bfloat16"))))


if __name__ == "__main__":
  main()
