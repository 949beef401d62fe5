"""Several child runs in one parent run folder: the data loaded once, each child in its
own resumable sub-folder, one results.json with `runs`, and a plot across them.

    results = sweep.run(config, workdir, children, train, plot=...)

`children` maps a run's name to its complete config, built (and so checked) before
anything is written; `train(child_config, child_workdir, dataset)` returns that run's
figures. Rerunning the same command resumes every child where it stopped (a finished
one is only re-evaluated), so adding a child to the sweep trains just that one.
"""

import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from deeplearn_jax import data, run_folder
from deeplearn_jax.errors import UserError

TrainFn = Callable[[ml_collections.ConfigDict, str, data.Dataset | None], dict[str, Any]]


def run(config: ml_collections.ConfigDict, workdir: str,
        children: dict[str, ml_collections.ConfigDict], train: TrainFn, *,
        dataset: data.Dataset | None = None, shared_data: bool = True,
        plot: Callable[[str, dict[str, dict]], None] | None = None,
        summarize: Callable[[dict[str, dict]], dict] | None = None) -> dict[str, Any]:
  """Runs every child in order in workdir/<name> and writes workdir/results.json:
  {"runs": {name: figures}, **summarize(runs)}. `plot(workdir, runs)` draws across
  them (process 0 only). The children share `dataset` (default: config.data's, decoded
  once); with shared_data=False each child makes its own and `train` gets None."""
  run_folder.start(workdir, config)
  ds = (dataset or data.load(config.data)) if shared_data else None
  runs = {name: train(child, os.path.join(workdir, name), ds)
          for name, child in children.items()}
  results = {"runs": runs, **(summarize(runs) if summarize else {})}
  if jax.process_index() == 0:
    if plot:
      plot(workdir, runs)
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results


def over_seeds(config: ml_collections.ConfigDict, workdir: str,
               train: Callable[[ml_collections.ConfigDict, str], dict[str, Any]],
               count: int) -> dict[str, Any]:
  """A whole experiment (`train(config, workdir)`, as the command line runs it) once per
  seed, config.seed .. config.seed + count - 1, each in workdir/seed<k> and each
  resumable; results.json: {"runs": {name: figures}, "spread": the mean, std, min and
  max of every number the runs report at their top level}."""
  if count < 1:
    raise UserError(f"--seeds must be >= 1, got {count}")

  def summarize(runs: dict[str, dict]) -> dict:
    first = next(iter(runs.values()))
    numbers = tuple(k for k, v in first.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool))
    return {"spread": spread(runs, numbers)}

  # Each run loads its own data, as the experiment does when run alone.
  return run(config, workdir, seeds(config, count), lambda c, w, _: train(c, w),
             shared_data=False, summarize=summarize)


def seeds(config: ml_collections.ConfigDict, count: int) -> dict[str, ml_collections.ConfigDict]:
  """`count` children that differ only in their seed (seed, seed+1, ...): the spread
  of a stochastic result."""
  out = {}
  for i in range(count):
    child = ml_collections.ConfigDict(config.to_dict())
    child.seed = config.seed + i
    child.lock()
    out[f"seed{child.seed}"] = child
  return out


def spread(runs: dict[str, dict], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
  """Mean, standard deviation (n-1), min and max of each numeric key over the runs."""
  out = {}
  for key in keys:
    values = np.array([r[key] for r in runs.values() if isinstance(r.get(key), (int, float))],
                      dtype=np.float64)
    if values.size:
      out[key] = {"mean": float(values.mean()), "min": float(values.min()),
                  "max": float(values.max()), "n": int(values.size),
                  "std": float(values.std(ddof=1)) if values.size > 1 else 0.0}
  return out
