"""The train step: encode queries and passages (grad) and reasoning queries (no grad), RI-InfoNCE over the
global batch, AdamW update. One pure function of (state, batch, key), jitted with shardings by the caller.

Batches are global arrays sharded over the batch axes, so the loss's [B, B*G] score matrix spans every
device: XLA gathers the passages, which makes every other device's passages negatives too.

GradCache (`grad_cache_chunk`): encode in chunks without keeping activations, take the loss gradient with
respect to the embeddings, then re-encode chunk by chunk and pull that gradient back through the encoder
(a VJP per chunk). Memory then scales with the embeddings of the global batch, not its activations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from rejax.losses import infonce, retrieval_stats, ri_infonce, similarity_scores
from rejax.models.pooling import embed, embed_packed


@dataclasses.dataclass(frozen=True)
class LossConfig:
  kind: str = "ri_infonce"  # "infonce" | "ri_infonce"
  temperature: float = 0.02
  group_size: int | None = None  # None: passages rows / query rows of each batch (domains differ)
  ri_start_step: int = 100
  ri_clamp_max: float = 5.0

  def __post_init__(self):
    if self.kind not in ("infonce", "ri_infonce"):
      raise ValueError(f"loss.kind={self.kind!r}: expected 'infonce' or 'ri_infonce'")
    if not self.temperature > 0:
      raise ValueError(f"loss.temperature={self.temperature}: must be > 0")

  def reasoning_pass(self, step):
    """Whether the step numbered `step` (an int, or the traced step count) encodes the reasoning queries."""
    return False if self.kind != "ri_infonce" else step >= self.ri_start_step


class TrainState(struct.PyTreeNode):
  """Everything a step changes or reads: step count, trained and frozen parameters, optimizer state."""

  step: jax.Array
  trainable: nnx.State
  frozen: nnx.State
  opt_state: Any


def init_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                     wrt=nnx.Param) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) for `model`, training the variables `wrt` selects (nnx.LoRAParam for LoRA).

  Optimizer state exists only for the trained variables and is sharded as they are (opt_state_shardings).
  """
  graphdef, trainable, frozen = nnx.split(model, wrt, ...)
  shardings = opt_state_shardings(tx, trainable)
  return graphdef, TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), _replicated_like(trainable)),
                              trainable=trainable, frozen=frozen,
                              opt_state=jax.jit(tx.init, out_shardings=shardings)(trainable))


def opt_state_shardings(tx: optax.GradientTransformation, trainable: nnx.State):
  """Shardings of `tx`'s state for `trainable` (arrays or ShapeDtypeStructs with shardings): every
  parameter-shaped entry (Adam's moments: their key path ends with the parameter's) sharded as its parameter,
  everything else (counts) replicated. Found from `jax.eval_shape` alone, so nothing runs on the devices
  (which for `rejax plan` exist only as a compile target)."""
  params = {path: (leaf.shape, leaf.sharding) for path, leaf in jax.tree_util.tree_leaves_with_path(trainable)}
  replicated = _replicated_like(trainable)

  def sharding_of(path, leaf):
    for start in range(len(path)):
      shape, sharding = params.get(path[start:], (None, None))
      if sharding is not None and shape == leaf.shape:
        return sharding
    return replicated

  return jax.tree_util.tree_map_with_path(sharding_of, jax.eval_shape(tx.init, trainable))


def _replicated_like(tree) -> jax.sharding.Sharding:
  """Replicated over the devices of the first leaf's sharding."""
  sharding = jax.tree.leaves(tree)[0].sharding
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  return sharding


def jit_train_step(step: Callable, state: TrainState, batch_sharding=None) -> Callable:
  """`step` compiled with the state's own shardings in and out (donated) and batches sharded over the batch axes:
  as `batch_sharding` says, or (None) as the batch's arrays are placed (padded and packed batches alike)."""
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, None),
                 out_shardings=(state_shardings, None), donate_argnums=0)


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


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss_cfg: LossConfig, *,
                    grad_cache_chunk: int | None = None, lr_schedule: optax.Schedule | None = None) -> Callable:
  """step(state, batch, key) -> (state, metrics). Batch: per input (query [B], passage [B*G], reason [B] for RI)
  padded rows `*_ids/_mask` [rows, length], or packed rows (see `batch_rows`); the two give the same step."""

  def encode(trainable, frozen, rows, key):
    """Slot embeddings [R, S, D] of `rows` (S = 1 for padded rows)."""
    # copy=True: fresh Variables at the current trace level (encode runs inside lax.map / scan bodies)
    model = nnx.merge(graphdef, trainable, frozen, copy=True)
    if "segments" in rows:
      return embed_packed(model, rows["ids"], rows["segments"], rows["last"], key)
    return embed(model, rows["ids"], rows["mask"], key)[:, None]

  def chunk_count(rows, chunk: int) -> int:
    """GradCache's chunks of an input: its rows (sequences, or packed rows) / `chunk` rows per chunk."""
    r = rows["ids"].shape[0]
    if r % chunk:
      raise ValueError(f"grad_cache_chunk={chunk} must divide the {r} rows it chunks")
    return max(r // chunk, 1)

  def encode_chunked(trainable, frozen, rows, key, num: int):
    """Slot embeddings of a big batch, chunk by chunk (a scan), each chunk with its own dropout key."""
    keys = jax.random.split(key, num)
    out = jax.lax.map(lambda a: encode(trainable, frozen, *a), (_chunk_rows(rows, num), keys))
    return _unchunk(out)

  def loss_from_embeddings(q, p, q_reason, use_ri):
    group_size = loss_cfg.group_size or p.shape[0] // q.shape[0]
    if p.shape[0] != q.shape[0] * group_size:
      raise ValueError(f"{p.shape[0]} passages for {q.shape[0]} queries: not {group_size} per query")
    if loss_cfg.kind == "infonce":
      per_query = infonce(q, p, group_size=group_size, temperature=loss_cfg.temperature)
      stats = retrieval_stats(similarity_scores(q, p, loss_cfg.temperature), group_size, loss_cfg.temperature)
      return jnp.mean(per_query), {"per_query": per_query, **stats}
    return ri_infonce(q, p, q_reason, group_size=group_size, temperature=loss_cfg.temperature,
                      clamp_max=loss_cfg.ri_clamp_max, use_ri=use_ri)

  def step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    q_key, p_key, r_key = jax.random.split(key, 3)
    use_ri = loss_cfg.reasoning_pass(state.step)
    (q_rows, q_index), (p_rows, p_index) = batch_rows(batch, "query"), batch_rows(batch, "passage")

    q_reason = None
    if loss_cfg.kind == "ri_infonce":
      # The current model (train mode, as the reference) encodes q' without gradient; skipped before RI starts.
      r_rows, r_index = batch_rows(batch, "reason")

      def reason_pass():
        slots = jax.lax.stop_gradient(encode(state.trainable, state.frozen, r_rows, r_key))
        return sequence_embeddings(slots, r_index)
      out = jax.eval_shape(reason_pass)
      q_reason = jax.lax.cond(use_ri, reason_pass, lambda: jnp.zeros(out.shape, out.dtype))

    def loss_from_slots(q_slots, p_slots):
      q, p = sequence_embeddings(q_slots, q_index), sequence_embeddings(p_slots, p_index)
      return loss_from_embeddings(q, p, q_reason, use_ri)

    if grad_cache_chunk is None:
      def loss_fn(trainable):
        return loss_from_slots(encode(trainable, state.frozen, q_rows, q_key),
                               encode(trainable, state.frozen, p_rows, p_key))

      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    else:
      grads, loss, aux = _grad_cache(state, (q_rows, q_index, q_key), (p_rows, p_index, p_key), loss_from_slots)

    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **_summarise(aux, loss_cfg)}
    if lr_schedule is not None:
      metrics["lr"] = lr_schedule(state.step)
    return state.replace(step=state.step + 1, trainable=trainable, opt_state=opt_state), metrics

  def _grad_cache(state, queries, passages, loss_from_slots):
    frozen = state.frozen
    nums = [chunk_count(rows, grad_cache_chunk) for rows, _, _ in (queries, passages)]
    # 1. slot embeddings of the whole batch, no activations kept
    q, p = (jax.lax.stop_gradient(encode_chunked(state.trainable, frozen, rows, key, num))
            for (rows, _, key), num in zip((queries, passages), nums))
    # 2. the loss and its gradient with respect to the embeddings
    (loss, aux), (dq, dp) = jax.value_and_grad(loss_from_slots, argnums=(0, 1), has_aux=True)(q, p)

    # 3. re-encode chunk by chunk (same dropout keys) and pull the embedding gradients back to the weights
    def backprop(rows, key, cotangent, num):
      def one_chunk(acc, xs):
        c_rows, c_key, c_cot = xs
        _, vjp = jax.vjp(lambda t: encode(t, frozen, c_rows, c_key), state.trainable)
        return jax.tree.map(jnp.add, acc, vjp(c_cot)[0]), None

      zeros = jax.tree.map(jnp.zeros_like, state.trainable)
      xs = (_chunk_rows(rows, num), jax.random.split(key, num), _chunks(cotangent, num))
      return jax.lax.scan(one_chunk, zeros, xs)[0]

    grads = jax.tree.map(jnp.add, backprop(queries[0], queries[2], dq, nums[0]),
                         backprop(passages[0], passages[2], dp, nums[1]))
    return grads, loss, aux

  return step


def _chunk_rows(rows: dict[str, jax.Array], num_chunks: int) -> dict[str, jax.Array]:
  return {name: _chunks(x, num_chunks) for name, x in rows.items()}


def _summarise(aux: dict, loss_cfg: LossConfig) -> dict[str, jax.Array]:
  """Scalars to log: retrieval statistics and, for RI, the weights' spread and the clamped fraction."""
  metrics = {k: aux[k] for k in ("accuracy", "pos_sim", "hardest_neg_sim")}
  if loss_cfg.kind == "ri_infonce":
    w = aux["weights"] * aux["weights"].shape[0]  # 1.0 = the plain mean's weight
    metrics.update(ri_weight_mean=jnp.mean(w), ri_weight_min=jnp.min(w), ri_weight_max=jnp.max(w),
                   ri_clamped_fraction=aux["clamped_fraction"])
  return metrics
