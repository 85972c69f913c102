"""One NNX decoder for every family of rejax/models/families.py (Qwen3, Llama-3.x, Qwen2, Mistral), used as a
text encoder (no LM head): causal or bidirectional attention, as its config says.

Parameter names follow the Hugging Face modules (`embed_tokens`, `layers.self_attn.q_proj`, `mlp.gate_proj`,
`input_layernorm`, `norm`), so loading is transposes only. The layers are stacked on a leading axis and run
with `nnx.scan`: compile time does not grow with depth. Every parameter carries logical axis names
(`embed`, `heads`, `mlp`, ...) that `rejax.sharding`'s one rule table maps onto the mesh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from rejax.models.config import DecoderConfig
from rejax.models.lora import LoRALinear
from rejax.models.rope import apply_rope, inverse_frequencies, rope_tables
from rejax.sharding import constrain

# Activation layouts, named by shape letters: b=batch, t=length, d=hidden, n=heads, h=head_dim.
ACT_BTD = ("batch", "length", "act_embed")
ACT_BTNH = ("batch", "length", "act_heads", None)
# The embedding lookup's output as the table leaves it (hidden axis split like the table's, over fsdp), rows over
# the data axis only. Going from the table's layout to ACT_BTD through this one is two cheap steps (an all-to-all
# within fsdp, then a gather over data) in both directions; in one constraint, the backward pass's cotangent could
# only be gathered whole and re-split ("Involuntary full rematerialization" on a data x fsdp mesh).
ACT_LOOKUP = ("lookup_batch", "length", "embed")

_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # every projection's output
    # the MLP's input projections' outputs (two [B, T, intermediate] per layer: the bulk of a layer's matmuls)
    "mlp": jax.checkpoint_policies.save_only_these_names("mlp_gate", "mlp_up"),
    "mlp_up": jax.checkpoint_policies.save_only_these_names("mlp_up"),  # half that memory, half the saving
}


def _linear(cfg: DecoderConfig, name: str, d_in: int, d_out: int, axes: tuple[str, str], bias: bool,
            rngs) -> nnx.Linear:
  """The projection `name`: a plain nnx.Linear, or a LoRALinear when the LoRA config targets it."""
  kwargs = dict(
      use_bias=bias,
      dtype=cfg.dtype,
      param_dtype=cfg.base_param_dtype,
      kernel_init=nnx.with_partitioning(nnx.initializers.normal(0.02), axes),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), axes[1:]),
      rngs=rngs,
  )
  if cfg.lora is not None and cfg.lora.applies_to(name):
    return LoRALinear(d_in, d_out, lora=cfg.lora, axes=axes, adapter_dtype=cfg.param_dtype, **kwargs)
  return nnx.Linear(d_in, d_out, **kwargs)


def _project(linear: nnx.Linear, x: jax.Array, dropout_key: jax.Array | None, index: int) -> jax.Array:
  """linear(x), with its own dropout key (folded from the layer's key) when it carries a LoRA adapter."""
  if isinstance(linear, LoRALinear) and dropout_key is not None:
    return linear(x, jax.random.fold_in(dropout_key, index))
  return linear(x)


class RMSNorm(nnx.Module):
  """RMSNorm as transformers computes it: normalise in float32, cast back, then scale."""

  def __init__(self, dim: int, eps: float, cfg: DecoderConfig):
    self.weight = nnx.Param(jnp.ones((dim,), cfg.base_param_dtype), out_sharding=("norm",))
    self.eps = eps
    self.dtype = cfg.dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return self.weight[...].astype(self.dtype) * x32.astype(self.dtype)


class Attention(nnx.Module):
  """Grouped-query self-attention (causal, or bidirectional with cfg.causal=False) with RoPE and, for Qwen3,
  per-head RMSNorm on q and k."""

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
    n, k, h, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    self.q_proj = _linear(cfg, "q_proj", d, n * h, ("embed", "heads"), cfg.qkv_bias, rngs)
    self.k_proj = _linear(cfg, "k_proj", d, k * h, ("embed", "kv_heads"), cfg.qkv_bias, rngs)
    self.v_proj = _linear(cfg, "v_proj", d, k * h, ("embed", "kv_heads"), cfg.qkv_bias, rngs)
    self.o_proj = _linear(cfg, "o_proj", n * h, d, ("heads", "embed"), cfg.o_bias, rngs)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(h, cfg.rms_norm_eps, cfg)
      self.k_norm = RMSNorm(h, cfg.rms_norm_eps, cfg)
    self.cfg = cfg

  def __call__(self, x_btd, cos_bth, sin_bth, mask_bt, dropout_key=None, packed: bool = False) -> jax.Array:
    cfg = self.cfg
    b, t, _ = x_btd.shape
    q = _project(self.q_proj, x_btd, dropout_key, 0).reshape(b, t, cfg.num_attention_heads, cfg.head_dim)
    k = _project(self.k_proj, x_btd, dropout_key, 1).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim)
    v = _project(self.v_proj, x_btd, dropout_key, 2).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim)
    if cfg.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(apply_rope(q, cos_bth, sin_bth), ACT_BTNH)
    k = constrain(apply_rope(k, cos_bth, sin_bth), ACT_BTNH)
    attend = _packed_attention if packed else _padded_attention
    out = attend(q, k, v, mask_bt, cfg.attention_impl, cfg.causal)
    return _project(self.o_proj, out.reshape(b, t, cfg.num_attention_heads * cfg.head_dim), dropout_key, 3)


def _padded_attention(q, k, v, mask_bt, impl: str | None, causal: bool) -> jax.Array:
  """Attention over the real tokens of each row (causal: the earlier ones only): any padding layout for XLA,
  right padding for cuDNN and splash (TPU)."""
  if impl in ("splash", "splash_interpret"):
    from rejax.models.splash import splash_attention  # Pallas TPU: imported only when asked for

    # Causal: the causal mask alone keeps a real query off the (right) padding. Bidirectional: the padding is
    # segment 0, the real tokens segment 1.
    segments_bt = None if causal else mask_bt
    return splash_attention(q, k, v, segments_bt, causal=causal, interpret=impl == "splash_interpret")
  if impl == "cudnn":
    # cuDNN's fused kernel takes padding as lengths, which assumes right padding (our batches are).
    lengths = jnp.sum(mask_bt, axis=-1, dtype=jnp.int32)
    return jax.nn.dot_product_attention(
        q, k, v, is_causal=causal, query_seq_lengths=lengths, key_value_seq_lengths=lengths, implementation="cudnn"
    )
  key_is_real = mask_bt.astype(bool)[:, None, None, :]  # [B, 1, 1, S] broadcast over heads and queries
  return jax.nn.dot_product_attention(q, k, v, mask=key_is_real, is_causal=causal, implementation=impl)


def _packed_attention(q, k, v, segments_bt, impl: str | None, causal: bool) -> jax.Array:
  """Attention within segments: a token attends to the tokens (causal: the earlier tokens) of its own segment
  only (padding, segment 0, to padding). Splash takes the segment ids natively; XLA and cuDNN get the [B, 1, T, T]
  mask (cuDNN turns a mask into a bias: one extra [B, 1, T, T] read per layer)."""
  if impl in ("splash", "splash_interpret"):
    from rejax.models.splash import splash_attention  # Pallas TPU: imported only when asked for

    return splash_attention(q, k, v, segments_bt, causal=causal, interpret=impl == "splash_interpret")
  same_segment = segments_bt[:, None, :, None] == segments_bt[:, None, None, :]  # [B, 1, T(query), S(key)]
  return jax.nn.dot_product_attention(q, k, v, mask=same_segment, is_causal=causal, implementation=impl)


def segment_positions(segments_bt: jax.Array) -> jax.Array:
  """Position of each token within its segment (a run of equal segment ids): 0 at every segment's first token."""
  t = jnp.arange(segments_bt.shape[-1], dtype=jnp.int32)
  starts = jnp.concatenate([jnp.ones_like(segments_bt[:, :1], bool), segments_bt[:, 1:] != segments_bt[:, :-1]], -1)
  return t - jax.lax.cummax(jnp.where(starts, t, 0), axis=segments_bt.ndim - 1)


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
    d, f, bias = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
    self.gate_proj = _linear(cfg, "gate_proj", d, f, ("embed", "mlp"), bias, rngs)
    self.up_proj = _linear(cfg, "up_proj", d, f, ("embed", "mlp"), bias, rngs)
    self.down_proj = _linear(cfg, "down_proj", f, d, ("mlp", "embed"), bias, rngs)

  def __call__(self, x_btd: jax.Array, dropout_key=None) -> jax.Array:
    gate = checkpoint_name(_project(self.gate_proj, x_btd, dropout_key, 4), "mlp_gate")  # remat "mlp" saves it
    up = checkpoint_name(_project(self.up_proj, x_btd, dropout_key, 5), "mlp_up")  # remat "mlp" and "mlp_up"
    return _project(self.down_proj, jax.nn.silu(gate) * up, dropout_key, 6)


class DecoderLayer(nnx.Module):
  """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)
    self.self_attn = Attention(cfg, rngs=rngs)
    self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, x_btd, cos_bth, sin_bth, mask_bt, dropout_key=None, packed: bool = False) -> jax.Array:
    x_btd = x_btd + self.self_attn(self.input_layernorm(x_btd), cos_bth, sin_bth, mask_bt, dropout_key, packed)
    x_btd = x_btd + self.mlp(self.post_attention_layernorm(x_btd), dropout_key)
    return constrain(x_btd, ACT_BTD)


class Decoder(nnx.Module):
  """Token ids [B, T] + attention mask [B, T] -> final hidden states [B, T, D] (after the last norm).

  Packed rows (`packed=True`): the mask holds segment ids instead, 0 for padding and 1, 2, ... for the sequences
  packed one after another into the row; every sequence is then encoded exactly as if it were alone in its row
  (attention within its segment, positions from 0).
  """

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = nnx.Embed(
        cfg.vocab_size,
        cfg.hidden_size,
        dtype=cfg.dtype,
        param_dtype=cfg.base_param_dtype,
        embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed")),
        rngs=rngs,
    )

    @nnx.split_rngs(splits=cfg.num_hidden_layers)
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_layers(rngs: nnx.Rngs) -> DecoderLayer:
      return DecoderLayer(cfg, rngs=rngs)

    self.layers = make_layers(rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg)

  def __call__(self, input_ids_bt: jax.Array, attention_mask_bt: jax.Array,
               dropout_key: jax.Array | None = None, *, packed: bool = False) -> jax.Array:
    """Final hidden states; `dropout_key` turns on LoRA dropout (training), one key per layer split from it.

    Rows longer than a sliding-window model's window raise ValueError (at trace time): rejax attends over whole
    sequences, which is the window's attention only up to its length.
    """
    cfg = self.cfg
    if cfg.sliding_window is not None and input_ids_bt.shape[-1] > cfg.sliding_window:
      raise ValueError(f"rows of {input_ids_bt.shape[-1]} tokens exceed the model's sliding_window="
                       f"{cfg.sliding_window}: rejax attends over whole sequences only")
    if packed:
      positions_bt = segment_positions(attention_mask_bt)
    else:
      # Positions count real tokens only, so a left-padded row is encoded exactly like its right-padded twin.
      positions_bt = jnp.maximum(jnp.cumsum(attention_mask_bt, axis=-1) - 1, 0)
    inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
    cos_bth, sin_bth = rope_tables(positions_bt, inv_freq)
    x_btd = constrain(constrain(self.embed_tokens(input_ids_bt), ACT_LOOKUP), ACT_BTD)

    use_dropout = dropout_key is not None
    layer_keys = jax.random.split(dropout_key if use_dropout else jax.random.key(0), cfg.num_hidden_layers)

    def layer_step(layer: DecoderLayer, x_btd, key):
      return layer(x_btd, cos_bth, sin_bth, attention_mask_bt, key if use_dropout else None, packed)

    if cfg.remat != "none":
      layer_step = nnx.remat(layer_step, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=False)
    run_layers = nnx.scan(layer_step, in_axes=(0, nnx.Carry, 0), out_axes=nnx.Carry, unroll=cfg.scan_unroll,
                          transform_metadata={nnx.PARTITION_NAME: "layers"})
    x_btd = run_layers(self.layers, x_btd, layer_keys)
    return self.norm(x_btd)
