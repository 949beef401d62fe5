"""Test setup: 8 fake CPU devices (sharding tests), a persistent compile cache, XLA's
deterministic kernels when a GPU runs the tests (they assert bit-identical resume), and
a private TFDS folder so tests never touch the user's ~/tensorflow_datasets."""

import os

import jax
import pytest

from deeplearn_jax import cli, configs, data, metrics

# Every compiled program goes into the persistent cache, in this process and in the
# commands the tests start: op-by-op (eager) operations compile in milliseconds each,
# under the usual 0.5 s floor, and in their thousands they took half of some test files'
# time on every run (test_rnn, test_models and test_reservoir: 126 s -> 55 s, warm).
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
cli.setup_jax(gpu_deterministic=True, cpu_devices=8)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def override(config, **overrides):
  """A locked copy of config with `overrides` applied (dotted keys as 'optimizer.name')."""
  return configs.replaced(config, **overrides)


def smoke_config(module, variant: str = "smoke", **overrides):
  """An experiment's config for `variant` with `overrides` applied."""
  return override(module.get_config(variant), **overrides)


def train_losses(workdir) -> list[tuple[int, float]]:
  """(step, loss) of every train row a run logged."""
  return [(r["step"], r["loss"]) for r in metrics.read_metrics(workdir) if r["split"] == "train"]


def patch_batches(monkeypatch, edit) -> None:
  """Wraps every trainer's training stream: edit(step, batch) may change it or raise
  (a crash, a NaN input) at a chosen step."""
  original = data.train_batches

  def wrapped(*args, start_step, **kwargs):
    for step, batch in enumerate(original(*args, start_step=start_step, **kwargs), start_step):
      yield edit(step, batch)

  monkeypatch.setattr(data, "train_batches", wrapped)


def crash_at(step: int):
  """An edit for patch_batches: a simulated crash when batch `step` is drawn."""

  def edit(s, batch):
    if s == step:
      raise RuntimeError("simulated crash")
    return batch

  return edit


def cli_env(tmp_path, devices: int = 1) -> dict[str, str]:
  """Environment for running an experiment as a subprocess: CPU, `devices` fake devices,
  a private TFDS folder, the shared compilation cache."""
  return dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds"), JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def pytest_collection_modifyitems(config, items):
  """The slow tests first (a stable sort): with two xdist workers, long tests started
  last leave one worker idle at the end."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_setup(item):
  """accelerator(devices=N) tests skip where fewer devices are found (one GPU); run them
  on fake CPU devices with JAX_PLATFORMS=cpu."""
  mark = item.get_closest_marker("accelerator")
  needed = mark.kwargs.get("devices", 1) if mark else 1
  if needed > 1 and needed > jax.device_count():
    pytest.skip(f"needs {needed} devices, found {jax.device_count()} "
                f"{jax.default_backend()}: run with JAX_PLATFORMS=cpu")


@pytest.fixture(scope="session")
def shared_data() -> str:
  """The real data files (../shared/data); tests that need them skip without them."""
  if not os.path.isfile(os.path.join(SHARED_DATA, "mnist", "train-images-idx3-ubyte.gz")):
    pytest.skip(f"real data not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
  """One TFDS data folder per test session (real MNIST is prepared into it once)."""
  return str(tmp_path_factory.mktemp("tfds"))
