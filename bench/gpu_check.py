"""The GPU check: one prepared run on an NVIDIA H100/H200 that measures the paper's training step and prints one
markdown table, whatever fails or runs out of time.

    bash scripts/gpu_check.sh [--cpu] [--budget SECONDS] [--out DIR]

On a random Qwen3 of Qwen3-1.7B's architecture at the paper's per-device batch (8 queries x 16 passages + 8
reasoning queries, 512 tokens, LoRA, bf16 compute, the frozen base in bf16 and the adapters in fp32, full remat):
step time, real tokens/s and MFU against the chip's bf16 peak (rejax.train.flops), the same with the frozen base in
fp32, XLA's vs cuDNN's attention, packed vs padded batches of varied real lengths, the same step in PyTorch
(transformers + LoRA, bench/gpu_check_torch.py), and the decoder's bf16 parity with transformers. `--cpu` runs the
same code on a tiny random Qwen3 (tests/test_gpu_check.py): every part but cuDNN's, in one to two minutes on two
CPU cores.

Each measurement runs in its own process (bench/gpu_check_parts.py) under a deadline taken from one overall
budget, in order of importance; one that fails, is killed at its deadline or finds no time left is a row saying
so. This process imports no JAX, torch or rejax: it only plans, waits and writes the table (stdout, and
OUT/gpu_check.md + OUT/gpu_check.json, OUT defaulting to $OUT, else ./gpu_check_out; logs in OUT/logs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

from bench.gpu_check_table import status_table, summarise, table

# What the GPU machine lacks (rejax's data pipeline, config system, tfds, search): no part may import them.
FORBIDDEN_MODULES = ("grain", "array_record", "ml_collections", "tensorflow_datasets", "faiss")
RESERVE_S = 10  # kept back from the budget to write the table
MIN_PART_S = 15  # a part is not started with less time than this left
CPU_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one mode measures: the model, the per-device batch, how many timed steps, the parity dtype."""

  model: str
  architecture: str  # bench.gpu_check_parts.architecture
  queries: int
  group: int
  max_length: int
  timed_steps: int
  parity_rows: int
  parity_dtype: str  # the checkpoint's dtype too
  compute_dtype: str
  length_scale: float  # of the varied lengths (bench.gpu_check_batches)
  seed: int = 0


GPU = Sizes("random Qwen3, Qwen3-1.7B's architecture", "qwen3-1.7b", queries=8, group=16, max_length=512,
            timed_steps=3, parity_rows=8, parity_dtype="bfloat16", compute_dtype="bfloat16", length_scale=1.0)
# CPU: fp32 throughout. The decoder matches transformers to 1e-4 there (tests/test_parity.py); bf16 on a CPU is
# emulated, several times slower, and says nothing about the GPU. Lengths scaled from 512 to 64 tokens.
CPU = Sizes("tiny random Qwen3 (bench.train_step.TINY_QWEN3)", "tiny", queries=2, group=4, max_length=64,
            timed_steps=1, parity_rows=4, parity_dtype="float32", compute_dtype="float32", length_scale=64 / 512)


@dataclasses.dataclass(frozen=True)
class Part:
  key: str
  label: str  # the table row
  kind: str  # bench.gpu_check_parts.PARTS
  cap_s: int  # the most it may take
  settings: dict = dataclasses.field(default_factory=dict)
  needs_gpu: bool = False


def plan() -> list[Part]:
  """Every measurement, most important first (what a short budget still gets)."""
  def rejax(batch, attention, frozen_dtype=""):
    layout = {"full": "full rows", "padded": "varied lengths, padded", "packed": "varied lengths, packed"}[batch]
    name = {"xla": "XLA", "cudnn": "cuDNN"}[attention]
    key, label = f"rejax_{batch}_{attention}", f"rejax step, {layout}, {name} attention"
    if frozen_dtype:  # the frozen base in another dtype than the recipe's (model.frozen_dtype)
      key, label = f"{key}_frozen_{frozen_dtype}", f"{label}, frozen base in {frozen_dtype}"
    return Part(key, label, "rejax_step", 200, {"batch": batch, "attention": attention, "frozen_dtype": frozen_dtype},
                needs_gpu=attention == "cudnn")

  return [Part("build", "model", "build", 150),
          Part("parity", "parity", "parity", 150),
          rejax("full", "xla"),
          Part("torch_full", "PyTorch step, full rows", "torch_step", 150, {"batch": "full"}),
          rejax("full", "xla", frozen_dtype="float32"),
          rejax("full", "cudnn"),
          rejax("padded", "xla"),
          rejax("packed", "xla"),
          Part("torch_varied", "PyTorch step, varied lengths, padded to the longest", "torch_step", 150,
               {"batch": "varied"}),
          rejax("padded", "cudnn"),
          rejax("packed", "cudnn")]


def child_env(cpu: bool) -> dict[str, str]:
  """The parts' environment: the repository importable, nothing fetched from a hub, CPU only with --cpu."""
  root = str(pathlib.Path(__file__).resolve().parent.parent)
  env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
  if cpu:  # one OpenMP thread: torch's spinning threads crawl on a shared 2-core machine; XLA's CPU compiler
    # without its costly optimisations: the tiny step compiles in a fraction of the time (its speed is no figure)
    env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               XLA_FLAGS=" ".join(filter(None, [os.environ.get("XLA_FLAGS"), *CPU_XLA_FLAGS])))
  return env


class RunningParts:
  """The parts' processes now running. Once stopped, each is killed (its whole group), and so is any registered
  later: a part starting as the stop comes is killed as soon as it exists."""

  def __init__(self):
    self.procs: set[subprocess.Popen] = set()
    self.stopped = False

  def add(self, proc: subprocess.Popen) -> None:
    self.procs.add(proc)
    if self.stopped:
      kill_group(proc)

  def discard(self, proc: subprocess.Popen) -> None:
    self.procs.discard(proc)

  def stop(self, signum=None, frame=None) -> None:
    """Also the SIGTERM handler: kills without reaping (the thread waiting on each part reaps it)."""
    self.stopped = True
    for proc in list(self.procs):
      kill_group(proc)


def run_part(kind: str, spec: dict, timeout: float, log: pathlib.Path, env: dict,
             running: RunningParts | None = None) -> dict:
  """One part in its own process group (in `running` while it runs), killed at `timeout`: its result, or why
  there is none."""
  result_path = log.with_suffix(".json")
  start = time.monotonic()
  running = running or RunningParts()
  with log.open("w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_check_parts", kind, json.dumps(spec), str(result_path)],
                            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    running.add(proc)
    try:
      code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      kill_group(proc)
      proc.wait()
      return {"status": "timeout", "reason": f"killed at its deadline ({timeout:.0f} s)",
              "seconds": time.monotonic() - start}
    finally:
      running.discard(proc)
  seconds = time.monotonic() - start
  if code != 0 or not result_path.is_file():
    return {"status": "failed", "reason": f"exit {code}: {last_line(log)}", "seconds": seconds}
  return {"status": "ok", "seconds": seconds, **json.loads(result_path.read_text())}


def kill_group(proc: subprocess.Popen) -> None:
  """SIGKILL to the part's process group: the part and any process it started."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:  # already gone
    pass


def last_line(log: pathlib.Path) -> str:
  """The log's last non-empty line (usually the exception), shortened for a table cell."""
  lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
  text = lines[-1] if lines else "no output"
  return (text[:197] + "...") if len(text) > 200 else text


def device_of(results: dict) -> dict:
  """The JAX device the first JAX part to finish reported (device, peak FLOP/s), or {}."""
  return next((r["device"] for r in results.values() if "device" in r), {})


def skip_reason(part: Part, results: dict, cpu: bool) -> str | None:
  """Why `part` cannot run given what ran before it, or None."""
  if part.needs_gpu:
    platform = device_of(results).get("platform")
    if cpu or platform not in (None, "gpu"):
      return f"skipped: cuDNN attention needs an NVIDIA GPU (JAX platform here: {platform or 'cpu'})"
  if part.kind != "build" and results.get("build", {}).get("status") != "ok":
    return "skipped: no checkpoint (the model part did not finish)"
  return None


class Check:
  """One run of the plan within the budget. Each part's deadline is its cap or what is left, whichever is less.
  The model part runs first (every other part loads its checkpoint), then the rest in order: one at a time on the
  GPU (one chip, and each part wants all its memory), two at a time in the CPU mode (its parts are mostly
  one-threaded imports and compiles). The report is rewritten after every part, so a run killed from outside
  still leaves its latest table in OUT; SIGTERM kills the running parts, starts no other and writes the table."""

  def __init__(self, sizes: Sizes, cpu: bool, budget_s: float, out: pathlib.Path, model_dir: str):
    self.sizes, self.cpu, self.budget_s, self.out = sizes, cpu, budget_s, out
    self.start = time.monotonic()
    self.deadline = self.start + budget_s - RESERVE_S
    self.env = child_env(cpu)
    self.spec = {**dataclasses.asdict(sizes), "model_dir": model_dir, "checkpoint_dtype": sizes.parity_dtype}
    self.results: dict[str, dict] = {}
    self.running = RunningParts()
    self.lock = threading.Lock()
    (out / "logs").mkdir(parents=True, exist_ok=True)

  def run(self) -> None:
    first, *rest = plan()
    self.attempt(first)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 if self.cpu else 1) as pool:
      list(pool.map(self.attempt, rest))

  def attempt(self, part: Part) -> None:
    stopped = self.running.stopped
    reason = "skipped: the check was stopped (SIGTERM)" if stopped else skip_reason(part, self.results, self.cpu)
    left = self.deadline - time.monotonic()
    if reason is None and left < MIN_PART_S:
      reason = f"skipped: out of time ({left:.0f} s of the {self.budget_s:.0f} s budget left)"
    if reason:
      self.results[part.key] = {"status": "skipped", "reason": reason}
      return
    print(f"[gpu_check] {part.key} (up to {min(part.cap_s, left):.0f} s)", file=sys.stderr, flush=True)
    result = run_part(part.kind, {**self.spec, **part.settings}, min(part.cap_s, left),
                      self.out / "logs" / f"{part.key}.log", self.env, self.running)
    if self.running.stopped and result["status"] != "ok":
      result = {**result, "status": "stopped", "reason": "killed: the check was stopped (SIGTERM)"}
    self.results[part.key] = result
    self.write()

  def report(self) -> dict:
    results = {p.key: self.results[p.key] for p in plan() if p.key in self.results}
    device = device_of(results)
    report = {"mode": "cpu" if self.cpu else "gpu", "budget_s": self.budget_s,
              "wall_s": time.monotonic() - self.start, "sizes": dataclasses.asdict(self.sizes), "device": device,
              "parts": results, "summary": {},
              "forbidden_imported": sorted({m for r in results.values() for m in r.get("forbidden_imported", [])}
                                           | {m for m in FORBIDDEN_MODULES if m in sys.modules})}
    labels = [(p.key, p.label) for p in plan()]
    try:
      report["summary"] = summarise(results, device.get("peak_flops"))
      report["table"] = table(report, labels)
    except Exception as error:  # a figure the table did not expect must not cost the run its table
      report["table"] = status_table(report, labels, error)
    return report

  def write(self) -> dict:
    """The report as it stands, written to OUT/gpu_check.md and OUT/gpu_check.json."""
    with self.lock:
      report = self.report()
      (self.out / "gpu_check.md").write_text(report["table"])
      (self.out / "gpu_check.json").write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
      return report


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cpu", action="store_true", default=os.environ.get("GPU_CHECK_CPU") == "1",
                      help="tiny sizes on the CPU (also GPU_CHECK_CPU=1)")
  parser.add_argument("--budget", type=float, help="seconds for the whole run (default 540; 240 with --cpu)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(os.environ.get("OUT") or "gpu_check_out"))
  args = parser.parse_args()
  sizes, budget = (CPU, args.budget or 240) if args.cpu else (GPU, args.budget or 540)
  args.out.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="gpu_check_model_") as model_dir:
    check = Check(sizes, args.cpu, budget, args.out, model_dir)
    signal.signal(signal.SIGTERM, check.running.stop)
    check.run()
  report = check.write()
  print(report["table"])
  print(f"wrote {args.out / 'gpu_check.md'} and {args.out / 'gpu_check.json'}")


if __name__ == "__main__":
  main()
