"""The train state: everything a run needs to continue, and nothing that is not an array."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from deeplearn_jax.checkpoint import load_params
from deeplearn_jax.errors import UserError


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # number of updates done
  params: Any
  opt_state: Any
  batch_stats: Any       # {} for models without batch norm
  rng: jax.Array         # raw key; the key of step s is fold_in(rng, s), so resume is exact
  bad_step: jax.Array    # -1, or the first step whose loss was NaN/Inf (that update is skipped)
  skipped: jax.Array     # number of updates skipped for a NaN/Inf loss
  lr_scale: jax.Array    # multiplies every update; lowered by nan_policy=rollback


def make_init(model: nn.Module, tx: optax.GradientTransformation, input_shape, seed: int):
  """Returns init() -> TrainState, to be traced once by eval_shape and once by jit."""

  def init() -> TrainState:
    root = jax.random.PRNGKey(seed)
    params_key, dropout_key, state_key = jax.random.split(root, 3)
    variables = model.init({"params": params_key, "dropout": dropout_key},
                           jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      batch_stats=variables.get("batch_stats", {}), rng=state_key,
                      bad_step=jnp.full((), -1, jnp.int32), skipped=jnp.zeros((), jnp.int32),
                      lr_scale=jnp.ones((), jnp.float32))

  return init


def path_name(path) -> str:
  """'Block_0/Conv_1/kernel' for a tree path of parameters (or of their gradients)."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def num_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def load_pretrained(path: str, abstract_params: Any) -> Any:
  """Reads a tree saved by `checkpoint.save_params` and checks that each of its leaves
  names a parameter of the model with the same shape. Returns the model's full tree
  with the pre-trained leaves as numpy arrays and None where init keeps its own."""
  flat = {path_name(k): v for k, v in
          jax.tree_util.tree_flatten_with_path(load_params(path))[0]}
  if not flat:
    raise UserError(f"config.init_from {path} holds no parameters")

  def pick(key_path, leaf):
    name = path_name(key_path)
    value = flat.pop(name, None)
    if value is not None and value.shape != leaf.shape:
      raise UserError(f"config.init_from {path}: {name} has shape {value.shape}, the "
                      f"model's is {leaf.shape}")
    return value

  merged = jax.tree_util.tree_map_with_path(pick, abstract_params)
  if flat:
    raise UserError(f"config.init_from {path}: the model has no parameter "
                    f"{', '.join(sorted(flat)[:3])}")
  return merged


def with_pretrained(state: TrainState, pretrained: Any,
                    tx: optax.GradientTransformation) -> TrainState:
  """`state` with the pre-trained leaves put in place (on each leaf's own sharding) and
  the optimizer state started afresh for them."""
  params = jax.tree.map(lambda new, old: old if new is None else
                        jax.device_put(new.astype(old.dtype), old.sharding),
                        pretrained, state.params, is_leaf=lambda x: x is None)
  opt_shardings = jax.tree.map(lambda x: x.sharding, state.opt_state)
  return state.replace(params=params,
                       opt_state=jax.jit(tx.init, out_shardings=opt_shardings)(params))
