"""Deep Q-networks (Mnih et al. 2015) with the whole act-store-sample-learn loop compiled.

    outcome = dqn.run(config, workdir)

One loop step is one agent step of every seed's `num_envs` environments: act
epsilon-greedily, step the (gymnax) environments, store the row in the replay memory,
and, when due, sample a batch and take a gradient step on the Huber loss of the TD
error (the paper's error clipping), and copy the online network to the target. A
call of the compiled step runs `steps_per_call` of them as one `lax.scan`, on the loop
driver (train/loop.py), which owns checkpoints, metrics, preemption and results. The
random numbers of a call (exploration, environment keys, replay indices) are drawn at its
start, so the stream of a seed depends on `steps_per_call` as well as on the seed.

Seeds: `num_seeds` independent agents (seeds seed, seed+1, ...) are one vmapped state.
The step counter and everything that hangs on it (epsilon, when to learn, when to copy
the target) are shared and unbatched, so the conditionals stay real branches under
vmap and an update costs nothing on the steps without one. The seeds are split over
the mesh's 'data' axis (`seed_mesh`): on a CPU split into devices (`--cpu_devices`) or
on several accelerators, each part of the seeds runs on its own core or chip.

Counting: `num_train_steps`, `dqn.replay_start`, `dqn.train_every`, `dqn.target_every`,
`dqn.epsilon_steps` and `dqn.replay_capacity` count agent steps (transitions) of one
seed, all its environments together, as the Nature paper's hyperparameter table counts
them ("frames" there are agent steps); `frames` in the metrics are emulator frames,
agent steps times `dqn.frame_skip`. The loop's log, eval and checkpoint periods count
loop steps (num_envs agent steps each).

An episode's time limit ends it as a terminal state (no bootstrap), as in purejaxrl.
"""

import dataclasses
import functools
import logging
import math
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from deeplearn_jax import configs, metrics, models, parallel, pictures, run_folder
from deeplearn_jax.errors import UserError
from deeplearn_jax.jit_options import RUN_RARELY
from deeplearn_jax.rl import envs, replay
from deeplearn_jax.train import loop, nan_guard, optimizers

logger = logging.getLogger(__name__)


def base_config() -> ml_collections.ConfigDict:
  """configs.base() plus environment, seeds, network, optimizer and DQN settings:
  CartPole with CleanRL's and purejaxrl's DQN recipe, the learning rate decaying to 0
  (see experiments/dqn.py for the variants and what was measured)."""
  c = configs.base()
  c.env = ml_collections.ConfigDict(dict(name="CartPole-v1"))
  c.num_seeds = 8                 # independent agents in one vmapped run, split over
                                  # mesh.data devices (-1: as many as divide num_seeds)
  c.num_envs = 10                 # environments per agent, stepped together (purejaxrl's
                                  # 10: with train_every 10, one update per loop step)
  c.num_train_steps = 300_000     # agent steps per seed (all its environments)
  c.steps_per_call = 500          # loop steps (of num_envs agent steps) per compiled call
  c.batch_size = 128
  c.dtype = "float32"
  c.log_every_steps = 500
  # The step's compiling at LLVM level 1 takes 3.7 s instead of 8.3 s and runs as fast.
  c.step_optimization_level = 1
  c.eval_every_steps = 2500       # loop steps; -1: only at the end
  c.eval_every_epochs = -1.0
  c.checkpoint_every_steps = 10_000  # about every 15 s here; each save costs 0.3 s
  c.checkpoint_every_epochs = -1.0
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(120, 84)))
  c.optimizer = optimizers.default_config()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2.5e-4
  c.optimizer.schedule = "linear"  # to 0 at the last update: a steadier final policy
  c.optimizer.centered = False    # rmsprop: centered (the Nature DQN's)
  c.dqn = ml_collections.ConfigDict(dict(
      gamma=0.99,
      double=False,               # Double DQN (van Hasselt et al. 2016): the online net
                                  # picks the next action, the target net values it
      replay_capacity=10_000,     # transitions
      replay_start=10_000,        # agent steps of the random-ish policy before learning
      train_every=10,             # agent steps per gradient step
      target_every=500,           # agent steps between copies to the target network
      epsilon_start=1.0,
      epsilon_end=0.05,
      epsilon_steps=150_000,      # agent steps of the linear anneal
      # TD errors beyond this count linearly (the Nature DQN's error clipping: 1). On
      # CartPole 1 let Q rise past the 100 no return can reach, into the millions: a
      # terminal transition (target 1 where Q is ~50) pulled no harder than any other.
      # CartPole's errors never reach 1,000: the squared error CleanRL and purejaxrl use.
      huber_delta=1000.0,
      frame_skip=1,               # emulator frames per agent step (for `frames`)
      eval_epsilon=0.0,           # 0: greedy evaluation
      eval_episodes=10,           # per seed
      eval_seed=12345,
  ))
  return c


@flax.struct.dataclass
class AgentState:
  """Everything to continue a run. `step` and the NaN fields are shared by the seeds;
  every other leaf has a leading seed axis."""
  step: jax.Array            # loop steps done
  params: Any
  target_params: Any
  opt_state: Any
  replay: replay.Replay
  env_state: Any
  obs: jax.Array             # [seeds, envs, *obs]
  rng: jax.Array
  episode_return: jax.Array  # [seeds, envs] running return of the current episode
  last_return: jax.Array     # [seeds, envs] return of the last finished episode
  loss: jax.Array            # [seeds] the last update's loss
  q_mean: jax.Array          # [seeds] its mean Q(s, a)
  bad_step: jax.Array        # first loop step with a non-finite loss, or -1
  skipped: jax.Array
  lr_scale: jax.Array


def seed_slice(state: AgentState, i: int) -> AgentState:
  """The state of seed i alone, as a run of that one seed holds it (a seed axis of 1)."""
  one = lambda x: x[i:i + 1]
  mem = state.replay
  mem = mem.replace(**{k: one(getattr(mem, k)) for k in
                       ("frames", "action", "reward", "terminal", "boundary")})
  shared = ("step", "bad_step", "skipped", "lr_scale", "replay")
  return state.replace(replay=mem, **{f.name: jax.tree.map(one, getattr(state, f.name))
                                      for f in dataclasses.fields(state)
                                      if f.name not in shared})


def seed_mesh(config: ml_collections.ConfigDict):
  """The mesh whose 'data' axis splits the seeds: `mesh.data` devices, or with -1 the
  most devices that divide num_seeds."""
  n = config.mesh.data
  if n == -1:
    n = math.gcd(config.num_seeds, jax.device_count())
  if n < 1 or config.num_seeds % n:
    raise UserError(f"config.mesh.data={config.mesh.data} must divide config.num_seeds="
                    f"{config.num_seeds} (or be -1)")
  return parallel.make_mesh(ml_collections.ConfigDict(dict(data=n, fsdp=1, model=1)))


def seed_shardings(abstract: AgentState, mesh) -> AgentState:
  """Every seed's leaves (the seed axis leads) on its part of the 'data' axis; the shared
  counters replicated."""
  split = NamedSharding(mesh, P("data"))
  whole = NamedSharding(mesh, P())
  mem = jax.tree.map(lambda _: split, abstract.replay).replace(pos=whole, size=whole)
  return jax.tree.map(lambda _: split, abstract).replace(
      step=whole, bad_step=whole, skipped=whole, lr_scale=whole, replay=mem)


def _due(n, every: int, stride: int):
  """loop.due for traced counters: a multiple of `every` fell in (n - stride, n]."""
  return (n // every) > ((n - stride) // every)


def check(config: ml_collections.ConfigDict, env: envs.Env) -> None:
  """UserError for settings that cannot run, before anything is written."""
  d = config.dqn
  e = config.num_envs
  if min(config.num_seeds, e, config.batch_size, config.steps_per_call, d.train_every,
         d.target_every, d.eval_episodes) < 1:
    raise UserError("num_seeds, num_envs, batch_size, steps_per_call, dqn.train_every, "
                    "dqn.target_every and dqn.eval_episodes must be >= 1")
  if d.replay_capacity // e < config.batch_size or d.replay_capacity // e < 2:
    raise UserError(f"the replay memory ({d.replay_capacity} transitions) is smaller than a "
                    f"batch ({config.batch_size}): raise config.dqn.replay_capacity")
  if d.replay_start < max(config.batch_size, 2 * e):
    raise UserError(f"config.dqn.replay_start={d.replay_start} must be at least a batch "
                    f"({config.batch_size}) and two rows of environments ({2 * e})")
  chunk = e * config.steps_per_call
  if config.num_train_steps < chunk or config.num_train_steps % chunk:
    raise UserError(f"config.num_train_steps={config.num_train_steps} must be a positive "
                    f"multiple of num_envs x steps_per_call = {chunk} agent steps")
  nan_guard.validate(config)
  del env


def build(config: ml_collections.ConfigDict, env: envs.Env):
  """(model, tx, init, step, evaluate) of the compiled agent."""
  check(config, env)
  d, e, s = config.dqn, config.num_envs, config.num_seeds
  model = models.create(config.model, env.num_actions, config.dtype)
  # The schedule counts gradient steps: those of a run of num_train_steps agent steps.
  updates = max(1, (config.num_train_steps - d.replay_start) // d.train_every)
  tx, _ = optimizers.create(config.optimizer, 1, updates)
  q = lambda p, x: model.apply({"params": p}, x)
  updates_per_due = max(1, e // d.train_every)
  stack = env.frame_stack
  frame_shape = env.obs_shape[:-1] if stack > 1 else env.obs_shape
  newest = (lambda obs: obs[..., -1]) if stack > 1 else (lambda obs: obs)

  def init_one(seed):
    k_params, k_env, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = model.init(k_params, jnp.zeros((1, *env.obs_shape), jnp.float32))["params"]
    obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, e))
    return dict(params=params, target_params=params, opt_state=tx.init(params),
                env_state=env_state, obs=obs, rng=k_run,
                episode_return=jnp.zeros(e), last_return=jnp.zeros(e), loss=jnp.zeros(()),
                q_mean=jnp.zeros(()))

  def init() -> AgentState:
    seeds = config.seed + jnp.arange(s)
    mem = replay.create(d.replay_capacity, e, frame_shape, env.store_dtype, seeds=s)
    return AgentState(step=jnp.zeros((), jnp.int32), bad_step=jnp.full((), -1, jnp.int32),
                      skipped=jnp.zeros((), jnp.int32), lr_scale=jnp.ones((), jnp.float32),
                      replay=mem, **jax.vmap(init_one)(seeds))

  def epsilon(agent_steps):
    frac = jnp.clip(agent_steps / max(1, d.epsilon_steps), 0.0, 1.0)
    return d.epsilon_start + frac * (d.epsilon_end - d.epsilon_start)

  def draw(rng):
    """(next rng, this call's random numbers, steps first) of one seed. Drawn once per
    call, not per agent step: JAX's PRNG (threefry) is a rolled loop on CPUs, and the
    dozen small draws of an agent step cost more than the rest of an acting step."""
    rng, k_explore, k_random, k_env, k_rows, k_envs = jax.random.split(rng, 6)
    acting = (config.steps_per_call, e)
    batches = (config.steps_per_call, updates_per_due, config.batch_size)
    return rng, {"explore": jax.random.uniform(k_explore, acting),
                 "random_action": jax.random.randint(k_random, acting, 0, env.num_actions),
                 "env_keys": jax.random.split(k_env, acting),
                 "row_bits": jax.random.bits(k_rows, batches),
                 "env_index": jax.random.randint(k_envs, batches, 0, e)}

  def act(params, obs, explore, random_action, eps):
    greedy = jnp.argmax(q(params, obs), axis=-1)
    return jnp.where(explore < eps, random_action, greedy)

  def loss_fn(params, target_params, batch):
    q_now = q(params, batch["obs"])
    q_next = q(target_params, batch["next_obs"])
    if d.double:
      pick = jnp.argmax(q(jax.lax.stop_gradient(params), batch["next_obs"]), -1)
      v = jnp.take_along_axis(q_next, pick[:, None], -1)[:, 0]
    else:
      v = jnp.max(q_next, -1)
    y = batch["reward"] + d.gamma * (1.0 - batch["terminal"]) * v
    q_a = jnp.take_along_axis(q_now, batch["action"][:, None], -1)[:, 0]
    loss = jnp.mean(optax.huber_loss(q_a, jax.lax.stop_gradient(y), delta=d.huber_delta))
    return loss, jnp.mean(q_a)

  def learn(params, opt_state, target_params, batches, lr_scale):
    def one(carry, batch):
      params, opt_state = carry
      (loss, q_a), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, target_params, batch)
      upd, new_opt = tx.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, jax.tree.map(lambda u: lr_scale * u, upd))
      ok = jnp.isfinite(loss)
      keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
      return (keep(new_params, params), keep(new_opt, opt_state)), (loss, q_a)
    if updates_per_due == 1:  # no loop: control flow nested in the scan costs on CPU
      (params, opt_state), (loss, q_a) = one((params, opt_state),
                                             jax.tree.map(lambda x: x[0], batches))
      return params, opt_state, loss, q_a
    (params, opt_state), (loss, q_a) = jax.lax.scan(one, (params, opt_state), batches)
    return params, opt_state, loss[-1], q_a[-1]

  def seed_step(seed, mem, t, lr_scale, drawn):
    """One agent step of one seed (vmapped) with its draws of this step; t, the loop
    step, and the memory's write position are shared. Only the networks and optimizer
    pass through the conditionals: the memory is read (a batch is gathered) outside."""
    done_before = t * e
    action = act(seed["params"], seed["obs"], drawn["explore"], drawn["random_action"],
                 epsilon(done_before))
    obs, env_state, reward, terminal, boundary, score = jax.vmap(env.step)(
        drawn["env_keys"], seed["env_state"], action)
    mem = replay.add(mem, newest(seed["obs"]), action, reward, terminal, boundary)
    ret = seed["episode_return"] + score
    n = done_before + e
    batches = jax.vmap(lambda bits, envs: replay.sample_at(mem, bits, envs, stack))(
        drawn["row_bits"], drawn["env_index"])
    nets = (seed["params"], seed["opt_state"], seed["loss"], seed["q_mean"])
    params, opt_state, loss, q_mean = jax.lax.cond(
        (n >= d.replay_start) & _due(n, d.train_every, e),
        lambda: learn(seed["params"], seed["opt_state"], seed["target_params"], batches,
                      lr_scale),
        lambda: nets)
    target = jax.lax.cond(_due(n, d.target_every, e), lambda: params,
                          lambda: seed["target_params"])
    return {"obs": obs, "env_state": env_state, "params": params,
            "opt_state": opt_state, "loss": loss, "q_mean": q_mean, "target_params": target,
            "episode_return": jnp.where(boundary, 0.0, ret),
            "last_return": jnp.where(boundary, ret, seed["last_return"])}, mem

  per_seed = ("params", "target_params", "opt_state", "env_state", "obs",
              "episode_return", "last_return", "loss", "q_mean")

  def one_step(state: AgentState, drawn):
    seeds = {k: getattr(state, k) for k in per_seed}
    seeds, mem = jax.vmap(seed_step, (0, replay.SEED_AXES, None, None, 0),
                          (0, replay.SEED_AXES))(seeds, state.replay, state.step,
                                                 state.lr_scale, drawn)
    # Per seed, unreduced: a reduction over the seeds here would be a collective between
    # the devices that split them on every agent step; step() reduces once per call.
    return state.replace(step=state.step + 1, replay=mem, **seeds), {
        "loss": seeds["loss"], "q_mean": seeds["q_mean"],
        "episode_return": jnp.mean(seeds["last_return"], -1)}

  def step(state):
    first = state.step
    rng, drawn = jax.vmap(draw)(state.rng)
    drawn = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), drawn)  # steps first
    state, per_seed = jax.lax.scan(one_step, state.replace(rng=rng), drawn)
    finite = jnp.all(jnp.isfinite(per_seed["loss"]), -1)  # [steps]
    bad_now = jnp.where(jnp.all(finite), -1, first + jnp.argmin(finite))
    state = state.replace(
        bad_step=jnp.where(state.bad_step >= 0, state.bad_step, bad_now),
        skipped=state.skipped + jnp.sum(~finite).astype(jnp.int32))
    ret = per_seed["episode_return"]
    return state, {"loss": jnp.mean(per_seed["loss"], -1),
                   "q_mean": jnp.mean(per_seed["q_mean"], -1),
                   "epsilon": epsilon((first + jnp.arange(config.steps_per_call)) * e),
                   "episode_return": jnp.mean(ret, -1),
                   "episode_return_min": jnp.min(ret, -1),
                   "episode_return_max": jnp.max(ret, -1)}

  evaluate = make_evaluate(config, envs.make(config.env.name, training=False,
                                            seed=d.eval_seed), q)
  return model, tx, init, step, evaluate


def make_evaluate(config, env: envs.Env, q):
  """evaluate(state) -> per-seed mean returns of `dqn.eval_episodes` episodes each,
  epsilon `dqn.eval_epsilon`, from a fixed key: {"mean_return", "return_seed<i>"}."""
  d = config.dqn

  def episode(params, key):
    k_reset, k_run = jax.random.split(key)
    obs, env_state = env.reset(k_reset)

    def one(carry):
      obs, env_state, total, alive, t, k = carry
      k, k_act, k_explore, k_step = jax.random.split(k, 4)
      greedy = jnp.argmax(q(params, obs[None])[0])
      a = jnp.where(jax.random.uniform(k_explore) < d.eval_epsilon,
                    jax.random.randint(k_act, (), 0, env.num_actions), greedy)
      obs, env_state, _, _, boundary, score = env.step(k_step, env_state, a)
      return obs, env_state, total + score, ~boundary, t + 1, k

    carry = (obs, env_state, jnp.zeros(()), jnp.ones((), bool), jnp.zeros((), jnp.int32),
             k_run)
    return jax.lax.while_loop(lambda c: c[3] & (c[4] < env.max_steps), one, carry)[2]

  @functools.partial(jax.jit, compiler_options=RUN_RARELY)
  def returns(params):
    keys = jax.random.split(jax.random.PRNGKey(d.eval_seed), d.eval_episodes)
    per_episode = jax.vmap(lambda p: jax.vmap(functools.partial(episode, p))(keys))(params)
    return jnp.mean(per_episode, -1)

  @jax.jit
  def greedy(params, obs):
    return jnp.argmax(q(params, obs[None])[0])

  def host_returns(params):
    """Host emulators (Atari) cannot be stepped under a vmapped while_loop: episode by
    episode here."""
    rng = np.random.default_rng(d.eval_seed)
    out = []
    for i in range(config.num_seeds):
      p = jax.tree.map(lambda x: x[i], params)
      total = 0.0
      for _ in range(d.eval_episodes):
        obs, env_id = env.host.reset(None)
        for _ in range(env.max_steps):
          a = (int(rng.integers(env.num_actions)) if rng.random() < d.eval_epsilon
               else int(greedy(p, obs)))
          obs, _, _, boundary, score = env.host.step(env_id, a)
          total += float(score)
          if boundary:
            break
      out.append(total / d.eval_episodes)
    return out

  def evaluate(state) -> dict[str, float]:
    per_seed = np.asarray(host_returns(state.params) if env.host is not None else
                          jax.device_get(returns(state.params)), np.float64)
    return {"mean_return": float(per_seed.mean()), "min_seed_return": float(per_seed.min()),
            **{f"return_seed{i}": float(r) for i, r in enumerate(per_seed)}}

  return evaluate


def plot_returns(workdir: str, title: str) -> str:
  """curves.png: training return (mean over seeds, band from the worst to the best
  seed) and evaluation return against frames."""
  rows = metrics.read_metrics(workdir)
  train = [r for r in rows if r["split"] == "train" and "frames" in r]
  evals = [r for r in rows if r["split"] in ("eval", "test") and "mean_return" in r]
  fig = pictures.figure(figsize=(6, 3.8))
  ax = fig.subplots()
  if train:
    f = [r["frames"] for r in train]
    ax.fill_between(f, [r["episode_return_min"] for r in train],
                    [r["episode_return_max"] for r in train], alpha=0.25,
                    label="seeds: worst to best")
    ax.plot(f, [r["episode_return"] for r in train], label="training return (mean)")
  if evals:
    ax.plot([r["frames"] for r in evals], [r["mean_return"] for r in evals], "o",
            label="evaluation (mean over seeds)")
  ax.set_xlabel("frames")
  ax.set_ylabel("episode return")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title)
  fig.tight_layout()
  path = os.path.join(workdir, "curves.png")
  fig.savefig(path, dpi=110)
  return path


def run(config: ml_collections.ConfigDict, workdir: str) -> loop.Outcome:
  """Trains (or resumes) in workdir; results: mean_return, per_seed_returns, frames,
  env_steps_per_second (agent steps of all seeds per second), train_seconds."""
  env = envs.make(config.env.name, seed=config.seed)
  model, tx, init, step, evaluate = build(config, env)
  mesh = seed_mesh(config)
  e, skip = config.num_envs, config.dqn.frame_skip
  total = config.num_train_steps // e
  frames = lambda loop_step: (loop_step + 1) * e * skip

  def results(test: dict, last_train: dict, state) -> dict[str, Any]:
    del state
    per_seed = [test[f"return_seed{i}"] for i in range(config.num_seeds)]
    return {"mean_return": test["mean_return"], "per_seed_returns": per_seed,
            "frames": config.num_train_steps * skip, "agent_steps": config.num_train_steps,
            "final_train_return": last_train.get("episode_return"),
            "params_per_seed": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
                jax.eval_shape(init).params)) // config.num_seeds}

  title = f"DQN {config.env.name}, {config.num_seeds} seeds"
  trainer = loop.Trainer(
      name=title, init=init, step=step,
      evaluate=lambda state: {**evaluate(state), "frames": frames(int(state.step) - 1)},
      results=results, log_extras=lambda s: {"frames": frames(s)},
      after=lambda state, res: plot_returns(workdir, title),
      progress={"return": "episode_return", "eps": "epsilon"},
      examples_per_step=e * config.num_seeds, steps_per_call=config.steps_per_call,
      init_error=f"the network cannot read {config.env.name} observations {env.obs_shape}",
      shardings=seed_shardings)
  outcome = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=total,
                     total_steps=total)
  res = dict(outcome.results)
  res["env_steps_per_second"] = res.get("examples_per_second")
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), res)
  return loop.Outcome(res, outcome.state)
