"""`rejax plan`: the step `rejax train` compiles, compiled without running it. On cpu:8 its memory figures are
those of a real run's compiled step (compiled_steps.jsonl), a shape made not to fit exits 3 with a remedy that
does fit when applied, and a TPU topology compiles where libtpu is installed."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from tests.test_train_run import MESH_222, ROOT, run

TINY = str(ROOT / "configs" / "tiny.py")
MEMORY_FIELDS = ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes")


def plan_cmd(*args: str) -> list[str]:
  return [sys.executable, "-m", "rejax.cli", "plan", "--config", TINY, *args]


def test_plan_on_cpu8_reports_the_memory_of_the_step_rejax_train_compiled(tmp_path):
  workdir = tmp_path / "run"
  # Padded batches: the fixture's one shape is then the plan's worst case exactly (packed, the run would compile
  # the rows its batches need, and the plan a row per sequence, an upper bound).
  overrides = [*MESH_222, "--config.total_steps=2", "--config.ckpt_every=2", "--config.export_dir=",
               "--config.data.pack=false"]
  run([sys.executable, "-m", "rejax.cli", "train", "--config", TINY, "--workdir", str(workdir), *overrides], devices=8)
  trained = [json.loads(line) for line in (workdir / "compiled_steps.jsonl").read_text().splitlines()]
  assert len(trained) == 1  # the fixture's one batch shape

  proc = run(plan_cmd("--topology", "cpu:8", "--json", str(tmp_path / "plan.json"), *overrides), devices=8)
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["topology"] == "cpu:8" and report["devices"] == 8 and report["fits"]
  (shape,) = report["shapes"]
  assert {"query_ids": shape["query_ids"], "passage_ids": shape["passage_ids"],
          "reason_ids": shape["reason_ids"]} == trained[0]["shapes"]
  assert {k: shape[k] for k in MEMORY_FIELDS} == {k: trained[0][k] for k in MEMORY_FIELDS}
  assert shape["argument_bytes"] > 0 and shape["temp_bytes"] > 0
  assert shape["name"] in proc.stdout and "yes" in proc.stdout  # the table


@pytest.mark.slow  # several compiles
def test_a_shape_that_does_not_fit_exits_3_naming_a_remedy_that_fits_when_applied(tmp_path):
  # 512-token passages without remat: the activations kept for the backward pass do not fit in 120 MiB
  tight = ["--config.mesh.fsdp=8", "--config.data.max_passage_length=512", "--config.data.min_bucket=64",
           "--config.data.domains={'biology': (8, 4)}", "--config.model.remat=none", "--device-memory", "120MiB"]
  proc = run(plan_cmd("--topology", "cpu:8", "--json", str(tmp_path / "plan.json"), *tight), devices=8, check=False)
  assert proc.returncode == 3, proc.stderr[-3000:]
  report = json.loads((tmp_path / "plan.json").read_text())
  assert not report["fits"] and report["device_memory_bytes"] == 120 * 2**20
  (shape,) = report["shapes"]
  assert shape["peak_bytes"] > 120 * 2**20 and shape["remedy"]["peak_bytes"] <= 120 * 2**20
  remedy = ["--config." + o for o in shape["remedy"]["overrides"]]
  assert f"{shape['name']} does not fit: fits with {' '.join(remedy)}" in proc.stdout
  assert "Traceback" not in proc.stderr

  fixed = run(plan_cmd("--topology", "cpu:8", "--json", str(tmp_path / "fixed.json"), *tight, *remedy), devices=8)
  assert fixed.returncode == 0
  (after,) = json.loads((tmp_path / "fixed.json").read_text())["shapes"]
  assert after["fits"] and after["peak_bytes"] == shape["remedy"]["peak_bytes"]


@pytest.mark.parametrize("args, message", [
    (["--topology", "v9z:1x1"], "libtpu does not know this topology"),
    (["--topology", "tpu"], "expected a TPU topology such as v5p:2x2x4"),
    (["--topology", "cpu:0"], "expected cpu:N with N >= 1"),
    (["--topology", "cpu:64"], "this process has 8 CPU devices"),
    (["--topology", "cpu:8", "--device-memory", "12XB"], "argument --device-memory: expected a size such as 64MiB"),
    (["--topology", "cpu:8", "--config.mesh.dat=8"], "--config.mesh.dat: no such config key (did you mean mesh.data?)"),
    (["--topology", "cpu:8", "--config.mesh.data=3"],
     "mesh.data x mesh.fsdp x mesh.tensor = 3 x 1 x 1 = 3, but there are 8"),
    (["--topology", "cpu:8", "--num-slices", "2", "--config.mesh.fsdp=4"],
     "--num-slices 2: --topology cpu:8 is one process's devices, one slice"),
    (["--topology", "cpu:8", "--num-slices", "2", "--config.mesh.dcn_data=4", "--config.mesh.fsdp=2"],
     "--num-slices 2: the config has mesh.dcn_data=4 (slices)"),
])
def test_bad_plan_arguments_fail_in_one_line_naming_the_argument(args, message):
  if args[1].startswith("v9") and importlib.util.find_spec("libtpu") is None:
    message = "needs libtpu: pip install 'rejax[tpu]'"
  proc = run(plan_cmd(*args), devices=8, check=False)
  assert proc.returncode in (1, 2), proc.stderr[-3000:]
  assert message in proc.stderr and "Traceback" not in proc.stderr
  assert not re.search(r"^compiling ", proc.stderr, re.M)  # refused before any compile (no progress line)


def test_a_tpu_topology_without_libtpu_names_the_extra(monkeypatch):
  from rejax.errors import InputError
  from rejax.train import topology

  monkeypatch.setattr(topology.importlib.util, "find_spec", lambda name: None)
  expected = r"--topology v5p:2x2x4: compiling for TPU needs libtpu: pip install 'rejax\[tpu\]'"
  with pytest.raises(InputError, match=expected):
    topology.resolve_topology("v5p:2x2x4")


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install 'rejax[tpu]'): no TPU compiler to plan with")
def test_the_tiny_config_compiles_for_a_tpu_v5e_slice(tmp_path):
  out = tmp_path / "plan.json"
  proc = run(plan_cmd("--topology", "v5e:4x4", "--config.mesh.fsdp=4", "--config.mesh.tensor=4", "--json", str(out)),
             devices=1)
  report = json.loads(out.read_text())
  assert report["device_kind"] == "TPU v5 lite" and report["devices"] == 16
  assert report["device_memory_bytes"] == int(15.75 * 2**30) and report["fits"], proc.stdout  # what libtpu can use
  (shape,) = report["shapes"]
  assert 0 < shape["peak_bytes"] < 2**30 and shape["compiler_flops_per_device"] > 0
  if shape["estimated_mfu"] is not None:
    assert 0 < shape["estimated_mfu"] <= 1


def test_remedies_add_full_remat_then_ever_smaller_gradcache_chunks_then_fold_data_into_fsdp():
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.plan import remedies

  config = apply_overrides(load_config_file(TINY), ["--config.model.remat=none", "--config.mesh.data=2",
                                                    "--config.mesh.fsdp=2",
                                                    "--config.data.domains={'a': (16, 4), 'b': (8, 2)}"])
  assert list(remedies(config)) == [
      ["model.remat=full"],
      ["model.remat=full", "optim.grad_cache_chunk=8"],
      ["model.remat=full", "optim.grad_cache_chunk=4"],
      ["model.remat=full", "mesh.data=1", "mesh.fsdp=4"],
  ]


def test_batch_shapes_are_the_longest_buckets_or_every_bucket_combination():
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.compiled_step import batch_shapes

  config = apply_overrides(load_config_file(TINY), ["--config.data.max_query_length=64",
                                                    "--config.data.max_passage_length=100",
                                                    "--config.data.min_bucket=32"])
  domains = {"a": (8, 4), "b": (8, 4), "c": (2, 16)}
  longest = batch_shapes(config, domains)
  assert [(s.query, s.passage, s.reason) for s in longest] == [((2, 64), (32, 100), (2, 64)),
                                                              ((8, 64), (32, 100), (8, 64))]
  every = batch_shapes(config, domains, all_buckets=True)
  assert len(every) == 2 * 2 * 3 * 2  # families x query buckets (32, 64) x passage (32, 64, 100) x reasoning
  assert {s.passage[1] for s in every} == {32, 64, 100}


def test_the_epoch_estimate_weighs_each_family_by_its_batches_per_epoch():
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.plan import run_estimate

  config = apply_overrides(load_config_file(TINY), ["--config.total_steps=44"])
  domains = {"a": (8, 4), "b": (8, 4), "c": (5, 2)}
  records = {"a": 100, "b": 30, "c": 52}  # 12 + 3 batches of (8, 4), 10 of (5, 2): the remainders dropped
  rows = [{"query_ids": [8, 64], "passage_ids": [32, 64], "estimated_seconds": 2.0},
          {"query_ids": [5, 64], "passage_ids": [10, 64], "estimated_seconds": 0.5}]
  estimate = run_estimate(config, domains, records, rows)
  assert estimate["epoch_steps"] == 25
  assert estimate["epoch_seconds_upper_bound"] == pytest.approx(15 * 2.0 + 10 * 0.5)
  assert estimate["run_seconds_upper_bound"] == pytest.approx(44 * 35.0 / 25)
  assert run_estimate(config, domains, None, rows) == {"run_steps": 44, "run_seconds_upper_bound": 44 * 2.0}
  assert run_estimate(config, domains, records, [{**rows[0], "estimated_seconds": None}, rows[1]]) == {}


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install 'rejax[tpu]'): no TPU compiler to plan with")
def test_a_step_the_tpu_compiler_refuses_for_memory_is_reported_as_not_fitting(tmp_path):
  out = tmp_path / "plan.json"
  proc = run(plan_cmd("--topology", "v5e:2x2", "--config.mesh.fsdp=4", "--config.data.max_passage_length=8192",
                      "--config.data.min_bucket=8192", "--config.data.domains={'biology': (64, 64)}",
                      "--config.model.remat=none", "--no-remedies", "--json", str(out)), devices=1, check=False)
  assert proc.returncode == 3, proc.stderr[-3000:]
  (shape,) = json.loads(out.read_text())["shapes"]
  assert not shape["fits"] and "exceeds available HBM" in shape["refused"]
  assert shape["temp_bytes"] > 16 * 2**30 and shape["argument_bytes"] > 0
  assert "DOES NOT FIT (the compiler refused it)" in proc.stderr and "Traceback" not in proc.stderr


def test_num_slices_sets_mesh_dcn_data_and_the_config_per_slice_mesh_stays():
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.plan import config_for_slices

  config = apply_overrides(load_config_file(TINY), ["--config.mesh.data=2", "--config.mesh.fsdp=8"])
  two = config_for_slices(config, 2)
  assert (two.mesh.dcn_data, two.mesh.data, two.mesh.fsdp, two.mesh.tensor) == (2, 2, 8, 1)
  assert config.mesh.dcn_data == 1  # the caller's config is left as it was
  assert config_for_slices(two, None).mesh.dcn_data == 2  # no --num-slices: the config's own


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install 'rejax[tpu]'): no TPU compiler to plan with")
def test_two_slices_compile_and_compare_with_the_one_slice_plan(tmp_path):
  per_slice = ["--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
  run(plan_cmd("--topology", "v5e:2x2", "--num-slices", "2", *per_slice, "--json", str(tmp_path / "two.json")),
      devices=1)
  run(plan_cmd("--topology", "v5e:2x2", *per_slice, "--json", str(tmp_path / "one.json")), devices=1)
  two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
  assert (two["slices"], two["devices"], one["slices"], one["devices"]) == (2, 8, 1, 4)
  (shape,), (alone,) = two["shapes"], one["shapes"]
  assert shape["fits"] and shape["peak_bytes"] > 0
  # the comparison row is the plan of the same global batch on one slice, as `rejax plan` without --num-slices
  assert shape["one_slice"]["peak_bytes"] == alone["peak_bytes"]
  assert shape["one_slice"]["estimated_seconds"] == alone["estimated_seconds"]


@pytest.mark.parametrize("frozen_dtype, frozen_itemsize", [("", 2), ("float32", 4)])
def test_the_state_bytes_of_a_lora_plan_are_those_of_the_arrays_a_run_places(frozen_dtype, frozen_itemsize):
  """plan.state_bytes from the abstract state against the shards jax places on device 0 for the real state
  (init_train_state), on a 2x2x2 mesh with LoRA in bfloat16: the frozen base in the compute dtype by default
  (model.frozen_dtype=""), half the bytes of float32; the adapters and Adam's moments in float32."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec

  from rejax.models import config_from_hf_dict, init_decoder
  from rejax.sharding import make_mesh, use_mesh
  from rejax.train.components import components
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.plan import state_bytes
  from rejax.train.state import abstract_train_state, init_train_state

  config = apply_overrides(load_config_file(TINY), [
      "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2", "--config.model.dtype=bfloat16",
      "--config.model.lora.enabled=true", "--config.model.lora.rank=4", f"--config.model.frozen_dtype={frozen_dtype}"])
  parts = components(config)
  cfg = config_from_hf_dict(config.model.hf_config.to_dict(), **parts.decoder_runtime)
  mesh = make_mesh(2, 2, 2, devices=jax.devices()[:8])
  with use_mesh(mesh):
    _, abstract = abstract_train_state(cfg, parts.optimizer, mesh, parts.trained)
    _, real = init_train_state(init_decoder(cfg, mesh=mesh), parts.optimizer, parts.trained)
  device = jax.devices()[0]

  def on_device(tree):
    return sum(s.data.nbytes for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards if s.device == device)

  def gathered(leaf):  # the piece device 0 holds once the leaf is all-gathered over data and fsdp
    spec = PartitionSpec(*[tuple(a for a in ((axes,) if isinstance(axes, str) else axes or ()) if a == "tensor")
                           or None for axes in leaf.sharding.spec])
    return on_device(jax.device_put(leaf, NamedSharding(mesh, spec)))

  held = state_bytes(abstract)
  assert held["frozen_bytes"] == on_device(real.frozen) > 0
  assert held["trained_bytes"] == on_device(real.trainable) > 0
  assert held["optimizer_bytes"] == on_device(real.opt_state) > 0
  weights = jax.tree.leaves((real.frozen, real.trainable))
  assert held["gather_bytes_per_pass"] == sum(gathered(w) - on_device(w) for w in weights) > 0
  assert {np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(real.frozen)} == {frozen_itemsize}
  assert {leaf.dtype for leaf in jax.tree.leaves(real.trainable)} == {jnp.dtype(jnp.float32)}


def test_the_remat_search_takes_the_fastest_policy_that_fits_every_shape():
  from rejax.train.plan import best_remat

  def shape(none, dots, full):  # (fits, seconds) per policy; the MLP policies do not fit
    given = {"none": none, "dots": dots, "mlp": (False, None), "mlp_up": (False, None), "full": full}
    return {"remat_policies": {p: {"fits": f, "peak_bytes": 0, "estimated_seconds": t} for p, (f, t) in given.items()}}
  shapes = [shape((True, 1.0), (True, 1.1), (True, 1.3)), shape((False, 2.0), (True, 2.2), (True, 2.6))]
  assert best_remat(shapes)["policy"] == "dots"  # none is fastest, but one shape does not fit under it
  assert best_remat([shape((True, 1.0), (True, 0.9), (True, 1.3))])["policy"] == "dots"  # timed: the least time
  assert best_remat([shape((False, None), (True, None), (True, None))]) == {
      "policy": "dots", "by": "least recomputation (no time estimate)"}
  assert best_remat([shape((False, 1.0), (False, 1.0), (False, 1.0))])["policy"] is None


@pytest.mark.slow
def test_remat_search_on_cpu8_compiles_each_policy_and_names_one_that_fits(tmp_path):
  # One padded shape of 512-token passages (activations dominate the peak), five compiles; a device memory
  # between dots' peak and none's makes "none" not fit.
  base = ["--topology", "cpu:8", "--no-remedies", "--remat-search", "--config.mesh.fsdp=8",
          "--config.data.max_passage_length=512", "--config.data.min_bucket=64",
          "--config.data.domains={'biology': (8, 4)}", "--config.model.remat=none", "--config.data.pack=false"]
  run(plan_cmd(*base, "--json", str(tmp_path / "all.json")), devices=8)
  (row,) = json.loads((tmp_path / "all.json").read_text())["shapes"]
  peaks = {p: row["remat_policies"][p]["peak_bytes"] for p in ("none", "dots", "mlp", "mlp_up", "full")}
  # the override reached the compiled step: the more a policy keeps, the higher the peak
  assert peaks["none"] > peaks["dots"] >= peaks["mlp"] >= peaks["mlp_up"] >= peaks["full"], peaks
  between = (peaks["none"] + peaks["dots"]) // 2
  proc = run(plan_cmd(*base, "--json", str(tmp_path / "tight.json"), "--device-memory", str(between)),
             devices=8, check=False)
  report = json.loads((tmp_path / "tight.json").read_text())
  assert report["remat"]["policy"] == "dots"
  assert "remat: --config.model.remat=dots (fits every shape" in proc.stdout


def test_a_refused_compile_reports_the_temporaries_asked_for_and_the_argument_shards():
  """The figures of a step the compiler refused, from a RESOURCE_EXHAUSTED message in the words libtpu used on a
  v5e plan (refused_figures' docstring) and the arguments' shardings: an [8, 6] float32 array split 4 ways by rows
  and a replicated [3] int32 one."""
  import jax
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  from rejax.train.plan import refused_figures

  mesh = Mesh(np.array(jax.devices()[:4]).reshape(4, 1), ("fsdp", "tensor"))
  arguments = (jax.device_put(np.zeros((8, 6), np.float32), NamedSharding(mesh, PartitionSpec("fsdp"))),
               jax.device_put(np.zeros(3, np.int32), NamedSharding(mesh, PartitionSpec())))
  error = RuntimeError("compile failed\nRESOURCE_EXHAUSTED: memory required for HLO temporaries (19.24G) exceeds "
                       "available HBM (15.75G)\nmore lines")
  figures = refused_figures(error, arguments)
  assert figures["argument_bytes"] == 2 * 6 * 4 + 3 * 4
  assert figures["temp_bytes"] == int(19.24 * 1024**3)
  assert figures["refused"] == ("RESOURCE_EXHAUSTED: memory required for HLO temporaries (19.24G) exceeds available "
                                "HBM (15.75G)")
  assert refused_figures(RuntimeError("INVALID_ARGUMENT: something else"), arguments) is None
