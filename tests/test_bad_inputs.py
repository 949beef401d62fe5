"""Bad input as a user meets it: every case gives one clear line (through the command
line: `error: ...`, exit code 2, no traceback) and leaves the workdir as it was (or
never creates it). Most cases run in-process through the command line's own config
parser (cli.load_config); a few go through the real command line end to end."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_env
from deeplearn_jax import cli
from deeplearn_jax.errors import UserError
from experiments import lenet, mnist_dnn


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


@pytest.mark.slow
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
    (["--config.batch_size=63"], "batch_size=63 is not divisible by the 8 devices"),
    (["--config.mesh.data=16"], "needs 16 devices; there are 8"),
    (["--config.nan_policy=ignore"], "nan_policy must be one of"),
    (["--config.optimizer.schedule=exp"], "schedule must be one of"),
    (["--config.data.normalize=zscore"], "normalize must be"),
    (["--config.model.widht=3"], "unknown config key config.model.widht"),
    (["--config.model.conv=fft"], "conv must be one of auto, im2col, lax"),
    (["--config.data.name=imagenot"], "unknown dataset 'imagenot'"),
    (["--config.model.name=vgg99"], "unknown model 'vgg99'"),
    (["--config.optimizer.name=lbfgs"], "optimizer.name must be one of"),
    (["--config.init_from=/no/such/stack"], "cannot load parameters from /no/such/stack"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_are_one_clear_error_before_anything_is_written(flags, message, tmp_path):
  """In-process, through the command line's own config parser (cli.load_config)."""
  wd = tmp_path / "run"
  with pytest.raises(UserError) as err:
    lenet.train_and_evaluate(cli.load_config("experiments/lenet.py:smoke", flags), str(wd))
  assert message in str(err.value) and "\n" not in str(err.value)
  assert not wd.exists()


@pytest.mark.parametrize("spec,message", [
    ("experiments/lenet.py:bogus", "unknown variant 'bogus'"),
    ("experiments/mnist_dnn.py:plain,l2", "unknown variant 'plain,l2'"),
    ("experiments/nofile.py", "nofile.py"),
])
def test_bad_variants_and_files_are_one_clear_error(spec, message):
  with pytest.raises(UserError, match=message):
    cli.load_config(spec)


def test_variants_combine_with_smoke_in_every_experiment():
  """One parser: `:NAME,smoke` works wherever `:NAME` does."""
  for spec, name in [("lenet.py:paper,smoke", "lenet5"), ("mnist_dnn.py:l2,smoke", "mlp"),
                     ("rbm.py:pcd,smoke", None), ("imagenet_cnn.py:cifar10,smoke", "fast_cifar"),
                     ("optimizers.py:smoke", "mlp"), ("dbn.py:smoke", "mlp")]:
    config = cli.load_config(f"experiments/{spec}")
    assert config.data.name in ("digits", "mock_images"), spec
    if name:
      assert config.model.name == name, spec
  assert cli.load_config("experiments/lenet.py:paper,smoke").model.activation == "tanh"
  assert cli.load_config("experiments/rbm.py:pcd,smoke").rbm.pcd


# One error from parsing the config, one from checking it against the devices; the rest
# of BAD_FLAGS goes through the same parser in-process, and an unknown key below.
@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--config=experiments/lenet.py:bogus"], "unknown variant 'bogus'"),
    (["--config.batch_size=63"], "batch_size=63 is not divisible by the 2 devices"),
])
def test_bad_flags_through_the_real_command_line(flags, message, tmp_path):
  wd = tmp_path / "run"
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke", *flags,
               f"--workdir={wd}"], tmp_path, devices=2)
  _assert_clean_error(proc, message)
  assert proc.returncode == 2
  assert not wd.exists()


@pytest.mark.slow
def test_unknown_key_without_a_config_flag(tmp_path):
  # With no --config the default file loads while the flag is defined: same one line.
  proc = _run(["experiments.lenet", "--config.nosuch=1", f"--workdir={tmp_path / 'r'}"],
              tmp_path)
  _assert_clean_error(proc, "unknown config key config.nosuch")
  assert proc.returncode == 2


def _idx(path, magic, dims, payload):
  with gzip.open(path, "wb") as f:
    f.write(np.array([magic, *dims], ">i4").tobytes() + payload)


def test_missing_corrupt_and_truncated_data_files(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  manual = tmp_path / "manual"
  folder = manual / "mnist"
  wd = tmp_path / "r"

  def error():
    config = cli.load_config("experiments/lenet.py", [f"--config.data.manual_dir={manual}"])
    with pytest.raises(UserError) as err:
      lenet.train_and_evaluate(config, str(wd))
    return str(err.value)

  assert "mnist does not exist" in error()
  folder.mkdir(parents=True)
  assert "missing data file" in error()
  images = folder / "train-images-idx3-ubyte.gz"
  images.write_bytes(b"\x1f\x8b\x08\x00cut")  # a gzip header and nothing else
  assert "corrupt data file" in error()
  _idx(images, 2051, (60000, 28, 28), bytes(1000))  # valid header, payload cut short
  message = error()
  assert "train-images-idx3-ubyte.gz" in message and "truncated" in message
  assert not wd.exists()
  assert not list((tmp_path / "tfds").glob("mnist/*/dataset_info.json"))


@pytest.mark.slow
def test_unwritable_workdir(tmp_path):
  (tmp_path / "file").write_text("x")
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke",
               f"--workdir={tmp_path / 'file' / 'run'}"], tmp_path)
  _assert_clean_error(proc, "is not writable")


def test_foreign_checkpoint_is_refused_and_kept(tmp_path):
  """In-process: the command line's one-line form of a UserError is checked above."""
  wd = str(tmp_path / "run")
  mnist_dnn.train_and_evaluate(cli.load_config("experiments/mnist_dnn.py:plain,smoke",
                                               ["--config.num_train_steps=10"]), wd)
  before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
  with pytest.raises(UserError, match="holds a checkpoint of another config"):
    lenet.train_and_evaluate(cli.load_config("experiments/lenet.py:smoke"), wd)
  assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
  assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"] == "mlp"


@pytest.mark.slow
def test_garbage_config_json_is_refused_and_kept(tmp_path):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / "config.json").write_bytes(b"\x00\xffnot json")
  proc = _run(["experiments.lenet", "--config=experiments/lenet.py:smoke", f"--workdir={wd}"],
              tmp_path)
  _assert_clean_error(proc, "config.json is unreadable")
  assert (wd / "config.json").read_bytes() == b"\x00\xffnot json"
  assert sorted(os.listdir(wd)) == ["config.json"]


@pytest.mark.slow
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