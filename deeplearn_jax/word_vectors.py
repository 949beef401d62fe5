"""Word vectors: the standard benchmarks, nearest neighbours, and the word2vec text format.

    analogy(vectors, words)      # Google analogy questions (Mikolov et al. 2013a)
    wordsim(vectors, words)      # WordSim-353 (Finkelstein et al. 2002), Spearman's rho
    save_text(path, vectors, words)

Both benchmarks are the copies inside gensim's wheel (gensim/test/test_data). The
analogy score follows the C tool's compute-accuracy and gensim's
evaluate_word_analogies: only the `restrict` most frequent words (rows of `vectors`,
most frequent first) are candidates, a question with a word outside them is skipped,
the answer is the nearest unit vector to unit(b) - unit(a) + unit(c) other than a, b
and c. WordSim-353 skips pairs with an unknown word (gensim's default). Words are
matched lowercased, as the vocabulary is.
"""

import os

import numpy as np
import scipy.stats

from deeplearn_jax.errors import DataError


def gensim_test_file(name: str) -> str:
  """A file of gensim's test data (questions-words.txt, wordsim353.tsv)."""
  import gensim
  return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", name)


def _lines(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise DataError(f"benchmark file not found: {path}")
  with open(path, encoding="utf-8") as f:
    return [l.strip() for l in f if l.strip()]


def unit(vectors: np.ndarray) -> np.ndarray:
  v = np.asarray(vectors, np.float32)
  return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def analogy(vectors: np.ndarray, words: list[str], path: str = "", restrict: int = 30000,
            chunk: int = 1000) -> dict[str, float]:
  """Accuracy on the analogy questions (all, semantic = the first five sections,
  syntactic = the rest) and the fraction of questions answered (in vocabulary)."""
  lines = _lines(path or gensim_test_file("questions-words.txt"))
  index = {w: i for i, w in enumerate(words[:restrict])}
  questions, semantic, total = [], [], 0
  section = -1
  for line in lines:
    if line.startswith(":"):
      section += 1
      continue
    total += 1
    ids = [index.get(w) for w in line.lower().split()]
    if len(ids) == 4 and None not in ids:
      questions.append(ids)
      semantic.append(section < 5)  # capitals, currency, city-in-state, family
  if not questions:
    return {"analogy_accuracy": 0.0, "analogy_answered": 0.0}
  q = np.array(questions)
  e = unit(vectors[:restrict])
  correct = np.zeros(len(q), bool)
  for s in range(0, len(q), chunk):
    a, b, c, d = q[s:s + chunk].T
    scores = (e[b] - e[a] + e[c]) @ e.T
    rows = np.arange(len(a))
    for x in (a, b, c):
      scores[rows, x] = -np.inf
    correct[s:s + chunk] = scores.argmax(1) == d
  sem = np.array(semantic)
  return {"analogy_accuracy": float(correct.mean()),
          "analogy_semantic": float(correct[sem].mean()) if sem.any() else 0.0,
          "analogy_syntactic": float(correct[~sem].mean()) if (~sem).any() else 0.0,
          "analogy_answered": len(q) / total}


def wordsim(vectors: np.ndarray, words: list[str], path: str = "") -> dict[str, float]:
  """Spearman's rho between cosine similarity and the human scores over the pairs
  whose words are both known, and the fraction of pairs known."""
  index = {w: i for i, w in enumerate(words)}
  e = unit(vectors)
  model, human, total = [], [], 0
  for line in _lines(path or gensim_test_file("wordsim353.tsv")):
    if line.startswith("#"):
      continue
    a, b, score = line.lower().split("\t")
    total += 1
    if a in index and b in index:
      model.append(float(e[index[a]] @ e[index[b]]))
      human.append(float(score))
  rho = scipy.stats.spearmanr(model, human)[0] if len(model) > 1 else 0.0
  return {"wordsim353_spearman": float(rho), "wordsim353_pairs": len(model) / max(total, 1)}


def nearest(vectors: np.ndarray, words: list[str], queries, k: int = 5) -> dict[str, list]:
  """The k nearest words by cosine to each query word found in the vocabulary."""
  index = {w: i for i, w in enumerate(words)}
  e = unit(vectors)
  out = {}
  for q in queries:
    if q in index:
      sims = e @ e[index[q]]
      sims[index[q]] = -np.inf
      top = np.argsort(-sims)[:k]
      out[q] = [[words[i], round(float(sims[i]), 3)] for i in top]
  return out


def save_text(path: str, vectors: np.ndarray, words: list[str]) -> None:
  """The word2vec text format: a 'count dim' header, then 'word v1 v2 ...' per line."""
  v = np.asarray(vectors, np.float32)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(f"{len(words)} {v.shape[1]}\n")
    for w, row in zip(words, v):
      f.write(w + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
  os.replace(tmp, path)
