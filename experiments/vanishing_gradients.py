"""The vanishing gradient, measured: deep sigmoid nets with naive initialisation barely
learn; scaled initialisation, ReLU, batch norm and skip connections make depth trainable
(Hochreiter 1991; Glorot & Bengio 2010; He, Zhang, Ren & Sun 2015; Ioffe & Szegedy 2015;
He, Zhang, Ren & Sun 2016).

Command:  python -m experiments.vanishing_gradients --config.data.manual_dir=../shared/data
          (--config=experiments/vanishing_gradients.py:smoke: digits, seconds)
Grid:     fully connected nets of width 128 and depth 2, 5, 10, 20 (weight layers: depth-1
          hidden layers and the output layer) with sigmoid, tanh and ReLU, each initialised
          naively (N(0, 0.01^2)), by Glorot (uniform, variance 2/(fan_in+fan_out)) and by He
          (Gaussian, variance 2/fan_in); at depth 20: ReLU + He with batch norm (BN), with
          identity skips (res), with both, and sigmoid + naive with BN, with skips; ReLU
          with Glorot and with He at depth 30 (He et al. 2015's test). 43 runs.
Budget:   the same for all: 3 epochs of MNIST (1,404 steps of 128), SGD with momentum 0.9
          at a constant learning rate of 0.01, no augmentation, seed 0; test accuracy on
          the 10,000 test digits after the budget.
Outputs:  results.json: `runs` maps each configuration (e.g. sigmoid_naive_d20,
          relu_he_bn_d20, relu_he_res_d20) to test_accuracy (null and `diverged` for a run
          whose loss became NaN), final_train_loss, grad_norm_init (each layer's gradient
          norm on the first training batch at initialisation, input layer first) and
          grad_norm_end (the mean over the last 50 steps); grad_norms.png; one supervised
          run folder per configuration (resumable; its metrics.jsonl logs every layer's
          gradient norm as grad_norm/Dense_i every 50 steps).
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32. Wall time 709 s
          (448 s CPU) for the first 41 runs; the two depth-30 runs were added by running
          the same command again, which resumed the 41 finished runs and trained the two
          new ones (109 s). Other training runs shared the 2 cores throughout (load
          average about 10), so these times are upper bounds.

Result (MNIST test accuracy after the budget; chance is about 10-11%):

                  d2      d5      d10     d20     d30
  sigmoid naive   89.44%  11.35%  11.35%  11.35%
  sigmoid Glorot  90.93%  10.28%  10.28%  10.28%
  sigmoid He      90.92%  54.77%  10.28%  10.28%
  tanh naive      92.95%  11.35%  11.35%  11.35%
  tanh Glorot     93.79%  96.00%  96.02%  95.24%
  tanh He         93.82%  96.58%  96.90%  96.62%
  ReLU naive      93.60%  11.35%  11.35%  11.35%
  ReLU Glorot     94.55%  96.47%  96.56%  94.49%  63.95%
  ReLU He         94.67%  96.29%  96.14%  95.99%  94.97%

  depth 20                 test acc   gradient norm at init: input layer / output layer
  sigmoid naive            11.35%     5.0e-30 / 0.67
  sigmoid naive + BN       92.34%     0.47 / 0.73
  sigmoid naive + res      89.86%     0.053 / 25
  ReLU He                  95.99%     0.77 / 0.45
  ReLU He + BN             96.00%     54 / 0.97
  ReLU He + res            diverged (NaN loss at step 3)   1.2e4 / 5.3e4
  ReLU He + BN + res       96.99%     17 / 35
  (depth 30: ReLU Glorot 5.3e-5 / 2.1e-5, ReLU He 0.98 / 0.59)

Beside the published claims:
- Hochreiter 1991; Glorot & Bengio 2010 (deep sigmoid nets train badly): the sigmoid
  net's gradient shrinks geometrically towards the input, by about 0.03 per layer with
  the naive init (first/last layer: 1e-6 at depth 5, 2.5e-14 at depth 10, 7.6e-30 at
  depth 20); with Glorot's or He's init the first layer's is still 3e-12 or 6e-10 at
  depth 20, the output layer's about 1. Every sigmoid net of depth 10 or more stays at
  chance whatever its init; at depth 5 only He's init starts to learn (54.8%). Their
  gradients at the end of training are those at init: nothing moved.
- Glorot & Bengio 2010 (normalised init keeps tanh nets' gradients alike across layers):
  tanh + Glorot: first/last layer 2.0 at depth 20, 95.2%.
- Naive N(0, 0.01^2) at depth 5 or more fails with every activation, but not by the same
  mechanism: with tanh and ReLU the forward signal shrinks as fast as the backward one,
  so every layer's gradient is equally tiny (1e-18 to 1e-21 at depth 20), not decaying.
- He et al. 2015 (a 30-layer ReLU net stalls with Glorot/Xavier init and learns with
  theirs): 63.95% against 94.97% at depth 30. Glorot's variance halves the ReLU signal
  at every layer (init gradients 5e-5), He's keeps it (about 1).
- Ioffe & Szegedy 2015 (BN makes saturating nets trainable and the init matter less):
  sigmoid + naive + BN: 92.3% against 11.4% without. With ReLU + He, BN matches the
  plain net (96.0%); at init it makes the gradient grow towards the input (54 vs 0.97).
- He et al. 2016 (identity skips ease the optimisation of deep nets): sigmoid + naive +
  skips 89.9% against 11.4%; ReLU + He + BN + skips 96.99%, the best run. Skips alone on
  a He-initialised ReLU net explode instead (each block doubles the forward variance:
  init gradients ~1e4) and the loss is NaN at step 3 at this learning rate: the reason
  ResNets put BN in every block.
"""

import os
import re

import jax
import ml_collections
import numpy as np
import optax

from deeplearn_jax import cli, configs, data, metrics, models, pictures
from deeplearn_jax.errors import TrainingDiverged, UserError
from deeplearn_jax.models import mlp
from deeplearn_jax.train import inputs, supervised, sweep
from deeplearn_jax.train.state import make_init
from deeplearn_jax.train.steps import layer_grad_norms

# A configuration's name: activation_init[_bn][_res]_dDEPTH, e.g. relu_he_bn_d20.
NAME = re.compile(r"(?P<activation>[a-z]+)_(?P<init>[a-z]+)(?P<bn>_bn)?(?P<res>_res)?"
                  r"_d(?P<depth>\d+)")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  # The top level is every run's supervised config; `grid` says which runs there are.
  c = supervised.base_config()
  c.data.name = "mnist"
  c.batch_size = 128
  c.num_epochs = 3.0
  c.optimizer.name = "momentum"
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.log_layer_grad_norms = True
  c.grid = ml_collections.ConfigDict(dict(
      width=128,                  # units of every hidden layer
      init_std=0.01,              # standard deviation of the naive initialisation
      depths=(2, 5, 10, 20),      # weight layers: depth-1 hidden layers + the output layer
      activations=("sigmoid", "tanh", "relu"),
      inits=("naive", "glorot", "he"),
      # Beyond the activation x init x depth grid, named activation_init[_bn][_res]_dDEPTH:
      extra=("relu_he_bn_d20", "relu_he_res_d20", "relu_he_bn_res_d20",
             "sigmoid_naive_bn_d20", "sigmoid_naive_res_d20", "relu_glorot_d30",
             "relu_he_d30"),
  ))
  if "smoke" in modifiers:
    configs.make_smoke(c, steps=30)
    c.checkpoint_every_steps = -1
    c.checkpoint_every_epochs = -1.0  # only at the end
    c.optimizer.learning_rate = 0.05
    c.grid.width = 32
    c.grid.depths = (6,)
    c.grid.activations = ("sigmoid", "relu")
    c.grid.inits = ("naive", "he")
    c.grid.extra = ("relu_he_bn_d6", "sigmoid_naive_res_d6")
  c.lock()
  return c


def run_names(grid: ml_collections.ConfigDict) -> list[str]:
  """Every configuration of the grid, the extra ones last, each once."""
  names = [f"{a}_{i}_d{d}" for a in grid.activations for i in grid.inits for d in grid.depths]
  return list(dict.fromkeys(names + list(grid.extra)))


def parse(name: str) -> dict:
  """A configuration's name -> its model fields and depth; UserError for a bad name."""
  m = NAME.fullmatch(name)
  if not m:
    raise UserError(f"bad configuration name {name!r}: use activation_init[_bn][_res]_dDEPTH, "
                    "e.g. relu_he_bn_d20")
  if m["activation"] not in mlp.ACTIVATIONS:
    raise UserError(f"{name}: unknown activation {m['activation']!r}; known: "
                    f"{', '.join(mlp.ACTIVATIONS)}")
  if m["init"] not in mlp.KERNEL_INITS:
    raise UserError(f"{name}: unknown initialisation {m['init']!r}; known: "
                    f"{', '.join(mlp.KERNEL_INITS)}")
  depth = int(m["depth"])
  if depth < 1:
    raise UserError(f"{name}: depth must be at least 1")
  return dict(activation=m["activation"], kernel_init=m["init"], batch_norm=bool(m["bn"]),
              residual=bool(m["res"]), depth=depth)


def run_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The supervised config of one configuration: the experiment's, less `grid`, with the
  model the name describes. A pure function of both, so a rerun resumes each run."""
  spec = parse(name)
  fields = config.to_dict()
  grid = fields.pop("grid")
  c = ml_collections.ConfigDict(fields)
  model = dict(name="mlp", hidden=(grid["width"],) * (spec["depth"] - 1),
               activation=spec["activation"], kernel_init=spec["kernel_init"],
               batch_norm=spec["batch_norm"], residual=spec["residual"])
  if spec["kernel_init"] == "naive":
    model["init_std"] = grid["init_std"]
  c.model = ml_collections.ConfigDict(model)
  c.lock()
  return c


def init_grad_norms(model, dataset: data.Dataset, config: ml_collections.ConfigDict):
  """Each layer's gradient norm (input layer first) of the cross-entropy at the run's
  initial parameters (same seed, same init) on the run's first training batch."""
  state = make_init(model, optax.identity(), dataset.input_shape, config.seed)()
  batch = next(inputs.train_batches(config, dataset, 0, 1))
  return by_layer(jax.device_get(layer_grad_norms(model, config, state, batch)))


def by_layer(norms: dict) -> list[float]:
  """{'Dense_0': a, ..., 'Dense_10': b} -> [a, ..., b] in layer order."""
  return [float(norms[k]) for k in sorted(norms, key=lambda k: int(k.rsplit("_", 1)[1]))]


def end_grad_norms(workdir: str) -> list[float]:
  """The per-layer gradient norms of a run's last train log (a mean over its last
  log_every_steps steps)."""
  train = [r for r in metrics.read_metrics(workdir) if r["split"] == "train"]
  if not train:  # diverged before its first log
    return []
  return by_layer({k.split("/", 1)[1]: v for k, v in train[-1].items()
                   if k.startswith("grad_norm/")})


def plot_grad_norms(path: str, runs: dict[str, dict]) -> None:
  """One panel per family (the name without its depth): each depth's per-layer gradient
  norms at initialisation (solid) and at the end of training (dashed), log scale."""

  families: dict[str, list[str]] = {}
  for name in runs:
    families.setdefault(name.rsplit("_d", 1)[0], []).append(name)
  cols = 4
  rows = -(-len(families) // cols)
  # One y scale for all, so a flat line and a vanishing one look like what they are.
  fig = pictures.figure(figsize=(4.2 * cols, 3.2 * rows))
  axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
  for ax, (family, names) in zip(axes.flat, families.items()):
    for i, name in enumerate(names):
      r = runs[name]
      layers = np.arange(1, len(r["grad_norm_init"]) + 1)
      color = f"C{i}"
      acc = "diverged" if r["test_accuracy"] is None else f"{r['test_accuracy']:.1%}"
      ax.plot(layers, r["grad_norm_init"], "o-", ms=3, color=color,
              label=f"d{len(layers)}: {acc}")
      if r["grad_norm_end"]:
        ax.plot(layers, r["grad_norm_end"], "--", color=color, alpha=0.6)
    ax.set_yscale("log")
    ax.set_title(family)
    ax.set_xlabel("layer (1 = input)")
    ax.set_ylabel("gradient norm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="depth: test acc", title_fontsize=7)
  for ax in list(axes.flat)[len(families):]:
    ax.axis("off")
  fig.suptitle("per-layer gradient norms: at init (solid), end of training (dashed)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def train_one(config: ml_collections.ConfigDict, workdir: str, dataset: data.Dataset) -> dict:
  """One configuration: its gradient norms at init, then its training. A net whose
  loss explodes is a result here, not a failure."""
  model = models.create(config.model, dataset.num_classes, config.dtype)
  out = {"grad_norm_init": init_grad_norms(model, dataset, config)}
  try:
    res = supervised.run(config, workdir, dataset=dataset).results
  except TrainingDiverged as e:
    return {**out, "test_accuracy": None, "diverged": str(e)}
  return {**out, "test_accuracy": res["test_accuracy"],
          "final_train_loss": res["final_train_loss"]}


def plot(workdir: str, runs: dict[str, dict]) -> None:
  """grad_norms.png, with each run's gradient norms at the end read from its log."""
  for name, r in runs.items():
    r["grad_norm_end"] = end_grad_norms(os.path.join(workdir, name))
  plot_grad_norms(os.path.join(workdir, "grad_norms.png"), runs)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  children = {name: run_config(config, name) for name in run_names(config.grid)}
  return sweep.run(config, workdir, children, train_one, plot=plot)


if __name__ == "__main__":
  cli.run(__file__, "vanishing_gradients", train_and_evaluate)
