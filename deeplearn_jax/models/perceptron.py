"""Rosenblatt's perceptron (1958): a threshold unit trained by the perceptron rule.

Not gradient descent: w <- w + lr * (y - step(w.x + b)) * x, one example at a time.
Pure functions, so a whole training run is one `lax.scan`.
"""

import jax
import jax.numpy as jnp


def init(num_inputs: int) -> dict[str, jax.Array]:
  """Zero weights and bias for `num_inputs` inputs."""
  return {"w": jnp.zeros((num_inputs,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def predict(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  """Heaviside step of the weighted sum: 1 if w.x + b > 0 else 0."""
  return (x @ params["w"] + params["b"] > 0).astype(jnp.int32)


def train(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, *, epochs: int,
          learning_rate: float = 1.0) -> tuple[dict[str, jax.Array], jax.Array]:
  """Cycles through (x, y) `epochs` times; returns the final weights and the number
  of mistakes per epoch (0 means the rule has converged)."""

  def example(p, xy):
    xi, yi = xy
    err = (yi - predict(p, xi[None])[0]).astype(jnp.float32)
    p = {"w": p["w"] + learning_rate * err * xi, "b": p["b"] + learning_rate * err}
    return p, jnp.abs(err)

  def epoch(p, _):
    p, errs = jax.lax.scan(example, p, (x, y))
    return p, errs.sum()

  return jax.lax.scan(epoch, params, None, length=epochs)


def best_threshold_unit(x: jax.Array, y: jax.Array, grid_size: int) -> float:
  """The best accuracy of ANY single threshold unit step(w.x + b) on 2-input data, by
  exhaustive search over a grid of weights in [-2, 2]^3: Minsky & Papert's limit,
  measured rather than argued."""
  ws = jnp.linspace(-2.0, 2.0, grid_size)
  w1, w2, b = (a.reshape(-1) for a in jnp.meshgrid(ws, ws, ws))
  x, y = jnp.asarray(x), jnp.asarray(y)
  pred = (x[:, 0:1] * w1 + x[:, 1:2] * w2 + b > 0).astype(jnp.int32)  # [n, grid^3]
  return float(jnp.max(jnp.mean(pred == y[:, None], axis=0)))
