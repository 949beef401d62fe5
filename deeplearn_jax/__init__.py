"""deeplearn_jax: landmarks of deep learning as reproducible JAX experiments."""

__version__ = "0.1.0"
