"""ReasonEmbed-Llama-3.1-8B: the paper's recipe (docs/method.md#training-recipe) on meta-llama/Llama-3.1-8B.

LoRA r32/alpha64/dropout 0.1 on all projections, RI-InfoNCE (tau 0.02, kappa 5, from step 100), AdamW lr
1e-4 with 10% warmup and linear decay, clip 1.0, bf16 compute with full remat, 512 tokens, one epoch of
reason-embed-data-0928 with per-domain (batch, G) so every step holds 1,024 passages.

The paper starts from the backbone after an MS MARCO fine-tune that was not released; from the plain
base model expect lower numbers. Paper BRIGHT nDCG@10 (basic / RI): 34.9 / 36.2.

COMMAND (one 8-GPU node; the arg picks a preset of rejax/train/recipe.py: gpu8, v5p-32, v5e-16, cpu1):
  rejax data convert --input 'reason-embed-data-0928/*.jsonl' --output data/reason-embed
  rejax train --config configs/llama3_1_8b.py:gpu8 --workdir runs/llama3_1_8b --config.data.path=data/reason-embed
  rejax eval --model runs/llama3_1_8b/export --bright data/bright

On a TPU v5p-32 slice, run the same train command on every host (scripts/launch_tpu_pod.sh) with :v5p-32;
on SLURM GPU nodes see scripts/train_slurm.sbatch. A local copy of the model: --config.model.path=DIR.

PLAN (`rejax plan`, compiled for the hardware without it; peak memory per chip and the compiler's estimate,
longest buckets q/p/r 512, 2026-12-01; README "Will it fit?" has the table and the command):
  v5p-32 with fsdp 16 and XLA's attention: 31.3 / 31.4 / 33.3 of 95.7 GiB and 8.4 / 9.0 / 13.4 s/step (MFU
    0.37-0.38) for the 16x64 / 64x16 / 512x2 families (the preset is now data 2 x fsdp 8 with splash attention,
    chosen on Qwen3-8B; not compiled for Llama);
  v5e-16 (:v5e-16, GradCache chunks of 16): 5.5 / 5.0 / 8.0 of 15.75 GiB.
"""

from rejax.train.recipe import paper_run


def get_config(mesh_preset: str = "gpu8"):
  return paper_run("meta-llama/Llama-3.1-8B", mesh_preset)
