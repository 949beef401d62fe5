"""Tomita grammars and CTRNNs: the string generator's labels, lengths reaching the
model, the Lyapunov estimate, gradient descent on a pattern generator, both smoke
experiments and their bad config values."""

import itertools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smoke_config
from deeplearn_jax import models
from deeplearn_jax.data import tomita
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import steps
from deeplearn_jax.train.state import TrainState
from experiments import ctrnn as ctrnn_exp
from experiments import tomita as tomita_exp


def _runs(s: str) -> list[tuple[str, int]]:
  return [(ch, len(list(g))) for ch, g in itertools.groupby(s)]


def _direct(grammar: int, s: str) -> bool:
  """Each grammar from its definition, without an automaton."""
  if grammar == 1:
    return re.fullmatch("1*", s) is not None
  if grammar == 2:
    return re.fullmatch("(10)*", s) is not None
  if grammar == 3:
    runs = _runs(s)
    return not any(a[0] == "1" and a[1] % 2 and b[0] == "0" and b[1] % 2
                   for a, b in zip(runs, runs[1:]))
  if grammar == 4:
    return "000" not in s
  if grammar == 5:
    return s.count("0") % 2 == 0 and s.count("1") % 2 == 0
  if grammar == 6:
    return (s.count("0") - s.count("1")) % 3 == 0
  return re.fullmatch("0*1*0*1*", s) is not None


@pytest.mark.parametrize("grammar", tomita.GRAMMARS)
def test_grammar_labels_match_definitions(grammar):
  for n in range(9):
    for bits in itertools.product("01", repeat=n):
      s = "".join(bits)
      assert tomita.accepts(grammar, s) == _direct(grammar, s), (grammar, s)


@pytest.mark.parametrize("grammar", (1, 3, 7))
def test_balanced_strings_are_labelled_and_balanced(grammar):
  strings, labels = tomita.balanced_strings(grammar, 11, 30, 200, np.random.default_rng(0))
  assert labels.sum() == 100
  assert all(11 <= len(s) <= 30 for s in strings)
  assert all(_direct(grammar, s) == bool(y) for s, y in zip(strings, labels))
  again = tomita.balanced_strings(grammar, 11, 30, 200, np.random.default_rng(0))[0]
  assert again == strings  # seeded


@pytest.mark.parametrize("cell", ("second_order", "elman"))
def test_lengths_reach_the_model(cell):
  """A padded batch with `lengths` gives each row the logits of that row unpadded."""
  cfg = tomita_exp.get_config("smoke")
  cfg.unlock()
  cfg.model.cell = cell
  model = models.create(cfg.model, 2)
  strings = ["1", "0110", "1111111", "0"]
  batch = {**tomita.encode(strings, 12), "label": np.zeros(4, np.int32),
           "mask": np.ones(4, np.float32)}
  params = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["input"]))["params"]
  state = TrainState(step=0, params=params, opt_state=(), batch_stats={},
                     rng=jax.random.PRNGKey(0), bad_step=-1, skipped=0, lr_scale=1.0)
  eval_step = steps.make_eval_step(model, 2)
  padded = model.apply({"params": params}, batch["input"], lengths=batch["lengths"])
  for i, s in enumerate(strings):
    alone = model.apply({"params": params}, tomita.encode([s], len(s))["input"])
    np.testing.assert_allclose(padded[i], alone[0], atol=1e-5)
  # The eval step uses the batch's lengths: its loss is that of the per-row logits.
  expected = -jax.nn.log_softmax(padded)[:, 0].sum()
  got = eval_step(state, {k: jnp.asarray(v) for k, v in batch.items()})["loss"]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  no_lengths = {k: jnp.asarray(v) for k, v in batch.items() if k != "lengths"}
  assert not np.isclose(eval_step(state, no_lengths)["loss"], expected, rtol=1e-5)


def test_lyapunov_sign():
  chaotic = ctrnn_exp.largest_lyapunov_exponent(ctrnn_exp.BEER_CHAOTIC, 0.01, 100.0, 1000.0)
  stable = ctrnn_exp.largest_lyapunov_exponent(ctrnn_exp.STABLE, 0.01, 10.0, 100.0)
  assert chaotic > 0.002
  assert stable < -0.5


def test_gradient_descent_reduces_pattern_error(tmp_path):
  cfg = smoke_config(ctrnn_exp, num_train_steps=60, **{"pattern.chunk": 20})
  before = float(ctrnn_exp.pattern_error(ctrnn_exp.init_params(cfg), cfg))
  out = ctrnn_exp.train_gradient(cfg, str(tmp_path / "gd"))
  assert out.results["final_error"] < 0.8 * before


def test_tomita_smoke_writes_results(tmp_path):
  cfg = smoke_config(tomita_exp, num_train_steps=20, log_every_steps=10, eval_every_steps=-1,
                     eval_every_epochs=-1.0,
                     **{"tomita.grammars": (2,)})
  tomita_exp.train_and_evaluate(cfg, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    runs = json.load(f)["runs"]
  assert set(runs) == {"second_order_g2", "elman_g2"}
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in runs.values())


def test_ctrnn_smoke_writes_results(tmp_path):
  cfg = smoke_config(ctrnn_exp, **{"lyapunov.duration": 50.0, "lyapunov.transient": 10.0})
  ctrnn_exp.train_and_evaluate(cfg, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    res = json.load(f)
  for key in ("largest_lyapunov_exponent", "gd_final_error", "es_final_error"):
    assert np.isfinite(res[key])
  assert res["gd_evaluations"] == res["es_evaluations"] == cfg.num_train_steps


@pytest.mark.parametrize("overrides", [
    {"tomita.grammars": (8,)},
    {"tomita.train_lengths": (0, 0)},
    {"tomita.cells": {"bogus": 4}},
])
def test_tomita_bad_config(tmp_path, overrides):
  cfg = smoke_config(tomita_exp, **overrides)
  with pytest.raises(UserError):
    tomita_exp.train_and_evaluate(cfg, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")  # refused before writing


def test_unknown_grammar_in_generator():
  with pytest.raises(UserError):
    tomita.dataset(0, (0, 10), (11, 30), 10, 10, 0)


def test_ctrnn_bad_config(tmp_path):
  cfg = smoke_config(ctrnn_exp, **{"pattern.horizon": 0.0})
  with pytest.raises(UserError):
    ctrnn_exp.train_and_evaluate(cfg, str(tmp_path))
