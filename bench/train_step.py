"""Train-step speed and memory: rejax vs an equivalent PyTorch step, and GradCache's peak memory.

    python -m bench.train_step [--models tiny,smollm2] [--cases full,real] [--queries 2] [--group 4]
        [--length 64] [--max-passage-length 512] [--real-batches 3] [--repeats 3] [--json OUT.json]

1. Throughput: full fine-tuning steps of a tiny random Qwen3 and of SmolLM2-135M in fp32 (RI-InfoNCE: queries
   and passages with gradient, reasoning queries without; AdamW) in rejax and in PyTorch (transformers model, the
   same loss written in torch, torch.optim.AdamW) on the same batches, two cases:
   - full: one random batch, every sequence `--length` tokens (no padding anywhere);
   - real: `--real-batches` batches of the repository's training data (sample_data/reason_embed) as
     `rejax train`'s pipeline builds them; rejax packs them (data.pack, the default), PyTorch pads every input
     to its longest sequence in multiples of 8 as FlagEmbedding's collator does.
   Prints real tokens/s of both, the ratio, each one's padding fraction and each one's fraction of the machine's
   matmul peak measured in the same run (model FLOPs of the real tokens, rejax.train.flops). `--json` writes
   {"cases": [{"name", "batches", "rejax_tokens_per_s", "torch_tokens_per_s", "ratio", "padding_fraction",
   "rejax_padding_fraction", ...}]} (padding_fraction: the PyTorch reference's).
2. Memory: XLA's own accounting (compiled memory_analysis, no run needed) of the step's temporary buffers at
   1x, 4x and 16x the global batch, with and without GradCache.
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
import optax

from bench import machine


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


def torch_step_fn(model_dir: str, group: int, temperature: float):
  """step(batch): a PyTorch train step equivalent to ours (same model, same loss, AdamW) on a padded batch."""
  import torch
  from transformers import AutoModel

  torch.set_num_threads(machine.usable_cores())
  model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5, eps=1e-8, weight_decay=0.0)
  return torch_train_step(model, opt, group, temperature)


def torch_embed(model, ids, mask):
  """Unit-norm float32 last-real-token embeddings [B, D] of a transformers base model (our `embed`)."""
  import torch

  hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
  last = mask.sum(1) - 1
  return torch.nn.functional.normalize(hidden[torch.arange(len(ids)), last].float(), dim=-1)


def torch_ri_infonce(q, p, q_reason, group: int, temperature: float):
  """RI-InfoNCE in torch (rejax.losses.ri_infonce): per-query InfoNCE weighted by its ratio to the reasoning
  query's loss, clamped to [0, 5] and normalised, the weights taken without gradient."""
  import torch

  def per_query(queries):
    scores = queries @ p.T / temperature
    return torch.logsumexp(scores, 1) - scores[torch.arange(len(queries)), torch.arange(len(queries)) * group]

  losses = per_query(q)
  with torch.no_grad():
    w = torch.clamp(losses / (per_query(q_reason) + 1e-6), 0, 5)
    total = w.sum()  # 0 only when every loss underflowed to 0: uniform weights then, as rejax's (no 0/0)
    w = torch.where(total > 0, w / torch.where(total > 0, total, 1.0), torch.full_like(w, 1 / len(w)))
  return (w * losses).sum()


def torch_train_step(model, opt, group: int, temperature: float, device: str = "cpu", autocast_dtype=None):
  """step(batch) -> loss: encode (reasoning queries without gradient), RI-InfoNCE, clip 1.0, `opt`'s update.
  The model runs under autocast to `autocast_dtype` when given (fp32 weights, e.g. bf16 compute); the loss on
  float32 embeddings. Returns after the update has finished (`loss.item()` waits for the device)."""
  import torch

  trained = [param for param in model.parameters() if param.requires_grad]

  def step(batch):
    t = {k: torch.as_tensor(v, dtype=torch.long, device=device) for k, v in batch.items()}
    with torch.autocast(torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
      with torch.no_grad():
        q_reason = torch_embed(model, t["reason_ids"], t["reason_mask"])
      q, p = torch_embed(model, t["query_ids"], t["query_mask"]), torch_embed(model, t["passage_ids"],
                                                                              t["passage_mask"])
    loss = torch_ri_infonce(q, p, q_reason, group, temperature)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained, 1.0)
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
  parser.add_argument("--cases", default="full,real", help="comma list of: full, real")
  parser.add_argument("--queries", type=int, default=2)
  parser.add_argument("--group", type=int, default=4)
  parser.add_argument("--length", type=int, default=64, help="tokens per sequence of the full case")
  parser.add_argument("--max-query-length", type=int, default=512, help="real case: the recipe's limits")
  parser.add_argument("--max-passage-length", type=int, default=512)
  parser.add_argument("--real-batches", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--skip-memory", action="store_true")
  parser.add_argument("--json", type=pathlib.Path, help="write the cases' figures here")
  args = parser.parse_args()

  import tempfile

  from bench.encode import matmul_peak_flops
  from rejax import assets

  import torch

  torch.set_num_threads(machine.usable_cores())
  peak = matmul_peak_flops(jnp.float32)
  print("\n".join(machine.describe(jax_peaks={"float32": peak})))
  print(f"device: {jax.devices()[0].device_kind}; matmul peak (JAX fp32 2048^3): {peak / 1e9:.1f} GFLOP/s")
  cases = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.models.split(","):
      model_dir = {"tiny": lambda: tiny_model_dir(tmp), "smollm2": lambda: str(assets.fetch("smollm2"))}.get(
          name, lambda: name)()
      tokenizer_dir = str(assets.fetch("smollm2")) if name == "tiny" else model_dir  # tiny: SmolLM2's lengths
      cases += bench_model(name, model_dir, args, peak, memory=not args.skip_memory and name != "tiny",
                           tokenizer_dir=tokenizer_dir)
  if args.json:
    args.json.write_text(json.dumps({"peak_flops": peak, "cases": cases}, indent=1) + "\n")
    print(f"wrote {args.json}")


def bench_model(name: str, model_dir: str, args, peak: float, memory: bool, tokenizer_dir: str) -> list[dict]:
  from bench import real_data
  from rejax.data.pipeline import tokens_in
  from rejax.hf.load import load_decoder
  from rejax.sharding import make_mesh
  from rejax.train.distributed import to_global_batch
  from rejax.train.flops import train_step_flops
  from rejax.losses import RIInfoNCE
  from rejax.train.state import init_train_state
  from rejax.train.step import make_train_step

  loss = RIInfoNCE(group_size=args.group, ri_start_step=0)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-5, eps=1e-8, weight_decay=0.0))
  model, cfg = load_decoder(model_dir)
  graphdef, state = init_train_state(model, tx)
  step = jax.jit(make_train_step(graphdef, tx, loss), donate_argnums=0)
  key = jax.random.key(0)
  holder = [state]
  torch_step = torch_step_fn(model_dir, args.group, loss.temperature)
  weights = sum(x.size for x in jax.tree.leaves(state.trainable)) - cfg.vocab_size * cfg.hidden_size
  mesh = make_mesh()  # one device: to_global_batch only packs and places

  def jax_steps(batches):
    for batch in batches:
      holder[0], metrics = step(holder[0], batch, key)
    jax.block_until_ready(metrics["loss"])

  results = []
  for case in args.cases.split(","):
    if case == "full":
      host = [make_batch(args.queries, args.group, args.length, cfg.vocab_size)]
      rejax_batches, torch_batches = host, host
    elif case == "real":
      host = real_data.train_batches(tokenizer_dir, queries=args.queries, group=args.group,
                                     max_query_length=args.max_query_length,
                                     max_passage_length=args.max_passage_length, steps=args.real_batches,
                                     vocab_size=cfg.vocab_size)
      rejax_batches = [to_global_batch(b, mesh, 0, pack_rows=1) for b in host]
      torch_batches = [real_data.pad_like_flagembedding(b) for b in host]
    else:
      raise SystemExit(f"--cases: unknown case {case!r} (full, real)")
    jax_s = median_seconds(lambda: jax_steps(rejax_batches), args.repeats)
    torch_s = median_seconds(lambda: [torch_step(b) for b in torch_batches], args.repeats)
    tokens = sum(tokens_in(b) for b in host)
    lengths = [{f"{n}_ids": b[f"{n}_mask"].sum(axis=1) for n in real_data.INPUTS} for b in host]
    flops = sum(train_step_flops(cfg, ls, reasoning_pass=True) for ls in lengths)
    rejax_computed = sum(real_data.computed_tokens(b) for b in rejax_batches)
    figures = {"name": f"{name} {case}", "batches": case, "rejax_tokens_per_s": tokens / jax_s,
               "torch_tokens_per_s": tokens / torch_s, "ratio": torch_s / jax_s,
               "padding_fraction": 1 - tokens / sum(real_data.computed_tokens(b) for b in torch_batches),
               "rejax_padding_fraction": 1 - tokens / rejax_computed, "real_tokens": tokens,
               "rejax_peak_fraction": flops / jax_s / peak, "torch_peak_fraction": flops / torch_s / peak}
    results.append(figures)
    print(f"\n{name}, {case} batches: full fine-tuning fp32, {weights / 1e6:.1f}M non-embedding weights; "
          f"{len(host)} batch(es) of {args.queries} queries x (1 + {args.group} passages + 1 reasoning query), "
          f"{tokens} real tokens")
    for framework, seconds, padding in (("rejax (JAX)", jax_s, figures["rejax_padding_fraction"]),
                                        ("PyTorch (transformers)", torch_s, figures["padding_fraction"])):
      print(f"{framework:24s} {tokens / seconds:8.1f} real tokens/s  {seconds:7.2f} s  padding {padding:5.1%}  "
            f"{flops / seconds / peak:6.1%} of peak")
    print(f"ratio rejax / PyTorch: {torch_s / jax_s:.2f}x")

  if memory:
    batch = make_batch(args.queries, args.group, args.length, cfg.vocab_size)
    print(f"peak temporary memory of the compiled step (XLA memory_analysis), {name}, length {args.length}:")
    print(f"{'global batch (queries)':>24s} {'no GradCache':>14s} {'GradCache':>14s}")
    abstract_state = jax.eval_shape(lambda: holder[0])
    for mult in (1, 4, 16):
      b = args.queries * mult
      shapes = {k: jax.ShapeDtypeStruct((v.shape[0] * mult, v.shape[1]), v.dtype) for k, v in batch.items()}
      row = []
      for chunk in (None, args.queries):
        fn = jax.jit(make_train_step(graphdef, tx, loss, grad_cache_chunk=chunk))
        mem = fn.lower(abstract_state, shapes, key).compile().memory_analysis()
        row.append(f"{mem.temp_size_in_bytes / 2**20:11.0f} MiB")
      print(f"{b:>24d} {row[0]:>14s} {row[1]:>14s}")
  return results


if __name__ == "__main__":
  main()
