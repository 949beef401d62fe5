"""The one checkpoint wrapper (Orbax): periodic async saves, keep-K, auto-resume,
and fallback past a damaged newest checkpoint. Every trainer uses it."""

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from deeplearn_jax.errors import WorkdirError


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Starts an async save; the files appear atomically when it is complete."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, abstract_state: Any) -> tuple[int, Any] | tuple[None, None]:
    """Restores the newest readable checkpoint into `abstract_state`'s shapes and
    shardings. A damaged one is reported and skipped (never deleted)."""
    steps = self.steps()
    errors = []
    for step in reversed(steps):
      try:
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        if errors:
          logging.warning("resumed from step %d after skipping damaged checkpoints: %s", step,
                          "; ".join(errors))
        return step, state
      except Exception as e:  # Orbax raises many kinds for damaged or foreign data.
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        logging.warning("checkpoint %s/%d cannot be restored (%s); trying an older one",
                        self.directory, step, msg)
        errors.append(f"step {step}: {msg}")
    if steps:
      raise WorkdirError(f"no checkpoint in {self.directory} can be restored for this model "
                         f"({errors[0]})")
    return None, None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs with shardings: the restore target, without allocating."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
