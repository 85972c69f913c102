"""Attention with the TPU Pallas splash kernel (`model.attention_impl = "splash"`): attention scores are
computed block by block in VMEM and never written to HBM, forward and backward.

Causal, unpacked batches give the kernel the causal mask alone: they are right-padded, so under a causal mask a
real token only ever attends to real tokens; padded positions attend to padding too, but nothing reads them
(pooling takes the real tokens) and no gradient flows into them. Packed rows, and bidirectional attention (the
kernel's full mask) on unpacked rows, also give it segment ids (the padding mask serves as one), which the kernel
applies block by block (a query sees its own segment only). Either way the result at every real position is XLA's
masked attention.

The kernel is one custom call per example and head, which XLA cannot partition: inside a mesh it runs under
`shard_map`, batch rows and heads split as the activations' logical axes say. `interpret=True` runs the same
kernel on CPU (the parity tests).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

from rejax.sharding import logical_to_spec

LANES = 128  # the kernel's blocks are multiples of this; shorter sequences are padded up to it


def splash_attention(q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array, segments_bt: jax.Array | None = None,
                     *, causal: bool = True, interpret: bool = False) -> jax.Array:
  """softmax(q k^T / sqrt(h) + mask) v for [B, T, N, H] queries and [B, T, K, H] keys/values (K divides N), the
  mask causal or (causal=False) full; with `segments_bt` a query sees only the keys of its own segment."""
  n, h = q_btnh.shape[2], q_btnh.shape[3]
  groups = n // k_btkh.shape[2]
  q = jnp.swapaxes(q_btnh * (h ** -0.5), 1, 2)  # [B, N, T, H]: the kernel's layout, scaled as XLA's
  k = jnp.swapaxes(jnp.repeat(k_btkh, groups, axis=2), 1, 2)
  v = jnp.swapaxes(jnp.repeat(v_btkh, groups, axis=2), 1, 2)
  if segments_bt is None:
    segments_bt = jnp.ones(q_btnh.shape[:2], jnp.int32)  # one segment: the causal mask alone
  mesh = jax.sharding.get_abstract_mesh()
  run = functools.partial(_attend, causal=causal, interpret=interpret)
  if not mesh.empty:
    spec = logical_to_spec(("batch", "act_heads", None, None))
    rows = logical_to_spec(("batch", None))
    run = jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, rows), out_specs=spec, check_vma=False)
  return jnp.swapaxes(run(q, k, v, segments_bt.astype(jnp.int32)), 1, 2)


def _attend(q_bnth, k_bnth, v_bnth, segments_bt, *, causal: bool, interpret: bool) -> jax.Array:
  heads, length = q_bnth.shape[1], q_bnth.shape[2]
  # Keys appended at the end are never seen by a real query: they come after it (causal), or are segment 0.
  padded = -(-length // LANES) * LANES
  if padded != length:
    pad = ((0, 0), (0, 0), (0, padded - length), (0, 0))
    q_bnth, k_bnth, v_bnth = (jnp.pad(x, pad) for x in (q_bnth, k_bnth, v_bnth))
    segments_bt = jnp.pad(segments_bt, ((0, 0), (0, padded - length)))
  block = next(size for size in (512, 256, LANES) if padded % size == 0)
  sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                            block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
  shape = (padded, padded)
  mask = splash_mask.MultiHeadMask([splash_mask.CausalMask(shape) if causal else splash_mask.FullMask(shape)
                                    for _ in range(heads)])
  kernel = splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
  segment_ids = splash.SegmentIds(q=segments_bt, kv=segments_bt)
  return jax.vmap(kernel)(q_bnth, k_bnth, v_bnth, segment_ids=segment_ids)[:, :, :length]
