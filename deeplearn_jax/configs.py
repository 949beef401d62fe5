"""Small helpers on ml_collections configs shared by every trainer."""

import json
from typing import Any, Sequence

import ml_collections

from deeplearn_jax.errors import UserError


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def steps_from(config: ml_collections.ConfigDict, name: str, steps_per_epoch: int) -> int:
  """Reads a duration given as `<name>_steps` or `<name>_epochs` (steps win if > 0).

  Returns -1 when neither is set (> 0), meaning "never" for periodic events.
  """
  steps = config.get(f"{name}_steps", -1)
  if steps is not None and steps > 0:
    return int(steps)
  epochs = config.get(f"{name}_epochs", -1)
  if epochs is not None and epochs > 0:
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
    known = " | ".join(names) if names else "no names"
    raise ValueError(f"unknown variant {variant!r}: use one of {known}, optionally with "
                     f"{', '.join(modifiers)} appended after a comma (e.g. :smoke)")
  return (chosen[0] if chosen else default), {p for p in parts if p in modifiers}
