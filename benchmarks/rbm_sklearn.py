"""Our RBM trainer against scikit-learn's BernoulliRBM: same data, same hyper-parameters.

    python benchmarks/rbm_sklearn.py --manual_dir=../shared/data [--epochs=10]

scikit-learn's BernoulliRBM learns by persistent CD-1 (Tieleman 2008) with plain SGD on
mini-batches, so ours runs the same rule: PCD-1 with as many fantasy particles as
examples in a batch, no momentum, no weight decay, W ~ N(0, 0.01^2), on binarized MNIST
(60,000 training digits). The one difference left: sklearn starts the visible biases at
0, ours at the pixels' base rates (Hinton's guide).

Both models' test pseudo-log-likelihoods are measured twice: with sklearn's
`score_samples` and with ours (the same stochastic estimator: V log p(v_i | v_-i) for
one random pixel i per digit), each model scored by both. Training time is the wall
time of `fit` against our training loop (compilation included). Writes
benchmarks/results/rbm_sklearn.json.
"""

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from deeplearn_jax import data  # noqa: E402
from deeplearn_jax.models import rbm  # noqa: E402
from deeplearn_jax.train import contrastive_divergence  # noqa: E402

flags.DEFINE_string("manual_dir", "../shared/data", "folder with mnist/*.gz")
flags.DEFINE_integer("epochs", 10, "passes over the training set, both models")
flags.DEFINE_integer("hidden", 500, "hidden units")
flags.DEFINE_float("learning_rate", 0.05, "on the batch-mean gradient, both models")
flags.DEFINE_integer("batch_size", 100, "mini-batch, both models")
flags.DEFINE_string("out", "benchmarks/results/rbm_sklearn.json", "where the figures go")
FLAGS = flags.FLAGS


def our_config():
  c = contrastive_divergence.base_config()
  c.data.name, c.data.manual_dir = "mnist", FLAGS.manual_dir
  c.batch_size, c.num_epochs = FLAGS.batch_size, float(FLAGS.epochs)
  c.rbm.num_hidden, c.rbm.learning_rate = FLAGS.hidden, FLAGS.learning_rate
  c.rbm.pcd, c.rbm.num_chains, c.rbm.cd_k = True, FLAGS.batch_size, 1
  c.rbm.momentum_initial = c.rbm.momentum_final = 0.0
  c.rbm.weight_decay = 0.0
  c.eval_every_epochs = c.checkpoint_every_epochs = -1
  c.eval.ais_num_betas = c.eval.num_filters = c.eval.num_samples = 0
  c.progress = False
  return c


def our_pll(params, v: np.ndarray, seed: int = 0) -> float:
  key = jax.random.PRNGKey(seed)
  return float(jnp.mean(jax.jit(rbm.pseudo_log_likelihood)(params, jnp.asarray(v), key)))


def main(_):
  from sklearn.neural_network import BernoulliRBM

  config = our_config()
  ds = data.load(config.data)
  everything = lambda s: ds.transform(s.gather(np.arange(len(s))))["input"].reshape(len(s), -1)
  train, test = everything(ds.train), everything(ds.test)

  with tempfile.TemporaryDirectory() as wd:
    ours = contrastive_divergence.run(config, wd)
  ours_params = jax.device_get(ours.state.params)

  theirs = BernoulliRBM(n_components=FLAGS.hidden, learning_rate=FLAGS.learning_rate,
                        batch_size=FLAGS.batch_size, n_iter=FLAGS.epochs, random_state=0)
  t0 = time.perf_counter()
  theirs.fit(train)
  sklearn_seconds = time.perf_counter() - t0
  theirs_params = {"W": theirs.components_.T.astype(np.float32),
                   "a": theirs.intercept_visible_.astype(np.float32),
                   "b": theirs.intercept_hidden_.astype(np.float32)}

  # sklearn scores any RBM through its own code path once given the parameters.
  as_sklearn = BernoulliRBM(n_components=FLAGS.hidden, random_state=0)
  as_sklearn.components_ = ours_params["W"].T.astype(np.float64)
  as_sklearn.intercept_visible_ = ours_params["a"].astype(np.float64)
  as_sklearn.intercept_hidden_ = ours_params["b"].astype(np.float64)
  as_sklearn.random_state_ = np.random.RandomState(0)
  theirs.random_state_ = np.random.RandomState(0)

  results = {
      "setup": {"epochs": FLAGS.epochs, "hidden": FLAGS.hidden, "batch_size": FLAGS.batch_size,
                "learning_rate": FLAGS.learning_rate, "rule": "PCD-1, no momentum/decay",
                "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "jax": jax.__version__},
      "deeplearn_jax": {
          "train_seconds": ours.results["train_seconds"],
          "test_pll_our_estimator": our_pll(ours_params, test),
          "test_pll_sklearn_estimator": float(np.mean(as_sklearn.score_samples(test))),
          "test_reconstruction_error": ours.results["test_reconstruction_error"]},
      "sklearn": {
          "train_seconds": sklearn_seconds,
          "test_pll_our_estimator": our_pll(theirs_params, test),
          "test_pll_sklearn_estimator": float(np.mean(theirs.score_samples(test)))},
  }
  os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
  with open(FLAGS.out, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
