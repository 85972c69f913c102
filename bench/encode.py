"""Encoder forward throughput: rejax (JAX) vs transformers (PyTorch) on SmolLM2-135M, same inputs, one run.

    python -m bench.encode [--cases full,real] [--batch 32] [--length 128] [--max-length 512]
        [--dtype float32] [--repeats 5] [--json OUT.json]

Two cases: full, one random batch of `--batch` x `--length` tokens (no padding anywhere); real, every passage of
the repository's training data (sample_data/reason_embed), tokenised up to `--max-length`: rejax's Encoder
(longest first, packed rows, the default) against the reference encoding as FlagEmbedding does (longest first,
each batch padded to its longest text). Prints real tokens/s of both, their ratio, the padding fractions and each
one's fraction of this machine's matmul peak, measured in the same run as a large fp32 (or bf16) matmul in JAX.
`--json` writes {"cases": [{"name", "batches", "rejax_tokens_per_s", "torch_tokens_per_s", "ratio",
"padding_fraction", ...}]} (padding_fraction: the reference's). Absolute numbers are noisy on shared machines.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import machine
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
  parser.add_argument("--cases", default="full,real", help="comma list of: full, real")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128, help="tokens per text of the full case")
  parser.add_argument("--max-length", type=int, default=512, help="real case: tokens per text at most")
  parser.add_argument("--texts", type=int, default=128, help="real case: the first N passages (0: all)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--json", type=pathlib.Path, help="write the cases' figures here")
  args = parser.parse_args()

  import torch
  from transformers import AutoModel

  from bench import real_data
  from rejax import assets
  from rejax.data.text import load_tokenizer, tokenize
  from rejax.eval.encode import Encoder
  from rejax.hf.load import load_decoder

  model_dir = args.model or assets.fetch("smollm2")
  torch.set_num_threads(machine.usable_cores())
  model, cfg = load_decoder(model_dir, param_dtype=args.dtype, dtype=args.dtype)
  tokenizer = load_tokenizer(model_dir)
  torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  torch_model = AutoModel.from_pretrained(model_dir, dtype=torch_dtype).eval()
  peak = matmul_peak_flops(jnp.float32 if args.dtype == "float32" else jnp.bfloat16)
  print("\n".join(machine.describe((args.dtype,), jax_peaks={args.dtype: peak})))
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, torch threads {torch.get_num_threads()}, "
        f"{args.dtype}; matmul peak (JAX {args.dtype} 2048^3): {peak / 1e9:.1f} GFLOP/s")

  def torch_encode(batches):
    """FlagEmbedding's way: batches longest first, each padded to its longest text, last token, normalised."""
    out = []
    with torch.inference_mode():
      for ids, mask in batches:
        hidden = torch_model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(ids)), mask.sum(1) - 1]
        out.append(torch.nn.functional.normalize(last.float(), dim=-1))
    return out

  cases = []
  for case in args.cases.split(","):
    if case == "full":
      ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.length), dtype=np.int32)
      token_ids = [list(row) for row in ids]
    elif case == "real":
      token_ids = tokenize(tokenizer, real_data.passage_texts(args.texts or None), args.max_length)
    else:
      raise SystemExit(f"--cases: unknown case {case!r} (full, real)")
    encoder = Encoder(model, tokenizer, max_length=max(map(len, token_ids)), batch_size=args.batch)
    jax_s = median_seconds(lambda: encoder.encode_tokens(token_ids, progress=False), args.repeats)
    batches, computed = reference_batches(token_ids, args.batch, encoder.pad_id)
    torch_s = median_seconds(lambda: torch_encode(batches), args.repeats)
    tokens = sum(map(len, token_ids))
    flops = sum(forward_flops(cfg, 1, len(t)) for t in token_ids)
    figures = {"name": f"encode {case}", "batches": case, "rejax_tokens_per_s": tokens / jax_s,
               "torch_tokens_per_s": tokens / torch_s, "ratio": torch_s / jax_s,
               "padding_fraction": 1 - tokens / computed, "texts": len(token_ids), "real_tokens": tokens,
               "rejax_peak_fraction": flops / jax_s / peak, "torch_peak_fraction": flops / torch_s / peak}
    cases.append(figures)
    print(f"\n{case}: {len(token_ids)} texts, {tokens} real tokens, batches of {args.batch}")
    for name, seconds in (("rejax (JAX)", jax_s), ("transformers (PyTorch)", torch_s)):
      print(f"{name:24s} {tokens / seconds:9.1f} real tokens/s  {seconds * 1e3:8.1f} ms  "
            f"{flops / seconds / peak:6.1%} of matmul peak")
    print(f"reference padding {figures['padding_fraction']:.1%}; ratio rejax / transformers: {torch_s / jax_s:.2f}x")
  if args.json:
    args.json.write_text(json.dumps({"peak_flops": peak, "cases": cases}, indent=1) + "\n")
    print(f"wrote {args.json}")


def reference_batches(token_ids, batch_size: int, pad_id: int):
  """(torch batches longest first, each padded to its longest text; token positions computed in all)."""
  import torch

  order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
  batches, computed = [], 0
  for start in range(0, len(order), batch_size):
    rows = [token_ids[i] for i in order[start : start + batch_size]]
    length = len(rows[0])
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, seq in enumerate(rows):
      ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
    batches.append((ids, mask))
    computed += ids.numel()
  return batches, computed


if __name__ == "__main__":
  main()
