"""The Qwen3 / Llama-3.x decoder, its config, and how to build one (randomly initialised or sharded)."""

from __future__ import annotations

import functools

import jax
from flax import nnx
from jax.sharding import Mesh

from rejax.models.config import SUPPORTED_MODEL_TYPES, DecoderConfig, config_from_hf_dict, load_config
from rejax.models.decoder import Decoder
from rejax.sharding import param_shardings

__all__ = ["Decoder", "DecoderConfig", "SUPPORTED_MODEL_TYPES", "abstract_decoder", "config_from_hf_dict",
           "init_decoder", "load_config"]


def abstract_decoder(cfg: DecoderConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, abstract state) of a decoder: shapes, dtypes and logical axes, no memory."""
  with nnx.use_eager_sharding(False):
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))


def init_decoder(cfg: DecoderConfig, *, seed: int = 0, mesh: Mesh | None = None) -> Decoder:
  """A randomly initialised decoder; with `mesh`, every parameter is created directly in its sharding."""
  with nnx.use_eager_sharding(False):
    if mesh is None:
      return Decoder(cfg, rngs=nnx.Rngs(seed))
    graphdef, abstract_state = abstract_decoder(cfg)

    @functools.partial(jax.jit, out_shardings=param_shardings(abstract_state, mesh))
    def init() -> nnx.State:
      return nnx.state(Decoder(cfg, rngs=nnx.Rngs(seed)))

    return nnx.merge(graphdef, init())
