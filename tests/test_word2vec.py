"""Word2vec (experiments/word2vec.py, train/skipgram.py): the sampling distributions
against Mikolov's formulas, learning on a tiny synthetic corpus of word topics, exact
resume after a crash, vectors gensim can read, and bad corpora refused in one line."""

import json

import jax
import numpy as np
import pytest
from gensim.models import KeyedVectors

from conftest import override, train_losses
from deeplearn_jax import metrics
from deeplearn_jax.data import text_corpus
from deeplearn_jax.errors import DataError
from deeplearn_jax.train import skipgram
from experiments import word2vec

TOPICS, PER_TOPIC = 6, 5
STEPS = 60


def _topic_words():
  """Letters-only words: topic i's word j is e.g. 'aabb'."""
  return [[chr(97 + i) * 2 + chr(97 + j) * 2 for j in range(PER_TOPIC)] for i in range(TOPICS)]


def _write_corpus(path, num_words=3000, seed=0):
  """Runs of 8 words drawn from one topic; a word co-occurs with its topic's words."""
  rng = np.random.default_rng(seed)
  topics, out = _topic_words(), []
  while len(out) < num_words:
    out += list(rng.choice(topics[rng.integers(TOPICS)], 8))
  path.write_text(" ".join(out).upper() + ".\n")  # case and punctuation are normalised away
  return path


def _config(path, **overrides):
  c = word2vec.get_config("smoke")
  return override(c, **{"data.path": str(path), "data.min_count": 1, "data.cache_dir": "",
                        "data.max_words": 0, "word2vec.dim": 16, "word2vec.window": 3,
                        "word2vec.negatives": 3, "word2vec.sample": 5e-3,
                        "word2vec.learning_rate": 0.05, "word2vec.sentence_length": 50,
                        "batch_size": 4, "steps_per_call": 10, "num_train_steps": STEPS,
                        "log_every_steps": 10, "checkpoint_every_steps": 20,
                        "eval.analogy_restrict": 100, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("w2v")
  path = _write_corpus(root / "topics.txt")
  workdir = root / "run"
  results = word2vec.train_and_evaluate(_config(path), str(workdir))
  return path, workdir, results


def test_subsampling_and_noise_follow_mikolovs_formulas():
  words = ["the"] * 500 + ["of"] * 120 + ["ship"] * 9 + ["whale"] * 3 + ["rare"]
  corpus = text_corpus.build(words, min_count=1)
  assert corpus.words == ["the", "of", "ship", "whale", "rare"]
  total = len(words)
  for t in (1e-2, 1e-3):
    expected = []
    for c in (500, 120, 9, 3, 1):
      f = c / total  # keep with probability sqrt(t/f) + t/f, at most 1
      expected.append(min(1.0, np.sqrt(t / f) + t / f))
    np.testing.assert_allclose(text_corpus.keep_probability(corpus.counts, t), expected,
                               rtol=1e-6)
  weights = [c ** 0.75 for c in (500, 120, 9, 3, 1)]
  noise = text_corpus.noise_distribution(corpus.counts)
  np.testing.assert_allclose(noise, [w / sum(weights) for w in weights], rtol=1e-6)
  # The alias table the step draws negatives from holds exactly that distribution:
  # word i comes from its own column with accept[i] and from every column aliased to it.
  accept, alias = skipgram.alias_table(noise)
  n = len(noise)
  drawn = accept / n + np.bincount(alias, weights=(1 - accept) / n, minlength=n)
  np.testing.assert_allclose(drawn, noise, atol=1e-6)


def test_the_device_subsampling_keeps_the_expected_fraction(trained):
  path, workdir, _ = trained
  corpus = text_corpus.build(text_corpus.normalise(path.read_text()), 1)
  keep = text_corpus.keep_probability(corpus.counts, 5e-3)
  expected = float((corpus.counts * keep).sum() / corpus.counts.sum())
  kept = [r["kept"] for r in metrics.read_metrics(workdir) if r["split"] == "train"]
  # 60 steps x 200 words: the mean's standard error is ~0.004.
  assert abs(np.mean(kept) - expected) < 0.02, (np.mean(kept), expected)


def test_loss_falls_and_topic_words_come_together(trained):
  _, workdir, results = trained
  losses = [loss for _, loss in train_losses(workdir)]
  assert losses[-1] < 0.8 * losses[0], losses
  kv = KeyedVectors.load_word2vec_format(str(workdir / "vectors.txt"))
  topics = _topic_words()
  same = np.mean([kv.similarity(a, b) for t in topics for a in t for b in t if a < b])
  other = np.mean([kv.similarity(a, b) for i, t in enumerate(topics) for u in topics[i + 1:]
                   for a in t for b in u])
  assert same > other + 0.3, (same, other)
  assert set(results) >= {"analogy_accuracy", "wordsim353_spearman", "words_per_second",
                          "nearest_neighbours"}


def test_the_vectors_file_is_the_word2vec_text_format(trained, tmp_path):
  path, workdir, _ = trained
  text = (workdir / "vectors.txt").read_text().splitlines()
  assert text[0] == f"{TOPICS * PER_TOPIC} 16"
  kv = KeyedVectors.load_word2vec_format(str(workdir / "vectors.txt"))
  # Same words, most frequent first, as the run's own vocabulary.
  corpus = text_corpus.build(text_corpus.normalise(path.read_text()), 1)
  assert list(kv.index_to_key) == corpus.words
  results = json.loads((workdir / "results.json").read_text())
  assert results["vocab_size"] == len(corpus.words)
  assert kv.vectors.shape == (len(corpus.words), 16)


def test_resume_after_a_crash_equals_the_uninterrupted_run(trained, tmp_path, monkeypatch):
  path, workdir, results = trained
  original = skipgram.chunk_sentences

  def crash_at_40(blocks, first, rows):
    if first == 40 * 4:  # the chunk of steps 40-49: after the checkpoint at step 40
      raise RuntimeError("simulated crash")
    return original(blocks, first, rows)

  monkeypatch.setattr(skipgram, "chunk_sentences", crash_at_40)
  with pytest.raises(RuntimeError, match="simulated crash"):
    word2vec.train_and_evaluate(_config(path), str(tmp_path / "run"))
  monkeypatch.setattr(skipgram, "chunk_sentences", original)
  resumed = skipgram.run(_config(path), str(tmp_path / "run"),
                         word2vec.load_corpus(_config(path)))
  whole = KeyedVectors.load_word2vec_format(str(workdir / "vectors.txt"))
  again = KeyedVectors.load_word2vec_format(str(tmp_path / "run" / "vectors.txt"))
  np.testing.assert_array_equal(again.vectors, whole.vectors)
  # The file holds the final input vectors, to its printing precision.
  np.testing.assert_allclose(again.vectors, jax.device_get(resumed.state.params["input"]),
                             rtol=1e-5, atol=1e-7)
  assert resumed.results["final_train_loss"] == results["final_train_loss"]
  assert int(jax.device_get(resumed.state.step)) == STEPS


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"1234 5678 -- !!\n", "holds no words"),
    (bytes(range(256)) * 8, "not a text file"),
    (b"caf\xe9 au lait\n", "not UTF-8 text"),
])
def test_a_bad_corpus_is_one_clear_line_exit_2(tmp_path, content, message):
  path = tmp_path / "corpus.txt"
  path.write_bytes(content)
  with pytest.raises(DataError, match=message) as info:
    word2vec.train_and_evaluate(_config(path), str(tmp_path / "run"))
  assert info.value.exit_code == 2 and "\n" not in str(info.value)
  assert not (tmp_path / "run").exists()
