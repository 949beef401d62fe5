"""Environments by name, as the compiled agent steps them: JAX-native gymnax (1.0.1)
CartPole and MinAtar games run on device, vmapped over environments and seeds; Atari
(ale-py, rl/atari.py) steps on the host through a callback from the same loop.

Every environment here auto-resets and answers step(key, state, action) with
(obs, state, reward, terminal, boundary, score): `terminal` ends bootstrapping (a time
limit counts, as in purejaxrl), `boundary` ends the episode (Atari's lost lives are
terminal while training but no boundary), `score` is the unclipped reward."""

import dataclasses
import importlib
import sys
import types
from typing import Any, Callable

import jax.numpy as jnp

from deeplearn_jax.errors import UserError

# Discrete-action gymnax environments this agent plays.
GYMNAX = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Breakout-MinAtar",
          "Freeway-MinAtar", "Asterix-MinAtar", "SpaceInvaders-MinAtar", "Seaquest-MinAtar")


@dataclasses.dataclass(frozen=True)
class Env:
  """An environment and what the agent needs to know of it."""
  name: str
  reset: Callable[[Any], tuple[Any, Any]]     # key -> (obs, state)
  step: Callable[..., tuple]                  # (key, state, action) -> 6 values (above)
  obs_shape: tuple[int, ...]
  num_actions: int
  store_dtype: Any           # how the replay keeps observations (uint8 for 0/1 and pixels)
  max_steps: int             # the episode's time limit in agent steps
  frame_stack: int = 1       # > 1: obs stacks frames on the last axis; the replay keeps one
  host: Any = None           # emulators on the host (Atari): evaluation steps them directly


def _gymnax() -> types.ModuleType:
  """gymnax, imported only where an environment is made. Its package init imports
  seaborn for two environments' render methods, and seaborn scipy.stats and pandas:
  1.5-2 s of every RL run's start. A stand-in takes seaborn's place while gymnax
  loads and imports the real one on first use."""
  if "gymnax" in sys.modules or "seaborn" in sys.modules:
    return importlib.import_module("gymnax")
  stand_in = types.ModuleType("seaborn")
  stand_in.__getattr__ = lambda name: getattr(importlib.import_module("seaborn"), name)
  sys.modules["seaborn"] = stand_in
  try:
    return importlib.import_module("gymnax")
  finally:
    if sys.modules.get("seaborn") is stand_in:
      del sys.modules["seaborn"]


def make(name: str, training: bool = True, seed: int = 0) -> Env:
  """The environment `name` (a gymnax name, or atari:<game> for an ale-py ROM);
  UserError for one this agent does not play. `training`: Atari's lost lives are
  terminal; `seed` seeds the host emulators."""
  if name.startswith("atari:"):
    from deeplearn_jax.rl import atari
    return atari.make(name[len("atari:"):], training, seed)
  if name not in GYMNAX:
    raise UserError(f"unknown environment {name!r}; known: {', '.join(GYMNAX)}, "
                    "atari:<game>")
  env, params = _gymnax().make(name)

  def step(key, state, action):
    obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
    done = terminated | truncated
    return obs, state, reward, done, done, reward

  shape = tuple(env.observation_space(params).shape)
  minatar = name.endswith("-MinAtar")
  return Env(name, lambda key: env.reset(key, params), step, shape, int(env.num_actions),
             jnp.uint8 if minatar else jnp.float32, int(params.max_steps_in_episode))
