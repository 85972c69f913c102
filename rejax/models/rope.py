"""Rotary position embeddings in Hugging Face's layout (rotate_half), incl. Llama-3.1 "llama3" scaling."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np


def inverse_frequencies(head_dim: int, theta: float, scaling: dict[str, Any] | None = None) -> np.ndarray:
  """Per-pair rotation frequencies [head_dim // 2] (float32), as transformers computes them."""
  exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
  inv_freq = (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)
  if scaling is None:
    return inv_freq
  return _llama3_scaled(inv_freq, scaling)


def _llama3_scaled(inv_freq: np.ndarray, scaling: dict[str, Any]) -> np.ndarray:
  """Llama-3.1's frequency rescaling: long wavelengths / factor, short kept, a smooth ramp between."""
  factor = scaling["factor"]
  low_freq_factor = scaling["low_freq_factor"]
  high_freq_factor = scaling["high_freq_factor"]
  old_context = scaling["original_max_position_embeddings"]
  low_freq_wavelen = old_context / low_freq_factor
  high_freq_wavelen = old_context / high_freq_factor

  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_tables(positions_bt: jnp.ndarray, inv_freq: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(cos, sin) [B, T, head_dim] in float32 for integer positions [B, T]."""
  angles = positions_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_btnh: jnp.ndarray, cos_bth: jnp.ndarray, sin_bth: jnp.ndarray) -> jnp.ndarray:
  """x rotated by position: x*cos + rotate_half(x)*sin, computed in float32, returned in x's dtype."""
  x = x_btnh.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  out = x * cos_bth[:, :, None, :] + rotated * sin_bth[:, :, None, :]
  return out.astype(x_btnh.dtype)
