"""Model FLOPs of a train step and the device's matmul peak: the two halves of MFU."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 matmul peaks per chip (vendor figures, no sparsity), by the start of jax's device_kind.
PEAK_BF16_FLOPS = {
  "NVIDIA H200": 989e12, "NVIDIA H100": 989e12, "NVIDIA A100": 312e12, "NVIDIA L4": 121e12,
  "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v4": 275e12, "TPU v6": 918e12,
}


def forward_flops(cfg, rows: int, length: int) -> float:
  """FLOPs of one forward over [rows, length] tokens: 2 per weight per token, plus attention products."""
  d, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  n, k = cfg.num_attention_heads, cfg.num_key_value_heads
  per_layer = d * n * h * 2 + d * k * h * 2 + 3 * d * f
  matmuls = 2 * per_layer * cfg.num_hidden_layers * rows * length
  attention = 2 * 2 * n * h * length * length * cfg.num_hidden_layers * rows
  return matmuls + attention


def train_step_flops(cfg, shapes: dict[str, tuple[int, ...]], reasoning_pass: bool) -> float:
  """FLOPs of one step: forward + backward (3x forward) of queries and passages, plus the q' forward."""
  flops = 3 * (forward_flops(cfg, *shapes["query_ids"]) + forward_flops(cfg, *shapes["passage_ids"]))
  if reasoning_pass and "reason_ids" in shapes:
    flops += forward_flops(cfg, *shapes["reason_ids"])
  return flops


def measured_matmul_peak(dtype=jnp.float32, n: int = 2048, repeats: int = 5) -> float:
  """Achievable matmul FLOP/s of the default device: the fastest of a few n^3 matmuls."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  fastest = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    fastest = min(fastest, time.perf_counter() - start)
  return 2 * n**3 / fastest


def peak_flops(device: jax.Device | None = None) -> float:
  """The device's bf16 matmul peak from the vendor table, else (CPU, unknown chips) measured."""
  device = device or jax.devices()[0]
  for kind, peak in PEAK_BF16_FLOPS.items():
    if device.device_kind.startswith(kind):
      return peak
  return measured_matmul_peak()
