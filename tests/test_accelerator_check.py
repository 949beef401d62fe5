"""benchmarks/accelerator_check.py --smoke on CPU: one JSON summary with every part, a
failing part recorded without losing the others, missing MNIST files as a clear skip;
and the bf16 training step that the check runs on the accelerator."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import REPO
from deeplearn_jax import models
from deeplearn_jax.train import optimizers, supervised
from deeplearn_jax.train.state import make_init
from deeplearn_jax.train.steps import make_train_step

SCRIPT = os.path.join(REPO, "benchmarks", "accelerator_check.py")


def _check(tmp_path, *flags, timeout=240) -> tuple[dict, str]:
  out = tmp_path / "summary.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TFDS_DATA_DIR=str(tmp_path / "tfds"))
  proc = subprocess.run([sys.executable, SCRIPT, "--smoke", f"--out={out}", *flags], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(out.read_text())
  assert json.loads(proc.stdout) == summary  # the same summary on stdout
  return summary, proc.stderr


@pytest.mark.slow
def test_smoke_run_reports_every_part_and_keeps_going_past_a_failure(tmp_path):
  bad = tmp_path / "data" / "mnist"  # files present but not MNIST: the LeNet part fails
  bad.mkdir(parents=True)
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    (bad / name).write_bytes(b"not a gzip file")
  s, _ = _check(tmp_path, f"--data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}")
  assert s["smoke"] is True and "tiny-shakespeare missing" in s["nanogpt"]["skipped"]
  assert 0 < s["total_seconds"] < s["limit_seconds"]
  dev = s["device"]
  assert dev["platform"] == "cpu" and dev["device_kind"] and dev["jax"] == jax.__version__
  assert dev["matmul_tflops"] > 0
  for name in ("resnet50", "fast_cifar"):
    r = s[name]
    assert "error" not in r, r
    assert r["dtype"] == "bfloat16" and r["images_per_second"] > 0 and r["seconds"] > 0
    assert r["mfu"] > 0 and r["mfu_vs_measured_matmul"] > 0 and r["model_flops_per_image"] > 0
  # --smoke measures the smallest ResNet through the same code (ResNet-50 on a GPU).
  assert s["resnet50"]["model"] == "cifar_resnet" and s["fast_cifar"]["model"] == "fast_cifar"
  assert s["resnet50"]["fraction_of_mlperf_per_h100"] > 0
  tests = s["tests"]
  assert tests["all_passed"], tests
  assert tests["device"]["passed"] >= 1 and tests["cpu_fake_devices"]["passed"] == 1
  assert tests["failed"] == 0
  assert "error" in s["lenet_mnist"] and s["lenet_mnist"]["seconds"] > 0
  assert s["references"]["mlperf_resnet50_images_per_second_per_h100"] == 7000


def test_missing_mnist_is_a_clear_skip(tmp_path):
  s, err = _check(tmp_path, "--parts=lenet_mnist", f"--data_dir={tmp_path / 'nowhere'}")
  skip = s["lenet_mnist"]["skipped"]
  assert "MNIST files missing" in skip and str(tmp_path / "nowhere" / "mnist") in skip
  assert "skipped: MNIST files missing" in err
  assert "nanogpt" not in s and "error" not in s["lenet_mnist"]


@pytest.mark.slow
@pytest.mark.xdist_group("real_mnist")  # with test_data's: real MNIST is prepared once
def test_smoke_lenet_and_nanogpt_on_real_data_read_the_metrics(tmp_path, shared_data,
                                                               tfds_dir):
  s, _ = _check(tmp_path, "--parts=lenet_mnist,nanogpt", f"--data_dir={shared_data}",
                f"--tfds_data_dir={tfds_dir}", timeout=400)
  g = s["nanogpt"]
  assert "error" not in g, g
  assert g["iterations"] == g["planned_iterations"] > 0 and g["tokens_per_second"] > 0
  assert g["last_val_loss"] == pytest.approx(g["val_loss"])
  r = s["lenet_mnist"]
  assert "error" not in r, r
  assert r["evaluations"] >= 2 and 0 < r["best_accuracy"] <= 1
  assert r["reached"] is (r["time_to_target_seconds"] is not None)
  assert r["conv"] in ("im2col", "lax") and r["data_load_seconds"] > 0


@pytest.mark.accelerator
def test_bf16_train_step_updates_float32_params_and_learns():
  """The trainer's step with a bf16 CNN (batch norm, Nesterov): finite losses, float32
  parameters and statistics, and a lower loss after a few steps on one batch."""
  model = models.create(ml_collections.ConfigDict(
      dict(name="resnet18", width=8, stage_sizes=(1, 1, 1, 1))), 10, "bfloat16")
  config = supervised.base_config()
  config.optimizer.name, config.optimizer.learning_rate = "nesterov", 0.05
  tx, _ = optimizers.create(config.optimizer, 10, 100)
  state = jax.jit(make_init(model, tx, (32, 32, 3), seed=0))()
  step = jax.jit(make_train_step(model, tx, config), donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {"input": jnp.asarray(rng.normal(size=(16, 32, 32, 3)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  first = jax.device_get(state.params)
  losses = []
  for _ in range(8):
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  for leaf in jax.tree.leaves((state.params, state.batch_stats)):
    assert leaf.dtype == jnp.float32
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), first, state.params)
  assert any(jax.tree.leaves(moved))
