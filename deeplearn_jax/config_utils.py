"""Small helpers on ml_collections configs shared by every trainer."""

import json
from typing import Any

import ml_collections


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
