"""deeplearn_jax: landmarks of deep learning as reproducible JAX experiments."""

from deeplearn_jax import host_memory

__version__ = "0.1.0"

# Before any computation, where DEEPLEARN_JAX_MALLOC=keep asks for it (host_memory.py).
host_memory.keep_freed_memory()
