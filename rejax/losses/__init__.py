"""The training losses, behind one registry: a run's `loss.kind` names a row of LOSSES, and the rest of `loss.*`
are settings, each read by the losses that declare it as a field (`make_loss`).

A loss is a frozen dataclass (rejax.losses.base.ContrastiveLoss) that takes the global batch's embeddings and
returns (loss, scalars to log); its maths are pure functions beside it (`infonce`, `ri_infonce`), which the tests
check against plain numpy. A new loss is its module and a row here (docs/extending.md#a-loss). Two wrappers apply to
any of them: teacher distillation (`loss.distill_weight` > 0, `distill.py`) and Matryoshka sizes
(`loss.matryoshka_dims`, `matryoshka.py`), in that order (distillation at every size).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rejax.losses.base import ContrastiveLoss
from rejax.losses.distill import DISTILL_KINDS, Distillation, check_distill_settings, kl_distill, margin_mse
from rejax.losses.infonce import InfoNCE, infonce, infonce_from_scores
from rejax.losses.matryoshka import Matryoshka
from rejax.losses.ri_infonce import RIInfoNCE, ri_infonce
from rejax.losses.scores import retrieval_stats, similarity_scores

LOSSES: dict[str, type[ContrastiveLoss]] = {loss.kind: loss for loss in (InfoNCE, RIInfoNCE)}

__all__ = ["DISTILL_KINDS", "LOSSES", "ContrastiveLoss", "Distillation", "InfoNCE", "Matryoshka", "RIInfoNCE",
           "infonce", "infonce_from_scores", "kl_distill", "make_loss", "margin_mse", "retrieval_stats", "ri_infonce",
           "similarity_scores"]


def make_loss(settings: Mapping, **overrides) -> ContrastiveLoss | Distillation | Matryoshka:
  """The loss `settings["kind"]` names, with the settings it declares taken from `settings` (a run's `loss`
  block; the others are other losses'), then `overrides`; plus `distill_weight` x the `distill` term against the
  batch's teacher scores when that weight is > 0 (teacher temperature `distill_temperature`); at every size of
  `matryoshka_dims` when that is given (weights `matryoshka_weights`, () = 1.0 each). Raises ValueError naming the
  `loss.` key."""
  kind = settings.get("kind")
  if kind not in LOSSES:
    raise ValueError(f"loss.kind={kind!r}: expected one of {', '.join(repr(k) for k in LOSSES)}")
  loss_class = LOSSES[kind]
  fields = {field.name for field in dataclasses.fields(loss_class)}
  loss = loss_class(**{**{k: v for k, v in settings.items() if k in fields}, **overrides})
  distill = (settings.get("distill", "kl"), float(settings.get("distill_weight", 0.0) or 0.0),
             float(settings.get("distill_temperature", 1.0)))
  check_distill_settings(*distill)
  if distill[1] > 0:
    loss = Distillation(loss, *distill)
  dims = tuple(settings.get("matryoshka_dims", ()) or ())
  if not dims:
    return loss
  weights = tuple(float(w) for w in settings.get("matryoshka_weights", ()) or ()) or (1.0,) * len(dims)
  return Matryoshka(loss, dims, weights)
