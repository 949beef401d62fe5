"""The supervised trainer: it learns, resumes exactly, shards transparently, stops on
NaN keeping the last good checkpoint, and refuses a workdir of another config."""

import json
import os

import jax
import numpy as np
import pytest

from deeplearn_jax import data, metrics, models
from deeplearn_jax.checkpoint import read_checkpoint, saved_steps
from deeplearn_jax.errors import TrainingDiverged, UserError, WorkdirError
from deeplearn_jax.train import inputs, losses, optimizers, supervised, sweep
from deeplearn_jax.train.state import make_init
from deeplearn_jax.train.steps import make_train_step
from conftest import patch_batches, smoke_config, train_losses
from experiments import lenet, mnist_dnn, perceptron_xor


def _smoke(module=lenet, variant="smoke", **overrides):
  return smoke_config(module, variant, **overrides)


def test_lenet_smoke_learns_and_writes_the_run_folder(tmp_path):
  out = supervised.run(_smoke(), str(tmp_path))
  res = out.results
  assert res["test_accuracy"] > 0.8 and res["steps"] == 60
  assert res["test_error"] == pytest.approx(1 - res["test_accuracy"])
  losses = [l for _, l in train_losses(tmp_path)]
  assert losses[-1] < 0.5 * losses[0]
  assert res["examples_per_second"] > 0 and res["num_params"] == 61706
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk == pytest.approx(res)
  assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "lenet5"
  splits = {r["split"] for r in metrics.read_metrics(tmp_path)}
  assert splits == {"train", "eval", "test"}
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert (tmp_path / "curves.png").stat().st_size > 1000
  assert saved_steps(str(tmp_path / "checkpoints")) == [20, 40, 60]


def test_seeds_run_the_whole_experiment_per_seed_and_give_the_spread(tmp_path):
  """--seeds=N: seeds seed..seed+N-1, each a full run in its own folder, the spread of
  their figures; rerun, the finished runs are only re-read."""
  config = _smoke(seed=5, num_train_steps=30)
  out = sweep.over_seeds(config, str(tmp_path), lenet.train_and_evaluate, 3)
  assert list(out["runs"]) == ["seed5", "seed6", "seed7"]
  for name in out["runs"]:
    assert json.loads((tmp_path / name / "config.json").read_text())["seed"] == int(name[4:])
  losses = [r["final_train_loss"] for r in out["runs"].values()]
  assert len(set(losses)) == 3  # different inits and batch orders
  spread = out["spread"]["final_train_loss"]
  assert spread["n"] == 3 and spread["mean"] == pytest.approx(np.mean(losses))
  assert spread["std"] == pytest.approx(np.std(losses, ddof=1))
  assert (spread["min"], spread["max"]) == (min(losses), max(losses))
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["spread"]["final_train_loss"] == pytest.approx(spread)
  again = sweep.over_seeds(config, str(tmp_path), lenet.train_and_evaluate, 3)
  assert again["spread"]["final_train_loss"] == pytest.approx(spread)
  with pytest.raises(UserError, match="--seeds must be >= 1"):
    sweep.over_seeds(config, str(tmp_path / "none"), lenet.train_and_evaluate, 0)


@pytest.mark.accelerator
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, monkeypatch):
  ref = supervised.run(_smoke(), str(tmp_path / "ref"))

  def crash(step, batch):
    if step == 50:  # between the checkpoints of steps 40 and 60
      raise RuntimeError("simulated crash")
    return batch

  with monkeypatch.context() as m:
    patch_batches(m, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
      supervised.run(_smoke(), str(tmp_path / "run"))
  assert saved_steps(str(tmp_path / "run" / "checkpoints")) == [20, 40]
  resumed = supervised.run(_smoke(), str(tmp_path / "run"))

  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                      ref.state.params, resumed.state.params)
  assert all(jax.tree.leaves(same)), "resumed params differ from the uninterrupted run"
  for key in ("test_accuracy", "test_loss", "final_train_loss", "steps"):
    assert resumed.results[key] == ref.results[key]
  assert train_losses(tmp_path / "run") == train_losses(tmp_path / "ref")
  # The wall clock of the rows goes on from the rows kept, not from zero again.
  walls = [r["wall_seconds"] for r in metrics.read_metrics(tmp_path / "run")]
  assert walls == sorted(walls) and walls[-1] > 0


@pytest.mark.accelerator(devices=8)
def test_eight_devices_match_one_device(tmp_path):
  assert jax.device_count() == 8
  one = supervised.run(_smoke(**{"mesh.data": 1}), str(tmp_path / "one"))
  eight = supervised.run(_smoke(**{"mesh.data": 8}), str(tmp_path / "eight"))
  assert eight.state.params["C1"]["kernel"].sharding.mesh.size == 8
  a, b = train_losses(tmp_path / "one"), train_losses(tmp_path / "eight")
  assert [s for s, _ in a] == [s for s, _ in b]
  np.testing.assert_allclose([l for _, l in a], [l for _, l in b], rtol=2e-4)
  assert abs(one.results["test_loss"] - eight.results["test_loss"]) < 1e-3


def _same_params(a, b) -> bool:
  same = jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b)
  return all(jax.tree.leaves(same))


def test_chunked_steps_equal_single_steps(tmp_path):
  """steps_per_call = 4: the same batches in the same order, scanned 4 to a call, give
  the same parameters bit for bit (supervised and CD trainers); checkpoints fall on the
  chunks' ends; a length that is not whole chunks, or k < 1, is one clear error."""
  from experiments import rbm
  from deeplearn_jax.train import contrastive_divergence
  one = supervised.run(_smoke(module=mnist_dnn, variant="dropout,smoke"), str(tmp_path / "a"))
  four = supervised.run(_smoke(module=mnist_dnn, variant="dropout,smoke", steps_per_call=4),
                        str(tmp_path / "b"))
  assert int(four.state.step) == int(one.state.step) == 80
  assert _same_params(one.state.params, four.state.params)
  assert four.results["test_loss"] == one.results["test_loss"]
  assert saved_steps(str(tmp_path / "b" / "checkpoints")) == [28, 52, 80]
  cd_one = contrastive_divergence.run(_smoke(module=rbm), str(tmp_path / "c"))
  cd_four = contrastive_divergence.run(_smoke(module=rbm, steps_per_call=4), str(tmp_path / "d"))
  assert _same_params(cd_one.state.params, cd_four.state.params)
  with pytest.raises(UserError, match="not a whole number of chunks of 7 steps"):
    supervised.run(_smoke(steps_per_call=7), str(tmp_path / "e"))
  with pytest.raises(UserError, match="steps_per_call must be >= 1"):
    supervised.run(_smoke(steps_per_call=0), str(tmp_path / "f"))


def test_data_on_device_gives_the_host_batches_bit_for_bit(tmp_path):
  """config.data.on_device: the training split kept on the device, each step gathering
  its rows by index, trains exactly as the host's batches do (supervised in chunks of
  4, and CD one step a call); a dataset it cannot hold is one clear error."""
  from experiments import rbm
  from deeplearn_jax.train import contrastive_divergence
  variant, on = "dropout,smoke", {"data.on_device": True}
  host = supervised.run(_smoke(module=mnist_dnn, variant=variant, steps_per_call=4),
                        str(tmp_path / "a"))
  device = supervised.run(_smoke(module=mnist_dnn, variant=variant, steps_per_call=4, **on),
                          str(tmp_path / "b"))
  assert _same_params(host.state.params, device.state.params)
  cd_host = contrastive_divergence.run(_smoke(module=rbm), str(tmp_path / "c"))
  cd_device = contrastive_divergence.run(_smoke(module=rbm, **on), str(tmp_path / "d"))
  assert _same_params(cd_host.state.params, cd_device.state.params)
  with pytest.raises(UserError, match="on_device needs .* no augmentation"):
    supervised.run(_smoke(**on, **{"data.augment": "flip"}), str(tmp_path / "e"))
  assert not (tmp_path / "e").exists()


@pytest.mark.accelerator(devices=8)
def test_chunked_steps_on_eight_devices_match_one_device(tmp_path):
  """Chunks split over 8 devices, with host batches and with the data on the devices."""
  one = supervised.run(_smoke(**{"mesh.data": 1}), str(tmp_path / "one"))
  eight = supervised.run(_smoke(**{"mesh.data": 8, "steps_per_call": 5}),
                         str(tmp_path / "eight"))
  assert eight.state.params["C1"]["kernel"].sharding.mesh.size == 8
  assert abs(one.results["test_loss"] - eight.results["test_loss"]) < 1e-3
  resident = supervised.run(_smoke(**{"mesh.data": 8, "steps_per_call": 5,
                                      "data.on_device": True}), str(tmp_path / "resident"))
  assert _same_params(eight.state.params, resident.state.params)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  def poison(step, batch):
    if step >= 25:
      batch = dict(batch, input=np.full_like(batch["input"], np.nan))
    return batch

  patch_batches(monkeypatch, poison)
  with pytest.raises(TrainingDiverged, match="at step 26.*step 20"):
    supervised.run(_smoke(), str(tmp_path))
  assert saved_steps(str(tmp_path / "checkpoints")) == [20]
  restored = read_checkpoint(str(tmp_path / "checkpoints"), 20)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))
  assert not (tmp_path / "results.json").exists()


def test_refuses_a_workdir_of_another_config(tmp_path):
  supervised.run(_smoke(num_train_steps=20), str(tmp_path))
  with pytest.raises(WorkdirError, match="another config.*model.activation: 'relu' -> 'tanh'"):
    supervised.run(_smoke(num_train_steps=20, **{"model.activation": "tanh"}), str(tmp_path))
  # A longer run of the same config is a resume, not a conflict.
  assert supervised.run(_smoke(num_train_steps=30), str(tmp_path)).results["steps"] == 30


def test_garbage_config_json_is_refused_untouched(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(WorkdirError, match="config.json is unreadable"):
    supervised.run(_smoke(), str(tmp_path))
  assert (tmp_path / "config.json").read_text() == "{not json"


def test_bad_inputs_fail_before_anything_is_written(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(WorkdirError, match="not writable"):
    supervised.run(_smoke(), str(blocker / "run"))
  with pytest.raises(UserError, match="batch_size=60 is not divisible by the 8 devices"):
    supervised.run(_smoke(batch_size=60), str(tmp_path / "a"))
  with pytest.raises(UserError, match="batch_size must be positive"):
    supervised.run(_smoke(batch_size=0), str(tmp_path / "b"))
  with pytest.raises(UserError, match="unknown dataset 'mnits'"):
    supervised.run(_smoke(**{"data.name": "mnits"}), str(tmp_path / "c"))
  assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("penalty,rate", [("l1", 1e-3), ("l2", 1e-2)])
def test_weight_penalties_enter_the_update_of_weights_only(penalty, rate):
  """One SGD step with the penalty against one without, from the same state and batch:
  the difference is exactly -lr * rate * d(penalty)/dW on kernels, zero on biases."""
  config = _smoke(mnist_dnn, "plain,smoke", **{"optimizer.name": "sgd",
                                                "optimizer.learning_rate": 0.1})
  penalised = _smoke(mnist_dnn, "plain,smoke", **{"optimizer.name": "sgd",
                                                   "optimizer.learning_rate": 0.1,
                                                   penalty: rate})
  ds = data.load(config.data)
  model = models.create(config.model, ds.num_classes)
  tx, _ = optimizers.create(config.optimizer, 10, 100)
  state = jax.jit(make_init(model, tx, ds.input_shape, 0))()
  batch = next(inputs.train_batches(config, ds, 0, 1))
  plain, m_plain = jax.jit(make_train_step(model, tx, config))(state, batch)
  pen, m_pen = jax.jit(make_train_step(model, tx, penalised))(state, batch)
  for layer, p in state.params.items():
    w = np.asarray(p["kernel"])
    slope = np.sign(w) if penalty == "l1" else w  # l2 is 0.5 * sum(w^2)
    np.testing.assert_allclose(pen.params[layer]["kernel"] - plain.params[layer]["kernel"],
                               -0.1 * rate * slope, atol=2e-6, err_msg=layer)
    np.testing.assert_array_equal(pen.params[layer]["bias"], plain.params[layer]["bias"])
  size = getattr(losses, f"{penalty}_penalty")(state.params)
  assert float(m_pen["total_loss"] - m_pen["loss"]) == pytest.approx(rate * float(size), rel=1e-4)
  assert float(m_plain["total_loss"]) == float(m_plain["loss"])


@pytest.mark.parametrize("variant", mnist_dnn.VARIANTS)
def test_mnist_dnn_variants_learn(variant, tmp_path):
  config = _smoke(mnist_dnn, f"{variant},smoke")
  out = supervised.run(config, str(tmp_path))
  assert out.results["test_accuracy"] > 0.7
  rows = [r for r in metrics.read_metrics(tmp_path) if r["split"] == "train"]
  penalised = config.l1 > 0 or config.l2 > 0
  assert all((r["total_loss"] > r["loss"]) == penalised for r in rows), variant
  if config.max_norm > 0:  # the paper's radius times the keep probability of the input
    for layer, keep in (("Dense_0", 0.8), ("Dense_1", 0.5), ("Dense_2", 0.5)):
      w = np.asarray(out.state.params[layer]["kernel"])
      assert np.linalg.norm(w, axis=0).max() <= config.max_norm * keep + 1e-4, layer


def test_perceptron_xor_experiment(tmp_path):
  res = perceptron_xor.train_and_evaluate(_smoke(perceptron_xor), str(tmp_path))
  assert res["perceptron_and"] == 1.0 and res["perceptron_or"] == 1.0
  assert res["perceptron_xor"] <= 0.75 and res["best_threshold_unit_xor"] == 0.75
  assert res["mlp_xor"] == 1.0
  assert (tmp_path / "decision_boundaries.png").exists()


def _poison_steps(monkeypatch, steps):
  def poison(step, batch):
    if step in steps:
      batch = dict(batch, input=np.full_like(batch["input"], np.nan))
    return batch

  patch_batches(monkeypatch, poison)


def test_nan_policy_skip_drops_the_bad_update_and_finishes(tmp_path, monkeypatch):
  _poison_steps(monkeypatch, {25})
  out = supervised.run(_smoke(nan_policy="skip"), str(tmp_path))
  assert int(out.state.skipped) == 1 and out.results["test_accuracy"] > 0.8


def test_nan_policy_skip_stops_past_its_limit(tmp_path, monkeypatch):
  _poison_steps(monkeypatch, set(range(25, 60)))
  with pytest.raises(TrainingDiverged, match="more than nan_max_skips=10"):
    supervised.run(_smoke(nan_policy="skip"), str(tmp_path))


def test_nan_policy_rollback_restores_lowers_lr_and_skips_the_batch(tmp_path, monkeypatch,
                                                                    caplog):
  _poison_steps(monkeypatch, {25})
  with caplog.at_level("WARNING"):
    out = supervised.run(_smoke(nan_policy="rollback"), str(tmp_path))
  assert "resuming from step 20 with the learning rate scaled by 0.5" in caplog.text
  assert float(out.state.lr_scale) == 0.5 and int(out.state.skipped) == 1
  steps = [s for s, _ in train_losses(tmp_path)]
  assert steps == sorted(set(steps)) == list(range(10, 61, 10))  # rewound, no duplicates
  assert out.results["test_accuracy"] > 0.8


def test_nan_policy_rollback_gives_up_after_its_limit(tmp_path, monkeypatch):
  _poison_steps(monkeypatch, set(range(25, 60)))
  with pytest.raises(TrainingDiverged, match="after 3 rollbacks"):
    supervised.run(_smoke(nan_policy="rollback"), str(tmp_path))


def test_nan_policy_rollback_rescues_a_too_large_learning_rate(tmp_path):
  config = _smoke(nan_policy="rollback", nan_lr_factor=0.01, log_every_steps=5,
                  **{"optimizer.name": "sgd", "optimizer.learning_rate": 1e4})
  with pytest.raises(TrainingDiverged):  # the same run with policy 'stop' diverges
    supervised.run(_smoke(**{"optimizer.name": "sgd", "optimizer.learning_rate": 1e4}),
                   str(tmp_path / "stop"))
  out = supervised.run(config, str(tmp_path / "rollback"))
  assert float(out.state.lr_scale) < 1.0 and np.isfinite(out.results["final_train_loss"])
