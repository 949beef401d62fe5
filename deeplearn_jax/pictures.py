"""Figures saved as PNG: matplotlib figures that leave pyplot's global backend alone
(so a notebook's inline plots keep working), and grids of small images (RBM filters,
Gibbs samples)."""

import math

import numpy as np


def tile(images: np.ndarray, *, pad: int = 1, normalize_each: bool = False) -> np.ndarray:
  """[N, h, w] or [N, h, w, c] -> one near-square image, tiles separated by `pad` pixels
  of the background. normalize_each: stretch each tile to [0, 1] (weights have no range)."""
  images = np.asarray(images, np.float32)
  if normalize_each:
    axes = tuple(range(1, images.ndim))
    lo, hi = images.min(axes, keepdims=True), images.max(axes, keepdims=True)
    images = (images - lo) / np.maximum(hi - lo, 1e-8)
  n, h, w = images.shape[:3]
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *images.shape[3:]), 0.5,
                np.float32)
  for i, im in enumerate(images):
    r, c = divmod(i, cols)
    out[pad + r * (h + pad):(r + 1) * (h + pad), pad + c * (w + pad):(c + 1) * (w + pad)] = im
  return out


def figure(**kwargs):
  """A matplotlib Figure drawn by the Agg canvas, outside pyplot: saving it needs no
  display and switches no backend."""
  from matplotlib.figure import Figure
  return Figure(**kwargs)


def save_grid(path: str, images: np.ndarray, title: str, *, normalize_each: bool = False) -> str:
  """Saves images as one PNG grid with a title."""

  grid = tile(images, normalize_each=normalize_each)
  fig = figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
  ax = fig.subplots()
  ax.imshow(np.clip(grid, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
  ax.set_title(title, fontsize=10)
  ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path
