"""Random augmentation of in-memory image batches on the host (numpy), drawn from the
pipeline's per-step Generator so a resumed run sees the same images."""

import numpy as np

from deeplearn_jax.errors import DataError

KINDS = ("none", "flip", "flip_translate", "translate")  # translate: the shifts alone (digits)


def flip_translate(images: np.ndarray, rng: np.random.Generator, *, pad: int,
                   flip: bool = True) -> np.ndarray:
  """Random horizontal flips and translations by up to `pad` pixels (reflection-padded
  crops of the original size), each image its own draw. images: [B, H, W, C]."""
  b, h, w, _ = images.shape
  if pad > 0:
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, b))
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    images = padded[np.arange(b)[:, None, None], rows, cols]
  if flip:
    flipped = rng.random(b) < 0.5
    images = images.copy() if pad <= 0 else images
    images[flipped] = images[flipped, :, ::-1]
  return images


def make(kind: str, pad: int):
  """augment(rows, rng) -> rows for config.data.augment, or None for 'none'."""
  if kind not in KINDS:
    raise DataError(f"config.data.augment must be one of {', '.join(KINDS)}, got {kind!r}")
  if kind == "none":
    return None
  return _Augment(0 if kind == "flip" else pad, flip=kind != "translate")


class _Augment:
  """A class, not a closure, so that grain worker processes can pickle it."""

  def __init__(self, pad: int, flip: bool):
    self.pad, self.flip = pad, flip

  def __call__(self, rows: dict, rng: np.random.Generator) -> dict:
    if rows["input"].ndim != 4:
      raise DataError("config.data.augment needs image inputs [N, H, W, C]")
    return {**rows, "input": flip_translate(rows["input"], rng, pad=self.pad, flip=self.flip)}
