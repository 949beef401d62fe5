"""The command line shared by every experiment: flags, multi-host start-up, clean errors.

    python -m experiments.NAME [--config=experiments/NAME.py[:variant]] \\
        [--config.key=value ...] [--workdir=DIR] [--seeds=N] \\
        [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]
"""

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Sequence

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from deeplearn_jax import determinism, parallel, run_folder
from deeplearn_jax.errors import Preempted, TrainingDiverged, UserError
from deeplearn_jax.train import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "run folder; default: a new folder under ./runs/. "
                    "Rerunning with the same folder resumes.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, multi-process runs")
flags.DEFINE_integer("num_processes", None, "number of processes of a multi-process run")
flags.DEFINE_integer("process_id", None, "this process's index in a multi-process run")
flags.DEFINE_integer("distributed_timeout", 300, "seconds to wait for all processes to join")
flags.DEFINE_integer("heartbeat_timeout", 100, "seconds after which the other processes of a "
                     "multi-process run stop when one has died")
flags.DEFINE_integer("cpu_devices", 0, "split the CPU into this many JAX devices (0: one), "
                     "so that a mesh axis runs its parts on as many cores at once (the "
                     "seeds of experiments.dqn)")
flags.DEFINE_integer("seeds", 1, "run the whole experiment this many times, seeds "
                     "config.seed, config.seed + 1, ..., each in WORKDIR/seed<k>; "
                     "results.json gives every run and the spread of their figures")
flags.DEFINE_bool("gpu_deterministic", False, "XLA's deterministic GPU kernels, so that a "
                  "resumed run on a GPU is bit-identical to an uninterrupted one (may be slower)")

TrainFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]


def setup_jax(gpu_deterministic: bool = False, cpu_devices: int = 0) -> None:
  """Persistent compilation cache: a second run of the same config skips compiling;
  XLA's deterministic GPU kernels and `cpu_devices` CPU devices if asked (both before
  JAX's first computation)."""
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR",
                         os.path.join(os.path.expanduser("~"), ".cache", "deeplearn_jax", "xla"))
  jax.config.update("jax_compilation_cache_dir", cache)
  # Programs that compile in under 0.5 s are not worth a file each, unless the
  # environment says otherwise (the tests cache everything: JAX's own variable, 0).
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 0.5)))
  if gpu_deterministic:
    determinism.enable()
  if cpu_devices > 0:
    jax.config.update("jax_num_cpu_devices", cpu_devices)


PEER_LOST_EXIT = 70  # EX_SOFTWARE: this process was ended because the run broke elsewhere
_CHILD = "DEEPLEARN_RUN_CHILD"


def _die_with_parent() -> None:
  """In the child: Linux sends it SIGKILL when the supervising parent dies (kill -9)."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except OSError:
    pass


def supervise(num_processes: int, process_id: int) -> int:
  """Runs this same command as a child process and waits for it.

  When one process of a multi-process run dies, the collectives of the others abort
  in native code (gloo) or are ended by the coordination service, with messages from
  C++. The parent turns that into one line. SIGTERM and SIGINT go to the child.
  """
  child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]],
                           env=dict(os.environ, **{_CHILD: "1"}), preexec_fn=_die_with_parent)
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, frame: child.send_signal(signum))
  code = child.wait()
  if code < 0:
    fail(f"process {process_id} of {num_processes} was ended by "
         f"{signal.Signals(-code).name}: another process of the run died or a collective "
         f"failed (see above); restart all {num_processes} processes with the same "
         "command to resume", PEER_LOST_EXIT)
  return code


def fail(message: str, code: int) -> None:
  """Prints one `error:` line to stderr and exits with `code`."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def run(config_file: str, name: str, train_fn: TrainFn) -> None:
  """Defines --config (defaulting to the experiment's own file) and runs train_fn."""
  try:  # with no --config, the default file and its overrides load here
    config_flags.DEFINE_config_file("config", config_file, "experiment config file[:variant]",
                                    lock_config=True)
  except Exception as e:
    fail(config_error(e, sys.argv), 2)

  def main(argv):
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])}", 2)
    if (FLAGS.num_processes or 1) > 1 and _CHILD not in os.environ:
      sys.exit(supervise(FLAGS.num_processes, FLAGS.process_id))
    setup_jax(FLAGS.gpu_deterministic, FLAGS.cpu_devices)
    # absl's app.run raises the root logger to INFO, which shows every library's chatter
    # (JAX's "Unable to initialize backend 'tpu'" on a CPU, Orbax's every save step):
    # only this package's own module loggers speak at INFO.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("deeplearn_jax").setLevel(logging.INFO)
    try:
      parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                          FLAGS.distributed_timeout, FLAGS.heartbeat_timeout)
      config = _loaded(FLAGS.config, sys.argv)
      workdir = FLAGS.workdir or run_folder.default(name)
      results = (sweep.over_seeds(config, workdir, train_fn, FLAGS.seeds)
                 if FLAGS.seeds != 1 else train_fn(config, workdir))
    except (UserError, TrainingDiverged, Preempted) as e:
      fail(str(e), e.exit_code)
    if jax.process_index() == 0:
      print(json.dumps({"workdir": os.path.abspath(workdir), **results}, indent=1))

  app.run(main, flags_parser=_parse_flags)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config the command line builds from `--config=spec` (FILE[:variant]) and
  `--config.KEY=VALUE` overrides, parsed by the same code; any failure (bad variant,
  unknown key, wrong type, missing file) is a UserError with the command line's line."""
  values = flags.FlagValues()
  argv = ["deeplearn_jax", f"--config={spec}", *overrides]
  try:
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
  except Exception as e:
    raise UserError(config_error(e, argv)) from e
  return _loaded(values.config, argv)


def _loaded(config, argv: list[str]) -> ml_collections.ConfigDict:
  try:
    config.get("seed")  # a file that failed to load raises on first use
  except Exception as e:
    raise UserError(config_error(e, argv)) from e
  return config


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with every failure (unknown key, wrong type, bad variant) as one line."""
  try:
    return FLAGS(argv)
  except Exception as e:
    fail(config_error(e, argv), 2)
  return []


def config_error(e: BaseException, argv: Sequence[str]) -> str:
  """One line for a config that failed to load or parse: an unknown key named as the
  user typed it, else the informative line of an error whose text may embed a
  traceback."""
  if isinstance(e, (KeyError, AttributeError)):
    key = str(e).strip("\"' ")
    where = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
    return f"unknown config key {where[0][2:] if where else key}"
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  if len(lines) > 1 and lines[0].startswith("flag --config"):
    lines = [lines[0].split(":")[0] + ": " + lines[-1]]
  text = lines[-1] if lines else type(e).__name__
  return text[:400]
