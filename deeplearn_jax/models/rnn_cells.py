"""Recurrent cells, one time step each: Elman and Jordan nets, the fully recurrent net,
the LSTM with forget gate and peepholes, the GRU, the second-order RNN and the
continuous-time RNN, with a registry by name (CELLS, make_cell).

Every cell splits its step in two so that a sequence runs fast: `project(xs)` is the part
that reads only the input, done for all time steps at once as one matmul before the
scan, and `step(carry, xp)` is the recurrence, one matmul per step (the gates fused).
`cell(carry, x)` does both for one step, as flax's nn.RNN expects of a cell. A cell may
also run a whole sequence its own way (`sequence`): the LSTM's has a hand-written
gradient (lstm_scan.py)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplearn_jax.errors import UserError
from deeplearn_jax.models.layers import Dense
from deeplearn_jax.models.lstm_scan import lstm_sequence

Carry = Any
ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": nn.sigmoid, "relu": nn.relu}
_recurrent_init = nn.initializers.orthogonal()


def _activation(name: str):
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


class Cell(nn.RNNCellBase):
  """The interface of every cell: project, step, initial_carry and output."""

  hidden: int
  dtype: str = "float32"

  def project(self, xs: jax.Array) -> jax.Array:
    """The input's part of the step, for any leading axes ([batch, time, ...] at once)."""
    return self.input(xs.astype(self.dtype))

  def step(self, carry: Carry, xp: jax.Array) -> tuple[Carry, jax.Array]:
    """One step from a projected input xp [batch, ...]: (next carry, output)."""
    raise NotImplementedError

  def initial_carry(self, batch: int) -> Carry:
    return jnp.zeros((batch, self.hidden), self.dtype)

  def output(self, carry: Carry) -> jax.Array:
    """The output the step that produced `carry` returned."""
    return carry

  def sequence(self, carry: Carry, xp: jax.Array, mask, reverse: bool, unroll: int):
    """A faster whole-sequence path over time-major xp [time, batch, ...] and mask
    [time, batch] (or None): (carry, outputs [time, batch, ...]), or None to scan
    `step`."""
    del carry, xp, mask, reverse, unroll
    return None

  def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
    return self.step(carry, self.project(x))

  @nn.nowrap
  def initialize_carry(self, rng, input_shape) -> Carry:
    del rng
    return self.initial_carry(input_shape[0])

  @property
  def num_feature_axes(self) -> int:
    return 1


class ElmanCell(Cell):
  """Elman (1990): h' = act(W x + U h + b); the hidden state is the context."""

  activation: str = "tanh"

  def setup(self):
    self.input = Dense(self.hidden, dtype=self.dtype)
    self.recurrent = self.param("recurrent_kernel", _recurrent_init, (self.hidden, self.hidden))

  def step(self, carry, xp):
    h = _activation(self.activation)(xp + carry @ self.recurrent.astype(self.dtype))
    return h, h


class JordanCell(Cell):
  """Jordan (1986): the context holds the previous *output*, not the hidden state:
  h = act(W x + V c + b), y = act(O h + b_o), c' = decay * c + y."""

  out_features: int = 0  # 0: as many as hidden
  activation: str = "tanh"
  decay: float = 0.0     # Jordan's self-connection of the state units

  @property
  def _out(self) -> int:
    return self.out_features or self.hidden

  def setup(self):
    self.input = Dense(self.hidden, dtype=self.dtype)
    self.context = self.param("context_kernel", nn.initializers.lecun_normal(),
                              (self._out, self.hidden))
    self.readout = Dense(self._out, dtype=self.dtype)

  def initial_carry(self, batch):
    zeros = jnp.zeros((batch, self._out), self.dtype)
    return zeros, zeros  # (context, output)

  def output(self, carry):
    return carry[1]

  def step(self, carry, xp):
    act = _activation(self.activation)
    context, _ = carry
    y = act(self.readout(act(xp + context @ self.context.astype(self.dtype))))
    return (self.decay * context + y, y), y


class FullyRecurrentCell(Cell):
  """The fully recurrent net of Williams & Zipser (1989): `hidden` units, each fed by
  every unit and every input, y' = act(W x + U y + b); the first `out_features` units
  are the outputs (0: all of them)."""

  out_features: int = 0
  activation: str = "sigmoid"

  def setup(self):
    if self.out_features > self.hidden:
      raise ValueError(f"out_features {self.out_features} exceeds the {self.hidden} units")
    self.input = Dense(self.hidden, dtype=self.dtype)
    self.recurrent = self.param("recurrent_kernel", nn.initializers.lecun_normal(),
                                (self.hidden, self.hidden))

  def output(self, carry):
    return carry[..., :self.out_features or self.hidden]

  def step(self, carry, xp):
    y = _activation(self.activation)(xp + carry @ self.recurrent.astype(self.dtype))
    return y, self.output(y)


def _lstm_bias_init(key, shape, dtype=jnp.float32, forget: float = 1.0, chrono_max: int = 0):
  # Forget gate bias 1 so that the cell remembers at the start (Gers et al. 2000 start
  # it positive; Jozefowicz et al. 2015 found 1 a good default). Gate order i, f, g, o.
  # Chrono (Tallec & Ollivier 2018): b_f = log(u), u ~ U(1, chrono_max - 1), and b_i =
  # -b_f, so the units' memory times 1 / (1 - sigmoid(b_f)) ~ u spread up to chrono_max.
  h = shape[0] // 4
  bias = jnp.zeros(shape, dtype)
  if chrono_max:
    b_f = jnp.log(jax.random.uniform(key, (h,), dtype, 1.0, max(chrono_max - 1.0, 1.0)))
    return bias.at[:h].set(-b_f).at[h:2 * h].set(b_f)
  return bias.at[h:2 * h].set(forget)


class LSTMCell(Cell):
  """LSTM with forget gate (Gers, Schmidhuber & Cummins 2000) and optional peepholes
  (Gers, Schraudolph & Schmidhuber 2002: the gates also read the cell state). The four
  gates are one [in, 4h] input kernel with bias and one [h, 4h] recurrent kernel."""

  peepholes: bool = False
  forget_bias: float = 1.0  # initial forget-gate bias (long lags want it larger)
  chrono_max: int = 0  # > 0: chrono initialisation for lags up to this many steps

  def setup(self):
    bias_init = lambda key, shape, dtype=jnp.float32: _lstm_bias_init(
        key, shape, dtype, self.forget_bias, self.chrono_max)
    self.input = Dense(4 * self.hidden, bias_init=bias_init, dtype=self.dtype)
    self.recurrent = self.param("recurrent_kernel", _recurrent_init,
                                (self.hidden, 4 * self.hidden))
    if self.peepholes:
      self.peephole = self.param("peephole", nn.initializers.zeros, (3, self.hidden))

  def initial_carry(self, batch):
    zeros = jnp.zeros((batch, self.hidden), self.dtype)
    return zeros, zeros  # (c, h)

  def output(self, carry):
    return carry[1]

  def step(self, carry, xp):
    c, h = carry
    z = xp + h @ self.recurrent.astype(self.dtype)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    if self.peepholes:
      p = self.peephole.astype(self.dtype)
      i, f = i + p[0] * c, f + p[1] * c
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    if self.peepholes:
      o = o + p[2] * c  # the output gate peeks at the new cell state
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  def sequence(self, carry, xp, mask, reverse, unroll):
    if self.peepholes:
      return None
    return lstm_sequence(xp, self.recurrent.astype(self.dtype), *carry, mask, reverse, unroll)


class GRUCell(Cell):
  """GRU (Cho et al. 2014) in the form that lets one matmul serve all three gates
  (as cuDNN and PyTorch): r and z from W x + U h, n = tanh(W_n x + r * (U_n h + b_n)),
  h' = (1 - z) n + z h."""

  def setup(self):
    self.input = Dense(3 * self.hidden, dtype=self.dtype)
    self.recurrent = self.param("recurrent_kernel", _recurrent_init,
                                (self.hidden, 3 * self.hidden))
    self.recurrent_bias = self.param("recurrent_bias", nn.initializers.zeros, (self.hidden,))

  def step(self, carry, xp):
    hu = carry @ self.recurrent.astype(self.dtype)
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(hu, 3, axis=-1)
    r, z = nn.sigmoid(xr + hr), nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + self.recurrent_bias.astype(self.dtype)))
    h = (1.0 - z) * n + z * carry
    return h, h


class SecondOrderCell(Cell):
  """Second-order RNN (Giles et al. 1992): s'_i = sigmoid(sum_jk W_ijk s_j x_k + b_i).

  The input's part, M_ij = sum_k W_ijk x_k, is one [in, h*h] matmul over all steps
  (that kernel is W), so the step is a batched matrix-vector product; it holds
  batch * time * h^2 numbers, fine for the small automata-learning nets of the paper."""

  def setup(self):
    self.input = Dense(self.hidden * self.hidden, use_bias=False, dtype=self.dtype)
    self.bias = self.param("bias", nn.initializers.zeros, (self.hidden,))

  def initial_carry(self, batch):
    # All zeros would stay near sigmoid(b): start from one active unit, as Giles et al.
    return jnp.zeros((batch, self.hidden), self.dtype).at[:, 0].set(1.0)

  def step(self, carry, xp):
    m = xp.reshape(*xp.shape[:-1], self.hidden, self.hidden)  # [batch, j, i]
    s = nn.sigmoid(jnp.einsum("bj,bji->bi", carry, m) + self.bias.astype(self.dtype))
    return s, s


def ctrnn_vector_field(y: jax.Array, inputs: jax.Array, weights: jax.Array,
                       theta: jax.Array, tau: jax.Array) -> jax.Array:
  """dy/dt of Beer's (1995) CTRNN: (-y + sigma(y + theta) @ weights + inputs) / tau.

  weights[j, i] is the connection from unit j to unit i. A plain function of arrays, so
  that other code can integrate it with another method or linearise it (jax.jacfwd)."""
  return (-y + nn.sigmoid(y + theta) @ weights + inputs) / tau


class CTRNNCell(Cell):
  """Continuous-time RNN (Beer 1995), tau dy/dt = -y + W sigma(y + theta) + I, with
  I = W_in x held over the input step and `substeps` Euler steps of `dt` per input step.
  The output is the firing rate sigma(y + theta); tau is learnt as log tau."""

  dt: float = 0.1
  substeps: int = 1

  def setup(self):
    if not (self.dt > 0 and self.substeps >= 1):
      raise ValueError(f"CTRNN needs dt > 0 and substeps >= 1, got {self.dt}, {self.substeps}")
    self.input = Dense(self.hidden, use_bias=False, dtype=self.dtype)
    self.weights = self.param("weights", nn.initializers.lecun_normal(),
                              (self.hidden, self.hidden))
    self.theta = self.param("theta", nn.initializers.zeros, (self.hidden,))
    self.log_tau = self.param("log_tau", nn.initializers.zeros, (self.hidden,))

  def vector_field(self, y: jax.Array, inputs: jax.Array) -> jax.Array:
    """dy/dt with this cell's parameters; inputs is the projected input I."""
    d = self.dtype
    return ctrnn_vector_field(y, inputs, self.weights.astype(d), self.theta.astype(d),
                              jnp.exp(self.log_tau).astype(d))

  def output(self, carry):
    return nn.sigmoid(carry + self.theta.astype(self.dtype))

  def step(self, carry, xp):
    y = carry
    for _ in range(self.substeps):
      y = y + self.dt * self.vector_field(y, xp)
    return y, self.output(y)


CELLS = {
    "elman": ElmanCell,
    "jordan": JordanCell,
    "fully_recurrent": FullyRecurrentCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "second_order": SecondOrderCell,
    "ctrnn": CTRNNCell,
}


def make_cell(kind: str, hidden: int, dtype: str = "float32", options=None, **kw) -> Cell:
  """The cell `kind` (a name in CELLS) with `hidden` units; `options` (a dict or pairs) are the
  cell's own fields (peepholes, activation, dt, ...); `kw` goes to flax (name=...).
  Bad names raise UserError."""
  try:
    cls = CELLS[kind]
  except KeyError:
    raise UserError(f"unknown cell {kind!r}; known: {', '.join(CELLS)}") from None
  try:
    return cls(hidden=hidden, dtype=dtype, **dict(options or {}), **kw)
  except TypeError as e:
    raise UserError(f"cell {kind}: {e}") from None
