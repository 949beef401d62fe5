"""log Z of a binary RBM (see rbm.py): exactly, by enumerating the smaller layer, and by
annealed importance sampling (Salakhutdinov & Murray 2008). With log Z, the
log-likelihood of data is mean(-F(v)) - log Z."""

import jax
import jax.numpy as jnp
import numpy as np

from deeplearn_jax.models.rbm import Params, bernoulli, free_energy

MAX_EXACT_UNITS = 30  # 2^30 states: beyond any sensible wait, and int32 bit tricks stop


def _states(index: jax.Array, num_bits: int) -> jax.Array:
  """Binary vectors of integers: [..., num_bits] float32, least significant bit first."""
  return ((index[..., None] >> jnp.arange(num_bits)) & 1).astype(jnp.float32)


def log_partition_exact(params: Params, chunk_bits: int = 12) -> jax.Array:
  """log Z by summing the other layer out analytically and enumerating the smaller one:
  over h, log Z = logsumexp_h [b.h + sum_i softplus(a_i + (W h)_i)] (symmetric over v).
  Enumerates 2^chunk_bits states at a time, in `lax.map`, to bound memory."""
  W, a, b = params["W"], params["a"], params["b"]
  own, other, weights = (b, a, W.T) if b.shape[0] <= a.shape[0] else (a, b, W)
  n = own.shape[0]
  if n > MAX_EXACT_UNITS:
    raise ValueError(f"exact log Z needs 2^{n} terms; use AIS for layers this large")
  low_bits = min(n, chunk_bits)
  low = _states(jnp.arange(2 ** low_bits), low_bits)

  def chunk(high_index):
    high = jnp.broadcast_to(_states(high_index, n - low_bits), (low.shape[0], n - low_bits))
    s = jnp.concatenate([low, high], axis=-1)
    return jax.nn.logsumexp(s @ own + jnp.sum(jax.nn.softplus(s @ weights + other), -1))

  return jax.nn.logsumexp(jax.lax.map(chunk, jnp.arange(2 ** (n - low_bits))))


AIS_SCHEDULES = ("linear", "sm2008")


def ais_betas(num_betas: int, schedule: str = "sm2008") -> np.ndarray:
  """Inverse temperatures from 0 to 1. 'sm2008': as Salakhutdinov & Murray 2008, equal
  steps in [0, 0.5], [0.5, 0.9] and [0.9, 1] with 500 : 4,000 : 10,000 of them (most
  where p_beta changes fastest); 'linear': equal steps throughout."""
  if schedule == "linear":
    return np.linspace(0.0, 1.0, num_betas)
  if schedule != "sm2008":
    raise ValueError(f"unknown AIS schedule {schedule!r}; known: {', '.join(AIS_SCHEDULES)}")
  counts = np.maximum(1, np.round(np.array([500, 4000, 10000]) / 14500 * (num_betas - 1)))
  counts[-1] = max(1, num_betas - 1 - counts[:-1].sum())
  edges = [0.0, 0.5, 0.9, 1.0]
  parts = [np.linspace(lo, hi, int(n), endpoint=False) for lo, hi, n in
           zip(edges[:-1], edges[1:], counts)]
  return np.concatenate([*parts, [1.0]])


def ais_log_partition(params: Params, key: jax.Array, base_visible_bias: jax.Array, *,
                      num_betas: int, num_chains: int,
                      schedule: str = "sm2008") -> dict[str, jax.Array]:
  """Annealed importance sampling from a base-rate RBM A (W = 0, hidden biases 0,
  visible biases `base_visible_bias`, usually rbm.base_rate_bias of the data means)
  to this RBM B, through p_beta(v) ~ f_A(v)^(1 - beta) f_B(v)^beta with
  log f_beta(v) = (1 - beta) a_A.v + beta a.v + sum_j softplus(beta (b + vW)_j),
  `num_betas` inverse temperatures from 0 to 1 (static; spaced by `schedule`, see
  ais_betas), `num_chains` independent runs.

  Returns log_z = log Z_A + log mean(w), and log_z_lower / log_z_upper =
  log Z_A + log(mean(w) -+ 3 std(w) / sqrt(M)), the +-3 sigma band of S&M 2008
  (lower is -inf when the band reaches 0: too few betas or chains).
  """
  W, a, b = params["W"], params["a"], params["b"]
  a_base = base_visible_bias
  num_hidden = b.shape[0]

  def log_f(beta, v):
    return (1.0 - beta) * (v @ a_base) + beta * (v @ a) + jnp.sum(
        jax.nn.softplus(beta * (v @ W + b)), axis=-1)

  def transition(beta, v, key):
    """One Gibbs step that leaves p_beta invariant (A's hidden units do not touch v)."""
    key_h, key_v = jax.random.split(key)
    h = bernoulli(key_h, jax.nn.sigmoid(beta * (v @ W + b)))
    return bernoulli(key_v, jax.nn.sigmoid((1.0 - beta) * a_base + beta * (h @ W.T + a)))

  def body(carry, x):
    v, log_w = carry
    beta_prev, beta, k = x
    log_w = log_w + log_f(beta, v) - log_f(beta_prev, v)
    return (transition(beta, v, k), log_w), None

  key_start, key_steps = jax.random.split(key)
  v0 = bernoulli(key_start, jnp.broadcast_to(jax.nn.sigmoid(a_base), (num_chains, a.shape[0])))
  betas = jnp.asarray(ais_betas(num_betas, schedule), jnp.float32)
  steps = (betas[:-1], betas[1:], jax.random.split(key_steps, num_betas - 1))
  (_, log_w), _ = jax.lax.scan(body, (v0, jnp.zeros((num_chains,), jnp.float32)), steps)

  # Z_A: the visible units are independent and each of A's H hidden units adds log 2.
  log_z_base = jnp.sum(jax.nn.softplus(a_base)) + num_hidden * jnp.log(2.0)
  top = jnp.max(log_w)
  w = jnp.exp(log_w - top)  # importance weights, scaled so the largest is 1
  mean, sem = jnp.mean(w), jnp.std(w, ddof=1) / jnp.sqrt(num_chains)
  shift = log_z_base + top
  low = mean - 3.0 * sem
  return {"log_z": shift + jnp.log(mean),
          "log_z_lower": jnp.where(low > 0, shift + jnp.log(jnp.maximum(low, 1e-30)), -jnp.inf),
          "log_z_upper": shift + jnp.log(mean + 3.0 * sem)}


def log_likelihood(params: Params, v: jax.Array, log_z: jax.Array) -> jax.Array:
  """Per example: log p(v) = -F(v) - log Z."""
  return -free_energy(params, v) - log_z
