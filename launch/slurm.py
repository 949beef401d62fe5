#!/usr/bin/env python3
"""One experiment on GPU nodes of a SLURM cluster: writes an sbatch script and submits it.

  python launch/slurm.py --experiment=imagenet_cnn --nodes=2 --gpus_per_node=8 \\
      --workdir=/shared/runs/r50 [--mode=per-gpu|per-node] [--partition=P] [--time=T] \\
      [--account=A] [--requeue] [--dry-run] -- --config.batch_size=1024

The job runs a preflight `srun` (every process joins jax.distributed, which reads SLURM's
environment, and checks the process and device counts), then the experiment under `srun`.
--workdir must be on a filesystem every node mounts: all processes write checkpoints
there, and a rerun or requeued job resumes from the newest one.
--dry-run prints the script, then the sbatch command, and writes and submits nothing.
"""

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (launch/common.py, found whether run as a file or with -m)
from common import LaunchError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv: list[str]):
  p = common.Parser(prog="launch/slurm.py", allow_abbrev=False,
                    description="Submit one experiment to SLURM GPU nodes.",
                    epilog="Arguments after -- go to the experiment.")
  add = lambda *a, **k: common.add_flag(p, *a, **k)  # noqa: E731
  add("experiment", help="module under experiments/, e.g. imagenet_cnn")
  add("workdir", help="run folder on a filesystem every node mounts (absolute path)")
  add("nodes", type=int, default=1)
  add("gpus_per_node", type=int, default=8)
  add("mode", choices=("per-gpu", "per-node"), default="per-gpu",
      help="per-gpu: one process per GPU (default); per-node: one process per node that "
      "drives all its GPUs")
  add("cpus_per_task", type=int, help="CPU cores per process (data loading)")
  add("partition")
  add("time", help="time limit, e.g. 24:00:00")
  add("account")
  add("job_name", help="default: the experiment name")
  add("output", help="job log; default WORKDIR/slurm/%%x-%%j.out (%%x job name, %%j job id)")
  add("script", help="where the sbatch script is written; default WORKDIR/slurm/JOB_NAME.sbatch")
  add("signal_seconds", type=int, default=120, help="SIGTERM this long before the time "
      "limit, so the trainer saves a checkpoint")
  add("requeue", action="store_true", help="requeue the job when it is preempted or stopped "
      "by the time limit; it resumes from its checkpoint")
  add("project_dir", default=REPO, help="checkout the nodes run from (shared); default: this one")
  add("venv", help="virtualenv to activate; default PROJECT_DIR/.venv; '' for none")
  add("setup", action="append", default=[], help="shell line before the runs, e.g. "
      "'module load cuda/12.4' (repeatable)")
  add("env", action="append", default=[], metavar="KEY=VALUE",
      help="environment of the runs, e.g. TFDS_DATA_DIR=/shared/tfds (repeatable)")
  add("sbatch", action="append", default=[], metavar="OPTION",
      help="extra #SBATCH option, e.g. --constraint=a100 (repeatable)")
  add("dry_run", action="store_true", help="print the script and the sbatch command only")
  return p.parse_args(argv)


def validate(a, passthrough: list[str]) -> str:
  """Checks the arguments, fills in defaults, and returns the experiment's module."""
  module = common.experiment_module(a.experiment)
  common.check_passthrough(passthrough)
  common.check_env(a.env)
  common.check_workdir(a.workdir)
  if not os.path.isabs(a.workdir):
    raise LaunchError(f"--workdir={a.workdir} must be an absolute path (on a filesystem "
                      "every node mounts)")
  for name in ("nodes", "gpus_per_node", "signal_seconds"):
    if getattr(a, name) < 1:
      raise LaunchError(f"--{name} must be at least 1, got {getattr(a, name)}")
  if a.cpus_per_task is not None and a.cpus_per_task < 1:
    raise LaunchError(f"--cpus_per_task must be at least 1, got {a.cpus_per_task}")
  a.job_name = a.job_name or module.split(".")[-1]
  a.output = a.output or os.path.join(a.workdir, "slurm", "%x-%j.out")
  a.script = os.path.abspath(a.script or os.path.join(a.workdir, "slurm", f"{a.job_name}.sbatch"))
  if a.venv is None:
    a.venv = os.path.join(a.project_dir, ".venv")
  return module


def script_text(a, module: str, passthrough: list[str]) -> str:
  n, g = a.nodes, a.gpus_per_node
  per_gpu = a.mode == "per-gpu"
  # Task layout, both in the header and on each srun (srun does not always inherit it).
  layout = ([f"--ntasks-per-node={g}", "--gpus-per-task=1"] if per_gpu
            else ["--ntasks-per-node=1", f"--gpus-per-node={g}"])
  if a.cpus_per_task:
    layout.append(f"--cpus-per-task={a.cpus_per_task}")
  header = [f"--job-name={a.job_name}", f"--nodes={n}", *layout, f"--output={a.output}",
            "--open-mode=append",
            # To the job steps (not `B:`, the batch shell only): the training processes
            # get SIGTERM themselves, save a checkpoint and exit 75.
            f"--signal=TERM@{a.signal_seconds}"]
  header += ["--requeue"] if a.requeue else []
  header += [f"--{k}={getattr(a, k)}" for k in ("partition", "time", "account") if getattr(a, k)]
  header += a.sbatch

  processes = n * g if per_gpu else n
  preflight = common.preflight_code(n * g, processes, 1 if per_gpu else g, "gpu")
  srun = ["srun", *layout]
  train = common.experiment_argv("python", module, a.workdir, passthrough)
  how = "one process per GPU" if per_gpu else "one process per node"
  code = common.PREEMPTED_EXIT_CODE
  if a.requeue:
    on_preempt = ['  echo "preempted: checkpoint saved, requeueing the job"',
                  '  scontrol requeue "$SLURM_JOB_ID"']
  else:
    on_preempt = [f'  echo "preempted: checkpoint saved; resume with: sbatch {a.script}"']

  lines = [
      "#!/bin/bash",
      f"# {module} on {n} node(s) x {g} GPUs, {how}. Written by launch/slurm.py.",
      "# The workdir must be on a filesystem every node mounts: all processes write",
      "# checkpoints there, and a rerun or a requeued job resumes from the newest one.",
      *[f"#SBATCH {opt}" for opt in header],
      "",
      "set -eo pipefail  # a failing setup line ends the job",
      f"cd {shlex.quote(a.project_dir)}",
      *([f"source {shlex.quote(os.path.join(a.venv, 'bin', 'activate'))}"] if a.venv else []),
      *a.setup,
      *common.check_env(["PYTHONUNBUFFERED=1", *a.env]),
      'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST"',
      "set +e  # from here on, exit codes are handled below",
      "",
      "# Preflight: every process joins jax.distributed (SLURM is detected from the",
      "# environment) and prints its process and device counts; a wrong count stops the job.",
      f"{shlex.join([*srun, '--kill-on-bad-exit=1', 'python', '-c', preflight])} || "
      "{ echo \"preflight failed\" >&2; exit 1; }",
      "",
      "# Training. No --kill-on-bad-exit: a process that exits after saving must not kill",
      "# peers still finishing the checkpoint (JAX stops the peers of a crashed process).",
      shlex.join([*srun, *train]),
      "status=$?",
      f'if [ "$status" -eq {code} ]; then',
      *on_preempt,
      "fi",
      'exit "$status"',
  ]
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  own, passthrough = common.split_passthrough(argv)
  a = parse(own)
  try:
    module = validate(a, passthrough)
    text = script_text(a, module, passthrough)
    sh = common.Shell(a.dry_run)
    if a.dry_run:
      print(text, end="")
    else:
      # sbatch does not create the log's folder; a job whose log cannot open dies silently.
      log_dir = os.path.dirname(a.output)
      for folder in [os.path.dirname(a.script)] + ([log_dir] if "%" not in log_dir else []):
        os.makedirs(folder or ".", exist_ok=True)
      with open(a.script, "w", encoding="utf-8") as f:
        f.write(text)
      print(f"wrote {a.script}", file=sys.stderr)
    sh.run(["sbatch", a.script], "sbatch")
  except LaunchError as e:
    common.fail(str(e))
  except OSError as e:
    common.fail(f"cannot write the job script or its log folder: {e}")


if __name__ == "__main__":
  main(sys.argv[1:])
