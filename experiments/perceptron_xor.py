"""The perceptron and the XOR limit (Rosenblatt 1958; Minsky & Papert 1969), and the
multi-layer net trained by backpropagation that removes it (Rumelhart, Hinton &
Williams 1986).

Published: a single-layer perceptron cannot exceed 3/4 of the XOR truth table;
a 2-layer MLP trained by backpropagation reaches 4/4.

Command:  python -m experiments.perceptron_xor
Hardware: 2 cores of an AMD EPYC CPU, JAX 0.10.2 (CPU); about 20 s wall, most of it start-up
Result:   perceptron rule (20 epochs): AND 4/4, OR 4/4, XOR 2/4 (still 4 mistakes per
          epoch: the rule never converges); the best of any threshold unit on XOR, by
          exhaustive search over a 41^3 weight grid: 3/4, as Minsky & Papert proved;
          a 2-8-2 tanh MLP trained by backpropagation (SGD, 400 steps): XOR 4/4.
Outputs:  results.json (perceptron_and, perceptron_or, perceptron_xor, mlp_xor),
          decision_boundaries.png, metrics.jsonl (perceptron mistakes per epoch),
          mlp_xor/ (the MLP's own run folder).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax import cli, configs, metrics, pictures, run_folder
from deeplearn_jax.data import embedded
from deeplearn_jax.models import perceptron
from deeplearn_jax.train import supervised

TABLES = ("and", "or", "xor")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  # The top level is the MLP's supervised config; `perceptron` holds the rule's knobs.
  c = supervised.base_config()
  c.data.name = "xor"
  c.data.normalize = "none"
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(8,), activation="tanh"))
  c.batch_size = 4                # the whole truth table each step
  c.eval_batch_size = 4
  c.mesh.data = 1                 # 4 rows: one device is plenty
  c.num_train_steps = 400
  c.log_every_steps = 20
  c.eval_every_steps = 100
  c.checkpoint_every_steps = -1
  c.checkpoint_every_epochs = -1.0  # only at the end
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.5
  c.perceptron = ml_collections.ConfigDict(dict(
      epochs=20, learning_rate=1.0,
      search_grid=41))              # weights tried per axis in the exhaustive search
  if "smoke" in modifiers:
    c.num_train_steps = 200
    c.progress = False
  c.lock()
  return c


def _plot(path: str, boundaries: dict[str, tuple[np.ndarray, float]]) -> None:

  x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  fig = pictures.figure(figsize=(3.2 * len(boundaries), 3.4))
  axes = fig.subplots(1, len(boundaries))
  for ax, (title, (grid, acc)) in zip(axes, boundaries.items()):
    table = title.split()[-1]
    ax.imshow(grid, origin="lower", extent=(-0.5, 1.5, -0.5, 1.5), cmap="coolwarm",
              alpha=0.35, vmin=0, vmax=1)
    y = np.array(embedded.TRUTH_TABLES[table])
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", edgecolors="k", s=120, vmin=0, vmax=1)
    ax.set_title(f"{title}: {acc:.0%}")
    ax.set_xticks([0, 1])
    ax.set_yticks([0, 1])
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  run_folder.start(workdir, config)
  axis = np.linspace(-0.5, 1.5, 101, dtype=np.float32)
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
  results, boundaries = {}, {}
  writer = metrics.MetricsWriter(workdir, progress=False)
  for table in TABLES:
    rows = embedded.truth_table(table)["train"]
    x, y = jnp.asarray(rows["input"]), jnp.asarray(rows["label"])
    params, mistakes = jax.jit(perceptron.train, static_argnames="epochs")(
        perceptron.init(2), x, y, epochs=config.perceptron.epochs,
        learning_rate=config.perceptron.learning_rate)
    acc = float(jnp.mean(perceptron.predict(params, x) == y))
    results[f"perceptron_{table}"] = acc
    results[f"perceptron_{table}_mistakes_last_epoch"] = int(mistakes[-1])
    for epoch, m in enumerate(np.asarray(mistakes), 1):
      writer.write(epoch, "train", {f"perceptron_{table}_mistakes": int(m)})
    boundaries[f"perceptron {table}"] = (
        np.asarray(perceptron.predict(params, grid)).reshape(len(axis), -1), acc)
  writer.close()
  xor = embedded.truth_table("xor")["train"]
  results["best_threshold_unit_xor"] = perceptron.best_threshold_unit(
      xor["input"], xor["label"], grid_size=config.perceptron.search_grid)

  mlp = supervised.run(config, os.path.join(workdir, "mlp_xor"))
  results["mlp_xor"] = mlp.results["test_accuracy"]
  results["mlp_xor_final_train_loss"] = mlp.results["final_train_loss"]
  logits = mlp.model.apply({"params": mlp.state.params}, jnp.asarray(grid))
  boundaries["2-layer MLP xor"] = (
      np.asarray(jnp.argmax(logits, -1)).reshape(len(axis), -1), results["mlp_xor"])
  if jax.process_index() == 0:
    _plot(os.path.join(workdir, "decision_boundaries.png"), boundaries)
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results


if __name__ == "__main__":
  cli.run(__file__, "perceptron_xor", train_and_evaluate)
