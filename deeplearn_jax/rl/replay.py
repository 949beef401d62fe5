"""A replay memory as pure JAX functions on a pytree, so it lives inside the compiled
loop, is vmapped over seeds and is checkpointed with the rest of the state.

Compact as the Nature DQN's: each slot keeps one observation (or, with frame stacking,
only its newest frame, as uint8 where the observations are whole numbers), its action,
reward and flags. The next observation of a transition is the next slot's, so nothing
is stored twice. Slots are rows of `num_envs` parallel environments, written in time
order; a row's frames stack with the k-1 rows before it, frames from before the
episode's start read as zeros (as the wrappers' stacks start).

Flags: `terminal` (no bootstrap: the target is the reward alone) and `boundary` (the
next slot starts a new episode; a life lost in Atari is terminal but no boundary).
The newest row is never sampled (its next observation is not written yet), nor rows
whose stack would reach into overwritten slots.
"""

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Replay:
  frames: jax.Array      # [rows, envs, *frame_shape]
  action: jax.Array      # [rows, envs] int32
  reward: jax.Array      # [rows, envs] float32
  terminal: jax.Array    # [rows, envs] bool
  boundary: jax.Array    # [rows, envs] bool
  pos: jax.Array         # next row to write
  size: jax.Array        # rows written, at most `rows`


def create(capacity: int, num_envs: int, frame_shape, dtype, seeds: int = 0) -> Replay:
  """An empty memory of capacity transitions (rounded down to whole rows). With seeds > 0,
  one memory per seed along a leading axis, sharing pos and size: vmap it with SEED_AXES.
  The seed axis leads so that a vmapped batch gathers in place: with it second, XLA
  copied every array of the memory into seed-major order on every step."""
  rows = capacity // num_envs
  lead = (seeds, rows, num_envs) if seeds else (rows, num_envs)
  zeros = lambda dt: jnp.zeros(lead, dt)
  return Replay(jnp.zeros((*lead, *frame_shape), dtype), zeros(jnp.int32),
                zeros(jnp.float32), zeros(bool), zeros(bool), jnp.zeros((), jnp.int32),
                jnp.zeros((), jnp.int32))


# vmap axes of a memory made with seeds > 0: seeds along axis 0, pos and size shared.
SEED_AXES = Replay(0, 0, 0, 0, 0, None, None)


def add(r: Replay, frame, action, reward, terminal, boundary) -> Replay:
  """Writes one row: each env's observation (its newest frame) and what followed it."""
  rows = r.frames.shape[0]
  # Under vmap (pos shared) this stays one in-place dynamic-update-slice over the seeds.
  put = lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, v.astype(buf.dtype), r.pos, 0)
  return r.replace(frames=put(r.frames, frame), action=put(r.action, action),
                   reward=put(r.reward, reward), terminal=put(r.terminal, terminal),
                   boundary=put(r.boundary, boundary), pos=(r.pos + 1) % rows,
                   size=jnp.minimum(r.size + 1, rows))


def stack_at(r: Replay, row, env, stack: int):
  """The observation of slot (row, env): its frame, with stack > 1 the stack of the last
  `stack` frames ([..., stack] channels last), zeros before the episode's start."""
  rows = r.frames.shape[0]
  if stack == 1:
    return r.frames[row, env]
  parts, alive = [], jnp.ones(row.shape, bool)
  for j in range(stack):  # the frame j slots back is ours while no episode ended since
    idx = (row - j) % rows
    if j:
      alive = alive & ~r.boundary[idx, env] & ((r.size == rows) | (row - j >= 0))
    f = r.frames[idx, env]
    parts.append(jnp.where(alive.reshape(alive.shape + (1,) * (f.ndim - alive.ndim)), f, 0))
  return jnp.stack(parts[::-1], axis=-1)


def sample(r: Replay, key, batch: int, stack: int = 1) -> dict[str, jax.Array]:
  """A uniform batch of transitions {obs, action, reward, terminal, next_obs}; needs
  more than `stack` rows written."""
  k_row, k_env = jax.random.split(key)
  return sample_at(r, jax.random.bits(k_row, (batch,)),
                   jax.random.randint(k_env, (batch,), 0, r.frames.shape[1]), stack)


def sample_at(r: Replay, row_bits, env, stack: int = 1) -> dict[str, jax.Array]:
  """sample() from random numbers drawn beforehand: `row_bits` (uint32) pick the rows,
  `env` (in [0, num_envs)) the environments."""
  rows = r.frames.shape[0]
  oldest = jnp.where(r.size == rows, r.pos, 0)
  # Sampled rows: from the oldest whose stack is whole, to the one before the newest.
  count = jnp.maximum(r.size - stack, 1)
  row = (oldest + stack - 1 + (row_bits % count.astype(jnp.uint32)).astype(jnp.int32)) % rows
  return {"obs": stack_at(r, row, env, stack), "action": r.action[row, env],
          "reward": r.reward[row, env], "terminal": r.terminal[row, env],
          "next_obs": stack_at(r, (row + 1) % rows, env, stack)}
