"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998)."""

import flax.linen as nn
import jax.numpy as jnp

from deeplearn_jax.models import layers
from deeplearn_jax.models.mlp import activation


class LeNet5(nn.Module):
  """C1 6@5x5 - S2 - C3 16@5x5 - S4 - C5 120 - F6 84 - output.

  C1 uses 'SAME' padding, which equals the paper's 28x28 digit placed in a 32x32
  field. The 1998 net used scaled tanh, average-pool subsampling and RBF outputs;
  `activation='tanh', pool='avg'` gives that shape (with a softmax output), while
  the default ReLU + max-pool trains faster to the same accuracy. `conv` chooses the
  kernels (layers.conv_kind): the CPU-tuned banded matmuls or XLA's convolution;
  both have the same parameters, so checkpoints interchange.
  """

  num_classes: int = 10
  activation: str = "relu"
  pool: str = "max"
  dropout: float = 0.0
  conv: str = "auto"            # auto | im2col | lax (see layers.conv_kind)
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = activation(self.activation)
    if self.pool not in ("max", "avg"):
      raise ValueError(f"LeNet5.pool must be 'max' or 'avg', got {self.pool!r}")
    fast = layers.conv_kind(self.conv) == "im2col"
    # Blocks of 4 and 5 output columns per matmul row: measured fastest for LeNet here.
    conv = lambda n, block, padding, name: (
        layers.Conv(n, (5, 5), padding=padding, width_block=block, dtype=self.dtype, name=name)
        if fast else nn.Conv(n, (5, 5), padding=padding, dtype=self.dtype, name=name))
    x = x.astype(self.dtype)
    x = act(conv(6, 4, "SAME", "C1")(x))
    x = layers.pool(x, self.pool, self.conv)
    x = act(conv(16, 5, "VALID", "C3")(x))
    x = layers.pool(x, self.pool, self.conv)
    x = x.reshape((x.shape[0], -1))
    x = act(nn.Dense(120, dtype=self.dtype, name="C5")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = act(nn.Dense(84, dtype=self.dtype, name="F6")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
    return x.astype(jnp.float32)
