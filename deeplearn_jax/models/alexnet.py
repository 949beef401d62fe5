"""AlexNet (Krizhevsky, Sutskever & Hinton 2012)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

# For the ReLU layers: He et al. 2015 init in place of the paper's N(0, 0.01) with
# biases of 1, which trains only with the paper's hand-tuned learning rate.
_relu_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def local_response_norm(x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75) -> jax.Array:
  """Section 3.3: each activation divided by (k + alpha * sum of the squares of the
  `size` channels around it)^beta, zero-padded at the ends; computed in float32."""
  sq = jnp.square(x.astype(jnp.float32))
  half = size // 2
  sq = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, half)])
  c = x.shape[-1]
  window = sum(sq[..., i:i + c] for i in range(size))
  return (x.astype(jnp.float32) / (k + alpha * window) ** beta).astype(x.dtype)


class AlexNet(nn.Module):
  """Five convolutions 96-256-384-384-256 (11x11/4, 5x5, 3x3 x3) with ReLU, overlapping
  3x3/2 max-pooling after conv1, conv2 and conv5, then dense 4096-4096-classes with
  dropout on both hidden layers; local response normalisation after conv1 and conv2.

  groups=2 is the paper's net as trained on two GPUs: conv2, conv4 and conv5 see only
  the half of the channels on their own GPU (60,965,224 params at 1000 classes);
  groups=1 is the same net as one tower (62,378,344). For 224x224 inputs conv1 pads by
  2, which gives the paper's 55x55 maps (227x227 inputs work as well); the dense part
  is sized for the 6x6 maps that either leaves.
  """

  num_classes: int = 1000
  groups: int = 2
  lrn: bool = True
  dropout: float = 0.5
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    def conv(features, kernel, strides=1, pad=None, groups=1, name=None):
      pad = kernel // 2 if pad is None else pad
      return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                     padding=[(pad, pad), (pad, pad)], feature_group_count=groups,
                     kernel_init=_relu_init, dtype=self.dtype, name=name)

    def pool(x):
      return nn.max_pool(x, (3, 3), strides=(2, 2))

    norm = local_response_norm if self.lrn else (lambda x: x)
    x = x.astype(self.dtype)
    x = pool(norm(nn.relu(conv(96, 11, 4, pad=2, name="conv1")(x))))
    x = pool(norm(nn.relu(conv(256, 5, groups=self.groups, name="conv2")(x))))
    x = nn.relu(conv(384, 3, name="conv3")(x))  # the layer that crosses the two GPUs
    x = nn.relu(conv(384, 3, groups=self.groups, name="conv4")(x))
    x = pool(nn.relu(conv(256, 3, groups=self.groups, name="conv5")(x)))
    x = x.reshape((x.shape[0], -1))
    for name in ("fc6", "fc7"):
      x = nn.relu(nn.Dense(4096, kernel_init=_relu_init, dtype=self.dtype, name=name)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc8")(x).astype(jnp.float32)
