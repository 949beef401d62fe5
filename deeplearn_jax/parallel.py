"""The one mesh builder, multi-host start-up, global batches from per-host data, and the
sharding rules of the train state.

The same code runs on 1 CPU, N fake CPU devices, one GPU and a multi-host TPU slice:
the batch is split over the ('data', 'fsdp') axes. With 'fsdp' of 1 (the default) the
state is replicated: pure data parallel. With 'fsdp' > 1 every large leaf of the state
(parameters, optimizer moments, batch statistics) is split over 'fsdp' (fully sharded
data parallel), see `param_sharding`. jit's GSPMD partitioner adds the all-gathers and
reduce-scatters, so models and step functions do not change.
"""

import logging
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deeplearn_jax.errors import UserError

logger = logging.getLogger(__name__)

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")
# Leaves with fewer elements stay replicated under fsdp: biases, BN scales and scalars
# save little memory split and would each cost a collective.
FSDP_MIN_SIZE = 2**14


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int | None = None,
               heartbeat_s: int | None = None) -> None:
  """Joins a multi-process run. With no arguments, jax's own detection applies
  (Cloud TPU, SLURM, Open MPI ...); on a single machine without those it is a no-op.

  timeout_s bounds the wait for all processes to join; heartbeat_s bounds how long the
  others wait once a process has died before they stop too (instead of hanging)."""
  explicit = coordinator_address is not None
  kwargs: dict[str, Any] = {}
  if explicit:
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  if timeout_s:
    kwargs["initialization_timeout"] = timeout_s
  if heartbeat_s:
    kwargs["heartbeat_timeout_seconds"] = heartbeat_s
  try:
    jax.distributed.initialize(**kwargs)
  except ValueError as e:
    if explicit:
      raise UserError(f"cannot join the multi-process run: {e}") from e
    # No cluster environment was detected: a plain single-process run.
  logger.info("process %d of %d; %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)


def make_mesh(mesh_config: ml_collections.ConfigDict) -> Mesh:
  """Builds the mesh from `config.mesh` ({'data': -1, 'fsdp': 1, 'model': 1}).

  One axis may be -1 (all remaining devices). A product smaller than the device
  count uses the first devices only, so a test can compare 1 against 8 devices.
  """
  sizes = [int(mesh_config.get(a, 1)) for a in AXES]
  n = jax.device_count()
  if sizes.count(-1) > 1:
    raise UserError(f"config.mesh: at most one axis may be -1, got {dict(zip(AXES, sizes))}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if n % known:
      raise UserError(f"config.mesh: {n} devices do not divide into the fixed axes {known}")
    sizes[sizes.index(-1)] = n // known
  total = int(np.prod(sizes))
  if total < 1 or total > n or (jax.process_count() > 1 and total != n):
    raise UserError(f"config.mesh {dict(zip(AXES, sizes))} needs {total} devices; "
                    f"there are {n}")
  devices = jax.devices()[:total]
  return Mesh(np.asarray(devices).reshape(sizes), AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches split along their first axis over the mesh's batch axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same value on every device of the mesh."""
  return NamedSharding(mesh, P())


def num_batch_shards(mesh: Mesh) -> int:
  """How many ways a global batch is split (the batch axes' devices)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> int:
  """Returns the per-process batch; fails clearly when the batch does not split."""
  shards = num_batch_shards(mesh)
  if global_batch <= 0:
    raise UserError(f"config.{what} must be positive, got {global_batch}")
  if global_batch % shards:
    raise UserError(f"config.{what}={global_batch} is not divisible by the {shards} devices "
                    "of the batch axes ('data' x 'fsdp')")
  return global_batch // jax.process_count()


def global_batch(local: dict[str, Any], mesh: Mesh) -> dict[str, Any]:
  """Assembles one global array per leaf from each process's own rows; a leaf that is
  already a global jax.Array (a dataset kept on the devices) passes as it is."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda v: v if isinstance(v, jax.Array)
                      else jax.make_array_from_process_local_data(sharding, v), local)


def replicated_array(value: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host array every process holds whole, as one global array on every device."""
  return jax.make_array_from_callback(value.shape, replicated(mesh), lambda i: value[i])


def param_sharding(abstract_tree: Any, mesh: Mesh, model_axis_dim=None) -> Any:
  """Shardings for a whole abstract train state (params, optimizer state, batch stats).

  With a mesh 'fsdp' axis of n > 1, a leaf of at least FSDP_MIN_SIZE elements is split
  over 'fsdp' along its largest dimension divisible by n (the first such on a tie), and
  replicated over the other axes. Everything else, and every leaf when n is 1, is
  replicated. Optimizer moments have their parameter's shape, so they split alike.

  model_axis_dim(path, shape) -> dim or None (a model's own rule, e.g. transformer.py's)
  picks the dimension a 'model' axis of size > 1 splits (tensor parallelism); fsdp then
  takes another dimension. Paths are 'block0/qkv/kernel', with optimizer-state prefixes.
  """
  n, m = mesh.shape["fsdp"], mesh.shape.get("model", 1)

  def rule(path, leaf) -> NamedSharding:
    shape = tuple(getattr(leaf, "shape", ()))
    spec = [None] * len(shape)
    if m > 1 and model_axis_dim is not None:
      dim = model_axis_dim(_path_name(path), shape)
      if dim is not None and shape[dim] % m == 0:
        spec[dim] = "model"
    if n > 1 and int(np.prod(shape)) >= FSDP_MIN_SIZE:
      dims = [i for i, d in enumerate(shape) if d % n == 0 and spec[i] is None]
      if dims:
        spec[max(dims, key=lambda i: shape[i])] = "fsdp"
    return NamedSharding(mesh, P(*spec)) if any(spec) else replicated(mesh)

  return jax.tree_util.tree_map_with_path(rule, abstract_tree)


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                  for k in path)
