"""Encoder forward throughput: rejax (JAX) vs transformers (PyTorch) on SmolLM2-135M, same batch, one run.

    python -m bench.encode [--batch 32] [--length 128] [--dtype float32] [--repeats 5]

Prints tokens/s of both, their ratio, and each one's fraction of this machine's matmul peak, measured in the
same run as a large fp32 (or bf16) matmul in JAX. Absolute numbers are noisy on shared machines; the ratio holds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rejax.train.flops import forward_flops
from rejax.train.flops import measured_matmul_peak as matmul_peak_flops


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of `fn()` over `repeats` runs after one warm-up (which also compiles)."""
  fn()
  return statistics.median(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", help="HF model dir (default: SmolLM2-135M-Instruct via rejax.assets)")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  import torch
  from transformers import AutoModel

  from rejax import assets
  from rejax.hf.load import load_decoder
  from rejax.models.pooling import embed

  model_dir = args.model or assets.fetch("smollm2")
  torch.set_num_threads(os.cpu_count())
  ids = np.random.default_rng(0).integers(0, 49152, (args.batch, args.length), dtype=np.int32)
  mask = np.ones_like(ids)
  tokens = ids.size

  model, cfg = load_decoder(model_dir, param_dtype=args.dtype, dtype=args.dtype)
  jax_forward = jax.jit(embed)
  ids_j, mask_j = jnp.asarray(ids), jnp.asarray(mask)
  jax_s = median_seconds(lambda: jax_forward(model, ids_j, mask_j).block_until_ready(), args.repeats)

  torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  torch_model = AutoModel.from_pretrained(model_dir, dtype=torch_dtype).eval()
  ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask)

  def torch_forward():
    with torch.inference_mode():
      hidden = torch_model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state[:, -1]
      return torch.nn.functional.normalize(hidden.float(), dim=-1)

  torch_s = median_seconds(torch_forward, args.repeats)

  peak = matmul_peak_flops(jnp.float32 if args.dtype == "float32" else jnp.bfloat16)
  flops = forward_flops(cfg, args.batch, args.length)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, torch threads {torch.get_num_threads()}, "
        f"batch {args.batch} x {args.length} tokens, {args.dtype}")
  print(f"matmul peak (JAX {args.dtype} 2048^3): {peak / 1e9:.1f} GFLOP/s")
  for name, seconds in (("rejax (JAX)", jax_s), ("transformers (PyTorch)", torch_s)):
    print(f"{name:24s} {tokens / seconds:9.1f} tokens/s  {seconds * 1e3:8.1f} ms/batch  "
          f"{flops / seconds / peak:6.1%} of matmul peak")
  print(f"ratio rejax / transformers: {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
  main()
