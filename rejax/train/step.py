"""The train step: encode queries and passages (grad) and, for a loss that uses them, the reasoning queries
(no grad), the loss (rejax.losses) over the global batch (with the teacher's scores of each group when the batch has
them: an input, never differentiated), the optax update. One pure function of
(state, batch, key), jitted with shardings by the caller (rejax.train.state.jit_train_step).

Batches are global arrays sharded over the batch axes, so the loss's [B, B*G] score matrix spans every
device: XLA gathers the passages, which makes every other device's passages negatives too.

GradCache (`grad_cache_chunk`): encode in chunks without keeping activations, take the loss gradient with
respect to the embeddings, then re-encode chunk by chunk and pull that gradient back through the encoder
(a VJP per chunk). Memory then scales with the embeddings of the global batch, not its activations.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rejax.losses import ContrastiveLoss
from rejax.models.pooling import embed, embed_packed
from rejax.sharding import constrain
from rejax.train.state import TrainState


def _chunks(x: jax.Array, num_chunks: int) -> jax.Array:
  """[N, ...] -> [num_chunks, N / num_chunks, ...], chunk k = rows k, k + num_chunks, ... (strided).

  Strided rather than contiguous: with N sharded over devices, every chunk keeps rows on every device.
  """
  n = x.shape[0]
  return x.reshape(n // num_chunks, num_chunks, *x.shape[1:]).swapaxes(0, 1)


def _unchunk(x: jax.Array) -> jax.Array:
  return x.swapaxes(0, 1).reshape(-1, *x.shape[2:])


def batch_rows(batch: dict[str, jax.Array], name: str) -> tuple[dict[str, jax.Array], jax.Array | None]:
  """(the encoder's inputs, the sequence index) of input `name` ("query", "passage", "reason"): padded rows
  `{name}_ids/_mask` (index None: row i is sequence i) or packed rows `{name}_ids/_segments/_last` with
  `{name}_index`, the slot of each sequence (rejax.data.packing)."""
  if f"{name}_segments" in batch:
    return {part: batch[f"{name}_{part}"] for part in ("ids", "segments", "last")}, batch[f"{name}_index"]
  return {part: batch[f"{name}_{part}"] for part in ("ids", "mask")}, None


def sequence_embeddings(slots_rsd: jax.Array, index: jax.Array | None) -> jax.Array:
  """[N, D] embeddings in the batch's sequence order from the [R, S, D] slot embeddings of its rows."""
  flat = slots_rsd.reshape(-1, slots_rsd.shape[-1])
  return flat if index is None else jnp.take(flat, index, axis=0)


def encode(graphdef: nnx.GraphDef, trainable: nnx.State, frozen: nnx.State, rows: dict[str, jax.Array],
           key: jax.Array) -> jax.Array:
  """Slot embeddings [R, S, D] of `rows` (padded rows: S = 1) by the model of (graphdef, trainable, frozen)."""
  # copy=True: fresh Variables at the current trace level (encode runs inside lax.map / scan bodies)
  model = nnx.merge(graphdef, trainable, frozen, copy=True)
  if "segments" in rows:
    return embed_packed(model, rows["ids"], rows["segments"], rows["last"], key)
  return embed(model, rows["ids"], rows["mask"], key)[:, None]


def chunk_count(rows: dict[str, jax.Array], chunk: int) -> int:
  """GradCache's chunks of an input: its rows (sequences, or packed rows) / `chunk` rows per chunk."""
  r = rows["ids"].shape[0]
  if r % chunk:
    raise ValueError(f"grad_cache_chunk={chunk} must divide the {r} rows it chunks")
  return max(r // chunk, 1)


def encode_chunked(graphdef, trainable, frozen, rows: dict[str, jax.Array], key: jax.Array, num: int) -> jax.Array:
  """Slot embeddings of a big batch, chunk by chunk (a scan), each chunk with its own dropout key."""
  keys = jax.random.split(key, num)
  out = jax.lax.map(lambda a: encode(graphdef, trainable, frozen, *a), (_chunk_rows(rows, num), keys))
  return _unchunk(out)


# [N, D] sequence embeddings: rows over the batch shards, as the encoder's activations
EMBEDDINGS = ("batch", "act_embed")


@dataclasses.dataclass(frozen=True)
class Input:
  """One encoded input of a batch: its rows (`batch_rows`), the sequence index, and its dropout key."""

  rows: dict[str, jax.Array]
  index: jax.Array | None
  key: jax.Array

  @classmethod
  def of(cls, batch: dict[str, jax.Array], name: str, key: jax.Array) -> Input:
    return cls(*batch_rows(batch, name), key)


def reasoning_embeddings(graphdef, state: TrainState, reason: Input, when: bool | jax.Array) -> jax.Array:
  """q' [B, D]: the current model (train mode, as the reference) encodes the reasoning queries without gradient,
  only when `when` (traced: a lax.cond, zeros otherwise, so steps before RI starts skip the pass)."""
  def reason_pass():
    slots = jax.lax.stop_gradient(encode(graphdef, state.trainable, state.frozen, reason.rows, reason.key))
    return sequence_embeddings(slots, reason.index)
  out = jax.eval_shape(reason_pass)
  return jax.lax.cond(when, reason_pass, lambda: jnp.zeros(out.shape, out.dtype))


def grad_cache(graphdef, state: TrainState, queries: Input, passages: Input, loss_from_slots: Callable,
               chunk: int):
  """(gradients, (loss, scalars)) of `loss_from_slots(q_slots, p_slots)` with GradCache: embeddings of the whole
  batch without activations, the loss's gradient with respect to them, then chunk by chunk re-encoding (same
  dropout keys) and pulling that gradient back to the weights (one VJP per chunk)."""
  frozen, inputs = state.frozen, (queries, passages)
  nums = [chunk_count(x.rows, chunk) for x in inputs]
  # 1. slot embeddings of the whole batch, no activations kept
  q, p = (jax.lax.stop_gradient(encode_chunked(graphdef, state.trainable, frozen, x.rows, x.key, num))
          for x, num in zip(inputs, nums))
  # 2. the loss and its gradient with respect to the embeddings
  out, (dq, dp) = jax.value_and_grad(loss_from_slots, argnums=(0, 1), has_aux=True)(q, p)

  # 3. re-encode chunk by chunk and pull the embedding gradients back to the weights
  def backprop(x: Input, cotangent, num):
    def one_chunk(acc, xs):
      c_rows, c_key, c_cot = xs
      _, vjp = jax.vjp(lambda t: encode(graphdef, t, frozen, c_rows, c_key), state.trainable)
      return jax.tree.map(jnp.add, acc, vjp(c_cot)[0]), None

    zeros = jax.tree.map(jnp.zeros_like, state.trainable)
    xs = (_chunk_rows(x.rows, num), jax.random.split(x.key, num), _chunks(cotangent, num))
    return jax.lax.scan(one_chunk, zeros, xs)[0]

  grads = jax.tree.map(jnp.add, backprop(queries, dq, nums[0]), backprop(passages, dp, nums[1]))
  return grads, out


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss: ContrastiveLoss, *,
                    grad_cache_chunk: int | None = None, lr_schedule: optax.Schedule | None = None) -> Callable:
  """step(state, batch, key) -> (state, metrics). Batch: per input (query [B], passage [B*G], reason [B] for a loss
  that uses the reasoning queries) padded rows `*_ids/_mask` [rows, length], or packed rows (see `batch_rows`); the
  two give the same step; `teacher_scores` [B, G] float32 for a loss that distils. Metrics: loss, grad_norm, lr,
  and the scalars `loss` reports."""

  def step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
    q_key, p_key, r_key = jax.random.split(jax.random.fold_in(key, state.step), 3)
    queries, passages = Input.of(batch, "query", q_key), Input.of(batch, "passage", p_key)
    q_reason = (reasoning_embeddings(graphdef, state, Input.of(batch, "reason", r_key),
                                     loss.reasoning_pass(state.step)) if loss.uses_reasoning else None)
    teacher = batch.get("teacher_scores")  # [B, G] float32, in the passages' order (rejax.data.pipeline)

    def loss_from_slots(q_slots, p_slots):
      q, p = (constrain(sequence_embeddings(slots, x.index), EMBEDDINGS)
              for slots, x in ((q_slots, queries), (p_slots, passages)))
      return loss(q, p, q_reason, state.step, teacher)

    if grad_cache_chunk is None:
      def loss_of(trainable):
        return loss_from_slots(encode(graphdef, trainable, state.frozen, queries.rows, queries.key),
                               encode(graphdef, trainable, state.frozen, passages.rows, passages.key))

      (value, scalars), grads = jax.value_and_grad(loss_of, has_aux=True)(state.trainable)
    else:
      grads, (value, scalars) = grad_cache(graphdef, state, queries, passages, loss_from_slots, grad_cache_chunk)

    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {"loss": value, "grad_norm": optax.global_norm(grads), **scalars}
    if lr_schedule is not None:
      metrics["lr"] = lr_schedule(state.step)
    return state.replace(step=state.step + 1, trainable=trainable, opt_state=opt_state), metrics

  return step


def _chunk_rows(rows: dict[str, jax.Array], num_chunks: int) -> dict[str, jax.Array]:
  return {name: _chunks(x, num_chunks) for name, x in rows.items()}
