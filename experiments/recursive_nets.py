"""Recursive networks (Socher et al.): (a) a Tree-LSTM composing vectors up the given
tree of ListOps expressions (Nangia & Bowman 2018) beside an LSTM reading the same
expressions flat; (b) a semi-supervised recursive autoencoder (Socher et al. 2011) that
builds its own tree greedily by reconstruction error, on the movie-review sentences
(Pang & Lee's MR), beside a bag-of-words logistic regression.

Command:  python -m experiments.recursive_nets --config.data.manual_dir=../shared/data
          (--config=experiments/recursive_nets.py:smoke: about a minute)
Data:     ListOps from data/listops.py with the paper's generator settings (an argument
          is an operator with probability 0.25, else a digit; 2-5 arguments; depth <= 20;
          the root an operator), 90,000 training and 10,000 test expressions from seed 0;
          expressions over 100 tokens are redrawn (8% of draws; the published set is not
          cut this way), and the rest are kept in length buckets 16/32/64/100 so a batch
          scans only as many steps as its bucket's width. Each expression's tree is the
          paper's binarisation, [OP a b ] = (((OP a) b) ]). MR: rt-polarity.{pos,neg}
          from --config.data.manual_dir, 10 seeded folds (movie_review.folds), the
          vocabulary of each fold's training sentences (others unknown), sentences cut
          at 48 tokens (longest 59; 99% are <= 46).
Nets:     listops_tree: a binary Tree-LSTM (Tai et al. 2015; a forget gate per child),
          64 units, 64-d token embeddings, the root through a 64-unit ReLU layer to 10
          classes (59,530 params), one lax.scan over the post-order node buffer per batch
          (models/recursive.py). listops_lstm: the house LSTM (models/rnn.py, `rnn`) on
          the same tokens, 64 units, 64-d embeddings, the last state to 10 classes.
          mr_rae: Socher et al. 2011's semi-supervised RAE, 50-d unit-length word vectors
          (random init), parent = tanh(W[c1;c2]+b) scaled to unit length, greedy merges
          by the count-weighted reconstruction error, batched (one scan over the merge
          steps, two new candidate parents per sentence and step); objective 0.2 *
          reconstruction + 0.8 * cross-entropy (of the sentence's [root; mean node]
          softmax and of a softmax on every node), L2 1e-5. mr_bow_logreg: binary
          bag-of-words logistic regression (scikit-learn, C = 1, lbfgs).
Training: the supervised trainer on the loop driver (ListOps) and a loop-driver trainer
          of the RAE objective; Adam, gradient norm clipped at 5; ListOps lr 3e-3,
          batch 128, 20,000 steps each (28 epochs; on a CPU --config.tree.steps and
          --config.lstm.steps shorten them); RAE lr 1e-2, batch 256, 250 steps (6.7
          epochs of a fold) on each of the 10 folds (--config.mr.rae_folds=N: the
          first N). (A first RAE run with lr 2e-3, word
          vectors drawn N(0, 1) and 150 steps stayed at chance, 51.1% on fold 0: at
          unit length such large vectors turn too slowly; they are now drawn N(0, 0.1).)
Outputs:  results.json `runs`: listops_tree, listops_lstm, mr_rae, mr_bow_logreg, each
          with test_accuracy (MR: the mean over the folds run, with fold_accuracies
          and folds_run).
Hardware and results (seed 0; test accuracy; published beside):

  run            ours                                             published
  listops_tree   0.964 after 20,000 steps (>= 0.95 from step      98.7% (tree model,
                 8,000 on; best 0.973); one NVIDIA H200, float32,  true trees)
                 69 s training, 103 s the process
  listops_lstm   0.743 after 20,000 steps (0.637 at 2,000); the   71.5% (LSTM)
                 same H200, 64 s training
  mr_rae         0.734, the mean of the 10 folds (0.718-0.758);   77.7% (Socher et al.
                 the same H200, 133 s training, 219 s the process  2011)
  mr_bow_logreg  0.763, the mean of the 10 folds (0.743-0.781);   (a baseline of ours)
                 2 cores of an AMD EPYC CPU, 11 min wall (89 s CPU)

Targets: tree >= 95%: MET (96.4%); tree above our LSTM after the same steps: MET (96.4%
against 74.3%). The earlier CPU runs (2 cores, `nice -n 5`, load average 17-26) got
2,000 steps each: tree 76.4% (40 min wall with the data generation), LSTM 62.9% (12
min); the tree was still rising, which the 20,000-step run confirmed. The RAE falls
below the published 77.7% and below the bag of words (76.3%): with random word vectors
(Socher et al. used pre-trained ones) and 1M parameters on 9.6k sentences it overfits
(train accuracy 96% on fold 0). Not run: more seeds, pre-trained word vectors,
expressions over 100 tokens, the RAE's paper-length training. The GPU runs were the
commands above with --config.dtype=float32 --config.eval_every_steps=1000
(benchmarks/results/recursive_nets_h200.json has their curves).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from deeplearn_jax import cli, configs
from deeplearn_jax.data import Dataset, listops, movie_review
from deeplearn_jax.data.buckets import Buckets, split_by_length
from deeplearn_jax.data.pipeline import ArraySplit
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.recursive import RecursiveAutoencoder
from deeplearn_jax.train import inputs, losses, loop, nan_guard, optimizers, supervised, sweep
from deeplearn_jax.train.state import make_init
from deeplearn_jax.train.steps import make_eval_step

PARTS = ("listops_tree", "listops_lstm", "mr_rae", "mr_bow_logreg")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = supervised.base_config()
  c.data.name = "listops"          # ListOps is generated; MR is read from data.manual_dir
  c.data.manual_dir = "../shared/data"
  c.parts = PARTS
  c.part = ""                      # a child run's part (set per child)
  c.model = ml_collections.ConfigDict(dict(name="tree"))
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.grad_clip_norm = 5.0
  c.batch_size = 128
  c.eval_batch_size = 500
  c.log_every_steps = 100
  c.eval_every_steps = 500
  c.eval_every_epochs = -1.0
  c.checkpoint_every_steps = 250
  c.checkpoint_every_epochs = -1.0
  # The paper's generator settings; expressions longer than max_length tokens redrawn.
  c.listops = ml_collections.ConfigDict(dict(
      num_train=90000, num_test=10000, max_length=100, max_depth=20, max_args=5,
      value_p=0.25, widths=(16, 32, 64)))
  c.tree = ml_collections.ConfigDict(dict(
      model=dict(name="tree", vocab_size=len(listops.VOCAB), embed_dim=64, hidden=64,
                 composition="tree_lstm", mlp_hidden=64),
      steps=20000))
  c.lstm = ml_collections.ConfigDict(dict(
      model=dict(name="rnn", cell="lstm", hidden=64, vocab_size=len(listops.VOCAB),
                 embed_dim=64, readout="last"),
      steps=20000))
  c.mr = ml_collections.ConfigDict(dict(
      folds=10,          # cross-validation folds (the bag of words runs them all)
      rae_folds=10,      # folds the RAE runs (0..rae_folds-1)
      dim=50, alpha=0.2,  # Socher et al. 2011: 50-d vectors, reconstruction weight 0.2
      l2=1e-5, steps=250, learning_rate=1e-2, batch_size=256,
      max_length=48, widths=(16, 32),
      bow_c=1.0))        # the logistic regression's inverse regularisation
  if "smoke" in modifiers:
    c.listops.num_train, c.listops.num_test = 1200, 300
    c.listops.max_length, c.listops.widths = 32, (16,)
    c.tree.model.update(embed_dim=32, hidden=32, mlp_hidden=32)
    c.lstm.model.update(embed_dim=32, hidden=32)
    c.tree.steps = c.lstm.steps = 150
    c.mr.update(folds=3, rae_folds=1, steps=60, dim=16, max_length=24, widths=(12,),
                batch_size=64)
    c.log_every_steps = 50
    c.eval_every_steps = -1
    c.checkpoint_every_steps = -1
    c.progress = False
  c.lock()
  return c


def _validate(config) -> None:
  for p in config.parts:
    if p not in PARTS:
      raise UserError(f"config.parts: unknown part {p!r}; known: {', '.join(PARTS)}")
  m = config.mr
  if not 2 <= m.folds or not 0 <= m.rae_folds <= m.folds:
    raise UserError(f"config.mr needs folds >= 2 and 0 <= rae_folds <= folds, got "
                    f"{m.folds}, {m.rae_folds}")


def children(config) -> dict[str, ml_collections.ConfigDict]:
  _validate(config)
  out = {}
  for part in config.parts:
    c = ml_collections.ConfigDict(config.to_dict())
    c.part, c.parts = part, (part,)  # a child resumes whatever parts its parent runs
    if part in ("listops_tree", "listops_lstm"):
      block = config.tree if part == "listops_tree" else config.lstm
      c.model = ml_collections.ConfigDict(block.model.to_dict())
      c.num_train_steps = block.steps
    elif part == "mr_rae":
      c.model = ml_collections.ConfigDict(dict(name="rae"))
      c.num_train_steps = config.mr.steps
      c.optimizer.learning_rate = config.mr.learning_rate
      c.batch_size = config.mr.batch_size
      c.l2 = config.mr.l2
    c.lock()
    out[part] = c
  return out


# -- ListOps -----------------------------------------------------------------------------

def _listops(config, layout: str) -> Dataset:
  lo = config.listops
  return listops.dataset(lo.num_train, lo.num_test, config.seed, lo.max_length, layout,
                         lo.max_depth, lo.max_args, lo.value_p, tuple(lo.widths))


def train_listops(config, workdir: str) -> dict:
  ds = _listops(config, "tree" if config.part == "listops_tree" else "flat")
  res = supervised.run(config, workdir, dataset=ds).results
  return {k: res.get(k) for k in ("test_accuracy", "final_train_loss", "num_params",
                                  "train_seconds")}


# -- MR: the recursive autoencoder and the bag of words ----------------------------------

def _mr_split(sentences, labels, vocab, widths, max_length) -> Buckets:
  cut = [s[:max_length] for s in sentences]
  lengths = np.asarray([len(s) for s in cut])
  widths = tuple(sorted({w for w in widths if w < max_length} | {max_length}))
  parts = []
  for w, idx in zip(widths, split_by_length(lengths, widths)):
    rows = movie_review.encode([cut[i] for i in idx], vocab, w)
    parts.append(ArraySplit({**rows, "label": labels[idx]}))
  return Buckets(parts)


def rae_train_step(model, tx, config):
  """Socher et al. 2011's semi-supervised objective: alpha * reconstruction error of the
  merges + (1 - alpha) * cross-entropy (of the sentence and of every node), + L2."""
  alpha = config.mr.alpha

  def loss_fn(params, batch):
    out = model.apply({"params": params}, batch["input"], lengths=batch["lengths"],
                      details=True)
    y = batch["label"]
    v = out["valid"].astype(jnp.float32)
    per = lambda a: jnp.mean((a * v).sum(1) / v.sum(1).clip(1))
    ce = losses.cross_entropy(out["logits"], y).mean()
    node_ce = per(losses.cross_entropy(out["node_logits"], jnp.broadcast_to(y[:, None],
                                                                            v.shape)))
    rec = per(out["errors"])
    total = alpha * rec + (1 - alpha) * 0.5 * (ce + node_ce)
    total = total + config.l2 * losses.l2_penalty(params)
    acc = jnp.mean(jnp.argmax(out["logits"], -1) == y)
    return total, {"loss": ce, "reconstruction": rec, "node_loss": node_ce, "accuracy": acc}

  def step(state, batch):
    (total, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: u * state.lr_scale, updates)
    updated = state.replace(params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state)
    ok = jnp.isfinite(total)
    return nan_guard.guarded_update(state, updated, ok), {
        **m, "total_loss": total, "finite": ok.astype(jnp.float32)}

  return step


def train_rae_fold(config, workdir: str, sentences, labels, fold_of, fold: int) -> dict:
  """One fold of the RAE on the loop driver (its own objective, so not supervised.run;
  the supervised eval step reads its sentence logits)."""
  m = config.mr
  tr, te = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
  vocab = movie_review.vocabulary([sentences[i] for i in tr])
  split = lambda idx: _mr_split([sentences[i] for i in idx], labels[idx], vocab, m.widths,
                                m.max_length)
  ds = Dataset(f"mr_fold{fold}", split(tr), split(te), 2, listops.TokenBatch())
  mesh, ds, steps_per_epoch, total = inputs.checked(config, ds)
  model = RecursiveAutoencoder(2, len(vocab) + 2, m.dim)
  tx, _ = optimizers.create(config.optimizer, steps_per_epoch, total)
  eval_step = jax.jit(make_eval_step(model, 2))

  def evaluate(state):
    return inputs.eval_means(lambda b, _: eval_step(state, b), ds.test, config, ds, mesh)

  def results(test, last, state):
    del state
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "final_train_loss": last.get("loss", float("nan"))}

  trainer = loop.Trainer(
      name=f"rae on MR fold {fold}", init=make_init(model, tx, ds.input_shape, config.seed),
      step=rae_train_step(model, tx, config), evaluate=evaluate, results=results,
      batches=lambda start: inputs.train_batches(config, ds, start, total),
      progress={"loss": "loss", "rec": "reconstruction"}, examples_per_step=config.batch_size)
  return loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=steps_per_epoch,
                  total_steps=total).results


def train_rae(config, workdir: str) -> dict:
  sentences, labels = movie_review.read(config.data.manual_dir)
  fold_of = movie_review.folds(len(labels), config.mr.folds, config.seed)
  folds = [train_rae_fold(config, os.path.join(workdir, f"fold{f}"), sentences, labels,
                          fold_of, f) for f in range(config.mr.rae_folds)]
  acc = [f["test_accuracy"] for f in folds]
  return {"test_accuracy": float(np.mean(acc)), "fold_accuracies": acc,
          "folds_run": len(folds), "folds": config.mr.folds,
          "train_seconds": sum(f.get("train_seconds") or 0.0 for f in folds)}


def train_bow(config, workdir: str) -> dict:
  """Binary bag-of-words logistic regression (scikit-learn) on every fold: a reference,
  not a net, so it needs no loop driver."""
  del workdir
  from sklearn.feature_extraction.text import CountVectorizer
  from sklearn.linear_model import LogisticRegression
  sentences, labels = movie_review.read(config.data.manual_dir)
  fold_of = movie_review.folds(len(labels), config.mr.folds, config.seed)
  text = np.asarray([" ".join(s) for s in sentences], dtype=object)
  acc = []
  for f in range(config.mr.folds):
    tr, te = fold_of != f, fold_of == f
    vec = CountVectorizer(binary=True, token_pattern=r"\S+")
    clf = LogisticRegression(C=config.mr.bow_c, max_iter=2000)
    clf.fit(vec.fit_transform(text[tr]), labels[tr])
    acc.append(float((clf.predict(vec.transform(text[te])) == labels[te]).mean()))
  return {"test_accuracy": float(np.mean(acc)), "fold_accuracies": acc, "folds_run": len(acc),
          "folds": config.mr.folds}


def train_one(config, workdir: str, dataset) -> dict:
  del dataset  # each part makes its own data
  if config.part.startswith("listops"):
    return train_listops(config, workdir)
  return train_rae(config, workdir) if config.part == "mr_rae" else train_bow(config, workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  kids = children(config)
  if any(p.startswith("mr") for p in config.parts):  # missing data: fail before training
    movie_review.read(config.data.manual_dir)
  return sweep.run(config, workdir, kids, train_one, shared_data=False)


if __name__ == "__main__":
  cli.run(__file__, "recursive_nets", train_and_evaluate)
