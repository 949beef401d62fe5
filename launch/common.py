"""What both launchers share: one-line argument errors, the experiment command, the
preflight check, and running (or, with --dry-run, printing) commands.

Standard library only: the launchers run on a laptop or a login node without the project
installed.
"""

import argparse
import re
import shlex
import subprocess
import sys

# Flags the launchers set themselves; passing them after `--` would contradict them.
OWN_EXPERIMENT_FLAGS = ("--workdir", "--coordinator_address", "--num_processes", "--process_id")

# Exit code of the trainer after SIGTERM: a checkpoint of the current step was written and
# rerunning the same command resumes (deeplearn_jax/errors.py: Preempted).
PREEMPTED_EXIT_CODE = 75


class LaunchError(Exception):
  """A failure the user can act on; main() prints it as one `error: ...` line."""


def fail(message: str, code: int = 1) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


class Parser(argparse.ArgumentParser):
  """argparse, but a bad argument gives one `error:` line (no usage block), exit 2."""

  def error(self, message):
    if message.startswith("unrecognized arguments"):
      message += " (the experiment's own flags go after --)"
    fail(message, 2)


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
  """Adds --some_flag, also accepted as --some-flag."""
  names = [f"--{name}"]
  if "_" in name:
    names.append(f"--{name.replace('_', '-')}")
  parser.add_argument(*names, dest=name, **kwargs)


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
  """Splits at the first `--`: the launcher's own arguments, then the experiment's."""
  if "--" in argv:
    i = argv.index("--")
    return argv[:i], argv[i + 1:]
  return argv, []


def experiment_module(name: str | None, when: str = "") -> str:
  """`imagenet_cnn` (or `experiments.imagenet_cnn`) -> `experiments.imagenet_cnn`."""
  if not name:
    raise LaunchError(f"--experiment is required{when} (e.g. --experiment=lenet)")
  name = name.removeprefix("experiments.").removesuffix(".py")
  if not re.fullmatch(r"[A-Za-z_]\w*", name):
    raise LaunchError(f"--experiment={name!r} is not a module name under experiments/")
  return f"experiments.{name}"


def check_passthrough(passthrough: list[str]) -> None:
  for arg in passthrough:
    if arg.split("=")[0] in OWN_EXPERIMENT_FLAGS:
      raise LaunchError(f"{arg.split('=')[0]} is set by the launcher; give --workdir to the "
                        "launcher, before --")


def check_workdir(workdir: str | None, when: str = "") -> str:
  if not workdir:
    raise LaunchError(f"--workdir is required{when}: a folder every host sees")
  if "://" in workdir:
    raise LaunchError(f"--workdir={workdir}: the trainer does not support bucket URLs yet; "
                      "mount the bucket (gcsfuse) or use NFS and give its local path")
  return workdir


def check_env(assignments: list[str]) -> list[str]:
  """--env KEY=VALUE values, checked, as `export` lines for a shell."""
  for kv in assignments:
    if not re.fullmatch(r"[A-Za-z_]\w*=.*", kv, re.DOTALL):
      raise LaunchError(f"--env={kv!r}: expected KEY=VALUE")
  return [f"export {shlex.quote(kv)}" for kv in assignments]


def experiment_argv(python: str, module: str, workdir: str, passthrough: list[str]) -> list[str]:
  return [python, "-m", module, f"--workdir={workdir}", *passthrough]


def preflight_code(devices: int, processes: int, local_devices: int, platform: str) -> str:
  """A python one-liner that every process runs before training.

  It joins the multi-process run as the trainer does (deeplearn_jax.parallel.initialize,
  i.e. jax.distributed.initialize() with Cloud TPU / SLURM auto-detection), prints what
  it sees, and exits 1 naming each count that differs from the expected one.
  """
  want = f"dict(devices={devices}, processes={processes}, local_devices={local_devices}, " \
         f"platform=\"{platform}\")"
  statements = [
      "import sys, jax",
      "from deeplearn_jax import parallel",
      "parallel.initialize()",
      "n, p, l, b = jax.device_count(), jax.process_count(), jax.local_device_count(), "
      "jax.default_backend()",
      "print(f\"preflight: process {jax.process_index()} of {p}: {l} local / {n} global {b} "
      "devices\", flush=True)",
      "got = dict(devices=n, processes=p, local_devices=l, platform=b)",
      f"want = {want}",
      "bad = [f\"{k} {got[k]} (expected {v})\" for k, v in want.items() if got[k] != v]",
      "sys.exit(\"preflight failed: \" + \", \".join(bad) if bad else 0)",
  ]
  return "; ".join(statements)


class Shell:
  """Runs commands, or with dry_run only prints them: one shell-quoted line each, stdout."""

  def __init__(self, dry_run: bool):
    self.dry_run = dry_run

  def run(self, argv: list[str], what: str, capture: bool = False) -> str:
    """Runs argv in the foreground (output streams through); returns stdout if captured."""
    line = shlex.join(argv)
    if self.dry_run:
      print(line, flush=True)
      return ""
    print(f"+ {line}", file=sys.stderr, flush=True)
    try:
      proc = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, text=True)
    except FileNotFoundError as e:
      raise LaunchError(f"{what}: {argv[0]} not found on PATH") from e
    if proc.returncode != 0:
      raise LaunchError(f"{what} failed (exit code {proc.returncode}): {_short(line)}")
    return proc.stdout or ""


def _short(line: str, limit: int = 200) -> str:
  return line if len(line) <= limit else line[:limit] + " ..."
