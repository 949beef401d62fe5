"""Word2vec: skip-gram with negative sampling (Mikolov et al. 2013) on 170 Gutenberg books.

Command:  python -m experiments.word2vec   (--config=experiments/word2vec.py:smoke: seconds)
          --config.data.path=FILE trains on any other text file (.gz ok).
Data:     ../shared/data/gutenberg/corpus.txt.gz (170 books, 60.5M characters), normalised
          as text8 was: lowercase, letters a-z only; words seen fewer than 5 times dropped.
Method:   deeplearn_jax/train/skipgram.py on the loop driver: subsampling t = 1e-4,
          noise unigram^0.75, k = 5 negatives, window up to 5 (sampled per centre),
          100 dimensions, SGD from lr 0.025 decaying linearly, sentences of 1,000 words,
          2 sentences a step; pairs and negatives drawn on device.
Outputs:  results.json: analogy_accuracy (Google questions, candidates the 30,000 most
          frequent words, as the C tool and gensim), its semantic / syntactic parts and
          the fraction answered, wordsim353_spearman, words_per_second (corpus words
          before subsampling, per second of training), nearest_neighbours; vectors.txt
          in the word2vec text format.
Peer:     benchmarks/word2vec_gensim.py (gensim 4.4 Word2Vec(sg=1), same settings).
Variants: :smoke (the corpus's first 200,000 words, 32 dims, 40 steps): 86 s wall at
          load 20, most of it reading the corpus and compiling (36 s training).

Hardware: 2 cores of an AMD EPYC CPU (AVX2), no GPU, JAX 0.10.2 (CPU), float32, quiet
          (load average 1.7-2.1), 2026-11-27.
Result:   one epoch (5,250 steps = 1.008 epochs, the last chunk wrapping), seed 0, run
          by benchmarks/word2vec_gensim.py beside gensim on the same sentences:

                                         ours (JAX)        gensim 4.4 sg=1, 2 workers
  analogy accuracy (top 30,000 words)    4.73%             5.47%
    semantic / syntactic                 14.1% / 3.9%      16.4% / 4.5%
    questions answered                   40.2%             39.9%
  WordSim-353 Spearman (280 of 353)      0.249             0.205
  words per second (before subsampling)  123,919           370,362
  training time                          88 s              28 s

          Seed 1 (`--config.seed=1`, the experiment alone, 98 s wall): 5.08%, WordSim
          0.237, 125,743 words/s; an earlier random stream (threefry keys, seed 0):
          5.26%, 0.243. gensim's own evaluate_word_analogies / evaluate_word_pairs give
          the same figures for both (ours read back from vectors.txt). Nearest
          neighbours (seed 0): king -> servant, queen, eldest; france -> england,
          spain; three -> four, six, two; walked -> stepped, stairs, knocked. About
          0.5% of the pairs are dropped for want of room (the `dropped` metric; dense
          stretches of rare words). Vocabulary 40,228 words, 10,414,173 corpus words.
Published: gensim's sg, 100 dims, 5 epochs on text8 (17M words): 40.4% analogy
          accuracy over the 30,000 most frequent words; the paper's ~61% is from 1B
          words and 300 dims. Not comparable with one epoch over 10.4M words of 19th-
          century fiction, where 60% of the questions have a word outside the 30,000
          (currencies, US cities): our target was gensim on the same data, and there
          ours is level: analogy 0.4-0.7 points behind over two seeds (our seeds alone
          move it by 0.35-0.5), WordSim 0.03-0.04 ahead. Speed: ours is 0.33x gensim's C
          loop on this CPU (target missed; each step gathers and scatter-adds
          [pairs x 6, 100] rows as whole arrays, where the C loop updates a pair's rows
          in cache; the scatter-adds alone are over a quarter of a step).
          Five epochs (`benchmarks/word2vec_gensim.py --epochs=5`, 2026-11-28): gensim
          29.7% analogy, WordSim 0.514; ours diverged (loss 2.87 at step 500, 3,290 at
          1,500 with the rate still 0.0238, thousands after): 1.0%, 0.045. A step sums
          the updates of ~6,000 pairs, so a frequent word's row takes hundreds of stale
          updates at once where the C loop applies them in turn; one epoch's faster
          decay gets through. Not fixed yet: the quality target is missed at 5 epochs.
          Not run: 300 dims, text8, an accelerator (none here).
"""

import os

import ml_collections

from deeplearn_jax import cli, configs
from deeplearn_jax.data import text_corpus
from deeplearn_jax.data.tfds_sources import manual_dir_from
from deeplearn_jax.errors import DataError
from deeplearn_jax.train import skipgram


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = skipgram.base_config()
  if "smoke" in modifiers:
    c.data.max_words = 200_000
    c.word2vec.dim = 32
    c.batch_size = 4
    c.steps_per_call = 10
    c.num_train_steps = 40
    c.log_every_steps = 10
    c.checkpoint_every_steps = 20
    c.checkpoint_every_epochs = -1.0
    c.eval.analogy_restrict = 5000
    c.progress = False
  c.lock()
  return c


def corpus_path(config: ml_collections.ConfigDict) -> str:
  if config.data.path:
    return config.data.path
  if config.data.name != "gutenberg":
    raise DataError(f"config.data.name must be gutenberg (or give config.data.path), got "
                    f"{config.data.name!r}")
  root = manual_dir_from(config.data.manual_dir)
  path = os.path.join(root, "gutenberg", "corpus.txt.gz")
  if not root or not os.path.isfile(path):
    raise DataError(f"the Gutenberg corpus is not at {path or 'gutenberg/corpus.txt.gz'}: pass "
                    "--config.data.manual_dir=DIR (or set DEEPLEARN_DATA_DIR), or "
                    "--config.data.path=FILE")
  return path


def load_corpus(config: ml_collections.ConfigDict) -> text_corpus.Corpus:
  cache = config.data.cache_dir or os.path.join(os.path.expanduser("~"), ".cache",
                                                "deeplearn_jax", "corpus")
  return text_corpus.load(corpus_path(config), config.data.min_count, cache,
                          config.data.max_words)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  skipgram.validate(config)
  return skipgram.run(config, workdir, load_corpus(config)).results


if __name__ == "__main__":
  cli.run(__file__, "word2vec", train_and_evaluate)
