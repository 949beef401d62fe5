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
# # Restricted Boltzmann machines: filters, samples and the likelihood
#
# An RBM trained by contrastive divergence (Hinton 2002) on binarized MNIST, the building
# block of deep belief nets (Hinton, Osindero & Teh 2006), with its test log-likelihood
# estimated by annealed importance sampling (AIS; Salakhutdinov & Murray 2008). This
# notebook runs `experiments/rbm.py` and shows the learned filters, samples drawn by Gibbs
# sampling, and the AIS estimate beside the published one.
#
# Runtime: `SIZE = "small"` trains a 16-unit RBM on the embedded 8x8 digits in seconds on
# any runtime (with 16 hidden units log Z is also computed exactly, to check AIS against).
# `SIZE = "full"` is the published setting (500 hidden units, 50 epochs of MNIST, AIS with
# 14,500 temperatures): about 5 minutes of training (CD-1) on a 2-core CPU, much less on a
# GPU runtime. MNIST comes from TFDS's download, or from the official files in
# `DEEPLEARN_DATA_DIR/mnist/` when that variable is set.

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
VARIANT = "cd1"  # cd1 | cd25 | pcd (persistent CD)

# %%
if SIZE not in ("small", "full"):
  raise ValueError(f"SIZE must be 'small' or 'full', got {SIZE!r}")
workdir = WORKDIR or os.path.join("runs", f"rbm_{VARIANT}_{SIZE}")

# %% [markdown]
# ## The experiment's config
# Small is the experiment's own `,smoke` variant: the digits, 16 hidden units, 120 steps.

# %%
from experiments import rbm

config = rbm.get_config(VARIANT + (",smoke" if SIZE == "small" else ""))
config.progress = False
print(f"data: {config.data.name}, {config.rbm.num_hidden} hidden units, CD-{config.rbm.cd_k}"
      f"{' (persistent)' if config.rbm.pcd else ''}, AIS: {config.eval.ais_num_chains} runs of "
      f"{config.eval.ais_num_betas} temperatures")

# %% [markdown]
# ## Train and evaluate
# The results hold the AIS estimate of log Z and of the test log-likelihood (nats per
# digit) with a +-3 standard deviation band, the pseudo-log-likelihood and the
# reconstruction error.

# %%
results = rbm.train_and_evaluate(config, workdir)
results

# %% [markdown]
# ## Filters
# Each hidden unit's weights to the visible pixels, as an image.

# %%
from IPython.display import Image, Markdown, display

display(Image(os.path.join(workdir, "filters.png")))

# %% [markdown]
# ## Gibbs samples
# Each image is p(v | h) at the end of a chain of alternating Gibbs sampling.

# %%
print(f"{config.eval.sample_gibbs_steps} Gibbs steps from {config.eval.sample_start} starts")
display(Image(os.path.join(workdir, "samples.png")))

# %% [markdown]
# ## The AIS estimate beside the published one
# Published: Salakhutdinov & Murray 2008, 500 hidden units (quoted by the experiment's
# docstring, printed below with the repository's own full runs).

# %%
PUBLISHED = {"cd1": "about -125", "cd25": "about -86", "pcd": "(not in S&M 2008)"}
rows = [("test log-likelihood, AIS (nats)",
         f"{results['test_log_likelihood_ais']:.2f} "
         f"({results['test_log_likelihood_ais_lower']:.2f} .. "
         f"{results['test_log_likelihood_ais_upper']:.2f})",
         PUBLISHED[VARIANT] if SIZE == "full" else "(MNIST, 500 units: not comparable)"),
        ("log Z, AIS", f"{results['log_z_ais']:.2f}", "")]
if "log_z_exact" in results:
  rows += [("log Z, exact", f"{results['log_z_exact']:.2f}", ""),
           ("test log-likelihood, exact", f"{results['test_log_likelihood_exact']:.2f}", "")]
rows += [("pseudo-log-likelihood", f"{results['test_pseudo_log_likelihood']:.2f}", ""),
         ("reconstruction error", f"{results['test_reconstruction_error']:.4f}", "")]
display(Markdown("| | this run | published |\n|---|---|---|\n"
                 + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)))
print(rbm.__doc__)
