"""MobileNet v1 (Howard et al. 2017)."""

import flax.linen as nn
import jax.numpy as jnp

from deeplearn_jax.models.resnet import batch_norm, conv

# (output channels, stride) of the 13 depthwise separable layers of table 1.
LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
  """A 3x3/2 conv of 32, then 13 depthwise separable layers (3x3 depthwise conv and
  1x1 pointwise conv, each followed by BN + ReLU), global average pooling, one dense
  layer. `width` is the paper's width multiplier alpha: every layer has int(alpha * c)
  channels (4,231,976 params at 1.0 with 1000 classes).
  """

  num_classes: int = 1000
  width: float = 1.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.width <= 0:
      raise ValueError(f"MobileNetV1 width must be positive, got {self.width}")
    channels = lambda c: max(1, int(c * self.width))

    def conv_bn_relu(x, features, kernel, strides, groups, name):
      x = conv(features, kernel, strides, groups, dtype=self.dtype, name=f"{name}_conv")(x)
      return nn.relu(batch_norm(train, self.dtype, name=f"{name}_bn")(x))

    x = x.astype(self.dtype)
    x = conv_bn_relu(x, channels(32), 3, 2, 1, "stem")
    for i, (features, strides) in enumerate(LAYERS):
      x = conv_bn_relu(x, x.shape[-1], 3, strides, x.shape[-1], f"dw{i + 1}")
      x = conv_bn_relu(x, channels(features), 1, 1, 1, f"pw{i + 1}")
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)
