"""Configs shared by every trainer: the base each trainer extends, the one variant
parser, and durations given in steps or epochs."""

import json
from typing import Any, Sequence

import ml_collections

from deeplearn_jax.errors import UserError


def base() -> ml_collections.ConfigDict:
  """Keys every trainer's loop reads; a trainer's own config adds its keys to these
  (and deletes none)."""
  c = ml_collections.ConfigDict()
  c.seed = 0                      # seeds init, data order and every random draw
  c.batch_size = 128              # global batch, split over all devices and hosts
  c.eval_batch_size = 1000        # global eval batch (the last one is padded)
  c.num_epochs = 10.0             # training length in epochs ...
  c.num_train_steps = -1          # ... or in steps (wins when > 0)
  c.min_train_steps = 0           # floor on the length, so tiny datasets get enough updates
  c.log_every_steps = 50
  c.eval_every_steps = -1         # periodic evaluation ...
  c.eval_every_epochs = 1.0       # ... or every this many epochs (-1: only at the end)
  c.checkpoint_every_steps = -1   # checkpoint period in steps ...
  c.checkpoint_every_epochs = 1.0  # ... or epochs; always also at the end
  c.keep_checkpoints = 3
  c.nan_policy = "stop"           # stop | skip | rollback: see deeplearn_jax/train/nan_guard.py
  c.nan_lr_factor = 0.5           # rollback: learning rate multiplier per rollback
  c.nan_max_rollbacks = 3
  c.nan_max_skips = 10            # skip: stop after this many skipped updates
  c.progress = True               # progress bar on a terminal
  c.step_optimization_level = -1  # LLVM's optimisation of the compiled training step
                                  # (-1: XLA's default); 1 compiles it about 2x faster
                                  # and computes the same bits (jit_options.py): for
                                  # runs whose compiling is much of their wall time
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.data = ml_collections.ConfigDict(dict(
      name="mnist",
      manual_dir="",              # folder with official files: DIR/mnist/*.gz
                                  # ('' = $DEEPLEARN_DATA_DIR)
      tfds_data_dir="",           # where TFDS keeps prepared data
                                  # ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      image_size=0,               # resize images to this square size once at load (0 = native)
      normalize="unit",           # unit ([0, 1]) | standardize (per-channel mean/std) |
                                  # binarize | none
      augment="none",             # training images: none | flip | flip_translate | translate
      augment_pad=2,              # (flip_)translate: shifts of up to this many pixels
      num_threads=2,              # grain prefetch threads
      num_workers=0,              # grain worker processes making batches (JPEG decoding);
                                  # 0 = threads only
      on_device=False,            # keep the training split on the devices and gather each
                                  # batch there (in-memory datasets; fast small models on
                                  # a GPU): see train/inputs.py's Feed
  ))
  return c


def make_smoke(c: ml_collections.ConfigDict, steps: int = 60) -> None:
  """Shrinks a config in place to a seconds-long run on the embedded digits (`:smoke`)."""
  c.data.name = "digits"
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_train_steps = steps
  c.log_every_steps = 10
  c.checkpoint_every_steps = steps // 3
  c.progress = False


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON-able Python values."""
  return json.loads(config.to_json_best_effort())


def replaced(config: ml_collections.ConfigDict, **changes: Any) -> ml_collections.ConfigDict:
  """A locked copy of config with `changes` set; dotted keys reach into blocks
  (replaced(c, **{"optimizer.learning_rate": 0.1}))."""
  c = ml_collections.ConfigDict(config.to_dict())
  for key, value in changes.items():
    target = c
    *parents, last = key.split(".")
    for p in parents:
      target = target[p]
    target[last] = value
  c.lock()
  return c


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}: dotted keys, for comparing configs."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def project(config: ml_collections.ConfigDict,
            schema: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`schema` (another trainer's config) with config's values for every top-level key
  both have, whole sub-blocks included: a stage of a multi-stage experiment takes the
  experiment's shared settings this way. Returned unlocked, for the caller to adjust."""
  values = to_dict(config)
  out = schema.to_dict()
  out.update({k: v for k, v in values.items() if k in out})
  return ml_collections.ConfigDict(out)


def steps_from(config: ml_collections.ConfigDict, name: str, steps_per_epoch: int) -> int:
  """Reads a duration given as `<name>_steps` or `<name>_epochs` (steps win if > 0).

  Returns -1 when neither is set (> 0), meaning "never" for periodic events.
  """
  steps, epochs = config[f"{name}_steps"], config[f"{name}_epochs"]
  if steps > 0:
    return int(steps)
  if epochs > 0:
    return max(1, int(round(epochs * steps_per_epoch)))
  return -1


def train_length(config: ml_collections.ConfigDict, num_train: int) -> tuple[int, int]:
  """(steps per epoch, total steps): `num_train_steps` when > 0, else `num_epochs`
  epochs, at least `min_train_steps`."""
  per_epoch = num_train // config.batch_size
  if per_epoch == 0:
    raise UserError(f"config.batch_size={config.batch_size} exceeds the {num_train} "
                    "training examples")
  if config.num_train_steps > 0:
    return per_epoch, int(config.num_train_steps)
  return per_epoch, max(1, int(round(config.num_epochs * per_epoch)), config.min_train_steps)


def parse_variant(variant: str, names: Sequence[str] = (), *, default: str = "",
                  modifiers: Sequence[str] = ("smoke",)) -> tuple[str, set[str]]:
  """Splits a `:variant` argument such as "paper,smoke" into its one name (one of
  `names`, else `default`) and its modifiers. Every experiment parses through here, so
  a modifier combines with any name. Raises ValueError (one line at the command line)
  for an unknown part or two names."""
  parts = [p.strip() for p in (variant or "").split(",") if p.strip()]
  chosen = [p for p in parts if p not in modifiers]
  if len(chosen) > 1 or any(p not in names for p in chosen):
    extra = " | ".join(modifiers)
    known = (f"one of {' | '.join(names)}, optionally with ,{extra} appended" if names
             else f"only {extra}")
    raise ValueError(f"unknown variant {variant!r}: use {known}")
  return (chosen[0] if chosen else default), {p for p in parts if p in modifiers}
