"""Keep freed host memory in the process, so XLA's CPU steps stop faulting it back in.

XLA's CPU runtime allocates a step's temporaries afresh on every call (one buffer of
about 128 MB for the LSTM benchmark's step). glibc's malloc hands blocks that large back
to the kernel when they are freed: as their own mmap, or as whole heaps of a thread's
arena, which are unmapped once empty whatever the trim threshold. Every step then
faults its temporaries in again, page by page, zero-filled by the kernel: 31,000 page
faults a step for the LSTM benchmark, and the Transformer's gradient took 1.7x as long
as it does without them (README, "Host memory on CPUs").

keep_freed_memory() tells glibc (mallopt) to use one arena, never to mmap a block, and
never to trim the heap: freed memory stays in the heap and the next step reuses it, at
no page fault. It is opt-in (DEEPLEARN_JAX_MALLOC=keep), because one arena also costs:
resident memory stays at its peak, every thread takes the same malloc lock, and the DQN
on two CPU devices ran slower with it (README, "Host memory on CPUs"). It must run before
XLA's threads first allocate, so before the first computation: importing deeplearn_jax
does it. Only on CPU-only installs (no GPU plugin, no libtpu), where XLA's temporaries
live in host memory, and only with glibc (which has mallopt).
"""

import ctypes
import ctypes.util
import importlib.util
import os
import sys

from deeplearn_jax import determinism

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_applied = False


def cpu_only_linux() -> bool:
  """Where the settings can apply: Linux, and no GPU plugin or libtpu installed."""
  return (sys.platform.startswith("linux") and not determinism.gpu_plugin_installed()
          and importlib.util.find_spec("libtpu") is None)


def keep_freed_memory() -> bool:
  """Applies the settings above once per process where DEEPLEARN_JAX_MALLOC=keep; True
  where they are in force."""
  global _applied
  if _applied:
    return True
  if os.environ.get("DEEPLEARN_JAX_MALLOC", "system") != "keep" or not cpu_only_linux():
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # another C library (musl has no mallopt)
    return False
  _applied = bool(mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0)
                  and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
  return _applied
