"""The adding problem (experiments/long_time_lags.py) and its trainer: the generator
against the paper's definition, learning at T = 10, exact resume, the Gauss-Newton
product against a formed Jacobian, and bad input refused before anything is written."""

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import override
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import hessian_free, sequence_regression
from experiments import long_time_lags as ltl


@pytest.mark.parametrize("t", [10, 100])
def test_the_generator_follows_the_papers_definition(t):
  b = jax.device_get(ltl.adding_sampler(t)(jax.random.PRNGKey(3), 4000))
  x, mask, target = b["input"], b["mask"], b["target"]
  values, markers = x[..., 0], x[..., 1]
  lengths = mask.sum(1)
  assert x.shape == (4000, t + t // 10, 2)
  assert lengths.min() == t and lengths.max() == t + t // 10
  assert np.all(mask[np.arange(4000), lengths - 1]) and np.all(mask[:, :t])
  assert np.all(values[~mask] == 0) and np.all(markers[~mask] == 0)
  assert np.abs(values).max() <= 1.0
  ones = markers == 1
  assert np.all(ones.sum(1) == 2)
  first = ones.argmax(1)
  second = ones.shape[1] - 1 - ones[:, ::-1].argmax(1)
  # One mark among the first ten, the other in the first half (either may come first
  # when T/2 < 10); the half's window is used beyond the first ten.
  ten, half = min(10, t), t // 2
  assert np.all(((first < ten) & (second < half)) | ((second < ten) & (first < half)))
  if t >= 40:
    assert (second >= 10).mean() > 0.5
  # The first and last pairs have marker -1 unless marked; every other marker is 0.
  last = markers[np.arange(4000), lengths - 1]
  assert np.all((last == -1) | ones[np.arange(4000), lengths - 1])
  assert np.all(last == -1) if t >= 20 else (last == -1).mean() > 0.9
  assert np.all((markers[:, 0] == -1) | ones[:, 0])
  others = mask & ~ones
  others[:, 0] = False
  others[np.arange(4000), lengths - 1] = False
  assert np.all(markers[others] == 0)
  assert np.all(values[:, 0][ones[:, 0]] == 0)  # a marked first pair counts as 0
  np.testing.assert_allclose(target, 0.5 + (values * ones).sum(1) / 4, atol=1e-6)
  if t >= 20:  # the predict-the-mean baseline's formula
    np.testing.assert_allclose(np.mean((target - 0.5) ** 2), ltl.mean_mse(t), rtol=0.1)


def _config(**overrides):
  c = ltl.get_config("smoke")
  return override(c, **overrides)


def test_the_lstm_learns_a_short_version_below_the_mean(tmp_path):
  c = ltl.child_config(_config(**{"runs.budget_sequences": ((10, 8 * 32 * 40),),
                                  "optimizer.learning_rate": 1e-2}), "lstm", 10)
  res = ltl.train_one(c, str(tmp_path), None)
  assert res["test_mse"] < 0.5 * res["mean_mse"], res


def _run(workdir, steps):
  c = ltl.child_config(_config(), "lstm", 10)
  c = override(c, num_train_steps=steps, checkpoint_every_steps=16)
  return sequence_regression.run(c, str(workdir), ltl.task(10))


def test_resume_equals_an_uninterrupted_run(tmp_path):
  whole = _run(tmp_path / "whole", 32)
  _run(tmp_path / "parts", 16)
  continued = _run(tmp_path / "parts", 32)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(continued.state.params),
               jax.device_get(whole.state.params))
  assert continued.results["test_mse"] == whole.results["test_mse"]


def test_the_gauss_newton_product_is_jt_hl_j_v():
  net = nn.Sequential([nn.Dense(3), jnp.tanh, nn.Dense(2)])
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  params = net.init(jax.random.PRNGKey(1), x)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  predict = lambda p: net.apply(p, x)
  v = jax.random.normal(jax.random.PRNGKey(2), flat.shape)
  # Jitted: op by op, the Jacobian and the jvp/vjp compile dozens of small programs.
  jac = jax.jit(jax.jacfwd(lambda f: predict(unravel(f)).ravel()))(flat)  # [outputs, params]
  expected = jac.T @ ((2.0 / jac.shape[0]) * (jac @ v))
  got, _ = jax.flatten_util.ravel_pytree(jax.jit(
      lambda p, v: hessian_free.gauss_newton_product(predict, p, v))(params, unravel(v)))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_conjugate_gradient_solves_a_damped_system():
  a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
  b = jnp.array([1.0, 2.0])
  x = hessian_free.conjugate_gradient(lambda v: a @ v, b, jnp.zeros(2), 2)
  np.testing.assert_allclose(x, jnp.linalg.solve(a, b), rtol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    ({"runs.lengths": (0,), "runs.hf_length": 0}, "at least 4, got 0"),
    ({"runs.cells": ("lsmt",)}, "unknown cell 'lsmt'"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, overrides, message):
  with pytest.raises(UserError, match=message):
    ltl.train_and_evaluate(_config(**overrides), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def _lstm_bias(config, t):
  c = ltl.child_config(config, "lstm", t)
  _, _, init = sequence_regression.build(c, ltl.task(t))
  bias = jax.device_get(init().params["rnn"]["layer0"]["forward"]["input"]["bias"])
  return bias.reshape(4, c.model.hidden)  # gates i, f, g, o


def test_the_lstm_gate_biases_follow_the_chrono_rule_or_the_configured_bias():
  i, f, g, o = _lstm_bias(_config(), 10)  # chrono: memory times up to T = 10
  np.testing.assert_array_equal(i, -f)
  assert np.all(f >= 0) and np.all(f <= np.log(9)) and f.std() > 0.3
  assert not g.any() and not o.any()
  config = _config()
  with config.unlocked():
    config.runs.lstm_chrono = False
  i, f, g, o = _lstm_bias(config, 10)
  np.testing.assert_array_equal(f, config.runs.lstm_forget_bias)
  assert not i.any() and not g.any() and not o.any()
