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
from absl import flags

Batch = dict[str, np.ndarray]
RandomTransform = Callable[[Batch, np.random.Generator], Batch]


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


def _iterate(ds: grain.MapDataset, num_threads: int, num_workers: int) -> Iterator[Batch]:
  """num_workers > 0: batches made in that many processes, each with num_threads threads;
  the batches and their order do not change. The processes are spawned: `ds` (split and
  transforms included) must pickle, and a script needs `if __name__ == "__main__":`."""
  it = ds.to_iter_dataset(_read_options(num_threads))
  if num_workers > 0:
    if not flags.FLAGS.is_parsed():
      # grain 0.2 reads its absl flags when the workers start, which fails in programs
      # that do not parse flags (tests, notebooks): google/grain#1355.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(it)


# An index array [rows] reads one batch; [steps, rows] (a chunk) reads `steps` batches
# as one, laid out [rows, steps, ...] so that the rows stay the axis the mesh splits.
def _rows(idx: np.ndarray) -> np.ndarray:
  return idx.T.reshape(-1)


def _as_chunk(batch: Batch, idx: np.ndarray) -> Batch:
  if idx.ndim == 1:
    return batch
  return {k: v.reshape(idx.shape[1], idx.shape[0], *v.shape[1:]) for k, v in batch.items()}


# What is mapped over index batches: classes rather than closures, so that worker
# processes receive just the split and the transform (the class pickles by reference).
class _Load:
  def __init__(self, split: Split, transform: Callable[[Batch], Batch]):
    self.split, self.transform = split, transform

  def __call__(self, idx: np.ndarray) -> Batch:
    return _as_chunk(self.transform(self.split.gather(_rows(idx))), idx)


class _RandomLoad:
  def __init__(self, split: Split, transform: RandomTransform):
    self.split, self.transform = split, transform

  def __call__(self, idx: np.ndarray, rng: np.random.Generator) -> Batch:
    return _as_chunk(self.transform(self.split.gather(_rows(idx)), rng), idx)


class _PaddedLoad:
  """Indices >= n (padding of the last batch) read row n-1 and get mask 0."""

  def __init__(self, split: Split, transform: Callable[[Batch], Batch]):
    self.split, self.transform = split, transform

  def __call__(self, idx: np.ndarray) -> Batch:
    n = len(self.split)
    batch = self.transform(self.split.gather(np.minimum(idx, n - 1)))
    batch["mask"] = (idx < n).astype(np.float32)
    return batch


def train_batches(split: Split, *, seed: int, global_batch: int, start_step: int,
                  end_step: int, transform: Callable[[Batch], Batch], num_threads: int = 2,
                  train_transform: RandomTransform | None = None,
                  num_workers: int = 0, steps_per_chunk: int = 1) -> Iterator[Batch]:
  """This process's rows of global batches start_step .. end_step-1.

  train_transform(raw rows, rng), when given, replaces transform (random augmentation):
  its numpy Generator is derived from (seed, step), so a resumed run draws the same.
  num_workers > 0 makes batches in worker processes (e.g. JPEG decoding): same batches.
  steps_per_chunk = k > 1: each item holds the next k batches, every array laid out
  [rows, k, ...] (the same examples as k single batches; one augmentation generator per
  chunk); start_step and end_step must then be multiples of k."""
  n = len(split)
  if global_batch > n:
    raise ValueError(f"batch_size {global_batch} exceeds the {n} training examples")
  k = steps_per_chunk
  if start_step % k or end_step % k:
    raise ValueError(f"steps {start_step}..{end_step} are not whole chunks of {k} steps")
  procs, me = jax.process_count(), jax.process_index()
  epochs = math.ceil(end_step * global_batch / n) + 1
  ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(epochs)
  ds = ds[me::procs].batch(global_batch // procs, drop_remainder=True)
  if k > 1:  # fewer, larger items: grain's and the host loop's cost per item is paid once
    ds = ds.batch(k, drop_remainder=True)
  if train_transform is None:
    ds = ds.map(_Load(split, transform))
  else:  # before slicing, so that step s always gets the same generator
    ds = ds.random_map(_RandomLoad(split, train_transform), seed=seed)
  ds = ds[start_step // k:end_step // k]
  return _iterate(ds, num_threads, num_workers)


def eval_batches(split: Split, *, global_batch: int, transform: Callable[[Batch], Batch],
                 num_threads: int = 2, num_workers: int = 0) -> Iterator[Batch]:
  """Every example once, in order; the last batch is padded and `mask` marks real rows."""
  n = len(split)
  procs, me = jax.process_count(), jax.process_index()
  padded = math.ceil(n / global_batch) * global_batch
  ds = grain.MapDataset.range(padded)[me::procs].batch(global_batch // procs)
  return _iterate(ds.map(_PaddedLoad(split, transform)), num_threads, num_workers)
