"""DQN (experiments/dqn.py, deeplearn_jax/rl): the compiled agent learns CartPole in a
small budget, vmapped seeds split over two devices equal single-seed runs, a run killed
after a checkpoint resumes exactly (replay memory and environments included), the
replay memory's frame stacks equal the environment's, the Nature Atari wrappers on
hand-made frames and against ale-py itself, and bad input refused with one line."""

import jax
import numpy as np
import pytest

from conftest import override
from deeplearn_jax import metrics
from deeplearn_jax.errors import UserError
from deeplearn_jax.rl import atari, dqn, envs, replay
from deeplearn_jax.train import loop
from experiments import dqn as experiment

# Their module-scoped runs are made once: tests sharing them stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("dqn")


def _config(variant="smoke", **overrides):
  c = experiment.get_config(variant)
  return override(c, **{"optimizer.schedule": "constant", **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The smoke run: 2 vmapped seeds, 8,000 agent steps each."""
  workdir = tmp_path_factory.mktemp("dqn") / "run"
  return workdir, dqn.run(_config(), str(workdir))


def test_the_compiled_loop_learns_cartpole_in_a_small_budget(trained):
  workdir, outcome = trained
  res = outcome.results
  # A random policy scores ~22; both seeds' greedy policies must do far better.
  assert min(res["per_seed_returns"]) > 100, res
  assert res["frames"] == 8000 and res["env_steps_per_second"] > 0
  rows = [r for r in metrics.read_metrics(workdir) if r["split"] == "train"]
  assert {"frames", "episode_return", "wall_seconds", "loss"} <= set(rows[-1])
  assert rows[-1]["episode_return"] > rows[0]["episode_return"]
  assert (workdir / "curves.png").exists()


def _leaves_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(a),
                                          jax.device_get(b))))


def test_vmapped_seeds_equal_single_seed_runs(tmp_path):
  """1,000 agent steps, 125 updates: seed 1 of a 2-seed run, the seeds split over two
  of the test session's CPU devices, against a run of seed 1 alone. Environments,
  replay memory and keys agree bit for bit; the networks to float rounding: XLA's CPU
  backend sums a batched matmul (2 seeds) in another order than the plain one (1 seed),
  a difference of ~1e-7 per update."""
  short = dict(num_train_steps=1000, **{"dqn.replay_start": 500})
  both = dqn.run(_config(**short), str(tmp_path / "two")).state
  one = dqn.run(_config(num_seeds=1, seed=1, **short), str(tmp_path / "one")).state
  assert len(jax.tree.leaves(both.params)[0].sharding.device_set) == 2
  second = dqn.seed_slice(both, 1)
  for field in ("replay", "env_state", "obs", "rng", "last_return"):
    assert _leaves_equal(getattr(one, field), getattr(second, field)), field
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               jax.device_get(one.params), jax.device_get(second.params))


class _Killed(Exception):
  pass


def test_a_run_killed_after_a_checkpoint_resumes_exactly(trained, tmp_path, monkeypatch):
  _, whole = trained
  workdir = str(tmp_path / "run")

  class KillAfter(loop.PreemptionWatcher):
    """Dies (no final save, like kill -9) at step 1250, after the checkpoint at 1000."""
    def reached(self, step):
      if step >= 1250:
        raise _Killed
      return super().reached(step)

  monkeypatch.setattr(loop, "PreemptionWatcher", KillAfter)
  with pytest.raises(_Killed):
    dqn.run(_config(), workdir)
  monkeypatch.undo()
  resumed = dqn.run(_config(), workdir)
  # Networks, target, optimizer, replay memory, environment states and RNG.
  assert _leaves_equal(resumed.state, whole.state)
  assert resumed.results["per_seed_returns"] == whole.results["per_seed_returns"]


def test_the_replay_memory_stacks_frames_as_the_environment_does():
  """A memory of 2 envs x 7 rows (wrapping) against the stacks a frame-stacking env saw,
  with episode ends and lost lives (terminal, no boundary) along the way."""
  rng = np.random.default_rng(0)
  rows, envs_, stack, steps = 7, 2, 4, 30
  mem = replay.create(rows * envs_, envs_, (3,), np.uint8)
  add = jax.jit(replay.add)
  stack_at = jax.jit(replay.stack_at, static_argnums=3)
  seen = {}  # (row, env) -> the stacked observation stored there
  stacks = np.zeros((envs_, 3, stack), np.uint8)
  for t in range(steps):
    frame = rng.integers(1, 255, (envs_, 3), dtype=np.uint8)
    stacks = np.concatenate([stacks[..., 1:], frame[..., None]], -1)
    boundary = rng.random(envs_) < 0.2
    terminal = boundary | (rng.random(envs_) < 0.2)
    for e in range(envs_):
      seen[(t % rows, e)] = stacks[e].copy()
    mem = add(mem, frame, np.zeros(envs_), np.zeros(envs_), terminal, boundary)
    stacks[boundary] = 0  # a new episode starts from zeros
  oldest = steps % rows
  for back in range(stack - 1, rows):  # rows whose stacks are still whole
    row = (oldest + back) % rows
    for e in range(envs_):
      got = stack_at(mem, np.array([row]), np.array([e]), stack)[0]
      np.testing.assert_array_equal(got, seen[(row, e)])
  batch = replay.sample(mem, jax.random.PRNGKey(0), 64, stack)
  assert batch["obs"].shape == (64, 3, stack) and batch["next_obs"].shape == (64, 3, stack)


class _Frames:
  """A hand-made game: frame k is all k, reward k on frame k, a life lost at frames
  `lose`, game over at frame `end`."""
  num_actions = 4

  def __init__(self, end=40, lose=(9,), lives=3):
    self.end, self.lose, self.start_lives = end, lose, lives
    self.actions = []

  def reset(self):
    self.k, self.life = 0, self.start_lives
    return np.full((210, 160), 0, np.uint8)

  def step(self, action):
    self.actions.append(action)
    self.k += 1
    self.life -= self.k in self.lose
    return np.full((210, 160), self.k, np.uint8), float(self.k), self.k >= self.end

  def lives(self):
    return self.life


def test_max_and_skip_repeats_sums_and_maxes_the_last_two():
  env = atari.MaxAndSkip(_Frames(end=6))
  env.reset()
  frame, reward, over = env.step(2)
  assert env.inner.actions == [2] * 4 and reward == 1 + 2 + 3 + 4 and not over
  assert np.all(frame == 4)   # max of frames 3 and 4
  frame, reward, over = env.step(1)   # the game ends after 2 of the 4 frames
  assert over and reward == 5 + 6 and np.all(frame == 6) and len(env.inner.actions) == 6


def test_noop_starts_take_one_to_thirty_noops():
  counts = set()
  for seed in range(20):
    game = _Frames(end=100)
    atari.NoopStart(game, 30, np.random.default_rng(seed)).reset()
    assert set(game.actions) <= {0}
    counts.add(len(game.actions))
  assert min(counts) >= 1 and max(counts) <= 30 and len(counts) > 5


def test_the_nature_wrapper_stacks_clips_and_ends_lives():
  env = atari.Nature(atari.MaxAndSkip(_Frames(end=20, lose=(9,))), max_steps=100)
  obs = env.reset()
  assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8 and not obs.any()
  out = [env.step(0) for _ in range(5)]
  obs, reward, terminal, boundary, score = out[0]
  assert np.all(obs[..., :3] == 0) and np.all(obs[..., 3] == 4)   # zeros, then frame 4
  assert reward == 1.0 and score == 1 + 2 + 3 + 4                # clipped, score kept
  obs = out[1][0]
  assert np.all(obs[..., 2] == 4) and np.all(obs[..., 3] == 8)
  assert [o[2] for o in out] == [False, False, True, False, True]  # life lost in frames 9-12
  assert [o[3] for o in out] == [False] * 4 + [True]               # ... but no boundary
  assert np.all(out[2][0][..., 3] == 12)                           # and no reset
  obs, _, terminal, boundary, _ = out[4]   # frames 17-20: game over, auto-reset
  assert terminal and boundary and not obs[..., :3].any()


def test_the_nature_pipeline_matches_ale_py_frame_by_frame():
  """Breakout through Game + MaxAndSkip against a second emulator stepped by hand."""
  import ale_py
  from ale_py import roms
  env = atari.MaxAndSkip(atari.Game("breakout", seed=3))
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.setInt("random_seed", 3)
  ale.setFloat("repeat_action_probability", 0.0)
  ale.loadROM(roms.get_rom_path("breakout"))
  actions = ale.getMinimalActionSet()
  env.reset()
  ale.reset_game()
  rng = np.random.default_rng(0)
  for _ in range(200):
    a = int(rng.integers(0, len(actions)))
    frame, reward, over = env.step(a)
    raw = []
    total = 0
    for _ in range(4):
      total += ale.act(actions[a])
      raw.append(ale.getScreenGrayscale())
      if ale.game_over():
        break
    np.testing.assert_array_equal(frame, np.max(raw[-2:], axis=0))
    assert reward == total and over == ale.game_over()
    if over:
      break
  stacked = atari.nature("breakout", seed=3)
  obs = stacked.reset()
  assert obs.shape == (84, 84, 4) and obs[..., 3].max() > 0


@pytest.mark.parametrize("overrides, message", [
    ({"env.name": "Pong-v9"}, "unknown environment 'Pong-v9'"),
    ({"env.name": "atari:brekout"}, "unknown Atari game 'brekout'"),
    ({"dqn.replay_capacity": 40}, "smaller than a batch"),
    ({"mesh.data": 3}, "must divide config.num_seeds=2"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, overrides, message):
  with pytest.raises(UserError, match=message):
    experiment.train_and_evaluate(_config(**overrides), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_the_environments_names_are_checked_once():
  assert envs.make("CartPole-v1").num_actions == 2
