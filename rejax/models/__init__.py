"""The decoder of the backbone families (Qwen3, Llama-3.x, Qwen2, Mistral), its config, and how to build one
(randomly initialised or sharded)."""

from __future__ import annotations

import functools

import jax
from flax import nnx
from jax.sharding import Mesh

from rejax.models.config import DecoderConfig, as_dtype, config_from_hf_dict, load_config, window_problem
from rejax.models.decoder import Decoder
from rejax.models.families import FAMILIES, SUPPORTED_MODEL_TYPES, Family, family_of
from rejax.models.lora import LoRAConfig, merged_state
from rejax.sharding import param_shardings

__all__ = ["FAMILIES", "SUPPORTED_MODEL_TYPES", "Decoder", "DecoderConfig", "Family", "LoRAConfig", "as_dtype",
           "abstract_decoder", "config_from_hf_dict", "family_of", "init_decoder", "init_state", "load_config",
           "merge_lora", "window_problem"]


def abstract_decoder(cfg: DecoderConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, abstract state) of a decoder: shapes, dtypes and logical axes, no memory."""
  with nnx.use_eager_sharding(False):
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))


def init_state(cfg: DecoderConfig, *, seed: int = 0, mesh: Mesh | None = None, wrt=nnx.Param) -> nnx.State:
  """Freshly initialised variables matching `wrt` (e.g. nnx.LoRAParam), each created in its sharding.

  Only what `wrt` selects is computed: XLA drops the initialisers of everything else.
  """
  with nnx.use_eager_sharding(False):
    _, abstract_state = abstract_decoder(cfg)
    wanted = nnx.filter_state(abstract_state, wrt)
    shardings = param_shardings(wanted, mesh) if mesh is not None else None

    @functools.partial(jax.jit, out_shardings=shardings)
    def init() -> nnx.State:
      return nnx.state(Decoder(cfg, rngs=nnx.Rngs(seed)), wrt)

    return init()


def init_decoder(cfg: DecoderConfig, *, seed: int = 0, mesh: Mesh | None = None) -> Decoder:
  """A randomly initialised decoder; with `mesh`, every parameter is created directly in its sharding."""
  graphdef, _ = abstract_decoder(cfg)
  return nnx.merge(graphdef, init_state(cfg, seed=seed, mesh=mesh, wrt=...))


def merge_lora(model: Decoder) -> Decoder:
  """The same function as `model` without adapters: each LoRA update folded into its kernel (for export)."""
  if model.cfg.lora is None:
    return model
  graphdef, _ = abstract_decoder(model.cfg.replace(lora=None))
  return nnx.merge(graphdef, merged_state(model))
