"""The one metrics writer: metrics.jsonl, TensorBoard events, a progress bar and curves.png.

Only process 0 writes; other processes get a writer that does nothing, so trainers
call it unconditionally.
"""

import json
import math
import os
import time
from collections import defaultdict
from typing import Any

import jax
import numpy as np

from deeplearn_jax import pictures
from deeplearn_jax.errors import WorkdirError


class MetricsWriter:
  """Each metrics.jsonl row also gets `wall_seconds`: the run's wall time when it was
  logged, counted from its first start and continued on resume from the last row kept
  (the time between a kill and the resume is not counted)."""

  def __init__(self, workdir: str, *, resume_step: int = 0, total_steps: int | None = None,
               progress: bool = True, desc: str = "train"):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.workdir = workdir
    self._tb = None
    self._bar = None
    self._file = None
    self._started = time.monotonic()
    self._earlier_seconds = 0.0
    if not self.active:
      return
    self._earlier_seconds = self.rewind(resume_step)
    from tensorboardX import SummaryWriter  # imported here: only process 0 needs it
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)
    self._file = open(self.path, "a", encoding="utf-8")
    if progress and total_steps:
      from tqdm.auto import tqdm
      # disable=None: no bar when stderr is not a terminal (CI logs stay readable).
      self._bar = tqdm(total=total_steps, initial=resume_step, desc=desc, unit="step",
                       dynamic_ncols=True, disable=None)

  def rewind(self, step: int, splits_at_step: tuple[str, ...] = ()) -> float:
    """On resume or rollback, drop lines past `step` (and those of `splits_at_step` at
    `step`): they are logged again. Returns the largest `wall_seconds` of the lines kept."""
    if not self.active or not os.path.exists(self.path):
      return 0.0
    if self._file is not None:
      self._file.flush()
    with open(self.path, encoding="utf-8") as f:
      lines = [l for l in f if l.strip()]
    keep, seconds = [], 0.0
    for line in lines:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      at = row.get("step", 0)
      if at < step or (at == step and row.get("split") not in splits_at_step):
        keep.append(line)
        seconds = max(seconds, float(row.get("wall_seconds", 0.0)))
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(keep)
    os.replace(tmp, self.path)
    if self._file is not None:  # reopen: the old handle is the old file
      self._file.close()
      self._file = open(self.path, "a", encoding="utf-8")
    return seconds

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    """Appends one row (step, split, metrics, wall_seconds) and its TensorBoard scalars."""
    if not self.active:
      return
    clean = {k: _to_python(v) for k, v in metrics.items()}
    wall = round(self._earlier_seconds + time.monotonic() - self._started, 3)
    row = {"step": int(step), "split": split, **clean, "wall_seconds": wall}
    try:
      self._file.write(json.dumps(row) + "\n")
      self._file.flush()
    except OSError as e:
      raise WorkdirError(f"cannot write {self.path} ({e.strerror or e})") from e
    for k, v in clean.items():
      if isinstance(v, (int, float)) and math.isfinite(v):
        self._tb.add_scalar(f"{split}/{k}", v, step)

  def progress(self, step: int, **postfix: Any) -> None:
    """Moves the progress bar to `step`, showing `postfix`."""
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      if postfix:
        self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

  def close(self) -> None:
    """Closes the bar, metrics.jsonl and the TensorBoard writer."""
    if not self.active:
      return
    if self._bar is not None:
      self._bar.close()
    self._file.close()
    self._tb.close()


def host_mean(pending: list[dict[str, Any]]) -> dict[str, float]:
  """Per-metric means of a list of per-step metric dicts (fetched from the devices once)."""
  stacked = jax.device_get(pending)
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _to_python(v: Any) -> Any:
  if isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v) == 0:
    v = v.item()
  if isinstance(v, np.generic):
    v = v.item()
  return v


def _fmt(v: Any) -> str:
  return f"{v:.4g}" if isinstance(v, float) else str(v)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every row of a run's metrics.jsonl, in order."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(l) for l in f if l.strip()]


def plot_curves(workdir: str, title: str = "") -> str | None:
  """Draws loss and accuracy per split against step into workdir/curves.png."""
  if jax.process_index() != 0:
    return None

  series: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
  for rec in read_metrics(workdir):
    for name in ("loss", "accuracy"):
      if isinstance(rec.get(name), (int, float)):
        series[name][rec["split"]].append((rec["step"], rec[name]))
  if not series:
    return None
  fig = pictures.figure(figsize=(5 * len(series), 3.6))
  axes = fig.subplots(1, len(series), squeeze=False)
  for ax, (name, by_split) in zip(axes[0], sorted(series.items(), reverse=True)):
    for split, pts in sorted(by_split.items()):
      xs, ys = zip(*pts)
      ax.plot(xs, ys, "-" if len(pts) > 1 else "o", label=split)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    if name == "loss":
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  path = os.path.join(workdir, "curves.png")
  fig.savefig(path, dpi=110)
  return path
