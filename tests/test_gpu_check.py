"""The GPU check (scripts/gpu_check.sh) runs its CPU path end to end, prints every row, and stays within what the
GPU machine has: no grain, array_record, ml_collections, tensorflow_datasets or faiss imported."""

from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from bench.gpu_check import GPU, plan
from bench.gpu_check_table import status_table, summarise, table

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXED_ROWS = ("device", "model", "settings", "parity", "rejax / PyTorch, full rows", "rejax / PyTorch, varied lengths",
              "cuDNN / XLA attention", "frozen base: compute dtype / float32", "packed / padded",
              "optional packages imported", "run")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
  """(stdout, report) of `bash scripts/gpu_check.sh --cpu`, in a clean environment (one CPU device, offline)."""
  out = tmp_path_factory.mktemp("gpu_check")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OUT")}
  env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1")
  proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--budget", "900", "--out", str(out)],
                        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout, json.loads((out / "gpu_check.json").read_text()), out


@pytest.mark.slow  # the whole GPU check on CPU (2 min, shared by the module)
def test_every_row_is_printed_and_written(cpu_run):
  stdout, report, out = cpu_run
  rows = [line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
  for label in FIXED_ROWS + tuple(part.label for part in plan() if part.kind in ("rejax_step", "torch_step")):
    assert label in rows, f"row {label!r} missing from:\n{stdout}"
  assert (out / "gpu_check.md").read_text() == report["table"]
  assert report["table"] in stdout


@pytest.mark.slow  # the whole GPU check on CPU (2 min, shared by the module)
def test_every_part_runs_on_cpu_but_cudnn_which_says_why(cpu_run):
  stdout, report, _ = cpu_run
  for key, result in report["parts"].items():
    if key.endswith("_cudnn"):
      assert result["status"] == "skipped"
      assert "cuDNN attention needs an NVIDIA GPU" in result["reason"]
    else:
      assert result["status"] == "ok", (key, result)
  assert "skipped: cuDNN attention needs an NVIDIA GPU (JAX platform here: cpu)" in stdout


@pytest.mark.slow  # the whole GPU check on CPU (2 min, shared by the module)
def test_parity_with_transformers_in_fp32(cpu_run):
  """fp32 on the CPU: the decoder computes what transformers computes to 1e-4 on hidden states (tests/test_parity.py's
  bound; here ~2e-6 at |h| ~ 4), so the unit-norm pooled embeddings agree to 1e-5."""
  parity = cpu_run[1]["parts"]["parity"]
  assert parity["dtype"] == "float32"
  diff = parity["rejax_vs_transformers"]
  assert diff["max_abs_hidden"] <= 1e-4
  assert diff["max_abs_pooled"] <= 1e-5
  assert diff["min_cosine"] >= 0.99999


@pytest.mark.slow  # the whole GPU check on CPU (2 min, shared by the module)
def test_figures_are_positive_and_finite(cpu_run):
  report = cpu_run[1]
  summary, parts = report["summary"], report["parts"]
  for name in ("full_xla", "varied_packed_xla"):
    value = summary["rejax_over_torch"][name]
    assert value is not None and value > 0 and math.isfinite(value), name
  assert summary["packed_over_padded"]["xla"] > 0
  for key in ("rejax_full_xla", "rejax_padded_xla", "rejax_packed_xla", "torch_full", "torch_varied"):
    assert summary["mfu"][key] > 0 and summary["tokens_per_s"][key] > 0, key
    assert math.isfinite(parts[key]["first_loss"]), key
  # the same weights (fresh adapters change nothing) and batch: the first step's loss is the same in both frameworks
  np.testing.assert_allclose(parts["torch_full"]["first_loss"], parts["rejax_full_xla"]["first_loss"], rtol=1e-3)
  for key in ("rejax_padded_xla", "rejax_packed_xla"):
    np.testing.assert_allclose(parts["torch_varied"]["first_loss"], parts[key]["first_loss"], rtol=1e-3)
  # the same adapters on both sides: as many trained parameters in PyTorch as in rejax
  assert parts["torch_full"]["trained_parameters"] == parts["rejax_full_xla"]["trained_parameters"]
  # packing computes fewer positions than padding for the same sequences, and both count the same real tokens
  assert parts["rejax_packed_xla"]["tokens"] == parts["rejax_padded_xla"]["tokens"] == parts["torch_varied"]["tokens"]
  assert parts["rejax_packed_xla"]["padded_tokens"] < parts["rejax_padded_xla"]["padded_tokens"]


@pytest.mark.slow  # the whole GPU check on CPU (2 min, shared by the module)
def test_no_part_imports_what_the_gpu_machine_lacks(cpu_run):
  stdout, report, _ = cpu_run
  assert report["forbidden_imported"] == []
  assert all(r.get("forbidden_imported", []) == [] for r in report["parts"].values())
  assert "| optional packages imported | — | — | — | — | none (of grain" in stdout
  # JAX's processes never load torch (whose CUDA libraries could clash with JAX's on the GPU)
  assert [key for key, r in report["parts"].items() if r.get("torch_imported") is False] == [
      "parity", "rejax_full_xla", "rejax_full_xla_frozen_float32", "rejax_padded_xla", "rejax_packed_xla"]


def test_settings_are_the_papers():
  """The check's constants (kept out of ml_collections, which the GPU machine lacks) are paper_config's."""
  from bench.gpu_check_parts import PAPER_LOSS, PAPER_OPTIM, paper_lora
  from rejax.domains import PAPER_DEVICES, PAPER_DOMAIN_SETTINGS
  from rejax.train.recipe import paper_config

  c = paper_config()
  assert paper_lora() == {"rank": c.model.lora.rank, "alpha": c.model.lora.alpha, "dropout": c.model.lora.dropout,
                          "targets": tuple(c.model.lora.targets)}
  assert PAPER_OPTIM == {"lr": c.optim.lr, "total_steps": c.total_steps, "warmup_ratio": c.optim.warmup_ratio,
                         "b1": c.optim.b1, "b2": c.optim.b2, "eps": c.optim.eps, "weight_decay": c.optim.weight_decay,
                         "clip_norm": c.optim.clip_norm}
  assert PAPER_LOSS == {"kind": c.loss.kind, "temperature": c.loss.temperature, "ri_clamp_max": c.loss.ri_clamp_max}
  assert (c.model.dtype, c.model.param_dtype, c.model.remat) == (GPU.compute_dtype, "float32", "full")
  batch, group = PAPER_DOMAIN_SETTINGS["biology"]
  assert (GPU.queries, GPU.group, GPU.max_length) == (batch // PAPER_DEVICES, group, c.data.max_passage_length)


def test_torch_reference_loss_is_rejax_ri_infonce():
  """The PyTorch step's loss (bench.train_step) is rejax.losses.ri_infonce, including when every loss underflows."""
  import jax.numpy as jnp
  import torch

  from bench.train_step import torch_ri_infonce
  from rejax.losses import ri_infonce

  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  q, q_reason = unit(rng.standard_normal((4, 16))), unit(rng.standard_normal((4, 16)))
  # orthonormal queries, each its own positive and its opposite as negatives (scores 50 against 0 and -50): torch's
  # float32 InfoNCE losses are then exactly 0, and so every RI weight, which must not give 0/0
  e = np.eye(16)[:4]
  for q, p in ((q, unit(rng.standard_normal((12, 16)))), (e, np.stack([e, -e, -e], axis=1).reshape(12, 16))):
    ours = float(ri_infonce(*(jnp.asarray(x, jnp.float32) for x in (q, p, q_reason)), group_size=3,
                            temperature=0.02)[0])
    theirs = float(torch_ri_infonce(*(torch.tensor(x, dtype=torch.float32) for x in (q, p, q_reason)), 3, 0.02))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_table_says_what_failed_and_shows_bf16_parity():
  """A GPU report where one part failed and one ran out of time: each keeps its row, saying so; bf16 parity adds
  the fp32 reference rows."""
  diff = {"max_abs_hidden": 0.05, "max_abs_reference_hidden": 9.0, "max_abs_pooled": 2e-3, "min_cosine": 0.9995}
  work = {"tokens": 1000, "padded_tokens": 1000, "real_flops": 1e15, "flops": 1e15, "first_loss": 2.0,
          "shapes": {"query_ids": [8, 512]}, "peak_bytes": 2**30, "trained_parameters": 10}
  device = {"device_kind": "NVIDIA H200", "platform": "gpu", "device_count": 1, "peak_flops": 989e12,
            "peak_source": "rejax.train.flops.CHIPS (dense bf16)", "jax": "x"}
  parts = {"build": {"status": "ok", "parameters": 2e9, "non_embedding_parameters": 1.7e9, "torch": "t",
                     "transformers": "v", "torch_device": "NVIDIA H200"},
           "parity": {"status": "ok", "device": device, "dtype": "bfloat16", "rows": 8, "lengths": [60, 300],
                      "rejax_vs_transformers": diff, "rejax_vs_transformers_fp32": diff,
                      "transformers_vs_transformers_fp32": diff},
           "rejax_full_xla": {"status": "ok", "step_s": 2.0, "compile_s": 40.0, **work},
           "torch_full": {"status": "ok", "step_s": 3.0, **work},
           "rejax_full_cudnn": {"status": "failed", "reason": "exit 1: RuntimeError: cuDNN is unhappy"},
           "rejax_padded_xla": {"status": "timeout", "reason": "killed at its deadline (150 s)"}}
  report = {"mode": "gpu", "budget_s": 540, "wall_s": 500, "sizes": {**GPU.__dict__}, "parts": parts,
            "device": device, "forbidden_imported": [], "summary": summarise(parts, device["peak_flops"])}
  text = table(report, [(p.key, p.label) for p in plan()])
  assert "**NVIDIA H200**" in text and "989 TFLOP/s" in text
  assert "| rejax step, full rows, cuDNN attention | — | — | — | — | exit 1: RuntimeError: cuDNN is unhappy |" in text
  assert "killed at its deadline (150 s)" in text
  assert "| parity vs fp32 (reference) |" in text and "transformers bfloat16 vs transformers fp32" in text
  assert "1.50x (XLA)" in text  # rejax 2.0 s vs PyTorch 3.0 s a step
  assert "| 2.000 | 500 | 50.6% | 1.0 |" in text  # 1e15 FLOPs in 2 s of a 989 TFLOP/s chip


def test_a_part_that_fails_or_hangs_is_reported_not_raised(tmp_path):
  from bench.gpu_check import child_env, run_part

  env = {**child_env(cpu=True), "XLA_FLAGS": ""}
  hung = run_part("build", {}, timeout=0.5, log=tmp_path / "hung.log", env=env)
  assert hung["status"] == "timeout" and "killed at its deadline" in hung["reason"]
  failed = run_part("parity", {}, timeout=120, log=tmp_path / "failed.log", env=env)
  assert failed["status"] == "failed" and "KeyError" in failed["reason"], failed


def test_with_no_time_left_the_table_still_prints(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "OUT"}
  proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", "--budget", "20", "--out",
                         str(tmp_path)], env={**env, "PYTHON": sys.executable}, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  report = json.loads((tmp_path / "gpu_check.json").read_text())
  assert report["parts"]["build"]["reason"].startswith("skipped: out of time (")  # 20 s less the 10 s kept back
  assert all(r["status"] == "skipped" for r in report["parts"].values())
  assert "| model | — | — | — | — | skipped: out of time" in proc.stdout
  assert f"parts: {len(plan())} skipped" in proc.stdout


def test_sigterm_stops_the_check_and_the_table_still_prints(tmp_path):
  """Stopped from outside (SIGTERM, e.g. a wall-clock limit), the running part is killed, no other starts, and the
  table says so."""
  env = {k: v for k, v in os.environ.items() if k not in ("OUT", "XLA_FLAGS")}
  proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_check", "--cpu", "--out", str(tmp_path)],
                          env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert proc.stderr.readline().startswith("[gpu_check] build")
  proc.send_signal(signal.SIGTERM)
  stdout, _ = proc.communicate(timeout=60)
  assert proc.returncode == 0
  parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
  assert parts["build"]["status"] == "stopped"
  assert {r["reason"] for key, r in parts.items() if key != "build"} == {"skipped: the check was stopped (SIGTERM)"}
  assert "| model | — | — | — | — | killed: the check was stopped (SIGTERM) |" in stdout


def test_a_result_the_table_cannot_read_still_gives_a_table_of_statuses():
  report = {"mode": "gpu", "parts": {"build": {"status": "ok", "seconds": 30.0},
                                     "torch_full": {"status": "failed", "seconds": 4.0, "reason": "exit 1: OOM"}}}
  text = status_table(report, [(p.key, p.label) for p in plan()], KeyError("shapes"))
  assert "the full table failed (KeyError: 'shapes')" in text
  assert "| PyTorch step, full rows | failed | 4 | exit 1: OOM |" in text
  assert "| rejax step, full rows, XLA attention | not run (yet) | — |  |" in text
