"""XLA's deterministic GPU kernels, without autotuning among non-deterministic ones.

With them the same program on the same GPU gives the same bits, so a resumed run equals
an uninterrupted one there as it does on CPUs (otherwise some GPU kernels add with
atomics, in whatever order threads arrive). Off by default (`--gpu_deterministic` turns
them on; the tests do on GPUs): on the H200 a resumed LeNet differed in the last bits
without them and was identical with them, and the README's GPU speeds are without.
XLA reads its flags when the backend starts, so enable() must come before the first
computation. Only where a GPU plugin of jax is installed: elsewhere the flag would
change nothing but the keys of the persistent compilation cache.
"""

import importlib.metadata
import os

FLAG = "--xla_gpu_deterministic_ops=true"


def gpu_plugin_installed() -> bool:
  """jax's CUDA or ROCm plugin is installed (jax-cuda12-plugin, jax-cuda13-pjrt, ...)."""
  names = (d.metadata["Name"] or "" for d in importlib.metadata.distributions())
  return any(n.lower().replace("_", "-").startswith(("jax-cuda", "jax-rocm")) for n in names)


def enable() -> None:
  flags = os.environ.get("XLA_FLAGS", "")
  if gpu_plugin_installed() and "xla_gpu_deterministic_ops" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()


def enabled() -> bool:
  return FLAG in os.environ.get("XLA_FLAGS", "")
