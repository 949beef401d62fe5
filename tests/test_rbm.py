"""The RBM: log Z exactly and by AIS, CD-k and PCD, and its trainer (it learns, resumes
bit-identically, refuses bad input, writes results.json and its pictures)."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deeplearn_jax import data, metrics
from deeplearn_jax.checkpoint import read_checkpoint, saved_steps
from deeplearn_jax.errors import TrainingDiverged, UserError
from deeplearn_jax.models import rbm
from deeplearn_jax.models.rbm_partition import ais_log_partition, log_partition_exact
from deeplearn_jax.train import contrastive_divergence
from experiments import rbm as experiment
from conftest import patch_batches, smoke_config

# Their module-scoped runs are made once: tests sharing them stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("rbm")

REQUIRED = ("test_log_likelihood_ais", "test_log_likelihood_ais_lower",
            "test_log_likelihood_ais_upper", "test_pseudo_log_likelihood",
            "test_reconstruction_error", "steps", "num_params", "train_seconds",
            "test_log_likelihood_exact", "log_z_exact", "log_z_ais")


def _random_rbm(key, num_visible, num_hidden, scale):
  kw, ka, kb = jax.random.split(key, 3)
  return {"W": scale * jax.random.normal(kw, (num_visible, num_hidden)),
          "a": scale * jax.random.normal(ka, (num_visible,)),
          "b": scale * jax.random.normal(kb, (num_hidden,))}


def _all_states(n):
  return np.array([[(i >> j) & 1 for j in range(n)] for i in range(2 ** n)], np.float64)


def _test_set(ds):
  return ds.transform(ds.test.gather(np.arange(len(ds.test))))["input"].reshape(len(ds.test), -1)


def _quality(params, v):
  """Exact log-likelihood, PLL and reconstruction error on v, with fixed keys."""
  return {"ll": float(jnp.mean(-rbm.free_energy(params, v)) - log_partition_exact(params)),
          "pll": float(jnp.mean(rbm.pseudo_log_likelihood(params, v, jax.random.PRNGKey(1)))),
          "recon": float(jnp.mean(rbm.reconstruction_error(params, v, jax.random.PRNGKey(2))))}


def _trained(tmp_path_factory, variant):
  """One smoke run per module, shared by the tests that only read it."""
  workdir = tmp_path_factory.mktemp(variant.replace(",", "_"))
  return contrastive_divergence.run(smoke_config(experiment, variant), str(workdir)), workdir


@pytest.fixture(scope="module")
def cd1_run(tmp_path_factory):
  return _trained(tmp_path_factory, "smoke")


@pytest.fixture(scope="module")
def pcd_run(tmp_path_factory):
  return _trained(tmp_path_factory, "pcd,smoke")


@pytest.mark.parametrize("num_visible,num_hidden,chunk_bits", [(6, 4, 12), (3, 5, 12),
                                                                (6, 4, 2)])
def test_exact_log_z_equals_brute_force(num_visible, num_hidden, chunk_bits):
  params = _random_rbm(jax.random.PRNGKey(0), num_visible, num_hidden, scale=1.0)
  v, h = _all_states(num_visible), _all_states(num_hidden)
  p = {k: np.asarray(x, np.float64) for k, x in params.items()}
  neg_energy = (v @ p["a"])[:, None] + (h @ p["b"])[None, :] + v @ p["W"] @ h.T  # [2^V, 2^H]
  brute = np.logaddexp.reduce(neg_energy.ravel())
  assert float(log_partition_exact(params, chunk_bits)) == pytest.approx(brute, abs=1e-4)
  # F sums h out exactly, and E is the energy the sum above used.
  np.testing.assert_allclose(-rbm.free_energy(params, v), np.logaddexp.reduce(neg_energy, 1),
                             rtol=1e-5)
  np.testing.assert_allclose(-rbm.energy(params, v[5:6], h[3:4]), neg_energy[5, 3], rtol=1e-5)


def test_ais_brackets_the_exact_log_z_of_a_random_rbm():
  params = _random_rbm(jax.random.PRNGKey(3), 64, 16, scale=0.5)
  base = rbm.base_rate_bias(jnp.full((64,), 0.3))
  ais = jax.jit(ais_log_partition, static_argnames=("num_betas", "num_chains"))(
      params, jax.random.PRNGKey(4), base, num_betas=1000, num_chains=100)
  exact = float(log_partition_exact(params))
  assert abs(float(ais["log_z"]) - exact) < 0.5
  assert float(ais["log_z_lower"]) - 0.05 <= exact <= float(ais["log_z_upper"]) + 0.05


def test_cd_k_is_k_gibbs_steps_from_the_data():
  params = _random_rbm(jax.random.PRNGKey(5), 6, 4, scale=0.5)
  v = jax.random.bernoulli(jax.random.PRNGKey(6), 0.5, (8, 6)).astype(jnp.float32)
  key, k = jax.random.PRNGKey(7), 25
  grads, chains = jax.jit(rbm.cd_gradient, static_argnums=3)(params, v, key, k)
  assert chains is None
  # The same chain as a Python loop: clamp v, sample h, then k steps h -> v -> h.
  key_h, key_chain = jax.random.split(key)
  h = rbm.bernoulli(key_h, rbm.hidden_probs(params, v))
  step = jax.jit(rbm.gibbs_step)
  for step_key in jax.random.split(key_chain, k):
    v_k, ph_k, h = step(params, h, step_key)
  ph_data = rbm.hidden_probs(params, v)
  np.testing.assert_allclose(grads["W"], (v.T @ ph_data - v_k.T @ ph_k) / 8, atol=1e-5)
  np.testing.assert_allclose(grads["b"], jnp.mean(ph_data - ph_k, 0), atol=1e-5)
  shorter, _ = rbm.cd_gradient(params, v, key, k - 1)
  assert not np.allclose(shorter["W"], grads["W"])


def test_pcd_continues_the_fantasy_chains():
  params = _random_rbm(jax.random.PRNGKey(8), 6, 4, scale=0.5)
  v = jnp.ones((8, 6))
  chains = jnp.zeros((5, 6))
  grads, moved = rbm.cd_gradient(params, v, jax.random.PRNGKey(9), 3, chains)
  assert moved.shape == (5, 6) and set(np.unique(moved)) <= {0.0, 1.0}
  assert float(moved.sum()) > 0  # they left the all-zero start
  # The data term from the 8 rows, the model term from the 5 moved particles.
  ph_data, ph_model = rbm.hidden_probs(params, v), rbm.hidden_probs(params, moved)
  np.testing.assert_allclose(grads["W"], v.T @ ph_data / 8 - moved.T @ ph_model / 5, atol=1e-5)
  np.testing.assert_allclose(grads["a"], v.mean(0) - moved.mean(0), atol=1e-6)
  np.testing.assert_allclose(grads["b"], ph_data.mean(0) - ph_model.mean(0), atol=1e-6)


def test_long_cd_chains_estimate_the_exact_log_likelihood_gradient():
  """With long chains and many samples, the CD-k gradient is the exact gradient of the
  mean log-likelihood, computed here by summing over all 2^6 visible states."""
  params = _random_rbm(jax.random.PRNGKey(10), 6, 3, scale=0.7)
  data_rows = jnp.asarray(_all_states(6)[[3, 17, 40, 63]], jnp.float32)
  v = jnp.tile(data_rows, (2000, 1))  # 8,000 chains, each started at a data row
  grads, _ = jax.jit(rbm.cd_gradient, static_argnums=3)(params, v, jax.random.PRNGKey(11), 30)
  exact = jax.grad(lambda p: jnp.mean(-rbm.free_energy(p, data_rows))
                   - log_partition_exact(p))(params)
  for k in ("W", "a", "b"):
    np.testing.assert_allclose(grads[k], exact[k], atol=0.03, err_msg=k)


def test_binarize_thresholds_pixels_at_one_half():
  unit = data.load(ml_collections.ConfigDict(dict(name="digits")))
  binary = data.load(ml_collections.ConfigDict(dict(name="digits", normalize="binarize")))
  rows = np.arange(50)
  x = binary.transform(binary.train.gather(rows))["input"]
  assert set(np.unique(x)) == {0.0, 1.0}
  assert np.array_equal(x, unit.transform(unit.train.gather(rows))["input"] > 0.5)


def test_smoke_writes_results_and_pictures(cd1_run):
  out, workdir = cd1_run
  res = out.results
  assert set(REQUIRED) <= set(res) and res["steps"] == 120
  assert res["num_params"] == 64 * 16 + 64 + 16
  assert json.loads((workdir / "results.json").read_text()) == pytest.approx(res)
  for picture in ("filters.png", "samples.png"):
    assert (workdir / picture).stat().st_size > 1000
  assert {r["split"] for r in metrics.read_metrics(workdir)} == {"train", "eval", "test"}
  assert saved_steps(str(workdir / "checkpoints")) == [40, 80, 120]
  assert res["test_log_likelihood_ais_lower"] <= res["test_log_likelihood_ais"] <= \
      res["test_log_likelihood_ais_upper"]


def test_ais_agrees_with_exact_log_z_of_the_trained_rbm(cd1_run):
  res = cd1_run[0].results
  assert abs(res["log_z_ais"] - res["log_z_exact"]) < 0.5
  assert res["log_z_ais_lower"] - 0.05 <= res["log_z_exact"] <= res["log_z_ais_upper"] + 0.05
  assert abs(res["test_log_likelihood_ais"] - res["test_log_likelihood_exact"]) < 0.5


def _initial_params(config, ds):
  means = contrastive_divergence.pixel_means(ds)
  return jax.jit(contrastive_divergence.make_init(config, means))().params


def test_cd1_training_improves_the_rbm(cd1_run):
  out, _ = cd1_run
  config = smoke_config(experiment, "smoke")
  v = _test_set(out.dataset)
  before = _quality(_initial_params(config, out.dataset), v)
  after = _quality(jax.device_get(out.state.params), v)
  assert after["ll"] > before["ll"] + 2.0       # nats per test digit, exact
  assert after["pll"] > before["pll"] + 1.0
  assert after["recon"] < 0.85 * before["recon"]
  assert out.results["test_log_likelihood_exact"] == pytest.approx(after["ll"], abs=1e-3)


def test_pcd_trains_and_keeps_its_particles_in_the_state(pcd_run):
  out, workdir = pcd_run
  chains = np.asarray(out.state.chains)
  assert chains.shape == (64, 64) and set(np.unique(chains)) <= {0.0, 1.0}
  v = _test_set(out.dataset)
  before = _quality(_initial_params(smoke_config(experiment, "pcd,smoke"), out.dataset), v)
  after = _quality(jax.device_get(out.state.params), v)
  assert after["ll"] > before["ll"] + 0.5 and after["pll"] > before["pll"] + 1.0
  assert read_checkpoint(str(workdir / "checkpoints"), 120)["chains"].shape == (64, 64)


def _train_log(workdir):
  """The train rows without their timings, which no two runs share."""
  return [{k: v for k, v in r.items() if k not in ("wall_seconds", "examples_per_second")}
          for r in metrics.read_metrics(workdir) if r["split"] == "train"]


def test_resume_after_crash_equals_uninterrupted_run(pcd_run, tmp_path, monkeypatch):
  ref, ref_dir = pcd_run

  def crash(step, batch):
    if step == 100:  # between the checkpoints of steps 80 and 120
      raise RuntimeError("simulated crash")
    return batch

  config = smoke_config(experiment, "pcd,smoke")
  with monkeypatch.context() as m:
    patch_batches(m, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
      contrastive_divergence.run(config, str(tmp_path))
  assert saved_steps(str(tmp_path / "checkpoints")) == [40, 80]
  resumed = contrastive_divergence.run(config, str(tmp_path))
  for name in ("params", "velocity", "chains", "rng", "step"):
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        getattr(ref.state, name), getattr(resumed.state, name))
    assert all(jax.tree.leaves(same)), f"resumed {name} differ from the uninterrupted run"
  for key in REQUIRED:
    if key != "train_seconds":
      assert resumed.results[key] == ref.results[key], key
  assert _train_log(tmp_path) == _train_log(ref_dir)


def test_one_device_matches_eight(pcd_run, tmp_path):
  eight, _ = pcd_run
  assert jax.device_count() == 8 and eight.state.params["W"].sharding.mesh.size == 8
  one = contrastive_divergence.run(smoke_config(experiment, "pcd,smoke", **{"mesh.data": 1}),
                                   str(tmp_path))
  # The same random bits on any mesh; only the order of the batch sums differs.
  assert np.array_equal(np.asarray(one.state.chains), np.asarray(eight.state.chains))
  for name in ("W", "a", "b"):
    np.testing.assert_allclose(one.state.params[name], eight.state.params[name], atol=1e-4)


def test_nan_input_stops_keeping_the_last_good_checkpoint(tmp_path, monkeypatch):
  def poison(step, batch):
    return dict(batch, input=np.full_like(batch["input"], np.nan)) if step >= 45 else batch

  patch_batches(monkeypatch, poison)
  with pytest.raises(TrainingDiverged, match="at step 46.*step 40"):
    contrastive_divergence.run(smoke_config(experiment, "smoke"), str(tmp_path))
  assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("overrides,message", [
    ({"data.normalize": "standardize"}, "needs inputs in \\[0, 1\\]"),
    ({"rbm.cd_k": 0}, "rbm.cd_k must be at least 1"),
    ({"eval.sample_start": "noise"}, "sample_start must be one of test, random"),
    ({"batch_size": 60}, "not divisible by the 8 devices"),
])
def test_bad_config_is_refused_before_anything_is_written(tmp_path, overrides, message):
  with pytest.raises(UserError, match=message):
    contrastive_divergence.run(smoke_config(experiment, "smoke", **overrides),
                               str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("num_betas", [5, 1000, 14500])
def test_ais_schedules_run_from_0_to_1(num_betas):
  from deeplearn_jax.models.rbm_partition import ais_betas
  for schedule in ("linear", "sm2008"):
    betas = ais_betas(num_betas, schedule)
    assert len(betas) == num_betas and betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)
  sm = ais_betas(14500, "sm2008")
  # S&M 2008: 500 steps below 0.5, 4,000 in [0.5, 0.9), 10,000 from 0.9 on.
  assert (sm < 0.5).sum() == 500 and ((sm >= 0.5) & (sm < 0.9)).sum() == 4000
  with pytest.raises(ValueError, match="unknown AIS schedule"):
    ais_betas(10, "geometric")
