"""ListOps (Nangia & Bowman 2018): nested MAX / MIN / MED / SUM_MOD expressions over the
digits 0-9, labelled with their value, from our own seeded generator with the paper's
settings (each argument an operator with probability 0.25, else a digit; 2-5 arguments;
depth <= 20; the root always an operator).

    ds = listops.dataset(num_train, num_test, seed, max_length, layout="tree")

Each expression is kept as the paper's binarised tree: [OP a b c ] is
((((OP a) b) c) ]), so every token is a leaf and every internal node has two children.
layout="flat": tokens [n, T] for a sequence model; layout="tree": a node buffer
[n, 2T, 3] for models/recursive.py (rows 0..T-1 the tokens as leaves, rows T.. the
internal nodes in post-order, each (token, left, right)). `lengths` is the token count.
"""

import numpy as np

from deeplearn_jax.data.buckets import Buckets, split_by_length
from deeplearn_jax.data.pipeline import ArraySplit
from deeplearn_jax.errors import UserError

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
END = "]"
# Token ids: digits 0-9 are themselves; 0 is also the padding (masked by `lengths`).
VOCAB = tuple(str(d) for d in range(10)) + OPERATORS + (END,)
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
NUM_CLASSES = 10


def apply(op: str, args: list[int]) -> int:
  """The value of operator `op` on digit arguments (MED: the integer part of the median,
  as the paper's generator takes it; SM: the sum modulo 10)."""
  if op == "[MAX":
    return max(args)
  if op == "[MIN":
    return min(args)
  if op == "[MED":
    return int(np.median(args))
  if op == "[SM":
    return sum(args) % 10
  raise ValueError(f"unknown operator {op!r}")


def generate(rng: np.random.Generator, max_depth: int = 20, max_args: int = 5,
             value_p: float = 0.25, depth: int = 1):
  """One expression as nested tuples (op, [args]) with digit leaves."""
  if depth > 1 and (depth >= max_depth or rng.random() > value_p):
    return int(rng.integers(10))
  n = int(rng.integers(2, max_args + 1))
  return (OPERATORS[int(rng.integers(len(OPERATORS)))],
          [generate(rng, max_depth, max_args, value_p, depth + 1) for _ in range(n)])


def value(expr) -> int:
  return expr if isinstance(expr, int) else apply(expr[0], [value(a) for a in expr[1]])


def tokens(expr) -> list[str]:
  if isinstance(expr, int):
    return [str(expr)]
  return [expr[0]] + [t for a in expr[1] for t in tokens(a)] + [END]


def depth(expr) -> int:
  return 0 if isinstance(expr, int) else 1 + max(depth(a) for a in expr[1])


def binary_tree(expr, leaf: list[int] | None = None):
  """The paper's binarisation as nested pairs over token positions: a leaf is its index
  in tokens(expr), an internal node a (left, right) pair."""
  leaf = leaf if leaf is not None else [0]

  def take():
    leaf[0] += 1
    return leaf[0] - 1

  if isinstance(expr, int):
    return take()
  node = take()  # the operator token
  for a in expr[1]:
    node = (node, binary_tree(a, leaf))
  return (node, take())  # the closing bracket


def encode_tree(tree, num_tokens: int, max_tokens: int) -> np.ndarray:
  """The node buffer [2 * max_tokens, 3] of one binary tree over token positions: rows
  < max_tokens are the leaves (children -1), then the internal nodes in post-order
  (children before parents, the root last), each (-1, left row, right row)."""
  rows = np.full((2 * max_tokens, 3), -1, np.int32)
  rows[:num_tokens, 0] = 0  # token ids are filled in by the caller
  nxt = [max_tokens]

  def visit(t) -> int:
    if isinstance(t, int):
      return t
    left, right = visit(t[0]), visit(t[1])
    rows[nxt[0], 1:] = (left, right)
    nxt[0] += 1
    return nxt[0] - 1

  visit(tree)
  return rows


def sample(n: int, rng: np.random.Generator, max_length: int, max_depth: int = 20,
           max_args: int = 5, value_p: float = 0.25) -> list:
  """n expressions of at most max_length tokens (longer draws are redrawn)."""
  out = []
  while len(out) < n:
    e = generate(rng, max_depth, max_args, value_p)
    if len(tokens(e)) <= max_length:
      out.append(e)
  return out


def encode(exprs: list, max_length: int, layout: str) -> dict[str, np.ndarray]:
  """{'input', 'label', 'lengths'} of expressions; layout 'flat' or 'tree' (see top)."""
  if layout not in ("flat", "tree"):
    raise UserError(f"ListOps layout must be 'flat' or 'tree', got {layout!r}")
  n = len(exprs)
  ids = np.zeros((n, max_length), np.int32)
  lengths = np.zeros(n, np.int32)
  trees = np.zeros((n, 2 * max_length, 3), np.int32) if layout == "tree" else None
  for i, e in enumerate(exprs):
    toks = [TOKEN_ID[t] for t in tokens(e)]
    ids[i, :len(toks)], lengths[i] = toks, len(toks)
    if trees is not None:
      trees[i] = encode_tree(binary_tree(e), len(toks), max_length)
      trees[i, :len(toks), 0] = toks
  labels = np.asarray([value(e) for e in exprs], np.int32)
  return {"input": ids if trees is None else trees, "label": labels, "lengths": lengths}


class TokenBatch:
  """Rows -> model batch of integer inputs with `lengths` (a class, so grain can pickle
  it)."""

  def __call__(self, rows):
    return {"input": rows["input"].astype(np.int32), "label": rows["label"].astype(np.int32),
            "lengths": rows["lengths"].astype(np.int32)}


def dataset(num_train: int, num_test: int, seed: int, max_length: int, layout: str,
            max_depth: int = 20, max_args: int = 5, value_p: float = 0.25,
            widths: tuple[int, ...] = ()):
  """A `data.Dataset` of ListOps: train and test expressions drawn from `seed` (the same
  expressions for either layout), kept in length buckets of `widths` (data/buckets.py;
  max_length is always the last)."""
  from deeplearn_jax.data import Dataset  # the package imports this module's callers
  if max_length < 4 or max_depth < 1 or max_args < 2 or not 0 < value_p < 1:
    raise UserError("ListOps needs max_length >= 4, max_depth >= 1, max_args >= 2 and "
                    f"0 < value_p < 1, got {max_length}, {max_depth}, {max_args}, {value_p}")
  if num_train < 1 or num_test < 1:
    raise UserError(f"ListOps needs num_train and num_test >= 1, got {num_train}, {num_test}")
  rng = np.random.default_rng([seed, 1318])
  exprs = sample(num_train + num_test, rng, max_length, max_depth, max_args, value_p)
  widths = tuple(sorted({w for w in widths if 4 <= w < max_length} | {max_length}))
  splits = []
  for part in (exprs[:num_train], exprs[num_train:]):
    lengths = np.asarray([len(tokens(e)) for e in part])
    splits.append(Buckets([ArraySplit(encode([part[i] for i in idx], w, layout))
                           for w, idx in zip(widths, split_by_length(lengths, widths))]))
  return Dataset(f"listops_{layout}", splits[0], splits[1], NUM_CLASSES, TokenBatch())
