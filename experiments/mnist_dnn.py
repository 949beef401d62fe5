"""Deep fully connected nets on MNIST: SGD, L2, L1, dropout and max-norm
(Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014).

Command:  python -m experiments.mnist_dnn --config=experiments/mnist_dnn.py:VARIANT \
              --config.data.manual_dir=../shared/data
VARIANT:  plain | l2 | l1 | dropout | dropout_maxnorm   (append ",smoke" for a seconds-long run)
Net:      784-1024-1024-1024-10 ReLU (2.91M params), batch 100, SGD momentum 0.9 with
          cosine decay, 50 epochs; dropout keeps 80% of inputs and 50% of hidden units.
          dropout_maxnorm as Srivastava et al.'s appendix: max-norm radius 3.5 (in the
          paper's units: see losses.max_norm), a large learning rate (0.1, cosine decay)
          with momentum rising from 0.5 to 0.95 over the first 50 epochs, 200 epochs.
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
  dropout_maxnorm  1.37%    1.06% (dropout + max-norm)        67 min (the first 50 beside
                                                              the control below)

Over 3 seeds (0, 1, 2) on one H200 (float32 matmuls, --config.steps_per_call=100, six
runs sharing the GPU, 120 s training each): plain 1.43 +- 0.04% (1.45, 1.45, 1.38),
dropout 1.30 +- 0.06% (1.36, 1.31, 1.24). A later lease (--config.data.on_device=True,
15 runs sharing the GPU, about 250 s each): l2 1.42 +- 0.06% (1.46, 1.35, 1.45), l1
1.44 +- 0.07% (1.48, 1.36, 1.47).

Dropout beats the plain net. Max-norm, 2026-11-27 (seed 0, this CPU,
--config.steps_per_call=100 --config.data.on_device=True, the same parameters): the
paper states the radius for weights trained with unscaled dropout; flax's dropout scales
the kept units by 1 / keep instead, so our weights are bounded by 3.5 x keep (2.8 for
the first layer, 1.75 above). Until then the radius bounded our weights as they are,
twice the paper's bound on the hidden layers, and never bound at learning rate 0.025:
that recipe gave 1.08% with max-norm and 1.08% without (--config.max_norm=0, the same
curve to the digit: 1.92 / 2.04 / 1.20 / 1.14% at epochs 25 / 50 / 100 / 150; seed 1
with max-norm 1.14%), and at 0.1 it collapsed as momentum reached 0.95. With the paper's
bound, at 0.1: max-norm holds nearly every unit on its bound (the median unit's norm
within 0.5% of the radius in every layer, at epoch 57 and at the end) and the net trains
through the rate's peak (2.75% at epoch 50, at most 4.2% around 55, 1.92% at 100, 1.42%
at 150, lowest 1.28% at 169, 1.37% at the end); the same command with
--config.max_norm=0 follows it to epoch 45 (1.99%), then collapses: 5.6% at 49, chance
(85-90%) from epoch 50 on, with unit norms up to 213 and the third hidden layer dead on
every test digit (stopped at epoch 59). So max-norm is what lets this rate train, as the
paper says; but in 200 epochs the larger rate ends worse than 0.025 without max-norm
(1.37% against 1.08%), and the target (<= 1.15%, below dropout alone) is not met by this
recipe. At 0.025 with the paper's bound (--config.optimizer.learning_rate=0.025, seed 0,
the same day, 3,388 s training): 1.14% (lowest 1.07% at epoch 140; 1.86 / 1.83 / 1.23 /
1.13% at epochs 25 / 50 / 100 / 150), against 1.08% without max-norm: <= 1.15% met, but
not below dropout alone on the same 200-epoch recipe (one seed each, 0.06 points apart:
within what a seed moves it, seed 1 of the never-binding radius gave 1.14%), so at this
rate max-norm neither helps nor hurts measurably. The paper trains up to 3,000 epochs at
its large rate.
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
    c.optimizer.learning_rate = 0.1
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
