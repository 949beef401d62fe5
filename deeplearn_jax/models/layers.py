"""Layers with the same maths and parameters as flax's, written so XLA's CPU backend
runs them fast (measured in benchmarks/lenet_throughput.py and char_lm_nanogpt.py).
Elsewhere they are plain matmuls and elementwise ops; their speed on GPUs and TPUs was
not measured here."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


CONVS = ("auto", "im2col", "lax")


def conv_kind(conv: str) -> str:
  """'im2col' (these layers) or 'lax' (XLA's convolution and pooling). 'auto' picks
  these layers on the CPU, where they were measured faster, and XLA's own kernels on
  GPUs and TPUs (cuDNN, the TPU's convolution units), where they were not measured."""
  if conv not in CONVS:
    raise ValueError(f"conv must be one of {', '.join(CONVS)}, got {conv!r}")
  if conv == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "lax"
  return conv


def pool(x: jax.Array, kind: str, conv: str) -> jax.Array:
  """2x2 pooling with stride 2: pool2x2 for conv kind 'im2col', flax's for 'lax'."""
  if conv_kind(conv) == "im2col":
    return pool2x2(x, kind)
  if kind not in ("max", "avg"):
    raise ValueError(f"pooling must be 'max' or 'avg', got {kind!r}")
  return (nn.max_pool if kind == "max" else nn.avg_pool)(x, (2, 2), strides=(2, 2))


def pool2x2(x: jax.Array, kind: str = "max") -> jax.Array:
  """2x2 pooling with stride 2 ('VALID': an odd last row/column is dropped).

  As a reshape + reduce, with a hand-written gradient for max. On CPU, nn.max_pool's
  select-and-scatter gradient made LeNet's whole step 35% slower, and JAX's gradient
  of the reduce 10-15% slower, than this.
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2, :]
  if kind == "max":
    return _max_pool2x2(x)
  if kind == "avg":
    return _windows(x).mean(axis=(2, 4))
  raise ValueError(f"pooling must be 'max' or 'avg', got {kind!r}")


def _windows(x: jax.Array) -> jax.Array:
  """[b, h, w, c] -> [b, h/2, 2, w/2, 2, c]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _max_pool2x2(x: jax.Array) -> jax.Array:
  return _windows(x).max(axis=(2, 4))


def _max_pool2x2_fwd(x):
  y = _max_pool2x2(x)
  return y, (x, y)


def _max_pool2x2_bwd(res, g):
  # The gradient JAX gives a max (ties share it evenly: a zero-padded background ties
  # all four), with the tie count summed from four slices rather than by a reduce
  # over the window axes, which XLA's CPU backend runs slowly.
  x, y = res
  hit = (_windows(x) == y[:, :, None, :, None, :]).astype(g.dtype)
  count = hit[:, :, 0, :, 0] + hit[:, :, 0, :, 1] + hit[:, :, 1, :, 0] + hit[:, :, 1, :, 1]
  return ((hit * (g / count)[:, :, None, :, None, :]).reshape(x.shape),)


_max_pool2x2.defvjp(_max_pool2x2_fwd, _max_pool2x2_bwd)


class Conv(nn.Module):
  """nn.Conv ('SAME' or 'VALID'), parameters named and shaped alike, as one
  matmul over explicit patches, which XLA's CPU backend runs faster than its own
  convolution for the small layers of LeNet-era nets and a fast CIFAR net.

  width_block=1 is plain im2col: [kh*kw*cin] patches times the [kh*kw*cin, features]
  kernel. With few channels that matmul is too thin to run well (LeNet's C1: 25 x 6),
  so width_block=n computes n neighbouring output columns at once: the patch spans
  n+kw-1 input columns and the kernel becomes a banded [kh*(n+kw-1)*cin, n*features]
  matrix. That costs (n+kw-1)/kw times the multiplies, yet LeNet's training step (n=4
  for C1, 5 for C3) fell from 13.3 to 7.4 ms against a sum of shifted one-channel dots
  for C1 and im2col for C3 (benchmarks/lenet_throughput.py).
  """

  features: int
  kernel_size: tuple[int, int]
  padding: str = "SAME"
  use_bias: bool = True
  width_block: int = 1
  strides: int = 1              # > 1 ('VALID' only, width_block 1): the Nature DQN's convs
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    n = self.width_block
    if n < 1:
      raise ValueError(f"Conv.width_block must be >= 1, got {n}")
    b, _, _, cin = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, cin, self.features))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.padding == "SAME":
      top, left = (kh - 1) // 2, (kw - 1) // 2
      x = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    elif self.padding != "VALID":
      raise ValueError(f"Conv.padding must be 'SAME' or 'VALID', got {self.padding!r}")
    if self.strides > 1:
      return self._strided(x, kernel)
    wo = x.shape[2] - kw + 1
    patches = _patches(x, kh, kw, n)  # [b, ho, blocks, ...]
    _, ho, blocks = patches.shape[:3]
    # As a 2-D matmul: its gradients then are plain matmuls too, where those of the
    # 4-D form made XLA's CPU backend transpose and copy (the whole step 15-25% slower).
    y = patches.reshape(b * ho * blocks, -1) @ _banded(kernel, n)
    y = y.reshape(b, ho, blocks * n, self.features)[:, :, :wo]
    if not self.use_bias:
      return y
    return y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)


  def _strided(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """im2col with a stride: [b, ho, wo, kh*kw*cin] patches of strided slices, one matmul."""
    kh, kw, cin, f = kernel.shape
    s, b = self.strides, x.shape[0]
    if self.padding != "VALID" or self.width_block != 1:
      raise ValueError("Conv.strides > 1 needs padding 'VALID' and width_block 1")
    ho, wo = (x.shape[1] - kh) // s + 1, (x.shape[2] - kw) // s + 1
    patches = jnp.concatenate([x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
                               for i in range(kh) for j in range(kw)], -1)
    y = (patches.reshape(b * ho * wo, -1) @ kernel.reshape(kh * kw * cin, f)).reshape(
        b, ho, wo, f)
    if not self.use_bias:
      return y
    return y + self.param("bias", nn.initializers.zeros, (f,)).astype(self.dtype)


def _patches(x: jax.Array, kh: int, kw: int, n: int) -> jax.Array:
  """The input values each block of n output columns reads, in _banded's row order."""
  b, h, w, c = x.shape
  ho, wo = h - kh + 1, w - kw + 1
  if n == 1:
    # [b, ho, wo, kh*kw*c]. For the fast CIFAR net's layers this concatenation ran
    # twice as fast as the stacks below, which ran faster for LeNet's blocks than a
    # concatenation of strided slices.
    return jnp.concatenate([x[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)], -1)
  blocks = -(-wo // n)
  x = jnp.pad(x, ((0, 0), (0, 0), (0, blocks * n - wo), (0, 0)))  # blocks tile the width
  span = n + kw - 1
  rows = jnp.stack([x[:, i:i + ho] for i in range(kh)], axis=2)  # [b, ho, kh, w, c]
  return jnp.stack([rows[:, :, :, q * n:q * n + span] for q in range(blocks)], axis=2)


def _banded(kernel: jax.Array, n: int) -> jax.Array:
  """[kh, kw, cin, f] -> [kh * (n+kw-1) * cin, n * f]: entry (i, a, c; t, f) is
  kernel[i, a - t, c, f] where 0 <= a - t < kw, else 0."""
  kh, kw, cin, f = kernel.shape
  span = n + kw - 1
  if n == 1:
    return kernel.reshape(kh * kw * cin, f)
  tap = np.arange(kw)[:, None, None]
  band = (np.arange(span)[None, :, None] == np.arange(n)[None, None, :] + tap)
  return jnp.einsum("jat,ijcf->iactf", band.astype(kernel.dtype), kernel).reshape(
      kh * span * cin, n * f)


class Dense(nn.Dense):
  """flax's nn.Dense (same parameters, names and maths) with the leading axes of its
  input flattened into one. XLA's CPU backend runs the gradient of a [batch, time, in] x
  [in, out] product slower than that of a [batch * time, in] matrix's (the Transformer's
  MLP layer at [12, 64, 128] x [128, 512]: 18 against 11-15 ms here), and the nanoGPT CPU
  configuration's whole gradient took 100 ms instead of 133 with every layer flattened."""

  def __call__(self, inputs: jax.Array) -> jax.Array:
    y = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
    return y.reshape(*inputs.shape[:-1], y.shape[-1])
