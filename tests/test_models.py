"""Models and the pieces of the loss: shapes, parameter counts, the perceptron rule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from deeplearn_jax import models
from deeplearn_jax.data import embedded
from deeplearn_jax.errors import UserError
from deeplearn_jax.models import mlp, perceptron
from deeplearn_jax.train import losses, optimizers
from deeplearn_jax.train.state import num_params


def _count(model, shape):
  """(parameter count, output) as shapes only: nothing is initialised or run."""
  x = jnp.zeros((2, *shape))
  out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x))
  return num_params(variables["params"]), out


def test_lenet5_has_the_paper_layer_sizes():
  n, out = _count(models.create(ml_collections.ConfigDict(dict(name="lenet5")), 10), (28, 28, 1))
  # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (softmax instead of RBF units).
  assert n == 156 + 2416 + 48120 + 10164 + 850
  assert out.shape == (2, 10)


def test_mlp_parameter_count_and_dropout_only_in_training():
  cfg = ml_collections.ConfigDict(dict(name="mlp", hidden=(1024, 1024, 1024),
                                       dropout_input=0.2, dropout_hidden=0.5))
  model = models.create(cfg, 10)
  n, _ = _count(model, (28, 28, 1))
  assert n == 784 * 1024 + 1024 + 2 * (1024 * 1024 + 1024) + 1024 * 10 + 10
  x = jnp.ones((4, 28, 28, 1))
  v = model.init(jax.random.PRNGKey(0), x)
  a = model.apply(v, x, train=False)
  b = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  c = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert np.allclose(a, model.apply(v, x, train=False))
  assert not np.allclose(a, b) and not np.allclose(b, c)


def test_unknown_model_and_bad_field_are_user_errors():
  with pytest.raises(UserError, match="unknown model 'vgg99'"):
    models.create(ml_collections.ConfigDict(dict(name="vgg99")), 10)
  with pytest.raises(UserError, match="config.model for mlp"):
    models.create(ml_collections.ConfigDict(dict(name="mlp", widht=3)), 10)


@pytest.mark.parametrize("table,separable", [("and", True), ("or", True), ("xor", False)])
def test_perceptron_rule_converges_only_on_separable_tables(table, separable):
  rows = embedded.truth_table(table)["train"]
  x, y = jnp.asarray(rows["input"]), jnp.asarray(rows["label"])
  params, mistakes = perceptron.train(perceptron.init(2), x, y, epochs=30)
  acc = float(jnp.mean(perceptron.predict(params, x) == y))
  if separable:
    assert acc == 1.0 and int(mistakes[-1]) == 0
  else:
    assert acc <= 0.75 and int(mistakes[-1]) > 0


def test_max_norm_projects_each_unit():
  w = jnp.array(np.random.default_rng(0).normal(size=(50, 7)) * 3, jnp.float32)
  b = jnp.ones((7,)) * 100.0
  out = losses.max_norm({"kernel": w, "bias": b}, 2.0)
  norms = np.linalg.norm(np.asarray(out["kernel"]), axis=0)
  assert np.all(norms <= 2.0 + 1e-5)
  small = np.linalg.norm(np.asarray(w), axis=0) <= 2.0
  assert np.allclose(np.asarray(out["kernel"])[:, small], np.asarray(w)[:, small])
  assert np.array_equal(out["bias"], b)  # biases are not constrained


def test_max_norm_radius_is_the_papers_under_inverted_dropout():
  # Srivastava et al. bound weights trained with unscaled dropout; flax scales the kept
  # units by 1 / keep, so the bound on our weights is the radius times each input's keep.
  model = mlp.MLP(num_classes=3, hidden=(6, 6), dropout_input=0.2, dropout_hidden=0.5)
  params = model.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
  big = jax.tree.map(lambda p: p * 100.0, params)
  out = losses.max_norm(big, 3.0, model.input_keep())
  for layer, keep in (("Dense_0", 0.8), ("Dense_1", 0.5), ("Dense_2", 0.5)):
    norms = np.linalg.norm(np.asarray(out[layer]["kernel"]), axis=0)
    np.testing.assert_allclose(norms, 3.0 * keep, rtol=1e-5, err_msg=layer)
  # Without dropout the radius is the paper's as it is.
  plain = mlp.MLP(num_classes=3, hidden=(6, 6)).input_keep()
  assert set(plain.values()) == {1.0}


def test_penalties_skip_biases():
  params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0])}
  assert float(losses.l2_penalty(params)) == pytest.approx(2.5)
  assert float(losses.l1_penalty(params)) == pytest.approx(3.0)


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_every_optimizer_reduces_a_quadratic(name):
  cfg = optimizers.default_config()
  cfg.name, cfg.learning_rate = name, 0.05
  tx, _ = optimizers.create(cfg, steps_per_epoch=10, total_steps=100)
  params = {"w": jnp.ones((3, 3))}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  start = loss(params)
  for _ in range(50):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < 0.5 * start


def test_nesterov_looks_ahead_where_momentum_does_not():
  """On f(w) = w^2 / 2 from w = 1, learning rate 0.1, momentum 0.9. Step 1: heavy-ball
  momentum moves by lr * g = 0.1; Nesterov's look-ahead update is lr * (g + 0.9 v) with
  v = g, 0.19. Step 2 as worked out below."""
  def run(name, steps):
    cfg = optimizers.default_config()
    cfg.name, cfg.learning_rate, cfg.momentum = name, 0.1, 0.9
    tx, _ = optimizers.create(cfg, steps_per_epoch=10, total_steps=100)
    w = {"w": jnp.ones(())}
    state = tx.init(w)
    for _ in range(steps):
      updates, state = tx.update(w, state, w)  # the gradient of w^2 / 2 is w
      w = optax.apply_updates(w, updates)
    return float(w["w"])

  assert run("momentum", 1) == pytest.approx(0.9)
  assert run("nesterov", 1) == pytest.approx(0.81)
  # Step 2, momentum: v = 0.9 * 1 + 0.9 = 1.8 -> 0.9 - 0.18 = 0.72; Nesterov: v = 0.9 + 0.81
  # = 1.71, update g + 0.9 v = 0.81 + 1.539 = 2.349 -> 0.81 - 0.2349 = 0.5751.
  assert run("momentum", 2) == pytest.approx(0.72)
  assert run("nesterov", 2) == pytest.approx(0.5751)


def test_momentum_rises_over_its_ramp_then_holds():
  """Heavy-ball velocity v <- mu_t v + g under a constant gradient, with mu_t rising
  linearly from 0.5 to 0.9 over 4 steps (the dropout paper's ramp, shortened), inside jit."""
  cfg = optimizers.default_config()
  cfg.learning_rate, cfg.momentum_initial, cfg.momentum, cfg.momentum_ramp_steps = 1.0, 0.5, 0.9, 4
  tx, _ = optimizers.create(cfg, steps_per_epoch=10, total_steps=100)
  w = {"w": jnp.zeros(())}
  state = tx.init(w)
  update = jax.jit(lambda s: tx.update({"w": jnp.ones(())}, s, w))
  velocity, steps = 0.0, []
  for t in range(7):
    updates, state = update(state)
    velocity = (0.5 + 0.1 * min(t, 4)) * velocity + 1.0
    steps.append((float(-updates["w"]), velocity))
  for got, want in steps:
    assert got == pytest.approx(want, rel=1e-6)
  cfg.momentum_initial = -1.0  # off: constant momentum, as before
  tx, _ = optimizers.create(cfg, steps_per_epoch=10, total_steps=100)
  updates, state = tx.update({"w": jnp.ones(())}, tx.update({"w": jnp.ones(())}, tx.init(w))[1])
  assert float(-updates["w"]) == pytest.approx(1.9)


def test_schedules_warmup_then_decay():
  cfg = optimizers.default_config()
  cfg.learning_rate, cfg.warmup_steps = 1.0, 10
  for kind in ("cosine", "linear"):
    cfg.schedule = kind
    lr = optimizers.schedule(cfg, steps_per_epoch=10, total_steps=110)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5)
    assert float(lr(10)) == pytest.approx(1.0) and float(lr(110)) == pytest.approx(0.0, abs=1e-6)
  cfg.schedule, cfg.warmup_steps, cfg.decay_epochs = "step", -1, (2, 5)
  lr = optimizers.schedule(cfg, steps_per_epoch=10, total_steps=100)
  assert [round(float(lr(s)), 6) for s in (19, 21, 49, 51)] == [1.0, 0.1, 0.1, 0.01]
  cfg.schedule = "exponential"
  with pytest.raises(UserError, match="schedule"):
    optimizers.schedule(cfg, 10, 100)


@pytest.mark.parametrize("padding,channels,kernel,width_block", [
    ("SAME", 1, (5, 5), 1), ("VALID", 6, (5, 5), 1), ("SAME", 1, (5, 5), 4),
    ("VALID", 6, (5, 5), 5), ("SAME", 3, (3, 5), 3), ("VALID", 2, (5, 3), 2)])
def test_fast_conv_equals_flax_conv(padding, channels, kernel, width_block):
  """Values and gradients (parameters and input), including output widths (11, 7, 9)
  that the width blocks do not divide."""
  from deeplearn_jax.models.layers import Conv
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 12, 11, channels)), jnp.float32)
  ours = Conv(4, kernel, padding=padding, width_block=width_block)
  theirs = nn.Conv(4, kernel, padding=padding)
  v = ours.init(jax.random.PRNGKey(0), x)
  # Jitted: op by op, the im2col path dispatches (and compiles) dozens of small programs.
  np.testing.assert_allclose(jax.jit(ours.apply)(v, x), jax.jit(theirs.apply)(v, x),
                             rtol=1e-5, atol=1e-5)
  loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply({"params": p}, x)))
  g_ours = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(v["params"], x)
  g_ref = jax.jit(jax.grad(loss(theirs), argnums=(0, 1)))(v["params"], x)
  assert jax.tree.structure(g_ours) == jax.tree.structure(g_ref)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_max_pool_gradient_shares_ties_like_jax():
  """The hand-written max-pool gradient equals JAX's own gradient of a max, which splits
  it evenly among tied inputs (a zero background ties all four of a window)."""
  from deeplearn_jax.models.layers import pool2x2
  rng = np.random.default_rng(2)
  x = jnp.asarray(np.where(rng.random((2, 8, 9, 3)) < 0.5, 0.0, rng.normal(size=(2, 8, 9, 3))),
                  jnp.float32)
  g = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  plain = lambda x: x[:, :8, :8].reshape(2, 4, 2, 4, 2, 3).max(axis=(2, 4))
  np.testing.assert_array_equal(pool2x2(x), plain(x))
  ours = jax.jit(jax.grad(lambda x: jnp.sum(pool2x2(x) * g)))(x)
  ref = jax.jit(jax.grad(lambda x: jnp.sum(plain(x) * g)))(x)
  windows = x[:, :8, :8].reshape(2, 4, 2, 4, 2, 3)
  assert ((windows == plain(x)[:, :, None, :, None]).sum(axis=(2, 4)) > 1).any()  # has ties
  np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2x2_equals_flax_pooling(kind):
  from deeplearn_jax.models.layers import pool2x2
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 10, 3)), jnp.float32)
  ref = (nn.max_pool if kind == "max" else nn.avg_pool)(x, (2, 2), strides=(2, 2))
  np.testing.assert_allclose(pool2x2(x, kind), ref, rtol=1e-6)
  g = jax.grad(lambda x: jnp.sum(pool2x2(x, kind) * jnp.arange(20.0).reshape(1, 4, 5, 1)))(x)
  g_ref = jax.grad(lambda x: jnp.sum((nn.max_pool if kind == "max" else nn.avg_pool)(
      x, (2, 2), strides=(2, 2)) * jnp.arange(20.0).reshape(1, 4, 5, 1)))(x)
  np.testing.assert_allclose(g, g_ref, rtol=1e-6)
