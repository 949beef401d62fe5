"""The RBM trainer: contrastive divergence (CD-k) or persistent CD on binary inputs,
on the one loop driver (train/loop.py).

    results = train_and_evaluate(config, workdir)

The learning rule is the trainer: it builds the RBM itself (deeplearn_jax.models.rbm)
instead of a model by name, and its step is the CD update with momentum in place of a
loss and an optimizer. Resuming is exact: batch s is a function of (seed, s), the
sampling key of step s is fold_in(rng, s), and the state carries the momentum
velocities and PCD's fantasy particles. At the end: log Z by AIS (and exactly when the
smaller layer is small), the test log-likelihood, pseudo-log-likelihood and
reconstruction error in results.json, and filters.png and samples.png in the workdir.
"""

import dataclasses
import functools
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import configs, data, pictures
from deeplearn_jax.configs import steps_from
from deeplearn_jax.errors import UserError
from deeplearn_jax.models import rbm, rbm_partition
from deeplearn_jax.train import inputs, loop, nan_guard

SAMPLE_STARTS = ("test", "random")
# Independent streams, all derived from config.seed.
_STREAMS = ("init", "chains", "train", "eval", "ais", "samples")


def base_config() -> ml_collections.ConfigDict:
  """configs.base() plus `rbm` (the learning rule) and `eval` (measures, pictures)."""
  c = configs.base()
  c.batch_size = 100
  c.steps_per_call = 1            # steps per compiled call (a lax.scan over a chunk of batches)
  c.data.normalize = "binarize"   # {0, 1} pixels for binary visible units
  c.rbm = ml_collections.ConfigDict(dict(
      num_hidden=500,
      cd_k=1,                     # Gibbs steps of the negative phase: CD-k (PCD-k with pcd)
      pcd=False,                  # persistent CD (Tieleman 2008): the chains carry over
      num_chains=100,             # pcd: number of fantasy particles
      learning_rate=0.05,         # on the batch-mean CD gradient
      momentum_initial=0.5,       # Hinton's guide: 0.5 while the weights settle ...
      momentum_final=0.9,         # ... then 0.9
      momentum_switch_steps=-1,   # when to switch, in steps (wins when > 0) ...
      momentum_switch_epochs=5.0,  # ... or epochs (both <= 0: final momentum from the start)
      weight_decay=2e-4,          # L2 pull on W (not the biases): update += -lr * wd * W
      init_std=0.01,              # W ~ N(0, init_std^2); visible biases at the data's base rates
  ))
  c.eval = ml_collections.ConfigDict(dict(
      ais_num_betas=10000,        # AIS: intermediate distributions, betas linear in [0, 1]
                                  # (0: no AIS, e.g. for a DBN's upper layers)
      ais_num_chains=100,         # AIS: independent runs (their spread gives the +-3 std bounds)
      ais_schedule="sm2008",      # AIS betas: sm2008 (denser near 1, as S&M 2008) | linear
      exact_max_units=20,         # also compute log Z exactly when the smaller layer is this small
      num_filters=100,            # hidden units drawn in filters.png
      num_samples=100,            # chains drawn in samples.png
      sample_gibbs_steps=1000,    # Gibbs steps before p(v|h) is drawn
      sample_start="test",        # test (the first test images) | random (coin flips)
  ))
  return c


@flax.struct.dataclass
class RBMState:
  """Everything an RBM run needs to continue."""
  step: jax.Array        # number of updates done
  params: rbm.Params
  velocity: rbm.Params   # momentum
  chains: jax.Array | None  # PCD's fantasy particles [num_chains, V]; None for CD
  rng: jax.Array         # raw key; the key of step s is fold_in(rng, s)
  bad_step: jax.Array    # these three as in TrainState, for the NaN policy
  skipped: jax.Array
  lr_scale: jax.Array


@dataclasses.dataclass
class Outcome:
  """An RBM run's results, final state and data."""
  results: dict[str, Any]
  state: RBMState
  dataset: data.Dataset


def stream_key(seed: int, name: str) -> jax.Array:
  """The key of one named random stream of the run (init, chains, train, ...)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), _STREAMS.index(name))


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


def _validate(config: ml_collections.ConfigDict) -> None:
  r, e = config.rbm, config.eval
  minimum = {"rbm.num_hidden": (r.num_hidden, 1), "rbm.cd_k": (r.cd_k, 1),
             "rbm.num_chains": (r.num_chains, 1), "rbm.learning_rate": (r.learning_rate, 0),
             "rbm.weight_decay": (r.weight_decay, 0), "eval.ais_num_betas": (e.ais_num_betas, 0),
             "eval.ais_num_chains": (e.ais_num_chains, 2), "eval.num_filters": (e.num_filters, 0),
             "eval.num_samples": (e.num_samples, 0),
             "eval.sample_gibbs_steps": (e.sample_gibbs_steps, 1)}
  for name, (value, least) in minimum.items():
    if value < least:
      raise UserError(f"config.{name} must be at least {least}, got {value}")
  if e.ais_num_betas == 1:
    raise UserError("config.eval.ais_num_betas must be 0 (no AIS) or at least 2, got 1")
  if e.exact_max_units > rbm_partition.MAX_EXACT_UNITS:
    raise UserError(f"config.eval.exact_max_units must be at most "
                    f"{rbm_partition.MAX_EXACT_UNITS}, got {e.exact_max_units}")
  if e.ais_schedule not in rbm_partition.AIS_SCHEDULES:
    raise UserError(f"config.eval.ais_schedule must be one of "
                    f"{', '.join(rbm_partition.AIS_SCHEDULES)}, got {e.ais_schedule!r}")
  if e.sample_start not in SAMPLE_STARTS:
    raise UserError(f"config.eval.sample_start must be one of {', '.join(SAMPLE_STARTS)}, "
                    f"got {e.sample_start!r}")


def pixel_means(ds: data.Dataset, chunk: int = 10000) -> np.ndarray:
  """Every input unit's mean over the training split; refuses inputs outside [0, 1]."""
  n, total = len(ds.train), 0.0
  for start in range(0, n, chunk):
    x = _flat(ds.transform(ds.train.gather(np.arange(start, min(n, start + chunk))))["input"])
    if x.min() < 0 or x.max() > 1:
      raise UserError(f"an RBM with binary visible units needs inputs in [0, 1]; {ds.name} "
                      "with this config.data.normalize is not (use binarize or unit)")
    total = total + x.sum(0, dtype=np.float64)
  return (total / n).astype(np.float32)


def make_init(config: ml_collections.ConfigDict, visible_mean: np.ndarray):
  """init() -> RBMState. PCD's particles start as draws from the base rates, i.e. from
  the initial RBM (its weights are ~0)."""
  r = config.rbm
  num_visible = visible_mean.size

  def init() -> RBMState:
    params = rbm.init(stream_key(config.seed, "init"), num_visible, r.num_hidden,
                      init_std=r.init_std, visible_mean=visible_mean)
    chains = None if not r.pcd else rbm.bernoulli(
        stream_key(config.seed, "chains"),
        jnp.broadcast_to(jnp.asarray(visible_mean), (r.num_chains, num_visible)))
    return RBMState(step=jnp.zeros((), jnp.int32), params=params,
                    velocity=jax.tree.map(jnp.zeros_like, params), chains=chains,
                    rng=stream_key(config.seed, "train"), bad_step=jnp.full((), -1, jnp.int32),
                    skipped=jnp.zeros((), jnp.int32), lr_scale=jnp.ones((), jnp.float32))

  return init


def _measures(params: rbm.Params, v: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
  """Per-example progress measures (the same on training and test batches)."""
  key_err, key_pll = jax.random.split(key)
  return {"reconstruction_error": rbm.reconstruction_error(params, v, key_err),
          "pseudo_log_likelihood": rbm.pseudo_log_likelihood(params, v, key_pll),
          "free_energy": rbm.free_energy(params, v)}


def make_train_step(config: ml_collections.ConfigDict, momentum_switch_step: int):
  """The CD-k / PCD-k update with momentum and weight decay, NaN-guarded."""
  r = config.rbm

  def train_step(state: RBMState, batch):
    v = _flat(batch["input"])
    key_cd, key_measure = jax.random.split(jax.random.fold_in(state.rng, state.step))
    # Measured before the update, on a batch the RBM has not learnt from yet.
    measured = {k: jnp.mean(x) for k, x in _measures(state.params, v, key_measure).items()}
    grads, chains = rbm.cd_gradient(state.params, v, key_cd, r.cd_k, state.chains)
    momentum = jnp.where(state.step < momentum_switch_step, r.momentum_initial,
                         r.momentum_final)
    params, velocity = rbm.momentum_update(
        state.params, state.velocity, grads, learning_rate=r.learning_rate * state.lr_scale,
        momentum=momentum, weight_decay=r.weight_decay)
    updated = state.replace(params=params, velocity=velocity, chains=chains)
    # A non-finite update is not applied; the host applies config.nan_policy.
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
    state = nan_guard.guarded_update(state, updated, ok)
    return state, {**measured, "momentum": momentum}

  return train_step


@jax.jit
def _eval_sums(params: rbm.Params, batch, key: jax.Array) -> dict[str, jax.Array]:
  mask = batch["mask"]
  sums = {k: jnp.sum(x * mask) for k, x in _measures(params, _flat(batch["input"]), key).items()}
  return {**sums, "count": jnp.sum(mask)}


_log_z_exact = jax.jit(rbm_partition.log_partition_exact)
_ais = jax.jit(rbm_partition.ais_log_partition,
               static_argnames=("num_betas", "num_chains", "schedule"))


@functools.partial(jax.jit, static_argnames="num_steps")
def gibbs_samples(params: rbm.Params, v: jax.Array, key: jax.Array, num_steps: int):
  """p(v | h) after `num_steps` Gibbs steps from visible states v."""
  key_h, key_chain = jax.random.split(key)
  h = rbm.bernoulli(key_h, rbm.hidden_probs(params, v))
  return rbm.visible_probs(params, rbm.gibbs_chain(params, h, key_chain, num_steps)[2])


def _images(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  x = np.asarray(x).reshape(-1, *shape)
  return x[..., 0] if shape[-1] == 1 else x


@jax.jit
def _hidden_probs(params: rbm.Params, x: jax.Array) -> jax.Array:
  return rbm.hidden_probs(params, _flat(x))


def hidden_features(ds: data.Dataset, params: rbm.Params, name: str,
                    chunk: int = 10000) -> data.Dataset:
  """p(h|v) of every train and test example as a new dataset (`<ds.name>/<name>`): the
  data of the next RBM of a stack."""

  def split(s):
    rows = [np.arange(i, min(len(s), i + chunk)) for i in range(0, len(s), chunk)]
    out = [np.asarray(_hidden_probs(params, ds.transform(s.gather(r))["input"])) for r in rows]
    return {"input": np.concatenate(out), "label": s.arrays["label"]}

  return data.from_arrays(f"{ds.name}/{name}", split(ds.train), split(ds.test),
                          ds.num_classes)


def as_dense(params: rbm.Params) -> dict[str, np.ndarray]:
  """An RBM's weights and hidden biases as the parameters of a Dense layer (the
  feed-forward pass p(h|v) of a sigmoid net): how a DBN stack starts an MLP."""
  return {"kernel": np.asarray(params["W"]), "bias": np.asarray(params["b"])}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in workdir and returns the figures of results.json."""
  return run(config, workdir).results


def run(config: ml_collections.ConfigDict, workdir: str,
        dataset: data.Dataset | None = None) -> Outcome:
  """train_and_evaluate, also returning the final state and the data. `dataset`
  replaces config.data's (a DBN feeds each RBM the hidden activations of the last)."""
  _validate(config)
  mesh, ds, steps_per_epoch, total_steps = inputs.checked(config, dataset)
  visible_mean = pixel_means(ds)
  switch = steps_from(config.rbm, "momentum_switch", steps_per_epoch)
  exact = min(visible_mean.size, config.rbm.num_hidden) <= config.eval.exact_max_units
  r = config.rbm
  name = f"{'PCD' if r.pcd else 'CD'}-{r.cd_k}"
  eval_key = stream_key(config.seed, "eval")

  def evaluate(state: RBMState) -> dict[str, float]:
    """Test-split means; with an exact log Z also the exact log-likelihood."""
    params = state.params
    out = inputs.eval_means(
        lambda batch, i: _eval_sums(params, batch, jax.random.fold_in(eval_key, i)),
        ds.test, config, ds, mesh)
    if exact:
      out["log_z_exact"] = float(_log_z_exact(params))
      out["log_likelihood_exact"] = -out["free_energy"] - out["log_z_exact"]
    return out

  def test(state: RBMState) -> dict[str, float]:
    """The final row: evaluate's, with the log-likelihood by AIS."""
    out = evaluate(state)
    if not config.eval.ais_num_betas:
      return out
    ais = jax.device_get(_ais(state.params, stream_key(config.seed, "ais"),
                              rbm.base_rate_bias(visible_mean),
                              num_betas=config.eval.ais_num_betas,
                              num_chains=config.eval.ais_num_chains,
                              schedule=config.eval.ais_schedule))
    ais = {k.replace("log_z", "log_z_ais"): float(v) for k, v in ais.items()}
    neg_f = -out["free_energy"]
    ais.update(log_likelihood_ais=neg_f - ais["log_z_ais"],
               log_likelihood_ais_lower=neg_f - ais["log_z_ais_upper"],
               log_likelihood_ais_upper=neg_f - ais["log_z_ais_lower"])
    return {**out, **ais}

  def results(final: dict, last_train: dict, state: RBMState) -> dict[str, Any]:
    del last_train, state
    out = {k if k.startswith("log_z") else f"test_{k}": v for k, v in final.items()
           if "ais" in k or k.startswith("log_z_exact")}
    out.update({f"test_{k}": final[k] for k in (
        "pseudo_log_likelihood", "reconstruction_error", "free_energy")})
    if exact:
      out["test_log_likelihood_exact"] = final["log_likelihood_exact"]
    return out

  feed = inputs.Feed(config, ds, mesh)
  trainer = loop.Trainer(
      name=f"rbm {name}", init=make_init(config, visible_mean),
      step=feed.step(make_train_step(config, switch)),
      evaluate=evaluate, test=test, results=results,
      batches=lambda start: feed.batches(start, total_steps),
      after=lambda state, _: _draw(config, ds, state.params, workdir, name),
      progress={"recon": "reconstruction_error", "pll": "pseudo_log_likelihood"},
      examples_per_step=config.batch_size, steps_per_call=config.steps_per_call,
      init_error=f"an RBM cannot be built on {ds.name} inputs {ds.input_shape}")
  out = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=steps_per_epoch,
                 total_steps=total_steps)
  return Outcome(out.results, out.state, ds)


def _draw(config: ml_collections.ConfigDict, ds: data.Dataset, params: rbm.Params,
          workdir: str, name: str) -> None:
  """filters.png: the first hidden units' weights as images; samples.png: p(v|h) at the
  end of long Gibbs chains."""
  e, shape = config.eval, ds.input_shape
  w = np.asarray(jax.device_get(params["W"]))
  if e.num_filters:
    filters = _images(w[:, :e.num_filters].T, shape)
    pictures.save_grid(os.path.join(workdir, "filters.png"), filters,
                       f"RBM {name}: weights of the first {len(filters)} hidden units",
                       normalize_each=True)
  if not e.num_samples:
    return
  key_start, key_chain = jax.random.split(stream_key(config.seed, "samples"))
  if e.sample_start == "test":
    rows = np.arange(min(e.num_samples, len(ds.test)))
    start = jnp.asarray(_flat(ds.transform(ds.test.gather(rows))["input"]))
  else:
    start = rbm.bernoulli(key_start, jnp.full((e.num_samples, w.shape[0]), 0.5))
  probs = gibbs_samples(jax.device_get(params), start, key_chain, e.sample_gibbs_steps)
  pictures.save_grid(os.path.join(workdir, "samples.png"), _images(probs, shape),
                     f"RBM {name}: p(v|h) after {e.sample_gibbs_steps} Gibbs steps "
                     f"from {e.sample_start} images")
