"""Bad input as a user meets it, through the real command line: every case gives one
line starting with `error:`, a non-zero exit, no traceback, and leaves the workdir as
it was (or never creates it)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_env


def _run(args, tmp_path, expect_ok=False, devices=1):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=cli_env(tmp_path, devices),
                        capture_output=True, text=True, timeout=300)
  if expect_ok:
    assert proc.returncode == 0, proc.stderr[-2000:]
  return proc


def _assert_clean_error(proc, pattern):
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), proc.stderr[-1000:]
  assert pattern in last, last


def test_smoke_command_writes_results_and_resumes(tmp_path):
  wd = tmp_path / "run"
  cmd = ["experiments.lenet", "--config=experiments/lenet.py:smoke", f"--workdir={wd}"]
  first = _run(cmd, tmp_path, expect_ok=True)
  printed = json.loads(first.stdout)
  results = json.loads((wd / "results.json").read_text())
  for key in ("test_accuracy", "test_error", "final_train_loss", "steps", "num_params",
              "train_seconds", "examples_per_second"):
    assert key in results
  assert printed["test_accuracy"] == results["test_accuracy"]
  # The same command again finds the finished run and reports the same figures.
  again = json.loads(_run(cmd, tmp_path, expect_ok=True).stdout)
  assert again["test_accuracy"] == results["test_accuracy"]
  assert again["final_train_loss"] == results["final_train_loss"]


BAD_FLAGS = [
    (["--config.nosuch=1"], "unknown config key config.nosuch"),
    (["--config.data.nosuch=1"], "unknown config key config.data.nosuch"),
    (["--config.batch_size=abc"], "--config.batch_size=abc"),
    (["--config.optimizer.learning_rate=fast"], "--config.optimizer.learning_rate=fast"),
    (["--config.batch_size=0"], "batch_size must be positive"),
    (["--config.batch_size=-8"], "batch_size must be positive"),
    (["--config.mesh.data=3"], "needs 3 devices; there are 1"),
    (["--config.nan_policy=ignore"], "nan_policy must be one of"),
    (["--config.optimizer.schedule=exp"], "schedule must be one of"),
    (["--config.data.normalize=zscore"], "normalize must be"),
    (["--config.model.widht=3"], "unknown config key config.model.widht"),
    (["--config.data.name=imagenot"], "unknown dataset 'imagenot'"),
    (["--config.model.name=vgg99"], "unknown model 'vgg99'"),
    (["--config=experiments/lenet.py:bogus"], "unknown variant 'bogus'"),
    (["--config=experiments/nofile.py"], "nofile.py"),
    (["--config.optimizer.name=lbfgs"], "optimizer.name must be one of"),
    (["--config.init_from=/no/such/stack"], "cannot load parameters from /no/such/stack"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_give_one_line(flags, message, tmp_path):
  wd = tmp_path / "run"
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke", *flags,
               f"--workdir={wd}"], tmp_path)
  _assert_clean_error(proc, message)
  assert not wd.exists()


def test_unknown_key_without_a_config_flag(tmp_path):
  # With no --config the default file loads while the flag is defined: same one line.
  proc = _run(["experiments.lenet", "--config.nosuch=1", f"--workdir={tmp_path / 'r'}"],
              tmp_path)
  _assert_clean_error(proc, "unknown config key config.nosuch")
  assert proc.returncode == 2


def test_batch_not_divisible_by_the_devices(tmp_path):
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke",
               "--config.batch_size=63", f"--workdir={tmp_path / 'r'}"], tmp_path, devices=2)
  _assert_clean_error(proc, "batch_size=63 is not divisible by the 2 devices")
  assert not (tmp_path / "r").exists()


def _idx(path, magic, dims, payload):
  with gzip.open(path, "wb") as f:
    f.write(np.array([magic, *dims], ">i4").tobytes() + payload)


def test_missing_corrupt_and_truncated_data_files(tmp_path):
  manual = tmp_path / "manual"
  folder = manual / "mnist"
  cmd = ["experiments.lenet", f"--config.data.manual_dir={manual}", f"--workdir={tmp_path / 'r'}"]
  _assert_clean_error(_run(cmd, tmp_path), "mnist does not exist")
  folder.mkdir(parents=True)
  _assert_clean_error(_run(cmd, tmp_path), "missing data file")
  images = folder / "train-images-idx3-ubyte.gz"
  images.write_bytes(b"\x1f\x8b\x08\x00cut")  # a gzip header and nothing else
  _assert_clean_error(_run(cmd, tmp_path), "corrupt data file")
  _idx(images, 2051, (60000, 28, 28), bytes(1000))  # valid header, payload cut short
  proc = _run(cmd, tmp_path)
  _assert_clean_error(proc, "train-images-idx3-ubyte.gz")
  assert "truncated" in proc.stderr
  assert not (tmp_path / "r").exists()
  assert not list((tmp_path / "tfds").glob("mnist/*/dataset_info.json"))


def test_unwritable_workdir_and_foreign_checkpoint(tmp_path):
  (tmp_path / "file").write_text("x")
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke",
               f"--workdir={tmp_path / 'file' / 'run'}"], tmp_path)
  _assert_clean_error(proc, "is not writable")

  wd = tmp_path / "run"
  _run(["experiments.mnist_dnn", "--config=experiments/mnist_dnn.py:plain,smoke",
        "--config.num_train_steps=10", f"--workdir={wd}"], tmp_path, expect_ok=True)
  before = sorted(p.name for p in (wd / "checkpoints").iterdir())
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke", f"--workdir={wd}"],
              tmp_path)
  _assert_clean_error(proc, "holds a checkpoint of another config")
  assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == before
  assert json.loads((wd / "config.json").read_text())["model"]["name"] == "mlp"


def test_garbage_config_json_is_refused_and_kept(tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / "config.json").write_bytes(b"\x00\xffnot json")
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke", f"--workdir={wd}"],
              tmp_path)
  _assert_clean_error(proc, "config.json is unreadable")
  assert (wd / "config.json").read_bytes() == b"\x00\xffnot json"
  assert sorted(os.listdir(wd)) == ["config.json"]


def test_read_only_filesystem(tmp_path):
  ro = tmp_path / "ro"
  ro.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                    capture_output=True).returncode != 0:
    pytest.skip("cannot mount a read-only tmpfs here (needs root)")
  try:
    proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke",
                 f"--workdir={ro / 'run'}"], tmp_path)
    _assert_clean_error(proc, "is not writable (Read-only file system)")
  finally:
    subprocess.run(["umount", "-l", str(ro)], check=False)