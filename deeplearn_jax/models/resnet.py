"""Residual networks (He, Zhang, Ren & Sun 2015): the ImageNet ResNet-18/34/50/101 of
table 1 and the CIFAR-10 ResNets of section 4.2.

Every model computes in `dtype` (e.g. 'bfloat16') with float32 parameters and batch
statistics, and returns float32 logits. Batch norm needs no cross-device code: under
jit with the batch sharded over the mesh, its mean over the batch axis is global.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

# He et al. 2015 ("Delving deep into rectifiers") init, fan_out as torchvision: keeps the
# activations' scale through a deep stack of convolutions and ReLUs.
he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, strides: int = 1, groups: int = 1,
         dtype: str = "float32", name: str | None = None) -> nn.Conv:
  """A bias-free convolution (batch norm follows), padded by kernel // 2 on each side
  as in the papers' Caffe/Torch nets (flax's 'SAME' pads stride-2 convs unevenly)."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=[(pad, pad), (pad, pad)], feature_group_count=groups,
                 use_bias=False, kernel_init=he_normal, dtype=dtype, name=name)


def batch_norm(train: bool, dtype: str, zero_scale: bool = False,
               name: str | None = None) -> nn.BatchNorm:
  """Batch norm in `dtype` with float32 scale, bias and statistics; momentum 0.9 and
  epsilon 1e-5 are Torch's (momentum 0.1 there counts the other way)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


def _shortcut(x, features: int, strides: int, kind: str, train: bool, dtype: str):
  """The identity, or a match for a block whose output shape differs from its input's:
  'projection' (option B: 1x1 conv + BN) or 'pad' (option A: subsample and zero-pad
  the new channels, parameter-free; the paper's CIFAR nets)."""
  if strides == 1 and x.shape[-1] == features:
    return x
  if kind == "pad":
    x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))
  x = conv(features, 1, strides, dtype=dtype, name="proj_conv")(x)
  return batch_norm(train, dtype, name="proj_bn")(x)


class _Block(nn.Module):
  """The fields every residual block has."""

  features: int
  strides: int = 1
  shortcut: str = "projection"
  zero_init_residual: bool = False
  dtype: str = "float32"


class BasicBlock(_Block):
  """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = conv(self.features, 3, self.strides, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, name="bn1")(y))
    y = conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
    y = batch_norm(train, self.dtype, self.zero_init_residual, name="bn2")(y)
    return nn.relu(y + _shortcut(x, self.features, self.strides, self.shortcut, train,
                                 self.dtype))


class BottleneckBlock(_Block):
  """1x1 reduce, 3x3, 1x1 expand to 4x `features` (ResNet-50/101). The stride sits on
  the 3x3 convolution (torchvision's "v1.5"; the paper strides the first 1x1), which
  changes no parameter count and is ~0.5% more accurate."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, name="bn1")(y))
    y = conv(self.features, 3, self.strides, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(batch_norm(train, self.dtype, name="bn2")(y))
    y = conv(4 * self.features, 1, dtype=self.dtype, name="conv3")(y)
    y = batch_norm(train, self.dtype, self.zero_init_residual, name="bn3")(y)
    return nn.relu(y + _shortcut(x, 4 * self.features, self.strides, self.shortcut, train,
                                 self.dtype))


class ResNet(nn.Module):
  """The ImageNet ResNets: 7x7/2 conv stem and 3x3/2 max-pool, four stages of blocks at
  widths 64-128-256-512 (x4 for bottlenecks) that halve the map from stage 2 on, global
  average pooling and one dense layer. Shortcuts are projections where the shape
  changes (the paper's option B).

  zero_init_residual starts each block's last BN scale at 0, so every residual branch
  is off and each block passes its input through at init (Goyal et al. 2017).
  """

  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  width: int = 64
  zero_init_residual: bool = False
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    x = conv(self.width, 7, 2, dtype=self.dtype, name="stem_conv")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="stem_bn")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block = BottleneckBlock if self.bottleneck else BasicBlock
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        x = block(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                  zero_init_residual=self.zero_init_residual, dtype=self.dtype,
                  name=f"stage{i + 1}_block{j + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), bottleneck=True)


class CifarResNet(nn.Module):
  """The CIFAR-10 ResNets of section 4.2 for 32x32 inputs: a 3x3 conv stem (no
  max-pool), three stages of (depth - 2) / 6 basic blocks at widths w-2w-4w on
  32-16-8 maps, global average pooling, one dense layer. depth 20/32/44/56/110 with
  width 16 and shortcut 'pad' (option A) are the paper's nets (0.27M params at 20).
  """

  num_classes: int
  depth: int = 20
  width: int = 16
  shortcut: str = "pad"
  zero_init_residual: bool = False
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ValueError(f"CifarResNet depth must be 6n + 2 with n >= 1, got {self.depth}")
    if self.shortcut not in ("pad", "projection"):
      raise ValueError(f"CifarResNet shortcut must be 'pad' or 'projection', got "
                       f"{self.shortcut!r}")
    x = x.astype(self.dtype)
    x = conv(self.width, 3, dtype=self.dtype, name="stem_conv")(x)
    x = nn.relu(batch_norm(train, self.dtype, name="stem_bn")(x))
    for i in range(3):
      for j in range((self.depth - 2) // 6):
        x = BasicBlock(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                       shortcut=self.shortcut, zero_init_residual=self.zero_init_residual,
                       dtype=self.dtype, name=f"stage{i + 1}_block{j + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)
