"""Learning as a change of coordinates (Chollet, "Deep Learning with Python", ch. 1),
made measurable in three parts.

1. Rotated line: 2-D points whose classes are split by a line at `line.angle` degrees.
   In the raw coordinates the best single-axis threshold falls well short of 100%; a
   learned change of coordinates z = W x + b (a 2x2 map plus bias, full-batch gradient
   descent on the logistic loss of z_0) makes one axis, z_0, separate them perfectly,
   and that axis (W's first row) aligns with the line's true normal (cosine > 0.99).
   Six numbers and a thousand points: one jitted lax.scan of gradient descent, no run
   folder (there is nothing to checkpoint or resume).
2. Depth: a linear probe's accuracy on MNIST from the raw pixels and from each layer of
   a trained LeNet (deeplearn_jax/probe.py: the same softmax read-out on every layer),
   which should rise with depth.
3. Two spirals: a small tanh MLP whose last hidden layer has 2 units, trained by the
   supervised trainer; its 2-D hidden representation of the points pictured at the
   checkpoints along training (spirals.png), with the linear separability (a linear
   probe's accuracy) of each against the raw inputs'.

Command:  python -m experiments.representations --config.data.manual_dir=/work/shared/data
Variants: :smoke (embedded digits for MNIST, few steps, seconds)
Hardware: 2 cores of an AMD EPYC CPU shared with other jobs, no GPU, JAX 0.10.2, float32.
Results (seed 0, load average 15-20 on the 2 cores):
  1. 45 degrees, 1,000 points: best raw single-axis threshold 79.3%; the learned z0
     separates 100%; cosine of the learned axis with the true normal 0.99994.
  3. Spirals (1.5 turns): a linear probe on the raw points 63.1%; on the 2-D hidden
     layer 96.7% after 500 steps, 99.5-99.9% from 1,000 to 3,000 steps; the net 99.8%
     on fresh points (6.6 min wall at that load).
  2. LeNet-5 trained 800 steps (98.39%): linear probe test accuracy from the pixels
     89.5%, C1 94.6%, C3 97.6%, C5 98.3%, F6 98.3% (rises with every layer).
  37 min wall for the command at that load (two MNIST decodes and XLA folding the
  probe's data into its program, since fixed: the data are now arguments).
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import checkpoint, cli, configs, data, models, pictures, probe, run_folder
from deeplearn_jax.models.mlp import activation
from deeplearn_jax.train import supervised
from experiments import lenet


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = supervised.base_config()
  c.line = ml_collections.ConfigDict(dict(
      points=1000, angle=45.0,    # the line through the origin, degrees from the x axis
      gap=0.05,                   # no points this close to the line (a margin)
      steps=3000, learning_rate=1.0))
  c.lenet = lenet.get_config()    # the net whose layers are probed
  c.lenet.unlock()
  c.lenet.num_epochs = 1.0        # as experiments/explain.py's LeNet
  c.probe = ml_collections.ConfigDict(dict(
      layers=("C1", "C3", "C5", "F6"),  # LeNet's layers, input to output
      train_images=10000,         # probe training set: the first training images
      steps=500, learning_rate=0.01, l2=1e-4))
  c.spirals = supervised.base_config()  # the 2-D hidden representation's net
  s = c.spirals
  s.points, s.turns, s.noise = 1000, 1.5, 0.05
  s.snapshots = 6                 # checkpoints pictured along training
  s.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32, 32, 2), activation="tanh"))
  s.batch_size = 100
  s.num_train_steps = 3000
  s.log_every_steps = 100
  s.eval_every_steps = 500
  s.keep_checkpoints = 100
  s.optimizer.name = "adam"
  s.optimizer.learning_rate = 0.01
  s.progress = False
  if "smoke" in modifiers:
    c.line.points, c.line.steps = 400, 1000
    configs.make_smoke(c.lenet, steps=40)
    c.probe.train_images, c.probe.steps = 600, 200
    s.points, s.num_train_steps, s.eval_every_steps, s.log_every_steps = 400, 60, 30, 10
    s.snapshots = 3
  c.lock()
  return c


def rotated_line(points: int, angle: float, gap: float, seed: int):
  """(x [N, 2] in the unit square, labels [N], the line's unit normal)."""
  normal = np.array([np.cos(np.radians(angle + 90)), np.sin(np.radians(angle + 90))])
  rng = np.random.default_rng(seed)
  x = np.zeros((0, 2))
  while len(x) < points:
    more = rng.uniform(-1, 1, (points, 2))
    x = np.concatenate([x, more[np.abs(more @ normal) >= gap]])[:points]
  return x.astype(np.float32), (x @ normal > 0).astype(np.int32), normal


def best_axis_threshold(x: np.ndarray, y: np.ndarray) -> float:
  """The best accuracy of a threshold on one coordinate (either side, any position)."""
  best = 0.0
  for axis in range(x.shape[1]):
    ordered = y[np.argsort(x[:, axis])]
    # Points below the cut called 0: correct = zeros below + ones above.
    below0 = np.concatenate([[0], np.cumsum(ordered == 0)])
    above1 = np.sum(ordered == 1) - np.concatenate([[0], np.cumsum(ordered == 1)])
    acc = (below0 + above1) / len(y)
    best = max(best, acc.max(), (1 - acc).max())
  return float(best)


def learn_coordinates(x: np.ndarray, y: np.ndarray, steps: int, learning_rate: float):
  """z = W x + b from W = I, b = 0 by full-batch gradient descent on the logistic loss
  of z_0 (class 1 where z_0 > 0). Returns (W, b, final loss)."""
  sign = jnp.asarray(2.0 * y - 1.0)
  x = jnp.asarray(x)

  def loss(p):
    z = x @ p["W"].T + p["b"]
    return jnp.mean(jax.nn.softplus(-sign * z[:, 0]))

  @jax.jit
  def fit(p):
    def step(p, _):
      g = jax.grad(loss)(p)
      return jax.tree.map(lambda a, b: a - learning_rate * b, p, g), None
    p, _ = jax.lax.scan(step, p, None, length=steps)
    return p, loss(p)

  p, final = fit({"W": jnp.eye(2), "b": jnp.zeros(2)})
  return np.asarray(p["W"]), np.asarray(p["b"]), float(final)


def line_part(config) -> tuple[dict, tuple]:
  c = config.line
  x, y, normal = rotated_line(c.points, c.angle, c.gap, config.seed)
  W, b, final = learn_coordinates(x, y, c.steps, c.learning_rate)
  z = x @ W.T + b
  axis = W[0] / np.linalg.norm(W[0])
  return {"points": c.points, "angle_degrees": c.angle,
          "raw_best_axis_threshold_accuracy": best_axis_threshold(x, y),
          "learned_z0_accuracy": float(np.mean((z[:, 0] > 0) == y)),
          "learned_best_axis_threshold_accuracy": best_axis_threshold(z, y),
          "cosine_learned_axis_true_normal": float(axis @ normal),
          "final_loss": final, "W": W.tolist(), "b": b.tolist()}, (x, y, z)


def probe_part(config, workdir: str) -> dict:
  """A LeNet trained by the supervised trainer, then a linear probe on each layer."""
  net = ml_collections.ConfigDict(config.lenet.to_dict())
  if config.data.manual_dir:  # the command line's data folder, for the net's data too
    net.data.manual_dir = config.data.manual_dir
  net.lock()
  ds = data.load(net.data)
  outcome = supervised.run(net, os.path.join(workdir, "lenet"), dataset=ds)
  n = min(config.probe.train_images, len(ds.train))
  train = ds.transform(ds.train.gather(np.arange(n)))
  test = ds.transform(ds.test.gather(np.arange(len(ds.test))))
  variables = {"params": outcome.state.params}
  act = activation(net.model.activation)
  layers = tuple(config.probe.layers)
  feats = {name: probe.layer_features(outcome.model, variables, x, layers, act)
           for name, x in (("train", train["input"]), ("test", test["input"]))}
  kw = dict(steps=config.probe.steps, learning_rate=config.probe.learning_rate,
            l2=config.probe.l2)
  flat = lambda x: x.reshape(len(x), -1)
  probes = {"pixels": probe.linear_probe(flat(train["input"]), train["label"],
                                         flat(test["input"]), test["label"], 10, **kw)}
  for layer in layers:
    probes[layer] = probe.linear_probe(feats["train"][layer], train["label"],
                                       feats["test"][layer], test["label"], 10, **kw)
  accs = [p["test_accuracy"] for p in probes.values()]
  return {"net_test_accuracy": outcome.results["test_accuracy"], "probe_train_images": n,
          "probe_test_images": len(ds.test),
          "dims": {"pixels": int(flat(train["input"]).shape[1]),
                   **{k: int(v.shape[1]) for k, v in feats["test"].items()}},
          "probes": probes,
          "rises_with_depth": bool(all(b >= a for a, b in zip(accs, accs[1:])))}


def two_spirals(points: int, turns: float, noise: float, seed: int):
  """Two interleaved spirals (class 0 and its rotation by 180 degrees), radius in (0, 1]."""
  rng = np.random.default_rng(seed)
  t = np.sqrt(rng.uniform(0.02, 1, points))  # denser far out, so arms are evenly sampled
  label = rng.integers(0, 2, points)
  angle = 2 * np.pi * turns * t + np.pi * label
  x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1) + noise * rng.normal(size=(points, 2))
  return x.astype(np.float32), label.astype(np.int32)


def spirals_part(config, workdir: str) -> tuple[dict, list]:
  """The spirals net trained by the supervised trainer; the 2-D hidden representation of
  the test points at `snapshots` of its checkpoints."""
  s = config.spirals
  xs, ys = two_spirals(s.points, s.turns, s.noise, config.seed)
  xt, yt = two_spirals(s.points, s.turns, s.noise, config.seed + 1)
  ds = data.from_arrays("two_spirals", {"input": xs, "label": ys}, {"input": xt, "label": yt}, 2)
  child = ml_collections.ConfigDict(s.to_dict())
  child.checkpoint_every_steps = max(1, s.num_train_steps // s.snapshots)
  child.lock()
  run_dir = os.path.join(workdir, "spirals")
  outcome = supervised.run(child, run_dir, dataset=ds)
  model = models.create(child.model, 2)
  hidden = f"Dense_{len(s.model.hidden) - 1}"
  act = activation(s.model.activation)
  raw = probe.linear_probe(xs, ys, xt, yt, 2)
  snaps, shown = [], []
  for step in checkpoint.saved_steps(os.path.join(run_dir, "checkpoints")):
    params = checkpoint.read_checkpoint(os.path.join(run_dir, "checkpoints"), step)["params"]
    feats = {n: probe.layer_features(model, {"params": params}, x, (hidden,), act)[hidden]
             for n, x in (("train", xs), ("test", xt))}
    p = probe.linear_probe(feats["train"], ys, feats["test"], yt, 2)
    snaps.append({"step": int(step), "linear_probe_test_accuracy": p["test_accuracy"]})
    shown.append((step, feats["test"], p["test_accuracy"]))
  out = {"net_test_accuracy": outcome.results["test_accuracy"],
         "raw_inputs_linear_probe_test_accuracy": raw["test_accuracy"], "snapshots": snaps}
  return out, [(0, xt, raw["test_accuracy"], "input")] + [(st, f, a, "hidden") for st, f, a
                                                          in shown], yt


def _pictures(workdir: str, line, spirals) -> None:
  x, y, z = line
  fig = pictures.figure(figsize=(8, 4))
  for ax, pts, title in zip(fig.subplots(1, 2), (x, z), ("raw coordinates (x1, x2)",
                                                         "learned coordinates (z0, z1)")):
    ax.scatter(pts[:, 0], pts[:, 1], c=y, cmap="coolwarm", s=4)
    ax.set_title(title)
  fig.axes[1].axvline(0, color="k", lw=0.8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "rotated_line.png"), dpi=90)
  panels, labels = spirals
  fig = pictures.figure(figsize=(3 * len(panels), 3.2))
  for ax, (step, pts, acc, kind) in zip(fig.subplots(1, len(panels)), panels):
    ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap="coolwarm", s=3)
    ax.set_title(f"{kind}{'' if kind == 'input' else f' step {step}'}: linear {acc:.0%}",
                 fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "spirals.png"), dpi=90)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  run_folder.start(workdir, config)
  line, line_points = line_part(config)
  depth = probe_part(config, workdir)
  spirals, panels, labels = spirals_part(config, workdir)
  results = {"rotated_line": line, "depth": depth, "spirals": spirals}
  if jax.process_index() == 0:
    _pictures(workdir, line_points, (panels, labels))
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results


if __name__ == "__main__":
  cli.run(__file__, "representations", train_and_evaluate)
