"""What every trainer checks and reads before and during its run: the mesh, the data,
the run's length, training batches by step, and means over an evaluation split."""

import jax
import ml_collections
import numpy as np

from deeplearn_jax import data, parallel
from deeplearn_jax.configs import train_length
from deeplearn_jax.data.buckets import Buckets
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
  split (data/buckets.py) draws its own batches."""
  if isinstance(ds.train, Buckets):
    return ds.train.train_batches(config.seed, config.batch_size, start_step, end_step,
                                  ds.transform)
  return data.train_batches(ds.train, seed=config.seed, global_batch=config.batch_size,
                            start_step=start_step, end_step=end_step, transform=ds.transform,
                            num_threads=config.data.num_threads,
                            num_workers=config.data.num_workers,
                            train_transform=ds.train_transform)


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
