"""Our skip-gram (experiments/word2vec.py) against gensim 4.4's Word2Vec(sg=1), side by side.

    python benchmarks/word2vec_gensim.py [--epochs=1] [--manual_dir=../shared/data]

Both train on the same word stream: the Gutenberg corpus normalised by our reader, in
sentences of 1,000 words, with identical hyperparameters (100 dims, window 5 sampled
down, 5 negatives from unigram^0.75, sample 1e-4, min_count 5, lr 0.025 linearly to
2.5e-6, `epochs` passes). gensim runs with 2 worker threads (this machine's 2 cores);
ours is one JAX process on the same CPU. They take turns: ours first, then gensim.

Both sets of vectors are scored by the same code (deeplearn_jax/word_vectors.py:
analogy accuracy over the 30,000 most frequent words, WordSim-353 Spearman); as a
cross-check, gensim's own evaluate_word_analogies / evaluate_word_pairs also score both,
ours read back from its vectors.txt with KeyedVectors.load_word2vec_format.
words_per_second: corpus words (before subsampling) per second of training: for gensim
the raw word count train() reports over its train() wall time; for ours the loop's
steady rate (after the compiling first call, whose time is reported apart).
Writes benchmarks/results/word2vec_gensim.json.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from absl import app, flags  # noqa: E402

from benchmarks.machine import cpu_model  # noqa: E402
from deeplearn_jax import cli, word_vectors  # noqa: E402
from deeplearn_jax.train import skipgram  # noqa: E402
from experiments import word2vec as experiment  # noqa: E402

flags.DEFINE_float("epochs", 1.0, "passes over the corpus, both libraries")
flags.DEFINE_string("manual_dir", str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    "folder holding gutenberg/corpus.txt.gz")
flags.DEFINE_integer("max_words", 0, "> 0: only the corpus's first words (a quick check)")
flags.DEFINE_string("out", "benchmarks/results/word2vec_gensim.json", "output JSON")
FLAGS = flags.FLAGS


def gensim_scores(kv, restrict: int) -> dict:
  """gensim's own evaluation of a KeyedVectors (the cross-check)."""
  acc, _ = kv.evaluate_word_analogies(word_vectors.gensim_test_file("questions-words.txt"),
                                      restrict_vocab=restrict)
  pearson, spearman, oov = kv.evaluate_word_pairs(word_vectors.gensim_test_file(
      "wordsim353.tsv"))
  return {"analogy_accuracy": float(acc), "wordsim353_spearman": float(spearman[0]),
          "wordsim353_oov_percent": float(oov)}


def main(argv):
  del argv
  from gensim.models import KeyedVectors, Word2Vec
  import gensim

  cli.setup_jax()
  config = experiment.get_config("")
  config.unlock()
  config.data.manual_dir = FLAGS.manual_dir
  config.data.max_words = FLAGS.max_words
  config.num_epochs = FLAGS.epochs
  config.progress = False
  config.lock()
  w, e = config.word2vec, config.eval
  corpus = experiment.load_corpus(config)
  out = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                     "load_average_start": os.getloadavg()},
         "corpus": {"words": int(len(corpus.tokens)), "vocab": corpus.vocab_size},
         "settings": {"dim": w.dim, "window": w.window, "negatives": w.negatives,
                      "sample": w.sample, "min_count": config.data.min_count,
                      "alpha": w.learning_rate,
                      "min_alpha": w.learning_rate * w.min_learning_rate_ratio,
                      "epochs": FLAGS.epochs, "sentence_length": w.sentence_length}}

  # Ours.
  workdir = FLAGS.workdir or "/tmp/word2vec_bench"  # cli's --workdir; made afresh
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.perf_counter()
  ours = skipgram.run(config, workdir, corpus).results
  ours_wall = time.perf_counter() - start
  ours_kv = KeyedVectors.load_word2vec_format(os.path.join(workdir, "vectors.txt"))
  out["ours"] = {**{k: ours[k] for k in (
      "analogy_accuracy", "analogy_semantic", "analogy_syntactic", "analogy_answered",
      "wordsim353_spearman", "wordsim353_pairs", "words_per_second", "train_seconds",
      "final_train_loss", "nearest_neighbours")},
      "wall_seconds_with_compile_and_eval": ours_wall,
      "gensim_evaluation": gensim_scores(ours_kv, e.analogy_restrict),
      "load_average_after": os.getloadavg()}
  print(json.dumps({"ours": out["ours"]}, indent=1), flush=True)

  # gensim, on the same sentences.
  words = corpus.words
  blocks = skipgram.sentences(corpus.tokens, w.sentence_length)
  sentences = [[words[i] for i in row if i >= 0] for row in blocks]
  model = Word2Vec(vector_size=w.dim, window=w.window, negative=w.negatives, hs=0, sg=1,
                   sample=w.sample, min_count=config.data.min_count, ns_exponent=w.noise_power,
                   alpha=w.learning_rate, min_alpha=w.learning_rate * w.min_learning_rate_ratio,
                   workers=2, seed=config.seed)
  model.build_vocab(sentences)
  epochs = max(1, int(round(FLAGS.epochs)))
  start = time.perf_counter()
  effective, raw = model.train(sentences, total_examples=len(sentences), epochs=epochs)
  seconds = time.perf_counter() - start
  kv = model.wv
  vectors, vocab = kv.vectors, list(kv.index_to_key)
  theirs = {**word_vectors.analogy(vectors, vocab, restrict=e.analogy_restrict),
            **word_vectors.wordsim(vectors, vocab)}
  out["gensim"] = {**theirs, "words_per_second": raw / seconds, "train_seconds": seconds,
                   "effective_words": effective, "raw_words": raw,
                   "version": gensim.__version__, "workers": 2, "epochs": epochs,
                   "vocab": len(vocab),
                   "nearest_neighbours": word_vectors.nearest(vectors, vocab, e.neighbours),
                   "gensim_evaluation": gensim_scores(kv, e.analogy_restrict),
                   "load_average_after": os.getloadavg()}
  out["ratio_words_per_second_ours_over_gensim"] = (out["ours"]["words_per_second"]
                                                    / out["gensim"]["words_per_second"])
  Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
  Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
