"""Rosenblatt's perceptron (1958): a threshold unit trained by the perceptron rule.

Not gradient descent: w <- w + lr * (y - step(w.x + b)) * x, one example at a time.
Pure functions, so a whole training run is one `lax.scan`.
"""

import jax
import jax.numpy as jnp


def init(num_inputs: int) -> dict[str, jax.Array]:
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
