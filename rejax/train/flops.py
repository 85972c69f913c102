"""Model FLOPs of a train step and what a device offers (matmul peak, memory): the halves of MFU and of a fit."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

GIB = 1024**3

# Dense bf16 matmul peak (vendor figures, no sparsity) and memory per device, by jax's device_kind; the
# longest matching prefix wins ("TPU v5" is a v5p chip, "TPU v5 lite" a v5e, "TPU v6 lite" a v6e). TPU memory is
# the HBM the TPU compiler says it can use (its out-of-memory message: "exceeds available HBM (15.75G)").
CHIPS: dict[str, tuple[float, int]] = {
  "NVIDIA H200": (989e12, 141 * 10**9), "NVIDIA H100": (989e12, 80 * GIB), "NVIDIA A100": (312e12, 80 * GIB),
  "NVIDIA L4": (121e12, 24 * GIB),
  "TPU v4": (275e12, 32 * GIB), "TPU v5": (459e12, int(95.74 * GIB)), "TPU v5p": (459e12, int(95.74 * GIB)),
  "TPU v5 lite": (197e12, int(15.75 * GIB)), "TPU v5e": (197e12, int(15.75 * GIB)),
  "TPU v6 lite": (918e12, int(31.25 * GIB)),
}


def chip_of(device_kind: str) -> tuple[float, int] | None:
  """(bf16 peak FLOP/s, memory bytes) of a device kind from the table, or None when it is not listed."""
  matches = [kind for kind in CHIPS if device_kind.startswith(kind)]
  return CHIPS[max(matches, key=len)] if matches else None


def forward_flops(cfg, rows: int, length: int) -> float:
  """FLOPs of one forward over [rows, length] tokens: 2 per weight per token, plus attention products."""
  return _forward_flops(cfg, tokens=rows * length, squared_lengths=rows * length * length)


def sequences_forward_flops(cfg, lengths: np.ndarray) -> float:
  """FLOPs of one forward over sequences of these lengths, each alone (no padding, attention within itself)."""
  lengths = np.asarray(lengths, np.float64)
  return _forward_flops(cfg, tokens=float(lengths.sum()), squared_lengths=float((lengths * lengths).sum()))


def _forward_flops(cfg, *, tokens: float, squared_lengths: float) -> float:
  d, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  n, k = cfg.num_attention_heads, cfg.num_key_value_heads
  per_layer = d * n * h * 2 + d * k * h * 2 + 3 * d * f
  matmuls = 2 * per_layer * cfg.num_hidden_layers * tokens
  attention = 2 * 2 * n * h * squared_lengths * cfg.num_hidden_layers
  return matmuls + attention


def train_step_flops(cfg, shapes: dict[str, tuple[int, ...]], reasoning_pass: bool) -> float:
  """Model FLOPs of one step: forward + backward (3x forward) of queries and passages, plus the q' forward."""
  return executed_step_flops(cfg, shapes, reasoning_pass, remat="none", grad_cache=False)


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
  """The device's bf16 matmul peak from the table, else (CPU, unknown chips) measured."""
  device = device or jax.devices()[0]
  chip = chip_of(device.device_kind)
  return chip[0] if chip else measured_matmul_peak()


def executed_step_flops(cfg, shapes: dict[str, tuple[int, ...] | np.ndarray], reasoning_pass: bool, *, remat: str,
                        grad_cache: bool) -> float:
  """FLOPs the step's program runs: the model FLOPs plus the recomputed forwards (full remat re-runs each
  layer's forward in the backward pass; GradCache runs a first forward without gradient). `shapes` gives per
  `*_ids` input its (rows, length), or an array of its sequences' lengths (the FLOPs of the real tokens)."""
  def forward(name: str) -> float:
    value = shapes[name]
    return forward_flops(cfg, *value) if isinstance(value, tuple) else sequences_forward_flops(cfg, value)

  forwards = 3 + (remat == "full") + grad_cache
  flops = forwards * (forward("query_ids") + forward("passage_ids"))
  if reasoning_pass and "reason_ids" in shapes:
    flops += forward("reason_ids")
  return flops
