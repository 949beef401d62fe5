"""What a run does when the loss turns NaN/Inf (`config.nan_policy`).

The jitted step never applies a non-finite update: it keeps the old parameters,
counts the step in `state.skipped` and records the first such step in
`state.bad_step`. The host looks at that at each log and checkpoint, then:

  stop      (default) stop with the step named; the last good checkpoint stays.
  skip      go on without those updates; stop once more than `nan_max_skips` were skipped.
  rollback  go back to the last good checkpoint with the learning rate multiplied by
            `nan_lr_factor`, at most `nan_max_rollbacks` times; the batch that gave
            the NaN is skipped when it comes again.
"""

import logging

import jax
import jax.numpy as jnp
import ml_collections

from deeplearn_jax.checkpoint import Checkpointer
from deeplearn_jax.errors import TrainingDiverged, UserError
from deeplearn_jax.train.state import TrainState

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip", "rollback")


def guarded_update(old, new, ok: jax.Array):
  """Inside a jitted step: `new` if `ok`, else `old` with the step counted as skipped.
  Either way the step advances, so the data and keys of later steps stay the same."""
  state = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  return state.replace(
      step=old.step + 1,
      bad_step=jnp.where(ok | (old.bad_step >= 0), old.bad_step, old.step),
      skipped=old.skipped + (~ok).astype(jnp.int32))


def validate(config: ml_collections.ConfigDict) -> None:
  """Refuses an unknown config.nan_policy."""
  if config.nan_policy not in POLICIES:
    raise UserError(f"config.nan_policy must be one of {', '.join(POLICIES)}, "
                    f"got {config.nan_policy!r}")


class NanGuard:

  """Applies config.nan_policy when a step's loss was not finite."""
  def __init__(self, config: ml_collections.ConfigDict, ckpt: Checkpointer):
    validate(config)
    self.policy = config.nan_policy
    self.config = config
    self.ckpt = ckpt
    self.rollbacks = 0
    self.tolerated: set[int] = set()  # steps whose batch gave NaN before a rollback

  def _stop(self, reason: str) -> None:
    self.ckpt.wait()
    good = self.ckpt.steps()
    kept = f"the last good checkpoint (step {good[-1]}) is kept" if good else "no checkpoint yet"
    raise TrainingDiverged(f"{reason}; training stopped and {kept} in {self.ckpt.directory}")

  def check(self, state: TrainState) -> tuple[TrainState, bool]:
    """Returns (state, whether to roll back to the last good checkpoint now)."""
    bad = int(jax.device_get(state.bad_step))
    if bad < 0:
      return state, False
    where = f"the loss became NaN or Inf at step {bad + 1}"
    if self.policy == "stop":
      self._stop(where)
    if self.policy == "skip" or bad in self.tolerated:
      skipped = int(jax.device_get(state.skipped))
      if self.policy == "skip" and skipped > self.config.nan_max_skips:
        self._stop(f"{where}: {skipped} updates skipped, more than nan_max_skips="
                   f"{self.config.nan_max_skips}")
      logger.warning("%s; that update was skipped (%d so far)", where, skipped)
      return _set(state, bad_step=-1), False
    if self.rollbacks >= self.config.nan_max_rollbacks:
      self._stop(f"{where} after {self.rollbacks} rollbacks (nan_max_rollbacks)")
    self.rollbacks += 1
    self.tolerated.add(bad)
    return state, True

  def after_rollback(self, restored: TrainState, current: TrainState) -> TrainState:
    """The restored state, with the learning rate scaled down once more."""
    scale = float(jax.device_get(current.lr_scale)) * self.config.nan_lr_factor
    logger.warning("nan_policy=rollback: resuming from step %d with the learning rate "
                    "scaled by %g (rollback %d of at most %d)", int(restored.step), scale,
                    self.rollbacks, self.config.nan_max_rollbacks)
    return _set(restored, bad_step=-1, lr_scale=scale)


def _set(state: TrainState, **values) -> TrainState:
  """Replaces scalar fields, keeping each field's dtype and sharding."""
  new = {k: jax.device_put(jnp.asarray(v, getattr(state, k).dtype), getattr(state, k).sharding)
         for k, v in values.items()}
  return state.replace(**new)
