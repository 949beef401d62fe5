"""Our compiled DQN against purejaxrl's DQN recipe, both at purejaxrl's own settings.

    python benchmarks/dqn_purejaxrl.py [--steps=500000] [--rounds=1]

purejaxrl (luchris429/purejaxrl, purejaxrl/dqn.py at commit 19f8284) is not on PyPI and
does not run on today's gymnax (1.0.1: env.step returns 6 values). `peer_train` below
is our own rewrite of its recipe, step for step: CartPole-v1, 10 environments, a
flashbax flat buffer of 10,000 (add batch 10, sample batch 128), an MLP of 120 and 84,
Adam 2.5e-4, epsilon 1 -> 0.05 over 250k timesteps, learning from 10k timesteps when
timesteps % 10 == 0 (so once per vector step), the target copied when timesteps % 500
== 0, MSE loss, gamma 0.99, the whole run one jitted `lax.scan` vmapped over seeds,
its learning step behind a `lax.cond` on the (vmapped, hence batched) timestep count.

Ours (deeplearn_jax/rl/dqn.py) runs the same settings (its Huber loss in place of the
MSE; the same network, optimizer, buffer size, batch, cadences and schedule) through
`dqn.build`, in chunks of 1,000 vector steps. Both run one seed. The two take turns,
`rounds` times; each is measured in process CPU seconds (all threads; less sensitive
to the other jobs on this shared machine than wall time) and wall seconds, compiling
apart. Both end with the greedy return of their policy (ours from its evaluation;
theirs from the last 10 vector steps' finished episodes, their own metric).
Writes benchmarks/results/dqn_purejaxrl.json.
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from absl import app, flags  # noqa: E402
import flashbax as fbx  # noqa: E402
import flax.linen as nn  # noqa: E402
import gymnax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402

from deeplearn_jax.rl import dqn, envs  # noqa: E402

flags.DEFINE_integer("steps", 500_000, "timesteps (all environments) per run")
flags.DEFINE_integer("rounds", 1, "timed runs per side, taking turns")
flags.DEFINE_string("out", "benchmarks/results/dqn_purejaxrl.json", "output JSON")
FLAGS = flags.FLAGS

PEER = dict(NUM_ENVS=10, BUFFER_SIZE=10_000, BATCH=128, EPS_START=1.0, EPS_END=0.05,
            EPS_ANNEAL=250_000, TARGET_UPDATE=500, LR=2.5e-4, LEARNING_STARTS=10_000,
            TRAINING_INTERVAL=10, GAMMA=0.99)


class PeerQ(nn.Module):
  actions: int

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(120)(x))
    x = nn.relu(nn.Dense(84)(x))
    return nn.Dense(self.actions)(x)


def peer_train(total: int):
  """purejaxrl's make_train(config) for `total` timesteps, rewritten (see above)."""
  p = PEER
  env, params = gymnax.make("CartPole-v1")
  n = p["NUM_ENVS"]
  net = PeerQ(env.num_actions)
  tx = optax.adam(p["LR"])
  buffer = fbx.make_flat_buffer(max_length=p["BUFFER_SIZE"], min_length=p["BATCH"],
                                sample_batch_size=p["BATCH"], add_sequences=False,
                                add_batch_size=n)

  def train(rng):
    rng, k_env, k_net = jax.random.split(rng, 3)
    obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_env, n), params)
    example = dict(obs=obs[0], action=jnp.zeros((), jnp.int32), reward=jnp.zeros(()),
                   done=jnp.zeros((), bool))
    buf = buffer.init(example)
    net_params = net.init(k_net, obs[0])
    state = dict(params=net_params, target=net_params, opt=tx.init(net_params),
                 timesteps=jnp.zeros((), jnp.int32), ret=jnp.zeros(n), last=jnp.zeros(n))

    def update_step(carry, _):
      state, buf, env_state, last_obs, rng = carry
      rng, k_a, k_e, k_s, k_learn = jax.random.split(rng, 5)
      q = net.apply(state["params"], last_obs)
      eps = jnp.clip((p["EPS_END"] - p["EPS_START"]) / p["EPS_ANNEAL"] * state["timesteps"]
                     + p["EPS_START"], p["EPS_END"])
      greedy = jnp.argmax(q, -1)
      action = jnp.where(jax.random.uniform(k_e, greedy.shape) < eps,
                         jax.random.randint(k_a, greedy.shape, 0, q.shape[-1]), greedy)
      obs, env_state, reward, term, trunc, _ = jax.vmap(env.step, (0, 0, 0, None))(
          jax.random.split(k_s, n), env_state, action, params)
      done = term | trunc
      ts = state["timesteps"] + n
      ret = state["ret"] + reward
      state = {**state, "timesteps": ts, "ret": jnp.where(done, 0.0, ret),
               "last": jnp.where(done, ret, state["last"])}
      buf = buffer.add(buf, dict(obs=last_obs, action=action, reward=reward, done=done))

      def learn(state):
        batch = buffer.sample(buf, k_learn).experience
        q_next = jnp.max(net.apply(state["target"], batch.second["obs"]), -1)
        target = batch.first["reward"] + (1 - batch.first["done"]) * p["GAMMA"] * q_next

        def loss_fn(w):
          q = net.apply(w, batch.first["obs"])
          chosen = jnp.take_along_axis(q, batch.first["action"][:, None], -1)[:, 0]
          return jnp.mean((chosen - target) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        upd, opt = tx.update(grads, state["opt"], state["params"])
        return {**state, "params": optax.apply_updates(state["params"], upd), "opt": opt}, loss

      due = (buffer.can_sample(buf) & (ts > p["LEARNING_STARTS"])
             & (ts % p["TRAINING_INTERVAL"] == 0))
      state, loss = jax.lax.cond(due, learn, lambda s: (s, jnp.zeros(())), state)
      state = jax.lax.cond(ts % p["TARGET_UPDATE"] == 0,
                           lambda s: {**s, "target": s["params"]}, lambda s: s, state)
      return (state, buf, env_state, obs, rng), jnp.mean(state["last"])

    carry, returns = jax.lax.scan(update_step, (state, buf, env_state, obs, rng), None,
                                  total // n)
    return returns[-10:].mean()

  return jax.jit(jax.vmap(train))


def ours_config(total: int) -> ml_collections.ConfigDict:
  p = PEER
  c = dqn.base_config()
  c.num_seeds = 1
  c.num_envs = p["NUM_ENVS"]
  c.num_train_steps = total
  c.steps_per_call = 1000
  c.batch_size = p["BATCH"]
  c.model.hidden = (120, 84)
  c.optimizer.learning_rate = p["LR"]
  c.optimizer.schedule = "constant"
  c.dqn.update(dict(replay_capacity=p["BUFFER_SIZE"], replay_start=p["LEARNING_STARTS"],
                    train_every=p["TRAINING_INTERVAL"], target_every=p["TARGET_UPDATE"],
                    epsilon_end=p["EPS_END"], epsilon_steps=p["EPS_ANNEAL"],
                    gamma=p["GAMMA"]))
  return c


def timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - wall, time.process_time() - cpu


def run_peer(total: int, seed: int):
  train = peer_train(total)
  rngs = jax.random.split(jax.random.PRNGKey(seed), 1)
  compiled, wall_c, cpu_c = timed(lambda: train.lower(rngs).compile())
  ret, wall, cpu = timed(lambda: compiled(rngs))
  return dict(compile_wall_s=wall_c, compile_cpu_s=cpu_c, wall_s=wall, cpu_s=cpu,
              return_last_episodes=float(ret[0]), env_steps_per_cpu_s=total / cpu)


def run_ours(total: int, seed: int):
  c = ours_config(total)
  c.seed = seed
  env = envs.make("CartPole-v1")
  _, _, init, step, evaluate = dqn.build(c, env)
  calls = total // (c.num_envs * c.steps_per_call)
  step = jax.jit(step, donate_argnums=0)
  state = jax.jit(init)()
  compiled, wall_c, cpu_c = timed(lambda: step.lower(state).compile())

  def loop():
    s = state
    for _ in range(calls):
      s, _ = compiled(s)
    return s

  final, wall, cpu = timed(loop)
  return dict(compile_wall_s=wall_c, compile_cpu_s=cpu_c, wall_s=wall, cpu_s=cpu,
              greedy_return=evaluate(final)["mean_return"], env_steps_per_cpu_s=total / cpu)


def main(_):
  rows = {"purejaxrl_recipe": [], "ours": []}
  for r in range(FLAGS.rounds):
    for name, fn in (("purejaxrl_recipe", run_peer), ("ours", run_ours)):
      row = fn(FLAGS.steps, r)
      print(name, json.dumps(row), flush=True)
      rows[name].append(row)
  best = {k: max(x["env_steps_per_cpu_s"] for x in v) for k, v in rows.items()}
  out = {"steps": FLAGS.steps, "rounds": rows, "best_env_steps_per_cpu_s": best,
         "speedup_cpu": best["ours"] / best["purejaxrl_recipe"],
         "load_average": os.getloadavg(), "machine": platform.processor() or platform.machine(),
         "jax": jax.__version__}
  Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")
  print(json.dumps({k: out[k] for k in ("best_env_steps_per_cpu_s", "speedup_cpu",
                                        "load_average")}))


if __name__ == "__main__":
  app.run(main)
