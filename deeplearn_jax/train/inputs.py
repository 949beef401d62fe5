"""What every trainer checks and reads before and during its run: the mesh, the data,
the run's length, training batches by step (`Feed`: in chunks of steps, or gathered on
the devices), and means over an evaluation split."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import data, parallel
from deeplearn_jax.configs import train_length
from deeplearn_jax.data.buckets import Buckets
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import nan_guard


def checked(config: ml_collections.ConfigDict, dataset: data.Dataset | None = None):
  """The checks and data every trainer needs before it touches the workdir:
  returns (mesh, dataset, steps per epoch, total steps). `dataset` replaces the one
  config.data names (e.g. features computed by an earlier stage)."""
  mesh = parallel.make_mesh(config.mesh)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  nan_guard.validate(config)
  ds = dataset or data.load(config.data)
  return (mesh, ds, *train_length(config, len(ds.train)))


def train_batches(config: ml_collections.ConfigDict, ds: data.Dataset, start_step: int,
                  end_step: int):
  """This process's training batches start_step .. end_step-1: batch s is a function of
  (seed, s), so a resume restarts the data exactly where it stopped. A length-bucketed
  split (data/buckets.py) draws its own batches. With config.steps_per_call = k > 1,
  chunks of k batches laid out [rows, k, ...], for a step made by `scanned`."""
  k = config.get("steps_per_call", 1)
  if config.data.get("on_device", False):  # Feed serves it; a trainer without one cannot
    raise UserError("config.data.on_device is for supervised and RBM training only")
  if isinstance(ds.train, Buckets):
    if k != 1:
      raise UserError("config.steps_per_call > 1 needs batches of one shape; this "
                      "dataset's are bucketed by length")
    return ds.train.train_batches(config.seed, config.batch_size, start_step, end_step,
                                  ds.transform)
  return data.train_batches(ds.train, seed=config.seed, global_batch=config.batch_size,
                            start_step=start_step, end_step=end_step, transform=ds.transform,
                            num_threads=config.data.num_threads,
                            num_workers=config.data.num_workers,
                            train_transform=ds.train_transform, steps_per_chunk=k)


def scanned(step, k: int):
  """A train step (state, batch) -> (state, metrics) made into one over a chunk of
  train_batches' [rows, k, ...] batches (k = config.steps_per_call; k = 1: `step` as it
  is): a lax.scan over the k steps, one compiled call and one host transfer for all of
  them (the host loop, not the device, bounds small models on a GPU); the metrics come
  stacked along a leading axis of k, as the loop driver expects of a chunk."""
  if k == 1:
    return step

  def chunk_step(state, chunk):
    return jax.lax.scan(step, state, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), chunk))

  return chunk_step


class _Indices:
  """A split of n rows whose gather returns the row numbers themselves."""

  def __init__(self, n: int):
    self.n = n

  def __len__(self) -> int:
    return self.n

  def gather(self, indices: np.ndarray) -> data.Batch:
    return {"index": indices.astype(np.int32)}


def _identity(batch: data.Batch) -> data.Batch:
  return batch


class Feed:
  """A trainer's training batches and the step that takes them, by config.steps_per_call
  (k batches a compiled call) and config.data.on_device.

  on_device: the raw training split (e.g. MNIST's uint8 images, 47 MB) is put on every
  device once, and each step receives only the row numbers of its batch (the same
  (seed, step) stream as the host path) and gathers and normalises the rows inside the
  compiled step. On a GPU the host's gathering and conversion of a batch cost about as
  much as a small model's step; this removes both. The step's inputs are the same as
  the host's, bit for bit (but for standardizing: see data.Normalize)."""

  def __init__(self, config: ml_collections.ConfigDict, ds: data.Dataset, mesh):
    self.config, self.ds = config, ds
    self.k = config.get("steps_per_call", 1)
    self.rows = None
    if config.data.get("on_device", False):
      if (not isinstance(ds.train, data.ArraySplit) or ds.train_transform is not None
          or not isinstance(ds.transform, data.Normalize)):
        raise UserError(f"config.data.on_device needs a dataset held in memory as arrays "
                        f"and no augmentation; {ds.name} is not")
      self.rows = {k: parallel.replicated_array(v, mesh) for k, v in ds.train.arrays.items()}

  def batches(self, start_step: int, end_step: int):
    """Host batches start_step .. end_step-1 (chunks of k), as train_batches."""
    if self.rows is None:
      return train_batches(self.config, self.ds, start_step, end_step)
    c = self.config
    index = data.train_batches(_Indices(len(self.ds.train)), seed=c.seed,
                               global_batch=c.batch_size, start_step=start_step,
                               end_step=end_step, transform=_identity,
                               num_threads=c.data.num_threads, steps_per_chunk=self.k)
    return ({"index": b["index"], "rows": self.rows} for b in index)

  def step(self, step):
    """`step` (state, batch) -> (state, metrics) made into the step of these batches."""
    if self.rows is None:
      return scanned(step, self.k)
    normalize = self.ds.transform.on_device

    def gathered(state, index, rows):
      batch = normalize(jax.tree.map(lambda a: a[index], rows))
      # Unfused from the model's first layer, which then compiles as for a host batch
      # (fused, its float32 sums came out 1 ulp apart).
      return step(state, jax.lax.optimization_barrier(batch))

    def chunk_step(state, batch):  # only the row numbers are scanned over
      rows = batch["rows"]
      return scanned(lambda s, index: gathered(s, index, rows), self.k)(state, batch["index"])

    return chunk_step


def eval_means(step_fn, split, config: ml_collections.ConfigDict, ds: data.Dataset,
               mesh) -> dict[str, float]:
  """Means over every example of `split`. step_fn(global_batch, batch_index) returns
  sums over the batch's real (mask=1) rows and their `count`. A length-bucketed split
  is read bucket by bucket."""
  sums, i = None, 0
  for part in split.parts if isinstance(split, Buckets) else [split]:
    for b in data.eval_batches(part, global_batch=config.eval_batch_size,
                               transform=ds.transform, num_threads=config.data.num_threads,
                               num_workers=config.data.num_workers):
      out = step_fn(parallel.global_batch(b, mesh), i)
      sums = out if sums is None else jax.tree.map(lambda a, c: a + c, sums, out)
      i += 1
  sums = jax.device_get(sums)
  count = float(sums.pop("count"))
  return {k: float(v) / count for k, v in sums.items()}


def predictions(apply_fn, split, config: ml_collections.ConfigDict, ds: data.Dataset,
                mesh) -> np.ndarray:
  """apply_fn(global batch) -> per-row outputs, for every row of `split` in order (the
  last batch's padding dropped): e.g. scores for a ROC curve. One process: a
  multi-process run's global outputs are not all addressable here."""
  outs = [np.asarray(jax.device_get(apply_fn(parallel.global_batch(b, mesh))))
          for b in data.eval_batches(split, global_batch=config.eval_batch_size,
                                     transform=ds.transform,
                                     num_threads=config.data.num_threads,
                                     num_workers=config.data.num_workers)]
  return np.concatenate(outs)[:len(split)]
