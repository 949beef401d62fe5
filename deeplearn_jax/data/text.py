"""Character-level text: a corpus read once, its vocabulary (the sorted distinct
characters, as nanoGPT's shakespeare_char prepares it), the first 90% of the text for
training and the last 10% for validation, random training windows drawn per step, and
validation windows that cover the whole validation split.

    text = text.load(config.data)            # data.name: tinyshakespeare | text (data.path)
    x = text.train_window_batch(seed, step, batch, context)   # [batch, context + 1] int32
    windows, mask = text.eval_windows(text.val, context)      # every val character once
"""

import dataclasses
import gzip
import os

import ml_collections
import numpy as np

from deeplearn_jax.data.tfds_sources import manual_dir_from
from deeplearn_jax.errors import DataError, UserError

NAMES = ("tinyshakespeare", "text")
TRAIN_FRACTION = 0.9  # nanoGPT's split: first 90% train, last 10% validation


@dataclasses.dataclass
class Text:
  """A character corpus as token ids (int32) and its vocabulary."""
  name: str
  chars: str              # the vocabulary: id i is chars[i]
  train: np.ndarray       # [n_train] int32
  val: np.ndarray         # [n_val] int32

  @property
  def vocab_size(self) -> int:
    return len(self.chars)

  def encode(self, s: str) -> np.ndarray:
    """Token ids of s; a character outside the vocabulary is a UserError."""
    index = {c: i for i, c in enumerate(self.chars)}
    unknown = sorted({c for c in s if c not in index})
    if unknown:
      raise UserError(f"characters not in the {self.name} vocabulary: "
                      f"{', '.join(repr(c) for c in unknown[:5])}")
    return np.asarray([index[c] for c in s], np.int32)

  def decode(self, ids) -> str:
    return "".join(self.chars[int(i)] for i in ids)


def path_of(config: ml_collections.ConfigDict) -> str:
  """The file data.name names: manual_dir/tinyshakespeare/input.txt, or data.path."""
  if config.name == "tinyshakespeare":
    folder = manual_dir_from(config.get("manual_dir", ""))
    if not folder:
      raise DataError("tinyshakespeare: set config.data.manual_dir (or $DEEPLEARN_DATA_DIR) "
                      "to the folder holding tinyshakespeare/input.txt")
    return os.path.join(folder, "tinyshakespeare", "input.txt")
  if config.name == "text":
    if not config.get("path", ""):
      raise DataError("data.name=text needs config.data.path=FILE (a UTF-8 text file)")
    return config.path
  raise DataError(f"unknown text dataset {config.name!r}; known: {', '.join(NAMES)}")


def read(path: str) -> str:
  """The text of a UTF-8 file (a .gz one through gzip): the one reader of every text
  dataset (character LMs, word corpora). A missing, empty or binary file is a DataError."""
  try:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:  # EOFError: a truncated .gz
    why = getattr(e, "strerror", None) or e
    raise DataError(f"cannot read text file {path}: {why}") from None
  if not raw:
    raise DataError(f"text file {path} is empty")
  # NUL bytes never occur in text and are common in binary files (UTF-16 included).
  if b"\x00" in raw:
    raise DataError(f"{path} is not a text file (it holds NUL bytes)")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {raw[e.start]:#04x})") from None


def from_string(name: str, text: str) -> Text:
  """The corpus `text`: vocabulary, 90/10 split."""
  if len(text) < 2:
    raise DataError(f"{name}: the text has {len(text)} character(s); a language model "
                    "needs at least 2")
  chars = "".join(sorted(set(text)))
  lookup = np.zeros(max(map(ord, chars)) + 1, np.int32)
  lookup[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int32)
  ids = lookup[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
  n = int(len(ids) * TRAIN_FRACTION)
  return Text(name, chars, ids[:n], ids[n:])


def load(config: ml_collections.ConfigDict) -> Text:
  path = path_of(config)
  return from_string(config.name, read(path))


def check_context(text: Text, context: int) -> None:
  """Both splits must hold a window of context + 1 characters (inputs and targets)."""
  if context < 1:
    raise UserError(f"the context must be >= 1 characters, got {context}")
  shortest = min(len(text.train), len(text.val))
  if context + 1 > shortest:
    raise UserError(f"the context of {context} characters is longer than the data: the "
                    f"{'training' if len(text.train) <= len(text.val) else 'validation'} "
                    f"split has {shortest} characters (it needs context + 1)")


def train_window_batch(tokens: np.ndarray, seed: int, step: int, batch: int, context: int,
                       shard: int = 0) -> np.ndarray:
  """[batch, context + 1] windows at uniform random starts (as nanoGPT's get_batch). The
  starts come from a generator seeded by (seed, step, shard) alone, so the batch of a
  step is the same however the run got there (resume is exact)."""
  rng = np.random.default_rng((seed, step, shard))
  starts = rng.integers(0, len(tokens) - context, size=batch)
  return tokens[starts[:, None] + np.arange(context + 1)]


def eval_windows(tokens: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
  """([n, context + 1] windows, [n, context] target mask) in which every character of
  `tokens` after the first is a target exactly once: back-to-back windows, and a last
  one ending at the end whose already-scored targets are masked out."""
  targets = len(tokens) - 1
  starts = list(range(0, targets - context + 1, context))
  mask = np.ones((len(starts), context), bool)
  covered = starts[-1] + context if starts else 0
  if covered < targets:
    last = targets - context
    starts.append(last)
    tail = np.zeros((1, context), bool)
    tail[0, covered - last:] = True
    mask = np.concatenate([mask, tail])
  windows = tokens[np.asarray(starts)[:, None] + np.arange(context + 1)]
  return windows, mask
