"""A small, fast CIFAR-10 net built on the published ideas of the CIFAR-10 speed runs
(Page's ResNet-9 2018, tysam-code's hlb-cifar10, Jordan's airbench 2024): few layers,
most of the compute at low resolution, a frozen patch-whitening first layer whose
filters come from the data, batch norm with fast-moving statistics, GELU, and a
down-scaled linear head.

    x (32x32x3) -> whiten 2x2 conv (frozen kernel, 2 x 12 filters) -> GELU -> 31x31
      -> block(w1) -> 15x15 -> block(w2) -> 7x7 -> block(w3) -> 3x3 -> global max
      -> dense (no bias) * head_scale
    block(w): conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU

`conv='im2col'` runs the 3x3 convolutions as one matmul over shifted copies
(layers.Conv): on a 2-core CPU the training step ran at 301 images/s against 273 with
XLA's convolution (widths 32-128-128, batch 512; 2x2 pooling as a reshape in both, which
took XLA's max-pool from 250). On a GPU 'lax' (cuDNN) is the right choice.

`whitening_kernel(images)` computes the first layer's filters; the trainer puts them
in place through `config.init_from` and freezes them (`optimizer.frozen`).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from deeplearn_jax.models import layers

def whitening_kernel(images: np.ndarray, patch: int = 2, eps: float = 5e-4) -> np.ndarray:
  """Conv filters [patch, patch, C, 2 * patch * patch * C] that whiten image patches:
  each eigenvector of the patch covariance scaled by 1 / sqrt(eigenvalue + eps), and its
  negative (so a following GELU keeps both signs).

  images: [N, H, W, C] float, normalised as the model's inputs are."""
  n, h, w, c = images.shape
  patches = np.stack([images[:, i:h - patch + 1 + i, j:w - patch + 1 + j]
                      for i in range(patch) for j in range(patch)], axis=3)
  patches = patches.reshape(-1, patch * patch * c).astype(np.float64)  # (i, j, c) order
  cov = np.cov(patches, rowvar=False)
  eigenvalues, eigenvectors = np.linalg.eigh(cov)
  filters = eigenvectors / np.sqrt(eigenvalues + eps)  # columns: whitening directions
  filters = filters[:, ::-1]  # strongest first
  kernel = filters.reshape(patch, patch, c, patch * patch * c)
  return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


class _Block(nn.Module):
  width: int
  bn_momentum: float
  conv: str
  dtype: str

  @nn.compact
  def __call__(self, x, train: bool):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                              epsilon=1e-12, use_scale=False, dtype=self.dtype)
    # Both kinds are named Conv_<i> with a [3, 3, in, out] kernel: checkpoints interchange.
    conv_cls = layers.Conv if layers.conv_kind(self.conv) == "im2col" else nn.Conv
    conv = lambda: conv_cls(self.width, (3, 3), use_bias=False, dtype=self.dtype)
    x = layers.pool2x2(conv()(x))
    x = nn.gelu(bn()(x))
    x = conv()(x)
    return nn.gelu(bn()(x))


class FastCifarNet(nn.Module):
  num_classes: int
  widths: Sequence[int] = (64, 256, 256)
  bn_momentum: float = 0.4      # flax's: running = m * running + (1 - m) * batch
  head_scale: float = 1.0 / 9.0
  conv: str = "lax"             # lax | im2col (faster on CPU) | auto: see layers.conv_kind
  dtype: str = "float32"

  def __post_init__(self):
    layers.conv_kind(self.conv)  # a bad name fails here, at construction
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    x = x.astype(self.dtype)
    x = nn.Conv(8 * c, (2, 2), padding="VALID", dtype=self.dtype, name="whiten")(x)
    x = nn.gelu(x)
    for width in self.widths:
      x = _Block(width, self.bn_momentum, self.conv, self.dtype)(x, train)
    x = jnp.max(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype)(x) * self.head_scale
    return x.astype(jnp.float32)
