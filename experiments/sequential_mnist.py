"""Handwriting read as a sequence: MNIST digits fed to recurrent nets one pixel or one
row at a time.

Command:  python -m experiments.sequential_mnist --config.data.manual_dir=../shared/data
          (:lstm_rows the row-by-row LSTM; :smoke seconds on the embedded digits)
Nets:     hierarchical (default): a lower LSTM reads the 28 pixels of each row (one a
          step), its last output summarises the row, and an upper LSTM reads the 28 row
          summaries; a linear head on the upper LSTM's last output (models/rnn.py
          `hierarchical_rnn`; the LSTMs use the hand-written backward of lstm_scan.py).
          32 lower and 128 upper units, 88,074 params. lstm_rows: one LSTM of 128 units
          reads the image row by row (28 steps of 28 pixels).
Training: the supervised trainer on the loop driver; Adam 2e-3, cosine to 0, warm-up
          0.2 epoch, gradient clipping at 1, batch 128, 2 epochs.
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32, shared with
          many other jobs (load average 18-23): every wall time is an upper bound.

Published: Keras's mnist_hierarchical_rnn example (128-unit LSTMs at both levels,
RMSprop, 5 epochs): 98.64% test accuracy; target here >= 98.6% within 5 epochs.
Results (seed 0, the 10,000 MNIST test digits):
  hierarchical: 97.69% after 2 epochs (95.70% after the first); 2,586 s wall (2,264 s
          training, 55 examples/s), load average 18-23. Target missed: the run is
          smaller than Keras's (32 lower units, not 128) and shorter (2 epochs, not 5).
          The lower LSTM runs 28 x as many sequences as the upper one (3,584 rows of 28
          pixels a batch); at 128 lower units a step took 10 s under this load, 80 min an
          epoch, so the Keras shape was not trainable here in the time.
  lstm_rows (:lstm_rows): 97.85% after 2 epochs (96.61% after the first); 708 s wall
          (446 s training, 297 examples/s), load average 18-19.
The two nets end within 0.2% of each other (one seed each: not a measured difference);
the row LSTM cost a fifth of the time. Not run: the Keras shape (128 + 128 units,
RMSprop), 5 epochs, several seeds.
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
  c.num_epochs = 2.0  # what this shared CPU allowed; Keras's example trains 5
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
