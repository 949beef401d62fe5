"""The Mackey-Glass series (Mackey & Glass 1977), the benchmark of echo-state networks.

    dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t)

integrated by classical RK4 with a fixed step `dt` (the delayed term at the half step is
the mean of its two neighbouring history points), then subsampled every `sample_every`
steps. tau = 17 with a = 0.2, b = 0.1, n = 10 is the mildly chaotic standard case.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from deeplearn_jax.errors import UserError


def _rate(x, x_tau, a, b, n):
  return a * x_tau / (1.0 + x_tau ** n) - b * x


@functools.partial(jax.jit, static_argnames=("num_steps", "n"))
def _integrate(history, *, num_steps, a, b, n, dt):
  """RK4 over `num_steps` steps; `history` holds x at t - tau, ..., t (tau/dt + 1 points)."""

  def step(buf, _):
    x, lag0, lag1 = buf[-1], buf[0], buf[1]
    lag_mid = 0.5 * (lag0 + lag1)  # x(t + dt/2 - tau), between two stored points
    k1 = _rate(x, lag0, a, b, n)
    k2 = _rate(x + 0.5 * dt * k1, lag_mid, a, b, n)
    k3 = _rate(x + 0.5 * dt * k2, lag_mid, a, b, n)
    k4 = _rate(x + dt * k3, lag1, a, b, n)
    x_new = x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return jnp.concatenate([buf[1:], x_new[None]]), x_new

  _, xs = jax.lax.scan(step, history, None, length=num_steps)
  return xs


def mackey_glass(num_points: int, *, seed: int = 0, tau: float = 17.0, a: float = 0.2,
                 b: float = 0.1, n: int = 10, x0: float = 1.2, dt: float = 0.1,
                 sample_every: int = 10, discard: int = 500) -> np.ndarray:
  """`num_points` samples of Mackey-Glass, float64, one every `dt * sample_every` time units.

  The history before t = 0 is x0 plus uniform noise in [-0.1, 0.1] drawn from `seed`;
  the first `discard` samples (the transient from that history) are dropped.
  """
  if num_points < 1 or sample_every < 1 or discard < 0:
    raise UserError(f"mackey_glass needs num_points >= 1, sample_every >= 1 and discard >= 0, "
                    f"got {num_points}, {sample_every}, {discard}")
  lag_steps = int(round(tau / dt))
  if dt <= 0 or lag_steps < 1 or abs(lag_steps * dt - tau) > 1e-9 * tau:
    raise UserError(f"mackey_glass needs tau ({tau}) to be a positive multiple of dt ({dt})")
  # Float64 whatever the caller's mode: a series for free-running forecasts must be
  # far more exact than the 1e-4 errors they are judged by.
  with jax.enable_x64(True):
    noise = jax.random.uniform(jax.random.PRNGKey(seed), (lag_steps + 1,), jnp.float64)
    history = x0 + 0.2 * (noise - 0.5)
    history = history.at[-1].set(x0)
    total = (num_points + discard) * sample_every
    xs = _integrate(history, num_steps=total, a=a, b=b, n=n, dt=dt)
    out = np.asarray(xs[sample_every - 1::sample_every], np.float64)
  return out[discard:]
