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
# # Quickstart: LeNet-5 on handwritten digits
#
# LeCun, Bottou, Bengio & Haffner (1998) trained LeNet-5 on MNIST to 0.95% test error.
# This notebook runs the repository's `experiments/lenet.py` unchanged, on the 1,797 8x8
# digits that ship with scikit-learn (resized to 28x28), so it needs no download and runs
# on a CPU in under a minute (any colab runtime will do). It shows the learning curves,
# the results beside the published figure, and test digits with the net's predictions.
#
# Every number here comes from the library: the notebook edits the experiment's config and
# calls its `train_and_evaluate`, exactly as `python -m experiments.lenet` does.

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
workdir = WORKDIR or os.path.join("runs", f"quickstart_{SIZE}")

# %% [markdown]
# ## The experiment's config, edited
# `get_config()` returns the MNIST config; the embedded digits need no download.

# %%
from experiments import lenet

config = lenet.get_config()
config.data.name = "digits"  # scikit-learn's digits, resized to 28x28: no download
if SIZE == "small":
  config.num_train_steps = 40
  config.eval_every_steps = 20
  config.log_every_steps = 10
  config.checkpoint_every_steps = -1
  config.checkpoint_every_epochs = -1.0  # only at the end
  config.progress = False
print(f"data: {config.data.name}, model: {config.model.name}, batch {config.batch_size}, "
      f"steps: {config.num_train_steps if config.num_train_steps > 0 else 'by epochs'}")

# %% [markdown]
# ## Train and evaluate

# %%
results = lenet.train_and_evaluate(config, workdir)
results

# %% [markdown]
# ## Learning curves
# `curves.png`, drawn by the library from `metrics.jsonl`.

# %%
import io

import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display


def show(fig) -> None:
  """Shows a figure as a PNG: the library's plots switch matplotlib to Agg, so a
  figure would otherwise print as text."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  display(Image(buf.getvalue()))


display(Image(os.path.join(workdir, "curves.png")))

# %% [markdown]
# ## Results beside the published figure
# The published figure is the one the experiment's docstring cites (printed below).

# %%
display(Markdown(f"""
| | test error | test accuracy |
|---|---|---|
| this run (digits, {results['steps']} steps) | {results['test_error']:.2%} | \
{results['test_accuracy']:.2%} |
| LeCun et al. 1998 (MNIST) | 0.95% | 99.05% |
"""))
print(lenet.__doc__)

# %% [markdown]
# ## Test digits and the net's predictions
# `supervised.run` finds the finished run in `workdir` again and restores it (no
# training), returning the trained state and the model with the results.

# %%
import numpy as np

from deeplearn_jax.train import supervised

outcome = supervised.run(config, workdir)
test = outcome.dataset.test
rows = np.arange(min(40, len(test)))
batch = outcome.dataset.transform(test.gather(rows))
variables = {"params": outcome.state.params, "batch_stats": outcome.state.batch_stats}
predict = jax.jit(lambda v, x: outcome.model.apply(v, x, train=False))  # one compile
logits = predict(variables, batch["input"])
predicted = np.asarray(logits).argmax(-1)

fig, axes = plt.subplots(4, 10, figsize=(10, 4.6))
for ax, image, label, guess in zip(axes.flat, batch["input"], batch["label"], predicted):
  ax.imshow(image.squeeze(-1), cmap="gray_r")
  ax.set_title(f"{guess}" if guess == label else f"{guess} (true {label})", fontsize=9,
               color="black" if guess == label else "red")
  ax.axis("off")
fig.suptitle(f"first {len(rows)} test digits: predicted label (mistakes in red)")
fig.tight_layout()
show(fig)
print(f"{(predicted == batch['label']).mean():.1%} right on these {len(rows)}")
