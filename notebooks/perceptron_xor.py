# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The perceptron, XOR, and backpropagation
#
# Rosenblatt's perceptron (1958) learns AND and OR but not XOR: Minsky & Papert (1969)
# proved no single threshold unit gets more than 3 of XOR's 4 rows right. A two-layer net
# trained by backpropagation (Rumelhart, Hinton & Williams 1986) gets all 4. This notebook
# runs `experiments/perceptron_xor.py` and shows the decision boundaries of the perceptron
# on each truth table and of the 2-layer MLP on XOR. It runs in seconds on a CPU (any colab
# runtime); no download.

# %% [markdown]
# ## Setup
# On colab, the next cell installs this project with the jax build the runtime needs
# (`[gpu]` on an NVIDIA GPU, `[tpu]` on a TPU, plain jax on a CPU). Set `PROJECT` first
# to where pip can fetch the repository: a git URL such as
# `git+https://github.com/OWNER/REPO.git` (the public address, once there is one) or a
# folder holding a copy of it (uploaded, or on a mounted drive). Where `deeplearn_jax` is
# importable already (a checkout installed with `pip install -e .`, CI) the cell does
# nothing.

# %%
PROJECT = ""  # the repository for pip: a git URL or a folder (see notebooks/README.md)

import glob
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys


def _jax_extra() -> str:
  """The project's extra for this runtime's accelerator ('' on a CPU)."""
  if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0"):
    return "[gpu]"
  if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or "COLAB_TPU_ADDR" in os.environ:
    return "[tpu]"
  return ""


if importlib.util.find_spec("deeplearn_jax") is None:
  # A notebook opened inside a checkout that was never installed: use the checkout.
  _root = os.path.dirname(os.getcwd())
  if os.path.isfile(os.path.join(_root, "deeplearn_jax", "__init__.py")):
    sys.path.insert(0, _root)
  elif not PROJECT:
    raise RuntimeError("deeplearn_jax is not installed: set PROJECT in this cell to the "
                       "repository's git URL or folder (see notebooks/README.md)")
  else:
    _spec = (PROJECT + _jax_extra() if os.path.isdir(PROJECT)
             else f"deeplearn_jax{_jax_extra()} @ {PROJECT}")
    print("pip install", _spec)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", _spec], check=True)
    importlib.invalidate_caches()

# %% [markdown]
# ## Runtime

# %%
import jax

print(f"jax {jax.__version__}, backend: {jax.default_backend()}")
for _d in jax.devices():
  print(f"  {_d.platform}: {_d.device_kind} ({_d})")

# %% [markdown]
# ## Parameters
# `SIZE` is `"full"` (the experiment's own settings) or `"small"` (seconds on a CPU, as
# CI runs it); the environment variable `DEEPLEARN_NOTEBOOK_SIZE` sets it without editing
# the notebook (papermill can override this cell too). Runs go to `WORKDIR`, by default
# `runs/NOTEBOOK_SIZE` beside the notebook. A finished run found there again is
# restored and evaluated, not retrained; to change the config, pick another `WORKDIR` or
# delete the folder.

# %% tags=["parameters"]
SIZE = os.environ.get("DEEPLEARN_NOTEBOOK_SIZE", "full")
WORKDIR = os.environ.get("DEEPLEARN_NOTEBOOK_WORKDIR", "")

# %%
if SIZE not in ("small", "full"):
  raise ValueError(f"SIZE must be 'small' or 'full', got {SIZE!r}")
workdir = WORKDIR or os.path.join("runs", f"perceptron_xor_{SIZE}")

# %% [markdown]
# ## The experiment's config, edited
# The top level is the MLP's supervised config; `config.perceptron` holds the perceptron
# rule's settings and the size of the exhaustive weight search.

# %%
from experiments import perceptron_xor

config = perceptron_xor.get_config()
if SIZE == "small":
  config.num_train_steps = 200
  config.eval_every_steps = 100
config.progress = False
print(config.perceptron)
print(f"MLP: hidden {config.model.hidden}, {config.model.activation}, "
      f"{config.optimizer.name} lr {config.optimizer.learning_rate}, "
      f"{config.num_train_steps} steps")

# %% [markdown]
# ## Train and evaluate

# %%
results = perceptron_xor.train_and_evaluate(config, workdir)
results

# %% [markdown]
# ## Decision boundaries
# Background: the class each model predicts over the plane; dots: the truth table.

# %%
from IPython.display import Image, Markdown, display

display(Image(os.path.join(workdir, "decision_boundaries.png")))

# %% [markdown]
# ## Results beside the published figures
# From the experiment's docstring (printed in full below).

# %%
display(Markdown(f"""
| table | model | rows right (this run) | published |
|---|---|---|---|
| AND | perceptron | {results['perceptron_and']:.0%} | 4/4 |
| OR | perceptron | {results['perceptron_or']:.0%} | 4/4 |
| XOR | perceptron rule, {config.perceptron.epochs} epochs | {results['perceptron_xor']:.0%} \
({results['perceptron_xor_mistakes_last_epoch']} mistakes in the last epoch) | never converges |
| XOR | best of any threshold unit (weight grid search) | \
{results['best_threshold_unit_xor']:.0%} | at most 3/4 (Minsky & Papert 1969) |
| XOR | 2-layer MLP, backpropagation | {results['mlp_xor']:.0%} | 4/4 (Rumelhart et al. 1986) |
"""))
print(perceptron_xor.__doc__)

# %% [markdown]
# ## The MLP's learning curves

# %%
display(Image(os.path.join(workdir, "mlp_xor", "curves.png")))
