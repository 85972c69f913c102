"""`rejax export --workdir DIR [--step N] --output OUT`: a run's checkpoint as a Hugging Face /
sentence-transformers directory (LoRA merged, the base model's dtype, the training instructions as prompts)."""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
from flax import nnx

from rejax.hf.export import export_model
from rejax.sharding import make_mesh, use_mesh
from rejax.train.checkpoint import Checkpointer


def run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The config a run was started with (`workdir/config.json`)."""
  path = workdir / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: not a rejax train workdir (no config.json)")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def training_instructions(data_dir: pathlib.Path) -> dict[str, str]:
  """domain -> the instruction (`prompt`) of its first training record."""
  import tensorflow_datasets as tfds

  from rejax.data.records import from_example

  sources = tfds.builder_from_directory(str(data_dir)).as_data_source()
  return {domain: from_example(source[0])["prompt"] for domain, source in sorted(sources.items()) if len(source)}


def export_run(workdir: str | pathlib.Path, output: str | pathlib.Path, *,
               step: int | str | None = None) -> pathlib.Path:
  """Writes checkpoint `step` (default: the latest; "best": the one kept by eval.keep_best) of the run in
  `workdir` to `output`; returns `output`."""
  from rejax.train.loop import base_model_dir, build_model, dataset_dir

  workdir = pathlib.Path(workdir)
  config = run_config(workdir)
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
    base_dir = base_model_dir(config, workdir)
    model, model_cfg = build_model(config, base_dir, mesh)
    wrt = nnx.LoRAParam if model_cfg.lora else nnx.Param
    graphdef, trainable, frozen = nnx.split(model, wrt, ...)
    trainable, _ = checkpoints.restore_params(step, trainable)
    model = nnx.merge(graphdef, trainable, frozen)
    instructions = training_instructions(dataset_dir(config, workdir))
    export_model(model, output, base_dir=base_dir, instructions=instructions or None,
                 max_seq_length=max(config.data.max_query_length, config.data.max_passage_length))
  checkpoints.close()
  if jax.process_index() == 0:
    print(f"exported step {step} of {workdir} to {output}", flush=True)
  return pathlib.Path(output)
