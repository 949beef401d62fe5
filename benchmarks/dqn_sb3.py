"""Stable-Baselines3's PyTorch DQN against ours on CartPole-v1: wall time to solve it on
the same CPU, the two taking turns.

    python benchmarks/dqn_sb3.py [--seeds=8] [--rounds=1] [--sb3_budget=100000]
        [--eval_every=2500] [--torch_threads=N] [--cpu_devices=N] [--compile_cache]

Quick check of the code path (about a minute; the numbers are not a measurement):

    python benchmarks/dqn_sb3.py --seeds=1 --sb3_budget=3000 --eval_every=1000 \
        --our_steps=20000 --out=/tmp/sb3_smoke.json

SB3: stable_baselines3.DQN("MlpPolicy") on gymnasium's CartPole-v1, device "cpu", torch
with --torch_threads threads (default: every core), at RL Zoo's CartPole-v1 settings
(DLR-RM/rl-baselines3-zoo, hyperparams/dqn.yml at commit ce95481b, marked "Almost
Tuned" there): learning rate 2.3e-3, batch 64, replay 100,000, learning from 1,000
steps, gamma 0.99, target copied every 10 steps, 128 gradient steps every 256 env
steps, epsilon 1 -> 0.04 over 0.16 of the zoo's 5e4 steps, two hidden layers of 256.
The zoo trains exactly 5e4 steps; here learn() is given --sb3_budget steps, so the
exploration fraction is rescaled to keep epsilon's anneal at the zoo's 8,000 steps.
Every --eval_every env steps a callback plays 10 deterministic (greedy) episodes on an
eval env of its own and stops training at the first mean return >= 475 (CartPole-v1's
reward threshold). Time to solve: wall seconds from the model's construction to the end
of that evaluation, evaluation included (its share apart as eval_s); unsolved within
the budget: null. The seeds run one after another, seed i a fresh model with seed=i.
Give torch no more threads than there are idle cores: with both cores of a 2-core
machine busy elsewhere, one gradient step of this network took 105 ms at 2 threads and
2.4 ms at 1 (its threads wait on each other).

Ours: experiments/dqn.py's default `cartpole` config (8 seeds vmapped in one compiled
run, 10 environments each, 300k agent steps a seed; --our_steps changes the last) run
in process by `dqn.run`, the experiment's own path (loop driver, checkpoints, metrics,
10 greedy episodes a seed every 25,000 agent steps and at the end), in a temporary
workdir. The seeds are split over --cpu_devices JAX CPU devices (the experiment's
--cpu_devices; default every core, the mesh taking the largest count dividing 8).
Without --compile_cache no compiled code is kept on disk, so the first round compiles
cold (with it, the experiment's persistent cache, as its command line uses). Reported: the
wall of `dqn.run` (compiling, evaluations and checkpoints included), the seconds JAX
spent tracing, lowering and compiling (its own monitoring events), the per-seed greedy
returns at the end, and the first evaluation at which every seed's return was >= 475:
agent steps per seed and the run's wall there (metrics.jsonl's wall_seconds, counted
from the loop's start: the state's init before it is not included).

Not like for like: SB3 stops at its first solved evaluation, one seed at a time; ours
runs all 8 seeds to the end of their fixed budget. Hence both "SB3's 8 seeds one after
another" (the sum) and "one SB3 seed" (the median) beside our one run.
Writes benchmarks/results/dqn_sb3.json.
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `experiments` is not an installed package

import gymnasium as gym  # noqa: E402
import jax  # noqa: E402
import stable_baselines3 as sb3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from deeplearn_jax import cli, metrics  # noqa: E402
from deeplearn_jax.rl import dqn  # noqa: E402
from experiments import dqn as dqn_experiment  # noqa: E402

ENV = "CartPole-v1"
SOLVED = 475.0       # CartPole-v1's reward_threshold
EVAL_EPISODES = 10
ZOO_STEPS = 50_000   # the zoo's n_timesteps, over which its exploration_fraction counts
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
           gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_final_eps=0.04,
           policy_kwargs=dict(net_arch=[256, 256]))
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class SolveCheck(BaseCallback):
  """Greedy evaluation every `every` env steps; stops training at the first solved one."""

  def __init__(self, eval_env, every: int, budget: int, start: float):
    super().__init__()
    self.eval_env, self.every, self.budget, self.start = eval_env, every, budget, start
    self.eval_s, self.solved_at, self.evals = 0.0, None, []

  def _on_step(self) -> bool:
    # learn() runs whole rollouts of train_freq steps, so it may pass the budget a little
    if self.num_timesteps % self.every or self.num_timesteps > self.budget:
      return True
    t = time.perf_counter()
    mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=EVAL_EPISODES,
                              deterministic=True)
    now = time.perf_counter()
    self.eval_s += now - t
    self.evals.append((self.num_timesteps, float(mean)))
    if mean >= SOLVED:
      self.solved_at = (self.num_timesteps, now - self.start)
      return False
    return True


def sb3_settings(budget: int) -> dict:
  """The zoo's settings for a run of `budget` steps: epsilon still anneals over 8,000."""
  return dict(ZOO, exploration_fraction=ZOO["exploration_fraction"] * ZOO_STEPS / budget)


def run_sb3(seed: int, budget: int, every: int) -> dict:
  env = Monitor(gym.make(ENV))
  eval_env = DummyVecEnv([lambda: Monitor(gym.make(ENV))])
  eval_env.seed(10_000 + seed)
  start = time.perf_counter()
  model = sb3.DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **sb3_settings(budget))
  check = SolveCheck(eval_env, every, budget, start)
  model.learn(total_timesteps=budget, callback=check)
  wall = time.perf_counter() - start
  steps, solve_s = check.solved_at or (None, None)
  return dict(seed=seed, solved=steps is not None, steps=steps, wall_to_solve_s=solve_s,
              wall_s=wall, eval_s=check.eval_s, steps_run=model.num_timesteps,
              evaluations=check.evals)


def our_config(steps: int):
  c = dqn_experiment.get_config("")  # the default variant: cartpole
  c.num_train_steps = steps
  c.progress = False
  return c


def run_ours(steps: int) -> dict:
  config = our_config(steps)
  compile_s = []
  listener = lambda event, secs, **_: compile_s.append(secs) if event in COMPILE_EVENTS else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    with tempfile.TemporaryDirectory(prefix="dqn_sb3_") as workdir:
      start = time.perf_counter()
      res = dqn.run(config, workdir).results
      wall = time.perf_counter() - start
      rows = metrics.read_metrics(workdir)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  evals = [r for r in rows if r["split"] in ("eval", "test") and "min_seed_return" in r]
  first = next((r for r in evals if r["min_seed_return"] >= SOLVED), None)
  return dict(wall_s=wall, compile_s=sum(compile_s), train_seconds=res["train_seconds"],
              per_seed_returns=res["per_seed_returns"], mean_return=res["mean_return"],
              all_seeds_solved_at_end=min(res["per_seed_returns"]) >= SOLVED,
              all_solved_first_at_steps=first and first["frames"],
              all_solved_first_at_wall_s=first and first["wall_seconds"],
              evaluations=[(r["frames"], r["min_seed_return"], r["mean_return"])
                           for r in evals])


def sb3_summary(rows: list[dict]) -> dict:
  times = [r["wall_to_solve_s"] if r["solved"] else math.inf for r in rows]
  median = statistics.median(times)
  steps = statistics.median(r["steps"] if r["solved"] else math.inf for r in rows)
  return dict(solved=sum(r["solved"] for r in rows), seeds=len(rows),
              median_wall_to_solve_s=None if math.isinf(median) else median,
              total_wall_s=sum(r["wall_s"] for r in rows),
              median_steps=None if math.isinf(steps) else steps)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, default=8, help="SB3 seeds, one after another")
  p.add_argument("--rounds", type=int, default=1, help="turns of SB3's seeds, then ours")
  p.add_argument("--sb3_budget", type=int, default=100_000, help="SB3 env steps at most")
  p.add_argument("--eval_every", type=int, default=2500, help="SB3 env steps per evaluation")
  p.add_argument("--torch_threads", type=int, default=os.cpu_count())
  p.add_argument("--our_steps", type=int, default=300_000,
                 help="our agent steps per seed (a multiple of 5,000)")
  p.add_argument("--cpu_devices", type=int, default=os.cpu_count(),
                 help="JAX CPU devices splitting our seeds (experiments.dqn --cpu_devices)")
  p.add_argument("--compile_cache", action="store_true",
                 help="our persistent compile cache, as the experiment's command uses")
  p.add_argument("--out", default=str(REPO / "benchmarks/results/dqn_sb3.json"))
  args = p.parse_args()

  torch.set_num_threads(args.torch_threads)
  if args.compile_cache:
    cli.setup_jax(cpu_devices=args.cpu_devices)
  else:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  config = our_config(args.our_steps)

  results = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join(["python", *sys.argv]),
      "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                  "schedulable_cores": len(os.sched_getaffinity(0)),
                  "load_average_at_start": os.getloadavg(),
                  "python": platform.python_version()},
      "versions": {"torch": torch.__version__, "stable_baselines3": sb3.__version__,
                   "jax": jax.__version__, "gymnasium": gym.__version__},
      "settings": {
          "solved_threshold": SOLVED, "eval_episodes": EVAL_EPISODES, "rounds": args.rounds,
          "sb3": {"seeds": args.seeds, "budget_steps": args.sb3_budget,
                  "eval_every_steps": args.eval_every, "torch_threads": torch.get_num_threads(),
                  "device": "cpu", "zoo_hyperparams": ZOO, "zoo_n_timesteps": ZOO_STEPS,
                  "exploration_fraction_used":
                  sb3_settings(args.sb3_budget)["exploration_fraction"],
                  "source": "DLR-RM/rl-baselines3-zoo hyperparams/dqn.yml @ ce95481b"},
          "ours": {"config": "experiments/dqn.py:cartpole", "cpu_devices": jax.device_count(),
                   "seed_devices": dqn.seed_mesh(config).shape["data"],
                   "compile_cache": args.compile_cache,
                   "config_values": json.loads(config.to_json())}},
      "rounds": [],
  }
  for r in range(args.rounds):
    sb3_rows = []
    for seed in range(args.seeds):
      row = run_sb3(seed, args.sb3_budget, args.eval_every)
      print(f"round {r} sb3 seed {seed}: solved={row['solved']} steps={row['steps']} "
            f"wall_to_solve={row['wall_to_solve_s']} eval_s={row['eval_s']:.1f}", flush=True)
      sb3_rows.append(row)
    ours = run_ours(args.our_steps)
    print(f"round {r} ours: wall={ours['wall_s']:.1f} s (compile {ours['compile_s']:.1f}) "
          f"returns={ours['per_seed_returns']}", flush=True)
    results["rounds"].append({"sb3": sb3_rows, "sb3_summary": sb3_summary(sb3_rows),
                              "ours": ours})
  results["load_average_at_end"] = os.getloadavg()

  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
  print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; solved = greedy mean >= {SOLVED}")
  for i, rnd in enumerate(results["rounds"]):
    s, o = rnd["sb3_summary"], rnd["ours"]
    med = s["median_wall_to_solve_s"]
    print(f"round {i}: SB3 {s['solved']}/{s['seeds']} seeds solved, median "
          f"{'unsolved' if med is None else f'{med:.1f} s'} to solve, "
          f"{s['total_wall_s']:.1f} s for all {s['seeds']} one after another")
    first = o["all_solved_first_at_steps"]
    print(f"round {i}: ours  {config.num_seeds} seeds in one run: {o['wall_s']:.1f} s "
          f"(compiling {o['compile_s']:.1f} s), end returns min "
          f"{min(o['per_seed_returns']):.1f} mean {o['mean_return']:.1f}; every seed >= "
          f"{SOLVED:.0f} first at " + (f"{first} agent steps, {o['all_solved_first_at_wall_s']:.1f}"
                                       f" s into the loop" if first else "no evaluation"))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
