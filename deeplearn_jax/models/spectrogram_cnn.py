"""A small CNN over a spectrogram of variable length (spoken digits)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplearn_jax.models import layers


class SpectrogramCNN(nn.Module):
  """Blocks of 3x3 conv (ReLU) + 2x2 max pooling over [batch, time, bands] features, then
  each channel's mean and max over the valid frames and bands, dropout and a linear
  head. `lengths` [batch] (frames) keeps padded frames out: they are zeroed after every
  block and left out of the pooling over time, so a clip's logits do not depend on how
  much padding its batch has (up to the edges of the 2x2 pools)."""

  num_classes: int
  channels: Sequence[int] = (32, 64, 128)
  dropout: float = 0.3
  conv: str = "auto"            # auto | im2col | lax (see layers.conv_kind)
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False, lengths=None):
    if not self.channels:
      raise ValueError("SpectrogramCNN needs at least one conv block (channels)")
    x = x.astype(self.dtype)[..., None]                  # [b, t, bands, 1]
    b, t = x.shape[:2]
    lengths = jnp.full((b,), t) if lengths is None else jnp.asarray(lengths)
    fast = layers.conv_kind(self.conv) == "im2col"
    for i, n in enumerate(self.channels):
      conv = (layers.Conv(n, (3, 3), dtype=self.dtype, name=f"conv{i}") if fast
              else nn.Conv(n, (3, 3), dtype=self.dtype, name=f"conv{i}"))
      x = layers.pool(nn.relu(conv(x)), "max", self.conv)
      lengths = (lengths + 1) // 2                      # frames that saw a valid one
      valid = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None, None]
      x = jnp.where(valid, x, 0.0)
    count = jnp.maximum(lengths, 1)[:, None] * x.shape[2]
    mean = x.sum(axis=(1, 2)) / count
    peak = jnp.where(valid, x, -jnp.inf).max(axis=(1, 2))
    h = nn.Dropout(self.dropout, deterministic=not train)(jnp.concatenate([mean, peak], -1))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(h).astype(jnp.float32)
