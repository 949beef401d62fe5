"""What every trainer checks and reads before and during its run: the mesh, the data,
the run's length, training batches by step, and means over an evaluation split."""

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
