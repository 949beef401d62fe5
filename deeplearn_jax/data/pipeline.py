"""grain pipelines over index spaces: a batch is a pure function of (seed, step).

The training stream is `range(N) -> shuffle(seed) -> repeat` (grain reshuffles each
epoch), strided over processes so that process p reads rows p, p+P, ... of every
global batch. Global batch s therefore holds the same examples for any number of
processes, and resuming at step s needs nothing but s.
"""

import math
from typing import Callable, Iterator, Protocol

import grain
import jax
import numpy as np

Batch = dict[str, np.ndarray]


class Split(Protocol):
  def __len__(self) -> int: ...
  def gather(self, indices: np.ndarray) -> Batch: ...


class ArraySplit:
  """A split held in memory as numpy arrays with a common first axis."""

  def __init__(self, arrays: Batch):
    self.arrays = arrays
    self._n = len(next(iter(arrays.values())))

  def __len__(self) -> int:
    return self._n

  def gather(self, indices: np.ndarray) -> Batch:
    return {k: v[indices] for k, v in self.arrays.items()}


def _read_options(num_threads: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, 2 * num_threads))


def train_batches(split: Split, *, seed: int, global_batch: int, start_step: int,
                  end_step: int, transform: Callable[[Batch], Batch],
                  num_threads: int = 2) -> Iterator[Batch]:
  """This process's rows of global batches start_step .. end_step-1."""
  n = len(split)
  if global_batch > n:
    raise ValueError(f"batch_size {global_batch} exceeds the {n} training examples")
  procs, me = jax.process_count(), jax.process_index()
  epochs = math.ceil(end_step * global_batch / n) + 1
  ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(epochs)
  ds = ds[me::procs].batch(global_batch // procs, drop_remainder=True)
  ds = ds[start_step:end_step].map(lambda idx: transform(split.gather(idx)))
  return iter(ds.to_iter_dataset(_read_options(num_threads)))


def eval_batches(split: Split, *, global_batch: int, transform: Callable[[Batch], Batch],
                 num_threads: int = 2) -> Iterator[Batch]:
  """Every example once, in order; the last batch is padded and `mask` marks real rows."""
  n = len(split)
  procs, me = jax.process_count(), jax.process_index()
  padded = math.ceil(n / global_batch) * global_batch

  def load(idx: np.ndarray) -> Batch:
    batch = transform(split.gather(np.minimum(idx, n - 1)))
    batch["mask"] = (idx < n).astype(np.float32)
    return batch

  ds = grain.MapDataset.range(padded)[me::procs].batch(global_batch // procs).map(load)
  return iter(ds.to_iter_dataset(_read_options(num_threads)))
