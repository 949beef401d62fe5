"""Multi-layer perceptrons: the XOR solver of 1986, the deep nets of the 2010s, and the
initialisations, batch norm and skip connections that made depth trainable."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "gelu": nn.gelu}
KERNEL_INITS = ("lecun", "naive", "glorot", "he")


def activation(name: str):
  """The activation function of that name; ValueError otherwise."""
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


def kernel_initializer(name: str, std: float = 0.01):
  """Weight initialisation by name: 'lecun' (flax's default, variance 1/fan_in), 'naive'
  (N(0, std^2) whatever the fan-in), 'glorot' (Glorot & Bengio 2010: uniform, variance
  2/(fan_in+fan_out)) or 'he' (He et al. 2015: Gaussian, variance 2/fan_in)."""
  if name == "lecun":
    return nn.linear.default_kernel_init
  if name == "naive":
    if not std > 0:
      raise ValueError(f"init_std must be positive for kernel_init 'naive', got {std}")
    return nn.initializers.normal(std)
  if name == "glorot":
    return nn.initializers.xavier_uniform()
  if name == "he":
    return nn.initializers.he_normal()
  raise ValueError(f"unknown kernel_init {name!r}; known: {', '.join(KERNEL_INITS)}")


class MLP(nn.Module):
  """Dense layers with dropout on the input and on every hidden layer (Srivastava et al.
  2014); optionally batch norm before each hidden activation (Ioffe & Szegedy 2015) and
  an identity skip around each hidden layer whose input has its width (He et al. 2016)."""

  num_classes: int
  hidden: Sequence[int] = (1024, 1024, 1024)
  activation: str = "relu"
  dropout_input: float = 0.0
  dropout_hidden: float = 0.0
  kernel_init: str = "lecun"
  init_std: float = 0.01          # the standard deviation of kernel_init='naive'
  batch_norm: bool = False
  residual: bool = False
  dtype: str = "float32"

  def __post_init__(self):
    # Bad names fail when the model is built, not deep inside its first trace.
    activation(self.activation)
    kernel_initializer(self.kernel_init, self.init_std)
    super().__post_init__()

  def input_keep(self) -> dict[str, float]:
    """Each Dense layer's name -> the keep probability of its input under dropout (a
    max-norm radius stated for unscaled dropout is this much smaller on our weights)."""
    return {f"Dense_{i}": 1.0 - (self.dropout_input if i == 0 else self.dropout_hidden)
            for i in range(len(self.hidden) + 1)}

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = activation(self.activation)
    init = kernel_initializer(self.kernel_init, self.init_std)
    x = x.reshape((x.shape[0], -1)).astype(self.dtype)
    x = nn.Dropout(self.dropout_input, deterministic=not train)(x)
    for width in self.hidden:
      # Batch norm's shift makes the Dense bias redundant.
      h = nn.Dense(width, use_bias=not self.batch_norm, kernel_init=init, dtype=self.dtype)(x)
      if self.batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(h)
      h = nn.Dropout(self.dropout_hidden, deterministic=not train)(act(h))
      x = x + h if self.residual and x.shape[-1] == width else h
    return nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype)(x).astype("float32")
