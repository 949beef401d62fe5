"""SIGTERM (Cloud TPU spot VMs, SLURM, Kubernetes) -> checkpoint now, exit with code 75.

Single process: a Python signal handler sets a flag that the loop reads each step.
Several processes: JAX's coordination service already listens for SIGTERM and agrees
on one step for all hosts (`reached_preemption_sync_point`), so every host saves the
same step; installing our own handler there would shadow it.
"""

import signal
from typing import Any

import jax
from jax.experimental import multihost_utils

from deeplearn_jax.errors import Preempted


class PreemptionWatcher:

  """Notices SIGTERM (one process) or the coordination service's preemption notice."""
  def __init__(self):
    self._flag = False
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi:
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame):
    del signum, frame
    self._flag = True

  def reached(self, step: int) -> bool:
    """Whether the run must checkpoint and stop after `step`."""
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag

  def close(self) -> None:
    """Puts back the SIGTERM handler it replaced."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def checkpoint_and_stop(ckpt, step: int, state: Any) -> None:
  """Writes the checkpoint of `step`, waits for it to be complete, raises Preempted."""
  ckpt.save(step, state)
  ckpt.wait()
  raise Preempted(f"preempted (SIGTERM) at step {step}; checkpoint saved in "
                  f"{ckpt.directory}; rerun the same command to resume")
