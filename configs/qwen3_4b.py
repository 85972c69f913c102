"""ReasonEmbed-Qwen3-4B: the paper's recipe (docs/method.md#training-recipe) on Qwen/Qwen3-4B.

LoRA r32/alpha64/dropout 0.1 on all projections, RI-InfoNCE (tau 0.02, kappa 5, from step 100), AdamW lr
1e-4 with 10% warmup and linear decay, clip 1.0, bf16 compute with full remat, 512 tokens, one epoch of
reason-embed-data-0928 with per-domain (batch, G) so every step holds 1,024 passages.

The paper starts from the backbone after an MS MARCO fine-tune that was not released; from the plain
base model expect lower numbers. Paper BRIGHT nDCG@10 (basic / RI): 35.3 / 37.1.

COMMAND (one 8-GPU node; the arg picks a preset of rejax/train/recipe.py: gpu8, v5p-32, v5e-16, cpu1):
  rejax data convert --input 'reason-embed-data-0928/*.jsonl' --output data/reason-embed
  rejax train --config configs/qwen3_4b.py:gpu8 --workdir runs/qwen3_4b --config.data.path=data/reason-embed
  rejax eval --model runs/qwen3_4b/export --bright data/bright

On a TPU v5p-32 slice, run the same train command on every host (scripts/launch_tpu_pod.sh) with :v5p-32;
on SLURM GPU nodes see scripts/train_slurm.sbatch. A local copy of the model: --config.model.path=DIR.

PLAN (`rejax plan`, compiled for the hardware without it; peak memory per chip and the compiler's estimate,
longest buckets q/p/r 512, 2026-12-01; README "Will it fit?" has the table and the command):
  v5p-32 with fsdp 16 and XLA's attention: 24.3 / 24.3 / 25.9 of 95.7 GiB and 6.1 / 6.6 / 9.9 s/step (MFU 0.27)
    for the 16x64 / 64x16 / 512x2 families (the preset is now data 2 x fsdp 8 with splash attention, chosen on
    Qwen3-8B; not compiled for 4B);
  v5e-16 (:v5e-16, GradCache chunks of 16): 3.1 / 3.3 / 5.8 of 15.75 GiB.
"""

from rejax.train.recipe import paper_run


def get_config(mesh_preset: str = "gpu8"):
  return paper_run("Qwen/Qwen3-4B", mesh_preset)
