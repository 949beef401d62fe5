"""The DBN: greedy pre-training, a saved stack that any supervised run starts from, and
fine-tuning that beats the same net from a random init."""

import jax
import ml_collections
import numpy as np
import pytest

from deeplearn_jax import checkpoint, models
from deeplearn_jax.errors import UserError, WorkdirError
from deeplearn_jax.train import optimizers
from deeplearn_jax.train.state import load_pretrained, make_init, starting_from
from conftest import smoke_config
from experiments import dbn


def _mlp_init(hidden=(16, 8)):
  model = models.create(ml_collections.ConfigDict(
      dict(name="mlp", hidden=hidden, activation="sigmoid")), 10)
  tx, _ = optimizers.create(optimizers.default_config(), 10, 100)
  return make_init(model, tx, (8, 8, 1), seed=0), tx


def test_pretrained_leaves_replace_the_init_and_nothing_else(tmp_path, monkeypatch):
  init, tx = _mlp_init()
  state = jax.jit(init)()
  rng = np.random.default_rng(0)
  stack = {"Dense_0": {"kernel": rng.normal(size=(64, 16)).astype(np.float32),
                       "bias": rng.normal(size=16).astype(np.float32)}}
  monkeypatch.chdir(tmp_path)  # a relative path, as users type it
  checkpoint.save_params("stack", stack)
  merged = load_pretrained("stack", jax.eval_shape(lambda: state.params))
  started = jax.jit(starting_from(init, merged, tx))()
  np.testing.assert_array_equal(started.params["Dense_0"]["kernel"], stack["Dense_0"]["kernel"])
  np.testing.assert_array_equal(started.params["Dense_0"]["bias"], stack["Dense_0"]["bias"])
  for layer in ("Dense_1", "Dense_2"):
    np.testing.assert_array_equal(started.params[layer]["kernel"], state.params[layer]["kernel"])
  # The optimizer state is fresh for the new parameters (momentum: zeros of their shapes).
  assert jax.tree.structure(started.opt_state) == jax.tree.structure(state.opt_state)


def test_pretrained_of_another_shape_or_name_is_refused(tmp_path):
  init, _ = _mlp_init()
  abstract = jax.eval_shape(init).params
  checkpoint.save_params(str(tmp_path / "wide"),
                         {"Dense_0": {"kernel": np.zeros((64, 32), np.float32)}})
  with pytest.raises(UserError, match=r"Dense_0.*kernel.*has shape \(64, 32\)"):
    load_pretrained(str(tmp_path / "wide"), abstract)
  checkpoint.save_params(str(tmp_path / "other"), {"Conv_0": {"kernel": np.zeros((3,))}})
  with pytest.raises(UserError, match="the model has no parameter"):
    load_pretrained(str(tmp_path / "other"), abstract)


def test_damaged_stack_is_refused(tmp_path):
  path = tmp_path / "stack"
  checkpoint.save_params(str(path), {"w": np.arange(1000, dtype=np.float32)})
  for f in (path / "params").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000:  # the array data: overwrite its bytes
      with open(f, "r+b") as fh:
        fh.seek(f.stat().st_size // 2)
        fh.write(b"\x00" * 64)
  with pytest.raises(WorkdirError, match=rf"(cannot load parameters from {path}|parameters in "
                                           rf"{path} do not match the checksum)"):
    checkpoint.load_params(str(path))


@pytest.mark.slow
def test_dbn_smoke_pretraining_helps_and_reruns_identically(tmp_path):
  # One random-init comparison is the point; the Glorot one would only add time.
  config = smoke_config(dbn, extra_random_inits=())
  wd = str(tmp_path / "dbn")
  results = dbn.train_and_evaluate(config, wd)
  # Pre-trained fine-tuning learns the digits; the same deep sigmoid net from a random
  # init is still near chance after the same 200 steps (the vanishing-gradient story).
  assert results["test_error_pretrained"] < 0.35, results
  assert results["test_error_random_init"] > results["test_error_pretrained"] + 0.3, results
  # The saved stack is the trained RBMs' weights and hidden biases, layer by layer.
  stack = checkpoint.load_params(results["stack"])
  for i, width in enumerate(config.model.hidden):
    rbm_params = checkpoint.read_checkpoint(f"{wd}/rbm{i}/checkpoints")["params"]
    np.testing.assert_array_equal(stack[f"Dense_{i}"]["kernel"], rbm_params["W"])
    np.testing.assert_array_equal(stack[f"Dense_{i}"]["bias"], rbm_params["b"])
    assert rbm_params["W"].shape[1] == width
  for name in ("comparison.png", "rbm0/filters.png", "finetune_pretrained/results.json"):
    assert (tmp_path / "dbn" / name).exists(), name
  # Every stage finds its finished run: the same figures, nothing retrained.
  again = dbn.train_and_evaluate(config, wd)
  assert again["test_error_pretrained"] == results["test_error_pretrained"]
  assert again["test_error_random_init"] == results["test_error_random_init"]


def test_dbn_refuses_a_net_its_rbms_cannot_build():
  config = dbn.get_config("smoke")
  with config.unlocked():
    config.model.activation = "relu"
  with pytest.raises(UserError, match="sigmoid"):
    dbn.train_and_evaluate(config, "/nonexistent/never/created")
