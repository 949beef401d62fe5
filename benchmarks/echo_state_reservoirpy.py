"""Our echo-state network against reservoirpy's on the one-step Mackey-Glass task.

    pip install reservoirpy==0.4.2
    python benchmarks/echo_state_reservoirpy.py [--rounds=5] [--reservoirs=20]

The setup of reservoirpy's README: 2,000 points, the last 20% as test, 100 units,
spectral radius 1.25, leak 0.3, ridge 1e-5, warmup 100, reservoirpy's defaults for the
rest (input scaling 1, 10% input and recurrent connectivity, no bias). Both libraries
run on both series: reservoirpy's `mackey_glass(2000)` and ours, and each fits the same
number of random reservoirs (seeds 0, 1, ...); the errors are medians over reservoirs.

Fit time: one fit = a new reservoir (its weights scaled to the spectral radius), states
over the series, the ridge readout and the test predictions. The two libraries take
turns, `rounds` times, and the median is reported. Ours is timed after its first
(compiling) call, which is reported apart.
NumPy's BLAS runs on one thread (OPENBLAS_NUM_THREADS=1, set here unless given): on
this shared 2-core machine its spinning threads fought JAX's and made both sides'
fits (reservoirpy's solve, our eigenvalues) several times slower and erratic.
Writes benchmarks/results/echo_state_reservoirpy.json.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads (see above)

import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from deeplearn_jax.data.mackey_glass import mackey_glass  # noqa: E402
from experiments import echo_state as experiment  # noqa: E402

flags.DEFINE_integer("rounds", 5, "timed fits per library, taking turns")
flags.DEFINE_integer("reservoirs", 20, "random reservoirs per library and series")
flags.DEFINE_string("out", "benchmarks/results/echo_state_reservoirpy.json", "output JSON")
FLAGS = flags.FLAGS


def theirs_fit(series: np.ndarray, seed: int, a) -> tuple[np.ndarray, np.ndarray]:
  """reservoirpy's README code on `series`, its readout seeing the input too when
  `a.input_to_readout`: (test predictions, test targets)."""
  from reservoirpy import ESN
  from reservoirpy.datasets import to_forecasting

  x_train, x_test, y_train, y_test = to_forecasting(series[:, None], test_size=a.test_fraction)
  model = ESN(units=a.units, sr=a.spectral_radius, lr=a.leak, ridge=a.ridge, seed=seed,
              input_to_readout=a.input_to_readout)
  model.fit(x_train, y_train, warmup=a.warmup)
  return model.run(x_test), y_test


def ours_fit(series: np.ndarray, seed: int, config) -> tuple[np.ndarray, np.ndarray]:
  a = config.one_step
  inputs, targets, num_train = experiment.one_step_split(config, series)
  params = experiment.make_reservoir(a, jax.random.PRNGKey(seed), jnp.float64)
  pred, _ = experiment.fit_one_step(params, jnp.asarray(inputs), jnp.asarray(targets),
                                    leak=a.leak, ridge=a.ridge, num_train=num_train,
                                    warmup=a.warmup, input_to_readout=a.input_to_readout)
  return np.asarray(jax.block_until_ready(pred))[num_train:], targets[num_train:]


def scores(fit, series, count, arg) -> dict:
  rmses, r2s = [], []
  for seed in range(count):
    pred, truth = fit(series, seed, arg)
    rmses.append(experiment.rmse(pred, truth))
    r2s.append(experiment.r2(pred, truth))
  return {"rmse_median": float(np.median(rmses)), "r2_median": float(np.median(r2s)),
          "rmse_per_reservoir": rmses}


def main(_):
  import reservoirpy
  from reservoirpy.datasets import mackey_glass as their_mackey_glass

  jax.config.update("jax_enable_x64", True)  # this script only: both sides in float64
  config = experiment.get_config()
  a = config.one_step  # timed with the experiment's readout
  series = {"reservoirpy_mackey_glass": their_mackey_glass(a.num_points)[:, 0],
            "our_mackey_glass": mackey_glass(a.num_points, seed=config.seed)}

  start = time.perf_counter()
  ours_fit(series["our_mackey_glass"], 0, config)
  first_call = time.perf_counter() - start
  ours_s, theirs_s = [], []
  for r in range(FLAGS.rounds):  # taking turns, so load on the machine hits both alike
    start = time.perf_counter()
    theirs_fit(series["our_mackey_glass"], r, a)
    theirs_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    ours_fit(series["our_mackey_glass"], r, config)
    ours_s.append(time.perf_counter() - start)

  timed_input_to_readout = a.input_to_readout
  errors = {}
  for readout in (True, False):  # Jaeger's readout (the input beside the states), the README's
    with config.unlocked():
      a.input_to_readout = readout
    errors["input_and_states" if readout else "states_only"] = {
        name: {"reservoirpy": scores(theirs_fit, s, FLAGS.reservoirs, a),
               "deeplearn_jax": scores(ours_fit, s, FLAGS.reservoirs, config)}
        for name, s in series.items()}
  results = {
      "setup": {"units": a.units, "spectral_radius": a.spectral_radius, "leak": a.leak,
                "ridge": a.ridge, "warmup": a.warmup, "input_scaling": a.input_scaling,
                "connectivity": a.connectivity, "input_connectivity": a.input_connectivity,
                "num_points": a.num_points, "test_fraction": a.test_fraction,
                "timed_input_to_readout": timed_input_to_readout,
                "reservoirs": FLAGS.reservoirs, "rounds": FLAGS.rounds, "dtype": "float64",
                "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "load_average": os.getloadavg(),
                "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"], "jax": jax.__version__,
                "reservoirpy": reservoirpy.__version__, "numpy": np.__version__},
      "published_reservoirpy_readme": {"rmse": 0.0020282, "r2": 0.99992},
      "errors": errors,
      "fit_seconds_median": {"reservoirpy": float(np.median(theirs_s)),
                             "deeplearn_jax": float(np.median(ours_s))},
      "fit_seconds": {"reservoirpy": theirs_s, "deeplearn_jax": ours_s},
      "deeplearn_jax_first_call_seconds": first_call,
  }
  os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
  with open(FLAGS.out, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
