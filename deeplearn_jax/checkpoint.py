"""The one checkpoint wrapper (Orbax): periodic async saves, keep-K, auto-resume,
integrity checks and fallback past damaged checkpoints. Every trainer uses it.

Each checkpoint holds the state and a checksum of every array computed on device
before the save. Orbax notices a truncated or missing file by itself, but not
overwritten bytes; the checksum catches those. A damaged newest checkpoint is
renamed `<step>.damaged` (never deleted) once an older one restores.
"""

import functools
import json
import logging
import os
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from deeplearn_jax.errors import WorkdirError
from deeplearn_jax.jit_options import RUN_RARELY

logger = logging.getLogger(__name__)


@functools.partial(jax.jit, compiler_options=RUN_RARELY)
def fingerprint(tree: Any) -> jax.Array:
  """A position-weighted sum of the bits of every leaf (uint32, wrapping): any
  changed, swapped or zeroed value changes it."""

  def leaf(x):
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
      x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size == 8:
      bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # adds a trailing axis of 2
    elif size == 4:
      bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
      bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * size}")).astype(jnp.uint32)
    bits = bits.ravel()
    pos = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
    return jnp.sum(bits * pos, dtype=jnp.uint32)

  leaves = jax.tree.leaves(tree)
  return jnp.stack([leaf(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def saved_steps(directory: str) -> list[int]:
  """The steps of the finished checkpoints in `directory`. A plain read of the folder: no
  CheckpointManager, whose creation is a barrier across the processes of a run."""
  return sorted(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


def has_checkpoints(directory: str) -> bool:
  """Whether `directory` holds any finished checkpoint."""
  return bool(saved_steps(directory))


def read_checkpoint(directory: str, step: int | None = None) -> Any:
  """One checkpoint's state (the newest when step is None) as numpy arrays, whatever
  topology saved it; the manager is closed again (tools, tests)."""
  ckpt = Checkpointer(directory, async_save=False)
  try:
    return ckpt.read(ckpt.steps()[-1] if step is None else step)
  finally:
    ckpt.close()


class DamagedCheckpoint(Exception):
  """A checkpoint whose arrays fail their checksum."""
  pass


class Checkpointer:

  """A run's checkpoints: async saves with checksums, keep-K, restore with fallback."""
  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "integrity": ocp.JsonCheckpointHandler()})

  def steps(self) -> list[int]:
    """The steps of the checkpoints this manager knows, oldest first."""
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Starts an async save; the step folder appears (atomically) once it is complete."""
    if step in self.manager.all_steps():
      return
    checksum = [int(v) for v in jax.device_get(fingerprint(state))]
    try:
      self.manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          integrity=ocp.args.JsonSave({"step": step, "fingerprint": checksum})))
    except Exception as e:  # also surfaces a failed earlier async save
      self._save_failed(step, e)

  def wait(self) -> None:
    """Blocks until the last async save is on disk; raises if it failed."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      self._save_failed(None, e)

  def _save_failed(self, step: int | None, e: Exception) -> None:
    # Async saves report failures late: at the next save or wait, so name no step.
    del step
    self.manager.reload()
    done = self.steps()
    kept = f"the checkpoint of step {done[-1]} is intact" if done else "there is no earlier one"
    raise WorkdirError(f"saving a checkpoint in {self.directory} failed ({_os_cause(e)}); "
                       f"{kept}") from e

  def _restore_step(self, step: int, abstract_state: Any) -> Any:
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), integrity=ocp.args.JsonRestore()))
    expected = restored.integrity["fingerprint"]
    if [int(v) for v in jax.device_get(fingerprint(restored.state))] != expected:
      raise DamagedCheckpoint("its arrays do not match the checksum written with them")
    return restored.state

  def restore(self, abstract_state: Any) -> tuple[int, Any] | tuple[None, None]:
    """Restores the newest intact checkpoint into `abstract_state`'s shapes and shardings."""
    steps = self.steps()
    damaged: list[tuple[int, str]] = []
    for step in reversed(steps):
      try:
        state = self._restore_step(step, abstract_state)
      except Exception as e:  # Orbax raises many kinds for damaged or foreign data.
        logger.warning("checkpoint %s/%d cannot be restored: %s", self.directory, step,
                        _first_line(e))
        damaged.append((step, _first_line(e)))
        continue
      for bad, why in damaged:
        self._set_aside(bad, why)
      return step, state
    if steps:
      raise WorkdirError(f"no checkpoint in {self.directory} can be restored "
                         f"(step {damaged[0][0]}: {damaged[0][1]}); nothing was changed")
    return None, None

  def restore_or(self, target: Any, fresh: Callable[[], Any]) -> tuple[int, Any]:
    """(step, state) of the newest intact checkpoint, or (0, fresh()) when there is none.
    Also what a NaN rollback goes back to."""
    step, state = self.restore(target)
    if state is None:
      return 0, fresh()
    logger.info("resuming from step %d in %s", step, self.directory)
    return step, state

  def _set_aside(self, step: int, why: str) -> None:
    path = os.path.join(self.directory, str(step))
    if jax.process_index() == 0:
      os.replace(path, f"{path}.damaged")
    logger.warning("checkpoint step %d is damaged (%s); moved to %s.damaged and resumed "
                    "from an older one", step, why, path)
    self.manager.reload()

  def read(self, step: int) -> Any:
    """One checkpoint's state as numpy arrays, whatever topology saved it (tools, tests)."""
    target = _on_this_device(self.manager.item_metadata(step)["state"])
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))
    return jax.device_get(restored.state)

  def close(self) -> None:
    """Waits for the last save, then releases Orbax's threads."""
    try:
      self.wait()  # raises if the last async save failed
    finally:
      try:
        self.manager.close()
      except Exception:  # its failure, if any, was raised by wait() already
        logger.debug("checkpoint manager close failed", exc_info=True)


_OS_CAUSES = ("No space left on device", "Read-only file system", "Permission denied",
              "Disk quota exceeded", "Input/output error")


def _os_cause(e: BaseException) -> str:
  """The operating system's reason, when one is buried in a storage library's message."""
  text = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
  return next((c for c in _OS_CAUSES if c in text), _first_line(e))


def _first_line(e: BaseException) -> str:
  text = str(e).strip().split(" See full TensorStore details")[0]
  return text.splitlines()[0][:300] if text else type(e).__name__


def save_params(path: str, params: Any) -> None:
  """Saves a standalone parameter tree (e.g. a DBN's pre-trained stack) with its
  checksum, for other runs to start from (`config.init_from`). Written beside `path`
  and renamed into place, so `path` is either complete or absent."""
  path = os.path.abspath(path)
  tmp = f"{path}.tmp"
  checksum = [int(v) for v in jax.device_get(fingerprint(params))]
  try:
    if jax.process_index() == 0 and os.path.exists(tmp):
      shutil.rmtree(tmp)
    with ocp.StandardCheckpointer() as saver:
      saver.save(os.path.join(tmp, "params"), params)
    if jax.process_index() == 0:
      with open(os.path.join(tmp, "integrity.json"), "w", encoding="utf-8") as f:
        json.dump({"fingerprint": checksum}, f)
      os.replace(tmp, path)
  except OSError as e:
    raise WorkdirError(f"cannot save parameters to {path} ({_os_cause(e)})") from e


def load_params(path: str) -> Any:
  """A tree saved by `save_params`, as numpy arrays, after checking its checksum."""
  path = os.path.abspath(path)
  try:
    with open(os.path.join(path, "integrity.json"), encoding="utf-8") as f:
      expected = json.load(f)["fingerprint"]
    with ocp.StandardCheckpointer() as reader:
      meta = reader.metadata(os.path.join(path, "params")).item_metadata
      params = reader.restore(os.path.join(path, "params"), _on_this_device(meta))
  except Exception as e:  # missing files, foreign folders and damaged data alike
    raise WorkdirError(f"cannot load parameters from {path}: {_first_line(e)}") from e
  if [int(v) for v in jax.device_get(fingerprint(params))] != expected:
    raise WorkdirError(f"parameters in {path} do not match the checksum written with them")
  return jax.device_get(params)


def _on_this_device(metadata: Any) -> Any:
  """A restore target for saved arrays on this process's first device, whatever
  topology saved them."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                      metadata)


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs with shardings: the restore target, without allocating."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
