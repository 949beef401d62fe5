"""Deep fully connected nets on MNIST: SGD, L2, L1, dropout and max-norm
(Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014, table 2).

Published (3 hidden layers of 1024 ReLU units unless noted): standard net 1.60%;
dropout 1.25% (ReLU); dropout + max-norm 1.06%. Their nets trained for up to
3,000 epochs; ours run a fixed, much smaller budget (see num_epochs).

Command:  python -m experiments.mnist_dnn --config=experiments/mnist_dnn.py:VARIANT \\
              --config.data.manual_dir=../shared/data
VARIANT:  plain | l2 | l1 | dropout | dropout_maxnorm   (and :smoke for tests)
Hardware: (filled in from a real run, see README "Results")
"""

import ml_collections

from deeplearn_jax import cli
from deeplearn_jax.train import supervised

VARIANTS = ("plain", "l2", "l1", "dropout", "dropout_maxnorm")


def get_config(variant: str = "dropout") -> ml_collections.ConfigDict:
  parts = (variant or "dropout").split(",")
  smoke = "smoke" in parts
  names = [p for p in parts if p != "smoke"] or ["dropout"]
  name = names[0]
  if len(names) > 1 or name not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of mnist_dnn: use one of "
                     f"{', '.join(VARIANTS)} (append ',smoke' for a seconds-long run)")
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
    c.max_norm = 3.5
    c.optimizer.learning_rate = 0.1
  if smoke:
    supervised.make_smoke(c, steps=80)
    c.model.hidden = (64, 64)
  c.lock()
  return c


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  return supervised.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  cli.run(__file__, "mnist_dnn", train_and_evaluate)
