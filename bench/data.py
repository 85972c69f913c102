"""Input pipeline throughput next to the train step's consumption, on the tiny config, in one run.

    python -m bench.data [--steps 200] [--workers 2]

Prints batches/s and real (unpadded) tokens/s of the Grain pipeline with 0 and N worker processes, the
train step's steps/s on the same batches (tiny random Qwen3 of configs/tiny.py, this machine), and the
ratio pipeline / step: above 1 the accelerator never waits for input. Absolute numbers are noisy on
shared machines; the ratio holds.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pipeline_rate(config, steps: int, workers: int) -> tuple[float, float]:
  """(batches/s, real tokens/s) over `steps` batches after the first (start-up) one."""
  from rejax.data.pipeline import make_dataset, tokens_in

  iterator = iter(make_dataset(config, num_steps=steps + 1, num_workers=workers))
  next(iterator)
  tokens, start = 0, time.perf_counter()
  for _ in range(steps):
    tokens += tokens_in(next(iterator))
  seconds = time.perf_counter() - start
  return steps / seconds, tokens / seconds


def step_rate(run_config, data_config, repeats: int) -> float:
  """Train steps/s of the tiny config's jitted step on pipeline batches (compile excluded)."""
  from flax import nnx

  from rejax.data.pipeline import make_dataset
  from rejax.models import config_from_hf_dict, init_decoder
  from rejax.sharding import batch_sharding, make_mesh, use_mesh
  from rejax.losses import RIInfoNCE
  from rejax.train.optim import linear_warmup_decay, make_optimizer
  from rejax.train.state import init_train_state, jit_train_step
  from rejax.train.step import make_train_step

  mesh = make_mesh()
  with use_mesh(mesh):
    cfg = config_from_hf_dict(run_config.model.hf_config.to_dict())
    tx = make_optimizer(linear_warmup_decay(run_config.optim.lr, run_config.total_steps))
    graphdef, state = init_train_state(init_decoder(cfg, mesh=mesh), tx, wrt=nnx.Param)
    step = jit_train_step(make_train_step(graphdef, tx, RIInfoNCE(ri_start_step=0)), state, batch_sharding(mesh, 2))
    host = next(iter(make_dataset(data_config, num_steps=1)))
    batch = {k: jax.device_put(v, batch_sharding(mesh, 2)) for k, v in host.items() if k.endswith(("_ids", "_mask"))}
    key = jax.random.key(0)
    state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      state, metrics = step(state, batch, key)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  return 1 / statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args()

  from rejax.data.convert import convert
  from rejax.data.pipeline import PipelineConfig
  from rejax.hf.hub import resolve_model_dir
  from rejax.train.config import load_config_file

  run_config = load_config_file(str(ROOT / "configs" / "tiny.py"))
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = pathlib.Path(tmp) / "data"
    convert([str(ROOT / "sample_data" / "reason_embed" / "*.jsonl")], data_dir)
    data_config = PipelineConfig(
        data_dir=str(data_dir), tokenizer_dir=str(resolve_model_dir(run_config.model.tokenizer)),
        domain_settings=dict(run_config.data.domains), max_query_length=run_config.data.max_query_length,
        max_passage_length=run_config.data.max_passage_length, min_bucket=run_config.data.min_bucket)
    rates = {w: pipeline_rate(data_config, args.steps, w) for w in (0, args.workers)}
    steps_per_s = step_rate(run_config, data_config, repeats=10)

  print(f"tiny config: global batch 4 x G 4, lengths {run_config.data.max_query_length}/"
        f"{run_config.data.max_passage_length}, {jax.devices()[0].device_kind} x{jax.device_count()}")
  print(f"train step                {steps_per_s:8.2f} steps/s")
  for workers, (batches, tokens) in rates.items():
    print(f"pipeline, {workers} workers{'':5} {batches:8.2f} batches/s {tokens:10.0f} real tokens/s   "
          f"ratio pipeline/step {batches / steps_per_s:5.2f}x")


if __name__ == "__main__":
  main()
