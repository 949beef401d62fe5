"""The sentence polarity data (Pang & Lee 2005, "MR"): 5,331 positive and 5,331 negative
movie-review snippets, lowercased and tokenised, one per line, in
DIR/movie_review/rt-polarity.{pos,neg}. There is no official split: papers report
10-fold cross-validation, and `folds` gives a seeded one.

    sentences, labels = movie_review.read(manual_dir)
"""

import os

import numpy as np

from deeplearn_jax.errors import DataError

FILES = (("rt-polarity.neg", 0), ("rt-polarity.pos", 1))


def read(manual_dir: str) -> tuple[list[list[str]], np.ndarray]:
  """(token lists, labels 1 = positive) from manual_dir/movie_review/."""
  folder = os.path.join(manual_dir or os.environ.get("DEEPLEARN_DATA_DIR", ""), "movie_review")
  sentences, labels = [], []
  for name, label in FILES:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      raise DataError(f"movie review data not found: {path} (set config.data.manual_dir to "
                      "the folder holding movie_review/)")
    with open(path, encoding="utf-8", errors="replace") as f:
      lines = [line.split() for line in f]
    lines = [t for t in lines if t]
    if not lines:
      raise DataError(f"movie review file {path} holds no sentences")
    sentences += lines
    labels += [label] * len(lines)
  return sentences, np.asarray(labels, np.int32)


def folds(n: int, k: int, seed: int) -> np.ndarray:
  """Each example's fold 0..k-1: a seeded permutation cut into k near-equal parts."""
  out = np.empty(n, np.int64)
  out[np.random.default_rng([seed, 7]).permutation(n)] = np.arange(n) % k
  return out


def vocabulary(sentences: list[list[str]]) -> dict[str, int]:
  """Word -> id over `sentences` (training ones), ids from 2: 0 pads, 1 is unknown."""
  words = sorted({w for s in sentences for w in s})
  return {w: i + 2 for i, w in enumerate(words)}


def encode(sentences: list[list[str]], vocab: dict[str, int], width: int) -> dict:
  """{'input': ids [n, width], 'lengths': [n]}; sentences longer than width are cut."""
  ids = np.zeros((len(sentences), width), np.int32)
  lengths = np.zeros(len(sentences), np.int32)
  for i, s in enumerate(sentences):
    row = [vocab.get(w, 1) for w in s[:width]]
    ids[i, :len(row)], lengths[i] = row, len(row)
  return {"input": ids, "lengths": lengths}
