"""ReasonEmbed-Qwen3-4B: the paper's recipe (rejax/train/recipe.py, docs/method.md#training-recipe)
on Qwen/Qwen3-4B. Paper BRIGHT nDCG@10 (basic / RI): 35.3 / 37.1, from the backbone after an MS MARCO fine-
tune that was not released; from the plain base model expect lower numbers.

COMMAND (the arg picks a mesh preset of rejax/train/recipe.py: gpu8, v5p-32, 2xv5p-32 (two slices), v5e-16, cpu1):
  rejax data convert --input 'reason-embed-data-0928/*.jsonl' --output data/reason-embed
  rejax train --config configs/qwen3_4b.py:gpu8 --workdir runs/qwen3_4b --config.data.path=data/reason-embed
  rejax eval --model runs/qwen3_4b/export --bright data/bright
On a TPU pod, the same train command on every host (scripts/launch_tpu_pod.sh); SLURM: scripts/train_slurm.sbatch.
Whether a preset fits its chips: `rejax plan --config configs/qwen3_4b.py:v5p-32 --topology v5p:2x2x4` (README
"Will it fit?" has the measured table).
"""

from rejax.train.recipe import paper_run


def get_config(mesh_preset: str = "gpu8"):
  return paper_run("Qwen/Qwen3-4B", mesh_preset)
