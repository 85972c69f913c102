"""LoRA adapters on the decoder's projections, and merging them back into plain weights for export.

y = x W + b + (alpha / r) * dropout(x) A B, with A [in, r] (He-uniform) and B [r, out] (zeros), so a fresh
adapter leaves the model unchanged. A and B are `nnx.LoRAParam`s: the optimizer updates exactly those when
LoRA is on. Dropout takes an explicit key per call, so a training step stays a pure function of its inputs.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
from flax import nnx

# The paper's adapter: r=32, alpha=64, dropout 0.1 on every attention and MLP projection.
PAPER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  rank: int = 32
  alpha: float = 64.0
  dropout: float = 0.1
  targets: tuple[str, ...] = PAPER_TARGETS  # regular expressions matched against projection names

  def __post_init__(self):
    if self.rank < 1:
      raise ValueError(f"lora.rank must be >= 1, got {self.rank}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def applies_to(self, name: str) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in self.targets)


class LoRALinear(nnx.Linear):
  """An nnx.Linear (same `kernel`/`bias` paths) plus a low-rank update `lora_a @ lora_b`."""

  def __init__(self, d_in: int, d_out: int, *, lora: LoRAConfig, axes: tuple[str, str], rngs: nnx.Rngs,
               adapter_dtype=jnp.float32, **linear_kwargs):
    super().__init__(d_in, d_out, rngs=rngs, **linear_kwargs)
    init_a = nnx.initializers.he_uniform()
    self.lora_a = nnx.LoRAParam(init_a(rngs.params(), (d_in, lora.rank), adapter_dtype),
                                out_sharding=(axes[0], "lora_rank"))
    self.lora_b = nnx.LoRAParam(jnp.zeros((lora.rank, d_out), adapter_dtype), out_sharding=("lora_rank", axes[1]))
    self.lora_scale = lora.scale
    self.lora_dropout = lora.dropout

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    y = super().__call__(x)
    h = x
    if dropout_key is not None and self.lora_dropout > 0:
      keep = jax.random.bernoulli(dropout_key, 1.0 - self.lora_dropout, x.shape)
      h = jnp.where(keep, x / (1.0 - self.lora_dropout), 0).astype(x.dtype)
    a, b = self.lora_a[...].astype(y.dtype), self.lora_b[...].astype(y.dtype)
    return y + (h @ a @ b) * jnp.asarray(self.lora_scale, y.dtype)


def merged_state(model: nnx.Module) -> nnx.State:
  """The model's plain parameters with every adapter folded in: kernel + scale * A @ B, in float32, kept in the
  wider of the kernel's and the adapters' dtypes (a kernel frozen in bfloat16 is not rounded after the merge).

  The result has exactly the paths of the same decoder built without LoRA (`cfg.replace(lora=None)`).
  """
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.LoRAParam))))
  for path, module in nnx.iter_modules(model):
    if not isinstance(module, LoRALinear):
      continue
    kernel = flat[(*path, "kernel")]
    a, b = module.lora_a[...].astype(jnp.float32), module.lora_b[...].astype(jnp.float32)
    delta = jnp.einsum("...ir,...ro->...io", a, b) * module.lora_scale  # stacked layers: batched over them
    dtype = jnp.promote_types(kernel[...].dtype, module.lora_a[...].dtype)
    flat[(*path, "kernel")] = kernel.replace((kernel[...].astype(jnp.float32) + delta).astype(dtype))
  return nnx.from_flat_state(list(flat.items()))
