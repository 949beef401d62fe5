"""Skip-gram with negative sampling (Mikolov et al. 2013) on the one loop driver.

    outcome = skipgram.run(config, workdir, corpus)

The corpus (data/text_corpus.py: word ids, in-vocabulary words only) is cut into
sentences of `config.word2vec.sentence_length` words, as the C tool cuts its input into
sentences of 1,000 words; windows do not cross them. A step takes
`config.batch_size` consecutive sentences (the host only slices the id array, in corpus
order, epoch after epoch), and everything random happens on device from the key
fold_in(rng, step), so resuming is exact:

  - subsampling: each word is kept with text_corpus.keep_probability (sample = t) and
    the kept words of a sentence closed up, before windowing (as the C tool does);
  - dynamic window: each centre draws its window b uniformly from 1..window and pairs
    with the b kept words on either side;
  - negatives: k words per (centre, context) pair from unigram^0.75, drawn in O(1)
    from a precomputed alias table (a negative equal to the context word is skipped).

Plain SGD on the logistic loss, the learning rate decaying linearly from
`learning_rate` to `learning_rate * min_learning_rate_ratio` over the run, as the C
tool. The update is sparse: the gradient of a step touches only the rows it used, and
is added to them with a scatter (`.at[].add`); rows used several times in a step get
the sum. Input vectors start uniform in +-0.5/dim, output vectors at zero (the C tool).
`config.steps_per_call` steps run as one jitted `lax.scan`.

Fixed shapes need fixed room: a sentence's kept words get `capacities()`'s word room
(its largest expected count plus `capacity_sigmas` binomial deviations) and a step's
pairs are closed up into a pair room of `pair_margin` times their mean, so the work
is spent on real pairs, not on padding. Words or pairs beyond the room are dropped and
counted in the `dropped` metric (see experiments/word2vec.py for the Gutenberg run).
"""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import configs, parallel, run_folder, word_vectors
from deeplearn_jax.data import text_corpus
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import loop

NEIGHBOUR_QUERIES = ("king", "france", "good", "house", "three", "walked", "ship", "love")


def base_config() -> ml_collections.ConfigDict:
  c = configs.base()
  c.batch_size = 2                # sentences per step (1, 2, 4 and 8 ran as fast here)
  c.num_epochs = 1.0
  c.log_every_steps = 500
  c.eval_every_epochs = -1.0      # the benchmarks run once, at the end
  c.checkpoint_every_steps = -1
  c.checkpoint_every_epochs = 0.5
  c.steps_per_call = 50
  c.data.name = "gutenberg"
  c.data.path = ""                # a text file (.gz ok); '' = manual_dir/gutenberg/corpus.txt.gz
  c.data.min_count = 5
  c.data.max_words = 0            # > 0: only the corpus's first words (smoke runs)
  c.data.cache_dir = ""           # token-id cache; '' = ~/.cache/deeplearn_jax/corpus
  c.word2vec = ml_collections.ConfigDict(dict(
      dim=100, window=5, negatives=5, sample=1e-4, noise_power=0.75,
      learning_rate=0.025, min_learning_rate_ratio=1e-4,
      sentence_length=1000,
      capacity_sigmas=6.0,        # room for a sentence's kept words: mean + this many sd
      pair_margin=1.15,           # room for a step's pairs: this times their mean
  ))
  c.eval = ml_collections.ConfigDict(dict(
      analogy_path="",            # '' = gensim's questions-words.txt
      wordsim_path="",            # '' = gensim's wordsim353.tsv
      analogy_restrict=30000,     # candidates: the most frequent words (C tool, gensim)
      neighbours=NEIGHBOUR_QUERIES,
  ))
  return c


@flax.struct.dataclass
class SkipGramState:
  step: jax.Array
  params: dict               # {"input": [V, D], "output": [V, D]}
  rng: jax.Array             # raw key; step s draws from fold_in(rng, s)
  bad_step: jax.Array        # these three as in TrainState, for the NaN policy
  skipped: jax.Array
  lr_scale: jax.Array


def sentences(tokens: np.ndarray, length: int) -> np.ndarray:
  """[n, length] sentences of the id stream, the last padded with -1."""
  n = -(-len(tokens) // length)
  out = np.full(n * length, -1, np.int32)
  out[:len(tokens)] = tokens
  return out.reshape(n, length)


def chunk_sentences(blocks: np.ndarray, first: int, rows: int) -> np.ndarray:
  """[1, rows, length]: sentences first, first + 1, ... in corpus order, epoch after
  epoch (the leading 1 is the one-device batch axis)."""
  return blocks[np.arange(first, first + rows) % len(blocks)][None]


def capacities(blocks: np.ndarray, keep: np.ndarray, w: ml_collections.ConfigDict,
               batch_size: int) -> tuple[int, int]:
  """(room for the kept words of one sentence, room for the pairs of one step).

  Words: the largest expected kept count of any sentence plus `capacity_sigmas` of its
  binomial spread. Pairs: the corpus's mean kept words per step times (window + 1),
  the mean number of context words a centre pairs with, times `pair_margin`."""
  p = np.where(blocks >= 0, keep[np.maximum(blocks, 0)], 0.0)
  mean, var = p.sum(1), (p * (1 - p)).sum(1)
  words = int(min(blocks.shape[1], np.ceil((mean + w.capacity_sigmas * np.sqrt(var)).max()) + 1))
  pairs = int(np.ceil(mean.mean() * batch_size * (w.window + 1) * w.pair_margin))
  return words, pairs


def alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Walker's alias table of a distribution (Vose's method): draw i uniformly, keep it
  with probability accept[i], else take alias[i]."""
  n = len(p)
  scaled = p.astype(np.float64) * n
  accept, alias = np.ones(n), np.arange(n)
  small = [i for i in range(n) if scaled[i] < 1]
  large = [i for i in range(n) if scaled[i] >= 1]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1 - scaled[s]
    (small if scaled[l] < 1 else large).append(l)
  return accept.astype(np.float32), alias.astype(np.int32)


def _rbg_keys(key: jax.Array, n: int) -> list[jax.Array]:
  """n keys of XLA's own bit generator (RngBitGenerator), seeded from `key`'s bits: a
  step's draws from them cost a third of threefry's, whose rounds are a rolled loop on
  CPUs (each key draws once; none is split)."""
  return [jax.random.wrap_key_data(b, impl="rbg")
          for b in jax.random.bits(key, (n, 4), jnp.uint32)]


def make_step(w: ml_collections.ConfigDict, keep: np.ndarray, noise: np.ndarray,
              word_room: int, pair_room: int, total_steps: int, steps_per_call: int):
  """A chunk of steps_per_call SGD steps; each reads one [batch, length] id block."""
  window, k, vocab = w.window, w.negatives, len(keep)
  keep_p = jnp.asarray(keep)
  accept, alias = (jnp.asarray(a) for a in alias_table(noise))
  offsets = jnp.array([o for o in range(-window, window + 1) if o])

  def pairs_of(block, key_keep, key_win):
    """(centre, context) ids of the step's pairs, [pair_room] each (-1: none), and
    the kept and dropped counts."""
    rows = block.shape[0]
    valid = block >= 0
    kept = valid & (jax.random.uniform(key_keep, block.shape) < keep_p[jnp.maximum(block, 0)])
    # Close up each sentence's kept words, with `window` pads either side.
    where = jnp.where(kept, jnp.cumsum(kept, 1) - 1 + window, word_room + 2 * window)
    padded = jnp.full((rows, word_room + 2 * window), -1, jnp.int32)
    padded = padded.at[jnp.arange(rows)[:, None], where].set(block, mode="drop")
    centre = padded[:, window:window + word_room]                               # [R, C]
    context = jnp.stack([padded[:, window + o:window + o + word_room]
                         for o in range(-window, window + 1) if o], -1)          # [R, C, 2W]
    b = jax.random.randint(key_win, centre.shape, 1, window + 1)
    pair = ((centre[..., None] >= 0) & (context >= 0) & (jnp.abs(offsets) <= b[..., None]))
    # Close up the pairs into pair_room slots.
    pair = pair.reshape(-1)
    slot = jnp.where(pair, jnp.cumsum(pair) - 1, pair_room)
    put = lambda ids: jnp.full(pair_room, -1, jnp.int32).at[slot].set(ids.reshape(-1),
                                                                       mode="drop")
    n = pair.sum()
    dropped_words = jnp.sum(kept) - jnp.sum(centre >= 0)
    return (put(jnp.broadcast_to(centre[..., None], context.shape)), put(context),
            kept.sum() / jnp.maximum(valid.sum(), 1), dropped_words + n - jnp.minimum(n, pair_room))

  def one(state: SkipGramState, block):
    keys = _rbg_keys(jax.random.fold_in(state.rng, state.step), 4)
    centre, context, kept, dropped = pairs_of(block, keys[0], keys[1])
    draw = jax.random.randint(keys[2], (pair_room, k), 0, vocab)
    neg = jnp.where(jax.random.uniform(keys[3], (pair_room, k)) < accept[draw], draw, alias[draw])
    target = jnp.concatenate([context[:, None], neg], 1)                        # [P, 1+k]
    label = jnp.arange(k + 1) == 0
    is_pair = context >= 0
    # A negative that is the context word itself is skipped (the C tool redraws).
    mask = is_pair[:, None] & jnp.concatenate([jnp.ones((pair_room, 1), bool),
                                               neg != context[:, None]], 1)
    mask = mask.astype(jnp.float32)
    ci, ti = jnp.maximum(centre, 0), jnp.maximum(target, 0)
    h = state.params["input"][ci]                                               # [P, D]
    v = state.params["output"][ti]                                              # [P, 1+k, D]
    # Products summed by hand: XLA's CPU dots of [1, D] by [D, 1+k] per pair were slower.
    score = (h[:, None] * v).sum(-1)
    pairs = jnp.maximum(is_pair.sum(), 1)
    loss = jnp.sum(jax.nn.softplus(jnp.where(label, -score, score)) * mask) / pairs
    ok = jnp.isfinite(loss)
    # A non-finite loss (overflowing scores) changes nothing: its step's gradient is 0.
    g = jnp.where(ok, (jax.nn.sigmoid(score) - label) * mask, 0.0)              # dloss/dscore
    lr = w.learning_rate * state.lr_scale * jnp.maximum(
        w.min_learning_rate_ratio, 1.0 - state.step / total_steps)
    params = {"input": state.params["input"].at[ci].add(-lr * (g[..., None] * v).sum(1)),
              "output": state.params["output"].at[ti].add(-lr * g[..., None] * h[:, None])}
    new = state.replace(params=params, step=state.step + 1,
                        bad_step=jnp.where(ok | (state.bad_step >= 0), state.bad_step,
                                           state.step),
                        skipped=state.skipped + (~ok).astype(jnp.int32))
    return new, {"loss": loss, "learning_rate": lr, "pairs": is_pair.sum().astype(jnp.float32),
                 "kept": kept, "dropped": dropped.astype(jnp.float32)}

  def chunk(state: SkipGramState, batch):
    return jax.lax.scan(one, state, batch["tokens"].reshape(
        steps_per_call, -1, batch["tokens"].shape[-1]))

  return chunk


def make_init(vocab: int, dim: int, seed: int):
  def init() -> SkipGramState:
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    return SkipGramState(
        step=jnp.zeros((), jnp.int32),
        params={"input": jax.random.uniform(key_init, (vocab, dim), jnp.float32,
                                            -0.5 / dim, 0.5 / dim),
                "output": jnp.zeros((vocab, dim), jnp.float32)},
        rng=key_run, bad_step=jnp.full((), -1, jnp.int32), skipped=jnp.zeros((), jnp.int32),
        lr_scale=jnp.ones((), jnp.float32))
  return init


def validate(config: ml_collections.ConfigDict) -> None:
  w = config.word2vec
  for name in ("dim", "window", "negatives", "sentence_length"):
    if w[name] < 1:
      raise UserError(f"config.word2vec.{name} must be >= 1, got {w[name]}")
  if w.learning_rate <= 0 or not 0 <= w.min_learning_rate_ratio <= 1 or w.sample < 0:
    raise UserError("config.word2vec needs learning_rate > 0, 0 <= min_learning_rate_ratio "
                    "<= 1 and sample >= 0")
  if config.batch_size < 1 or config.steps_per_call < 1:
    raise UserError("config.batch_size and config.steps_per_call must be >= 1")


def train_length(config: ml_collections.ConfigDict, num_sentences: int) -> tuple[int, int]:
  """(steps per epoch, total steps), total a whole number of chunks (rounded up)."""
  per_epoch = max(1, num_sentences // config.batch_size)
  total = (int(config.num_train_steps) if config.num_train_steps > 0
           else max(1, int(round(config.num_epochs * per_epoch))))
  s = config.steps_per_call
  return per_epoch, -(-total // s) * s


def evaluate_vectors(config: ml_collections.ConfigDict, vectors: np.ndarray,
                     words: list[str]) -> dict[str, float]:
  """Analogy accuracy (restricted vocabulary) and WordSim-353 Spearman."""
  e = config.eval
  return {**word_vectors.analogy(vectors, words, e.analogy_path, e.analogy_restrict),
          **word_vectors.wordsim(vectors, words, e.wordsim_path)}


def run(config: ml_collections.ConfigDict, workdir: str,
        corpus: text_corpus.Corpus) -> loop.Outcome:
  """Trains (or resumes) in workdir; saves vectors.txt (word2vec text format)."""
  validate(config)
  w = config.word2vec
  blocks = sentences(corpus.tokens, w.sentence_length)
  if len(blocks) < config.batch_size:
    raise UserError(f"config.batch_size={config.batch_size} sentences exceeds the corpus's "
                    f"{len(blocks)} sentences of {w.sentence_length} words")
  per_epoch, total = train_length(config, len(blocks))
  keep = text_corpus.keep_probability(corpus.counts, w.sample)
  noise = text_corpus.noise_distribution(corpus.counts, w.noise_power)
  word_room, pair_room = capacities(blocks, keep, w, config.batch_size)
  rows = config.batch_size * config.steps_per_call  # sentences a call

  def batches(start: int):
    for s in range(start, total, config.steps_per_call):
      yield {"tokens": chunk_sentences(blocks, s * config.batch_size, rows)}

  vectors = lambda state: np.asarray(jax.device_get(state.params["input"]))

  def evaluate(state) -> dict[str, float]:
    return evaluate_vectors(config, vectors(state), corpus.words)

  def results(test: dict, last_train: dict, state) -> dict[str, Any]:
    return {**test, "final_train_loss": last_train.get("loss"),
            "vocab_size": corpus.vocab_size, "corpus_words": int(len(corpus.tokens)),
            "epochs": total * config.batch_size / len(blocks),
            "nearest_neighbours": word_vectors.nearest(vectors(state), corpus.words,
                                                       config.eval.neighbours)}

  def after(state, res) -> None:
    word_vectors.save_text(os.path.join(workdir, "vectors.txt"), vectors(state), corpus.words)

  trainer = loop.Trainer(
      name=f"skip-gram d={w.dim} k={w.negatives}",
      init=make_init(corpus.vocab_size, w.dim, config.seed),
      step=make_step(w, keep, noise, word_room, pair_room, total, config.steps_per_call),
      batches=batches, evaluate=evaluate, results=results, after=after,
      progress={"loss": "loss"}, examples_per_step=config.batch_size * w.sentence_length,
      steps_per_call=config.steps_per_call)
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=1, model=1)))
  out = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=per_epoch,
                 total_steps=total)
  # The name for the throughput: corpus words (before subsampling) a second.
  out.results["words_per_second"] = out.results.get("examples_per_second")
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), out.results)
  return out
