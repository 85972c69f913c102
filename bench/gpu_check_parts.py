"""The measurements of the GPU check, one per process (bench/gpu_check.py runs each as
`python -m bench.gpu_check_parts PART SPEC_JSON RESULT_JSON` under a deadline, so a crash, a hang or an
out-of-memory error costs one row of the table, and PyTorch and JAX never share the GPU, its memory or a process).

Only the modules a step needs are imported (rejax.models, rejax.hf.load, rejax.train.step/optim/flops/goodput/
distributed, rejax.data.packing/text): never the data pipeline (grain, array_record), the config system
(ml_collections), tfds or faiss, which the GPU machine lacks. Each result records which of those were imported.

Settings are the paper's (rejax/train/recipe.py paper_config; tests/test_gpu_check.py checks they agree): LoRA
r=32, alpha=64, dropout 0.1 on every projection, bf16 compute, the frozen base in the compute dtype and the adapters
in fp32 (model.frozen_dtype="", the recipe's), full remat, RI-InfoNCE at
tau 0.02 (its reasoning pass on, as from step 100), AdamW lr 1e-4 after clipping at 1.0.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.gpu_check import FORBIDDEN_MODULES

# Qwen/Qwen3-1.7B's config.json architecture (rejax/models/hub_configs ships only the 4B and 8B ones).
QWEN3_1_7B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                  max_position_embeddings=40960, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})

PAPER_LORA = dict(rank=32, alpha=64.0, dropout=0.1)  # targets: rejax.models.lora.PAPER_TARGETS
PAPER_OPTIM = dict(lr=1e-4, total_steps=1200, warmup_ratio=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                   clip_norm=1.0)
PAPER_LOSS = dict(kind="ri_infonce", temperature=0.02, ri_clamp_max=5.0)
PAD_ID = 0


def architecture(name: str) -> dict:
  """The transformers config fields of the check's model: "qwen3-1.7b", or "tiny" (bench.train_step's)."""
  if name == "qwen3-1.7b":
    return QWEN3_1_7B
  from bench.train_step import TINY_QWEN3

  return TINY_QWEN3


def paper_lora() -> dict:
  from rejax.models.lora import PAPER_TARGETS

  return {**PAPER_LORA, "targets": PAPER_TARGETS}


def host_batch(spec: dict, vocab: int) -> dict[str, np.ndarray]:
  """The step's host batch: every sequence full length ("full"), or the fixture's varied lengths, padded."""
  from bench.gpu_check_batches import full_batch, varied_batch

  if spec["batch"] == "full":
    return full_batch(spec["queries"], spec["group"], spec["max_length"], vocab)
  return varied_batch(spec["queries"], spec["group"], spec["max_length"], vocab, scale=spec["length_scale"])


def work_of(model_dir: str, host: dict, computed: dict) -> dict:
  """Real and computed tokens and model FLOPs of one step (rejax.train.goodput, the trainer's own count)."""
  from rejax.models.config import load_config
  from rejax.train.goodput import step_work

  work = step_work(load_config(model_dir), host, {k: tuple(v.shape) for k, v in computed.items()
                                                   if k.endswith("_ids")}, reasoning_pass=True)
  return {"tokens": work.tokens, "padded_tokens": work.padded_tokens, "real_flops": work.real_flops,
          "flops": work.flops, "shapes": {k: list(v.shape) for k, v in computed.items() if k.endswith("_ids")}}


def device_info() -> dict:
  """What JAX runs on and its bf16 peak (rejax.train.flops: the vendor table, or measured where not listed)."""
  import jax

  from rejax.train.flops import chip_of, peak_flops

  device = jax.devices()[0]
  listed = chip_of(device.device_kind) is not None
  return {"device_kind": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
          "peak_flops": peak_flops(device), "jax": jax.__version__,
          "peak_source": "rejax.train.flops.CHIPS (dense bf16)" if listed else "measured (JAX fp32 2048^3 matmul)"}


# ---------------------------------------------------------------------------------------------------- build

def build_part(spec: dict) -> dict:
  """A random Qwen3 written with transformers (norm weights perturbed, so a wrong norm cannot hide), the one
  checkpoint every other part loads."""
  import torch
  import transformers
  from transformers import AutoConfig, AutoModel

  device = "cuda" if torch.cuda.is_available() else "cpu"
  config = AutoConfig.for_model("qwen3", **architecture(spec["architecture"]))
  torch.manual_seed(spec["seed"])
  with torch.device(device):
    model = AutoModel.from_config(config, dtype=getattr(torch, spec["checkpoint_dtype"]))
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name:
        param.add_(0.1 * torch.randn_like(param))
  model.save_pretrained(spec["model_dir"])
  total = sum(p.numel() for p in model.parameters())
  return {"parameters": total, "non_embedding_parameters": total - config.vocab_size * config.hidden_size,
          "torch": torch.__version__, "transformers": transformers.__version__,
          "torch_device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}


# ---------------------------------------------------------------------------------------------------- parity

def parity_inputs(spec: dict) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) [rows, T] right-padded: random ids at the fixture's formatted-query lengths."""
  from bench.gpu_check_batches import varied_batch

  config = json.loads((pathlib.Path(spec["model_dir"]) / "config.json").read_text())
  batch = varied_batch(spec["parity_rows"], 1, spec["max_length"], config["vocab_size"], scale=spec["length_scale"],
                       seed=1)
  return batch["query_ids"], batch["query_mask"]


def transformers_outputs(model_dir: str, ids: np.ndarray, mask: np.ndarray, dtype: str) -> tuple[np.ndarray, ...]:
  """(last hidden states [B, T, D], pooled unit-norm embeddings [B, D]) of transformers' Qwen3Model, float32."""
  import torch
  from transformers import AutoModel

  from bench.train_step import torch_embed

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = AutoModel.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
  t_ids, t_mask = (torch.as_tensor(x, dtype=torch.long, device=device) for x in (ids, mask))
  with torch.no_grad():
    hidden = model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state.float().cpu().numpy()
    pooled = torch_embed(model, t_ids, t_mask).cpu().numpy()
  return hidden, pooled


def parity_reference_part(spec: dict) -> dict:
  """transformers' outputs in the parity dtype and in fp32, saved to `spec["outputs"]` (.npz). A process of its own:
  torch's CUDA libraries (cuDNN, cuBLAS) and JAX's never load into one process, where their versions could clash."""
  ids, mask = parity_inputs(spec)
  arrays = {}
  for dtype in sorted({spec["parity_dtype"], "float32"}):
    arrays[f"{dtype}_hidden"], arrays[f"{dtype}_pooled"] = transformers_outputs(spec["model_dir"], ids, mask, dtype)
  np.savez(spec["outputs"], **arrays)
  return {}


def rejax_outputs(model_dir: str, ids: np.ndarray, mask: np.ndarray, dtype: str) -> tuple[np.ndarray, ...]:
  """The same from rejax's decoder loaded from the same checkpoint (weights and compute in `dtype`)."""
  import jax.numpy as jnp

  from rejax.hf.load import load_decoder
  from rejax.models.pooling import embed

  model, _ = load_decoder(model_dir, param_dtype=dtype, dtype=dtype)
  ids, mask = jnp.asarray(ids), jnp.asarray(mask)
  return np.asarray(model(ids, mask)).astype(np.float32), np.asarray(embed(model, ids, mask))


def differences(ours: tuple[np.ndarray, ...], reference: tuple[np.ndarray, ...], mask: np.ndarray) -> dict:
  """Max |difference| of the hidden states over real tokens and of the pooled embeddings, with the scale."""
  real = mask.astype(bool)
  return {"max_abs_hidden": float(np.abs(ours[0] - reference[0])[real].max()),
          "max_abs_reference_hidden": float(np.abs(reference[0])[real].max()),
          "max_abs_pooled": float(np.abs(ours[1] - reference[1]).max()),
          "min_cosine": float((ours[1].astype(np.float64) * reference[1]).sum(-1).min())}


def parity_part(spec: dict) -> dict:
  """rejax vs transformers on the same random weights, both in `parity_dtype`, on the fixture's query lengths;
  in bf16 also each against transformers in fp32 (the error bf16 itself brings, for scale)."""
  dtype = spec["parity_dtype"]
  ids, mask = parity_inputs(spec)
  with tempfile.TemporaryDirectory() as tmp:
    outputs = pathlib.Path(tmp) / "transformers.npz"
    child = pathlib.Path(tmp) / "result.json"
    subprocess.run([sys.executable, "-m", "bench.gpu_check_parts", "parity_reference",
                    json.dumps({**spec, "outputs": str(outputs)}), str(child)], check=True)
    with np.load(outputs) as arrays:
      reference = {name: (arrays[f"{name}_hidden"], arrays[f"{name}_pooled"]) for name in {dtype, "float32"}}
    forbidden = json.loads(child.read_text())["forbidden_imported"]
  ours = rejax_outputs(spec["model_dir"], ids, mask, dtype)
  result = {"device": device_info(), "dtype": dtype, "rows": int(ids.shape[0]), "lengths": mask.sum(1).tolist(),
            "rejax_vs_transformers": differences(ours, reference[dtype], mask), "forbidden_imported": forbidden}
  if dtype != "float32":
    result["rejax_vs_transformers_fp32"] = differences(ours, reference["float32"], mask)
    result["transformers_vs_transformers_fp32"] = differences(reference[dtype], reference["float32"], mask)
  return result


# ---------------------------------------------------------------------------------------------------- steps

def rejax_step_part(spec: dict) -> dict:
  """Compile time and median step time of `rejax train`'s step (the trainer's model, state, step and batch
  placement) on one device, padded rows or packed (data.pack) rows, XLA's or cuDNN's attention, the frozen base in
  `frozen_dtype` ("": the compute dtype, the recipe's default)."""
  import jax
  from flax import nnx

  from bench.train_step import median_seconds
  from rejax.hf.load import load_decoder
  from rejax.models import LoRAConfig
  from rejax.sharding import batch_shards, make_mesh, use_mesh
  from rejax.train.distributed import to_global_batch
  from rejax.losses import make_loss
  from rejax.train.optim import linear_warmup_decay, make_optimizer
  from rejax.train.state import init_train_state, jit_train_step
  from rejax.train.step import make_train_step

  mesh = make_mesh(devices=jax.devices()[:1])
  with use_mesh(mesh):
    model, cfg = load_decoder(spec["model_dir"], mesh=mesh, lora_seed=spec["seed"], param_dtype="float32",
                              dtype=spec["compute_dtype"], frozen_dtype=spec["frozen_dtype"] or spec["compute_dtype"],
                              remat="full", attention_impl=spec["attention"], lora=LoRAConfig(**paper_lora()))
    schedule_keys = ("lr", "total_steps", "warmup_ratio")
    tx = make_optimizer(linear_warmup_decay(*(PAPER_OPTIM[k] for k in schedule_keys)),
                        **{k: v for k, v in PAPER_OPTIM.items() if k not in schedule_keys})
    graphdef, state = init_train_state(model, tx, wrt=nnx.LoRAParam)
    del model
    loss = make_loss(PAPER_LOSS, group_size=spec["group"], ri_start_step=0)
    step = jit_train_step(make_train_step(graphdef, tx, loss), state)
    host = host_batch(spec, cfg.vocab_size)
    batch = to_global_batch(host, mesh, PAD_ID, pack_rows=batch_shards(mesh) if spec["batch"] == "packed" else None)
    key = jax.random.key(spec["seed"])
    start = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    holder, losses = {"state": state}, []
    del state  # donated by the first step: only the holder's state is live

    def one_step():
      holder["state"], metrics = compiled(holder["state"], batch, key)
      losses.append(jax.block_until_ready(metrics["loss"]))

    seconds = median_seconds(one_step, spec["timed_steps"])
  stats = jax.devices()[0].memory_stats() or {}
  trained = sum(x.size for x in jax.tree.leaves(holder["state"].trainable))
  return {"step_s": seconds, "compile_s": compile_s, "first_loss": float(losses[0]),
          "peak_bytes": stats.get("peak_bytes_in_use"), "trained_parameters": int(trained), "device": device_info(),
          "frozen_dtype": jax.numpy.dtype(cfg.base_param_dtype).name,
          **work_of(spec["model_dir"], host, batch)}


def torch_step_part(spec: dict) -> dict:
  """Median step time of the PyTorch reference (bench/gpu_check_torch.py) on the same host batch, padded as
  FlagEmbedding pads it (the full batch has no padding to remove)."""
  import torch

  from bench.gpu_check_batches import torch_batch
  from bench.gpu_check_torch import reference_step
  from bench.train_step import median_seconds

  device = "cuda" if torch.cuda.is_available() else "cpu"
  step, trained = reference_step(spec["model_dir"], lora=paper_lora(), optim=PAPER_OPTIM, group=spec["group"],
                                 temperature=PAPER_LOSS["temperature"], device=device,
                                 compute_dtype=spec["compute_dtype"])
  config = json.loads((pathlib.Path(spec["model_dir"]) / "config.json").read_text())
  host = host_batch(spec, config["vocab_size"])
  feed = host if spec["batch"] == "full" else torch_batch(host)
  losses = []
  seconds = median_seconds(lambda: losses.append(step(feed)), spec["timed_steps"])
  peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
  return {"step_s": seconds, "first_loss": losses[0], "peak_bytes": peak, "trained_parameters": trained,
          **work_of(spec["model_dir"], host, feed)}


PARTS = {"build": build_part, "parity": parity_part, "parity_reference": parity_reference_part,
         "rejax_step": rejax_step_part, "torch_step": torch_step_part}


def main(argv: list[str]) -> None:
  name, spec_json, result_path = argv
  result = PARTS[name](json.loads(spec_json))
  # what this process imported, with what a process it started reported (parity's transformers side)
  result["forbidden_imported"] = sorted({m for m in FORBIDDEN_MODULES if m in sys.modules}
                                        | set(result.get("forbidden_imported", [])))
  result["torch_imported"] = "torch" in sys.modules
  pathlib.Path(result_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])
