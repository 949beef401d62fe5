"""deeplearn_jax: landmarks of deep learning as reproducible JAX experiments."""

from deeplearn_jax import host_memory

__version__ = "0.1.0"

# Before any computation: XLA's CPU threads must find malloc set up (host_memory.py).
host_memory.keep_freed_memory()
