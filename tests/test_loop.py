"""The loop driver on its own, with the kind of trainer the supervised and RBM ones are
not: a step that makes its own data (no batches, as an RL agent's) and runs a chunk of
K steps per call (a `lax.scan`, metrics stacked)."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deeplearn_jax import configs, metrics, models, parallel
from deeplearn_jax.checkpoint import saved_steps
from deeplearn_jax.errors import UserError
from deeplearn_jax.jit_options import RUN_RARELY
from deeplearn_jax.train import loop, nan_guard

CHUNK = 4


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: dict
  rng: jax.Array
  bad_step: jax.Array
  skipped: jax.Array
  lr_scale: jax.Array


def _init():
  return _State(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros((3,))},
                rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32),
                skipped=jnp.zeros((), jnp.int32), lr_scale=jnp.ones(()))


TRUE_W = jnp.array([1.0, -2.0, 0.5])


def _chunk(state):
  """CHUNK steps of SGD on a linear regression whose data each step draws itself."""

  def one(state, _):
    x = jax.random.normal(jax.random.fold_in(state.rng, state.step), (16, 3))
    loss_fn = lambda w: jnp.mean((x @ w - x @ TRUE_W) ** 2)
    loss, grad = jax.value_and_grad(loss_fn)(state.params["w"])
    updated = state.replace(params={"w": state.params["w"] - 0.1 * state.lr_scale * grad})
    return nan_guard.guarded_update(state, updated, jnp.isfinite(loss)), {"loss": loss}

  return jax.lax.scan(one, state, None, length=CHUNK)


def _evaluate(state):
  return {"error": float(jnp.sum((state.params["w"] - TRUE_W) ** 2))}


def _run(workdir, steps, level=-1):
  c = configs.base()
  configs.make_smoke(c, steps=steps)
  c.log_every_steps, c.checkpoint_every_steps, c.eval_every_steps = CHUNK, 8, 8
  c.step_optimization_level = level
  c.lock()
  trainer = loop.Trainer(
      name="regression", init=_init, step=_chunk, evaluate=_evaluate,
      results=lambda test, train, state: {"error": test["error"],
                                          "final_loss": train.get("loss")},
      progress={"loss": "loss"}, examples_per_step=16, steps_per_call=CHUNK)
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=1, model=1)))
  return loop.run(c, str(workdir), trainer, mesh=mesh, steps_per_epoch=steps,
                  total_steps=steps)


def test_due_counts_chunks_that_cross_a_period():
  assert [s for s in range(4, 33, 4) if loop.due(s, 8, 4)] == [8, 16, 24, 32]
  assert [s for s in range(3, 31, 3) if loop.due(s, 10, 3)] == [12, 21, 30]
  assert [s for s in range(1, 7) if loop.due(s, 2)] == [2, 4, 6]
  assert not any(loop.due(s, -1) for s in range(1, 10))


def test_a_chunked_step_without_batches_learns_logs_and_checkpoints(tmp_path):
  out = _run(tmp_path, 24)
  assert out.results["error"] < 1e-3 and out.results["steps"] == 24
  assert int(out.state.step) == 24
  rows = metrics.read_metrics(tmp_path)
  assert [r["step"] for r in rows if r["split"] == "train"] == list(range(4, 25, 4))
  assert [r["step"] for r in rows if r["split"] == "eval"] == [8, 16]
  assert [r["step"] for r in rows if r["split"] == "test"] == [24]
  # Each train row is the mean over its chunk's 4 stacked losses: they fall as it learns.
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  assert losses[-1] < 0.01 * losses[0]
  assert saved_steps(str(tmp_path / "checkpoints")) == [8, 16, 24]
  assert out.results["examples_per_second"] > 0 and out.results["train_seconds"] > 0


def test_a_chunked_run_continued_equals_one_run(tmp_path):
  whole = _run(tmp_path / "whole", 24)
  _run(tmp_path / "parts", 16)
  continued = _run(tmp_path / "parts", 24)  # the same config, longer: a resume
  np.testing.assert_array_equal(continued.state.params["w"], whole.state.params["w"])
  assert continued.results["error"] == whole.results["error"]


def test_the_lighter_compile_of_the_step_gives_the_same_bits(tmp_path):
  # config.step_optimization_level = 1 (the CartPole DQN's) must change compile time only.
  default = _run(tmp_path / "default", 24)
  lighter = _run(tmp_path / "lighter", 24, level=1)
  np.testing.assert_array_equal(lighter.state.params["w"], default.state.params["w"])
  assert lighter.results["final_loss"] == default.results["final_loss"]


def test_a_length_that_is_not_whole_chunks_is_refused(tmp_path):
  with pytest.raises(UserError, match="not a whole number of chunks of 4"):
    _run(tmp_path / "run", 10)
  assert not (tmp_path / "run").exists()


def test_best_params_keep_the_lowest_evaluation_across_a_resume(tmp_path):
  """keep_best: the parameters of the lowest row are kept, not the last; a resumed run
  that replays its evaluations keeps them, and a later, better row replaces them."""
  params = lambda v: {"w": jnp.full((3,), v, jnp.float32)}
  best = loop.BestParams(str(tmp_path), "loss")
  for step, value in ((10, 3.0), (20, 2.0), (30, 2.5)):
    best.offer(step, {"loss": value}, params(value))
  best.close()
  assert loop.best_params(str(tmp_path))["w"].tolist() == [2.0] * 3
  again = loop.BestParams(str(tmp_path), "loss")  # a resume from step 10 replays 20, 30
  assert (again.step, again.value) == (20, 2.0)
  again.offer(20, {"loss": 2.0}, params(-1.0))
  again.offer(30, {"loss": 2.5}, params(-1.0))
  again.offer(40, {"loss": 1.5}, params(1.5))
  again.close()
  assert loop.best_params(str(tmp_path))["w"].tolist() == [1.5] * 3
  assert saved_steps(loop.best_folder(str(tmp_path))) == [40]
  assert loop.best_params(str(tmp_path / "none")) is None


def test_the_lighter_compile_of_an_init_gives_the_same_bits():
  # The driver compiles a state's init with jit_options.RUN_RARELY; a resumed or
  # compared run must not depend on which optimisation level built its start.
  cfg = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=16))
  model = models.create(cfg, 3)

  def init():
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((2, 5, 4)))["params"]
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 5, 4))
    return params, model.apply({"params": params}, x), jnp.tanh(x) * jnp.exp(-x * x)

  plain = jax.jit(init)()
  lighter = jax.jit(init, compiler_options=RUN_RARELY)()
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(lighter)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
