"""Handwriting read as a sequence: MNIST digits fed to recurrent nets one pixel or one
row at a time.

Command:  python -m experiments.sequential_mnist --config.data.manual_dir=../shared/data
          (:lstm_rows the row-by-row LSTM; :smoke seconds on the embedded digits)
Nets:     hierarchical (default): a lower LSTM reads the 28 pixels of each row (one a
          step), its last output summarises the row, and an upper LSTM reads the 28 row
          summaries; a linear head on the upper LSTM's last output (models/rnn.py
          `hierarchical_rnn`; the LSTMs use the hand-written backward of lstm_scan.py).
          64 lower and 128 upper units, 117,002 params. lstm_rows: one LSTM of 128 units
          reads the image row by row (28 steps of 28 pixels).
Training: the supervised trainer on the loop driver; Adam 2e-3, cosine to 0, warm-up
          0.2 epoch, gradient clipping at 1, batch 128; 5 epochs (lstm_rows 2).
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32. The
          hierarchical run on the quiet machine; the lstm_rows run and the earlier
          hierarchical one shared it with many other jobs (load average 18-23).

Published: Keras's mnist_hierarchical_rnn example (128-unit LSTMs at both levels,
RMSprop, 5 epochs): 98.64% test accuracy; target here >= 98.6% within 5 epochs.
Results (seed 0, the 10,000 MNIST test digits):
  hierarchical: 98.86% after 5 epochs: target met (96.16, 97.78, 98.01, 98.73% after
          epochs 1-4; final train loss 0.023); 17.4 min wall (998 s training, 312
          examples/s), quiet machine. Earlier, at 32 lower units and 2 epochs under
          load: 97.69%. Keras's 128 lower units: not run.
  lstm_rows (:lstm_rows): 97.85% after 2 epochs (96.61% after the first); 708 s wall
          (446 s training, 297 examples/s), load average 18-19.
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
    # lower LSTM runs 28 x the sequences of the upper one: 64 lower units here, 5
    # epochs in 17 min on the quiet 2 cores.
    c.model = ml_collections.ConfigDict(dict(name="hierarchical_rnn", cell="lstm",
                                             hidden=64, upper_hidden=128, unroll=2))
  else:
    # One LSTM reads the image row by row: 28 steps of 28 pixels.
    c.model = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=128,
                                             readout="last", unroll=4))
  c.batch_size = 128
  c.num_epochs = 5.0 if name == "hierarchical" else 2.0  # Keras's example trains 5
  c.eval_every_epochs = 1.0
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
