"""optax optimizers and learning-rate schedules from `config.optimizer`."""

import jax
import ml_collections
import optax

from deeplearn_jax.configs import steps_from
from deeplearn_jax.errors import UserError
from deeplearn_jax.train.state import path_name

NAMES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "linear")


def _kernels_only(params):
  """Weight decay and norm penalties act on weight matrices and filters, not biases or BN."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
             total_steps: int) -> optax.Schedule:
  """The learning rate by step: warmup, then constant, step, cosine or linear decay."""
  lr = cfg.learning_rate
  warmup = max(0, steps_from(cfg, "warmup", steps_per_epoch))
  decay_steps = max(1, total_steps - warmup)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=cfg.end_learning_rate_factor)
  elif cfg.schedule == "linear":
    main = optax.linear_schedule(lr, lr * cfg.end_learning_rate_factor, decay_steps)
  elif cfg.schedule == "step":
    bounds = {int(round(e * steps_per_epoch)) - warmup: cfg.decay_factor
              for e in cfg.decay_epochs}
    main = optax.piecewise_constant_schedule(lr, bounds)
  else:
    raise UserError(f"config.optimizer.schedule must be one of {', '.join(SCHEDULES)}, "
                    f"got {cfg.schedule!r}")
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def momentum(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> float | optax.Schedule:
  """The momentum by step: `momentum` throughout, or a linear rise from
  `momentum_initial` over the ramp (Srivastava et al. 2014 raise it from 0.5 to 0.99,
  so that the early, large steps of a max-norm net do not compound)."""
  ramp = steps_from(cfg, "momentum_ramp", steps_per_epoch)
  if cfg.momentum_initial < 0 or ramp <= 0:
    return cfg.momentum
  return optax.linear_schedule(cfg.momentum_initial, cfg.momentum, ramp)


def create(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
           total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optax transformation, learning-rate schedule) from config.optimizer."""
  lr = schedule(cfg, steps_per_epoch, total_steps)
  name = cfg.name
  if name == "sgd":
    opt = optax.sgd(lr)
  elif name in ("momentum", "nesterov"):
    mu = momentum(cfg, steps_per_epoch)
    # A scheduled momentum lives in the optimizer state, where optax injects it.
    sgd = optax.inject_hyperparams(optax.sgd, static_args="nesterov") if callable(mu) else optax.sgd
    opt = sgd(lr, momentum=mu, nesterov=name == "nesterov")
  elif name == "rmsprop":
    # `centered` (Graves 2013, the Nature DQN's) only where a config adds the key.
    opt = optax.rmsprop(lr, decay=cfg.rms_decay, eps=cfg.eps, momentum=cfg.momentum or None,
                        centered=bool(cfg.get("centered", False)))
  elif name == "adam":
    opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  elif name == "adamw":
    opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                      mask=_kernels_only)
  else:
    raise UserError(f"config.optimizer.name must be one of {', '.join(NAMES)}, got {name!r}")
  chain = []
  if cfg.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0 and name != "adamw":
    # Coupled decay (added to the gradient, as in SGD's classic weight decay).
    chain.append(optax.add_decayed_weights(cfg.weight_decay, mask=_kernels_only))
  tx = optax.chain(*chain, opt)
  if cfg.frozen:
    # Parameters whose path contains one of these names are never updated.
    def labels(params):
      return jax.tree_util.tree_map_with_path(
          lambda path, _: "frozen" if any(f in path_name(path) for f in cfg.frozen) else "trained",
          params)
    tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, lr


def default_config() -> ml_collections.ConfigDict:
  """The optimizer block every supervised experiment starts from."""
  return ml_collections.ConfigDict(dict(
      name="momentum",            # sgd | momentum | nesterov | rmsprop | adam | adamw
      learning_rate=0.1,          # peak learning rate
      momentum=0.9,               # momentum/nesterov, and rmsprop's momentum (0 = none)
      momentum_initial=-1.0,      # momentum/nesterov, >= 0: momentum rises linearly from
      momentum_ramp_steps=-1, momentum_ramp_epochs=0.0,  # this to `momentum` over the ramp
      b1=0.9, b2=0.999, eps=1e-8,  # adam/adamw (eps also for rmsprop)
      rms_decay=0.9,              # rmsprop's moving-average decay
      weight_decay=0.0,           # adamw: decoupled; others: added to the gradient
      grad_clip_norm=0.0,         # clip the global gradient norm (0 = off)
      schedule="constant",        # constant | step | cosine | linear
      warmup_steps=-1, warmup_epochs=0.0,  # linear warmup from 0
      decay_epochs=(),            # step schedule: epochs at which lr *= decay_factor
      decay_factor=0.1,
      end_learning_rate_factor=0.0,  # cosine/linear: final lr as a fraction of the peak
      frozen=(),                  # never updated: parameters whose path (e.g. whiten/kernel)
                                  # contains one of these
  ))
