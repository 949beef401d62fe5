"""A plain-text corpus as word ids, for word vectors.

    corpus = text_corpus.load(path, min_count=5, cache_dir=...)
    corpus.tokens   # int32 ids of the in-vocabulary words, in corpus order
    corpus.words    # id -> word, most frequent first; corpus.counts: their counts

Normalised as text8 was: lowercase, letters a-z only, everything else a word break
(accents are stripped first, so "café" is "cafe"). Words seen fewer than `min_count`
times are dropped from the stream, as the word2vec C tool and gensim drop them. The
ids and vocabulary are cached in `cache_dir` (keyed by the file's path, size, mtime and
min_count), so a second run skips the reading.

Also the two word2vec sampling distributions (Mikolov et al. 2013):
`keep_probability` (subsampling of frequent words) and `noise_distribution`
(unigram^0.75).
"""

import dataclasses
import hashlib
import os
import re
import unicodedata
from collections import Counter

import numpy as np

from deeplearn_jax.data import text
from deeplearn_jax.errors import DataError

_NON_LETTERS = re.compile(r"[^a-z]+")


@dataclasses.dataclass
class Corpus:
  tokens: np.ndarray   # int32 [num_tokens] word ids
  words: list[str]     # id -> word, by count descending (ties alphabetical)
  counts: np.ndarray   # int64 [vocab] occurrences of each word in the corpus

  @property
  def vocab_size(self) -> int:
    return len(self.words)


def normalise(text: str) -> list[str]:
  """text8's rule: lowercase, letters only (accents stripped), split on the rest."""
  text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
  return _NON_LETTERS.sub(" ", text).split()


def build(words: list[str], min_count: int) -> Corpus:
  """Vocabulary (count >= min_count, most frequent first) and the ids of its words."""
  counts = Counter(words)
  vocab = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
  if not vocab:
    raise DataError(f"the corpus has no word that occurs min_count={min_count} times "
                    f"({len(words)} words in all)")
  index = {w: i for i, w in enumerate(vocab)}
  ids = np.fromiter((index.get(w, -1) for w in words), np.int32, len(words))
  return Corpus(tokens=ids[ids >= 0], words=vocab,
                counts=np.array([counts[w] for w in vocab], np.int64))


def load(path: str, min_count: int, cache_dir: str = "", max_words: int = 0) -> Corpus:
  """The corpus of a text file (the first max_words words if > 0), cached in cache_dir
  ('' = no cache)."""
  if min_count < 1:
    raise DataError(f"config.data.min_count must be >= 1, got {min_count}")
  cache = None
  if cache_dir and os.path.isfile(path):
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{min_count}|{max_words}"
    cache = os.path.join(cache_dir, hashlib.sha1(key.encode()).hexdigest()[:16] + ".npz")
    if os.path.isfile(cache):
      z = np.load(cache)
      return Corpus(z["tokens"], z["words"].tolist(), z["counts"])
  words = normalise(text.read(path))
  if not words:
    raise DataError(f"corpus {path} holds no words (letters a-z) after normalisation")
  corpus = build(words[:max_words] if max_words > 0 else words, min_count)
  if cache:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = cache + f".tmp{os.getpid()}.npz"
    np.savez(tmp, tokens=corpus.tokens, words=np.array(corpus.words), counts=corpus.counts)
    os.replace(tmp, cache)
  return corpus


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
  """Probability that one occurrence of each word survives subsampling: with f its
  frequency and t = sample, (sqrt(f / t) + 1) t / f, capped at 1 (the C tool's and
  gensim's form of the paper's 1 - sqrt(t / f) discard rule). sample <= 0: keep all."""
  if sample <= 0:
    return np.ones(len(counts), np.float32)
  f = counts / counts.sum()
  return np.minimum(1.0, (np.sqrt(f / sample) + 1) * sample / f).astype(np.float32)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
  """Negative-sampling noise: counts^power, normalised."""
  p = counts.astype(np.float64) ** power
  return (p / p.sum()).astype(np.float32)
