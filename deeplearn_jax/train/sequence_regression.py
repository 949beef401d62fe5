"""A sequence-regression trainer on the one loop driver (train/loop.py): a task that
draws its own sequences, one scalar target per sequence, MSE loss.

    outcome = sequence_regression.run(config, workdir, task)

`task.sample(key, n)` returns {"input": [n, time, features], "mask": [n, time],
"target": [n]} on device, so the step makes its own data (`batches=None`): step s of
a run draws its fresh batch from fold_in(rng, s) and resuming is exact. A call runs a
chunk of `config.steps_per_call` steps as a `lax.scan`. The optimizer is optax from
config.optimizer, or Hessian-free (train/hessian_free.py) for optimizer.name
"hessian_free". Evaluation is on `config.eval_sequences` fresh sequences from a fixed
test key: test_mse, solved_fraction (absolute error below task.tolerance) and the MSE
of predicting the test targets' mean.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from deeplearn_jax import configs, models, parallel
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import hessian_free, loop, nan_guard, optimizers
from deeplearn_jax.train.state import TrainState, make_init

HF = "hessian_free"


@dataclasses.dataclass
class Task:
  """What a generated regression task supplies."""
  name: str
  sample: Callable[[jax.Array, int], dict[str, jax.Array]]  # (key, n) -> a batch
  input_shape: tuple[int, ...]     # (time, features) of one padded sequence
  tolerance: float                 # a sequence is solved below this absolute error


def base_config() -> ml_collections.ConfigDict:
  """configs.base() plus model, optimizer, chunking, evaluation and HF settings."""
  c = configs.base()
  c.batch_size = 32
  c.num_train_steps = 1000
  c.eval_every_steps = -1
  c.eval_every_epochs = -1.0
  c.checkpoint_every_steps = 1000
  c.checkpoint_every_epochs = -1.0
  c.steps_per_call = 1            # steps per jitted call (a lax.scan)
  c.eval_sequences = 2560
  c.test_seed = 12345             # the fixed key of the test sequences
  c.dtype = "float32"
  c.model = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=32,
                                           readout="last"))
  c.optimizer = optimizers.default_config()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.hf = ml_collections.ConfigDict(dict(
      initial_damping=1.0,        # lambda of (G + lambda I) d = -g
      cg_iters=30,                # conjugate-gradient iterations per update
      cg_decay=0.95,              # warm start: this times the last direction
  ))
  return c


def _mse_and_errors(model, params, batch):
  pred = model.apply({"params": params}, batch["input"], mask=batch["mask"])[:, 0]
  err = pred - batch["target"]
  return jnp.mean(err ** 2), jnp.abs(err)


def make_step(config: ml_collections.ConfigDict, model, task: Task, tx):
  """A chunk of config.steps_per_call updates, each on a fresh batch drawn on device."""
  n = config.batch_size

  def predict_fn(batch):
    return lambda p: model.apply({"params": p}, batch["input"], mask=batch["mask"])[:, 0]

  def one(state: TrainState, _):
    batch = task.sample(jax.random.fold_in(state.rng, state.step), n)
    loss_fn = lambda p: _mse_and_errors(model, p, batch)
    if config.optimizer.name == HF:
      opt = state.opt_state
      params, damping, direction, info = hessian_free.hf_update(
          lambda p: loss_fn(p)[0], predict_fn(batch), state.params, opt["damping"],
          opt["direction"], cg_iters=config.hf.cg_iters, decay=config.hf.cg_decay)
      loss, errors = loss_fn(state.params)
      updated = state.replace(params=params,
                              opt_state={"damping": damping, "direction": direction})
      extra = {"damping": info["damping"], "accepted": info["accepted"]}
    else:
      (loss, errors), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      updates = jax.tree.map(lambda u: state.lr_scale * u, updates)
      updated = state.replace(params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
      extra = {}
    ok = jnp.isfinite(loss)
    # `wrong`: sequences of this batch above the tolerance (0 over a log row: none).
    return nan_guard.guarded_update(state, updated, ok), {
        "loss": loss, "mean_abs_error": jnp.mean(errors),
        "wrong": jnp.sum(errors >= task.tolerance).astype(jnp.float32), **extra}

  def chunk(state):
    return jax.lax.scan(one, state, None, length=config.steps_per_call)

  return chunk


def build(config: ml_collections.ConfigDict, task: Task):
  """(model, optax transformation or None for HF, init) for config; UserError on bad
  settings, before anything is written."""
  model = models.create(config.model, 1, config.dtype)
  if config.optimizer.name == HF:
    tx = None
    if config.hf.cg_iters < 1 or config.hf.initial_damping <= 0:
      raise UserError("config.hf needs cg_iters >= 1 and initial_damping > 0")
  else:
    tx, _ = optimizers.create(config.optimizer, config.num_train_steps,
                              config.num_train_steps)
  inner = make_init(model, tx or optax.identity(), task.input_shape, config.seed)

  def init() -> TrainState:
    state = inner()
    if tx is None:
      state = state.replace(opt_state={
          "damping": jnp.asarray(config.hf.initial_damping, jnp.float32),
          "direction": jax.tree.map(jnp.zeros_like, state.params)})
    return state

  return model, tx, init


def run(config: ml_collections.ConfigDict, workdir: str, task: Task) -> loop.Outcome:
  """Trains (or resumes) in workdir; results: test_mse, solved_fraction, mean_mse."""
  if config.num_train_steps < 1 or config.steps_per_call < 1 or config.batch_size < 1:
    raise UserError("config.num_train_steps, steps_per_call and batch_size must be >= 1")
  if config.eval_sequences < 1:
    raise UserError(f"config.eval_sequences must be >= 1, got {config.eval_sequences}")
  nan_guard.validate(config)
  model, tx, init = build(config, task)
  test_key = jax.random.PRNGKey(config.test_seed)
  chunk = 512

  @jax.jit
  def _eval_part(params, key):
    batch = task.sample(key, chunk)
    _, errors = _mse_and_errors(model, params, batch)
    return errors, batch["target"]

  def evaluate(state) -> dict[str, float]:
    parts = [_eval_part(state.params, jax.random.fold_in(test_key, i))
             for i in range(-(-config.eval_sequences // chunk))]
    errors = jnp.concatenate([p[0] for p in parts])[:config.eval_sequences]
    targets = jnp.concatenate([p[1] for p in parts])[:config.eval_sequences]
    return {"mse": float(jnp.mean(errors ** 2)),
            "solved_fraction": float(jnp.mean(errors < task.tolerance)),
            "mean_abs_error": float(jnp.mean(errors)),
            "max_abs_error": float(jnp.max(errors)),
            "mean_mse": float(jnp.var(targets))}

  def results(test: dict, last_train: dict, state) -> dict[str, Any]:
    del state
    return {"test_mse": test["mse"], "solved_fraction": test["solved_fraction"],
            "test_max_abs_error": test["max_abs_error"], "mean_mse": test["mean_mse"],
            "final_train_loss": last_train.get("loss")}

  trainer = loop.Trainer(
      name=f"{task.name} {config.model.cell} {config.optimizer.name}", init=init,
      step=make_step(config, model, task, tx), evaluate=evaluate, results=results,
      progress={"loss": "loss"}, examples_per_step=config.batch_size,
      steps_per_call=config.steps_per_call,
      init_error=f"the model cannot read {task.name} sequences {task.input_shape}")
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=1, model=1)))
  return loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=config.num_train_steps,
                  total_steps=config.num_train_steps)
