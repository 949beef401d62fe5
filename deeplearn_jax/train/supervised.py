"""The supervised classification trainer, on the one loop driver (train/loop.py).

    results = train_and_evaluate(config, workdir)

Builds the mesh, data, model and optimizer from config and hands the loop its state,
its train step (cross-entropy with optional L1/L2, max-norm and label smoothing), its
batches and its evaluation on the test split. results.json: test accuracy, error and
loss, the final train loss, steps, parameters, time and throughput.
"""

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from deeplearn_jax import configs, data, models
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import inputs, loop, optimizers
from deeplearn_jax.train import steps as steps_lib
from deeplearn_jax.train.state import (TrainState, load_pretrained, make_init,
                                       pretrained_leaves, starting_from)
from deeplearn_jax.train.steps import make_eval_step, make_train_step


def base_config() -> ml_collections.ConfigDict:
  """configs.base() plus the keys of supervised training; each experiment fills in
  its own values."""
  c = configs.base()
  c.steps_per_call = 1            # steps per compiled call (a lax.scan over a chunk of
                                  # batches): > 1 when the host loop bounds a small model
  c.log_layer_grad_norms = False  # also log each kernel's gradient norm (grad_norm/<module>)
  c.l1 = 0.0                      # L1 penalty on weights (sparsity)
  c.l2 = 0.0                      # L2 penalty on weights, added to the loss
  c.max_norm = 0.0                # max-norm radius of each unit's incoming weights (0 = off);
                                  # the MLP's in Srivastava et al.'s units (losses.max_norm)
  c.label_smoothing = 0.0
  c.loss = "softmax"              # softmax (integer labels) | masked_bce (multi-label
                                  # [n, tasks], -1 = missing, optional per-entry 'weight')
  c.test_time_flip = False        # evaluate on the mean logits of each image and its mirror
  c.dtype = "float32"             # compute dtype (params stay float32)
  c.model = ml_collections.ConfigDict(dict(name="mlp"))
  # Start from parameters saved by checkpoint.save_params (e.g. a DBN's pre-trained
  # stack) or from a run folder's newest checkpoint (continued training, fine-tuning):
  # their leaves replace the model's of the same name; the rest init as usual.
  c.init_from = ""
  # With init_from: parameters whose path contains one of these (e.g. 'output', the
  # head) are not loaded but initialised; every other one must then be in init_from.
  c.init_from_skip = ()
  c.optimizer = optimizers.default_config()
  return c


@dataclasses.dataclass
class Outcome:
  """A supervised run's results, final state, model and data."""
  results: dict[str, Any]
  state: TrainState
  model: Any
  dataset: data.Dataset


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in workdir and returns the figures of results.json."""
  return run(config, workdir).results


def run(config: ml_collections.ConfigDict, workdir: str, dataset: data.Dataset | None = None,
        init_params: dict | None = None,
        evaluate_extra: Callable[[Any, TrainState], dict[str, float]] | None = None) -> Outcome:
  """train_and_evaluate, also returning the final state, model and data. `dataset`, when
  given, replaces loading config.data's (an experiment that has loaded it already).
  `init_params`: parameters computed from the data (e.g. fast_cifar's whitening
  filters) that replace init's leaves of the same name, like config.init_from's.
  `evaluate_extra(model, state)`: more figures for every evaluation row (e.g. ROC AUC
  from predictions), also in results."""
  try:
    loss = steps_lib.loss_kind(config)
  except ValueError as e:
    raise UserError(str(e)) from None
  mesh, ds, steps_per_epoch, total_steps = inputs.checked(config, dataset)
  model = models.create(config.model, ds.num_classes, config.dtype)
  tx, lr_fn = optimizers.create(config.optimizer, steps_per_epoch, total_steps)
  init = make_init(model, tx, ds.input_shape, config.seed)
  name = f"{config.model.name} on {ds.name}"
  init_error = f"model {config.model.name} does not fit {ds.name} inputs {ds.input_shape}"
  if config.init_from or init_params is not None:
    abstract = loop.shapes(init, mesh, init_error)[0].params
    if config.init_from:
      init = starting_from(init, load_pretrained(
          config.init_from, abstract, tuple(config.get("init_from_skip", ()))), tx)
    if init_params is not None:
      init = starting_from(init, pretrained_leaves(init_params, abstract, "init_params"), tx)
  eval_step = jax.jit(make_eval_step(model, ds.num_classes, config.test_time_flip, loss))

  def evaluate(state: TrainState) -> dict[str, float]:
    out = inputs.eval_means(lambda batch, _: eval_step(state, batch), ds.test, config, ds,
                            mesh)
    return {**out, **(evaluate_extra(model, state) if evaluate_extra else {})}

  def results(test: dict, last_train: dict, state: TrainState) -> dict[str, Any]:
    del state
    out = {"test_accuracy": test["accuracy"], "test_error": 1.0 - test["accuracy"],
           "test_loss": test["loss"], "final_train_loss": last_train.get("loss", float("nan"))}
    if "top5_accuracy" in test:
      out["test_top5_accuracy"] = test["top5_accuracy"]
    return {**out, **{k: v for k, v in test.items()
                      if k not in ("loss", "accuracy", "top5_accuracy")}}

  feed = inputs.Feed(config, ds, mesh)
  trainer = loop.Trainer(
      name=name, init=init, evaluate=evaluate,
      step=feed.step(make_train_step(model, tx, config)), results=results,
      batches=lambda start: feed.batches(start, total_steps),
      log_extras=lambda step: {"learning_rate": float(lr_fn(step))},
      progress={"loss": "loss", "acc": "accuracy"}, examples_per_step=config.batch_size,
      steps_per_call=config.steps_per_call, init_error=init_error)
  out = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=steps_per_epoch,
                 total_steps=total_steps)
  return Outcome(out.results, out.state, model, ds)
