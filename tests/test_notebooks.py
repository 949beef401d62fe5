"""The notebooks: each committed .ipynb is its jupytext .py pair without outputs, and each
runs top to bottom in a real Jupyter kernel at small settings (DEEPLEARN_NOTEBOOK_SIZE).

After editing notebooks/NAME.py:  jupytext --to ipynb notebooks/NAME.py
"""

import json
import os
import sys

import pytest

from conftest import REPO, SHARED_DATA

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = os.path.join(REPO, "notebooks")
NAMES = ("quickstart", "perceptron_xor", "rbm", "vanishing_gradients", "cifar10")
CIFAR_ARCHIVE = os.path.join(SHARED_DATA, "cifar10", "cifar-10-binary.tar.gz")


def test_every_notebook_is_listed():
  on_disk = {f[:-3] for f in os.listdir(NOTEBOOKS) if f.endswith(".py")}
  assert on_disk == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_its_py_pair_without_outputs(name):
  path = os.path.join(NOTEBOOKS, f"{name}.ipynb")
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                  and (c.outputs or c.execution_count is not None)]
  assert not with_outputs, (f"{name}.ipynb carries outputs in cells {with_outputs}: clear "
                            f"them (jupytext --to ipynb notebooks/{name}.py)")
  assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
  with open(os.path.join(NOTEBOOKS, f"{name}.py"), encoding="utf-8") as f:
    py = f.read()
  # The .ipynb written back as percent text must be the .py, byte for byte.
  assert jupytext.writes(nb, fmt="py:percent") == py, (
      f"{name}.ipynb has drifted from {name}.py: jupytext --to ipynb notebooks/{name}.py "
      f"(or --to py:percent from the .ipynb, if that is the one you edited)")
  tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1 and "DEEPLEARN_NOTEBOOK_SIZE" in tagged[0].source


def _kernel_manager(tmp_path):
  """A kernel of this interpreter (so of this venv), whatever kernelspecs the user has."""
  from jupyter_client.kernelspec import KernelSpecManager
  from jupyter_client.manager import KernelManager

  spec = tmp_path / "kernels" / "deeplearn_test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "deeplearn_jax tests", "language": "python"}))
  specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
  return KernelManager(kernel_name="deeplearn_test", kernel_spec_manager=specs)


def _execute(name, tmp_path, **env):
  from nbclient import NotebookClient

  nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
  env = dict(os.environ, DEEPLEARN_NOTEBOOK_SIZE="small",
             DEEPLEARN_NOTEBOOK_WORKDIR=str(tmp_path / "run"),
             TFDS_DATA_DIR=str(tmp_path / "tfds"), JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=os.environ.get(
                 "JAX_COMPILATION_CACHE_DIR",
                 os.path.expanduser("~/.cache/deeplearn_jax/xla")),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
             PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
             **env)
  env.pop("XLA_FLAGS", None)  # one CPU device, as on a user's laptop
  client = NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=300,
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=env)  # raises CellExecutionError on any failing cell
  return nb


def _outputs(nb, kind):
  return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
          if kind in o.get("data", {})]


@pytest.mark.parametrize("name", ("quickstart", "perceptron_xor", "rbm", "vanishing_gradients"))
def test_notebook_runs(name, tmp_path):
  nb = _execute(name, tmp_path)
  assert (tmp_path / "run" / "results.json").exists()
  assert _outputs(nb, "image/png"), "the notebook showed no picture"


def test_cifar10_notebook_runs(tmp_path):
  if os.path.isfile(CIFAR_ARCHIVE):
    nb = _execute("cifar10", tmp_path, DEEPLEARN_DATA_DIR=SHARED_DATA)
  else:
    # The experiment's seeded synthetic images stand in for the real data.
    nb = _execute("cifar10", tmp_path, DEEPLEARN_NOTEBOOK_DATASET="mock_images")
  assert (tmp_path / "run" / "results.json").exists()
  assert _outputs(nb, "image/png")
