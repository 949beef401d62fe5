"""The train state: everything a run needs to continue, and nothing that is not an array."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


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


def num_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
