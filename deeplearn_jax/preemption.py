"""SIGTERM (Cloud TPU spot VMs, SLURM, Kubernetes) -> checkpoint now, exit with code 75.

Single process: a Python signal handler sets a flag that the loop reads each step.
Several processes: JAX's coordination service already listens for SIGTERM and agrees
on one step for all hosts (`reached_preemption_sync_point`), so every host saves the
same step; installing our own handler there would shadow it.
"""

import signal

import jax
from jax.experimental import multihost_utils


class PreemptionWatcher:

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
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
