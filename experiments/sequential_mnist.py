"""Handwriting read as a sequence: MNIST digits fed to recurrent nets one pixel or one
row at a time.

Command:  python -m experiments.sequential_mnist --config.data.manual_dir=../shared/data
          (:lstm_rows the row-by-row LSTM; :smoke seconds on the embedded digits)
RESULTS_PLACEHOLDER
"""

import ml_collections

from deeplearn_jax import cli, configs
from deeplearn_jax.train import supervised

VARIANTS = ("hierarchical", "lstm_rows")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  name, modifiers = configs.parse_variant(variant, VARIANTS, default="hierarchical")
  c = supervised.base_config()
  c.data.name = "mnist"
  c.data.image_size = 28
  if name == "hierarchical":
    # A lower LSTM reads the 28 pixels of each row; an upper one reads the 28 row
    # summaries. Keras's mnist_hierarchical_rnn has 128 units at both levels; the
    # lower LSTM runs 28 x the sequences of the upper one, and at 128 units it took
    # 10 s a step of 128 on the loaded 2-core CPU (80 min an epoch): 32 lower units.
    c.model = ml_collections.ConfigDict(dict(name="hierarchical_rnn", cell="lstm",
                                             hidden=32, upper_hidden=128, unroll=2))
  else:
    # One LSTM reads the image row by row: 28 steps of 28 pixels.
    c.model = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=128,
                                             readout="last", unroll=4))
  c.batch_size = 128
  c.num_epochs = 3.0 if name == "hierarchical" else 5.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_epochs = 0.2
  c.optimizer.grad_clip_norm = 1.0
  if "smoke" in modifiers:
    configs.make_smoke(c, steps=60)
    c.model.hidden = 32
    if name == "hierarchical":
      c.model.upper_hidden = 32
    c.eval_every_steps = 30
  c.lock()
  return c


train_and_evaluate = supervised.train_and_evaluate

if __name__ == "__main__":
  cli.run(__file__, "sequential_mnist", train_and_evaluate)
