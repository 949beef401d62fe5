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
          (:dropout: the fine-tunings with dropout, 200 epochs; :smoke: digits, a
          64-32-32-64 stack, seconds)
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
Where the gap to 1.25% is not (issue 17 part 2; each one run from the same seed, on the
quiet machine except where said, fine-tuning from the stack of the 50-epoch run):
  pre-training 50 epochs per RBM (theirs) instead of 20      1.38%  (--config.pretrain.
                                                                     num_epochs=50; 36 min
                                                                     of pre-training, about
                                                                     10 paused)
  ... fine-tuning at learning rate 0.02 instead of 0.1       1.96% after 18 of 30 epochs,
                                                                     stopped (too slow)
  ... a 2-epoch linear warm-up of the learning rate          1.41%  (--config.optimizer.
                                                                     warmup_epochs=2)
  ... dropout 0.2 on the inputs, 0.5 on the hidden units,    1.43%  (--config.model.
      50 epochs (Srivastava et al. 2014's DBN fine-tuning)           dropout_input=0.2 ...)
  ... the new top layer alone for 6 epochs (2.43% then),   1.53%  (H&S's order; by hand:
      then the whole net for 30                                      optimizer.frozen, then
                                                                     init_from its params)
The warm-up and dropout runs ran side by side. None is below 1.38%, and 1.38-1.43% is
the spread that one seed on two CPUs already showed (1.40% / 1.43%; the AVX2 machine gave
1.43% again on 2026-11-26: pre-training 797 s, fine-tuning 342 s). Left untried: the
published fine-tuning itself (conjugate gradients on batches of 1,000 for 200 epochs)
and the up-down algorithm of the 1.25%.
Over 3 seeds on the AVX2 machine (0, 1, 2): 1.43%, 1.50%, 1.51%, mean 1.48 +- 0.04%
(seeds 1, 2 on 2026-11-27 with --config.compare_random_init=False
--config.steps_per_call=100 --config.data.on_device=True, which give a CPU the same
parameters: 453-462 s of pre-training and 272-274 s of fine-tuning each).
What closes it (:dropout): dropout fine-tuning given time. The default run's stack (seed
0, AVX2 machine) fine-tuned with dropout 0.2 / 0.5 at the same learning rate and
momentum for 200 epochs instead of 30: 1.54% at epoch 30, 1.26% at 50, 1.18% at 100,
1.11% at 150, 1.12% at the end (lowest 1.08%): below the published 1.25%, target met;
Srivastava et al. 2014 report 0.92% for this DBN fine-tuned with dropout. 2,829 s of
fine-tuning (the last 25 min beside another run), made by `python -m experiments.mnist_dnn
--config=experiments/mnist_dnn.py:dropout --config.model.hidden="(500,500,2000)"
--config.model.activation=sigmoid --config.optimizer.learning_rate=0.1
--config.num_epochs=200 --config.init_from=WORKDIR/stack`, the settings of :dropout's
fine-tuning. Seeds 1 and 2 (2026-11-27; their stacks from the 3-seed run above, the
same command with --config.seed=1 / 2 --config.steps_per_call=100
--config.data.on_device=True): 1.07% and 1.20% (lowest 1.04%, 1.11%; 2,009 s of
fine-tuning for seed 2 alone): over 3 seeds 1.13 +- 0.07%, every seed below 1.25%. The
same fine-tuning from a random init (LeCun, seed 0) sat at chance (88.7-90.3% test
error, loss 2.30) for the 61 epochs it ran before it was stopped for time.
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

from deeplearn_jax import checkpoint, cli, configs, data, metrics, pictures, run_folder
from deeplearn_jax.errors import UserError
from deeplearn_jax.train import contrastive_divergence, supervised, sweep

# The learning rule's keys that every RBM of the stack takes from `pretrain`.
RULE_KEYS = ("cd_k", "learning_rate", "momentum_initial", "momentum_final",
             "momentum_switch_epochs", "weight_decay", "init_std")


VARIANTS = ("backprop", "dropout")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  name, modifiers = configs.parse_variant(variant, VARIANTS, default="backprop")
  # The fine-tuning's supervised config (init_from is set by the experiment), plus
  # `pretrain` (every RBM of the stack), compare_random_init and extra_random_inits.
  c = supervised.base_config()
  c.data.name = "mnist"
  c.data.normalize = "unit"       # gray levels as the visible units' probabilities
  c.model = ml_collections.ConfigDict(dict(  # one RBM per hidden layer
      name="mlp", hidden=(500, 500, 2000), activation="sigmoid",
      dropout_input=0.0, dropout_hidden=0.0))  # dropout while fine-tuning (Srivastava et al.)
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
  if name == "dropout":
    # The same stack fine-tuned with dropout (Srivastava et al. 2014, whose DBN row
    # fine-tunes this 784-500-500-2000 net so): 20% of the inputs and half the hidden
    # units dropped, and 200 epochs for the noisier gradient to anneal.
    c.model.dropout_input, c.model.dropout_hidden = 0.2, 0.5
    c.num_epochs = 200.0
  if "smoke" in modifiers:
    configs.make_smoke(c, steps=200)
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
  if config.init_from:
    raise UserError("config.init_from is set by the DBN itself (its fine-tunings start "
                    "from the pre-trained stack or at random); leave it empty")


def stage_config(config: ml_collections.ConfigDict, layer: int) -> ml_collections.ConfigDict:
  """The RBM run of hidden layer `layer`: the DBN's shared keys (periods, NaN policy,
  mesh, data, ...), `pretrain`'s learning rule, and the layer's width."""
  c = configs.project(config, contrastive_divergence.base_config())
  c.seed = config.seed + layer
  c.batch_size = config.pretrain.batch_size
  c.num_epochs = config.pretrain.num_epochs  # the length is pretrain's, not fine-tuning's
  c.num_train_steps, c.min_train_steps = -1, 0
  c.eval_every_steps, c.eval_every_epochs = -1, -1.0  # the RBMs' measures at the end suffice
  for key in RULE_KEYS:
    c.rbm[key] = config.pretrain[key]
  c.rbm.num_hidden = config.model.hidden[layer]
  c.eval.ais_num_betas = 0        # log-likelihoods are the RBM experiment's subject
  c.eval.num_samples = 0
  c.eval.num_filters = 100 if layer == 0 else 0  # only the first layer's are images
  c.lock()
  return c


def finetune_configs(config: ml_collections.ConfigDict,
                     stack_dir: str) -> dict[str, ml_collections.ConfigDict]:
  """The fine-tuning runs: from the stack, and (compare_random_init) the same net and
  recipe from flax's random init and from each of extra_random_inits."""
  inits = {"finetune_pretrained": ("", stack_dir)}
  if config.compare_random_init:
    inits["finetune_random"] = ("", "")
    inits.update({f"finetune_random_{k}": (k, "") for k in config.extra_random_inits})
  out = {}
  for name, (kernel_init, init_from) in inits.items():
    c = configs.project(config, supervised.base_config())
    c.init_from = init_from
    if kernel_init:
      c.model.kernel_init = kernel_init
    c.lock()
    out[name] = c
  return out


def train_one(config: ml_collections.ConfigDict, workdir: str, dataset: data.Dataset) -> dict:
  return supervised.run(config, workdir, dataset=dataset).results


def summarize(runs: dict[str, dict]) -> dict:
  """test_error_pretrained, test_error_random_init, test_error_random_init_<init>."""
  return {"test_error_" + name.replace("finetune_random", "random_init")
          .replace("finetune_", ""): r["test_error"] for name, r in runs.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  _validate(config)
  stages = [stage_config(config, i) for i in range(len(config.model.hidden))]
  stack_dir = os.path.join(workdir, "stack")
  finetunes = finetune_configs(config, stack_dir)
  run_folder.start(workdir, config)
  ds = data.load(config.data)

  # -- greedy layer-wise pre-training: each RBM's p(h|v) is the next one's data
  stack, pretrain, layer_data = {}, [], ds
  for i, stage in enumerate(stages):
    out = contrastive_divergence.run(stage, os.path.join(workdir, f"rbm{i}"),
                                     dataset=layer_data)
    params = jax.device_get(out.state.params)
    stack[f"Dense_{i}"] = contrastive_divergence.as_dense(params)
    pretrain.append({k: out.results[k] for k in (
        "test_reconstruction_error", "test_pseudo_log_likelihood", "train_seconds")})
    if i + 1 < len(stages):
      layer_data = contrastive_divergence.hidden_features(layer_data, params, f"h{i + 1}")
  if not os.path.isdir(stack_dir):
    checkpoint.save_params(stack_dir, stack)

  # -- fine-tuning of the whole stack, and the same net from random inits
  def more(runs):
    return {**summarize(runs), "pretrain": pretrain, "stack": stack_dir,
            "pretrain_seconds": sum(p["train_seconds"] for p in pretrain)}

  return sweep.run(config, workdir, finetunes, train_one, dataset=ds, plot=_plot,
                   summarize=more)


def _plot(workdir: str, runs: dict[str, dict]) -> None:

  fig = pictures.figure(figsize=(6, 4))
  ax = fig.subplots()
  for name in runs:
    rows = [r for r in metrics.read_metrics(os.path.join(workdir, name))
            if r["split"] in ("eval", "test")]
    ax.plot([r["step"] for r in rows], [100 * (1 - r["accuracy"]) for r in rows],
            marker=".", label=name.replace("finetune_", "").replace("_", " "))
  ax.set(xlabel="fine-tuning step", ylabel="test error (%)", yscale="log",
         title="DBN pre-training vs random initialisation")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "comparison.png"), dpi=100)


if __name__ == "__main__":
  cli.run(__file__, "dbn", train_and_evaluate)
