"""A decoder-only Transformer language model (GPT-2 style, as nanoGPT builds it): token
and learned position embeddings, pre-LayerNorm blocks of causal self-attention and a
GELU MLP, a final LayerNorm and a head tied to the token embedding. Dropout after the
embeddings, on the attention weights and after each residual branch, as nanoGPT has it.

Attention goes through jax.nn.dot_product_attention (cuDNN's fused kernel on GPUs in
half precision) except when training with dropout: jax.nn.dot_product_attention drops no
attention weights, so they are formed, masked, dropped and applied by XLA. Without that
dropout nanoGPT's GPU configuration overfit on the H200 (best validation 1.498, 2.08
at 5,000 iterations); with it, best 1.460 (nanoGPT reports 1.47).

Parameters are float32; `dtype` is the compute type (bfloat16 on accelerators). The
`model` mesh axis splits each block Megatron-style (`model_axis_dim`): the q/k/v and
first MLP kernels by output columns (heads), the output projections by input rows, so
each block needs one reduction; fsdp (parallel.param_sharding) splits another axis.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplearn_jax import determinism
from deeplearn_jax.models.layers import Dense

_init = nn.initializers.normal(stddev=0.02)   # GPT-2's init


class Block(nn.Module):
  width: int
  num_heads: int
  num_layers: int
  dropout: float
  bias: bool
  dtype: str
  attention: str

  @nn.compact
  def __call__(self, x, train: bool):
    b, t, c = x.shape
    heads, head_dim = self.num_heads, c // self.num_heads
    # Residual projections start smaller, GPT-2's 1/sqrt(2 * layers).
    proj_init = nn.initializers.normal(stddev=0.02 / (2 * self.num_layers) ** 0.5)
    dense = lambda n, name, init=_init: Dense(n, use_bias=self.bias, kernel_init=init,
                                                dtype=self.dtype, name=name)
    drop = nn.Dropout(self.dropout, deterministic=not train)

    h = nn.LayerNorm(epsilon=1e-5, use_bias=self.bias, dtype=self.dtype, name="ln_1")(x)
    q, k, v = jnp.split(dense(3 * c, "qkv")(h), 3, axis=-1)
    q, k, v = (a.reshape(b, t, heads, head_dim) for a in (q, k, v))
    if train and self.dropout > 0:
      y = causal_attention(q, k, v, nn.Dropout(self.dropout, deterministic=False))
    else:
      y = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                       implementation=attention_kernel(self.attention,
                                                                       self.dtype))
    x = x + drop(dense(c, "attn_proj", proj_init)(y.reshape(b, t, c)))

    h = nn.LayerNorm(epsilon=1e-5, use_bias=self.bias, dtype=self.dtype, name="ln_2")(x)
    h = nn.gelu(dense(4 * c, "fc")(h), approximate=False)
    return x + drop(dense(c, "mlp_proj", proj_init)(h))


class Transformer(nn.Module):
  """tokens [batch, time] int -> logits [batch, time, num_classes] (float32);
  num_classes is the vocabulary size, `context` the longest sequence."""

  num_classes: int
  num_layers: int = 4
  num_heads: int = 4
  width: int = 128
  context: int = 64
  dropout: float = 0.0
  bias: bool = False       # nanoGPT's default: no biases in Linears and LayerNorms
  dtype: str = "float32"
  attention: str = "auto"  # auto (cudnn where it applies, else xla) | xla | cudnn

  def __post_init__(self):
    if min(self.num_layers, self.num_heads, self.width, self.context) < 1:
      raise ValueError("num_layers, num_heads, width and context must be >= 1")
    if self.attention not in ("auto", "xla", "cudnn"):
      raise ValueError(f"attention must be auto, xla or cudnn, got {self.attention!r}")
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    t = tokens.shape[1]
    if t > self.context:
      raise ValueError(f"a sequence of {t} tokens exceeds the context of {self.context}")
    wte = nn.Embed(self.num_classes, self.width, embedding_init=_init, name="wte")
    pos = self.param("wpe", _init, (self.context, self.width))
    x = wte(tokens.astype(jnp.int32)) + pos[:t]
    x = nn.Dropout(self.dropout, deterministic=not train)(x).astype(self.dtype)
    for i in range(self.num_layers):
      x = Block(self.width, self.num_heads, self.num_layers, self.dropout, self.bias,
                self.dtype, self.attention, name=f"block{i}")(x, train)
    x = nn.LayerNorm(epsilon=1e-5, use_bias=self.bias, dtype=self.dtype, name="ln_f")(x)
    # Weight tying: the head is the token embedding's transpose (one 2-D matmul: see
    # layers.Dense for why).
    logits = x.reshape(-1, self.width) @ wte.embedding.astype(self.dtype).T
    return logits.reshape(*tokens.shape, self.num_classes).astype(jnp.float32)


def causal_attention(q, k, v, drop_weights):
  """Causal softmax attention of q, k, v [batch, time, heads, head_dim] with
  drop_weights applied to the attention weights; softmax in float32."""
  t = q.shape[1]
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * q.shape[-1] ** -0.5
  logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits, jnp.finfo(jnp.float32).min)
  weights = drop_weights(jax.nn.softmax(logits, axis=-1).astype(q.dtype))
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def attention_kernel(attention: str, dtype: str) -> str:
  """cuDNN's fused (flash) kernel for 'auto' on GPUs in half precision, XLA's elsewhere
  and under XLA's deterministic GPU kernels (jax 0.11.2 failed to compile a training
  step with both on the H200)."""
  if attention != "auto":
    return attention
  on_gpu = jax.default_backend() == "gpu" and jnp.dtype(dtype).itemsize == 2
  return "cudnn" if on_gpu and not determinism.enabled() else "xla"


def model_axis_dim(path: str, shape: tuple[int, ...]) -> int | None:
  """Which dimension of the parameter at `path` (e.g. 'block0/qkv/kernel') the 'model'
  mesh axis splits, or None (replicated over it)."""
  if len(shape) != 2:
    return None
  if path.endswith(("qkv/kernel", "fc/kernel")):
    return 1        # output columns: each device computes some heads / hidden units
  if path.endswith(("attn_proj/kernel", "mlp_proj/kernel")):
    return 0        # input rows: the partial sums are added across the axis
  return None
