"""Losses, penalties and constraints of supervised classification."""

from typing import Mapping

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  if label_smoothing > 0:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def masked_binary_cross_entropy(logits: jax.Array, labels: jax.Array,
                                weights: jax.Array | None = None) -> jax.Array:
  """Per-example sigmoid cross-entropy of multi-label targets [b, tasks], summed over the
  labelled tasks (label 0 or 1; a negative label is missing) with per-entry `weights`
  (e.g. class weighting), divided by the number of labelled tasks. A missing label
  adds nothing to the loss nor to any gradient."""
  labelled = labels >= 0
  w = labelled.astype(logits.dtype) if weights is None else weights * labelled
  bce = optax.sigmoid_binary_cross_entropy(logits, jnp.where(labelled, labels, 0).astype(
      logits.dtype))
  # where, not a product alone: an infinite logit at a missing label gives no NaN.
  per_entry = jnp.where(labelled, w * bce, 0.0)
  return jnp.sum(per_entry, -1) / jnp.maximum(jnp.sum(labelled, -1), 1)


def multilabel_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per example, the fraction of its labelled tasks where sign(logit) matches."""
  labelled = labels >= 0
  right = ((logits > 0) == (labels == 1)) & labelled
  return jnp.sum(right, -1) / jnp.maximum(jnp.sum(labelled, -1), 1)


def _kernels(params):
  return [p for p in jax.tree.leaves(params) if p.ndim > 1]


def l2_penalty(params) -> jax.Array:
  """0.5 * sum of squared weights (biases excluded)."""
  return 0.5 * sum(jnp.sum(jnp.square(p)) for p in _kernels(params))


def l1_penalty(params) -> jax.Array:
  """Sum of absolute weights (biases excluded): pushes weights to exactly zero."""
  return sum(jnp.sum(jnp.abs(p)) for p in _kernels(params))


def max_norm(params, limit: float, input_keep: Mapping[str, float] | None = None):
  """Projects each unit's incoming weight vector onto the ball of radius `limit`
  (Srivastava et al. 2014). Kernels are [..., fan_in, units]: the norm runs over
  every axis but the last. input_keep: top-level module name -> the keep probability of
  that layer's input under dropout. The paper's radius bounds weights trained with
  unscaled dropout (multiplied by the keep probability at test time); flax's dropout
  divides the kept units by it while training instead, so the same constraint bounds
  our weights by limit * keep."""
  keep = input_keep or {}

  def project(path, p):
    if p.ndim < 2:
      return p
    radius = limit * keep.get(getattr(path[0], "key", None), 1.0)
    norms = jnp.sqrt(jnp.sum(jnp.square(p), axis=tuple(range(p.ndim - 1)), keepdims=True))
    return p * jnp.minimum(1.0, radius / jnp.maximum(norms, 1e-12))

  return jax.tree_util.tree_map_with_path(project, params)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is among the k largest logits."""
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
