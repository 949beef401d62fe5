"""Recurrent sequence models, batch first ([batch, time, features]): a cell scanned over
time with an optional mask, bidirectional and stacked layers, a hierarchical RNN (a lower
RNN summarises each chunk, an upper RNN reads the summaries) and the classifier/regressor
heads that `models.create` builds by the names "rnn" and "hierarchical_rnn"."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplearn_jax.models.layers import Dense
from deeplearn_jax.models.rnn_cells import CELLS, Cell, make_cell

READOUTS = ("last", "mean", "all")


def scan_cell(cell: Cell, xs: jax.Array, mask: Optional[jax.Array] = None,
              initial_carry=None, reverse: bool = False, unroll: int = 1,
              fused: bool = True):
  """Runs `cell` over xs [batch, time, in]: (final carry, outputs [batch, time, out]).

  Call it from inside a module that owns `cell`. The input projection is one matmul
  over all steps before the scan. Where mask [batch, time] is False the carry is left
  unchanged and the output is zero; so the final carry is the one after each row's last
  valid step, for any mask (flax's nn.RNN instead steps on past a row's end and picks
  the carry of its last valid step afterwards, which serves lengths but not gaps), and a
  reverse scan of a padded row starts at its last valid step. fused=True takes the
  cell's own whole-sequence path where it has one (the LSTM's hand-written gradient).
  """
  # Time-major inside: the scan slices the leading axis, and transposing the input
  # before its projection moves fewer numbers than transposing the projection.
  xp = cell.project(jnp.swapaxes(xs, 0, 1))
  if mask is not None:
    mask = jnp.swapaxes(mask, 0, 1).astype(bool)
  carry = cell.initial_carry(xs.shape[0]) if initial_carry is None else initial_carry
  out = cell.sequence(carry, xp, mask, reverse, unroll) if fused else None
  if out is None:
    out = _scan_steps(cell, carry, xp, mask, reverse, unroll)
  carry, ys = out
  return carry, jnp.swapaxes(ys, 0, 1)


def _scan_steps(cell: Cell, carry, xp, mask, reverse: bool, unroll: int):
  """nn.scan of cell.step over time-major xp [time, batch, ...]."""

  def body(cell, carry, inputs):
    if mask is None:
      return cell.step(carry, inputs)
    x, keep = inputs
    new, y = cell.step(carry, x)
    keep = keep[:, None]
    new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, carry)
    return new, jnp.where(keep, y, jnp.zeros((), y.dtype))

  scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                 reverse=reverse, unroll=unroll)
  return scan(cell, carry, xp if mask is None else (xp, mask))


class RNNLayer(nn.Module):
  """One recurrent layer of the cell `cell` (a name of CELLS), forward or bidirectional.

  __call__(xs, mask=None) -> (summary, outputs): outputs [batch, time, out] (forward and
  backward concatenated when bidirectional) and summary [batch, out], the forward output
  after the last valid step (and the backward output at the first)."""

  cell: str = "lstm"
  hidden: int = 128
  bidirectional: bool = False
  unroll: int = 1
  cell_options: Any = None
  dtype: str = "float32"
  fused: bool = True  # False: JAX's gradient of the scanned step (checks, benchmarks)

  @nn.compact
  def __call__(self, xs, mask=None):
    directions = ("forward", "backward") if self.bidirectional else ("forward",)
    summaries, outputs = [], []
    for d in directions:
      cell = make_cell(self.cell, self.hidden, self.dtype, self.cell_options, name=d)
      carry, ys = scan_cell(cell, xs, mask, reverse=d == "backward", unroll=self.unroll,
                            fused=self.fused)
      summaries.append(cell.output(carry))
      outputs.append(ys)
    if len(directions) == 1:
      return summaries[0], outputs[0]
    return jnp.concatenate(summaries, -1), jnp.concatenate(outputs, -1)


class StackedRNN(nn.Module):
  """num_layers RNNLayers, each reading the outputs of the one below, with dropout on
  the outputs between layers (the non-recurrent connections, Zaremba et al. 2014).
  __call__(xs, mask=None, train=False) -> (summary of the top layer, its outputs)."""

  cell: str = "lstm"
  hidden: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0
  unroll: int = 1
  cell_options: Any = None
  dtype: str = "float32"
  fused: bool = True

  @nn.compact
  def __call__(self, xs, mask=None, train: bool = False):
    for i in range(self.num_layers):
      if i:
        xs = nn.Dropout(self.dropout, deterministic=not train)(xs)
      summary, xs = RNNLayer(self.cell, self.hidden, self.bidirectional, self.unroll,
                             self.cell_options, self.dtype, self.fused,
                             name=f"layer{i}")(xs, mask)
    return summary, xs


def _check_fields(m) -> None:
  # Bad values fail when the model is built, not deep in its first trace.
  if m.cell not in CELLS:
    raise ValueError(f"unknown cell {m.cell!r}; known: {', '.join(CELLS)}")
  if m.num_layers < 1 or m.hidden < 1 or m.unroll < 1:
    raise ValueError("num_layers, hidden and unroll must be >= 1")
  if m.readout not in READOUTS:
    raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {m.readout!r}")


def _as_sequence(x: jax.Array) -> jax.Array:
  """[b, t] -> [b, t, 1]; [b, t, f] as is; images [b, h, w, c] -> rows [b, h, w*c]."""
  if x.ndim == 2:
    return x[..., None]
  if x.ndim == 3:
    return x
  if x.ndim == 4:
    return x.reshape(x.shape[0], x.shape[1], -1)
  raise ValueError(f"an RNN reads [batch, time, features] or images, got shape {x.shape}")


def _mask_from(mask, lengths, batch: int, time: int):
  if lengths is None:
    return mask
  by_length = jnp.arange(time)[None, :] < jnp.asarray(lengths).reshape(batch, 1)
  return by_length if mask is None else by_length & mask.astype(bool)


def _read_out(readout: str, summary, ys, mask):
  """[batch, features] ('last', 'mean') or [batch, time, features] ('all')."""
  if readout == "last":
    return summary
  if readout == "all":
    return ys
  if mask is None:
    return ys.mean(axis=1)
  m = mask.astype(ys.dtype)[..., None]
  return (ys * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


class RNNClassifier(nn.Module):
  """A stacked RNN and a linear head: logits [batch, num_classes] from the top layer's
  last output (readout='last'; with a mask, that after each row's last valid step) or
  its mean over valid steps ('mean'), or [batch, time, num_classes] ('all': a language
  model). num_classes=1 makes a regressor (the adding problem).

  Inputs are [batch, time, features], [batch, time] of scalars, images [b, h, w, c]
  read row by row (MNIST: 28 steps of 28 pixels), or, with vocab_size > 0, integer
  tokens [batch, time] through an embedding of embed_dim (0: hidden). `mask`
  [batch, time] or `lengths` [batch] mark the valid steps."""

  num_classes: int
  cell: str = "lstm"
  hidden: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  readout: str = "last"
  dropout: float = 0.0
  unroll: int = 1
  vocab_size: int = 0
  embed_dim: int = 0
  cell_options: Any = None  # the cell's own fields, e.g. {"peepholes": True}
  dtype: str = "float32"
  fused: bool = True        # False: no cell's own sequence path (see scan_cell)

  def __post_init__(self):
    _check_fields(self)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None, lengths=None):
    if self.vocab_size:
      x = nn.Embed(self.vocab_size, self.embed_dim or self.hidden, dtype=self.dtype)(
          jnp.asarray(x, jnp.int32))  # make_init traces float zeros
    xs = _as_sequence(x).astype(self.dtype)
    mask = _mask_from(mask, lengths, *xs.shape[:2])
    summary, ys = StackedRNN(self.cell, self.hidden, self.num_layers, self.bidirectional,
                             self.dropout, self.unroll, self.cell_options, self.dtype,
                             self.fused, name="rnn")(xs, mask, train)
    h = nn.Dropout(self.dropout, deterministic=not train)(_read_out(self.readout, summary,
                                                                    ys, mask))
    return Dense(self.num_classes, dtype=self.dtype, name="head")(h).astype("float32")


class HierarchicalRNN(nn.Module):
  """A hierarchical RNN: a lower RNN reads each chunk of the sequence and its summary
  (readout 'last' of the chunk) is one step of an upper RNN, whose summary the head
  reads. Images [b, h, w, c] make h chunks of w steps of c features (MNIST: the lower
  RNN reads the 28 pixels of each row, the upper one the 28 row summaries); sequences
  [b, t, f] are cut into chunks of `chunk` steps. A mask [b, t] (sequences only) masks
  steps in the lower RNN and all-masked chunks in the upper one."""

  num_classes: int
  cell: str = "lstm"
  hidden: int = 128
  upper_cell: str = ""        # "": the same as cell
  upper_hidden: int = 0       # 0: the same as hidden
  num_layers: int = 1         # of each RNN
  bidirectional: bool = False
  readout: str = "last"       # of the upper RNN: 'last' or 'mean'
  chunk: int = 0              # steps per chunk of a [b, t, f] input
  dropout: float = 0.0
  unroll: int = 1
  cell_options: Any = None
  dtype: str = "float32"

  def __post_init__(self):
    _check_fields(self)
    if self.readout == "all":
      raise ValueError("a hierarchical RNN reads out 'last' or 'mean'")
    if self.upper_cell and self.upper_cell not in CELLS:
      raise ValueError(f"unknown upper_cell {self.upper_cell!r}; known: {', '.join(CELLS)}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    if x.ndim == 4:
      if mask is not None:
        raise ValueError("a mask is for [batch, time, features] inputs, not images")
      chunks = x
    elif x.ndim == 3:
      b, t, f = x.shape
      if self.chunk < 1 or t % self.chunk:
        raise ValueError(f"chunk must divide the sequence length {t}, got {self.chunk}")
      chunks = x.reshape(b, t // self.chunk, self.chunk, f)
    else:
      raise ValueError(f"a hierarchical RNN reads [b, t, f] or [b, h, w, c], got {x.shape}")
    b, n, steps, f = chunks.shape
    lower_mask = None if mask is None else mask.reshape(b * n, steps)
    upper_mask = None if mask is None else mask.reshape(b, n, steps).any(-1)
    lower = StackedRNN(self.cell, self.hidden, self.num_layers, self.bidirectional,
                       self.dropout, self.unroll, self.cell_options, self.dtype, name="lower")
    summary, _ = lower(chunks.reshape(b * n, steps, f).astype(self.dtype), lower_mask, train)
    summaries = nn.Dropout(self.dropout, deterministic=not train)(summary.reshape(b, n, -1))
    upper = StackedRNN(self.upper_cell or self.cell, self.upper_hidden or self.hidden,
                       self.num_layers, self.bidirectional, self.dropout, self.unroll,
                       self.cell_options if not self.upper_cell else None, self.dtype,
                       name="upper")
    top, ys = upper(summaries, upper_mask, train)
    h = nn.Dropout(self.dropout, deterministic=not train)(_read_out(self.readout, top, ys,
                                                                    upper_mask))
    return Dense(self.num_classes, dtype=self.dtype, name="head")(h).astype("float32")
