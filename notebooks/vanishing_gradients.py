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
# # The vanishing gradient, measured
#
# Deep sigmoid nets with naive initialisation barely learn: the gradient shrinks layer by
# layer towards the input (Hochreiter 1991; Glorot & Bengio 2010). Scaled initialisation
# (Glorot & Bengio 2010; He et al. 2015), ReLU, batch norm (Ioffe & Szegedy 2015) and skip
# connections (He et al. 2016) make depth trainable. This notebook runs
# `experiments/vanishing_gradients.py` and plots each layer's gradient norm at
# initialisation, beside each net's test accuracy after the same training budget.
#
# Runtime: `SIZE = "small"` trains three depth-6 nets on the embedded digits in seconds on
# any runtime. `SIZE = "full"` is the experiment's grid: 43 nets on MNIST, 3 epochs each,
# about 12 minutes on a 2-core CPU (a GPU runtime is faster). MNIST comes from TFDS's
# download, or from the official files in `DEEPLEARN_DATA_DIR/mnist/` when that variable
# is set.

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
workdir = WORKDIR or os.path.join("runs", f"vanishing_gradients_{SIZE}")

# %% [markdown]
# ## The experiment's config, edited
# `config.grid` says which nets to train: every activation x init x depth, then the
# `extra` ones, each named `activation_init[_bn][_res]_dDEPTH`. Small is the experiment's
# `smoke` variant cut to three nets: sigmoid with the naive init (vanishes), ReLU with He's
# init, and the same with batch norm.

# %%
from experiments import vanishing_gradients

if SIZE == "small":
  config = vanishing_gradients.get_config("smoke")
  config.num_train_steps = 20
  config.grid.activations = ("sigmoid",)
  config.grid.inits = ("naive",)
  config.grid.extra = ("relu_he_d6", "relu_he_bn_d6")
else:
  config = vanishing_gradients.get_config()
config.progress = False
names = vanishing_gradients.run_names(config.grid)
print(f"{len(names)} nets on {config.data.name}: {', '.join(names)}")

# %% [markdown]
# ## Train and evaluate every net
# A net whose loss turns NaN is a result here (its test accuracy is None), not an error.

# %%
results = vanishing_gradients.train_and_evaluate(config, workdir)
runs = results["runs"]

# %% [markdown]
# ## Per-layer gradient norms at initialisation
# One panel per depth; layer 1 is the input layer, dashed lines are nets with batch norm
# or skips. A line falling to the left is a gradient vanishing on its way back to the
# input.

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


def accuracy(run: dict) -> str:
  return "diverged" if run["test_accuracy"] is None else f"{run['test_accuracy']:.1%}"


families = list(dict.fromkeys(name.rsplit("_d", 1)[0] for name in runs))
colors = {f: plt.cm.tab20(i % 20) for i, f in enumerate(families)}  # same color each panel
depths = sorted({len(run["grad_norm_init"]) for run in runs.values()})
cols = min(2, len(depths))
fig, axes = plt.subplots(-(-len(depths) // cols), cols, squeeze=False, sharey=True,
                         figsize=(7.5 * cols, 4 * -(-len(depths) // cols)))
for ax, depth in zip(axes.flat, depths):
  for name, run in runs.items():
    if len(run["grad_norm_init"]) == depth:
      family = name.rsplit("_d", 1)[0]
      ax.plot(range(1, depth + 1), run["grad_norm_init"], marker="o", ms=3, color=colors[family],
              ls="--" if "_bn" in family or "_res" in family else "-",
              label=f"{family}: {accuracy(run)}")
  ax.set_yscale("log")
  ax.set_title(f"depth {depth}")
  ax.set_xlabel("layer (1 = input)")
  ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
  ax.set_ylabel("gradient norm at init")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, title="net: test accuracy", title_fontsize=7, loc="upper left",
            bbox_to_anchor=(1.0, 1.0))
for ax in list(axes.flat)[len(depths):]:
  ax.axis("off")
fig.tight_layout()
show(fig)

# %% [markdown]
# The library's own picture: each family's nets, at init (solid) and at the end of
# training (dashed).

# %%
display(Image(os.path.join(workdir, "grad_norms.png")))

# %% [markdown]
# ## Results beside the published claims
# The published claims are qualitative; the experiment's docstring (printed below) sets
# each one beside the repository's full run.

# %%
lines = ["| net | test accuracy | gradient norm at init: input layer | output layer |",
         "|---|---|---|---|"]
for name, run in runs.items():
  g = run["grad_norm_init"]
  lines.append(f"| {name} | {accuracy(run)} | {g[0]:.2g} | {g[-1]:.2g} |")
display(Markdown("\n".join(lines)))
display(Markdown("""
| published claim | |
|---|---|
| deep sigmoid nets train badly: the gradient vanishes towards the input | \
Hochreiter 1991; Glorot & Bengio 2010 |
| a 30-layer ReLU net stalls with Glorot's init and learns with He's | He et al. 2015 |
| batch norm makes saturating nets trainable | Ioffe & Szegedy 2015 |
| identity skips ease the optimisation of deep nets | He et al. 2016 |
"""))
print(vanishing_gradients.__doc__)
