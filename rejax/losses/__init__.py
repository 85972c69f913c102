"""The training losses, behind one registry: a run's `loss.kind` names a row of LOSSES, and the rest of `loss.*`
are settings, each read by the losses that declare it as a field (`make_loss`).

A loss is a frozen dataclass (rejax.losses.base.ContrastiveLoss) that takes the global batch's embeddings and
returns (loss, scalars to log); its maths are pure functions beside it (`infonce`, `ri_infonce`), which the tests
check against plain numpy. A new loss is its module and a row here (docs/extending.md#a-loss).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rejax.losses.base import ContrastiveLoss
from rejax.losses.infonce import InfoNCE, infonce, infonce_from_scores
from rejax.losses.matryoshka import Matryoshka
from rejax.losses.ri_infonce import RIInfoNCE, ri_infonce
from rejax.losses.scores import retrieval_stats, similarity_scores

LOSSES: dict[str, type[ContrastiveLoss]] = {loss.kind: loss for loss in (InfoNCE, RIInfoNCE)}

__all__ = ["LOSSES", "ContrastiveLoss", "InfoNCE", "Matryoshka", "RIInfoNCE", "infonce", "infonce_from_scores",
           "make_loss", "retrieval_stats", "ri_infonce", "similarity_scores"]


def make_loss(settings: Mapping, **overrides) -> ContrastiveLoss | Matryoshka:
  """The loss `settings["kind"]` names, with the settings it declares taken from `settings` (a run's `loss`
  block; the others are other losses'), then `overrides`; at every size of `matryoshka_dims` when that is given
  (weights `matryoshka_weights`, () = 1.0 each). Raises ValueError naming the `loss.` key."""
  kind = settings.get("kind")
  if kind not in LOSSES:
    raise ValueError(f"loss.kind={kind!r}: expected one of {', '.join(repr(k) for k in LOSSES)}")
  loss_class = LOSSES[kind]
  fields = {field.name for field in dataclasses.fields(loss_class)}
  loss = loss_class(**{**{k: v for k, v in settings.items() if k in fields}, **overrides})
  dims = tuple(settings.get("matryoshka_dims", ()) or ())
  if not dims:
    return loss
  weights = tuple(float(w) for w in settings.get("matryoshka_weights", ()) or ()) or (1.0,) * len(dims)
  return Matryoshka(loss, dims, weights)
