"""Issue 4, parts 3 and 4: the vanishing gradient, measured, and optimizers side by side.
The MLP's initialisations, batch norm and skips; per-layer gradient norms in the trainer's
log; both experiments' `:smoke` variants end to end on the embedded digits."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from deeplearn_jax import data, metrics, models
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.mlp import MLP
from conftest import smoke_config
from experiments import optimizers as optimizers_exp
from experiments import vanishing_gradients as vg


def _init_norms(name: str) -> list[float]:
  """Per-layer gradient norms at initialisation of one configuration, on digits."""
  sub = vg.run_config(vg.get_config("smoke"), name)
  ds = data.load(sub.data)
  return vg.init_grad_norms(models.create(sub.model, ds.num_classes), ds, sub)


def test_deep_sigmoid_with_naive_init_vanishes_relu_he_does_not():
  sigmoid = _init_norms("sigmoid_naive_d12")
  assert len(sigmoid) == 12
  # Each sigmoid layer multiplies the backward signal by at most 1/4 times tiny weights.
  assert sigmoid[0] < 1e-8 * sigmoid[-1]
  assert all(a < b for a, b in zip(sigmoid, sigmoid[1:]))
  relu = _init_norms("relu_he_d12")
  assert max(relu) < 10 * min(relu), relu
  # Batch norm keeps them within a modest factor too, though at init it grows them
  # towards the input layer (Yang et al. 2019).
  bn = _init_norms("relu_he_bn_d12")
  assert max(bn) < 100 * min(bn) and bn[0] > bn[-1], bn


def test_kernel_inits_have_their_published_scales():
  x = jnp.zeros((1, 400))
  stds = {}
  for init in ("lecun", "naive", "glorot", "he"):
    params = MLP(10, hidden=(400, 400), kernel_init=init).init(jax.random.PRNGKey(0), x)
    stds[init] = float(jnp.std(params["params"]["Dense_1"]["kernel"]))
  assert stds["naive"] == pytest.approx(0.01, rel=0.02)
  assert stds["lecun"] == pytest.approx(np.sqrt(1 / 400), rel=0.02)
  assert stds["glorot"] == pytest.approx(np.sqrt(2 / 800), rel=0.02)
  assert stds["he"] == pytest.approx(np.sqrt(2 / 400), rel=0.02)


class _PlainMLP(nn.Module):
  """The MLP as it was before kernel_init, batch_norm and residual (no dropout)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in (64, 32):
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(10)(x)


def test_mlp_defaults_are_unchanged():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
  old, new = _PlainMLP(), MLP(10, hidden=(64, 32))
  v_old, v_new = old.init(jax.random.PRNGKey(1), x), new.init(jax.random.PRNGKey(1), x)
  assert jax.tree.all(jax.tree.map(np.array_equal, v_old, v_new))
  np.testing.assert_array_equal(old.apply(v_old, x), new.apply(v_new, x))


def test_unknown_kernel_init_and_bad_names_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown kernel_init 'xavier'; known: lecun, naive"):
    MLP(10, kernel_init="xavier").init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
  with pytest.raises(UserError, match="unknown initialisation 'xavier'"):
    vg.parse("relu_xavier_d5")
  with pytest.raises(UserError, match="bad configuration name 'deep_relu'"):
    vg.parse("deep_relu")
  config = smoke_config(vg, "smoke", **{"grid.extra": ("swish_he_d5",)})
  with pytest.raises(UserError, match="unknown activation 'swish'"):
    vg.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_batch_norm_model_trains_and_keeps_running_statistics():
  model = MLP(10, hidden=(32, 32), kernel_init="he", batch_norm=True)
  ds = data.load(ml_collections.ConfigDict(dict(name="digits")))
  batch = ds.transform(ds.train.gather(np.arange(256)))
  variables = model.init(jax.random.PRNGKey(0), batch["input"])
  assert "bias" not in variables["params"]["Dense_0"]  # batch norm's shift replaces it
  tx = optax.sgd(0.1, momentum=0.9)

  @jax.jit
  def step(params, stats, opt_state):
    def loss_fn(p):
      logits, new = model.apply({"params": p, "batch_stats": stats}, batch["input"],
                                train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), new["batch_stats"], opt_state, loss

  params, stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)
  losses = []
  for _ in range(30):
    params, stats, opt_state, loss = step(params, stats, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.2 * losses[0]
  assert float(jnp.abs(stats["BatchNorm_0"]["mean"]).max()) > 0.01  # running stats moved
  evaluated = model.apply({"params": params, "batch_stats": stats}, batch["input"])
  accuracy = float(jnp.mean(jnp.argmax(evaluated, -1) == batch["label"]))
  assert accuracy > 0.9  # eval mode (running averages) agrees with what was learned


def test_residual_skips_every_hidden_layer_whose_width_matches():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16))
  plain, skip = MLP(10, hidden=(32, 32, 32)), MLP(10, hidden=(32, 32, 32), residual=True)
  v = plain.init(jax.random.PRNGKey(1), x)  # same parameters: skips add none
  assert jax.tree.structure(v) == jax.tree.structure(skip.init(jax.random.PRNGKey(1), x))
  assert not np.allclose(plain.apply(v, x), skip.apply(v, x))
  # 16 -> 8: no width matches, so no skip and the same function.
  one, one_skip = MLP(10, hidden=(8,)), MLP(10, hidden=(8,), residual=True)
  w = one.init(jax.random.PRNGKey(1), x)
  np.testing.assert_array_equal(one.apply(w, x), one_skip.apply(w, x))


def test_run_configs_do_not_depend_on_the_rest_of_the_grid():
  a = vg.get_config()
  b = vg.get_config()
  b.unlock()
  b.grid.depths = (3, 30)
  b.grid.extra = ()
  b.lock()
  sub = vg.run_config(a, "relu_he_bn_d20")
  assert sub.to_dict() == vg.run_config(b, "relu_he_bn_d20").to_dict()
  assert "grid" not in sub and sub.model.hidden == (128,) * 19 and sub.model.batch_norm
  assert "init_std" not in sub.model and vg.run_config(a, "tanh_naive_d5").model.init_std == 0.01
  with pytest.raises(AttributeError):
    a.no_such_key = 1  # locked: the command line refuses unknown keys


def test_vanishing_gradients_smoke_end_to_end(tmp_path):
  # Logging every step makes the trainer's step-1 gradient norms comparable with the
  # experiment's own gradient at initialisation.
  config = smoke_config(vg, "smoke", log_every_steps=1)
  results = vg.train_and_evaluate(config, str(tmp_path))
  names = vg.run_names(config.grid)
  assert set(names) == {"sigmoid_naive_d6", "sigmoid_he_d6", "relu_naive_d6", "relu_he_d6",
                        "relu_he_bn_d6", "sigmoid_naive_res_d6"}
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert list(on_disk["runs"]) == sorted(names)
  for name in names:
    run = on_disk["runs"][name]
    assert len(run["grad_norm_init"]) == len(run["grad_norm_end"]) == 6
    first = [r for r in metrics.read_metrics(tmp_path / name) if r["split"] == "train"][0]
    assert first["step"] == 1
    logged = vg.by_layer({k.split("/")[1]: v for k, v in first.items() if "grad_norm/" in k})
    np.testing.assert_allclose(logged, run["grad_norm_init"], rtol=1e-3)
    assert (tmp_path / name / "checkpoints").is_dir()
  runs = results["runs"]
  assert runs["sigmoid_naive_d6"]["grad_norm_init"][0] < 1e-6 * runs["sigmoid_naive_d6"][
      "grad_norm_init"][-1]
  assert runs["relu_he_bn_d6"]["test_accuracy"] > 0.5 > runs["sigmoid_naive_d6"]["test_accuracy"]
  assert (tmp_path / "grad_norms.png").stat().st_size > 10_000


@pytest.mark.slow
def test_optimizers_smoke_end_to_end(tmp_path):
  results = optimizers_exp.train_and_evaluate(smoke_config(optimizers_exp),
                                                 str(tmp_path))
  names = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]
  assert list(results["runs"]) == names
  on_disk = json.loads((tmp_path / "results.json").read_text())
  for name in names:
    run = on_disk["runs"][name]
    assert run["test_accuracy"] > 0.6, (name, run)  # chance is 0.1
    assert run["train_seconds"] > 0 and np.isfinite(run["final_train_loss"])
    config = json.loads((tmp_path / name / "config.json").read_text())
    assert config["optimizer"]["name"] == name
    # Off by default: no per-layer gradient norms in the log.
    assert not any("grad_norm/" in k for r in metrics.read_metrics(tmp_path / name) for k in r)
  assert on_disk["runs"]["rmsprop"]["learning_rate"] == 1e-3
  assert (tmp_path / "curves.png").stat().st_size > 10_000
