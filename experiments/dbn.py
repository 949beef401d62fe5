"""Deep belief nets: greedy layer-wise pre-training by stacking RBMs, then fine-tuning
of the whole stack by backpropagation (Hinton, Osindero & Teh 2006; Hinton &
Salakhutdinov 2006), against the same net trained from a random initialisation.

Stages (each in its own sub-folder of the workdir, each checkpointed and resumable):
  rbm0, rbm1, rbm2        RBMs 784-500, 500-500, 500-2000 trained by CD-1; each one's
                          hidden probabilities p(h|v) are the data of the next
  stack/                  the pre-trained weights and hidden biases as an MLP's
                          Dense_0..2 (checkpoint.save_params): any supervised run starts
                          from it with --config.init_from=DIR/stack
  finetune_pretrained     784-500-500-2000-10 sigmoid MLP from the stack, softmax output
  finetune_random         the same net and recipe from flax's default random init
                          (LeCun normal), and finetune_random_glorot from Glorot's
Outputs: results.json (test_error_pretrained, test_error_random_init, each stage's
figures), comparison.png (test error per epoch of both fine-tunings), rbm0/filters.png.

Command:  python -m experiments.dbn --config.data.manual_dir=../shared/data
          (:smoke: digits, a 64-32-32-64 stack, seconds)
Recipe:   as Hinton & Salakhutdinov's code where it applies: gray levels in [0, 1] used
          as the visible probabilities, CD-1, batch 100, learning rate 0.1, momentum 0.5
          then 0.9 after 5 epochs, weight decay 2e-4; but 20 epochs per RBM (theirs 50)
          and fine-tuning by SGD with momentum 0.9, learning rate 0.1 with cosine decay,
          30 epochs (theirs: conjugate gradients, 200 epochs).
Published: 1.25% test error (HOT 2006, 784-500-500-2000-10, up-down fine-tuning);
          about 1.2% with backprop fine-tuning (Hinton & Salakhutdinov 2006).
Result (real MNIST, seed 0; 2 cores of an AMD EPYC CPU, JAX 0.10.2, float32; other runs
shared the CPU, so times are upper bounds):
  fine-tuned from the DBN stack                      1.40% test error   357 s
  the same net and recipe from a random init (LeCun) 88.65% (chance)    268 s
  ... from Glorot's random init                      88.65% (chance)    389 s
  pre-training: rbm0 784-500 about 4 min, rbm1 500-500 about 3 min, rbm2 500-2000
  about 17 min (from the log of the first run; CD-1, 20 epochs each).
From a random init this 4-layer sigmoid net sits on the plateau that Glorot & Bengio
(2010) describe (the top hidden layer saturates; the loss stays at 2.30 for all 30
epochs; experiments/vanishing_gradients.py shows the same for sigmoid nets of depth 5
and more). A gentler learning rate lets it start but not catch up: with 0.01 instead of
0.1 it reaches 6.92% after the same 30 epochs (`python -m experiments.mnist_dnn
--config=experiments/mnist_dnn.py:plain --config.model.hidden="(500,500,2000)"
--config.model.activation=sigmoid --config.optimizer.learning_rate=0.01
--config.num_epochs=30 --config.data.manual_dir=../shared/data`, 276 s). Pre-training
is what makes the deep sigmoid net trainable here, the point of Hinton et al. 2006.
"""

import os

import jax
import ml_collections
import numpy as np

from deeplearn_jax import checkpoint, cli, data, metrics
from deeplearn_jax import run_folder
from deeplearn_jax.configs import to_dict
from deeplearn_jax.errors import UserError
from deeplearn_jax.models import rbm
from deeplearn_jax.train import supervised
from deeplearn_jax.train import contrastive_divergence

# Keys of this config that the fine-tuning runs (plain supervised runs) do not have.
DBN_ONLY = ("pretrain", "compare_random_init", "extra_random_inits")
STAGE_KEYS = ("cd_k", "learning_rate", "momentum_initial", "momentum_final",
              "momentum_switch_epochs", "weight_decay", "init_std")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "smoke"):
    raise ValueError(f"unknown variant {variant!r} of dbn: use :smoke or nothing")
  c = supervised.base_config()
  del c.init_from                 # the fine-tunings set it themselves
  c.data.name = "mnist"
  c.data.normalize = "unit"       # gray levels as the visible units' probabilities
  c.model = ml_collections.ConfigDict(dict(
      name="mlp", hidden=(500, 500, 2000), activation="sigmoid"))  # one RBM per hidden layer
  c.batch_size = 100
  c.num_epochs = 30.0             # fine-tuning
  c.optimizer.name = "momentum"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.schedule = "cosine"
  c.pretrain = ml_collections.ConfigDict(dict(
      num_epochs=20.0,            # per RBM
      batch_size=100,
      cd_k=1,
      learning_rate=0.1,
      momentum_initial=0.5, momentum_final=0.9, momentum_switch_epochs=5.0,
      weight_decay=2e-4,
      init_std=0.01,
  ))
  c.compare_random_init = True    # also fine-tune the same net from a random init ...
  c.extra_random_inits = ("glorot",)  # ... and from these (model.kernel_init names)
  if variant == "smoke":
    supervised.make_smoke(c, steps=200)
    c.model.hidden = (32, 32, 64)
    c.optimizer.learning_rate = 0.5
    c.pretrain.num_epochs = 10.0  # digits: 22 steps of 64 per epoch
    c.pretrain.batch_size = 64
    c.pretrain.momentum_switch_epochs = 2.0
  c.lock()
  return c


def _validate(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if m.name != "mlp" or m.get("activation") != "sigmoid":
    raise UserError("a DBN fine-tunes a sigmoid MLP (its units are the RBMs' hidden units): "
                    f"config.model must be name=mlp, activation=sigmoid, got {m.name}, "
                    f"{m.get('activation')}")
  if not m.hidden:
    raise UserError("config.model.hidden must name at least one layer to pre-train")


def stage_config(config: ml_collections.ConfigDict, layer: int) -> ml_collections.ConfigDict:
  """The RBM run of hidden layer `layer`, derived from the DBN config."""
  c = contrastive_divergence.base_config()
  for key in ("log_every_steps", "eval_batch_size", "checkpoint_every_steps",
              "checkpoint_every_epochs", "keep_checkpoints", "nan_policy", "nan_lr_factor",
              "nan_max_rollbacks", "nan_max_skips", "progress"):
    c[key] = config[key]
  c.seed = config.seed + layer
  c.data = config.data            # recorded; upper layers are fed the features instead
  c.mesh = config.mesh
  c.batch_size = config.pretrain.batch_size
  c.num_epochs = config.pretrain.num_epochs
  c.eval_every_epochs = -1        # the RBMs' measures at the end suffice here
  for key in STAGE_KEYS:
    c.rbm[key] = config.pretrain[key]
  c.rbm.num_hidden = config.model.hidden[layer]
  c.eval.ais_num_betas = 0        # log-likelihoods are the RBM experiment's subject
  c.eval.num_samples = 0
  c.eval.num_filters = 100 if layer == 0 else 0  # only the first layer's are images
  c.lock()
  return c


def finetune_config(config: ml_collections.ConfigDict, init_from: str):
  c = ml_collections.ConfigDict({k: v for k, v in to_dict(config).items()
                                 if k not in DBN_ONLY})
  c.init_from = init_from
  c.lock()
  return c


@jax.jit
def _hidden_probs(params, x):
  return rbm.hidden_probs(params, x.reshape(x.shape[0], -1))


def features(ds: data.Dataset, params, layer: int, chunk: int = 10000) -> data.Dataset:
  """p(h|v) of every train and test example: the next RBM's data."""

  def split(s):
    rows = [np.arange(i, min(len(s), i + chunk)) for i in range(0, len(s), chunk)]
    out = [np.asarray(_hidden_probs(params, ds.transform(s.gather(r))["input"])) for r in rows]
    return {"input": np.concatenate(out), "label": s.arrays["label"]}

  return data.from_arrays(f"{ds.name}/h{layer + 1}", split(ds.train), split(ds.test),
                          ds.num_classes)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  _validate(config)
  ds = data.load(config.data)
  hidden = config.model.hidden
  stages = [stage_config(config, i) for i in range(len(hidden))]
  finetunes = {"pretrained": "finetune_pretrained", "random_init": "finetune_random",
               **{f"random_init_{k}": f"finetune_random_{k}" for k in config.extra_random_inits}}
  subdirs = [f"rbm{i}" for i in range(len(hidden))] + list(finetunes.values())
  run_folder.check_writable(workdir)
  run_folder.prepare(workdir, config, has_checkpoint=any(
      checkpoint.has_checkpoints(os.path.join(workdir, d, "checkpoints")) for d in subdirs))

  # -- greedy layer-wise pre-training
  stack, pretrain, layer_data = {}, [], ds
  for i, stage in enumerate(stages):
    out = contrastive_divergence.run(stage, os.path.join(workdir, f"rbm{i}"), dataset=layer_data)
    params = jax.device_get(out.state.params)
    stack[f"Dense_{i}"] = {"kernel": params["W"], "bias": params["b"]}
    pretrain.append({k: out.results[k] for k in (
        "test_reconstruction_error", "test_pseudo_log_likelihood", "train_seconds")})
    if i + 1 < len(stages):
      layer_data = features(layer_data, params, i)
  stack_dir = os.path.join(workdir, "stack")
  if not os.path.isdir(stack_dir):
    checkpoint.save_params(stack_dir, stack)

  # -- fine-tuning of the whole stack, and the same net from a random init
  def finetune(name: str, init_from: str, kernel_init: str = "") -> None:
    sub = finetune_config(config, init_from)
    if kernel_init:
      with sub.unlocked():
        sub.model.kernel_init = kernel_init
    runs[name] = supervised.run(sub, os.path.join(workdir, finetunes[name]), dataset=ds).results

  runs = {}
  finetune("pretrained", stack_dir)
  if config.compare_random_init:
    finetune("random_init", "")
    for kernel_init in config.extra_random_inits:
      finetune(f"random_init_{kernel_init}", "", kernel_init)
  results = {f"test_error_{name}": r["test_error"] for name, r in runs.items()}
  results.update(pretrain=pretrain, finetune=runs, stack=stack_dir,
                 pretrain_seconds=sum(p["train_seconds"] for p in pretrain))
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
    _plot(workdir, {name: finetunes[name] for name in runs})
  return results


def _plot(workdir: str, runs: dict[str, str]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for name, sub in runs.items():
    rows = [r for r in metrics.read_metrics(os.path.join(workdir, sub))
            if r["split"] in ("eval", "test")]
    ax.plot([r["step"] for r in rows], [100 * (1 - r["accuracy"]) for r in rows],
            marker=".", label=name.replace("_", " "))
  ax.set(xlabel="fine-tuning step", ylabel="test error (%)", yscale="log",
         title="DBN pre-training vs random initialisation")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "comparison.png"), dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  cli.run(__file__, "dbn", train_and_evaluate)
