"""The supervised classification loop shared by every supervised experiment.

    results = train_and_evaluate(config, workdir)

Validates every input first, builds the mesh, data, model and optimizer from
config, resumes from the newest checkpoint in workdir, trains with periodic
logging/eval/checkpoints, and writes results.json and curves.png.
"""

import dataclasses
import logging
import os
import time
from typing import Any

import jax
import ml_collections

from deeplearn_jax import data, metrics, models, parallel
from deeplearn_jax import run_folder
from deeplearn_jax.checkpoint import abstract_like
from deeplearn_jax.configs import steps_from, train_length
from deeplearn_jax.errors import UserError
from deeplearn_jax.preemption import PreemptionWatcher, checkpoint_and_stop
from deeplearn_jax.train import optimizers
from deeplearn_jax.train import nan_guard
from deeplearn_jax.train.state import (TrainState, load_pretrained, make_init, num_params,
                                       with_pretrained)
from deeplearn_jax.train.steps import make_eval_step, make_train_step


def base_config() -> ml_collections.ConfigDict:
  """Keys shared by every supervised experiment; each experiment fills in its own values."""
  c = ml_collections.ConfigDict()
  c.seed = 0                      # seeds init, data order and dropout
  c.batch_size = 128              # global batch, split over all devices and hosts
  c.eval_batch_size = 1000        # global eval batch (the last one is padded)
  c.num_epochs = 10.0             # training length in epochs ...
  c.num_train_steps = -1          # ... or in steps (wins when > 0)
  c.min_train_steps = 0           # floor on the length, so tiny datasets get enough updates
  c.log_every_steps = 50
  c.log_layer_grad_norms = False  # also log each kernel's gradient norm (grad_norm/<module>)
  c.eval_every_steps = -1         # periodic evaluation on the test split ...
  c.eval_every_epochs = 1.0       # ... or every this many epochs (-1: only at the end)
  c.checkpoint_every_steps = -1   # checkpoint period in steps ...
  c.checkpoint_every_epochs = 1.0  # ... or epochs; always also at the end
  c.keep_checkpoints = 3
  c.l1 = 0.0                      # L1 penalty on weights (sparsity)
  c.l2 = 0.0                      # L2 penalty on weights, added to the loss
  c.max_norm = 0.0                # max-norm constraint on each unit's weights (0 = off)
  c.label_smoothing = 0.0
  c.test_time_flip = False        # evaluate on the mean logits of each image and its mirror
  c.nan_policy = "stop"           # stop | skip | rollback: see deeplearn_jax/train/nan_guard.py
  c.nan_lr_factor = 0.5           # rollback: learning rate multiplier per rollback
  c.nan_max_rollbacks = 3
  c.nan_max_skips = 10            # skip: stop after this many skipped updates
  c.dtype = "float32"             # compute dtype (params stay float32)
  c.progress = True               # progress bar on a terminal
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.data = ml_collections.ConfigDict(dict(
      name="mnist",
      manual_dir="",              # folder with official files: DIR/mnist/*.gz (or $DEEPLEARN_DATA_DIR)
      tfds_data_dir="",           # where TFDS keeps prepared data ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      image_size=0,               # resize images to this square size once at load (0 = native)
      normalize="unit",           # unit ([0, 1]) | standardize (per-channel mean/std) | none
      augment="none",             # training images: none | flip | flip_translate
      augment_pad=2,              # flip_translate: shifts of up to this many pixels
      num_threads=2,              # grain prefetch threads
      num_workers=0,              # grain worker processes making batches (JPEG decoding);
                                  # 0 = threads only
  ))
  c.model = ml_collections.ConfigDict(dict(name="mlp"))
  # Start from parameters saved by checkpoint.save_params (e.g. a DBN's pre-trained
  # stack): their leaves replace the model's of the same name; the rest init as usual.
  c.init_from = ""
  c.optimizer = optimizers.default_config()
  return c


def make_smoke(c: ml_collections.ConfigDict, steps: int = 60) -> None:
  """Shrinks a config in place to a seconds-long run on the embedded digits (`:smoke`)."""
  c.data.name = "digits"
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_train_steps = steps
  c.log_every_steps = 10
  c.checkpoint_every_steps = steps // 3
  c.progress = False


def train_batches(config: ml_collections.ConfigDict, ds: data.Dataset, start_step: int,
                  end_step: int):
  """This process's training batches start_step .. end_step-1, as config sets them up;
  every trainer reads its data through here (and a resume restarts it at its step)."""
  return data.train_batches(ds.train, seed=config.seed, global_batch=config.batch_size,
                            start_step=start_step, end_step=end_step, transform=ds.transform,
                            num_threads=config.data.num_threads,
                            num_workers=config.data.get("num_workers", 0),
                            train_transform=ds.train_transform)


def eval_means(step_fn, split, config: ml_collections.ConfigDict, ds: data.Dataset,
               mesh) -> dict[str, float]:
  """Means over every example of `split`. step_fn(global_batch, batch_index) returns
  sums over the batch's real (mask=1) rows and their `count`."""
  sums = None
  for i, b in enumerate(data.eval_batches(split, global_batch=config.eval_batch_size,
                                          transform=ds.transform,
                                          num_threads=config.data.num_threads,
                                          num_workers=config.data.get("num_workers", 0))):
    out = step_fn(parallel.global_batch(b, mesh), i)
    sums = out if sums is None else jax.tree.map(lambda a, c: a + c, sums, out)
  sums = jax.device_get(sums)
  count = float(sums.pop("count"))
  return {k: float(v) / count for k, v in sums.items()}


@dataclasses.dataclass
class Outcome:
  results: dict[str, Any]
  state: TrainState
  model: Any
  dataset: data.Dataset


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in workdir and returns the figures of results.json."""
  return run(config, workdir).results


def checked_inputs(config: ml_collections.ConfigDict, dataset: data.Dataset | None = None):
  """The checks and data every trainer needs before it touches the workdir:
  returns (mesh, dataset, steps per epoch, total steps). `dataset` replaces the one
  config.data names (e.g. features computed by an earlier stage)."""
  mesh = parallel.make_mesh(config.mesh)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  nan_guard.validate(config)
  ds = dataset or data.load(config.data)
  return (mesh, ds, *train_length(config, len(ds.train)))


def run(config: ml_collections.ConfigDict, workdir: str,
        dataset: data.Dataset | None = None) -> Outcome:
  """train_and_evaluate, also returning the final state, model and data. `dataset`, when
  given, replaces loading config.data's (an experiment that has loaded it already)."""
  # -- validate everything before touching the workdir
  mesh, ds, steps_per_epoch, total_steps = checked_inputs(config, dataset)
  eval_every = steps_from(config, "eval_every", steps_per_epoch)
  ckpt_every = steps_from(config, "checkpoint_every", steps_per_epoch)
  model = models.create(config.model, ds.num_classes, config.dtype)
  tx, lr_fn = optimizers.create(config.optimizer, steps_per_epoch, total_steps)
  init = make_init(model, tx, ds.input_shape, config.seed)
  try:
    abstract = jax.eval_shape(init)
  except (ValueError, TypeError) as e:
    raise UserError(f"model {config.model.name} does not fit {ds.name} inputs "
                    f"{ds.input_shape}: {str(e).splitlines()[0]}") from e
  shardings = parallel.param_sharding(abstract, mesh)
  target = abstract_like(abstract, shardings)
  pretrained = load_pretrained(config.init_from, abstract.params) if config.init_from else None

  # -- workdir: check, compare with an existing run, resume
  ckpt = run_folder.open_run(workdir, config)

  def fresh() -> TrainState:
    state = jax.jit(init, out_shardings=shardings)()  # born sharded
    return state if pretrained is None else with_pretrained(state, pretrained, tx)

  start_step, state = ckpt.restore_or(target, fresh)
  logging.info("%s on %s: %d params, %d steps (%d/epoch), global batch %d over mesh %s",
               config.model.name, ds.name, num_params(state.params), total_steps,
               steps_per_epoch, config.batch_size, dict(mesh.shape))

  train_step = jax.jit(make_train_step(model, tx, config), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(model, ds.num_classes, config.test_time_flip))

  def evaluate(split) -> dict[str, float]:
    return eval_means(lambda batch, _: eval_step(state, batch), split, config, ds, mesh)

  writer = metrics.MetricsWriter(workdir, resume_step=start_step, total_steps=total_steps,
                                 progress=config.progress, desc=config.model.name)

  batches_from = lambda step: train_batches(config, ds, step, total_steps)
  batches = batches_from(start_step)
  guard = nan_guard.NanGuard(config, ckpt)

  def check_finite() -> bool:
    """Applies the NaN policy; True when the loop must restart from a rollback."""
    nonlocal state, step, batches, pending
    state, roll_back = guard.check(state)
    if not roll_back:
      return False
    ckpt.wait()
    back, restored = ckpt.restore_or(target, fresh)
    state = guard.after_rollback(restored, state)
    step, batches, pending = back, batches_from(back), []
    writer.rewind(back)
    return True

  log_every = max(1, config.log_every_steps)
  t0 = time.perf_counter()
  steady_start = None      # wall clock once the first (compiling) step is done
  paused = 0.0             # eval and checkpoint time, left out of the throughput
  steady_steps = 0
  pending: list[dict[str, jax.Array]] = []
  last_train: dict[str, float] = {}
  preemption = PreemptionWatcher()
  step = start_step
  with run_folder.closing(ckpt, writer, preemption):
    while step < total_steps:
      batch = parallel.global_batch(next(batches), mesh)
      state, m = train_step(state, batch)
      pending.append(m)
      done = step = step + 1
      if steady_start is None:
        jax.block_until_ready(m)
        steady_start = time.perf_counter()
      else:
        steady_steps += 1
      if done % log_every == 0 or done == total_steps:
        if check_finite():
          continue
        last_train = metrics.host_mean(pending)
        pending = []
        elapsed = time.perf_counter() - steady_start - paused
        eps = steady_steps * config.batch_size / elapsed if steady_steps and elapsed > 0 else 0.0
        last_train.update(learning_rate=float(lr_fn(done - 1)), examples_per_second=eps,
                          epoch=done / steps_per_epoch)
        writer.write(done, "train", last_train)
        writer.progress(done, loss=last_train["loss"], acc=last_train["accuracy"],
                        ex_s=round(eps))
      if preemption.reached(done) and done != total_steps:
        if check_finite():
          continue
        checkpoint_and_stop(ckpt, done, state)
      periodic_eval = eval_every > 0 and done % eval_every == 0 and done != total_steps
      periodic_ckpt = ckpt_every > 0 and done % ckpt_every == 0 and done != total_steps
      if periodic_eval or periodic_ckpt:
        jax.block_until_ready(state)
        t_pause = time.perf_counter()
        if periodic_ckpt and check_finite():
          continue
        if periodic_eval:
          writer.write(done, "eval", evaluate(ds.test))
        if periodic_ckpt:
          ckpt.save(done, state)
        paused += time.perf_counter() - t_pause
    jax.block_until_ready(state)
    t_end = time.perf_counter()
    ckpt.save(total_steps, state)
    test = evaluate(ds.test)
    writer.write(total_steps, "test", test)

  steady = (t_end - steady_start - paused) if steady_start else 0.0
  timing = {"train_seconds": t_end - t0,
            "examples_per_second": steady_steps * config.batch_size / steady if steady else None}
  if start_step == total_steps and jax.process_index() == 0:
    # A finished run found again: its log and its first results keep the training figures.
    last_train = next((r for r in reversed(metrics.read_metrics(workdir))
                       if r["split"] == "train"), {})
    timing = {k: run_folder.previous_results(workdir).get(k, v) for k, v in timing.items()}
  results = {
      "test_accuracy": test["accuracy"],
      "test_error": 1.0 - test["accuracy"],
      "test_loss": test["loss"],
      "final_train_loss": last_train.get("loss", float("nan")),
      "steps": total_steps,
      "num_params": num_params(state.params),
      **timing,
  }
  if "top5_accuracy" in test:
    results["test_top5_accuracy"] = test["top5_accuracy"]
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
    metrics.plot_curves(workdir, title=f"{config.model.name} on {ds.name}")
  return Outcome(results, state, model, ds)
