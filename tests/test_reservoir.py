"""Echo-state networks, Mackey-Glass and Hopfield networks: tiny sizes, in-process."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import override
from deeplearn_jax.data.mackey_glass import mackey_glass
from deeplearn_jax.errors import UserError
from deeplearn_jax.models import echo_state as esn
from deeplearn_jax.models import hopfield
from experiments import echo_state as esn_experiment
from experiments import hopfield as hopfield_experiment


@pytest.mark.parametrize("connectivity,radius", [(1.0, 0.9), (0.2, 1.25)])
def test_reservoir_has_the_spectral_radius_asked_for(connectivity, radius):
  p = esn.init(jax.random.PRNGKey(1), 50, 2, spectral_radius=radius, connectivity=connectivity,
               input_connectivity=1.0, input_scaling=0.7)
  assert esn.spectral_radius(p["w"]) == pytest.approx(radius, rel=1e-5)
  assert np.count_nonzero(np.asarray(p["w"])) == round(connectivity * 50 * 50)
  assert set(np.unique(np.abs(np.asarray(p["w_in"])))) == {np.float32(0.7)}
  with pytest.raises(UserError):  # 2 nonzero weights in 100 units: no cycle, radius 0
    esn.init(jax.random.PRNGKey(0), 100, 1, connectivity=2e-4)
  sparse_in = esn.init(jax.random.PRNGKey(1), 100, 1, input_connectivity=0.1)["w_in"]
  assert np.count_nonzero(np.asarray(sparse_in)) == 10


def test_ridge_readout_equals_numpy_least_squares():
  rng = np.random.default_rng(0)
  states = rng.normal(size=(80, 6))
  targets = states @ rng.normal(size=(6, 2)) + 0.3 + 0.1 * rng.normal(size=(80, 2))
  ridge, warmup = 0.5, 10
  with jax.enable_x64(True):
    out = jax.device_get(esn.fit_readout(jnp.asarray(states), jnp.asarray(targets), ridge,
                                         warmup))
  # Independent route: centre, then least squares on rows augmented by sqrt(ridge) I.
  x, y = states[warmup:], targets[warmup:]
  xc, yc = x - x.mean(0), y - y.mean(0)
  a = np.vstack([xc, np.sqrt(ridge) * np.eye(6)])
  w = np.linalg.lstsq(a, np.vstack([yc, np.zeros((6, 2))]), rcond=None)[0]
  np.testing.assert_allclose(out["w_out"], w, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(out["b_out"], y.mean(0) - x.mean(0) @ w, rtol=1e-9, atol=1e-12)
  # Without a bias: the plain ridge normal equations.
  with jax.enable_x64(True):
    out = esn.fit_readout(jnp.asarray(states), jnp.asarray(targets), ridge, fit_bias=False)
  np.testing.assert_allclose(
      out["w_out"], np.linalg.solve(states.T @ states + ridge * np.eye(6), states.T @ targets),
      rtol=1e-9)
  assert np.all(np.asarray(out["b_out"]) == 0)


def test_states_follow_the_leaky_update():
  p = esn.init(jax.random.PRNGKey(2), 8, 1, connectivity=1.0, input_connectivity=1.0,
               bias_scaling=0.3)
  u = jnp.linspace(-1, 1, 5)[:, None]
  states = np.asarray(esn.run(p, u, leak=0.4))
  w, w_in, b = (np.asarray(p[k], np.float64) for k in ("w", "w_in", "bias"))
  x = np.zeros(8)
  for t in range(5):
    x = 0.6 * x + 0.4 * np.tanh(w @ x + w_in @ np.asarray(u[t]) + b)
    np.testing.assert_allclose(states[t], x, rtol=1e-5, atol=1e-6)


def test_esn_forecasts_a_sine_one_step_ahead_and_generates_it():
  t = np.arange(700)
  series = np.sin(2 * np.pi * t / 25.0)
  u, y = series[:-1, None], series[1:, None]
  with jax.enable_x64(True):
    p = esn.init(jax.random.PRNGKey(0), 50, 1, spectral_radius=0.9, input_connectivity=1.0,
                 connectivity=0.3, bias_scaling=0.2, dtype=jnp.float64)
    states = esn.run(p, jnp.asarray(u), leak=0.5)
    out = esn.fit_readout(states[:500], jnp.asarray(y[:500]), 1e-8, warmup=50)
    pred = np.asarray(esn.readout(out, states[500:]))
    gen = np.asarray(esn.generate(p, out, states[499], 50, leak=0.5))
  assert np.sqrt(np.mean((pred - y[500:]) ** 2)) < 1e-3
  # A one-step predictor would miss by 0.25 (the sine's change in one step).
  assert np.sqrt(np.mean((u[500:] - y[500:]) ** 2)) > 0.1
  # Free run: output k estimates series[500 + k], with only its own outputs as inputs.
  np.testing.assert_allclose(gen[:, 0], series[500:550], atol=2e-2)


def test_readout_on_the_input_beside_the_states_forecasts_and_generates():
  series = np.sin(2 * np.pi * np.arange(700) / 25.0)
  u, y = series[:-1, None], series[1:, None]
  with jax.enable_x64(True):
    p = esn.init(jax.random.PRNGKey(0), 20, 1, spectral_radius=0.9, input_connectivity=1.0,
                 connectivity=0.3, bias_scaling=0.2, dtype=jnp.float64)
    states = esn.run(p, jnp.asarray(u), leak=0.5)
    feats = esn.features(states, jnp.asarray(u), input_to_readout=True)
    assert feats.shape == (699, 21)
    np.testing.assert_array_equal(feats[:, 0], u[:, 0])
    out = esn.fit_readout(feats[:500], jnp.asarray(y[:500]), 1e-8, warmup=50)
    gen = np.asarray(esn.generate(p, out, states[499], 50, 0.5, last_input=jnp.asarray(u[499])))
    with pytest.raises(UserError, match="last_input"):
      esn.generate(p, out, states[499], 5, 0.5)
    # The readout weighs the start input, so a wrong one shows in the generated path.
    wrong = np.asarray(esn.generate(p, out, states[499], 50, 0.5,
                                    last_input=-jnp.asarray(u[499])))
  np.testing.assert_allclose(gen[:, 0], series[500:550], atol=2e-2)
  assert np.max(np.abs(wrong[:, 0] - series[500:550])) > 0.05


def test_mackey_glass_range_period_and_seed():
  x = mackey_glass(1500, seed=3)
  assert x.dtype == np.float64 and x.shape == (1500,)
  assert 0.2 < x.min() < 0.6 and 1.1 < x.max() < 1.45
  z = x - x.mean()
  ups = np.flatnonzero((z[:-1] < 0) & (z[1:] >= 0))
  assert 40 < np.mean(np.diff(ups)) < 60  # the known quasi-period of about 50 for tau = 17
  ac = np.array([np.mean(z[:-k] * z[k:]) for k in range(1, 80)]) / np.mean(z * z)
  assert 40 <= np.argmax(ac[30:]) + 31 <= 60
  np.testing.assert_array_equal(x, mackey_glass(1500, seed=3))
  assert np.max(np.abs(x - mackey_glass(1500, seed=4))) > 0.1  # chaos: seeds part ways
  # Step halving changes the sampled series little before chaos amplifies it.
  fine = mackey_glass(30, seed=3, dt=0.05, sample_every=20, discard=0)
  coarse = mackey_glass(30, seed=3, dt=0.1, sample_every=10, discard=0)
  assert np.max(np.abs(fine[18:] - coarse[18:])) < 0.05
  with pytest.raises(UserError):
    mackey_glass(10, tau=17.0, dt=0.3)


def test_async_updates_never_raise_the_energy():
  key = jax.random.PRNGKey(0)
  patterns = jax.random.rademacher(key, (6, 40))
  w = hopfield.store(patterns)
  assert np.all(np.diag(np.asarray(w)) == 0)
  np.testing.assert_allclose(w, np.asarray(patterns, np.float32).T @ np.asarray(patterns)
                             * (1 - np.eye(40)) / 40, rtol=1e-6)
  s = jax.random.rademacher(jax.random.PRNGKey(1), (40,))
  update, energy = jax.jit(hopfield.update_unit), jax.jit(hopfield.energy)
  energies, changed = [float(energy(w, s))], 0
  order = np.random.default_rng(0).integers(0, 40, 400)
  for i in order:
    new = update(w, s, i)
    changed += int(np.any(new != s))
    energies.append(float(energy(w, new)))
    s = new
  assert changed > 0
  assert np.all(np.diff(energies) <= 1e-6)
  # A whole sweep in random order ends in a state no lower-energy single flip improves.
  s = hopfield.async_sweep(w, s, jax.random.PRNGKey(2))
  assert np.array_equal(hopfield.async_sweep(w, s, jax.random.PRNGKey(3)), s)


def test_stored_patterns_are_fixed_points_and_recalled_at_small_load():
  patterns = jax.random.rademacher(jax.random.PRNGKey(0), (5, 200))
  w = hopfield.store(patterns)
  for p in patterns:
    assert np.array_equal(hopfield.sync_step(w, p), p)
  probe = hopfield.flip(jax.random.PRNGKey(1), patterns[2], 0.1)
  assert float(hopfield.overlap(probe, patterns[2])) == pytest.approx(0.8)
  for synchronous in (False, True):
    final, sweeps = hopfield.recall(w, probe, jax.random.PRNGKey(2), synchronous=synchronous)
    assert float(hopfield.overlap(final, patterns[2])) == 1.0 and 1 <= int(sweeps) <= 5
  # Far above capacity, a stored pattern is no longer stable.
  many = jax.random.rademacher(jax.random.PRNGKey(3), (100, 200))
  assert not np.array_equal(hopfield.sync_step(hopfield.store(many), many[0]), many[0])


def test_batched_recall_equals_recall_one_probe_at_a_time():
  patterns = jax.random.rademacher(jax.random.PRNGKey(0), (25, 100))  # alpha 0.25: slow
  w = hopfield.store(patterns)
  probes = jax.vmap(hopfield.flip, (0, 0, None))(
      jax.random.split(jax.random.PRNGKey(1), 8), patterns[:8], 0.2)
  key = jax.random.PRNGKey(2)
  final, sweeps = hopfield.recall(w, probes, key, max_sweeps=15)
  for row in range(8):
    one, count = hopfield.recall(w, probes[row], key, max_sweeps=15)
    assert np.array_equal(final[row], one) and int(sweeps[row]) == int(count)
    # The row is at a fixed point, or its sweeps ran out.
    assert (np.array_equal(hopfield.sync_step(w, one), one)) or int(count) == 15
  assert len(set(np.asarray(sweeps).tolist())) > 1  # rows stopped after different sweeps


def test_modern_hopfield_retrieves_from_noise_in_one_step():
  d, n = 32, 500  # 500 patterns in 32 dimensions: far beyond a classic network's ~4
  patterns = jax.random.normal(jax.random.PRNGKey(0), (n, d))
  patterns *= np.sqrt(d) / jnp.linalg.norm(patterns, axis=1, keepdims=True)  # on a sphere
  query = patterns[123] + 0.3 * jax.random.normal(jax.random.PRNGKey(1), (d,))
  got = hopfield.modern_retrieve(patterns, query, beta=4.0)
  assert float(jnp.linalg.norm(got - patterns[123])) < 1e-3 * float(jnp.linalg.norm(patterns[123]))
  # beta -> 0 gives the mean of all patterns, not the pattern.
  blurred = hopfield.modern_retrieve(patterns, query, beta=1e-6)
  np.testing.assert_allclose(blurred, patterns.mean(0), atol=1e-3)


def _smoke(module, tmp_path, **overrides):
  config = override(module.get_config("smoke"), **overrides)
  results = module.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "results.json", encoding="utf-8") as f:
    assert json.load(f).keys() == results.keys()
  return results


def test_echo_state_smoke_writes_results(tmp_path):
  r = _smoke(esn_experiment, tmp_path, **{"one_step.num_reservoirs": 1,
                                          "free_run.num_train": 600, "free_run.num_starts": 5})
  assert r["one_step_rmse"] < 0.01 and r["one_step_r2"] > 0.99
  assert r["nrmse_84"] < 0.5 and r["free_run_one_step_nrmse"] < 0.05
  assert (tmp_path / "forecast.png").stat().st_size > 0
  assert (tmp_path / "free_run.png").stat().st_size > 0


def test_hopfield_smoke_writes_results(tmp_path):
  r = _smoke(hopfield_experiment, tmp_path, **{"classic.num_units": 100,
                                               "classic.num_probes": 10,
                                               "modern.num_queries": 20})
  overlaps = r["classic"]["mean_overlap"]
  assert overlaps[0] > 0.95 and overlaps[-1] < 0.7  # alpha 0.05 recalled, 0.3 is not
  assert 0.05 < r["capacity_alpha"] <= 0.3
  assert r["modern_P500_masked_accuracy"] >= 0.95
  assert (tmp_path / "overlap.png").stat().st_size > 0


@pytest.mark.parametrize("module,key,value", [
    (esn_experiment, "one_step.leak", 0.0),
    (esn_experiment, "free_run.spectral_radius", -1.0),
    (esn_experiment, "one_step.warmup", 5000),
    (esn_experiment, "data.dt", 0.0),
    (hopfield_experiment, "classic.flip_fraction", 0.7),
    (hopfield_experiment, "classic.alpha_min", 0.0),
    (hopfield_experiment, "modern.beta", 0.0),
])
def test_bad_config_values_are_user_errors(module, key, value, tmp_path):
  config = override(module.get_config("smoke"), **{key: value})
  with pytest.raises(UserError):
    module.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError):
    esn_experiment.get_config("paper")
  with pytest.raises(ValueError):
    hopfield_experiment.get_config("bogus")
