"""Convolutional Q-networks: the Nature DQN's (Mnih et al. 2015: 32 8x8/4, 64 4x4/2,
64 3x3/1, 512, one output per action) and the MinAtar paper's small one (Young & Tian
2019: 16 3x3/1, 128). One output per action, no softmax."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplearn_jax.models import layers


class ConvQNetwork(nn.Module):
  """'VALID' convolutions (features, kernel, stride), ReLU, one hidden dense layer."""

  num_classes: int                          # actions
  convs: Sequence[Sequence[int]] = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
  hidden: int = 512
  input_scale: float = 1.0 / 255.0          # uint8 frames -> [0, 1]
  conv: str = "auto"                        # auto | im2col | lax: see layers.conv_kind
  dtype: str = "float32"

  def __post_init__(self):
    layers.conv_kind(self.conv)  # a bad name fails here, at construction
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.astype(self.dtype) * self.input_scale
    fast = layers.conv_kind(self.conv) == "im2col"
    for features, k, s in self.convs:
      if fast:
        x = layers.Conv(features, (k, k), padding="VALID", strides=s, dtype=self.dtype)(x)
      else:
        x = nn.Conv(features, (k, k), strides=(s, s), padding="VALID", dtype=self.dtype)(x)
      x = nn.relu(x)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
