"""Teacher distillation (docs/method.md#distillation): a term that pulls the student's scores of each query's own
group (its positive and G-1 hard negatives, in the batch's order) towards a teacher's scores of the same passages,
added to any loss of the registry:

    L = L_contrastive + distill_weight * L_distill

`kl`, FlagEmbedding's formulation (FlagEmbedding/abc/finetune/embedder/AbsModeling.py, `distill_loss`, kind
"kl_div", with the contrastive loss added at weight 1): over the group, the teacher distribution
t_i = softmax(teacher_i / distill_temperature) and the student's softmax(s_i) with s = cos(q, p) / tau,

    L_distill = mean_i KL(t_i || softmax(s_i)) = mean_i sum_j t_ij (log t_ij - log_softmax(s_i)_j)

FlagEmbedding computes -mean_i sum_j t_ij log_softmax(s_i)_j, the same up to the teacher's entropy (a constant of
the data): the same gradient, and here 0 when the student matches the teacher. FlagEmbedding has no teacher
temperature (softmax of the raw scores: distill_temperature 1.0).

`margin_mse`, Hofstätter et al. 2020 (arXiv 2010.02666, Eq. 11; sebastian-hofstaetter/neural-ranking-kd
margin_mse_loss.py): the student's margins between the positive and each negative against the teacher's,

    L_distill = mean over the B x (G-1) pairs of ((s_i0 - s_ij) - (teacher_i0 - teacher_ij) / distill_temperature)^2

with the same student logits s = cos / tau, so distill_temperature converts the teacher's scale to the student's.

The student scores are the query's own group only, not the in-batch or cross-device passages (FlagEmbedding's
`get_local_score`); the teacher scores carry no gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rejax.losses.base import WrappedLoss

DISTILL_KINDS = ("kl", "margin_mse")


def group_scores(q_bd: jax.Array, p_nd: jax.Array, group_size: int, temperature: float) -> jax.Array:
  """cos(q_i, p_{i*G + j}) / temperature as float32 [B, G]: each query against its own group only."""
  q = q_bd.astype(jnp.float32)
  p = p_nd.astype(jnp.float32).reshape(q.shape[0], group_size, -1)
  return jnp.einsum("bd,bgd->bg", q, p, precision=jax.lax.Precision.HIGHEST) / temperature


def kl_distill(student_bg: jax.Array, teacher_bg: jax.Array, teacher_temperature: float) -> jax.Array:
  """Per-query KL(softmax(teacher / T) || softmax(student)) over the group [B]."""
  teacher_log = jax.nn.log_softmax(teacher_bg.astype(jnp.float32) / teacher_temperature, axis=-1)
  student_log = jax.nn.log_softmax(student_bg, axis=-1)
  return jnp.sum(jnp.exp(teacher_log) * (teacher_log - student_log), axis=-1)


def margin_mse(student_bg: jax.Array, teacher_bg: jax.Array, teacher_temperature: float) -> jax.Array:
  """Per-query mean over the G-1 negatives of ((s_pos - s_neg) - (t_pos - t_neg) / T)^2 [B]."""
  student_margin = student_bg[:, :1] - student_bg[:, 1:]
  teacher = teacher_bg.astype(jnp.float32) / teacher_temperature
  teacher_margin = teacher[:, :1] - teacher[:, 1:]
  return jnp.mean(jnp.square(student_margin - teacher_margin), axis=-1)


DISTILL = {"kl": kl_distill, "margin_mse": margin_mse}


@dataclasses.dataclass(frozen=True)
class Distillation(WrappedLoss):
  """`inner` (any loss of rejax.losses.LOSSES) plus `distill_weight` x the `distill` term against the batch's
  teacher scores, at teacher temperature `distill_temperature`. Reports the inner loss's scalars, `contrastive_loss`
  (the inner loss's value) and `distill_loss` (the unweighted term)."""

  distill: str = "kl"
  distill_weight: float = 1.0
  distill_temperature: float = 1.0

  uses_teacher = True

  def __post_init__(self):
    check_distill_settings(self.distill, self.distill_weight, self.distill_temperature)
    if not self.distill_weight > 0:
      raise ValueError(f"loss.distill_weight={self.distill_weight}: must be > 0 to distil (0 = off)")

  def describe(self) -> str:
    return (f"{self.inner.describe()} + {self.distill_weight:g} x {self.distill} distillation from teacher scores "
            f"(teacher temperature {self.distill_temperature:g})")

  def __call__(self, q, p, q_reason, step, teacher=None):
    if teacher is None:
      raise ValueError(f"loss.distill_weight={self.distill_weight} needs the batch's teacher scores "
                       "(`teacher_scores`, from the records' pos_scores / neg_scores)")
    group_size = self.inner.group_size_of(q, p)
    if teacher.shape != (q.shape[0], group_size):
      raise ValueError(f"teacher scores {teacher.shape} for {q.shape[0]} queries of {group_size} passages each")
    value, scalars = self.inner(q, p, q_reason, step, teacher)
    student = group_scores(q, p, group_size, self.inner.temperature_at(step))
    term = jnp.mean(DISTILL[self.distill](student, jax.lax.stop_gradient(teacher), self.distill_temperature))
    return value + self.distill_weight * term, {**scalars, "contrastive_loss": value, "distill_loss": term}


def check_distill_settings(kind, weight, temperature) -> None:
  """ValueError naming the `loss.` key of a bad distillation setting (checked whether or not the run distils)."""
  if kind not in DISTILL_KINDS:
    raise ValueError(f"loss.distill={kind!r}: expected one of {', '.join(repr(k) for k in DISTILL_KINDS)}")
  if not weight >= 0:
    raise ValueError(f"loss.distill_weight={weight}: must be >= 0 (0 = no distillation)")
  if not temperature > 0:
    raise ValueError(f"loss.distill_temperature={temperature}: must be > 0")
