"""Hopfield networks: the capacity of Hebbian storage (Hopfield 1982; Amit, Gutfreund &
Sompolinsky 1985) and the modern continuous Hopfield network (Ramsauer et al. 2020).

Published: a Hopfield network of N units storing P random patterns by Hebb's rule
retrieves them while alpha = P/N < 0.138 (AGS 1985: above it, the retrieval states
vanish and the overlap with the stored pattern collapses). The modern network stores
exponentially many continuous patterns and retrieves one in a single update.

Here: N = 1,000 units, alpha = 0.02, 0.03, ..., 0.30; at each load 100 probes with 10%
of a stored pattern's bits flipped, recalled by asynchronous sweeps in random order
(one order per sweep, shared by the probes) until a sweep changes nothing, at most 30.
Modern: d = 64, P = 1,000 and 10,000 N(0, 1) patterns, beta = 1; queries with noise of
std 0.5 added, or with half of the entries zeroed; one update each; a query counts as
retrieved when the output's nearest stored pattern (cosine) is the one queried.

Command:  python -m experiments.hopfield
Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32; 54 s wall
          (38 s the capacity sweep) on a machine loaded ~8 by other jobs (29 s of CPU)
Result:   capacity_alpha 0.15 beside the theory's 0.138: mean overlap >= 0.97 up to
          alpha 0.13, 0.911 at 0.14, 0.875 at 0.15, 0.674 at 0.16, ~0.3 from 0.2 on.
          Modern, P = 1,000 (15.6 d): noisy queries 100%, half-masked 99.8% retrieved;
          P = 10,000 (156 d): 100% and 98.8%, median relative error 1e-4 or less.
Outputs:  results.json (capacity_alpha, overlap per alpha, modern_* retrieval),
          overlap.png, modern_retrieval.png
Variants: :smoke (N = 200, a few alphas, seconds)
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import cli, configs, pictures, run_folder
from deeplearn_jax.errors import UserError
from deeplearn_jax.models import hopfield

THEORY_ALPHA = 0.138  # Amit, Gutfreund & Sompolinsky 1985


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classic = ml_collections.ConfigDict(dict(
      num_units=1000,
      alpha_min=0.02, alpha_max=0.30, alpha_step=0.01,
      flip_fraction=0.1,       # bits of the stored pattern flipped in each probe
      num_probes=100,          # probes per alpha (stored patterns, cycled when P is smaller)
      max_sweeps=30,           # asynchronous sweeps before giving up on a fixed point
      threshold=0.9))          # capacity: first alpha whose mean overlap is below this
  c.modern = ml_collections.ConfigDict(dict(
      dim=64, num_patterns=(1000, 10000),
      beta=1.0,
      noise_std=0.5,           # Gaussian noise added to a pattern (entries are N(0, 1))
      mask_fraction=0.5,       # entries of the pattern set to 0 in a masked query
      num_queries=1000))
  if "smoke" in modifiers:
    c.classic.num_units, c.classic.num_probes = 200, 20
    c.classic.alpha_min, c.classic.alpha_max, c.classic.alpha_step = 0.05, 0.30, 0.05
    c.modern.num_patterns, c.modern.num_queries = (500,), 100
  c.lock()
  return c


def _validate(config: ml_collections.ConfigDict) -> None:
  cl, mo = config.classic, config.modern
  if cl.num_units < 2:
    raise UserError(f"config.classic.num_units must be >= 2, got {cl.num_units}")
  if not 0 < cl.alpha_min <= cl.alpha_max or cl.alpha_step <= 0:
    raise UserError("config.classic needs 0 < alpha_min <= alpha_max and alpha_step > 0, got "
                    f"{cl.alpha_min}, {cl.alpha_max}, {cl.alpha_step}")
  if round(cl.alpha_min * cl.num_units) < 1:
    raise UserError(f"config.classic.alpha_min={cl.alpha_min} stores no pattern in "
                    f"{cl.num_units} units")
  if not 0 <= cl.flip_fraction <= 0.5:
    raise UserError(f"config.classic.flip_fraction must be in [0, 0.5], got {cl.flip_fraction}")
  for name in ("num_probes", "max_sweeps"):
    if cl[name] < 1:
      raise UserError(f"config.classic.{name} must be >= 1, got {cl[name]}")
  if not 0 < cl.threshold <= 1:
    raise UserError(f"config.classic.threshold must be in (0, 1], got {cl.threshold}")
  if mo.dim < 1 or mo.num_queries < 1 or not mo.num_patterns or min(mo.num_patterns) < 1:
    raise UserError("config.modern needs dim, num_queries and every num_patterns >= 1")
  if mo.beta <= 0 or mo.noise_std < 0 or not 0 <= mo.mask_fraction < 1:
    raise UserError("config.modern needs beta > 0, noise_std >= 0 and mask_fraction in "
                    f"[0, 1), got {mo.beta}, {mo.noise_std}, {mo.mask_fraction}")


def alphas(cl: ml_collections.ConfigDict) -> np.ndarray:
  """The load grid alpha_min, alpha_min + step, ..., alpha_max (inclusive)."""
  count = int(np.floor((cl.alpha_max - cl.alpha_min) / cl.alpha_step + 1e-6)) + 1
  return np.round(cl.alpha_min + cl.alpha_step * np.arange(count), 6)


@functools.partial(jax.jit, static_argnames=("num_units", "max_patterns", "num_probes",
                                             "max_sweeps"))
def recall_overlaps(key, num_stored, *, num_units, max_patterns, num_probes, flip_fraction,
                    max_sweeps):
  """Overlap after asynchronous recall, and sweeps used, for `num_probes` noisy probes of
  `num_stored` random patterns in a Hebbian network. Patterns beyond num_stored are
  zeroed, so every load shares one compilation."""
  k_pat, k_flip, k_recall = jax.random.split(key, 3)
  patterns = jax.random.rademacher(k_pat, (max_patterns, num_units), jnp.int8)
  stored = (jnp.arange(max_patterns) < num_stored)[:, None]
  w = hopfield.store(jnp.where(stored, patterns, 0))
  targets = patterns[jnp.arange(num_probes) % num_stored]
  probes = jax.vmap(hopfield.flip, (0, 0, None))(
      jax.random.split(k_flip, num_probes), targets, flip_fraction)
  final, sweeps = hopfield.recall(w, probes, k_recall, max_sweeps)
  return jax.vmap(hopfield.overlap)(final, targets), sweeps


def classic_sweep(config: ml_collections.ConfigDict, key: jax.Array) -> dict:
  cl = config.classic
  grid = alphas(cl)
  counts = [max(1, int(round(a * cl.num_units))) for a in grid]
  run = functools.partial(recall_overlaps, num_units=cl.num_units, max_patterns=max(counts),
                          num_probes=cl.num_probes, flip_fraction=cl.flip_fraction,
                          max_sweeps=cl.max_sweeps)
  mean, low, sweeps = [], [], []
  for i, p in enumerate(counts):
    m, s = jax.device_get(run(jax.random.fold_in(key, i), p))
    mean.append(float(np.mean(m)))
    low.append(float(np.mean(m < cl.threshold)))
    sweeps.append(float(np.mean(s)))
  below = [a for a, m in zip(grid, mean) if m < cl.threshold]
  return {"alphas": [float(a) for a in grid], "num_patterns": counts, "mean_overlap": mean,
          "fraction_below_threshold": low, "mean_sweeps": sweeps,
          "capacity_alpha": float(below[0]) if below else None}


@functools.partial(jax.jit, static_argnames=("num_patterns", "dim", "num_queries"))
def modern_trial(key, *, num_patterns, dim, num_queries, beta, noise_std, mask_fraction):
  """Noisy and half-masked queries of stored N(0, 1) patterns, retrieved in one update.
  Returns, per kind of query, whether the retrieved vector's nearest stored pattern (by
  cosine) is the right one, its relative error, and a few examples for the picture."""
  k_pat, k_which, k_noise, k_mask = jax.random.split(key, 4)
  patterns = jax.random.normal(k_pat, (num_patterns, dim))
  which = jax.random.randint(k_which, (num_queries,), 0, num_patterns)
  targets = patterns[which]
  noisy = targets + noise_std * jax.random.normal(k_noise, targets.shape)
  keep = jax.vmap(lambda k: jax.random.permutation(k, dim) >= round(mask_fraction * dim))(
      jax.random.split(k_mask, num_queries))
  masked = jnp.where(keep, targets, 0.0)
  unit = patterns / jnp.linalg.norm(patterns, axis=1, keepdims=True)
  out = {}
  for name, queries in (("noisy", noisy), ("masked", masked)):
    got = jax.vmap(hopfield.modern_retrieve, (None, 0, None))(patterns, queries, beta)
    nearest = jnp.argmax(got @ unit.T, axis=1)
    err = jnp.linalg.norm(got - targets, axis=1) / jnp.linalg.norm(targets, axis=1)
    out[name] = {"correct": nearest == which, "rel_error": err,
                 "examples": jnp.stack([targets[:8], queries[:8], got[:8]])}
  return out


def modern_runs(config: ml_collections.ConfigDict, key: jax.Array) -> tuple[dict, dict]:
  mo = config.modern
  results, examples = {}, {}
  for i, p in enumerate(mo.num_patterns):
    out = jax.device_get(modern_trial(
        jax.random.fold_in(key, i), num_patterns=int(p), dim=mo.dim,
        num_queries=mo.num_queries, beta=mo.beta, noise_std=mo.noise_std,
        mask_fraction=mo.mask_fraction))
    for name, o in out.items():
      results[f"modern_P{p}_{name}_accuracy"] = float(np.mean(o["correct"]))
      results[f"modern_P{p}_{name}_median_rel_error"] = float(np.median(o["rel_error"]))
      examples[(p, name)] = o["examples"]
  return results, examples


def _plot_overlap(path: str, sweep: dict, config: ml_collections.ConfigDict) -> None:

  cl = config.classic
  fig = pictures.figure(figsize=(6, 4))
  ax = fig.subplots()
  ax.plot(sweep["alphas"], sweep["mean_overlap"], "o-", label=f"N = {cl.num_units}, "
          f"{cl.flip_fraction:.0%} bits flipped, asynchronous recall")
  ax.axvline(THEORY_ALPHA, color="k", ls="--", label=f"theory alpha_c = {THEORY_ALPHA} (AGS 1985)")
  ax.axhline(cl.threshold, color="gray", ls=":", label=f"overlap {cl.threshold}")
  if sweep["capacity_alpha"] is not None:
    ax.axvline(sweep["capacity_alpha"], color="tab:red", ls=":",
               label=f"measured: {sweep['capacity_alpha']:.2f}")
  ax.set_xlabel("load alpha = P / N")
  ax.set_ylabel("mean overlap with the stored pattern")
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=8, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def _plot_modern(path: str, examples: dict, config: ml_collections.ConfigDict) -> None:
  """Rows: stored patterns, noisy queries, retrieved, masked queries, retrieved; each
  d-vector drawn as a square image when d is a square, else as a strip."""

  p = config.modern.num_patterns[-1]
  noisy, masked = examples[(p, "noisy")], examples[(p, "masked")]
  rows = [("stored", noisy[0]), ("noisy query", noisy[1]), ("retrieved", noisy[2]),
          ("masked query", masked[1]), ("retrieved", masked[2])]
  d = config.modern.dim
  side = int(np.sqrt(d))
  shape = (side, side) if side * side == d else (1, d)
  cols = noisy.shape[1]
  fig = pictures.figure(figsize=(1.1 * cols, 1.2 * len(rows)))
  axes = fig.subplots(len(rows), cols, squeeze=False)
  for r, (label, images) in enumerate(rows):
    for c in range(cols):
      ax = axes[r, c]
      # Every row shares the colour scale of the stored pattern in its column.
      lim = float(np.abs(rows[0][1][c]).max())
      ax.imshow(images[c].reshape(shape), cmap="RdBu", vmin=-lim, vmax=lim)
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(label, fontsize=7)
  fig.suptitle(f"Modern Hopfield, d = {d}, P = {p} stored: one update each", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  _validate(config)
  run_folder.start(workdir, config)
  key_classic, key_modern = jax.random.split(jax.random.PRNGKey(config.seed))

  start = time.perf_counter()
  sweep = classic_sweep(config, key_classic)
  classic_seconds = time.perf_counter() - start
  start = time.perf_counter()
  modern, examples = modern_runs(config, key_modern)
  results = {"capacity_alpha": sweep["capacity_alpha"], "capacity_alpha_theory": THEORY_ALPHA,
             "overlap_per_alpha": dict(zip((f"{a:.3f}" for a in sweep["alphas"]),
                                           sweep["mean_overlap"])),
             "classic": sweep, "classic_seconds": classic_seconds, **modern,
             "modern_seconds": time.perf_counter() - start}
  if jax.process_index() == 0:
    _plot_overlap(os.path.join(workdir, "overlap.png"), sweep, config)
    _plot_modern(os.path.join(workdir, "modern_retrieval.png"), examples, config)
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results


if __name__ == "__main__":
  cli.run(__file__, "hopfield", train_and_evaluate)
