"""Model FLOPs of a train step and what a device offers (matmul peak, memory): the halves of MFU and of a fit.

What is counted (matmuls only; norms, activations, softmax and the loss's score matrix are left out):
- forward: 2 FLOPs per weight per token for every projection, LoRA's own two matmuls (x A, then (x A) B) on the
  projections it adapts, and the attention products q k^T and p v (4 n h L^2 per sequence and layer);
- backward: every matmul's activation gradient (dy W^T, as many FLOPs as its forward: the gradient has to reach
  the lowest trained weight, and the layer scan's body computes it for the first layer too); the weight gradient
  (x^T dy, as many again) only for the weights that are trained: every projection in full fine-tuning, LoRA's A
  and B with LoRA, the frozen base getting none; both operands of the attention products (twice their forward).
So a full fine-tuning step is 3 forwards, and a LoRA step 2 forwards of the base plus 3 of the adapters and the
attention. The FLOPs a step executes add what is recomputed: remat "full" re-runs each layer's forward in the
backward pass but its last projection (down_proj, whose output the backward does not need), "mlp" and "mlp_up"
also keep the MLP projections' outputs they name, "dots" re-runs the attention products (dots with batch
dimensions are not saved) (`recomputed`), GradCache
runs one forward without gradients first; the reasoning query q' (RI-InfoNCE) gets one forward, no gradient.
tests/test_flops.py checks these counts against XLA's own count of the compiled step with its loops unrolled.
"""

from __future__ import annotations

import dataclasses
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


# The projections of a layer: (name, input features, output features), by shape letters of the config.
def _projections(cfg) -> list[tuple[str, int, int]]:
  d, f, n, k, h = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
  return [("q_proj", d, n * h), ("k_proj", d, k * h), ("v_proj", d, k * h), ("o_proj", n * h, d),
          ("gate_proj", d, f), ("up_proj", d, f), ("down_proj", f, d)]


@dataclasses.dataclass(frozen=True)
class ForwardFlops:
  """The matmul FLOPs of one forward, split by what the backward pass does with each."""
  frozen: float  # against weights that get no gradient (LoRA's base)
  trained: float  # against trained weights (every projection in full fine-tuning; LoRA's A and B)
  attention: float  # q k^T and p v: both operands are activations
  tokens: float  # the tokens it runs over

  @property
  def total(self) -> float:
    return self.frozen + self.trained + self.attention

  @property
  def with_backward(self) -> float:
    """Forward + backward: activation gradients of every matmul, weight gradients of the trained ones only."""
    return 2 * self.frozen + 3 * self.trained + 3 * self.attention


def forward_parts(cfg, *, tokens: float, squared_lengths: float) -> ForwardFlops:
  """One forward over `tokens` tokens whose sequences' squared lengths sum to `squared_lengths`."""
  layers = cfg.num_hidden_layers
  base = sum(2 * d_in * d_out for _, d_in, d_out in _projections(cfg)) * layers * tokens
  lora = cfg.lora
  adapters = 0.0 if lora is None else sum(2 * lora.rank * (d_in + d_out) for name, d_in, d_out in _projections(cfg)
                                          if lora.applies_to(name)) * layers * tokens
  attention = 2 * 2 * cfg.num_attention_heads * cfg.head_dim * squared_lengths * layers
  if lora is None:
    return ForwardFlops(frozen=0.0, trained=base, attention=attention, tokens=tokens)
  return ForwardFlops(frozen=base, trained=adapters, attention=attention, tokens=tokens)


def _forward_of(cfg, shape: tuple[int, ...] | np.ndarray) -> ForwardFlops:
  """`shape`: (rows, length) of a padded input, or the lengths of its sequences (each encoded alone)."""
  if isinstance(shape, tuple):
    rows, length = shape
    return forward_parts(cfg, tokens=rows * length, squared_lengths=rows * length * length)
  lengths = np.asarray(shape, np.float64)
  return forward_parts(cfg, tokens=float(lengths.sum()), squared_lengths=float((lengths * lengths).sum()))


# model.remat -> the projections whose outputs the backward pass keeps instead of recomputing (rejax.models.decoder)
SAVED_PROJECTIONS = {"full": (), "mlp": ("gate_proj", "up_proj"), "mlp_up": ("up_proj",)}
# a layer's last projection: its output is only the next layer's input, which remat keeps, so it is never re-run
LAST_PROJECTION = "down_proj"


def recomputed(cfg, forward: ForwardFlops, remat: str) -> float:
  """The FLOPs remat re-runs in the backward pass of one input: nothing ("none"); the attention products ("dots":
  dots with batch dimensions are not saved); the layer's forward but its last projection ("full"), and but the
  MLP projections whose outputs are kept too ("mlp", "mlp_up"). A projection not re-run saves its matmul with the
  weight and LoRA's (x A) B; LoRA's x A is re-run all the same (B's gradient needs it)."""
  if remat == "none":
    return 0.0
  if remat == "dots":
    return forward.attention
  kept = (LAST_PROJECTION, *SAVED_PROJECTIONS[remat])
  skipped = sum(2 * d_in * d_out + (2 * cfg.lora.rank * d_out if cfg.lora is not None and cfg.lora.applies_to(name)
                                    else 0)
                for name, d_in, d_out in _projections(cfg) if name in kept)
  return forward.total - skipped * cfg.num_hidden_layers * forward.tokens


def forward_flops(cfg, rows: int, length: int) -> float:
  """FLOPs of one forward over [rows, length] tokens: 2 per weight per token, plus attention products."""
  return _forward_of(cfg, (rows, length)).total


def sequences_forward_flops(cfg, lengths: np.ndarray) -> float:
  """FLOPs of one forward over sequences of these lengths, each alone (no padding, attention within itself)."""
  return _forward_of(cfg, np.asarray(lengths)).total


def train_step_flops(cfg, shapes: dict[str, tuple[int, ...] | np.ndarray], reasoning_pass: bool) -> float:
  """Model FLOPs of one step: forward + backward of queries and passages (trained and frozen weights counted
  as such), plus the q' forward."""
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
  """FLOPs the step's program runs: the model FLOPs plus what it recomputes (remat, GradCache's first forward).
  `shapes` gives per `*_ids` input its (rows, length), or an array of its sequences' lengths (the FLOPs of the
  real tokens)."""
  flops = 0.0
  for name in ("query_ids", "passage_ids"):
    forward = _forward_of(cfg, shapes[name])
    flops += forward.with_backward + grad_cache * forward.total
    flops += recomputed(cfg, forward, remat)
  if reasoning_pass and "reason_ids" in shapes:
    flops += _forward_of(cfg, shapes["reason_ids"]).total
  return flops
