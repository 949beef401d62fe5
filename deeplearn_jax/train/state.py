"""The train state: everything a run needs to continue, and nothing that is not an array."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import os

from deeplearn_jax.checkpoint import has_checkpoints, load_params, read_checkpoint
from deeplearn_jax.errors import UserError


@flax.struct.dataclass
class TrainState:
  """A supervised run's state: everything to continue, nothing that is not an array."""
  step: jax.Array        # number of updates done
  params: Any
  opt_state: Any
  batch_stats: Any       # {} for models without batch norm
  rng: jax.Array         # raw key; the key of step s is fold_in(rng, s), so resume is exact
  bad_step: jax.Array    # -1, or the first step whose loss was NaN/Inf (that update is skipped)
  skipped: jax.Array     # number of updates skipped for a NaN/Inf loss
  lr_scale: jax.Array    # multiplies every update; lowered by nan_policy=rollback


def make_init(model: nn.Module, tx: optax.GradientTransformation, input_shape, seed: int,
              input_dtype=jnp.float32):
  """Returns init() -> TrainState, to be traced once by eval_shape and once by jit.
  input_dtype: of the dummy input init traces with (int32 for token models)."""

  def init() -> TrainState:
    root = jax.random.PRNGKey(seed)
    params_key, dropout_key, state_key = jax.random.split(root, 3)
    variables = model.init({"params": params_key, "dropout": dropout_key},
                           jnp.zeros((1, *input_shape), input_dtype), train=False)
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
  """The number of scalars in a parameter tree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))


def load_pretrained(path: str, abstract_params: Any, skip=()) -> Any:
  """pretrained_leaves of config.init_from: a tree saved by `checkpoint.save_params`, or
  the parameters of a run folder's newest checkpoint (a finished run, continued or
  fine-tuned on new data).

  skip: with none (the default), the saved tree may hold any part of the model's
  parameters. With some, the reuse is asked for exactly: parameters whose path contains
  one of `skip` (say, the head) keep their init, and every other parameter of the model
  must be in the saved tree."""
  source = f"config.init_from {path}"
  checkpoints = os.path.join(path, "checkpoints")
  if not os.path.exists(os.path.join(path, "integrity.json")) and has_checkpoints(checkpoints):
    tree = read_checkpoint(checkpoints)["params"]
  else:
    tree = load_params(path)
  if not skip:
    return pretrained_leaves(tree, abstract_params, source)
  names = [path_name(k) for k, _ in jax.tree_util.tree_flatten_with_path(abstract_params)[0]]
  for s in skip:
    if not any(s in n for n in names):
      raise UserError(f"config.init_from_skip: {s!r} names no parameter of the model "
                      f"({', '.join(names[:4])}, ...)")
  skipped = lambda name: any(s in name for s in skip)
  kept = {path_name(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]
          if not skipped(path_name(k))}
  missing = [n for n in names if not skipped(n) and n not in kept]
  if missing:
    raise UserError(f"{source} lacks {', '.join(missing[:3])}, which config.init_from_skip "
                    "does not skip")
  return pretrained_leaves(_nest(kept), abstract_params, source)


def _nest(flat: dict[str, Any]) -> dict:
  """{'a/b': x} -> {'a': {'b': x}}: a tree from path_name keys."""
  out: dict = {}
  for name, value in flat.items():
    *parents, last = name.split("/")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  return out


def pretrained_leaves(tree: Any, abstract_params: Any, source: str) -> Any:
  """Checks that each leaf of `tree` names a parameter of the model with the same
  shape. Returns the model's full tree with those leaves as arrays and None where init
  keeps its own."""
  flat = {path_name(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  if not flat:
    raise UserError(f"{source} holds no parameters")

  def pick(key_path, leaf):
    name = path_name(key_path)
    value = flat.pop(name, None)
    if value is not None and value.shape != leaf.shape:
      raise UserError(f"{source}: {name} has shape {value.shape}, the model's is {leaf.shape}")
    return value

  merged = jax.tree_util.tree_map_with_path(pick, abstract_params)
  if flat:
    raise UserError(f"{source}: the model has no parameter {', '.join(sorted(flat)[:3])}")
  return merged


def starting_from(init, pretrained: Any, tx: optax.GradientTransformation):
  """init() with the pre-trained leaves (from `load_pretrained`) in place of the
  model's own, and the optimizer state started for them. Still a pure init, so the
  loop builds it born sharded like any other."""

  def init_pretrained() -> TrainState:
    state = init()
    params = jax.tree.map(lambda new, old: old if new is None else jnp.asarray(new, old.dtype),
                          pretrained, state.params, is_leaf=lambda x: x is None)
    return state.replace(params=params, opt_state=tx.init(params))

  return init_pretrained
