"""What a run's model card says of it (rejax.hf.model_card.CardFacts): the base model, the recipe's settings, the
data, and the dev evaluation's figures at the exported step, all read from the workdir."""

from __future__ import annotations

import json

import ml_collections

from rejax.data.convert import MANIFEST, read_manifest
from rejax.hf.model_card import CardFacts
from rejax.losses import make_loss
from rejax.storage import AnyPath


def run_card(config: ml_collections.ConfigDict, workdir: AnyPath, data_dir: AnyPath, step: int) -> CardFacts:
  m, loss, optim, data = config.model, config.loss, config.optim, config.data
  training: dict[str, object] = {"steps": f"{step} of {config.total_steps}"}
  if (data_dir / MANIFEST).is_file():
    domains = read_manifest(data_dir)["domains"]
    training["data"] = ", ".join(f"{name} ({info['records']} records)" for name, info in sorted(domains.items()))
  training["batches (global batch, group size)"] = ", ".join(
      f"{name} {tuple(setting)}" for name, setting in sorted(data.domains.items()))
  training["max length (query, passage)"] = f"{data.max_query_length}, {data.max_passage_length}"
  training["loss"] = make_loss(loss).describe()
  training["optimizer"] = (f"AdamW, lr {optim.lr}, warmup {optim.warmup_ratio}, weight decay {optim.weight_decay}, "
                           f"clip {optim.clip_norm}")
  training["weights trained"] = (f"LoRA r={m.lora.rank}, alpha={m.lora.alpha}, dropout={m.lora.dropout} on "
                                 f"{', '.join(m.lora.targets)}" if m.lora.enabled else "all (full fine-tuning)")
  results, on = eval_figures(workdir, step), ""
  if results and config.get("eval", {}).get("dataset"):
    on = f"{config.eval.dataset} ({config.eval.split})"
  base = m.path or ""
  return CardFacts(base_model=base, training=training, results=results, results_on=on)


def eval_figures(workdir: AnyPath, step: int) -> dict[str, float]:
  """The dev evaluation's figures logged at `step` in metrics.jsonl (`eval/NAME`), as {NAME: value}; {} if none."""
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return {}
  for line in path.read_text(encoding="utf-8").splitlines():
    record = json.loads(line) if line.strip() else {}
    if record.get("step") == step and any(key.startswith("eval/") for key in record):
      return {key.removeprefix("eval/"): value for key, value in record.items() if key.startswith("eval/")}
  return {}
