"""The seven Tomita (1982) grammars over {0, 1} as automata, and seeded, label-balanced
string sets drawn from them (Giles et al. 1992 learn each with a second-order RNN).

    ds = tomita.dataset(grammar=4, train_lengths=(0, 10), test_lengths=(11, 30), ...)

Each grammar is a DFA (`DFAS`); `accepts` runs it. A balanced set draws half its strings
uniformly among the accepted strings of a length and half among the rejected ones
(counts over the automaton's states make the draw exact), so the rare positives of
grammars 1 and 2 are not swamped. Inputs are one-hot [n, T, 2], padded with zeros past
each string's `lengths`.
"""

import numpy as np

from deeplearn_jax.data.pipeline import ArraySplit
from deeplearn_jax.errors import UserError

# grammar -> (transitions[state] = (next on '0', next on '1'), accepting states); state 0
# starts. A dead state loops on itself.
DFAS = {
    1: (((1, 0), (1, 1)), {0}),                                # 1*
    2: (((2, 1), (0, 2), (2, 2)), {0}),                        # (10)*
    # no odd-length run of 1s directly followed by an odd-length run of 0s
    3: (((0, 1), (2, 0), (3, 4), (2, 1), (4, 4)), {0, 1, 3}),
    4: (((1, 0), (2, 0), (3, 0), (3, 3)), {0, 1, 2}),          # no 000
    # (zeros mod 2, ones mod 2) = 2 * z + o: an even number of each
    5: (((2, 1), (3, 0), (0, 3), (1, 2)), {0}),
    6: (((1, 2), (2, 0), (0, 1)), {0}),                        # (#0 - #1) mod 3 = 0
    7: (((0, 1), (2, 1), (2, 3), (4, 3), (4, 4)), {0, 1, 2, 3}),  # 0*1*0*1*
}
GRAMMARS = tuple(DFAS)


def check_grammar(grammar) -> int:
  """The grammar number, or a UserError for one that is not 1..7."""
  if grammar not in DFAS:
    raise UserError(f"unknown Tomita grammar {grammar!r}: use one of 1..7")
  return int(grammar)


def accepts(grammar: int, string: str) -> bool:
  """Whether `string` (of '0' and '1') is in Tomita grammar `grammar`."""
  table, accepting = DFAS[check_grammar(grammar)]
  state = 0
  for ch in string:
    state = table[state][int(ch)]
  return state in accepting


def _completions(grammar: int, length: int) -> np.ndarray:
  """counts[r, q, a]: strings of r more symbols that, from state q, end accepted (a=1)
  or rejected (a=0)."""
  table, accepting = DFAS[grammar]
  n = len(table)
  counts = np.zeros((length + 1, n, 2), dtype=np.float64)  # float: 2^30 overflows nothing
  for q in range(n):
    counts[0, q, int(q in accepting)] = 1
  for r in range(1, length + 1):
    for q in range(n):
      counts[r, q] = counts[r - 1, table[q][0]] + counts[r - 1, table[q][1]]
  return counts


def _draw(grammar: int, length: int, label: int, counts, rng) -> str:
  """A string of `length` drawn uniformly among those with `label` (1: accepted)."""
  table = DFAS[grammar][0]
  state, out = 0, []
  for r in range(length, 0, -1):
    c0, c1 = counts[r - 1, table[state][0], label], counts[r - 1, table[state][1], label]
    bit = int(rng.random() * (c0 + c1) >= c0)
    out.append(str(bit))
    state = table[state][bit]
  return "".join(out)


def balanced_strings(grammar: int, min_len: int, max_len: int, count: int,
                     rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
  """`count` strings (half positive, half negative) of lengths min_len..max_len, each
  label's length uniform over the lengths that have a string of that label, the string
  uniform among them. Few positives (grammars 1 and 2) repeat. Returns (strings, labels)."""
  grammar = check_grammar(grammar)
  if min_len < 0 or max_len < max(min_len, 1) or count < 2:
    raise UserError(f"Tomita lengths {min_len}..{max_len} and count {count}: need "
                    "0 <= min <= max, max >= 1 and count >= 2")
  counts = _completions(grammar, max_len)
  strings, labels = [], []
  for label in (1, 0):
    lengths = [n for n in range(min_len, max_len + 1) if counts[n, 0, label] > 0]
    if not lengths:
      raise UserError(f"Tomita grammar {grammar} has no {'positive' if label else 'negative'}"
                      f" strings of lengths {min_len}..{max_len}")
    k = count // 2 if label else count - count // 2
    for n in rng.choice(lengths, size=k):
      strings.append(_draw(grammar, int(n), label, counts, rng))
      labels.append(label)
  order = rng.permutation(len(strings))
  return [strings[i] for i in order], np.asarray(labels, np.int32)[order]


def encode(strings: list[str], pad_to: int) -> dict[str, np.ndarray]:
  """{'input': one-hot [n, pad_to, 2] float32 (zeros past the end), 'lengths': [n]}."""
  x = np.zeros((len(strings), pad_to, 2), np.float32)
  for i, s in enumerate(strings):
    bits = np.fromiter((int(c) for c in s), dtype=np.int64, count=len(s))
    x[i, np.arange(len(s)), bits] = 1.0
  return {"input": x, "lengths": np.asarray([len(s) for s in strings], np.int32)}


class AsBatch:
  """Rows -> model-ready batch with `lengths` kept (the image Normalize drops it). A
  class, so that grain can pickle it."""

  def __call__(self, rows):
    return {"input": rows["input"].astype(np.float32), "label": rows["label"].astype(np.int32),
            "lengths": rows["lengths"].astype(np.int32)}


def dataset(grammar: int, train_lengths: tuple[int, int], test_lengths: tuple[int, int],
            num_train: int, num_test: int, seed: int):
  """A `data.Dataset` of Tomita grammar `grammar`: balanced train strings of
  train_lengths (inclusive) and test strings of test_lengths, from `seed`."""
  from deeplearn_jax.data import Dataset  # the package imports this module's callers
  rng = np.random.default_rng([seed, grammar])
  splits = {}
  for name, (lo, hi), n in (("train", train_lengths, num_train),
                            ("test", test_lengths, num_test)):
    strings, labels = balanced_strings(grammar, lo, hi, n, rng)
    splits[name] = ArraySplit({**encode(strings, hi), "label": labels})
  return Dataset(f"tomita{grammar}", splits["train"], splits["test"], 2, AsBatch())
