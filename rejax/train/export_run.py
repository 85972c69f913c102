"""`rejax export --workdir DIR [--step N] --output OUT [--overwrite]`: a run's checkpoint as a Hugging Face /
sentence-transformers directory (LoRA merged, the base model's dtype, the training instructions as prompts).

OUT is never the workdir, a directory holding it, a path inside it other than the run's own export_dir, nor the
base model; a non-empty OUT is replaced (whole, once the new export is complete) only with --overwrite. The
train loop's own end-of-run export replaces its previous one without a flag (`check_own_export_dir`).

Export takes no workdir lock (rejax.train.lock): it only reads the run (config.json, base_model, data, and the
checkpoints through an Orbax manager that never saves, rotates or removes unfinished saves; base_model and data
exist before config.json does), and writes nothing inside the workdir but the run's own export_dir, renamed into
place whole. So a run that is still training can be exported, from its latest complete checkpoint.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
from flax import nnx

from rejax.data.records import from_example
from rejax.errors import ExportError, InputError
from rejax.hf.export import check_export_dir, export_model
from rejax.sharding import make_mesh, use_mesh
from rejax.storage import AnyPath, as_path, is_remote, same_or_inside
from rejax.train.checkpoint import Checkpointer
from rejax.train.lock import LOCK_FILE
from rejax.train.compiled_step import COMPILED_STEPS
from rejax.train.components import components
from rejax.train.profile import PROFILE_DIR
from rejax.train.resume_config import CONFIG_CHANGES
from rejax.train.run_card import run_card
from rejax.train.run_inputs import base_model_dir, build_model, dataset_dir

# What `rejax train` keeps in its workdir besides the export: an export must never replace one of them.
RUN_ENTRIES = ("checkpoints", "config.json", "metrics.jsonl", "tensorboard", "base_model", "data", COMPILED_STEPS,
               LOCK_FILE, CONFIG_CHANGES, PROFILE_DIR)


def run_config(workdir: AnyPath) -> ml_collections.ConfigDict:
  """The config a run was started with (`workdir/config.json`)."""
  if workdir.exists() and not workdir.is_dir():
    raise InputError(f"--workdir {workdir}: is a file, not a rejax train workdir")
  path = workdir / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: not a rejax train workdir (no config.json)")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text(encoding="utf-8")))
  except ValueError as e:  # a truncated or hand-edited file
    raise InputError(f"{path}: not valid JSON ({e})") from None


def own_export_dir(config: ml_collections.ConfigDict, workdir: AnyPath) -> AnyPath | None:
  """Where the run's end-of-run export goes: export_dir, relative to the workdir unless absolute or a gs:// URL
  (None: none)."""
  export_dir = config.get("export_dir") or ""
  if not export_dir:
    return None
  path = as_path(export_dir, "export_dir")
  return path if is_remote(path) or path.is_absolute() else workdir / export_dir


def check_output(output: AnyPath, workdir: AnyPath, config: ml_collections.ConfigDict,
                 base_dir: pathlib.Path, *, overwrite: bool, what: str = "--output") -> None:
  """Raises ExportError unless the run in `workdir` may export to `output` (see the module docstring)."""
  if same_or_inside(workdir, output):
    raise ExportError(f"{what} {output} is (or holds) the run's workdir {workdir}; export to a new directory")
  own = own_export_dir(config, workdir)
  if same_or_inside(output, workdir) and (own is None or not (same_or_inside(output, own)
                                                               and same_or_inside(own, output))):
    allowed = f"; only its export_dir {own} may be written there" if own is not None else ""
    raise ExportError(f"{what} {output} is inside the run's workdir {workdir}{allowed}")
  entries = [e for e in RUN_ENTRIES if same_or_inside(workdir / e, output) or same_or_inside(output, workdir / e)]
  if entries:
    raise ExportError(f"{what} {output} would replace the run's {entries[0]} in {workdir}")
  check_export_dir(output, base_dir, overwrite=overwrite, what=what)


def check_own_export_dir(config: ml_collections.ConfigDict, workdir: AnyPath, base_dir: pathlib.Path) -> bool:
  """Whether the run's end-of-run export may replace what its export_dir holds (checked when the run starts, so
  a bad export_dir fails before training): yes for a directory inside the workdir or an earlier export; a
  non-empty directory that is no export raises ExportError naming export_dir."""
  own = own_export_dir(config, workdir)
  if own is None:
    return False
  replace = same_or_inside(own, workdir) or looks_like_export(own)
  check_output(own, workdir, config, base_dir, overwrite=replace, what="export_dir")
  return replace


def looks_like_export(directory: AnyPath) -> bool:
  """Whether `directory` holds what `export_model` writes (so replacing it loses only an older export)."""
  return all((directory / name).is_file() for name in ("config.json", "modules.json",
                                                         "config_sentence_transformers.json"))


def training_instructions(data_dir: AnyPath) -> dict[str, str]:
  """domain -> the instruction (`prompt`) of its first training record."""
  import tensorflow_datasets as tfds

  sources = tfds.builder_from_directory(str(data_dir)).as_data_source()
  return {domain: from_example(source[0])["prompt"] for domain, source in sorted(sources.items()) if len(source)}


def export_run(workdir: str | AnyPath, output: str | AnyPath, *,
               step: int | str | None = None, overwrite: bool = False) -> AnyPath:
  """Writes checkpoint `step` (default: the latest; "best": the one kept by eval.keep_best) of the run in
  `workdir` to `output`, replacing a non-empty `output` only when `overwrite`; returns `output`."""
  workdir, output = as_path(workdir, "--workdir"), as_path(output, "--output")
  config = run_config(workdir)
  base_dir = base_model_dir(config, workdir)
  check_output(output, workdir, config, base_dir, overwrite=overwrite)  # before anything is loaded
  keep_best = config.get("eval", {}).get("keep_best", False)  # runs from before config.eval have no best
  checkpoints = Checkpointer(workdir, every=1, keep=config.keep_checkpoints,
                             best_metric=config.eval.metric if keep_best else None)
  steps = checkpoints.all_steps()
  if not steps:
    raise FileNotFoundError(f"{workdir}/checkpoints: no complete checkpoint to export")
  if step == "best":
    step = checkpoints.best_step()
    if step is None:
      raise ValueError(f"--step best: {workdir} kept no best checkpoint (it needs eval.keep_best and an evaluated "
                       "checkpoint)")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise ValueError(f"--step {step}: no such checkpoint in {workdir}/checkpoints (have {', '.join(map(str, steps))})")

  mesh = make_mesh(data=jax.device_count())  # parameters replicated: export gathers them anyway
  with use_mesh(mesh):
    parts = components(config)
    model, model_cfg = build_model(config, base_dir, mesh, parts.decoder_runtime)
    graphdef, trainable, frozen = nnx.split(model, parts.trained, ...)
    trainable, _ = checkpoints.restore_params(step, trainable)
    model = nnx.merge(graphdef, trainable, frozen)
    data_dir = dataset_dir(config, workdir)
    instructions = training_instructions(data_dir)
    export_model(model, output, base_dir=base_dir, instructions=instructions or None,
                 card=run_card(config, workdir, data_dir, step),
                 max_seq_length=max(config.data.max_query_length, config.data.max_passage_length),
                 overwrite=overwrite, matryoshka_dims=tuple(config.loss.get("matryoshka_dims", ()) or ()))
  checkpoints.close()
  if jax.process_index() == 0:
    print(f"exported step {step} of {workdir} to {output}", flush=True)
  return output
