"""What a step computed and how much of it was real: tokens with and without padding, and model FLOPs of both.

Padded tokens are every position of every row the step ran (a padded or packed batch alike); real tokens are the
sequences' own. `flops` are the model FLOPs of the computed rows, `real_flops` those of the sequences alone, so
MFU on real tokens (`mfu`) is the useful work per second and `mfu_padded` what the chips were kept busy with.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from rejax.train.flops import train_step_flops

INPUTS = ("query", "passage", "reason")


@dataclasses.dataclass(frozen=True)
class StepWork:
  tokens: int  # real tokens encoded
  padded_tokens: int  # token positions computed
  flops: float  # model FLOPs of the computed rows
  real_flops: float  # model FLOPs of the real tokens

  def rates(self, seconds: float, flops_per_s: float) -> dict[str, float]:
    """Per-second figures of a step that took `seconds` on chips of `flops_per_s` in all."""
    return {"tokens_per_s": self.tokens / seconds, "padded_tokens_per_s": self.padded_tokens / seconds,
            "padding_fraction": 1 - self.tokens / self.padded_tokens, "mfu": self.real_flops / seconds / flops_per_s,
            "mfu_padded": self.flops / seconds / flops_per_s}


def step_work(model_cfg, host_batch: Mapping[str, np.ndarray], computed: Mapping[str, tuple[int, ...]],
              reasoning_pass: bool, row_blocks: int = 1) -> StepWork:
  """The work of one step: `host_batch` is this process's padded rows (`*_mask`), `computed` the global
  `*_ids` shapes the step ran (padded or packed), `row_blocks` how many processes' row blocks make the batch."""
  names = [name for name in INPUTS if name != "reason" or reasoning_pass]
  lengths = {f"{name}_ids": np.asarray(host_batch[f"{name}_mask"]).sum(axis=1) for name in names}
  computed = {k: tuple(v) for k, v in computed.items() if k.removesuffix("_ids") in names}
  return StepWork(tokens=int(sum(x.sum() for x in lengths.values())) * row_blocks,
                  padded_tokens=int(sum(np.prod(shape) for shape in computed.values())),
                  flops=train_step_flops(model_cfg, computed, reasoning_pass),
                  real_flops=train_step_flops(model_cfg, lengths, reasoning_pass) * row_blocks)
