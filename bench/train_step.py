"""Train-step speed and memory: rejax vs an equivalent PyTorch step, and GradCache's peak memory.

    python -m bench.train_step [--models tiny,smollm2] [--queries 2] [--group 4] [--length 64] [--repeats 3]

1. Throughput: one full fine-tuning step of a tiny random Qwen3 and of SmolLM2-135M in fp32 (RI-InfoNCE: queries
   and passages with gradient, reasoning queries without; AdamW) in rejax and in PyTorch (transformers model, the
   same loss written in torch, torch.optim.AdamW) on the same batch. Prints tokens/s of both, the ratio, and each one's
   fraction of the machine's matmul peak measured in the same run (model FLOPs: 6 x weights x grad tokens +
   2 x weights x no-grad tokens).
2. Memory: XLA's own accounting (compiled memory_analysis, no run needed) of the step's temporary buffers at
   1x, 4x and 16x the global batch, with and without GradCache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax


def median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up (compiles)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def make_batch(queries: int, group: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  ids = lambda n: rng.integers(0, vocab, (n, length), dtype=np.int32)  # noqa: E731
  ones = lambda n: np.ones((n, length), np.int32)  # noqa: E731
  return {"query_ids": ids(queries), "query_mask": ones(queries), "passage_ids": ids(queries * group),
          "passage_mask": ones(queries * group), "reason_ids": ids(queries), "reason_mask": ones(queries)}


def torch_step_fn(model_dir: str, batch: dict, group: int, temperature: float):
  """A PyTorch train step equivalent to ours: same model, same loss, AdamW."""
  import torch
  from transformers import AutoModel

  torch.set_num_threads(os.cpu_count())
  model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5, eps=1e-8, weight_decay=0.0)
  t = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}

  def embed(ids, mask):
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    last = mask.sum(1) - 1
    return torch.nn.functional.normalize(hidden[torch.arange(len(ids)), last], dim=-1)

  def per_query(q, p):
    scores = q @ p.T / temperature
    return torch.logsumexp(scores, 1) - scores[torch.arange(len(q)), torch.arange(len(q)) * group]

  def step():
    with torch.no_grad():
      q_reason = embed(t["reason_ids"], t["reason_mask"])
    q, p = embed(t["query_ids"], t["query_mask"]), embed(t["passage_ids"], t["passage_mask"])
    losses = per_query(q, p)
    with torch.no_grad():
      w = torch.clamp(losses / (per_query(q_reason, p) + 1e-6), 0, 5)
      w = w / w.sum()
    loss = (w * losses).sum()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()

  return step


TINY_QWEN3 = dict(vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32)


def tiny_model_dir(path: str) -> str:
  """A random tiny Qwen3 checkpoint written with transformers (the same one both frameworks load)."""
  import torch
  from transformers import AutoConfig, AutoModel

  torch.manual_seed(0)
  AutoModel.from_config(AutoConfig.for_model("qwen3", **TINY_QWEN3)).save_pretrained(path)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="tiny,smollm2", help="comma list of: tiny, smollm2, or HF model dirs")
  parser.add_argument("--queries", type=int, default=2)
  parser.add_argument("--group", type=int, default=4)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--skip-memory", action="store_true")
  args = parser.parse_args()

  import tempfile

  from bench.encode import matmul_peak_flops
  from rejax import assets

  peak = matmul_peak_flops(jnp.float32)
  print(f"device: {jax.devices()[0].device_kind}; matmul peak (JAX fp32 2048^3): {peak / 1e9:.1f} GFLOP/s")
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.models.split(","):
      model_dir = {"tiny": lambda: tiny_model_dir(tmp), "smollm2": lambda: str(assets.fetch("smollm2"))}.get(
          name, lambda: name)()
      bench_model(name, model_dir, args, peak, memory=not args.skip_memory and name != "tiny")


def bench_model(name: str, model_dir: str, args, peak: float, memory: bool) -> None:
  from rejax.hf.load import load_decoder
  from rejax.train.step import LossConfig, init_train_state, make_train_step

  loss_cfg = LossConfig(kind="ri_infonce", group_size=args.group, ri_start_step=0)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-5, eps=1e-8, weight_decay=0.0))
  model, cfg = load_decoder(model_dir)
  batch = make_batch(args.queries, args.group, args.length, cfg.vocab_size)

  graphdef, state = init_train_state(model, tx)
  step = jax.jit(make_train_step(graphdef, tx, loss_cfg), donate_argnums=0)
  key = jax.random.key(0)
  holder = [state]

  def jax_step():
    holder[0], metrics = step(holder[0], batch, key)
    jax.block_until_ready(metrics["loss"])

  jax_s = median_seconds(jax_step, args.repeats)
  torch_s = median_seconds(torch_step_fn(model_dir, batch, args.group, loss_cfg.temperature), args.repeats)

  weights = sum(x.size for x in jax.tree.leaves(state.trainable)) - cfg.vocab_size * cfg.hidden_size
  grad_tokens = args.queries * (1 + args.group) * args.length
  nograd_tokens = args.queries * args.length
  flops = 6 * weights * grad_tokens + 2 * weights * nograd_tokens
  tokens = grad_tokens + nograd_tokens
  print(f"\n{name}: full fine-tuning fp32, {weights / 1e6:.1f}M non-embedding weights; batch {args.queries} "
        f"queries x (1 + {args.group} passages + 1 reasoning query) x {args.length} real tokens")
  for framework, seconds in (("rejax (JAX)", jax_s), ("PyTorch (transformers)", torch_s)):
    print(f"{framework:24s} {tokens / seconds:8.1f} tokens/s  {seconds:7.2f} s/step  "
          f"{flops / seconds / peak:6.1%} of peak")
  print(f"ratio rejax / PyTorch: {torch_s / jax_s:.2f}x")

  if memory:
    print(f"peak temporary memory of the compiled step (XLA memory_analysis), {name}, length {args.length}:")
    print(f"{'global batch (queries)':>24s} {'no GradCache':>14s} {'GradCache':>14s}")
    abstract_state = jax.eval_shape(lambda: state)
    for mult in (1, 4, 16):
      b = args.queries * mult
      shapes = {k: jax.ShapeDtypeStruct((v.shape[0] * mult, v.shape[1]), v.dtype) for k, v in batch.items()}
      row = []
      for chunk in (None, args.queries):
        fn = jax.jit(make_train_step(graphdef, tx, loss_cfg, grad_cache_chunk=chunk))
        mem = fn.lower(abstract_state, shapes, key).compile().memory_analysis()
        row.append(f"{mem.temp_size_in_bytes / 2**20:11.0f} MiB")
      print(f"{b:>24d} {row[0]:>14s} {row[1]:>14s}")


if __name__ == "__main__":
  main()
