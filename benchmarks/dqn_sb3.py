"""Wall time to solve CartPole-v1: Stable-Baselines3's PyTorch DQN (RL Zoo's tuned
hyperparameters) against ours, on the same CPU, taking turns.

    python benchmarks/dqn_sb3.py [--rounds=1] [--seeds=1]

SB3 2.9.2 with rl-baselines3-zoo's CartPole-v1 DQN settings: 50k timesteps, lr 2.3e-3,
batch 64, buffer 100k, learning starts 1,000, target update every 10 steps, train_freq
256 with 128 gradient steps, epsilon to 0.04 over the first 16%, an MLP of 256 and 256.
It is evaluated every 5,000 steps (10 greedy episodes); "solved" is the first
evaluation with mean return >= 475, its wall time the training time up to there
(evaluations excluded).

Ours: experiments/dqn.py's cartpole config with `--seeds` vmapped seeds, evaluated
(10 greedy episodes per seed) every 10k agent steps; solved when every seed's mean is
>= 475; the wall time includes compiling. Writes benchmarks/results/dqn_sb3.json.
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
import numpy as np  # noqa: E402
import jax  # noqa: E402

from deeplearn_jax.rl import dqn  # noqa: E402
from experiments import dqn as experiment  # noqa: E402

flags.DEFINE_integer("rounds", 1, "runs per side, taking turns")
flags.DEFINE_integer("seeds", 1, "our vmapped seeds")
flags.DEFINE_string("out", "benchmarks/results/dqn_sb3.json", "output JSON")
FLAGS = flags.FLAGS
SOLVED = 475.0


def sb3_solve(seed: int) -> dict:
  import gymnasium as gym
  import torch
  from stable_baselines3 import DQN

  env = gym.make("CartPole-v1")
  model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
              learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
              gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
              policy_kwargs=dict(net_arch=[256, 256]), seed=seed, verbose=0, device="cpu")
  test = gym.make("CartPole-v1")
  train_wall = train_cpu = 0.0
  solved_at, ret = None, None
  for chunk in range(10):  # 10 x 5,000 = the zoo's 50k timesteps
    w, c = time.perf_counter(), time.process_time()
    model.learn(5000, reset_num_timesteps=False)
    train_wall += time.perf_counter() - w
    train_cpu += time.process_time() - c
    returns = []
    for ep in range(10):
      obs, _ = test.reset(seed=10_000 + ep)
      done, total = False, 0.0
      while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, _ = test.step(action)
        total += r
        done = term or trunc
      returns.append(total)
    ret = float(np.mean(returns))
    if ret >= SOLVED:
      solved_at = (chunk + 1) * 5000
      break
  return dict(solved_at_steps=solved_at, last_eval_return=ret, train_wall_s=train_wall,
              train_cpu_s=train_cpu, torch_threads=torch.get_num_threads())


def ours_solve(seed: int, seeds: int) -> dict:
  c = experiment.get_config("cartpole")
  c.unlock()
  c.seed, c.num_seeds, c.progress = seed, seeds, False
  c.eval_every_steps = 10_000 // c.num_envs
  c.lock()
  with tempfile.TemporaryDirectory() as workdir:
    w, cpu = time.perf_counter(), time.process_time()
    res = dqn.run(c, workdir).results
    wall, cpu = time.perf_counter() - w, time.process_time() - cpu
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  solved = [r for r in rows if r["split"] in ("eval", "test") and r["min_seed_return"] >= SOLVED]
  first = solved[0] if solved else None
  return dict(solved_at_steps=first["frames"] if first else None,
              solved_at_wall_s=first["wall_seconds"] if first else None,
              per_seed_returns=res["per_seed_returns"], run_wall_s=wall, run_cpu_s=cpu,
              train_seconds=res["train_seconds"])


def main(_):
  from deeplearn_jax import cli
  cli.setup_jax()
  rows = {"sb3": [], "ours": []}
  for r in range(FLAGS.rounds):
    for name, fn in (("sb3", lambda: sb3_solve(r)), ("ours", lambda: ours_solve(r, FLAGS.seeds))):
      row = fn()
      print(name, json.dumps(row), flush=True)
      rows[name].append(row)
  out = {"rounds": rows, "load_average": os.getloadavg(), "jax": jax.__version__,
         "machine": platform.processor() or platform.machine()}
  Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)
