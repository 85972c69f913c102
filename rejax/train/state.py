"""The train state (step count, trained and frozen variables, optimizer state): created already sharded from a
model, or abstract (shapes and shardings only, for `rejax plan`); and the step jitted with its shardings."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rejax.models import DecoderConfig, abstract_decoder
from rejax.sharding import param_shardings


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


def abstract_train_state(model_cfg: DecoderConfig, tx: optax.GradientTransformation, mesh: Mesh,
                         wrt) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, state) with the shapes, dtypes and shardings `init_train_state` gives a real model on `mesh`,
  and no memory: every leaf a ShapeDtypeStruct."""
  graphdef, state = abstract_decoder(model_cfg)
  shardings = param_shardings(state, mesh)

  def with_sharding(path, var):
    return var.replace(jax.ShapeDtypeStruct(var.shape, var.dtype, sharding=sharding_of[path]))

  sharding_of = dict(nnx.to_flat_state(shardings))
  state = nnx.map_state(with_sharding, state)
  model = nnx.merge(graphdef, state)
  graphdef, trainable, frozen = nnx.split(model, wrt, ...)
  opt_shardings = opt_state_shardings(tx, trainable)
  opt_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                           jax.eval_shape(tx.init, trainable), opt_shardings)
  replicated = NamedSharding(mesh, PartitionSpec())
  return graphdef, TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), trainable=trainable,
                              frozen=frozen, opt_state=opt_state)
