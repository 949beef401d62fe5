"""Layers with the same maths and parameters as flax's, written so XLA's CPU backend
runs them fast (measured in benchmarks/lenet_throughput.py; GPUs and TPUs fuse these
forms just as well)."""

import flax.linen as nn
import jax
import jax.numpy as jnp


def pool2x2(x: jax.Array, kind: str = "max") -> jax.Array:
  """2x2 pooling with stride 2 ('VALID': an odd last row/column is dropped).

  As a reshape + reduce: on CPU its gradient is a cheap mask, where
  nn.max_pool's select-and-scatter made LeNet's whole step 35% slower.
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2, :].reshape(b, h // 2, 2, w // 2, 2, c)
  if kind == "max":
    return x.max(axis=(2, 4))
  if kind == "avg":
    return x.mean(axis=(2, 4))
  raise ValueError(f"pooling must be 'max' or 'avg', got {kind!r}")


class Conv(nn.Module):
  """nn.Conv (stride 1, 'SAME' or 'VALID'), parameters named and shaped alike, for the
  small convolutions of LeNet-era nets (large ones should use nn.Conv).

  XLA's CPU convolution is slow on few channels: LeNet's C1 (one input channel) took
  5.1 ms at batch 128 against 0.4 ms as a sum of shifted copies, and C3's gradients
  are faster as one matmul over explicit patches (im2col).
  """

  features: int
  kernel_size: tuple[int, int]
  padding: str = "SAME"
  use_bias: bool = True
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    cin = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, cin, self.features))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.padding == "SAME":
      top, left = (kh - 1) // 2, (kw - 1) // 2
      x = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    elif self.padding != "VALID":
      raise ValueError(f"Conv.padding must be 'SAME' or 'VALID', got {self.padding!r}")
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    shifted = [x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)]
    if cin == 1:
      # Dots with a [1, features] kernel row, not broadcast multiplies: their gradients
      # become matmuls, which XLA parallelises, instead of one serial reduction.
      y = sum(s @ kernel[i // kw, i % kw] for i, s in enumerate(shifted))
    else:
      y = jnp.concatenate(shifted, axis=-1) @ kernel.reshape(kh * kw * cin, self.features)
    if not self.use_bias:
      return y
    return y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
