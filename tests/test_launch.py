"""The launchers (launch/tpu_vm.py, launch/slurm.py) as a user runs them, with --dry-run:
every command they would run is printed, one shell-quoted line each, and parsed here."""

import os
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TPU = ["--name=dl-r50", "--zone=us-central2-b", "--accelerator_type=v4-32",
       "--experiment=imagenet_cnn", "--workdir=/mnt/shared/runs/r50", "--dry-run"]
SLURM = ["--experiment=imagenet_cnn", "--nodes=2", "--gpus_per_node=8",
         "--workdir=/shared/runs/r50", "--dry-run"]
# Experiment flags that need quoting: a space, shell metacharacters.
PASSTHROUGH = ["--", "--config.batch_size=1024", "--config.model.hidden=(512, 512)",
               "--config.name=a$b;c"]


def launch(script, *args, env=None):
  return subprocess.run([sys.executable, os.path.join("launch", script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=60, env=env)


def commands(proc):
  assert proc.returncode == 0, proc.stderr
  return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def remote(cmd):
  """The words of the shell command a `gcloud ... ssh --command=...` runs on the workers."""
  [arg] = [w for w in cmd if w.startswith("--command=")]
  return shlex.split(arg[len("--command="):])


def is_gcloud(cmd, *words):
  return cmd[:3] == ["gcloud", "compute", "tpus"] and cmd[3:3 + len(words)] == list(words)


def contains(words, sub):
  return any(words[i:i + len(sub)] == sub for i in range(len(words)))


def assert_one_line_error(proc, text):
  assert proc.returncode != 0
  assert proc.stdout == ""
  assert "Traceback" not in proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert text in lines[0], lines[0]


def test_tpu_all_creates_installs_checks_runs_fetches_then_deletes():
  cmds = commands(launch("tpu_vm.py", *TPU, "--spot", "--env=TFDS_DATA_DIR=/mnt/shared/tfds",
                         *PASSTHROUGH))
  create = cmds[0]
  assert is_gcloud(create, "tpu-vm", "create", "dl-r50")
  assert "--accelerator-type=v4-32" in create and "--spot" in create
  assert "--version=tpu-ubuntu2204-base" in create and "--zone=us-central2-b" in create

  ssh = [c for c in cmds if is_gcloud(c, "tpu-vm", "ssh", "dl-r50")]
  assert len(ssh) == 3  # install, preflight, run
  assert all("--worker=all" in c for c in ssh)
  install, preflight, run = (remote(c) for c in ssh)
  assert contains(install, [".venv/bin/pip", "install", "-c", "requirements.lock", "-e", ".[tpu]"])

  code = preflight[preflight.index("-c") + 1]
  assert "parallel.initialize()" in code
  assert 'want = dict(devices=16, processes=4, local_devices=4, platform="tpu")' in code

  i = run.index("-m")
  assert run[i - 1:i + 3] == [".venv/bin/python", "-m", "experiments.imagenet_cnn",
                              "--workdir=/mnt/shared/runs/r50"]
  assert run[i + 3:i + 6] == PASSTHROUGH[1:]  # each flag one word, exactly as given
  assert "TFDS_DATA_DIR=/mnt/shared/tfds" in run
  assert run[-3:] == ["tee", "-a", "logs/imagenet_cnn.log"]  # the worker's own log

  # The project is copied to every worker before anything runs there.
  copy = [c for c in cmds if is_gcloud(c, "tpu-vm", "scp") and "--worker=all" in c]
  assert len(copy) == 1 and cmds.index(copy[0]) < cmds.index(ssh[0])
  fetch = cmds[-2]
  assert is_gcloud(fetch, "tpu-vm", "scp", "--recurse", "dl-r50:/mnt/shared/runs/r50")
  assert "--worker=0" in fetch
  assert cmds.index(ssh[2]) < cmds.index(fetch)
  assert is_gcloud(cmds[-1], "tpu-vm", "delete", "dl-r50") and "--quiet" in cmds[-1]


def test_tpu_queued_waits_until_active_and_deletes_the_queued_resource():
  cmds = commands(launch("tpu_vm.py", *TPU, "--queued", "--spot", "--no_fetch",
                         "--repo=https://example.com/deeplearn_jax.git", "--ref=v1"))
  create, describe = cmds[0], cmds[1]
  assert is_gcloud(create, "queued-resources", "create", "dl-r50")
  assert "--node-id=dl-r50" in create and "--accelerator-type=v4-32" in create
  assert "--spot" in create and "--runtime-version=tpu-ubuntu2204-base" in create
  assert is_gcloud(describe, "queued-resources", "describe", "dl-r50")
  assert not any(is_gcloud(c, "tpu-vm", "create") or is_gcloud(c, "tpu-vm", "scp")
                 for c in cmds)  # --no_fetch, and the code comes from git clone
  install = " ".join(remote(cmds[2]))
  assert "git clone -q https://example.com/deeplearn_jax.git" in install
  assert "git fetch -q origin v1" in install
  assert is_gcloud(cmds[-1], "queued-resources", "delete", "dl-r50")
  assert "--force" in cmds[-1]


def test_tpu_keep_and_single_steps():
  cmds = commands(launch("tpu_vm.py", *TPU, "--keep"))
  assert not any(is_gcloud(c, "tpu-vm", "delete") for c in cmds)
  [run] = commands(launch("tpu_vm.py", "run", *TPU, "--project=my-proj", "--",
                          "--config=experiments/lenet.py:smoke"))
  assert is_gcloud(run, "tpu-vm", "ssh", "dl-r50") and "--project=my-proj" in run
  assert "--config=experiments/lenet.py:smoke" in remote(run)
  [delete] = commands(launch("tpu_vm.py", "delete", "--name=dl-r50", "--zone=z", "--dry-run"))
  assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "dl-r50", "--quiet",
                    "--zone=z"]


@pytest.mark.parametrize("accelerator, devices, hosts", [
    ("v4-8", 4, 1), ("v4-32", 16, 4), ("v5p-128", 64, 16), ("v3-32", 32, 4),
    ("v2-8", 8, 1), ("v5litepod-8", 8, 1), ("v5litepod-16", 16, 4), ("v6e-64", 64, 16)])
def test_tpu_preflight_expects_the_counts_of_the_accelerator_type(accelerator, devices, hosts):
  [cmd] = commands(launch("tpu_vm.py", "preflight", "--name=n", "--zone=z",
                          f"--accelerator_type={accelerator}", "--dry-run"))
  code = remote(cmd)[-1]
  assert (f"want = dict(devices={devices}, processes={hosts}, "
          f"local_devices={devices // hosts}, platform=\"tpu\")") in code
  [cmd] = commands(launch("tpu_vm.py", "preflight", "--name=n", "--zone=z", "--dry-run",
                          "--accelerator_type=v9-99", "--expect_devices=12", "--expect_hosts=3"))
  assert "want = dict(devices=12, processes=3, local_devices=4," in remote(cmd)[-1]


def test_preflight_code_passes_and_fails_for_real():
  """The generated one-liner itself, on this machine's single CPU device."""
  script = launch("slurm.py", "--experiment=lenet", "--nodes=1", "--gpus_per_node=1",
                  "--workdir=/w", "--dry-run").stdout
  [line] = [l for l in script.splitlines() if l.startswith("srun") and " -c " in l]
  words = shlex.split(line.split(" || ")[0])
  code = words[words.index("-c") + 1]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  wrong = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
  assert wrong.returncode == 1
  assert "preflight: process 0 of 1: 1 local / 1 global cpu devices" in wrong.stdout
  assert "preflight failed: platform cpu (expected gpu)" in wrong.stderr
  ok = subprocess.run([sys.executable, "-c", code.replace('platform="gpu"', 'platform="cpu"')],
                      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert ok.returncode == 0, ok.stderr


def slurm_script(*args):
  proc = launch("slurm.py", *SLURM, *args)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  return lines[:-1], shlex.split(lines[-1])


def test_slurm_per_gpu_script_then_sbatch(tmp_path):
  script, sbatch = slurm_script("--partition=gpu", "--time=24:00:00", "--account=proj",
                                "--requeue", *PASSTHROUGH)
  assert sbatch == ["sbatch", "/shared/runs/r50/slurm/imagenet_cnn.sbatch"]
  assert script[0] == "#!/bin/bash"
  for option in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-task=1", "--partition=gpu",
                 "--time=24:00:00", "--account=proj", "--requeue", "--signal=TERM@120",
                 "--job-name=imagenet_cnn"):
    assert f"#SBATCH {option}" in script
  sruns = [shlex.split(l.split(" || ")[0]) for l in script if l.startswith("srun ")]
  assert len(sruns) == 2  # preflight, then training
  preflight, train = sruns
  assert "want = dict(devices=16, processes=16, local_devices=1" in preflight[-1]
  i = train.index("-m")
  assert train[i - 1:i + 3] == ["python", "-m", "experiments.imagenet_cnn",
                                "--workdir=/shared/runs/r50"]
  assert train[i + 3:] == PASSTHROUGH[1:]
  assert "--ntasks-per-node=8" in train and "--gpus-per-task=1" in train
  assert '  scontrol requeue "$SLURM_JOB_ID"' in script
  text = tmp_path / "job.sbatch"
  text.write_text("\n".join(script) + "\n")
  check = subprocess.run(["bash", "-n", str(text)], capture_output=True, text=True)
  assert check.returncode == 0, check.stderr


def test_slurm_per_node():
  script, _ = slurm_script("--mode=per-node")
  assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --gpus-per-node=8" in script
  assert not any("gpus-per-task" in l for l in script)
  assert not any("scontrol requeue" in l for l in script)
  preflight = [l for l in script if l.startswith("srun ")][0]
  assert "want = dict(devices=16, processes=2, local_devices=8" in preflight


@pytest.mark.parametrize("script, args, message", [
    ("slurm.py", ["--experiment=a", "--workdir=/w", "--mode=bogus"], "invalid choice: 'bogus'"),
    ("slurm.py", ["--workdir=/w"], "--experiment is required"),
    ("slurm.py", ["--experiment=a", "--workdir=runs/a"], "must be an absolute path"),
    ("slurm.py", ["--experiment=a", "--workdir=/w", "--nodes=0"], "--nodes must be at least 1"),
    ("slurm.py", ["--experiment=a", "--workdir=/w", "--config.x=1"], "go after --"),
    ("tpu_vm.py", ["--name=n", "--zone=z", "--accelerator_type=v4-8", "--workdir=/w"],
     "--experiment is required for the run step"),
    ("tpu_vm.py", ["--name=n", "--zone=z", "--accelerator_type=v4-8", "--experiment=a",
                   "--workdir=gs://bucket/run"], "does not support bucket URLs"),
    ("tpu_vm.py", ["preflight", "--name=n", "--zone=z", "--accelerator_type=v9-3"],
     "give --expect_devices and --expect_hosts"),
    ("tpu_vm.py", ["run", "--name=n", "--zone=z", "--experiment=a", "--workdir=/w", "--",
                   "--workdir=/x"], "--workdir is set by the launcher"),
    ("tpu_vm.py", ["--zone=z"], "required: --name"),
])
def test_bad_arguments_give_one_line_error(script, args, message):
  assert_one_line_error(launch(script, *args, "--dry-run"), message)


def test_a_failing_command_gives_one_line_error(tmp_path):
  """Without --dry-run, with no gcloud on PATH: the error names the step; nothing else runs."""
  env = dict(os.environ, PATH=str(tmp_path))
  proc = launch("tpu_vm.py", "delete", "--name=n", "--zone=z", env=env)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == "error: delete: gcloud not found on PATH"


def fake_tools(tmp_path, fail_on=None):
  """A PATH with stand-ins for gcloud and git that log their arguments and succeed, except
  gcloud exits 3 when its arguments contain `fail_on`. A queued resource is reported
  WAITING_FOR_RESOURCES once, then ACTIVE."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "calls.log"
  fail = f'case "$*" in *{shlex.quote(fail_on)}*) exit 3;; esac' if fail_on else ""
  (bin_dir / "gcloud").write_text(f"""#!/bin/sh
echo "gcloud $*" >> {log}
{fail}
case "$*" in *"queued-resources describe"*)
  if [ -f {tmp_path}/polled ]; then echo ACTIVE; else : > {tmp_path}/polled; echo WAITING_FOR_RESOURCES; fi;;
esac
""")
  (bin_dir / "git").write_text(f'#!/bin/sh\necho "git $*" >> {log}\n')
  for tool in ("gcloud", "git"):
    (bin_dir / tool).chmod(0o755)
  return dict(os.environ, PATH=str(bin_dir)), log


def run_for_real(tmp_path, *args, fail_on=None):
  env, log = fake_tools(tmp_path, fail_on)
  proc = launch("tpu_vm.py", *[a for a in TPU if a != "--dry-run"], "--poll_seconds=0",
                f"--fetch_to={tmp_path / 'runs'}", *args, env=env)
  assert "Traceback" not in proc.stderr
  return proc, [line.split() for line in log.read_text().splitlines()]


def test_tpu_all_deletes_the_slice_when_the_run_fails(tmp_path):
  proc, calls = run_for_real(tmp_path, fail_on="experiments.imagenet_cnn")
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: run failed (exit code 3)") and "resumes" in last
  assert calls[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
  assert not any("--recurse" in c for c in calls)  # nothing to fetch from a failed run


def test_tpu_all_keeps_the_slice_when_fetch_fails(tmp_path):
  proc, calls = run_for_real(tmp_path, fail_on="--recurse")
  assert proc.returncode == 1
  assert "kept TPU dl-r50 (fetch failed)" in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("error: fetch failed")
  assert not any("delete" in c for c in calls)


def test_tpu_queued_all_polls_until_active(tmp_path):
  proc, calls = run_for_real(tmp_path, "--queued")
  assert proc.returncode == 0, proc.stderr
  assert "queued resource dl-r50: WAITING_FOR_RESOURCES" in proc.stderr
  verbs = [c[3:5] for c in calls if c[0] == "gcloud"]
  assert verbs[:3] == [["queued-resources", "create"], ["queued-resources", "describe"],
                       ["queued-resources", "describe"]]
  assert verbs[-1] == ["queued-resources", "delete"]
