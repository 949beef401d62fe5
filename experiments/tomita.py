"""Tomita grammars: a second-order RNN (Giles et al. 1992) and an Elman RNN of about the
same size learn each of the seven Tomita (1982) regular languages from strings of
length <= 10 and are tested on strings of length 11-30 (do they generalise to longer
strings, i.e. have they learnt the automaton?).

Command:  python -m experiments.tomita   (--config=experiments/tomita.py:smoke: seconds)
Data:     deeplearn_jax/data/tomita.py: per grammar, 2,048 training strings of length
          0-10 and 2,000 test strings of length 11-30, half accepted and half rejected
          (each label's length uniform over the lengths that have such strings, the
          string uniform among them; grammars 1 and 2 have one positive per length, so
          their positives repeat), seed 0. One-hot inputs, padded; `lengths` masks the
          scan, and the head reads the state after each string's last symbol.
Nets:     second-order RNN, 8 sigmoid units (s'_i = sigmoid(sum_jk W_ijk s_j x_k + b_i),
          154 parameters with the 2-way head); Elman RNN, 10 tanh units (152 parameters).
Training: the supervised trainer on the loop driver, cross-entropy, Adam 0.01, batch 64,
          3,000 steps, one child run per (net, grammar) through train/sweep.py.
Outputs:  results.json `runs`: second_order_g1..g7 and elman_g1..g7, each with
          test_accuracy on the long strings (chance 0.5), final_train_loss,
          train_accuracy (on the short strings, at the end); `mean_test_accuracy` per net.
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32. Wall time
          11 min 45 s for all 14 runs (312 s CPU); other jobs (this branch's tests among
          them) shared the 2 cores, load average 6.6 at the start and 11-13 during, so the
          time is an upper bound.

Result (seed 0, test strings of length 11-30, accuracy; train accuracy was 1.000 on the
short strings for all 14 runs):

  grammar                               second-order (154 p)   Elman (152 p)
  1  1*                                 1.000                  1.000
  2  (10)*                              1.000                  1.000
  3  no odd 1-run then odd 0-run        1.000                  0.9995
  4  no 000                             1.000                  0.9995
  5  even #0 and even #1                1.000                  0.991
  6  #0 - #1 = 0 mod 3                  1.000                  1.000
  7  0*1*0*1*                           0.999                  1.000
  mean                                  0.9999                 0.9986

Published: Giles et al. 1992 train second-order nets on short Tomita strings and find
that they generalise to longer ones (and that a DFA extracted from the hidden state
often does so perfectly). Ours: with balanced training sets of 2,048 strings of length
<= 10 both nets, of about 150 parameters, reach >= 99% on strings up to three times as
long for every grammar; the second-order net is perfect on six of seven and misses 2 of
2,000 strings on grammar 7; the Elman net's worst is grammar 5 (parity, 99.1%). One seed
only: the small gap between the nets is not a measured difference. Not run: several
seeds, Giles's smaller training sets and their incremental training, DFA extraction,
and strings longer than 30.
"""

import jax
import ml_collections

from deeplearn_jax import cli, configs
from deeplearn_jax.data import tomita
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.rnn_cells import CELLS
from deeplearn_jax.train import inputs, supervised, sweep
from deeplearn_jax.train.steps import make_eval_step


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = supervised.base_config()
  c.data.name = "tomita"          # the data come from the `tomita` block, not data.load
  c.model = ml_collections.ConfigDict(dict(name="rnn", cell="second_order", hidden=8,
                                           readout="last"))
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 0.01
  c.batch_size = 64
  c.eval_batch_size = 400
  c.num_train_steps = 3000
  c.log_every_steps = 100
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = -1
  c.checkpoint_every_epochs = -1.0  # only at the end
  c.tomita = ml_collections.ConfigDict(dict(
      grammars=(1, 2, 3, 4, 5, 6, 7),
      cells=dict(second_order=8, elman=10),  # cell -> hidden units (about 150 params each)
      grammar=1,                             # a child run's grammar (set per child)
      train_lengths=(0, 10), test_lengths=(11, 30),
      num_train=2048, num_test=2000,
  ))
  if "smoke" in modifiers:
    c.tomita.grammars = (1, 4)
    c.tomita.num_train, c.tomita.num_test = 256, 400
    c.num_train_steps = 60
    c.log_every_steps = 20
    c.eval_every_steps = 30
    c.progress = False
  c.lock()
  return c


def _validate(config: ml_collections.ConfigDict) -> None:
  t = config.tomita
  for g in t.grammars:
    tomita.check_grammar(g)
  for cell in t.cells:
    if cell not in CELLS:
      raise UserError(f"config.tomita.cells: unknown cell {cell!r}; known: {', '.join(CELLS)}")
  for name in ("train_lengths", "test_lengths"):
    lo, hi = t[name]
    if not 0 <= lo <= hi or hi < 1:
      raise UserError(f"config.tomita.{name} must be (min, max) with 0 <= min <= max and "
                      f"max >= 1, got {tuple(t[name])}")


def _dataset(config: ml_collections.ConfigDict):
  t = config.tomita
  return tomita.dataset(t.grammar, tuple(t.train_lengths), tuple(t.test_lengths),
                        t.num_train, t.num_test, config.seed)


def children(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """One supervised config per (cell, grammar), named like 'second_order_g3'."""
  _validate(config)
  out = {}
  for cell, hidden in config.tomita.cells.items():
    for g in config.tomita.grammars:
      c = ml_collections.ConfigDict(config.to_dict())
      c.model.cell, c.model.hidden, c.tomita.grammar = cell, int(hidden), int(g)
      c.lock()
      out[f"{cell}_g{g}"] = c
  return out


def train_one(config: ml_collections.ConfigDict, workdir: str, dataset) -> dict:
  """One (cell, grammar) run: its own strings, then accuracy on the long test strings
  and on the short training strings."""
  del dataset  # each grammar has its own strings
  ds = _dataset(config)
  out = supervised.run(config, workdir, dataset=ds)
  eval_step = jax.jit(make_eval_step(out.model, 2))
  mesh = inputs.checked(config, ds)[0]
  train = inputs.eval_means(lambda b, _: eval_step(out.state, b), ds.train, config, ds, mesh)
  res = out.results
  return {"test_accuracy": res["test_accuracy"], "final_train_loss": res["final_train_loss"],
          "train_accuracy": train["accuracy"], "num_params": res["num_params"],
          "train_seconds": res.get("train_seconds")}


def summarize(runs: dict[str, dict]) -> dict:
  cells = sorted({name.rsplit("_g", 1)[0] for name in runs})
  return {"mean_test_accuracy": {
      cell: sum(r["test_accuracy"] for n, r in runs.items() if n.rsplit("_g", 1)[0] == cell)
      / sum(1 for n in runs if n.rsplit("_g", 1)[0] == cell) for cell in cells}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  kids = children(config)
  # Each child's grammar makes its own strings: the sweep shares no data.
  return sweep.run(config, workdir, kids, train_one, shared_data=False, summarize=summarize)


if __name__ == "__main__":
  cli.run(__file__, "tomita", train_and_evaluate)
