"""The notebooks: each committed .ipynb is its jupytext .py pair without outputs, and each
runs top to bottom in a real Jupyter kernel at small settings (DEEPLEARN_NOTEBOOK_SIZE).
The CIFAR-10 notebook runs on the experiment's synthetic images; on the real CIFAR-10
(../shared/data) only with DEEPLEARN_TEST_REAL_CIFAR=1, as loading it takes minutes.

After editing notebooks/NAME.py:  jupytext --update --to ipynb notebooks/NAME.py
"""

import json
import os
import sys

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, SHARED_DATA

NOTEBOOKS = os.path.join(REPO, "notebooks")
NAMES = ("quickstart", "perceptron_xor", "rbm", "vanishing_gradients", "cifar10",
         "recurrent_memory")
# Where a notebook's run writes its results, under its run folder: one file, unless it
# runs several experiments, each in its own subfolder.
RESULTS = {"recurrent_memory": ("echo_state/results.json", "hopfield/results.json")}
CIFAR_ARCHIVE = os.path.join(SHARED_DATA, "cifar10", "cifar-10-binary.tar.gz")


def test_every_notebook_is_listed():
  on_disk = {f[:-3] for f in os.listdir(NOTEBOOKS) if f.endswith(".py")}
  assert on_disk == set(NAMES)


def _setup_cells(name: str) -> str:
  """The install and runtime cells: each notebook must carry them (colab opens one file
  alone, before the package is importable), so they are copies, kept the same here."""
  with open(os.path.join(NOTEBOOKS, f"{name}.py")) as f:
    text = f.read()
  start, end = text.find('PROJECT = ""'), text.find("# ## Parameters")
  assert 0 <= start < end, f"{name}.py lacks the install cell or the Parameters heading"
  return text[start:end]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "quickstart"])
def test_setup_cells_are_quickstarts(name):
  assert _setup_cells(name) == _setup_cells("quickstart"), (
      f"notebooks/{name}.py: its install / runtime cells differ from quickstart.py's; "
      "edit them alike")


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
      f"{name}.ipynb has drifted from {name}.py: jupytext --update --to ipynb "
      f"notebooks/{name}.py "
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


def _execute(name, tmp_path, **overrides):
  """Runs notebooks/NAME.ipynb top to bottom in a fresh kernel: small size, its run folder
  and TFDS data under tmp_path, one CPU device, the tests' compilation cache."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device, as on a user's laptop
  env.update(DEEPLEARN_NOTEBOOK_SIZE="small", DEEPLEARN_NOTEBOOK_WORKDIR=str(tmp_path / "run"),
             TFDS_DATA_DIR=str(tmp_path / "tfds"), JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=os.environ.get(
                 "JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/deeplearn_jax/xla")),
             PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
  env.update(overrides)
  client = NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=300,
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=env)  # raises CellExecutionError on any failing cell
  return nb


def _outputs(nb, kind):
  return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
          if kind in o.get("data", {})]


# Longest first, so that `-n 2` splits them evenly.
@pytest.mark.parametrize("name", ("vanishing_gradients", "recurrent_memory", "quickstart",
                                  "perceptron_xor", "rbm"))
def test_notebook_runs(name, tmp_path):
  nb = _execute(name, tmp_path)
  for path in RESULTS.get(name, ("results.json",)):
    assert (tmp_path / "run" / path).exists(), path
  assert len(_outputs(nb, "image/png")) >= 2, "the notebook showed fewer pictures than it draws"


def test_cifar10_notebook_runs_on_synthetic_images(tmp_path):
  # The experiment's seeded stand-in for CIFAR-10: same net and recipe, no data to load.
  nb = _execute("cifar10", tmp_path, DEEPLEARN_NOTEBOOK_DATASET="mock_images")
  assert (tmp_path / "run" / "results.json").exists()
  assert _outputs(nb, "image/png")


def test_cifar10_notebook_runs_on_real_cifar10(tmp_path):
  if not os.path.isfile(CIFAR_ARCHIVE):
    pytest.skip(f"real CIFAR-10 not found at {CIFAR_ARCHIVE}")
  if os.environ.get("DEEPLEARN_TEST_REAL_CIFAR") != "1":
    pytest.skip("preparing and decoding the real CIFAR-10 takes 1.5 to 5 minutes on 2 cores, "
                "past the notebooks' budget: set DEEPLEARN_TEST_REAL_CIFAR=1 to run it")
  nb = _execute("cifar10", tmp_path, DEEPLEARN_DATA_DIR=SHARED_DATA,
                DEEPLEARN_NOTEBOOK_DATASET="cifar10")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  # 20 steps of a tiny net: a run of the notebook, not of the recipe (12% seen).
  assert 0.0 <= results["test_accuracy"] <= 1.0, results
  assert _outputs(nb, "image/png")
