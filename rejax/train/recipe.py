"""The paper's recipe (docs/method.md#training-recipe) as one ConfigDict: `configs/*.py` start from it."""

from __future__ import annotations

import ml_collections

from rejax.domains import PAPER_DOMAIN_SETTINGS
from rejax.models.lora import PAPER_TARGETS


def paper_config() -> ml_collections.ConfigDict:
  """Every key `rejax train` reads, set to the paper's values (model and mesh left to the caller)."""
  c = ml_collections.ConfigDict()
  c.total_steps = 1200  # ~1 epoch of reason-embed-data-0928 (81,659 records, 64-query batches)
  c.ckpt_every = 100
  c.keep_checkpoints = 3
  c.log_every = 1
  c.seed = 42
  c.export_dir = "export"  # relative to the workdir; "" = no export at the end

  c.model = ml_collections.ConfigDict()
  c.model.path = ""  # HF directory, hub id, or asset:NAME; "" = random init from hf_config
  c.model.hf_config = ml_collections.ConfigDict()  # config.json fields of a randomly initialised model
  c.model.tokenizer = ""  # tokenizer directory for a random model (a loaded model brings its own)
  c.model.dtype = "bfloat16"  # compute
  c.model.param_dtype = "float32"  # trained weights (and the optimizer's moments)
  # LoRA's frozen base weights: "" = the compute dtype above (each use casts them to it: the same numbers, half the
  # memory and all-gather bytes of float32), or a dtype name. Full fine-tuning trains every weight in param_dtype.
  c.model.frozen_dtype = ""
  c.model.remat = "full"  # gradient checkpointing
  c.model.attention_impl = ""  # "" = XLA's; "cudnn" = fused attention on NVIDIA GPUs; "splash" = Pallas on TPU
  # The embedder's two settings: attention "causal" or "bidirectional" ("" = as config.json says: `is_causal`,
  # default causal), pooling "last_token" or "mean" ("" = the model directory's 1_Pooling, else last token).
  c.model.attention = ""
  c.model.pooling = ""
  c.model.lora = ml_collections.ConfigDict()
  c.model.lora.enabled = True
  c.model.lora.rank = 32
  c.model.lora.alpha = 64.0
  c.model.lora.dropout = 0.1
  c.model.lora.targets = PAPER_TARGETS

  c.data = ml_collections.ConfigDict()
  c.data.path = ""  # a `rejax data convert` output, or a directory of released JSONL (converted into the workdir)
  c.data.domains = ml_collections.ConfigDict(PAPER_DOMAIN_SETTINGS)
  c.data.max_query_length = 512
  c.data.max_passage_length = 512
  c.data.min_bucket = 16  # padded lengths: powers of two from here to the maximum (one compiled step each)
  c.data.num_workers = 4
  c.data.pack = True  # several sequences per row (rejax.data.packing): compute on tokens, not on padding

  c.loss = ml_collections.ConfigDict()
  c.loss.kind = "ri_infonce"
  c.loss.temperature = 0.02
  # A temperature warm-up (0 steps = off, the paper's): tau starts at initial_temperature and reaches
  # loss.temperature after this many steps, evenly in log(tau). Against the first steps' collapse of a backbone that
  # is no embedder yet (configs/smollm2.py).
  c.loss.temperature_warmup_steps = 0
  c.loss.initial_temperature = 1.0
  c.loss.ri_start_step = 100
  c.loss.ri_clamp_max = 5.0
  # Matryoshka: the loss also at these prefix sizes of the embedding (e.g. (576, 256, 64)), each weighted by
  # matryoshka_weights (() = 1.0 each); () = off (the paper's). A prefix is then usable alone (rejax encode --dim).
  c.loss.matryoshka_dims = ()
  c.loss.matryoshka_weights = ()
  # Teacher distillation (docs/method.md#distillation): + distill_weight x a term pulling the student's scores of
  # each query's group towards the records' pos_scores / neg_scores (every record must have them): "kl" (FlagEmbedding's
  # KL of the group softmaxes, teacher softmax at distill_temperature) or "margin_mse" (Hofstätter et al.: the
  # positive-negative margins, teacher scores / distill_temperature). 0.0 = off (the paper's).
  c.loss.distill = "kl"
  c.loss.distill_weight = 0.0
  c.loss.distill_temperature = 1.0

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-4
  c.optim.warmup_ratio = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.clip_norm = 1.0
  # 8.0 reproduces the 8-GPU reference's DDP averaging exactly (docs/method.md#gradient-scale)
  c.optim.grad_divisor = 1.0
  c.optim.grad_cache_chunk = 0  # 0 = off; N = GradCache with N rows per chunk

  c.eval = ml_collections.ConfigDict()  # dev evaluation during training (off by default)
  c.eval.dataset = ""  # a BEIR-layout directory (corpus.jsonl, queries.jsonl, qrels/{split}.tsv); "" = none
  c.eval.split = "test"  # qrels/{split}.tsv
  c.eval.every = 0  # steps between evaluations, and after the last step; 0 = off
  c.eval.max_length = 512  # tokens per text, EOS included
  c.eval.batch_size = 32
  c.eval.instruction = ""  # the query instruction; "" = none
  c.eval.metric = "ndcg@10"  # the figure that picks the best checkpoint
  c.eval.keep_best = False  # keep the checkpoint with the best eval.metric besides the latest keep_checkpoints
  c.eval.export_best = False  # the end-of-run export (export_dir) is of the best checkpoint (needs keep_best)

  c.preemption = ml_collections.ConfigDict()
  # Each of these signals ends the run at a step all processes agree on, with a checkpoint, exit status 75
  # (rejax.train.preemption); () = none (the signals then do what they do by default).
  c.preemption.signals = ("SIGTERM", "SIGUSR1")

  c.profile = ml_collections.ConfigDict()  # a jax.profiler trace of a few steps into WORKDIR/profile/
  c.profile.start_step = 5  # the first traced step (step N is the N-th update): after the first compiles
  c.profile.steps = 0  # how many steps to trace; 0 = off

  c.mesh = ml_collections.ConfigDict()
  # data x fsdp x tensor devices per slice; dcn_data slices, data-parallel over the data-centre network (multislice)
  c.mesh.dcn_data = 1
  c.mesh.data = 1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  return c


# Mesh presets for the paper's models (fp32 parameters sharded over fsdp; bf16 compute; LoRA), and the settings
# besides the mesh a preset needs. The TPU ones were chosen by compiling them with `rejax plan`; the figures
# behind each choice are in README "Will it fit?", regenerated by scripts/plan_table.py from `rejax plan --json`.
MESH_PRESETS = {
  "gpu8": {"data": 1, "fsdp": 8, "tensor": 1},  # one node of 8 GPUs (H100/A100 80 GB)
  "v5p-32": {"data": 2, "fsdp": 8, "tensor": 1},  # a TPU v5p-32 slice: 16 chips on 4 hosts
  "v5e-16": {"data": 1, "fsdp": 16, "tensor": 1},  # a TPU v5e-16 slice: 16 chips of 16 GB
  # Two v5p-32 slices (multislice): the batch split between them over the DCN. Per slice fsdp 8 x tensor 2, since
  # dcn_data x data x fsdp must divide pony's 16 queries. `rejax plan --num-slices 2`: the 16x64 family fits in
  # 19.25 of 95.7 GiB per chip (2026-12-03; the two other families not yet compiled; no time estimate for 2 slices).
  "2xv5p-32": {"dcn_data": 2, "data": 1, "fsdp": 8, "tensor": 2},
  "cpu1": {"data": 1, "fsdp": 1, "tensor": 1},  # a smoke test on one device (use a small total_steps)
}
PRESET_SETTINGS = {
  "v5p-32": {"model.attention_impl": "splash"},  # the Pallas kernel: faster and smaller than XLA's here
  "2xv5p-32": {"model.attention_impl": "splash"},
  "v5e-16": {"optim.grad_cache_chunk": 16},  # the largest chunk that divides pony's 16 queries over 16 chips
}


# What `rejax plan --remat-search` chose for a backbone on a preset (README "Will it fit?"; 2026-12-04, libtpu
# 0.0.42.1, the LoRA FLOP count, the frozen base in bf16): the fastest by the compiler's estimate that fits every
# batch family of the recipe.
PLANNED_SETTINGS = {
  # mlp_up: 53.0 / 52.2 / 82.2 of 95.7 GiB per chip for 16x64 / 64x16 / 512x2, est. 4.39 / 4.67 / 7.18 s per step
  # (full: 4.71 / 5.01 / 7.64); dots needs 253 GiB for 512x2, none 536
  ("Qwen/Qwen3-8B", "v5p-32"): {"model.remat": "mlp_up"},
  # mlp_up: 42.1 / 42.2 / 62.7 GiB, est. 2.84 / 3.02 / 4.58 s (full: 3.00 / 3.19 / 4.81); mlp is faster (2.70 / 2.87 s)
  # but needs 104.7 GiB for 512x2
  ("Qwen/Qwen3-4B", "v5p-32"): {"model.remat": "mlp_up"},
  # mlp_up: 52.5 / 51.4 / 81.4 GiB, est. 4.17 / 4.43 / 6.83 s (full: 4.51 / 4.78 / 7.31); mlp not compiled
  ("meta-llama/Llama-3.1-8B", "v5p-32"): {"model.remat": "mlp_up"},
}


def paper_run(model_path: str, mesh_preset: str) -> ml_collections.ConfigDict:
  """The paper's recipe for `model_path` on a preset mesh (its settings, then what the plan chose for this
  backbone on it); data.path is left for the command line."""
  if mesh_preset not in MESH_PRESETS:
    raise ValueError(f"unknown mesh preset {mesh_preset!r}; known: {', '.join(MESH_PRESETS)}")
  c = paper_config()
  c.model.path = model_path
  c.mesh.update(MESH_PRESETS[mesh_preset])
  settings = {**PRESET_SETTINGS.get(mesh_preset, {}), **PLANNED_SETTINGS.get((model_path, mesh_preset), {})}
  for key, value in settings.items():
    section, name = key.split(".")
    c[section][name] = value
  return c
