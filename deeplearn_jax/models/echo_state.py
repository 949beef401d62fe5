"""The echo-state network (Jaeger 2001): a fixed random recurrent reservoir and a linear
readout fitted in closed form.

    x(t) = (1 - leak) x(t-1) + leak tanh(W x(t-1) + W_in u(t) + bias)
    y(t) = x(t) W_out + b_out,  or  y(t) = [u(t), x(t)] W_out + b_out

The second readout is Jaeger's (2001): his output units see the input units as well as
the reservoir (reservoirpy's `input_to_readout`); `features` builds either.

Only the readout learns, by ridge regression on the collected states. For forecasting,
y(t) estimates u(t+1); feeding y back as the next input makes the network generate the
series on its own (trained with the true series as input: teacher forcing).

Pure functions on a dict of arrays. `init` is not jittable: it scales W to the spectral
radius asked for from its eigenvalues, computed on the host in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np

from deeplearn_jax.errors import UserError

Params = dict[str, jax.Array]


def init(key: jax.Array, num_units: int, num_inputs: int = 1, *, spectral_radius: float = 1.25,
         input_scaling: float = 1.0, connectivity: float = 0.1, input_connectivity: float = 0.1,
         bias_scaling: float = 0.0, dtype=jnp.float32) -> Params:
  """A random reservoir: W (normal entries, a fraction `connectivity` of them nonzero;
  1.0 gives a dense W) scaled to `spectral_radius`, W_in of +-input_scaling entries, a
  fraction `input_connectivity` of them nonzero, and a bias uniform in +-bias_scaling."""
  k_w, k_mask, k_in, k_in_mask, k_bias = jax.random.split(key, 5)
  w = jax.random.normal(k_w, (num_units, num_units), jnp.float32)
  w = np.asarray(w * _exact_mask(k_mask, w.shape, connectivity), np.float64)
  radius = float(np.max(np.abs(np.linalg.eigvals(w))))
  if radius == 0.0:
    raise UserError(f"the random reservoir of {num_units} units with connectivity "
                     f"{connectivity} has no nonzero eigenvalue; raise connectivity")
  w_in = jnp.where(jax.random.bernoulli(k_in, 0.5, (num_units, num_inputs)), 1.0, -1.0)
  w_in = w_in * _exact_mask(k_in_mask, w_in.shape, input_connectivity)
  bias = jax.random.uniform(k_bias, (num_units,), minval=-1.0, maxval=1.0)
  return {"w": jnp.asarray(w * (spectral_radius / radius), dtype),
          "w_in": jnp.asarray(w_in * input_scaling, dtype),
          "bias": jnp.asarray(bias * bias_scaling, dtype)}


def _exact_mask(key: jax.Array, shape: tuple[int, ...], fraction: float) -> jax.Array:
  """round(fraction * size) ones at random places: an exact count, not one coin per entry,
  so that a 100-unit reservoir with 10% input connectivity has 10 input units, never 4."""
  size = int(np.prod(shape))
  return (jax.random.permutation(key, size) < round(fraction * size)).reshape(shape)


def spectral_radius(w) -> float:
  """Largest eigenvalue modulus of a square matrix (host, float64)."""
  return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))))


def step(params: Params, x: jax.Array, u: jax.Array, leak: float) -> jax.Array:
  """One leaky-integrator update of the reservoir state x with input u."""
  pre = params["w"] @ x + params["w_in"] @ u + params["bias"]
  return (1.0 - leak) * x + leak * jnp.tanh(pre)


def zero_state(params: Params) -> jax.Array:
  return jnp.zeros(params["w"].shape[0], params["w"].dtype)


def run(params: Params, inputs: jax.Array, leak: float,
        state: jax.Array | None = None) -> jax.Array:
  """States [T, N] driven by inputs [T, I]; row t is the state just after input t."""
  x0 = zero_state(params) if state is None else state

  def body(x, u):
    x = step(params, x, u, leak)
    return x, x

  return jax.lax.scan(body, x0, inputs)[1]


def fit_readout(states: jax.Array, targets: jax.Array, ridge: float, warmup: int = 0,
                fit_bias: bool = True) -> Params:
  """Ridge regression of targets [T, O] on states [T, N] (or any `features`), the first
  `warmup` rows dropped (they still remember the arbitrary initial state). The bias is
  not penalised: with fit_bias both sides are centred and the bias is the difference of
  the means."""
  x, y = states[warmup:], targets[warmup:]
  if fit_bias:
    x_mean, y_mean = x.mean(0), y.mean(0)
    x, y = x - x_mean, y - y_mean
  gram = x.T @ x + ridge * jnp.eye(x.shape[1], dtype=x.dtype)
  w_out = jnp.linalg.solve(gram, x.T @ y)
  b_out = y_mean - x_mean @ w_out if fit_bias else jnp.zeros(y.shape[1], y.dtype)
  return {"w_out": w_out, "b_out": b_out}


def features(states: jax.Array, inputs: jax.Array, input_to_readout: bool) -> jax.Array:
  """What the readout sees at each step: the states, or the input beside them."""
  return jnp.concatenate([inputs, states], -1) if input_to_readout else states


def readout(out: Params, feats: jax.Array) -> jax.Array:
  return feats @ out["w_out"] + out["b_out"]


def generate(params: Params, out: Params, state: jax.Array, num_steps: int, leak: float,
             last_input: jax.Array | None = None) -> jax.Array:
  """Free run: from `state` (the state after the last true input), outputs [num_steps, O],
  each fed back as the next input. Row k estimates the input k + 1 steps ahead. Give
  `last_input` (that true input) when the readout was fitted on the input beside the
  states (`features(..., input_to_readout=True)`)."""
  input_to_readout = last_input is not None
  expected = state.shape[-1] + (last_input.shape[-1] if input_to_readout else 0)
  if out["w_out"].shape[0] != expected:
    raise UserError(f"the readout has {out['w_out'].shape[0]} inputs, the free run gives it "
                    f"{expected}: pass last_input exactly when it was fitted on the input "
                    "beside the states")

  def body(carry, _):
    x, u = carry
    y = readout(out, features(x, u, input_to_readout))
    return (step(params, x, y, leak), y), y

  u0 = last_input if input_to_readout else jnp.zeros(out["b_out"].shape, state.dtype)
  return jax.lax.scan(body, (state, u0), None, length=num_steps)[1]
