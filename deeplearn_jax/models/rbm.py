"""The Bernoulli-Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002)
as pure functions on a params dict {W [V, H], a [V] visible bias, b [H] hidden bias}.

    E(v, h) = -a.v - b.h - v.W.h        F(v) = -a.v - sum_j softplus(b_j + (vW)_j)
    p(h = 1 | v) = sigmoid(b + vW)      p(v = 1 | h) = sigmoid(a + h W^T)

Learning is contrastive divergence, CD-k (Hinton 2002), or persistent CD (Tieleman
2008), with momentum and L2 weight decay on W as in Hinton's practical guide (2010).
The choices in the CD statistics:
  - data term <v p(h|v)>: hidden probabilities, not samples (same expectation, less noise);
  - the chain samples binary h and v at every step, so CD-k is a true k-step Gibbs
    chain started at the data, and PCD's fantasy particles are binary chain states;
  - model term <v_k p(h|v_k)>: the chain's last binary v and, as is standard, hidden
    probabilities for the last hidden step.
The log partition function, exactly and by AIS, is in `rbm_partition.py`.
"""

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]


def base_rate_bias(visible_mean: jax.Array, eps: float = 1e-3) -> jax.Array:
  """log(p / (1 - p)) of pixel means: with W = 0 the RBM then reproduces them. Clipped,
  since MNIST has pixels that are never on in training."""
  p = jnp.clip(visible_mean, eps, 1.0 - eps)
  return jnp.log(p) - jnp.log1p(-p)


def init(key: jax.Array, num_visible: int, num_hidden: int, *, init_std: float = 0.01,
         visible_mean: jax.Array | None = None) -> Params:
  """Hinton's guide: W ~ N(0, init_std^2), hidden biases 0, visible biases at the base
  rates of the data when `visible_mean` is given (else 0)."""
  a = (jnp.zeros((num_visible,), jnp.float32) if visible_mean is None
       else base_rate_bias(jnp.asarray(visible_mean, jnp.float32)))
  return {"W": init_std * jax.random.normal(key, (num_visible, num_hidden), jnp.float32),
          "a": a, "b": jnp.zeros((num_hidden,), jnp.float32)}


def energy(params: Params, v: jax.Array, h: jax.Array) -> jax.Array:
  """E(v, h) = -a.v - b.h - v W h, per example."""
  return -(v @ params["a"]) - (h @ params["b"]) - jnp.sum((v @ params["W"]) * h, axis=-1)


def free_energy(params: Params, v: jax.Array) -> jax.Array:
  """F(v) = -log sum_h exp(-E(v, h)), so p(v) = exp(-F(v)) / Z."""
  return -(v @ params["a"]) - jnp.sum(jax.nn.softplus(v @ params["W"] + params["b"]), axis=-1)


def hidden_probs(params: Params, v: jax.Array) -> jax.Array:
  """p(h_j = 1 | v) for every hidden unit."""
  return jax.nn.sigmoid(v @ params["W"] + params["b"])


def visible_probs(params: Params, h: jax.Array) -> jax.Array:
  """p(v_i = 1 | h) for every visible unit."""
  return jax.nn.sigmoid(h @ params["W"].T + params["a"])


def bernoulli(key: jax.Array, p: jax.Array) -> jax.Array:
  """Binary samples with probabilities p, in p's dtype."""
  return jax.random.bernoulli(key, p).astype(p.dtype)


def gibbs_step(params: Params, h: jax.Array, key: jax.Array):
  """One alternating update h -> v -> h. Returns (v, p(h|v), h)."""
  key_v, key_h = jax.random.split(key)
  v = bernoulli(key_v, visible_probs(params, h))
  ph = hidden_probs(params, v)
  return v, ph, bernoulli(key_h, ph)


def gibbs_chain(params: Params, h: jax.Array, key: jax.Array, num_steps: int):
  """`num_steps` (>= 1, static) Gibbs steps from hidden states h, one `lax.scan`;
  step i uses the i-th of `jax.random.split(key, num_steps)`. Returns the last
  (v, p(h|v), h)."""
  num_visible = params["a"].shape[0]
  start = (jnp.zeros((*h.shape[:-1], num_visible), h.dtype), h, h)

  def body(carry, k):
    return gibbs_step(params, carry[2], k), None

  last, _ = jax.lax.scan(body, start, jax.random.split(key, num_steps))
  return last


def cd_gradient(params: Params, v_data: jax.Array, key: jax.Array, k: int,
                chains: jax.Array | None = None) -> tuple[Params, jax.Array | None]:
  """The CD-k estimate of d log-likelihood / d params (an ascent direction), averaged
  over the mini-batch: <v h>_data - <v h>_model.

  chains=None: CD-k, the negative chain starts at the data (clamp v, sample h).
  chains=[N, V] fantasy particles: PCD-k, the chain continues from them; returned
  advanced by k steps (None is returned for CD).
  """
  key_h, key_chain = jax.random.split(key)
  ph_data = hidden_probs(params, v_data)
  start = ph_data if chains is None else hidden_probs(params, chains)
  v_model, ph_model, _ = gibbs_chain(params, bernoulli(key_h, start), key_chain, k)
  n, m = v_data.shape[0], v_model.shape[0]
  grads = {"W": v_data.T @ ph_data / n - v_model.T @ ph_model / m,
           "a": jnp.mean(v_data, 0) - jnp.mean(v_model, 0),
           "b": jnp.mean(ph_data, 0) - jnp.mean(ph_model, 0)}
  return grads, (None if chains is None else v_model)


def momentum_update(params: Params, velocity: Params, grads: Params, *, learning_rate,
                    momentum, weight_decay) -> tuple[Params, Params]:
  """Hinton's guide, section 9-10: velocity <- momentum * velocity + lr * (grad - wd * W),
  params <- params + velocity. The L2 decay pulls on W only, not on the biases."""
  decay = {"W": weight_decay, "a": 0.0, "b": 0.0}
  velocity = {k: momentum * velocity[k] + learning_rate * (grads[k] - decay[k] * params[k])
              for k in params}
  return {k: params[k] + velocity[k] for k in params}, velocity


def reconstruction_error(params: Params, v: jax.Array, key: jax.Array) -> jax.Array:
  """Per example: mean over pixels of (v - p(v | h))^2 with h ~ p(h | v). A cheap
  progress signal, not an objective (CD does not minimise it)."""
  h = bernoulli(key, hidden_probs(params, v))
  return jnp.mean(jnp.square(v - visible_probs(params, h)), axis=-1)


def pseudo_log_likelihood(params: Params, v: jax.Array, key: jax.Array) -> jax.Array:
  """Per example, the stochastic estimate V * log p(v_i | v_-i) for one random i:
  log p(v_i | v_-i) = log sigmoid(F(v with bit i flipped) - F(v))."""
  n, num_visible = v.shape
  i = jax.random.randint(key, (n,), 0, num_visible)
  flipped = v + (1.0 - 2.0 * v) * jax.nn.one_hot(i, num_visible, dtype=v.dtype)
  return num_visible * jax.nn.log_sigmoid(free_energy(params, flipped) - free_energy(params, v))
