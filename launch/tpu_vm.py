#!/usr/bin/env python3
"""One experiment on a Cloud TPU VM slice, from creation to deletion, through gcloud.

  python launch/tpu_vm.py [STEP] --name=NAME --zone=ZONE --accelerator_type=v4-32 \\
      --experiment=imagenet_cnn --workdir=/mnt/shared/runs/r50 [--spot] [--queued] \\
      [--dry-run] -- --config.batch_size=1024

STEP is `all` (the default: create, install, preflight, run, fetch, then delete, also when
a step fails unless --keep) or one of those steps alone. Arguments after `--` go to the
experiment. --dry-run prints every command, one shell-quoted line each, and runs nothing.
"""

import os
import re
import shlex
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (launch/common.py, found whether run as a file or with -m)
from common import LaunchError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("create", "install", "preflight", "run", "fetch", "delete")

# The default runtime (software image) of each TPU generation.
RUNTIMES = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base",
            "v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5",
            "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}


def slice_shape(accelerator_type: str) -> tuple[int, int] | None:
  """(jax devices, hosts) of an accelerator type; None when the type is not known here.

  The number after the dash counts TensorCores for v2, v3, v4 and v5p, but chips for
  v5e (`v5litepod-N`) and v6e:
    v2-N, v3-N    2 cores per chip, each core its own jax device; 4 chips (8 devices)
                  per host. v3-32: 32 devices on 4 hosts.
    v4-N, v5p-N   2 cores per chip joined into one jax device (megacore); 4 chips per
                  host. v4-8: 4 devices on 1 host; v4-32: 16 devices on 4 hosts.
    v5litepod-N, v6e-N  1 core per chip; slices of up to 8 chips are one host, larger
                  ones have 4 chips per host. v5litepod-16: 16 devices on 4 hosts.
  --expect_devices / --expect_hosts override these.
  """
  m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator_type)
  if not m:
    return None
  generation, n = m.group(1), int(m.group(2))
  if generation in ("v5litepod", "v6e"):
    devices, per_host = n, (n if n <= 8 else 4)
  elif generation in ("v4", "v5p"):
    devices, per_host = n // 2, 4
  else:
    devices, per_host = n, 8
  per_host = min(per_host, devices)
  if devices < 1 or devices % per_host:
    return None
  return devices, devices // per_host


def parse(argv: list[str]):
  p = common.Parser(prog="launch/tpu_vm.py", allow_abbrev=False,
                    description="Run one experiment on a Cloud TPU VM slice.",
                    epilog="Arguments after -- go to the experiment, e.g. -- "
                           "--config=experiments/lenet.py:smoke --config.batch_size=1024")
  p.add_argument("step", nargs="?", default="all", choices=("all",) + STEPS,
                 help="all (default) = create, install, preflight, run, fetch, delete")
  add = lambda *a, **k: common.add_flag(p, *a, **k)  # noqa: E731
  add("name", required=True, help="TPU VM name (also the queued resource's name)")
  add("zone", required=True, help="e.g. us-central2-b")
  add("project", help="Google Cloud project; default: gcloud's configured one")
  add("accelerator_type", help="e.g. v4-32, v5litepod-16, v6e-8")
  add("runtime_version", help="TPU software image; default by generation, "
      "e.g. tpu-ubuntu2204-base for v4")
  add("spot", action="store_true", help="spot capacity (cheaper, can be preempted)")
  add("queued", action="store_true", help="create through a queued resource and wait "
      "until it is ACTIVE")
  add("poll_seconds", type=int, default=60, help="queued resource polling period")
  add("queue_timeout_hours", type=float, default=0,
      help="give up waiting for the queued resource after this long; 0: wait forever")
  add("repo", help="install by `git clone` of this URL on every worker; default: ship "
      "this checkout's --ref as a `git archive` tarball")
  add("ref", default="HEAD", help="commit, branch or tag to install (default HEAD: "
      "committed changes only)")
  add("remote_dir", default="deeplearn_jax", help="project folder on every worker, "
      "relative to the home folder")
  add("python", default="python3.11", help="interpreter for the worker venv (the project "
      "needs Python 3.11+); installed with apt when missing")
  add("setup", action="append", default=[], help="shell command run on every worker "
      "before installing, e.g. mounting the shared workdir (repeatable)")
  add("env", action="append", default=[], metavar="KEY=VALUE",
      help="environment of preflight and run, e.g. TFDS_DATA_DIR=/mnt/shared/tfds")
  add("experiment", help="module under experiments/, e.g. imagenet_cnn")
  add("workdir", help="run folder on the workers: absolute, or relative to --remote_dir; "
      "on a multi-host slice it must be shared (NFS or a mounted bucket)")
  add("expect_devices", type=int, help="global jax device count preflight requires; "
      "default derived from --accelerator_type")
  add("expect_hosts", type=int, help="process (= worker) count preflight requires; "
      "default derived from --accelerator_type")
  add("fetch_to", default="runs", help="local folder the workdir is copied into")
  add("no_fetch", action="store_true", help="skip fetch (the workdir is on shared storage "
      "you can read anyway)")
  add("keep", action="store_true", help="do not delete the TPU at the end of `all`")
  add("dry_run", action="store_true", help="print the commands, run nothing")
  return p.parse_args(argv)


class Launcher:
  """The steps, each a few gcloud commands run through `common.Shell`."""

  def __init__(self, args, passthrough: list[str]):
    self.a = args
    self.passthrough = passthrough
    self.sh = common.Shell(args.dry_run)

  # --- command builders -------------------------------------------------------------

  def gcloud(self, *words: str) -> list[str]:
    cmd = ["gcloud", "compute", "tpus", *words, f"--zone={self.a.zone}"]
    if self.a.project:
      cmd.append(f"--project={self.a.project}")
    return cmd

  def ssh(self, remote_command: str) -> list[str]:
    """ssh to every worker, in the foreground, so their output streams here."""
    return self.gcloud("tpu-vm", "ssh", self.a.name, "--worker=all",
                       f"--command={remote_command}")

  def env_prefix(self) -> str:
    exports = common.check_env(["PYTHONUNBUFFERED=1", *self.a.env])
    return " && ".join([f"cd {shlex.quote(self.a.remote_dir)}", *exports])

  def remote_workdir(self) -> str:
    """The workdir as scp names it on the worker (relative paths start at the home folder)."""
    wd = self.a.workdir
    return wd if wd.startswith("/") else f"{self.a.remote_dir}/{wd}"

  # --- steps --------------------------------------------------------------------------

  def create(self) -> None:
    a = self.a
    spot = ["--spot"] if a.spot else []
    if not a.queued:
      self.sh.run(self.gcloud("tpu-vm", "create", a.name, f"--accelerator-type={a.accelerator_type}",
                              f"--version={a.runtime_version}", *spot), "create")
      return
    self.sh.run(self.gcloud("queued-resources", "create", a.name, f"--node-id={a.name}",
                            f"--accelerator-type={a.accelerator_type}",
                            f"--runtime-version={a.runtime_version}", *spot), "create")
    self.wait_until_active()

  def wait_until_active(self) -> None:
    describe = self.gcloud("queued-resources", "describe", self.a.name,
                           "--format=value(state.state)")
    deadline = time.time() + self.a.queue_timeout_hours * 3600
    while True:
      state = self.sh.run(describe, "polling the queued resource", capture=True).strip()
      if self.sh.dry_run or state == "ACTIVE":
        return
      if state in ("FAILED", "SUSPENDING", "SUSPENDED", "DELETING"):
        raise LaunchError(f"queued resource {self.a.name} is {state}; see `gcloud compute "
                          f"tpus queued-resources describe {self.a.name}`")
      if self.a.queue_timeout_hours and time.time() > deadline:
        raise LaunchError(f"queued resource {self.a.name} still {state} after "
                          f"{self.a.queue_timeout_hours} h")
      print(f"queued resource {self.a.name}: {state}; next check in {self.a.poll_seconds} s",
            file=sys.stderr, flush=True)
      time.sleep(self.a.poll_seconds)

  def install(self) -> None:
    a = self.a
    for command in a.setup:
      self.sh.run(self.ssh(command), "setup")
    d = shlex.quote(a.remote_dir)
    if a.repo:
      fetch = (f"(test -d {d}/.git || git clone -q {shlex.quote(a.repo)} {d}) && cd {d} && "
               f"git fetch -q origin {shlex.quote(a.ref)} && git checkout -q --force FETCH_HEAD")
    else:
      # Ship exactly the committed tree of --ref; uncommitted edits are not included.
      tarball = os.path.join(tempfile.gettempdir(), f"deeplearn_jax-{a.name}.tar.gz")
      self.sh.run(["git", "-C", REPO, "archive", "--format=tar.gz", f"--output={tarball}",
                   a.ref], "git archive")
      self.sh.run(self.gcloud("tpu-vm", "scp", tarball, f"{a.name}:deeplearn_jax-src.tar.gz",
                              "--worker=all"), "copying the project")
      fetch = f"mkdir -p {d} && tar -xzf deeplearn_jax-src.tar.gz -C {d} && cd {d}"
    py = shlex.quote(a.python)
    # TPU images ship Python 3.10; the project needs 3.11+, so it gets its own venv.
    get_python = (f"(command -v {py} >/dev/null || (sudo apt-get -q -o DPkg::Lock::Timeout=600 "
                  f"update && sudo apt-get -q -y -o DPkg::Lock::Timeout=600 install {py} "
                  f"{shlex.quote(a.python + '-venv')}))")
    pip = (f"{py} -m venv .venv && .venv/bin/pip install -q --upgrade pip && "
           ".venv/bin/pip install -c requirements.lock -e \".[tpu]\"")
    self.sh.run(self.ssh(f"{fetch} && {get_python} && {pip}"), "install")

  def preflight(self) -> None:
    devices, hosts = self.expected
    code = common.preflight_code(devices, hosts, devices // hosts, "tpu")
    self.sh.run(self.ssh(f"{self.env_prefix()} && .venv/bin/python -c {shlex.quote(code)}"),
                "preflight")

  def run(self) -> None:
    a = self.a
    argv = common.experiment_argv(".venv/bin/python", self.module, a.workdir, self.passthrough)
    log = f"logs/{self.module.split('.')[-1]}.log"
    # Each worker keeps its own log (appended across reruns); pipefail keeps python's status.
    remote = (f"{self.env_prefix()} && mkdir -p logs && set -o pipefail && "
              f"{shlex.join(argv)} 2>&1 | tee -a {log}")
    try:
      self.sh.run(self.ssh(remote), "run")
    except LaunchError as e:
      raise LaunchError(f"{e}; rerunning with the same --workdir resumes from its newest "
                        f"checkpoint; worker logs: ~/{a.remote_dir}/{log}") from None

  def fetch(self) -> None:
    if not self.sh.dry_run:
      os.makedirs(self.a.fetch_to, exist_ok=True)
    self.sh.run(self.gcloud("tpu-vm", "scp", "--recurse", f"{self.a.name}:{self.remote_workdir()}",
                            self.a.fetch_to, "--worker=0"), "fetch")

  def delete(self) -> None:
    if self.a.queued:  # --force also deletes the TPU VM the queued resource holds
      cmd = self.gcloud("queued-resources", "delete", self.a.name, "--force", "--quiet")
    else:
      cmd = self.gcloud("tpu-vm", "delete", self.a.name, "--quiet")
    self.sh.run(cmd, "delete")

  def delete_hint(self) -> str:
    what = "queued-resources delete --force" if self.a.queued else "tpu-vm delete"
    return f"delete it with: gcloud compute tpus {what} {self.a.name} --zone={self.a.zone}"

  # --- validation and the sequence ----------------------------------------------------

  def validate(self, steps: list[str]) -> None:
    a = self.a
    common.check_env(a.env)
    if "create" in steps:
      if not a.accelerator_type:
        raise LaunchError("--accelerator_type is required to create a TPU (e.g. v4-32)")
      if not a.runtime_version:
        generation = a.accelerator_type.split("-")[0]
        if generation not in RUNTIMES:
          raise LaunchError(f"no default runtime for {a.accelerator_type}; give --runtime_version")
        a.runtime_version = RUNTIMES[generation]
    if "preflight" in steps:
      shape = slice_shape(a.accelerator_type) if a.accelerator_type else None
      devices = a.expect_devices or (shape and shape[0])
      hosts = a.expect_hosts or (shape and shape[1])
      if not devices or not hosts:
        raise LaunchError(f"cannot derive the device and host counts of accelerator type "
                          f"{a.accelerator_type!r}; give --expect_devices and --expect_hosts")
      if devices % hosts:
        raise LaunchError(f"{devices} devices do not split over {hosts} hosts")
      self.expected = (devices, hosts)
    if "run" in steps:
      self.module = common.experiment_module(a.experiment, " for the run step")
      common.check_passthrough(self.passthrough)
    elif self.passthrough:
      raise LaunchError("arguments after -- are for the run step only")
    if "run" in steps or ("fetch" in steps and not a.no_fetch):
      common.check_workdir(a.workdir, f" for the {'run' if 'run' in steps else 'fetch'} step")
      if a.workdir.startswith("~"):
        raise LaunchError("--workdir: give an absolute path or one relative to --remote_dir, "
                          "not ~ (it would not expand on the workers)")

  def main(self) -> None:
    a = self.a
    steps = [s for s in (STEPS if a.step == "all" else (a.step,))
             if not (s == "fetch" and a.no_fetch)]
    self.validate(steps)
    error, step = None, None
    try:
      for step in steps:
        if step != "delete":  # deletion comes below, also after a failure
          getattr(self, step)()
    except LaunchError as e:
      error = str(e)
    except KeyboardInterrupt:
      error = f"interrupted during {step}"
    # `all` keeps the slice when asked to, or when fetch failed: the workdir may exist
    # only there.
    fetch_failed = error is not None and step == "fetch"
    keep = a.step == "all" and (a.keep or fetch_failed)
    if "delete" in steps and not keep:
      try:
        self.delete()
      except LaunchError as e:
        error = f"{error}; then {e}" if error else str(e)
    elif keep and not a.dry_run:
      reason = "fetch failed" if fetch_failed else "--keep"
      print(f"kept TPU {a.name} ({reason}); {self.delete_hint()}", file=sys.stderr)
    if error:
      common.fail(error)


def main(argv: list[str]) -> None:
  own, passthrough = common.split_passthrough(argv)
  args = parse(own)
  try:
    Launcher(args, passthrough).main()
  except LaunchError as e:
    common.fail(str(e))


if __name__ == "__main__":
  main(sys.argv[1:])
