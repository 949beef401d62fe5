"""Recurrent models: scans against step-by-step loops and the papers' equations, the
direction of information flow, masks, long-sequence gradients, shapes, parameter
counts and the registry's errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deeplearn_jax import models
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.rnn import RNNLayer, scan_cell
from deeplearn_jax.models.rnn_cells import CELLS, ctrnn_vector_field, make_cell
from deeplearn_jax.train.state import num_params

OPTIONS = {"lstm": {"peepholes": True}, "jordan": {"decay": 0.5, "out_features": 3},
           "fully_recurrent": {"out_features": 2}, "ctrnn": {"dt": 0.2, "substeps": 2}}


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _reference(kind, p, xs, h):
  """The papers' equations in numpy, step by step, from the cell's parameters."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  b = xs.shape[0]
  state, c = np.zeros((b, h)), np.zeros((b, h))  # c: the LSTM's cell state
  outs = []
  for x in np.moveaxis(np.asarray(xs, np.float64), 1, 0):
    if kind == "elman":
      state = np.tanh(x @ p["input"]["kernel"] + p["input"]["bias"]
                      + state @ p["recurrent_kernel"])
      y = state
    elif kind == "lstm":
      z = x @ p["input"]["kernel"] + p["input"]["bias"] + state @ p["recurrent_kernel"]
      zi, zf, zg, zo = np.split(z, 4, axis=-1)
      pi, pf, po = p["peephole"]
      c = _sigmoid(zf + pf * c) * c + _sigmoid(zi + pi * c) * np.tanh(zg)
      state = y = _sigmoid(zo + po * c) * np.tanh(c)
    elif kind == "second_order":
      if not outs:
        state[:, 0] = 1.0
      w = p["input"]["kernel"].reshape(-1, h, h)  # [k, j, i]
      state = _sigmoid(np.einsum("bj,bk,kji->bi", state, x, w) + p["bias"])
      y = state
    elif kind == "ctrnn":
      inputs = x @ p["input"]["kernel"]
      for _ in range(2):
        state = state + 0.2 * np.asarray(ctrnn_vector_field(
            state, inputs, p["weights"], p["theta"], np.exp(p["log_tau"])))
      y = _sigmoid(state + p["theta"])
    outs.append(y)
  return np.stack(outs, 1)


class _ScanAndLoop(nn.Module):
  kind: str
  hidden: int = 4

  @nn.compact
  def __call__(self, xs, reverse=False):
    cell = make_cell(self.kind, self.hidden, options=OPTIONS.get(self.kind), name="cell")
    carry, ys = scan_cell(cell, xs, reverse=reverse, unroll=3)
    c, outs = cell.initial_carry(xs.shape[0]), []
    steps = range(xs.shape[1])
    for t in reversed(steps) if reverse else steps:
      c, y = cell(c, xs[:, t])
      outs.append(y)
    loop = jnp.stack(outs[::-1] if reverse else outs, 1)
    return carry, ys, c, loop


@pytest.mark.parametrize("kind", list(CELLS))
def test_scanned_cell_equals_a_python_loop(kind):
  """Forward and reverse, with unroll=3 over 7 steps (a remainder); four cells also
  against their paper's equations written out in numpy."""
  xs = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 3)), jnp.float32)
  model = _ScanAndLoop(kind)
  v = model.init(jax.random.PRNGKey(1), xs)
  for reverse in (False, True):
    carry, ys, loop_carry, loop = model.apply(v, xs, reverse)
    np.testing.assert_allclose(ys, loop, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(loop_carry)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  _, ys, _, _ = model.apply(v, xs)
  assert np.abs(np.asarray(ys)).max() > 1e-3  # not trivially zero
  if kind in ("elman", "lstm", "second_order", "ctrnn"):
    ref = _reference(kind, v["params"]["cell"], xs, 4)
    np.testing.assert_allclose(ys, ref, rtol=1e-4, atol=1e-5)


def test_fused_lstm_equals_the_scanned_step_with_its_gradients():
  """The LSTM's hand-written backward pass against JAX's gradient of the scanned step,
  with a mask with gaps, forward and reverse, and gradients reaching the carry."""
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  mask = jnp.array([[1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 1, 1]], bool)

  class Both(nn.Module):
    @nn.compact
    def __call__(self, xs, mask, reverse, fused):
      return scan_cell(make_cell("lstm", 4, name="cell"), xs, mask, reverse=reverse,
                       unroll=2, fused=fused)

  model = Both()
  v = model.init(jax.random.PRNGKey(0), xs, None, False, False)
  w = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)

  def loss(p, x, m, reverse, fused):
    (c, h), ys = model.apply({"params": p}, x, m, reverse, fused)
    return jnp.sum(jnp.sin(ys) * w) + jnp.sum(c ** 2) + jnp.sum(h)

  for m, reverse in ((None, False), (mask, False), (mask, True)):
    fused = jax.value_and_grad(loss, argnums=(0, 1))(v["params"], xs, m, reverse, True)
    plain = jax.value_and_grad(loss, argnums=(0, 1))(v["params"], xs, m, reverse, False)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(plain)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(fused[1][0]["cell"]["recurrent_kernel"]).sum()) > 0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_only_the_bidirectional_output_reads_the_future(bidirectional):
  xs = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 2)), jnp.float32)
  layer = RNNLayer("gru", 3, bidirectional=bidirectional)
  v = layer.init(jax.random.PRNGKey(0), xs)
  # d outputs[t] / d xs[s] for every t, s: [time, out, time, in] for the one row.
  jac = jax.jit(jax.jacobian(lambda x: layer.apply(v, x)[1]))(xs)[0, :, :, 0, :, :]
  influence = np.abs(np.asarray(jac)).sum(axis=(1, 3))  # [t, s]
  future = np.triu(np.ones((6, 6), bool), k=1)
  assert (influence[~future] > 0).all()  # the present and the past, in both
  if bidirectional:
    assert (influence[future] > 0).all()
  else:
    assert (influence[future] == 0).all()


def test_masked_steps_leave_the_carry_unchanged():
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  # Gaps, trailing and leading padding; 4 valid steps in each row, so that the rows with
  # their masked steps cut out make one batch.
  mask = jnp.array([[1, 0, 1, 1, 1, 0], [0, 1, 1, 0, 1, 1]], bool)

  class Masked(nn.Module):
    @nn.compact
    def __call__(self, xs, mask, reverse=False):
      return scan_cell(make_cell("lstm", 4, name="cell"), xs, mask, reverse=reverse)

  model = Masked()
  v = model.init(jax.random.PRNGKey(0), xs, mask)
  for reverse in (False, True):
    carry, ys = model.apply(v, xs, mask, reverse)
    kept = np.asarray(mask)
    # The rows with their masked steps cut out give the same final states and outputs.
    cut = jnp.stack([xs[row, kept[row]] for row in range(2)])
    ref_carry, ref_ys = model.apply(v, cut, None, reverse)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(ref_carry)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ys)[kept].reshape(2, 4, -1), ref_ys,
                               rtol=1e-5, atol=1e-6)
    assert (np.asarray(ys)[~kept] == 0).all()


def test_lengths_make_padding_irrelevant_to_the_classifier():
  cfg = ml_collections.ConfigDict(dict(name="rnn", cell="gru", hidden=4, bidirectional=True))
  model = models.create(cfg, 3)
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.normal(size=(1, 7, 2)), jnp.float32)
  v = model.init(jax.random.PRNGKey(0), xs)
  apply = jax.jit(model.apply)
  short = apply(v, xs[:, :4])
  padded = apply(v, xs.at[:, 4:].set(9.0), lengths=jnp.array([4]))
  np.testing.assert_allclose(short, padded, rtol=1e-5, atol=1e-6)
  assert not np.allclose(short, apply(v, xs.at[:, 4:].set(9.0)))


@pytest.mark.parametrize("cell", ["lstm", "elman"])
def test_gradients_stay_finite_over_1000_steps(cell):
  cfg = ml_collections.ConfigDict(dict(name="rnn", cell=cell, hidden=8, unroll=4))
  model = models.create(cfg, 1)
  xs = jnp.asarray(np.random.default_rng(0).normal(size=(2, 1000, 2)) * 3, jnp.float32)
  v = model.init(jax.random.PRNGKey(0), xs[:, :2])
  loss = lambda p, x: jnp.sum(model.apply({"params": p}, x) ** 2)
  g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(v["params"], xs)
  leaves = jax.tree.leaves(g_params)
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  assert np.isfinite(np.asarray(g_x)).all()
  assert np.abs(np.asarray(g_x[:, -1])).sum() > 0  # the gradient does flow


def test_hierarchical_rnn_reads_rows_then_row_summaries():
  model = models.create(ml_collections.ConfigDict(dict(
      name="hierarchical_rnn", hidden=6, upper_hidden=5)), 10)
  images = jnp.ones((2, 28, 28, 1))
  v = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
  p = v["params"]
  assert p["lower"]["layer0"]["forward"]["input"]["kernel"].shape == (1, 24)  # a pixel
  assert p["upper"]["layer0"]["forward"]["input"]["kernel"].shape == (6, 20)  # a row
  assert jax.eval_shape(model.apply, v, images).shape == (2, 10)
  seq = models.create(ml_collections.ConfigDict(dict(
      name="hierarchical_rnn", hidden=6, chunk=4, bidirectional=True)), 1)
  xs = jnp.ones((3, 12, 2))
  out, v = jax.eval_shape(lambda x: seq.init_with_output(jax.random.PRNGKey(0), x), xs)
  assert v["params"]["upper"]["layer0"]["backward"]["input"]["kernel"].shape == (12, 24)
  assert out.shape == (3, 1)
  with pytest.raises(ValueError, match="chunk must divide"):
    jax.eval_shape(seq.apply, v, jnp.ones((3, 10, 2)))


def test_readouts_and_image_rows():
  cfg = ml_collections.ConfigDict(dict(name="rnn", cell="elman", hidden=4, readout="all"))
  xs = jnp.ones((2, 5, 3))
  out = jax.eval_shape(lambda x: models.create(cfg, 7).init_with_output(
      jax.random.PRNGKey(0), x)[0], xs)
  assert out.shape == (2, 5, 7)
  cfg.readout = "mean"
  images = jnp.ones((2, 28, 28, 1))
  model = models.create(cfg, 10)
  out, v = jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x), images)
  assert out.shape == (2, 10)
  assert v["params"]["rnn"]["layer0"]["forward"]["input"]["kernel"].shape == (28, 4)


@pytest.mark.parametrize("h,i,layers,bidir", [(32, 28, 1, False), (16, 3, 2, True)])
def test_lstm_parameter_count_without_initialising(h, i, layers, bidir):
  cfg = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=h, num_layers=layers,
                                       bidirectional=bidir))
  model = models.create(cfg, 10)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 5, i)))
  lstm = lambda h, i: 4 * (h * (h + i) + h)
  d = 2 if bidir else 1
  expected = sum(d * lstm(h, i if k == 0 else d * h) for k in range(layers)) + d * h * 10 + 10
  assert num_params(shapes["params"]) == expected


def test_registry_errors_name_the_known_choices():
  with pytest.raises(UserError, match="unknown cell 'lstmm'; known: elman, jordan"):
    make_cell("lstmm", 4)
  with pytest.raises(UserError, match="cell lstm: .*peephole"):
    make_cell("lstm", 4, options={"peephole": True})
  with pytest.raises(UserError, match="config.model for rnn: unknown cell 'lstmm'; known"):
    models.create(ml_collections.ConfigDict(dict(name="rnn", cell="lstmm")), 2)
  with pytest.raises(UserError, match="readout must be one of last, mean, all"):
    models.create(ml_collections.ConfigDict(dict(name="rnn", readout="first")), 2)
  with pytest.raises(UserError, match="config.model for hierarchical_rnn: a hierarchical"):
    models.create(ml_collections.ConfigDict(dict(name="hierarchical_rnn", readout="all")), 2)


def test_chrono_init_spreads_the_memory_times_up_to_its_maximum():
  cell = make_cell("lstm", 256, options={"chrono_max": 500})
  params = cell.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), method=cell.project)
  bias = np.asarray(params["params"]["input"]["bias"]).reshape(4, 256)
  b_i, b_f, b_g, b_o = bias
  np.testing.assert_array_equal(b_i, -b_f)
  assert not b_g.any() and not b_o.any()
  memory = 1 + np.exp(b_f)  # 1 / (1 - sigmoid(b_f)): the steps a unit's cell keeps a value
  assert memory.min() >= 2 and memory.max() <= 500 and np.median(memory) > 100
  plain = make_cell("lstm", 8, options={"forget_bias": 5.0})
  bias = plain.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), method=plain.project)
  np.testing.assert_array_equal(np.asarray(bias["params"]["input"]["bias"]).reshape(4, 8)[1], 5)
