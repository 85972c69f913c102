"""The GPU check's figures from its parts' results: the comparisons (speed ratios, MFU) and the one markdown table.

Speed ratios compare step times on the same sequences (the same real tokens), so a ratio above 1 means the first
named is that much faster. MFU is the model FLOPs of the real tokens (rejax.train.goodput) per second over the
device's bf16 peak (rejax.train.flops, as the first JAX part to finish reports it).
"""

from __future__ import annotations

import math

NONE = "—"
NOT_RUN = "not run (yet)"  # a part the report was written before


def ratio(numerator: float | None, denominator: float | None) -> float | None:
  """numerator / denominator when both are there and the result is finite, else None."""
  if not numerator or not denominator:
    return None
  value = numerator / denominator
  return value if math.isfinite(value) else None


def step_seconds(results: dict, key: str) -> float | None:
  return results.get(key, {}).get("step_s")


def speedup(results: dict, faster: str, slower: str) -> float | None:
  """How many times faster part `faster` ran its step than part `slower` ran the same sequences."""
  return ratio(step_seconds(results, slower), step_seconds(results, faster))


def difference(results: dict, key: str, other: str, field: str) -> float | None:
  """results[key][field] - results[other][field] when both parts report it."""
  a, b = results.get(key, {}).get(field), results.get(other, {}).get(field)
  return None if a is None or b is None else a - b


def summarise(results: dict, peak_flops: float | None) -> dict:
  """The comparisons the check exists for, and each step's real tokens/s and MFU against `peak_flops`."""
  steps = {key: r for key, r in results.items() if "step_s" in r}
  return {
      "rejax_over_torch": {"full_xla": speedup(results, "rejax_full_xla", "torch_full"),
                           "full_xla_frozen_fp32": speedup(results, "rejax_full_xla_frozen_float32", "torch_full"),
                           "full_cudnn": speedup(results, "rejax_full_cudnn", "torch_full"),
                           "varied_packed_xla": speedup(results, "rejax_packed_xla", "torch_varied"),
                           "varied_packed_cudnn": speedup(results, "rejax_packed_cudnn", "torch_varied")},
      "cudnn_over_xla": {batch: speedup(results, f"rejax_{batch}_cudnn", f"rejax_{batch}_xla")
                         for batch in ("full", "padded", "packed")},
      "frozen_compute_over_fp32": speedup(results, "rejax_full_xla", "rejax_full_xla_frozen_float32"),
      "frozen_fp32_extra_bytes": difference(results, "rejax_full_xla_frozen_float32", "rejax_full_xla", "peak_bytes"),
      "packed_over_padded": {attention: speedup(results, f"rejax_packed_{attention}", f"rejax_padded_{attention}")
                             for attention in ("xla", "cudnn")},
      "tokens_per_s": {key: r["tokens"] / r["step_s"] for key, r in steps.items()},
      "mfu": {key: ratio(r["real_flops"] / r["step_s"], peak_flops) for key, r in steps.items()},
  }


def number(value: float | None, spec: str) -> str:
  return NONE if value is None else format(value, spec)


def flops_rate(value: float | None) -> str:
  if value is None:
    return NONE
  return f"{value / 1e12:.0f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.0f} GFLOP/s"


def times(values: dict[str, float | None]) -> str:
  """"1.80x (XLA), 2.01x (cuDNN)" for the comparisons that have a figure; NONE when none has."""
  shown = [f"{v:.2f}x ({name})" for name, v in values.items() if v is not None]
  return ", ".join(shown) or NONE


def row(measurement: str, notes: str, step: str = NONE, tokens: str = NONE, mfu: str = NONE,
        memory: str = NONE) -> str:
  return f"| {measurement} | {step} | {tokens} | {mfu} | {memory} | {notes} |"


def device_notes(device: dict, build: dict) -> str:
  if "device_kind" not in device:
    return "unknown: no JAX part finished"
  torch_side = f", torch {build['torch']} on {build['torch_device']}, transformers {build['transformers']}" \
      if "torch" in build else ""
  return (f"**{device['device_kind']}** ({device['platform']}; 1 of {device['device_count']} device(s) used); "
          f"bf16 peak {flops_rate(device['peak_flops'])} from {device['peak_source']}; jax {device['jax']}{torch_side}")


def model_notes(report: dict) -> str:
  build, sizes = report["parts"].get("build", {}), report["sizes"]
  if "parameters" not in build:
    return build.get("reason", NONE)
  trained = next((r["trained_parameters"] for r in report["parts"].values() if "trained_parameters" in r), None)
  return (f"{sizes['model']}: {build['parameters'] / 1e6:,.1f}M parameters "
          f"({build['non_embedding_parameters'] / 1e6:,.1f}M without the embedding), {sizes['parity_dtype']} "
          f"checkpoint; LoRA r=32, alpha=64, dropout 0.1 on q/k/v/o/gate/up/down_proj "
          f"({number(trained and trained / 1e6, ',.2f')}M trained) on both sides")


def settings_notes(report: dict) -> str:
  sizes = report["sizes"]
  mixed = sizes["compute_dtype"] != "float32"
  scaled = "" if sizes["length_scale"] == 1 else f" x {sizes['length_scale']:g}"
  notes = (f"per device: {sizes['queries']} queries x {sizes['group']} passages + {sizes['queries']} reasoning "
           f"queries, up to {sizes['max_length']} tokens; {sizes['compute_dtype']} compute, the frozen base in "
           f"{sizes['compute_dtype']} (model.frozen_dtype's default) and the LoRA adapters and AdamW state in float32 "
           "(PyTorch: float32 weights), "
           f"every layer rematerialised (PyTorch: gradient checkpointing{', autocast' if mixed else ''}); "
           f"RI-InfoNCE tau 0.02, AdamW; median of {sizes['timed_steps']} step(s) after a warm-up step; the first "
           f"step's loss is of the same weights (LoRA B = 0) and batch on both sides. Varied lengths: "
           f"sample_data/reason_embed, characters / 4{scaled}; "
           f"padded: power-of-two buckets as `rejax train` pads them (PyTorch: to the longest, in multiples of 8)")
  if report["mode"] == "cpu":
    notes += ("; **CPU mode**: a smoke test of the GPU run (one OpenMP thread, XLA's CPU compiler without its "
              "costly optimisations): its times are no measurement")
  return notes


def parity_rows(parity: dict) -> list[str]:
  if "rejax_vs_transformers" not in parity:
    return [row("parity", parity.get("reason", NOT_RUN))]
  dtype = parity["dtype"]

  def notes(d: dict) -> str:
    return (f"max abs diff: pooled embedding {d['max_abs_pooled']:.2e}, last hidden states {d['max_abs_hidden']:.2e} "
            f"(max |h| {d['max_abs_reference_hidden']:.3g}); min cosine {d['min_cosine']:.6f}")

  lengths = f"{min(parity['lengths'])}-{max(parity['lengths'])}"
  rows = [row("parity", f"rejax vs transformers Qwen3Model, both {dtype}, {parity['rows']} sequences of {lengths} "
                        f"tokens: {notes(parity['rejax_vs_transformers'])}")]
  if "rejax_vs_transformers_fp32" in parity:
    rows.append(row("parity vs fp32", f"rejax {dtype} vs transformers fp32: "
                                      f"{notes(parity['rejax_vs_transformers_fp32'])}"))
    rows.append(row("parity vs fp32 (reference)", f"transformers {dtype} vs transformers fp32: "
                                                  f"{notes(parity['transformers_vs_transformers_fp32'])}"))
  return rows


def step_row(label: str, result: dict, summary: dict, key: str) -> str:
  if "step_s" not in result:
    return row(label, result.get("reason", NOT_RUN))
  shapes = ", ".join(f"{k.removesuffix('_ids')} {'x'.join(map(str, s))}" for k, s in result["shapes"].items())
  compile_note = f"compile {result['compile_s']:.1f} s; " if "compile_s" in result else ""
  padding = 1 - result["tokens"] / result["padded_tokens"]
  memory, mfu = result.get("peak_bytes"), summary["mfu"][key]
  return row(label, f"{compile_note}rows {shapes}; padding {padding:.0%}; first-step loss {result['first_loss']:.3f}",
             step=f"{result['step_s']:.3f}", tokens=f"{summary['tokens_per_s'][key]:,.0f}",
             mfu=NONE if mfu is None else f"{100 * mfu:.1f}%",
             memory=number(memory and memory / 2**30, ".1f"))


def comparison_rows(summary: dict) -> list[str]:
  s = summary
  frozen_ratio, frozen_extra = s["frozen_compute_over_fp32"], s["frozen_fp32_extra_bytes"]
  return [
      row("rejax / PyTorch, full rows", "step-time ratio, same batch: " + times(
          {"XLA": s["rejax_over_torch"]["full_xla"], "cuDNN": s["rejax_over_torch"]["full_cudnn"],
           "XLA, frozen base in float32 as PyTorch's": s["rejax_over_torch"]["full_xla_frozen_fp32"]})),
      row("rejax / PyTorch, varied lengths", "rejax packed vs PyTorch padded, same sequences: " + times(
          {"XLA": s["rejax_over_torch"]["varied_packed_xla"], "cuDNN": s["rejax_over_torch"]["varied_packed_cudnn"]})),
      row("cuDNN / XLA attention", "step-time ratio: " + times(s["cudnn_over_xla"])),
      row("frozen base: compute dtype / float32", "step-time ratio, full rows, XLA: "
          + (NONE if frozen_ratio is None else f"{frozen_ratio:.2f}x") + "; the float32 base's extra peak memory: "
          + (NONE if frozen_extra is None else f"{frozen_extra / 2**30:.2f} GiB")),
      row("packed / padded", "step-time ratio, same sequences: " + times(
          {"XLA": s["packed_over_padded"]["xla"], "cuDNN": s["packed_over_padded"]["cudnn"]})),
  ]


def table(report: dict, labels: list[tuple[str, str]]) -> str:
  """The markdown table: device, model and settings, parity, every step, the comparisons, the run itself."""
  parts, summary = report["parts"], report["summary"]
  lines = [f"GPU check ({report['mode']} mode)", "",
           "| measurement | step (s) | real tokens/s | MFU | peak memory (GiB) | result / notes |",
           "|:---|---:|---:|---:|---:|:---|",
           row("device", device_notes(report["device"], parts.get("build", {}))),
           row("model", model_notes(report)),
           row("settings", settings_notes(report))]
  lines += parity_rows(parts.get("parity", {}))
  lines += [step_row(label, parts.get(key, {}), summary, key) for key, label in labels
            if key.startswith(("rejax_", "torch_"))]
  lines += comparison_rows(summary)
  statuses = [r.get("status") for r in parts.values()]
  counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "failed", "timeout", "stopped", "skipped")
                     if s in statuses)
  forbidden = ", ".join(report["forbidden_imported"]) or "none"
  lines += [row("optional packages imported", f"{forbidden} (of grain, array_record, ml_collections, "
                                              "tensorflow_datasets, faiss)"),
            row("run", f"{report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget; parts: {counts}")]
  return "\n".join(lines) + "\n"


def status_table(report: dict, labels: list[tuple[str, str]], error: Exception) -> str:
  """The fallback when `table` fails on an unexpected result: each part's status and reason (figures in the JSON)."""
  lines = [f"GPU check ({report['mode']} mode): the full table failed ({type(error).__name__}: {error}); the "
           "figures are in gpu_check.json", "", "| part | status | seconds | reason |", "|:---|:---|---:|:---|"]
  for key, label in labels:
    result = report["parts"].get(key, {})
    lines.append(f"| {label} | {result.get('status', NOT_RUN)} | {number(result.get('seconds'), '.0f')} | "
                 f"{result.get('reason', '')} |")
  return "\n".join(lines) + "\n"
