"""Linear probes: how much of a label a linear read-out finds in a representation.

    features = probe.layer_features(model, variables, images, ("C1", "C3"), act)
    accuracy = probe.linear_probe(train_x, train_y, test_x, test_y, num_classes)

A probe is a softmax regression on standardized features, trained full batch with Adam
(jitted, a fixed number of steps, a small L2 penalty): the same read-out for every layer,
so differences between layers are the representation's, not the probe's.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def layer_features(model, variables, images: np.ndarray, names: Sequence[str],
                   activation: Callable | None = None, batch_size: int = 1000
                   ) -> dict[str, np.ndarray]:
  """The outputs of the named submodules for every image (flattened, [N, D]), in inference
  mode; `activation` applied to each (flax captures a layer's output before the model's
  activation is applied)."""

  @jax.jit
  def run(x):
    _, state = model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=["intermediates"])
    out = {}
    for name in names:
      h = state["intermediates"][name]["__call__"][0]
      h = activation(h) if activation else h
      out[name] = h.reshape(h.shape[0], -1)
    return out

  pieces = [jax.device_get(run(jnp.asarray(images[i:i + batch_size])))
            for i in range(0, len(images), batch_size)]
  return {n: np.concatenate([p[n] for p in pieces]) for n in names}


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, num_classes: int, *, steps: int = 500,
                 learning_rate: float = 0.01, l2: float = 1e-4) -> dict[str, float]:
  """Train and test accuracy of a softmax regression on the features."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  xs = jnp.asarray((train_x - mean) / std, jnp.float32)
  xt = jnp.asarray((test_x - mean) / std, jnp.float32)
  ys, yt = jnp.asarray(train_y), jnp.asarray(test_y)
  tx = optax.adam(learning_rate)
  train_acc, test_acc = jax.device_get(_fit(xs, ys, xt, yt, num_classes, steps, tx, l2))
  return {"train_accuracy": float(train_acc), "test_accuracy": float(test_acc)}


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "tx"))
def _fit(xs, ys, xt, yt, num_classes: int, steps: int, tx, l2: float):
  # The data are arguments, not closed-over constants: XLA would fold them into the program.
  def loss(p):
    logits = xs @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return ce + l2 * jnp.sum(p["w"] ** 2)

  def step(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, updates), s), None

  p = {"w": jnp.zeros((xs.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), None, length=steps)
  acc = lambda x, y: jnp.mean(jnp.argmax(x @ p["w"] + p["b"], -1) == y)
  return acc(xs, ys), acc(xt, yt)
