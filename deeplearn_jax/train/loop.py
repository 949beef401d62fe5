"""The one loop driver every trainer runs on.

    outcome = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=n, total_steps=t)

A trainer (supervised, contrastive divergence, sequence models, RL) supplies only what
is its own in a `Trainer`: its state's init, a pure step (or a chunk of steps), its
input batches (or none, when the step makes its own data), its evaluation, and its
results keys. The driver owns the rest, once for all of them: shardings (state born
sharded), opening or resuming the run folder, jit with donation, the log / eval /
checkpoint cadence, metric reduction, the NaN policy with rollback, preemption,
timing and throughput, the final checkpoint, test row, results.json and curves.png.
"""

import contextlib
import dataclasses
import logging
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections

from deeplearn_jax import metrics, parallel, run_folder
from deeplearn_jax.checkpoint import (Checkpointer, abstract_like, has_checkpoints,
                                     read_checkpoint)
from deeplearn_jax.configs import steps_from
from deeplearn_jax.errors import UserError
from deeplearn_jax.jit_options import RUN_RARELY, optimization_level
from deeplearn_jax.preemption import PreemptionWatcher, checkpoint_and_stop
from deeplearn_jax.train import nan_guard
from deeplearn_jax.train.state import num_params

logger = logging.getLogger(__name__)

Metrics = dict[str, Any]
# Keys of results.json that time a run: a finished run found again keeps the old ones.
TIMING = ("train_seconds", "examples_per_second")


@dataclasses.dataclass
class Trainer:
  """What one kind of training supplies to `run`."""
  name: str                                   # progress bar and log lines
  init: Callable[[], Any]                     # a fresh state; pure (traced, then jitted)
  step: Callable[..., tuple[Any, Metrics]]    # (state[, batch]) -> (state, metrics); pure
  evaluate: Callable[[Any], dict[str, float]]  # periodic evaluation of a state
  results: Callable[[dict, dict, Any], dict]  # (test row, last train row, state) -> figures
  batches: Callable[[int], Iterator] | None = None  # first step -> host batches; None:
                                              # the step makes its own data (RL)
  test: Callable[[Any], dict[str, float]] | None = None  # the final row (default: evaluate)
  after: Callable[[Any, dict], None] | None = None  # pictures, samples: process 0, at the end
  log_extras: Callable[[int], Metrics] | None = None  # more fields of each train row
  progress: dict[str, str] = dataclasses.field(default_factory=dict)  # bar label -> metric
  examples_per_step: int = 0                  # for examples_per_second (0: not reported)
  steps_per_call: int = 1                     # a chunk: one call does this many steps,
                                              # its metrics stacked along a leading axis
  init_error: str = "the state cannot be built"  # prefix of the UserError for a bad init
  shardings: Callable = parallel.param_sharding  # (abstract state, mesh) -> its shardings
                                              # (default: replicated, or split on fsdp)
  keep_best: str = ""                         # an evaluation metric to minimise: the
                                              # parameters of its best row are kept in
                                              # WORKDIR/best (for evaluations on a
                                              # validation split: model selection)


@dataclasses.dataclass
class Outcome:
  """What a run leaves: its results.json figures and its final state."""
  results: dict[str, Any]
  state: Any


def due(step: int, every: int, stride: int = 1) -> bool:
  """Whether a periodic event (every `every` steps; <= 0: never) falls in the last
  `stride` steps up to `step` (one step, or one chunk of steps)."""
  return every > 0 and step // every > (step - stride) // every


def shapes(init: Callable[[], Any], mesh, init_error: str,
           shardings: Callable = parallel.param_sharding) -> tuple[Any, Any]:
  """(abstract state, its shardings) of init's state, without allocating. A state that
  cannot be built (a model that does not fit its inputs) is a UserError."""
  try:
    abstract = jax.eval_shape(init)
  except (ValueError, TypeError) as e:
    raise UserError(f"{init_error}: {str(e).splitlines()[0]}") from e
  return abstract, shardings(abstract, mesh)


def run(config: ml_collections.ConfigDict, workdir: str, trainer: Trainer, *, mesh,
        steps_per_epoch: int, total_steps: int) -> Outcome:
  """Trains `trainer` in workdir from its newest checkpoint (or from init) to
  total_steps, then saves, tests and writes results.json. Every input must have been
  checked before: this is where the run folder is first written."""
  abstract, shardings = shapes(trainer.init, mesh, trainer.init_error, trainer.shardings)
  target = abstract_like(abstract, shardings)
  stride = trainer.steps_per_call
  if stride < 1:
    raise UserError(f"config.steps_per_call must be >= 1, got {stride}")
  if total_steps % stride:
    raise UserError(f"the run's {total_steps} steps are not a whole number of chunks of "
                    f"{stride} steps")
  eval_every = steps_from(config, "eval_every", steps_per_epoch)
  ckpt_every = steps_from(config, "checkpoint_every", steps_per_epoch)
  log_every = max(1, config.log_every_steps)

  ckpt = run_folder.open_run(workdir, config)
  fresh = lambda: jax.jit(trainer.init, out_shardings=shardings,  # born sharded
                          compiler_options=RUN_RARELY)()
  start_step, state = ckpt.restore_or(target, fresh)
  logger.info("%s: %d params, %d steps (%d/epoch) from step %d over mesh %s", trainer.name,
              num_params(state.params), total_steps, steps_per_epoch, start_step,
              dict(mesh.shape))

  step_fn = jax.jit(trainer.step, donate_argnums=0,
                    compiler_options=optimization_level(config.step_optimization_level))
  batches_from = trainer.batches or (lambda start: None)
  writer = metrics.MetricsWriter(workdir, resume_step=start_step, total_steps=total_steps,
                                 progress=config.progress, desc=trainer.name)
  if start_step == total_steps:  # a finished run found again: its test row is redone
    writer.rewind(total_steps, splits_at_step=("test",))
  guard = nan_guard.NanGuard(config, ckpt)
  step, batches, pending = start_step, batches_from(start_step), []

  def rolled_back() -> bool:
    """Applies the NaN policy; True when the loop goes back to the last good checkpoint."""
    nonlocal state, step, batches, pending
    state, roll_back = guard.check(state)
    if roll_back:
      ckpt.wait()
      step, restored = ckpt.restore_or(target, fresh)
      state, batches, pending = guard.after_rollback(restored, state), batches_from(step), []
      writer.rewind(step)
    return roll_back

  timer = _Timer()
  last_train: Metrics = {}
  preemption = PreemptionWatcher()
  best = BestParams(workdir, trainer.keep_best) if trainer.keep_best else None
  with run_folder.closing(ckpt, writer, preemption, *([best] if best else [])):
    while step < total_steps:
      if batches is None:
        state, m = step_fn(state)
      else:
        state, m = step_fn(state, parallel.global_batch(next(batches), mesh))
      pending.append(m)
      step += stride
      timer.stepped(m, stride)
      if due(step, log_every, stride) or step == total_steps:
        if rolled_back():
          continue
        last_train = _mean(pending, stride)
        pending = []
        rate = timer.rate(trainer.examples_per_step)
        extras = trainer.log_extras(step - 1) if trainer.log_extras else {}
        last_train.update(extras, epoch=step / steps_per_epoch)
        if rate is not None:
          last_train["examples_per_second"] = rate
        writer.write(step, "train", last_train)
        shown = {k: last_train[v] for k, v in trainer.progress.items() if v in last_train}
        writer.progress(step, **shown, **({"ex_s": round(rate)} if rate else {}))
      if preemption.reached(step) and step != total_steps:
        if rolled_back():
          continue
        checkpoint_and_stop(ckpt, step, state)
      # The end has its own save and test, after the loop.
      evaluate_now = step != total_steps and due(step, eval_every, stride)
      save_now = step != total_steps and due(step, ckpt_every, stride)
      if evaluate_now or save_now:
        with timer.paused(state):
          if save_now and rolled_back():
            continue
          if evaluate_now:
            row = trainer.evaluate(state)
            writer.write(step, "eval", row)
            if best:
              best.offer(step, row, state.params)
          if save_now:
            ckpt.save(step, state)
    jax.block_until_ready(state)
    timer.stop()
    ckpt.save(total_steps, state)
    test = (trainer.test or trainer.evaluate)(state)
    writer.write(total_steps, "test", test)
    if best:
      best.offer(total_steps, test, state.params)

  timing = {"train_seconds": timer.total(),
            "examples_per_second": timer.average(trainer.examples_per_step)}
  if start_step == total_steps and jax.process_index() == 0:
    # A finished run found again: its log and first results keep the training figures.
    last_train = next((r for r in reversed(metrics.read_metrics(workdir))
                       if r["split"] == "train"), {})
    timing = {k: run_folder.previous_results(workdir).get(k, v) for k, v in timing.items()}
  results = {**trainer.results(test, last_train, state), "steps": total_steps,
             "num_params": num_params(state.params)}
  results.update({k: v for k, v in timing.items() if v is not None})
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
    metrics.plot_curves(workdir, title=trainer.name)
    if trainer.after:
      trainer.after(state, results)
  return Outcome(results, state)


class BestParams:
  """The parameters of the evaluation with the lowest `metric` so far, one checkpoint in
  WORKDIR/best holding {'params', 'value'} (nanoGPT keeps its best checkpoint so on
  small data, where the last one has overfit). A resumed run replays its evaluations
  bit for bit, so the kept one stays the best of them."""

  def __init__(self, workdir: str, metric: str):
    self.metric = metric
    self.ckpt = Checkpointer(best_folder(workdir), keep=1)
    steps = self.ckpt.steps()
    self.step = steps[-1] if steps else -1
    self.value = float(self.ckpt.read(self.step)["value"]) if steps else float("inf")

  def offer(self, step: int, row: dict, params: Any) -> None:
    value = row.get(self.metric, float("inf"))
    if value < self.value and step > self.step:
      self.step, self.value = step, value
      self.ckpt.save(step, {"params": params, "value": jnp.float32(value)})

  def close(self) -> None:
    self.ckpt.close()


def best_folder(workdir: str) -> str:
  return os.path.join(workdir, "best")


def best_params(workdir: str) -> Any | None:
  """The parameters BestParams kept in workdir (numpy), or None when it kept none."""
  folder = best_folder(workdir)
  return read_checkpoint(folder)["params"] if has_checkpoints(folder) else None


def _mean(pending: list[Metrics], stride: int) -> dict[str, float]:
  """Per-metric means over the steps since the last log (chunks' stacked metrics too)."""
  rows = jax.device_get(pending)
  if stride > 1:
    rows = [{k: v[i] for k, v in r.items()} for r in rows for i in range(stride)]
  return metrics.host_mean(rows)


class _Timer:
  """Training wall time, and throughput over the steady steps: the first call (which
  compiles) and the pauses for evaluation and checkpoints are left out."""

  def __init__(self):
    self.start = time.perf_counter()
    self.steady_start = None
    self.steady_steps = 0
    self.pause = 0.0
    self.end = None

  def stepped(self, step_metrics: Metrics, stride: int) -> None:
    if self.steady_start is None:
      jax.block_until_ready(step_metrics)
      self.steady_start = time.perf_counter()
    else:
      self.steady_steps += stride

  def steady_seconds(self, now: float) -> float:
    return now - self.steady_start - self.pause if self.steady_start else 0.0

  def rate(self, per_step: int) -> float | None:
    """Examples per second so far (0.0 until a steady step is done; None: not reported)."""
    if not per_step:
      return None
    seconds = self.steady_seconds(time.perf_counter())
    return self.steady_steps * per_step / seconds if self.steady_steps and seconds > 0 else 0.0

  @contextlib.contextmanager
  def paused(self, state: Any):
    """Time spent inside is not training time (evaluation, checkpoints)."""
    jax.block_until_ready(state)
    start = time.perf_counter()
    try:
      yield
    finally:
      self.pause += time.perf_counter() - start

  def stop(self) -> None:
    self.end = time.perf_counter()

  def total(self) -> float:
    return self.end - self.start

  def average(self, per_step: int) -> float | None:
    if not per_step:
      return None
    seconds = self.steady_seconds(self.end)
    return self.steady_steps * per_step / seconds if seconds > 0 else None
