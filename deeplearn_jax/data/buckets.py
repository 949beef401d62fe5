"""Variable-length examples kept in length buckets, so that a batch is padded to its
bucket's width, not to the longest example of the data (a tree or a sequence costs as
many sequential steps as its width).

    split = buckets.Buckets([ArraySplit(width_16_rows), ArraySplit(width_32_rows), ...])

inputs.train_batches and inputs.eval_means recognise a Buckets split: training batch s
comes from one bucket drawn with probability proportional to its size, its rows drawn
from that bucket without replacement, all from rng(seed, s), so a resumed run reads the
same batches (one process only); evaluation reads every bucket in order.
"""

import numpy as np

from deeplearn_jax.data.pipeline import ArraySplit, Batch


class Buckets:
  """A split as ArraySplits of increasing width (a Split: len and gather, where one
  gather must stay inside one bucket)."""

  def __init__(self, parts: list[ArraySplit]):
    self.parts = [p for p in parts if len(p)]
    if not self.parts:
      raise ValueError("every bucket is empty")
    self._starts = np.cumsum([0] + [len(p) for p in self.parts])

  def __len__(self) -> int:
    return int(self._starts[-1])

  def gather(self, indices: np.ndarray) -> Batch:
    indices = np.asarray(indices)
    part = np.searchsorted(self._starts, indices, side="right") - 1
    if np.any(part != part[0]):
      raise ValueError("a Buckets gather must stay inside one bucket")
    return self.parts[part[0]].gather(indices - self._starts[part[0]])

  def train_batches(self, seed: int, global_batch: int, start_step: int, end_step: int,
                    transform):
    sizes = np.asarray([len(p) for p in self.parts], np.float64)
    if global_batch > sizes.max():
      raise ValueError(f"batch_size {global_batch} exceeds every bucket ({sizes.max():.0f})")
    for step in range(start_step, end_step):
      rng = np.random.default_rng([seed, step])
      # Buckets smaller than a batch are left out of training (kept for evaluation).
      p = np.where(sizes >= global_batch, sizes, 0.0)
      part = self.parts[rng.choice(len(sizes), p=p / p.sum())]
      yield transform(part.gather(rng.choice(len(part), global_batch, replace=False)))


def split_by_length(lengths: np.ndarray, widths: tuple[int, ...]) -> list[np.ndarray]:
  """Indices of the examples of each bucket: the first width >= the example's length.
  An example longer than the last width is a ValueError."""
  widths = sorted(widths)
  if lengths.size and lengths.max() > widths[-1]:
    raise ValueError(f"an example of length {lengths.max()} exceeds the widest bucket "
                     f"{widths[-1]}")
  which = np.searchsorted(np.asarray(widths), lengths, side="left")
  return [np.flatnonzero(which == i) for i in range(len(widths))]
