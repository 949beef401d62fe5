"""Multi-layer perceptrons: the XOR solver of 1986 and the deep nets of the 2010s."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "gelu": nn.gelu}


def activation(name: str):
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Module):
  """Dense layers with dropout on the input and on every hidden layer (Srivastava et al. 2014)."""

  num_classes: int
  hidden: Sequence[int] = (1024, 1024, 1024)
  activation: str = "relu"
  dropout_input: float = 0.0
  dropout_hidden: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = activation(self.activation)
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    x = nn.Dropout(self.dropout_input, deterministic=not train)(x)
    for width in self.hidden:
      x = act(nn.Dense(width, dtype=self.dtype)(x))
      x = nn.Dropout(self.dropout_hidden, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype("float32")
