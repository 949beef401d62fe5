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
# # Recurrent memory: echo-state networks and Hopfield networks
#
# Two ways a recurrent net holds on to the past without backpropagation through time.
# An echo-state network (Jaeger 2001) keeps a fixed random reservoir and fits only a linear
# readout; on the chaotic Mackey-Glass series it forecasts one step ahead and, fed its own
# output, keeps generating the series (Jaeger & Haas 2004). A Hopfield network (Hopfield
# 1982) stores patterns in its weights by Hebb's rule and recalls one from a corrupted
# probe, up to a load of about 0.138 patterns per unit (Amit, Gutfreund & Sompolinsky
# 1985); the modern continuous Hopfield network (Ramsauer et al. 2020) stores far more
# patterns than dimensions and retrieves one in a single update. This notebook runs
# `experiments/echo_state.py` and `experiments/hopfield.py` and shows the forecast, the
# free run, the capacity curve and the modern network's retrievals, beside the published
# figures.
#
# Runtime: `SIZE = "small"` runs both experiments' `smoke` variants (small reservoirs, a
# 200-unit Hopfield net) in under a minute of CPU time on any runtime. `SIZE = "full"` is
# the experiments' own settings (20 reservoirs of 100 units, a 1,000-unit reservoir run
# freely from 500 starting points, a 1,000-unit Hopfield net at 29 loads, 10,000 modern
# patterns): 2 to 3 minutes on a 2-core CPU. No download: the series is integrated here
# and the patterns are random.

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
# `SIZE` is `"full"` (the experiments' own settings) or `"small"` (their `smoke` variants,
# as CI runs it); the environment variable `DEEPLEARN_NOTEBOOK_SIZE` sets it without
# editing the notebook (papermill can override this cell too). Runs go to
# `WORKDIR/echo_state` and `WORKDIR/hopfield`, `WORKDIR` by default
# `runs/recurrent_memory_SIZE` beside the notebook. Neither experiment trains by gradient
# steps or keeps checkpoints: each run computes everything afresh and overwrites the
# folder's results and plots.

# %% tags=["parameters"]
SIZE = os.environ.get("DEEPLEARN_NOTEBOOK_SIZE", "full")
WORKDIR = os.environ.get("DEEPLEARN_NOTEBOOK_WORKDIR", "")

# %%
if SIZE not in ("small", "full"):
  raise ValueError(f"SIZE must be 'small' or 'full', got {SIZE!r}")
workdir = WORKDIR or os.path.join("runs", f"recurrent_memory_{SIZE}")
variant = "smoke" if SIZE == "small" else ""

# %%
import io

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display


def show(fig) -> None:
  """Shows a figure as a PNG: the experiments switch matplotlib to Agg, so a figure
  would otherwise print as text."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  display(Image(buf.getvalue()))


# %% [markdown]
# ## Echo-state network: the config
# Part (a), the one-step forecast, is reservoirpy's README setup (100 units, spectral
# radius 1.25, leak 0.3, ridge 1e-5) with Jaeger's readout, which sees the input beside
# the reservoir's state (`one_step.input_to_readout=False` gives the README's readout on the
# state alone), repeated over several random reservoirs. Part (b),
# the free run, fits a larger reservoir's readout with the true series as input, then
# feeds the readout's output back as the next input. Everything runs in float64.

# %%
from experiments import echo_state

es_config = echo_state.get_config(variant)
a, b = es_config.one_step, es_config.free_run
print(f"(a) one step: {a.num_reservoirs} reservoirs of {a.units} units, {a.num_points} "
      f"points, last {a.test_fraction:.0%} as test")
print(f"(b) free run: {b.units} units, readout fitted on {b.num_train} steps, "
      f"{b.num_starts} starting points, NRMSE at {b.horizon} steps ahead")

# %% [markdown]
# ## Echo-state network: run

# %%
es_results = echo_state.train_and_evaluate(es_config, os.path.join(workdir, "echo_state"))
{k: v for k, v in es_results.items() if not k.endswith("_per_reservoir")}

# %% [markdown]
# ## One-step forecast
# The test part of the series and the forecast of the median reservoir (by RMSE), with
# its error below.

# %%
display(Image(os.path.join(workdir, "echo_state", "forecast.png")))

# %% [markdown]
# The README's RMSE comes from one reservoir; each dot below is one random reservoir on
# the same series, so the spread shows how much that single figure owes to the draw.

# %%
PUBLISHED_RMSE = es_results["published_one_step_rmse_reservoirpy"]
errors = np.sort(es_results["one_step_rmse_per_reservoir"])
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot(errors, np.zeros_like(errors), "o", alpha=0.6, label="one reservoir each")
ax.axvline(es_results["one_step_rmse"], color="tab:orange", label="median")
ax.axvline(PUBLISHED_RMSE, color="k", ls="--", label=f"reservoirpy README: {PUBLISHED_RMSE}")
ax.set_yticks([])
ax.set_xlabel("one-step test RMSE")
ax.set_title(f"{len(errors)} reservoirs of {a.units} units, "
             f"{sum(errors <= PUBLISHED_RMSE)} at or below the README's figure")
ax.legend(fontsize=8, loc="upper right")
show(fig)

# %% [markdown]
# ## Free-running generation
# Top: from one starting point, the reservoir feeds itself from step 1 on (the dotted line
# is the step scored). Bottom: the NRMSE over all starting points against the number of
# steps generated, beside Jaeger & Haas's figure at 84 steps.

# %%
display(Image(os.path.join(workdir, "echo_state", "free_run.png")))

# %% [markdown]
# ## Hopfield network: the config
# Classic: N units store P = alpha N random +-1 patterns by Hebb's rule; each probe is a
# stored pattern with 10% of its bits flipped, recalled by asynchronous sweeps, and
# scored by its overlap with the pattern. The capacity is the first load whose mean
# overlap falls below 0.9. Modern: N(0, 1) patterns in d = 64 dimensions, each query
# noisy or half zeroed, one update.

# %%
from experiments import hopfield

hop_config = hopfield.get_config(variant)
cl, mo = hop_config.classic, hop_config.modern
grid = hopfield.alphas(cl)
print(f"classic: N = {cl.num_units}, alpha {grid[0]} .. {grid[-1]} ({len(grid)} loads), "
      f"{cl.num_probes} probes each, {cl.flip_fraction:.0%} of bits flipped")
print(f"modern: d = {mo.dim}, P = {', '.join(map(str, mo.num_patterns))}, "
      f"{mo.num_queries} queries of each kind")

# %% [markdown]
# ## Hopfield network: run

# %%
hop_results = hopfield.train_and_evaluate(hop_config, os.path.join(workdir, "hopfield"))
{k: v for k, v in hop_results.items() if k != "classic"}

# %% [markdown]
# ## The capacity curve
# Mean overlap between the recalled state and the stored pattern, against the load.

# %%
display(Image(os.path.join(workdir, "hopfield", "overlap.png")))

# %% [markdown]
# The same sweep seen per probe: past the capacity, most probes end far from their pattern,
# and recall needs more sweeps to settle (into a spurious state).

# %%
sweep = hop_results["classic"]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
left.plot(sweep["alphas"], sweep["fraction_below_threshold"], "o-")
left.set_ylabel(f"fraction of probes, overlap < {cl.threshold}")
right.plot(sweep["alphas"], sweep["mean_sweeps"], "o-", color="tab:green")
right.set_ylabel("mean asynchronous sweeps")
for ax in (left, right):
  ax.axvline(hopfield.THEORY_ALPHA, color="k", ls="--", label="theory 0.138 (AGS 1985)")
  ax.set_xlabel("load alpha = P / N")
  ax.grid(alpha=0.3)
left.legend(fontsize=8)
show(fig)

# %% [markdown]
# ## The modern Hopfield layer's retrievals
# Each column is one stored 64-vector drawn as an 8x8 image: the pattern, a noisy query
# and what one update retrieves from it, a half-zeroed query and its retrieval.

# %%
display(Image(os.path.join(workdir, "hopfield", "modern_retrieval.png")))

# %% [markdown]
# ## Results beside the published figures
# The small size keeps the one-step setup but runs few reservoirs; its free run (100
# units, 1,000 fitted steps) and its Hopfield net (200 units, loads 0.05 apart) are too
# small to compare. The experiments' docstrings, printed below, hold the repository's
# full runs.

# %%
horizon = b.horizon
small = "; small run: not comparable" if SIZE == "small" else ""
rows = [
    (f"one-step RMSE, median of {a.num_reservoirs} reservoirs",
     f"{es_results['one_step_rmse']:.5f}", f"{PUBLISHED_RMSE} (reservoirpy README)"),
    ("one-step R^2, median", f"{es_results['one_step_r2']:.5f}",
     f"{es_results['published_one_step_r2_reservoirpy']} (reservoirpy README)"),
    (f"free-run NRMSE at {horizon} steps, {b.units} units",
     f"{es_results[f'nrmse_{horizon}']:.2e} = 10^{es_results[f'log10_nrmse_{horizon}']:.2f}",
     f"10^-4.2 = 6.3e-5 (Jaeger & Haas 2004, 1,000 units{small})"),
    (f"Hopfield capacity alpha_c, N = {cl.num_units}",
     f"{hop_results['capacity_alpha'] or 'above ' + str(grid[-1])}",
     f"{hopfield.THEORY_ALPHA} (Amit, Gutfreund & Sompolinsky 1985{small})")]
for p in mo.num_patterns:
  for kind in ("noisy", "masked"):
    rows.append((f"modern, P = {p} ({p / mo.dim:.1f} d), {kind} queries retrieved",
                 f"{hop_results[f'modern_P{p}_{kind}_accuracy']:.1%}",
                 "one-step retrieval (Ramsauer et al. 2020)"))
display(Markdown("| | this run | published |\n|---|---|---|\n"
                 + "\n".join(f"| {q} | {ours} | {theirs} |" for q, ours, theirs in rows)))
print(echo_state.__doc__)
print(hopfield.__doc__)
