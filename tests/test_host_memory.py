"""Host memory kept on CPUs (deeplearn_jax/host_memory.py, DEEPLEARN_JAX_MALLOC=keep):
repeated steps stop faulting their temporaries in afresh. Each case is its own process,
since malloc must be set up before the first computation."""

import os
import subprocess
import sys

import pytest

from deeplearn_jax import host_memory

STEPS = """
import resource
import jax, jax.numpy as jnp
import deeplearn_jax
f = jax.jit(lambda x: jnp.cumsum(x).sum())  # a 32 MB temporary every call
x = jnp.ones(8 << 20)
for _ in range(5):
  jax.block_until_ready(f(x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  jax.block_until_ready(f(x))
print(deeplearn_jax.host_memory.keep_freed_memory(),
      resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(malloc: str) -> tuple[str, int]:
  env = {**os.environ, "DEEPLEARN_JAX_MALLOC": malloc, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True,
                       text=True, check=True).stdout.split()
  return out[0], int(out[1])


@pytest.mark.skipif(not host_memory.cpu_only_linux(),
                    reason="needs glibc's mallopt on a CPU-only install")
def test_kept_memory_stops_the_page_faults_of_repeated_steps():
  kept, kept_faults = _faults("keep")
  system, system_faults = _faults("")  # the default: glibc as it comes
  assert (kept, system) == ("True", "False")
  # Ten steps with a 32 MB temporary: 8,192 pages each, faulted in afresh by glibc.
  assert system_faults > 50_000
  assert kept_faults < system_faults / 4
