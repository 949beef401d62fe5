"""Deep fully connected nets on MNIST: SGD, L2, L1, dropout and max-norm
(Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014).

Command:  python -m experiments.mnist_dnn --config=experiments/mnist_dnn.py:VARIANT \
              --config.data.manual_dir=../shared/data
VARIANT:  plain | l2 | l1 | dropout | dropout_maxnorm   (append ",smoke" for a seconds-long run)
Net:      784-1024-1024-1024-10 ReLU (2.91M params), batch 100, SGD momentum 0.9 with
          cosine decay, 50 epochs; dropout keeps 80% of inputs and 50% of hidden units.
          dropout_maxnorm as Srivastava et al.'s appendix: max-norm 3.5, momentum rising
          from 0.5 to 0.95 over the first 50 epochs, learning rate 0.025 with cosine
          decay, 200 epochs.
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32; the machine
          also ran the test suite during the 50-epoch runs, so their wall times are
          upper bounds.

Result (real MNIST test set, seed 0), beside Srivastava et al. 2014 (tables 2 and 9,
nets trained up to 3,000 epochs):

  variant          ours     published                         wall
  plain            1.42%    1.60% (standard net)              731 s
  l2 (1e-4)        1.45%    1.62% (L2)                        697 s
  l1 (1e-5)        1.51%    1.60% (L2 + L1)                   628 s
  dropout          1.27%    1.25% (dropout, ReLU)             851 s
  dropout_maxnorm  1.08%    1.06% (dropout + max-norm)        65 min (64 min training)

Over 3 seeds (0, 1, 2) on one H200 (float32 matmuls, --config.steps_per_call=100, six
runs sharing the GPU, 120 s training each): plain 1.43 +- 0.04% (1.45, 1.45, 1.38),
dropout 1.30 +- 0.06% (1.36, 1.31, 1.24). A later lease (--config.data.on_device=True,
15 runs sharing the GPU, about 250 s each): l2 1.42 +- 0.06% (1.46, 1.35, 1.45), l1
1.44 +- 0.07% (1.48, 1.36, 1.47); dropout_maxnorm's 3 seeds stopped at epoch 134-137
of 200 (1.08, 1.15, 1.16% then). Seed 1 on the CPU (2026-11-27, chunks of 100 steps,
data on the device): 1.14% (1.28% at epoch 100, 1.14% at 150; lowest 1.08% at 156).
Seed 2 not yet run to the end, so the 3-seed spread is not measured.

Dropout beats the plain net. dropout_maxnorm beats the 50-epoch dropout row, but not
through max-norm: the radius 3.5 never binds at this learning rate. The same command with
--config.max_norm=0 (seed 0, 2026-11-27) followed the same curve to the digit (1.92 /
2.04 / 1.20 / 1.14% at epochs 25 / 50 / 100 / 150) and ended at 1.08%; seed 1's largest
incoming-weight norm at the end is 3.31 (hidden layers at most 2.54). Showing the
paper's point needs a rate large enough for the constraint to act. dropout_maxnorm's
test error along the run: 1.92% at epoch 25, 2.04% at 50 (momentum now 0.95), 1.20%
at 100, 1.14% at 150, 1.11% at 175, 1.08% at 200 (train loss 0.0098). 15.2 s an
epoch alone, so about 51 min for the 200; this run's first 25 minutes shared the
cores with a niced run and 7 more with tests. Why the 50-epoch max-norm run (1.58%,
learning rate 0.1 at momentum 0.9) fell short: too short for its noise to anneal.
The same 200-epoch recipe at learning rate 0.1 (4x) collapsed as momentum reached
0.95: 1.53% at epoch 34, 4.8% at 49, 55% at 79 (stopped): the step
lr / (1 - momentum) had grown to 1.7.
"""

import ml_collections

from deeplearn_jax import cli, configs
from deeplearn_jax.train import supervised

VARIANTS = ("plain", "l2", "l1", "dropout", "dropout_maxnorm")


def get_config(variant: str = "dropout") -> ml_collections.ConfigDict:
  name, modifiers = configs.parse_variant(variant, VARIANTS, default="dropout")
  c = supervised.base_config()
  c.variant = name
  c.data.name = "mnist"
  c.model = ml_collections.ConfigDict(dict(
      name="mlp", hidden=(1024, 1024, 1024), activation="relu",
      dropout_input=0.0, dropout_hidden=0.0))
  c.batch_size = 100
  c.num_epochs = 50.0
  c.optimizer.name = "momentum"
  c.optimizer.learning_rate = 0.05
  c.optimizer.momentum = 0.9
  c.optimizer.schedule = "cosine"
  if name == "l2":
    c.l2 = 1e-4
  elif name == "l1":
    c.l1 = 1e-5
  elif name.startswith("dropout"):
    # Srivastava et al.: keep 80% of inputs and 50% of hidden units.
    c.model.dropout_input, c.model.dropout_hidden = 0.2, 0.5
  if name == "dropout_maxnorm":
    # Srivastava et al.'s recipe (appendix A and B.1): max-norm lets a larger learning
    # rate run longer; momentum rises from 0.5 (the early steps are big) to 0.95.
    c.max_norm = 3.5
    c.num_epochs = 200.0
    c.optimizer.learning_rate = 0.025
    c.optimizer.momentum_initial, c.optimizer.momentum = 0.5, 0.95
    c.optimizer.momentum_ramp_epochs = 50.0
  if "smoke" in modifiers:
    configs.make_smoke(c, steps=80)
    c.model.hidden = (64, 64)
    if name == "dropout_maxnorm":  # 80 steps: a shorter ramp, a larger rate
      c.optimizer.momentum_ramp_steps = 20
      c.optimizer.learning_rate = 0.1
  c.lock()
  return c


train_and_evaluate = supervised.train_and_evaluate

if __name__ == "__main__":
  cli.run(__file__, "mnist_dnn", train_and_evaluate)
