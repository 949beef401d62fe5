"""The run folder: default name, a writability check, config.json, and refusing to
resume a run of another config."""

import contextlib
import datetime
import json
import logging
import os
import tempfile
from typing import Any

import jax
import ml_collections

from deeplearn_jax.checkpoint import Checkpointer, has_checkpoints
from deeplearn_jax.configs import flatten, to_dict
from deeplearn_jax.errors import WorkdirError

logger = logging.getLogger(__name__)

# Key prefixes that may change between a run and its resumption: durations, periods,
# logging, how the step is compiled (the same bits at any level), data locations and
# readers, the NaN policy, and how the model is evaluated (eval.*, test_time_flip:
# measures taken on the trained state).
RESUMABLE = ("num_epochs", "num_train_steps", "min_train_steps", "log_every_steps",
             "log_layer_grad_norms", "eval_every_steps", "eval_every_epochs",
             "checkpoint_every_steps", "checkpoint_every_epochs", "keep_checkpoints",
             "progress", "step_optimization_level", "data.manual_dir",
             "data.tfds_data_dir", "data.num_threads", "data.num_workers", "nan_", "eval.",
             "test_time_flip")


@contextlib.contextmanager
def closing(*parts):
  """Closes every part (checkpointer, metrics writer, signal watcher) on exit, in reverse
  order, each even if another fails. An error already ending the run stays the one
  raised: a close that fails behind it (a full disk fails them all) is only logged."""
  failed = True
  try:
    yield
    failed = False
  finally:
    first = None
    for part in reversed(parts):
      try:
        part.close()
      except Exception as e:
        if failed:  # the run's own error is the one to report
          logger.warning("closing %s after an error failed too: %s", type(part).__name__, e)
        else:  # raised below, once every part is closed
          first = first or e
    if first is not None:
      raise first


def default(name: str) -> str:
  """A new run folder under ./runs/, named for the experiment and the time."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", f"{name}-{stamp}")


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes JSON beside `path`, then renames it into place: complete or absent."""
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(tmp, path)
  except OSError as e:
    raise WorkdirError(f"cannot write {path} ({e.strerror or e})") from e


def previous_results(workdir: str) -> dict[str, Any]:
  """The run's results.json, or {} when there is none (yet) or it is unreadable."""
  try:
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
      old = json.load(f)
    return old if isinstance(old, dict) else {}
  except (OSError, ValueError):
    return {}


def check_writable(workdir: str) -> None:
  """Creates workdir if needed and proves a file can be written there."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test"):
      pass
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror or e})") from e


def prepare(workdir: str, config: ml_collections.ConfigDict, has_checkpoint: bool) -> None:
  """Checks an existing run's config against this one, then writes config.json.

  Call after every input has been validated, so a bad run leaves no folder behind.
  """
  path = os.path.join(workdir, "config.json")
  new = to_dict(config)
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        old = json.load(f)
      if not isinstance(old, dict):
        raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
      raise WorkdirError(f"{path} is unreadable ({e}); move the workdir away or pick "
                         "another --workdir") from e
    a, b = flatten(old), flatten(new)
    # Keys in one config only come from another version of the code (configs are
    # locked), with their defaults: they do not make the run another run.
    diff = sorted(k for k in set(a) & set(b)
                  if a[k] != b[k] and not k.startswith(RESUMABLE))
    if diff and has_checkpoint:
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
      raise WorkdirError(f"workdir {workdir} holds a checkpoint of another config ({shown}"
                         f"{' ...' if len(diff) > 4 else ''}); use another --workdir")
  if jax.process_index() == 0:
    atomic_write_json(path, new)


def start(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Starts a parent run folder (a sweep's, or an experiment's of several stages):
  checks it is writable and writes config.json. Each child run inside it guards its own
  checkpoints, so a parent may change (say, a sweep gaining a child) and still resume."""
  check_writable(workdir)
  prepare(workdir, config, has_checkpoint=False)


def open_run(workdir: str, config: ml_collections.ConfigDict) -> Checkpointer:
  """Checks the workdir, refuses a run of another config, writes config.json, and
  returns the run's checkpointer. Every trainer starts its run folder here."""
  check_writable(workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  prepare(workdir, config, has_checkpoint=has_checkpoints(ckpt_dir))
  return Checkpointer(ckpt_dir, keep=config.keep_checkpoints)
