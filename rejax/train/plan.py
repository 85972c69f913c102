"""`rejax plan`: the run's own train step compiled ahead of time for a topology it does not have, per batch
shape: does it fit in a device's memory, how fast does the compiler think it runs, and if it does not fit,
which setting makes it fit (checked by compiling that too).

Everything is abstract: the model comes from config.json alone (the paper's backbones ship theirs), the state
and batches are ShapeDtypeStructs with the shardings `rejax train` gives them, and the function compiled is
`program.jitted_train_step`, the one `rejax train` runs.

XLA counts a loop's body once: the layer scan and GradCache's chunk loops run many times but appear once in
`cost_analysis()`. The compiler's roofline time (`optimal_seconds`) is therefore scaled by the FLOPs the step
really executes (flops.executed_step_flops: the analytic count with remat's and GradCache's extra forwards)
over the FLOPs the compiler counted; the MFU is the model FLOPs (flops.train_step_flops) over that time.

Several slices (`--num-slices N`, mesh.dcn_data = N): each shape is compiled for the N slices, then, for
comparison, the same global batch for one slice of the topology (mesh.dcn_data = 1, the same per-slice mesh):
the per-chip memory and the estimated time a second slice saves.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import re
import time
from typing import Callable, Iterator

import jax
import ml_collections

from rejax.data.convert import MANIFEST, read_manifest
from rejax.data.sampling import domain_batches
from rejax.errors import InputError
from rejax.hf.hub import is_hub_id, resolve_model_dir, snapshot
from rejax.models import config_from_hf_dict
from rejax.models.config import REMAT_POLICIES, shipped_hf_config
from rejax.sharding import make_mesh, use_mesh
from rejax.train.config import ConfigError, apply_overrides, validate
from rejax.train.flops import executed_step_flops, train_step_flops
from rejax.train.compiled_step import BatchShape, batch_shapes, jitted_train_step, memory_figures
from rejax.train.compiler_warnings import describe_resharding, resharding, stderr_lines
from rejax.train.components import check_against_model, components
from rejax.train.state import TrainState, abstract_train_state
from rejax.train.topology import Topology, resolve_topology

EXIT_DOES_NOT_FIT = 3
MAX_REMEDY_COMPILES = 4  # per failing shape; an 8B step takes minutes to compile


def plan(config: ml_collections.ConfigDict, topology: Topology, *, all_buckets: bool = False,
         find_remedies: bool = True, remat_search: bool = False, progress: Callable[[str], None] = print) -> dict:
  """The plan of `config` on `topology`: {"topology", "devices", "device_memory_bytes", "fits", "shapes", ...};
  with `remat_search`, also "remat": every policy compiled per shape and the fastest that fits them all."""
  validate(config, len(topology.devices))
  hf_config = architecture(config)
  domains, records = planned_domains(config)
  one_slice = resolve_topology(topology.name, topology.device_memory_bytes) if topology.slices > 1 else None
  shapes = []
  for shape in batch_shapes(config, domains, all_buckets=all_buckets):
    progress(f"compiling {shape.name} for {slices_name(topology)} ...")
    row = compile_shape(config, hf_config, topology, shape)
    progress(f"  {describe_row(row, topology)}")
    if not row["fits"] and find_remedies:
      row["remedy"] = find_remedy(config, hf_config, topology, shape, progress)
    if one_slice is not None:
      row["one_slice"] = compare_one_slice(config, hf_config, one_slice, shape, row, progress)
    if remat_search:
      row["remat_policies"] = compile_remat_policies(config, hf_config, topology, shape, row, progress)
    shapes.append(row)
  report = {"topology": topology.name, "slices": topology.slices, "device_kind": topology.device_kind,
            "devices": len(topology.devices), "device_memory_bytes": topology.device_memory_bytes,
            "fits": all(r["fits"] for r in shapes), "shapes": shapes}
  report.update(run_estimate(config, domains, records, shapes))
  if remat_search:
    report["remat"] = best_remat(shapes)
  return report


def compile_remat_policies(config: ml_collections.ConfigDict, hf_config: dict, topology: Topology,
                           shape: BatchShape, row: dict, progress: Callable[[str], None]) -> dict[str, dict]:
  """{policy: {"fits", "peak_bytes", "estimated_seconds"}} of `shape` compiled under every model.remat policy (the
  config's own from `row`)."""
  found = {}
  for policy in REMAT_POLICIES:
    if policy == config.model.remat:
      other = row
    else:
      progress(f"  with model.remat={policy} ...")
      other = compile_shape(apply_overrides(copy.deepcopy(config), [f"--config.model.remat={policy}"]), hf_config,
                            topology, shape)
      progress(f"    {describe_row(other, topology)}")
    found[policy] = {k: other[k] for k in ("fits", "peak_bytes", "estimated_seconds")}
  return found


def best_remat(shapes: list[dict]) -> dict:
  """The remat policy to run: of those under which every shape fits, the least total estimated time over the
  shapes; without the compiler's time estimate (CPU), the one that recomputes least (REMAT_POLICIES' order).
  {"policy": None} when no policy fits every shape."""
  fitting = [p for p in REMAT_POLICIES if all(r["remat_policies"][p]["fits"] for r in shapes)]
  timed = [p for p in fitting if all(r["remat_policies"][p]["estimated_seconds"] is not None for r in shapes)]
  if timed:
    seconds = {p: sum(r["remat_policies"][p]["estimated_seconds"] for r in shapes) for p in timed}
    return {"policy": min(timed, key=seconds.get), "by": "estimated time", "seconds": seconds}
  return {"policy": fitting[0] if fitting else None, "by": "least recomputation (no time estimate)"}


def config_for_slices(config: ml_collections.ConfigDict, num_slices: int | None) -> ml_collections.ConfigDict:
  """`config` planned on `num_slices` slices (None: the config's mesh.dcn_data): a copy with mesh.dcn_data set to
  it, the config's mesh.data, fsdp and tensor being one slice's; a config already set to other slices is refused."""
  if num_slices is None or num_slices == config.mesh.dcn_data:
    return config
  if config.mesh.dcn_data != 1:
    raise ConfigError(f"--num-slices {num_slices}: the config has mesh.dcn_data={config.mesh.dcn_data} (slices); "
                      "give the same number, or leave mesh.dcn_data at 1 for --num-slices to set it")
  return apply_overrides(copy.deepcopy(config), [f"--config.mesh.dcn_data={num_slices}"])


def slices_name(topology: Topology) -> str:
  return topology.name if topology.slices == 1 else f"{topology.slices} slices of {topology.name}"


def architecture(config: ml_collections.ConfigDict) -> dict:
  """The config.json of the run's model, without reading any weights (and offline for the shipped backbones)."""
  path = config.model.path
  if not path:
    return config.model.hf_config.to_dict()
  shipped = shipped_hf_config(path)
  if shipped is not None:
    return shipped
  if is_hub_id(path):  # config.json alone: no weights are fetched for a plan
    directory = snapshot(path, ["config.json"], what=f"model.path={path}'s config.json",
                         advice="Pass a directory holding the model's config.json.")
  else:
    try:
      directory = resolve_model_dir(path)  # a directory or asset:NAME
    except FileNotFoundError as e:  # "PATH: not a model directory (and not a hub id ...)"
      raise InputError(f"model.path={e}") from None
  file = directory / "config.json"
  if not file.is_file():
    raise InputError(f"model.path={path}: no config.json in {directory}")
  return json.loads(file.read_text())


def planned_domains(config: ml_collections.ConfigDict) -> tuple[dict[str, tuple[int, int]], dict[str, int] | None]:
  """(domain -> (global batch, G), domain -> records): the converted dataset's domains when data.path is one,
  else every domain of data.domains (records unknown)."""
  settings = {name: tuple(map(int, value)) for name, value in config.data.domains.items()}
  if not config.data.path or not (pathlib.Path(config.data.path) / MANIFEST).is_file():
    return settings, None
  records = {name: info["records"] for name, info in read_manifest(config.data.path)["domains"].items()}
  unknown = sorted(set(records) - set(settings))
  if unknown:
    raise ConfigError(f"data.domains: no (global batch, G) for the dataset's domain(s) {', '.join(unknown)}")
  return {name: settings[name] for name in records}, records


def compile_shape(config: ml_collections.ConfigDict, hf_config: dict, topology: Topology, shape: BatchShape) -> dict:
  """One shape's row of the plan: the compiled step's memory per device, FLOPs and estimated time."""
  parts = components(config)
  model_cfg = config_from_hf_dict(hf_config, **parts.decoder_runtime)
  check_against_model(model_cfg, config)
  mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=topology.devices,
                   dcn_data=config.mesh.dcn_data)
  with use_mesh(mesh):
    graphdef, state = abstract_train_state(model_cfg, parts.optimizer, mesh, parts.trained)
    jitted = jitted_train_step(parts, graphdef, state)
    key = jax.eval_shape(lambda: jax.random.key(config.seed))
    batch = shape.abstract_batch(mesh, packed=config.data.pack, teacher=parts.loss.uses_teacher)
    start = time.perf_counter()
    lowered = jitted.lower(state, batch, key)
    try:
      with stderr_lines() as compiler_said:
        compiled = lowered.compile()
    except Exception as e:  # the TPU compiler refuses a program that cannot fit its HBM
      compiled, figures = None, refused_figures(e, (state, batch))
      if figures is None:
        raise
    seconds = time.perf_counter() - start
  if compiled is not None:
    figures = memory_figures(compiled)
  held = state_bytes(state)
  if figures is None:
    raise InputError(f"--topology {topology.name}: the compiler reports no memory analysis for this backend")
  devices = len(topology.devices)
  shapes = shape.ids_shapes()
  reasoning = parts.loss.uses_reasoning
  flops = train_step_flops(model_cfg, shapes, reasoning)
  executed = executed_step_flops(model_cfg, shapes, reasoning, remat=model_cfg.remat,
                                 grad_cache=bool(config.optim.grad_cache_chunk))
  cost = _cost(compiled) if compiled is not None else {}
  counted, roofline = cost.get("flops"), cost.get("optimal_seconds")
  # libtpu reports a negative optimal_seconds when it has no estimate (seen for v5e): no estimate then
  estimated = roofline * (executed / devices) / counted if roofline and roofline > 0 and counted else None
  peak = topology.peak_flops
  tokens = sum(rows * length for rows, length in shapes.values())
  return {
      "name": shape.name, "query_ids": list(shape.query), "passage_ids": list(shape.passage),
      "reason_ids": list(shape.reason), **figures, **held,
      "fits": compiled is not None and figures["peak_bytes"] <= topology.device_memory_bytes,
      "headroom_bytes": topology.device_memory_bytes - figures["peak_bytes"],
      "flops": flops, "executed_flops": executed, "compiler_flops_per_device": counted,
      "estimated_seconds": estimated,
      "estimated_mfu": flops / (estimated * peak * devices) if estimated and peak else None,
      # the FLOPs executed (remat's and GradCache's recomputation included) over the time: MFU = HFU x flops/executed
      "estimated_hfu": executed / (estimated * peak * devices) if estimated and peak else None,
      "compiler_bytes_accessed_per_device": cost.get("bytes accessed"),
      "tokens_per_s_per_device": tokens / estimated / devices if estimated else None,
      "compile_seconds": round(seconds, 1),
      "resharding": describe_resharding(resharding(compiler_said)) if compiled is not None else None,
  }


def _shard_bytes(leaf, gathered_over: tuple[str, ...] = ()) -> int:
  """Bytes of one device's piece of `leaf`, or of the piece it holds once gathered over the mesh axes named."""
  if not gathered_over:
    return math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
  spec = leaf.sharding.spec
  shape = list(leaf.shape)
  for dim, axes in enumerate(spec):
    axes = (axes,) if isinstance(axes, str) else (axes or ())
    shape[dim] //= math.prod(leaf.sharding.mesh.shape[a] for a in axes if a not in gathered_over)
  return math.prod(shape) * leaf.dtype.itemsize


def state_bytes(state: TrainState) -> dict[str, int]:
  """Per device: the bytes of the frozen weights, the trained weights and the optimizer's state, and the bytes a
  device receives to gather every weight once over the data and fsdp axes (what one pass over the model
  all-gathers under FSDP; the tensor axis keeps its pieces)."""
  weights = jax.tree.leaves((state.frozen, state.trainable))
  return {"frozen_bytes": sum(map(_shard_bytes, jax.tree.leaves(state.frozen))),
          "trained_bytes": sum(map(_shard_bytes, jax.tree.leaves(state.trainable))),
          "optimizer_bytes": sum(map(_shard_bytes, jax.tree.leaves(state.opt_state))),
          "gather_bytes_per_pass": sum(_shard_bytes(w, ("data", "fsdp")) - _shard_bytes(w) for w in weights)}


def refused_figures(error: Exception, arguments) -> dict | None:
  """The memory figures of a step the compiler refused for want of memory ("RESOURCE_EXHAUSTED: ... memory
  required for HLO temporaries (19.24G) exceeds available HBM (15.75G)"): the temporaries it asked for, the
  arguments' shards counted from their shardings, and `refused` with the compiler's words; None for any other
  error."""
  message = str(error)
  match = re.search(r"required for ([\w ]+?) \(([0-9.]+)([KMGT]?)\) exceeds available HBM", message)
  if "RESOURCE_EXHAUSTED" not in message or not match:
    return None
  required = int(float(match.group(2)) * 1024 ** " KMGT".index(match.group(3) or " "))
  argument_bytes = sum(map(_shard_bytes, jax.tree.leaves(arguments)))
  temp_bytes = required if match.group(1) == "HLO temporaries" else max(required - argument_bytes, 0)
  return {"argument_bytes": argument_bytes, "output_bytes": None, "alias_bytes": None, "temp_bytes": temp_bytes,
          "code_bytes": None, "peak_bytes": argument_bytes + temp_bytes,
          "refused": message[message.index("RESOURCE_EXHAUSTED"):].splitlines()[0][:300]}


def _cost(compiled) -> dict:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # not every backend reports it
    return {}
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def remedies(config: ml_collections.ConfigDict) -> Iterator[list[str]]:
  """Override lists to try on a shape that does not fit, each adding to the last: full remat, then GradCache
  with ever smaller chunks (from the smallest domain batch, every size that divides each domain's queries and
  passages and keeps rows on every batch shard), then the data axis folded into fsdp."""
  tried: list[str] = []
  if config.model.remat != "full":
    tried = tried + ["model.remat=full"]
    yield tried
  batches = [(int(b), int(b) * int(g)) for b, g in config.data.domains.values()]
  shards = config.mesh.dcn_data * config.mesh.data * config.mesh.fsdp
  current = config.optim.grad_cache_chunk
  for chunk in range(current - 1 if current else min(b for b, _ in batches), shards - 1, -1):
    if chunk % shards == 0 and all(b % chunk == 0 and p % chunk == 0 for b, p in batches):
      yield tried + [f"optim.grad_cache_chunk={chunk}"]
  if config.mesh.data > 1:
    yield tried + ["mesh.data=1", f"mesh.fsdp={config.mesh.data * config.mesh.fsdp}"]


def find_remedy(config: ml_collections.ConfigDict, hf_config: dict, topology: Topology, shape: BatchShape,
                progress: Callable[[str], None]) -> dict | None:
  """The first of `remedies` under which `shape` compiles and fits, as {"overrides", "peak_bytes"}; None if none do."""
  for attempt, overrides in enumerate(remedies(config)):
    if attempt == MAX_REMEDY_COMPILES:
      break
    candidate = apply_overrides(copy.deepcopy(config), [f"--config.{o}" for o in overrides])
    try:
      validate(candidate, len(topology.devices))
    except ConfigError:
      continue
    progress(f"  trying {' '.join('--config.' + o for o in overrides)} ...")
    row = compile_shape(candidate, hf_config, topology, shape)
    progress(f"    {describe_row(row, topology)}")
    if row["fits"]:
      return {"overrides": overrides, "peak_bytes": row["peak_bytes"], "estimated_seconds": row["estimated_seconds"]}
  return None


def compare_one_slice(config: ml_collections.ConfigDict, hf_config: dict, one_slice: Topology, shape: BatchShape,
                      row: dict, progress: Callable[[str], None]) -> dict:
  """The same global batch compiled for one slice (mesh.dcn_data=1, the same per-slice mesh): {"peak_bytes",
  "fits", "estimated_seconds", "speedup"}, speedup being its time over the several slices' (None without both)."""
  single = apply_overrides(copy.deepcopy(config), ["--config.mesh.dcn_data=1"])
  validate(single, len(one_slice.devices))
  progress(f"  compiling {shape.name} for one slice of {one_slice.name}, to compare ...")
  base = compile_shape(single, hf_config, one_slice, shape)
  progress(f"    {describe_row(base, one_slice)}")
  many, one = row["estimated_seconds"], base["estimated_seconds"]
  return {"peak_bytes": base["peak_bytes"], "fits": base["fits"], "estimated_seconds": one,
          "speedup": one / many if one and many else None}


def run_estimate(config: ml_collections.ConfigDict, domains: dict, records: dict | None, shapes: list[dict]) -> dict:
  """The run's time at the longest buckets (an upper bound): per epoch from the dataset's batches per domain when
  its records are known, and for total_steps at the epoch's shape mix (else at the slowest shape)."""
  seconds_of = {}
  for row in shapes:
    batch, passages = row["query_ids"][0], row["passage_ids"][0]
    time_ = row["estimated_seconds"]
    if time_ is not None:
      seconds_of[(batch, passages // batch)] = max(seconds_of.get((batch, passages // batch), 0.0), time_)
  if not seconds_of or len(seconds_of) < len(set(domains.values())):
    return {}
  if records is None:
    return {"run_steps": config.total_steps, "run_seconds_upper_bound": config.total_steps * max(seconds_of.values())}
  specs = domain_batches(records, domains)
  steps = sum(s.batches_per_epoch for s in specs)
  epoch = sum(s.batches_per_epoch * seconds_of[(s.batch_size, s.group_size)] for s in specs)
  return {"epoch_steps": steps, "epoch_seconds_upper_bound": epoch, "run_steps": config.total_steps,
          "run_seconds_upper_bound": config.total_steps * epoch / steps if steps else None}


def describe_row(row: dict, topology: Topology) -> str:
  gib = 1024**3
  verdict = "fits" if row["fits"] else "DOES NOT FIT" + (" (the compiler refused it)" if row.get("refused") else "")
  text = (f"{row['name']}: peak {row['peak_bytes'] / gib:.2f} of {topology.device_memory_bytes / gib:.2f} GiB "
          f"(arguments {row['argument_bytes'] / gib:.2f}: weights {row['frozen_bytes'] / gib:.2f} frozen + "
          f"{row['trained_bytes'] / gib:.2f} trained, optimizer {row['optimizer_bytes'] / gib:.2f}; temporaries "
          f"{row['temp_bytes'] / gib:.2f}) {verdict}; all-gathers {row['gather_bytes_per_pass'] / gib:.2f} GiB of "
          f"weights per pass; compiled in {row['compile_seconds']}s")
  if row["estimated_seconds"] is not None:
    mfu = f", MFU {row['estimated_mfu']:.2f}" if row["estimated_mfu"] is not None else ""
    if row.get("estimated_hfu") is not None:  # where the time goes: recomputation, then the compiler's roofline
      mfu += (f" = {row['flops'] / row['executed_flops']:.2f} (model / executed FLOPs) x HFU "
              f"{row['estimated_hfu']:.2f} (executed FLOPs at the chip's peak / est. time)")
    text += f"; est. {row['estimated_seconds']:.3f} s/step{mfu}"
  if row.get("resharding"):
    text += f"\n    warning: {row['resharding']}"
  return text


def one_slice_lines(report: dict) -> list[str]:
  """The comparison rows of a several-slice plan: each shape's global batch compiled for one slice."""
  gib, slices = 1024**3, report["slices"]
  header = f"{'on 1 slice':<24} {'peak GiB':>9} {'fits':>5} {'est s/step':>11} {'speed-up':>9}"
  lines = [f"vs 1 slice: the same global batches compiled for one {report['topology']} (mesh.dcn_data=1); "
           f"speed-up = its est. time / {slices} slices'", header, "-" * len(header)]
  for r in report["shapes"]:
    one = r["one_slice"]
    est = f"{one['estimated_seconds']:.3f}" if one["estimated_seconds"] is not None else "-"
    speedup = f"{one['speedup']:.2f}x" if one["speedup"] is not None else "-"
    lines.append(f"{r['name']:<24} {one['peak_bytes'] / gib:>9.2f} {'yes' if one['fits'] else 'NO':>5} {est:>11} "
                 f"{speedup:>9}")
  if all(r["estimated_seconds"] is None for r in report["shapes"]):
    lines.append(f"(the compiler gives no time estimate for {slices} slices of {report['topology']}: no speed-up)")
  return lines


def remat_lines(report: dict) -> list[str]:
  """The remat search: each shape's peak GiB and est. s/step per policy, then the policy to run."""
  gib = 1024**3
  header = f"{'remat':<24}" + "".join(f" {p + ' GiB':>10} {p + ' s':>9}" for p in REMAT_POLICIES)
  lines = [header, "-" * len(header)]
  for r in report["shapes"]:
    cells = ""
    for p in REMAT_POLICIES:
      found = r["remat_policies"][p]
      est = f"{found['estimated_seconds']:.3f}" if found["estimated_seconds"] is not None else "-"
      cells += f" {found['peak_bytes'] / gib:>9.2f}{'' if found['fits'] else '!'} {est:>9}"
    lines.append(f"{r['name']:<24}{cells}")
  best = report["remat"]
  lines.append(f"remat: --config.model.remat={best['policy']} (fits every shape; chosen by {best['by']})"
               if best["policy"] else "remat: no policy fits every shape (! = does not fit)")
  return lines


def format_table(report: dict) -> str:
  """The plan as a fixed-width table, one shape per line, then the run's estimate and the remedies."""
  gib = 1024**3
  header = (f"{'shape':<24} {'args GiB':>9} {'out GiB':>8} {'temp GiB':>9} {'peak GiB':>9} {'fits':>5} "
            f"{'TFLOP/step':>11} {'est s/step':>11} {'MFU':>5} {'tok/s/dev':>10}")
  slices = report.get("slices", 1)
  where = report["topology"] if slices == 1 else f"{slices} slices of {report['topology']}"
  lines = [f"{where}: {report['devices']} x {report['device_kind']}, "
           f"{report['device_memory_bytes'] / gib:.1f} GiB each", header, "-" * len(header)]
  for r in report["shapes"]:
    est = f"{r['estimated_seconds']:.3f}" if r["estimated_seconds"] is not None else "-"
    mfu = f"{r['estimated_mfu']:.2f}" if r["estimated_mfu"] is not None else "-"
    tps = f"{r['tokens_per_s_per_device']:.0f}" if r["tokens_per_s_per_device"] is not None else "-"
    out = f"{(r['output_bytes'] - r['alias_bytes']) / gib:.2f}" if r["output_bytes"] is not None else "-"
    lines.append(f"{r['name']:<24} {r['argument_bytes'] / gib:>9.2f} {out:>8} "
                 f"{r['temp_bytes'] / gib:>9.2f} {r['peak_bytes'] / gib:>9.2f} {'yes' if r['fits'] else 'NO':>5} "
                 f"{r['flops'] / 1e12:>11.3g} {est:>11} {mfu:>5} {tps:>10}")
  if slices > 1:
    lines += one_slice_lines(report)
  if "epoch_seconds_upper_bound" in report:
    lines.append(f"epoch: {report['epoch_steps']} steps, at most {report['epoch_seconds_upper_bound'] / 3600:.2f} h; "
                 f"run: {report['run_steps']} steps, at most {report['run_seconds_upper_bound'] / 3600:.2f} h")
  elif "run_seconds_upper_bound" in report:
    lines.append(f"run: {report['run_steps']} steps, at most {report['run_seconds_upper_bound'] / 3600:.2f} h "
                 "(at the slowest shape; give data.path for the epoch's mix)")
  lines += [f"{r['name']}: {r['resharding']}" for r in report["shapes"] if r.get("resharding")]
  if "remat" in report:
    lines += remat_lines(report)
  for r in report["shapes"]:
    if r["fits"]:
      continue
    remedy = r.get("remedy")
    if remedy:
      lines.append(f"{r['name']} does not fit: fits with {' '.join('--config.' + o for o in remedy['overrides'])} "
                   f"(peak {remedy['peak_bytes'] / gib:.2f} GiB)")
    else:
      lines.append(f"{r['name']} does not fit, and no remedy tried fits (more devices, shorter data.max_*_length "
                   "or smaller data.domains batches)")
  return "\n".join(lines)
