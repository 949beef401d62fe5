"""Atari through ale-py with the Nature DQN's preprocessing, as host-side wrappers.

  Game         the ROM (shipped in ale-py's wheel), every frame (NoFrameskip), no sticky
               actions, the minimal action set, grayscale screens
  NoopStart    up to `noop_max` no-op frames after each reset (a random start)
  MaxAndSkip   each action repeated `skip` frames, rewards summed, the observation the
               pixel-wise max of the last two frames (sprites that flicker)
  Nature       84x84 (bilinear), a stack of the last 4 (zeros before the episode's
               first), lost lives as terminal while training, rewards clipped to
               [-1, 1] (the unclipped score is kept), a time limit, auto-reset

A frame-level environment has reset() -> frame, step(action) -> (frame, reward,
game_over) and lives(); tests drive the wrappers with hand-made ones.

`make` turns one into an `envs.Env` the compiled agent steps through `io_callback`:
the device state of an environment is only its id here on the host. The emulators are
not checkpointed: a resumed run starts new episodes (the agent, target, optimizer,
replay memory and RNG resume exactly).
"""

import itertools
from typing import Any

import jax
from jax.experimental import io_callback
import jax.numpy as jnp
import numpy as np
from PIL import Image

from deeplearn_jax.errors import UserError
from deeplearn_jax.rl.envs import Env

SIZE = 84
STACK = 4
MAX_EPISODE_FRAMES = 108_000      # 30 minutes of play, the usual limit


def games() -> list[str]:
  from ale_py import roms
  return list(roms.get_all_rom_ids())


class Game:
  """The ROM `game` in ale-py: every frame, no sticky actions, the minimal action set."""

  def __init__(self, game: str, seed: int):
    import ale_py
    from ale_py import roms
    if game not in roms.get_all_rom_ids():
      raise UserError(f"unknown Atari game {game!r}; ale-py {ale_py.__version__} has "
                      f"{len(games())} ROMs, e.g. breakout, pong, space_invaders")
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", int(seed) % (2 ** 31))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.loadROM(roms.get_rom_path(game))
    self.ale = ale
    self.actions = ale.getMinimalActionSet()
    self.num_actions = len(self.actions)

  def reset(self) -> np.ndarray:
    self.ale.reset_game()
    return self.ale.getScreenGrayscale()

  def step(self, action: int) -> tuple[np.ndarray, float, bool]:
    reward = self.ale.act(self.actions[int(action)])
    return self.ale.getScreenGrayscale(), float(reward), self.ale.game_over()

  def lives(self) -> int:
    return self.ale.lives()


class NoopStart:
  """After a reset, 1 to noop_max no-op frames (action 0)."""

  def __init__(self, inner, noop_max: int, rng: np.random.Generator):
    self.inner, self.noop_max, self.rng = inner, noop_max, rng
    self.num_actions = inner.num_actions

  def reset(self) -> np.ndarray:
    frame = self.inner.reset()
    for _ in range(int(self.rng.integers(1, self.noop_max + 1)) if self.noop_max else 0):
      frame, _, over = self.inner.step(0)
      if over:
        frame = self.inner.reset()
    return frame

  def step(self, action):
    return self.inner.step(action)

  def lives(self) -> int:
    return self.inner.lives()


class MaxAndSkip:
  """Each action for `skip` frames (fewer when the game ends), rewards summed, the
  max of the last two frames."""

  def __init__(self, inner, skip: int = 4):
    self.inner, self.skip = inner, skip
    self.num_actions = inner.num_actions

  def reset(self) -> np.ndarray:
    return self.inner.reset()

  def step(self, action):
    total, frames, over = 0.0, [], False
    for _ in range(self.skip):
      frame, reward, over = self.inner.step(action)
      total += reward
      frames = (frames + [frame])[-2:]
      if over:
        break
    return np.maximum(frames[0], frames[-1]), total, over

  def lives(self) -> int:
    return self.inner.lives()


def resize(frame: np.ndarray) -> np.ndarray:
  """A grayscale frame as 84x84 uint8 (bilinear)."""
  return np.asarray(Image.fromarray(frame).resize((SIZE, SIZE), Image.BILINEAR), np.uint8)


class Nature:
  """84x84, a stack of 4, lost lives terminal (training), clipped rewards, a time limit
  in agent steps, auto-reset. step -> (obs, reward, terminal, boundary, score)."""

  def __init__(self, inner, life_loss: bool = True, clip: bool = True,
               max_steps: int = MAX_EPISODE_FRAMES // 4):
    self.inner, self.life_loss, self.clip, self.max_steps = inner, life_loss, clip, max_steps
    self.num_actions = inner.num_actions
    self.stack = np.zeros((SIZE, SIZE, STACK), np.uint8)
    self.t = 0
    self.lives = 0

  def _push(self, frame) -> np.ndarray:
    self.stack = np.concatenate([self.stack[..., 1:], resize(frame)[..., None]], -1)
    return self.stack

  def reset(self) -> np.ndarray:
    self.stack[:] = 0
    self.t = 0
    obs = self._push(self.inner.reset())
    self.lives = self.inner.lives()
    return obs.copy()

  def step(self, action):
    frame, score, over = self.inner.step(action)
    self.t += 1
    obs = self._push(frame).copy()
    lives = self.inner.lives()
    lost = lives < self.lives
    self.lives = lives
    boundary = over or self.t >= self.max_steps
    terminal = boundary or (self.life_loss and lost)
    reward = float(np.clip(score, -1.0, 1.0)) if self.clip else score
    if boundary:
      obs = self.reset()
    return obs, reward, terminal, boundary, score


def nature(game: str, seed: int, training: bool = True, noop_max: int = 30) -> Nature:
  """The whole Nature pipeline over the ROM `game`."""
  rng = np.random.default_rng(seed)
  return Nature(MaxAndSkip(NoopStart(Game(game, seed), noop_max, rng)), life_loss=training)


class HostEnvs:
  """Emulators kept on the host, by id; what the device holds of each is its id."""

  def __init__(self, game: str, training: bool, seed: int):
    self.game, self.training, self.seed = game, training, seed
    self.envs: dict[int, Nature] = {}
    self.ids = itertools.count()

  def _get(self, i: int) -> tuple[Nature, np.ndarray | None]:
    """The env with id i, made (and reset) if this process has not got it: a resumed
    run's ids name emulators of the last process."""
    if i in self.envs:
      return self.envs[i], None
    env = self.envs[i] = nature(self.game, self.seed * 1_000_003 + i, self.training)
    return env, env.reset()

  def reset(self, _key) -> tuple[np.ndarray, np.ndarray]:
    i = next(self.ids)
    env, obs = self._get(i)
    return (obs if obs is not None else env.reset()), np.int32(i)

  def step(self, i, action):
    env, fresh = self._get(int(i))
    if fresh is not None:  # a new emulator after a resume: its first observation
      return fresh, np.float32(0), np.bool_(False), np.bool_(False), np.float32(0)
    obs, reward, terminal, boundary, score = env.step(int(action))
    return obs, np.float32(reward), np.bool_(terminal), np.bool_(boundary), np.float32(score)


def make(game: str, training: bool, seed: int) -> Env:
  """An envs.Env over host emulators of `game` stepped by io_callback (sequentially
  under vmap); UserError for a game not in ale-py's ROMs."""
  probe = Game(game, seed)  # checks the name, gives the action count
  host = HostEnvs(game, training, seed)
  obs_t = jax.ShapeDtypeStruct((SIZE, SIZE, STACK), jnp.uint8)
  scalar = lambda dt: jax.ShapeDtypeStruct((), dt)

  def reset(key) -> tuple[Any, Any]:
    return io_callback(host.reset, (obs_t, scalar(jnp.int32)), key)

  def step(key, state, action):
    del key
    obs, reward, terminal, boundary, score = io_callback(
        host.step, (obs_t, scalar(jnp.float32), scalar(bool), scalar(bool),
                    scalar(jnp.float32)), state, action)
    return obs, state, reward, terminal, boundary, score

  return Env(f"atari:{game}", reset, step, (SIZE, SIZE, STACK), probe.num_actions,
             jnp.uint8, MAX_EPISODE_FRAMES // 4, frame_stack=STACK, host=host)
