r"""LeNet-5 on CPU: our JAX code against the same model and recipe in PyTorch.

Command (from the repository root, on an otherwise idle machine; torch is optional:
`pip install torch==2.13.0`, or `pip install -e .[bench]`):

    python benchmarks/lenet_throughput.py

It measures, in one process (in --frameworks order):

 (a) Training throughput: examples/s of steady-state training steps (batch 128, float32),
     after --warmup steps (the first one includes JAX's compilation): --rounds rounds of
     --steps timed steps, the frameworks taking turns in each round (this machine's
     speed drifts by 10-20% over minutes), and the median round reported with the range
     of all rounds. Both frameworks cycle through the same 8 pre-built batches of
     random images in [0, 1] with random labels, already converted to framework arrays,
     so no input pipeline is timed (the cost of a LeNet step does not depend on the
     values). JAX runs the trainer's own jitted step (make_train_step, donate_argnums=0).
 (b) Time to 99% test accuracy on real MNIST with the recipe of experiments/lenet.py
     (Adam 2e-3, 0.5 epoch linear warmup then cosine decay over the config's 12 epochs,
     batch 128, inputs in [0, 1]). Each epoch is a shuffled pass (same order for both)
     over the 60k training images, dropping the last partial batch as the trainer does,
     followed by an evaluation on the 10k test images; the frameworks take turns epoch
     by epoch. Each stops at its first epoch with test accuracy >= 0.99, or after
     --max_epochs. Its wall time sums its own epochs, from its first training step to
     the end of the evaluation that reaches the target: it includes compilation, the host
     batch preparation (the same numpy gather and scaling for both) and every per-epoch
     evaluation; dataset loading and model initialisation are left out. Training and
     evaluation seconds are also reported apart.

The PyTorch model is the same network (NCHW, eager mode) starting from the very weights
our trainer starts from (flax's initialisation at the config's seed, copied over; the
two forward passes are checked equal before anything is timed), trained by
torch.optim.Adam with the same betas/eps and the same schedule as a per-step LambdaLR.
Same weights, recipe and batch order: the epochs to 99% differ only by rounding, and the
wall times compare speed (--torch_init=default keeps PyTorch's own initialisation).
PyTorch uses torch.set_num_threads(os.cpu_count()); JAX uses XLA's default threading.
Other busy processes distort both, PyTorch far more (its OpenMP threads wait on each
other when a core is taken), so the load average is recorded and warned about.

Results: a table on stdout and JSON in --out (default benchmarks/results/lenet_throughput.json).
Quick check of the code path (seconds; the numbers are not a benchmark):

    python benchmarks/lenet_throughput.py --steps 10 --rounds 2 --warmup 2 \
        --limit_train 2000 --max_epochs 1 --out /tmp/lenet_check.json
"""

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `experiments` is not an installed package

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from deeplearn_jax import data, models, parallel  # noqa: E402
from deeplearn_jax.configs import steps_from  # noqa: E402
from deeplearn_jax.train import optimizers  # noqa: E402
from deeplearn_jax.train.state import make_init, num_params  # noqa: E402
from deeplearn_jax.train.steps import make_eval_step, make_train_step  # noqa: E402
from experiments import lenet  # noqa: E402

FRAMEWORKS = ("jax", "torch")
TARGET = 0.99
POOL = 8  # distinct batches cycled through in the throughput test


def make_config(args):
  """experiments/lenet.py's config with this script's batch size and data folders."""
  c = lenet.get_config()
  c.unlock()
  c.batch_size = args.batch_size
  c.data.manual_dir = args.data_dir
  c.data.tfds_data_dir = args.tfds_data_dir
  return c


class Recipe:
  """The config and the step counts derived from it for `num_train` training examples."""

  def __init__(self, c, num_train: int):
    self.config = c
    self.steps_per_epoch = num_train // c.batch_size
    if self.steps_per_epoch == 0:
      raise SystemExit(f"--batch_size {c.batch_size} exceeds the {num_train} training examples")
    # The schedule always spans the config's num_epochs, whatever --max_epochs cuts it to.
    self.total_steps = max(1, int(round(c.num_epochs * self.steps_per_epoch)))
    self.warmup_steps = max(0, steps_from(c.optimizer, "warmup", self.steps_per_epoch))

  def lr_factor(self, step: int) -> float:
    """Warmup + cosine as a fraction of the peak, written out for PyTorch.

    Matches optax's join_schedules(linear 0 -> peak, cosine_decay): the first update uses
    step 0 (factor 0) in both, as LambdaLR starts at lambda(0) before any scheduler.step().
    """
    w, alpha = self.warmup_steps, self.config.optimizer.end_learning_rate_factor
    if step < w:
      return step / w
    decay = max(1, self.total_steps - w)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(step - w, decay) / decay))
    return (1.0 - alpha) * cosine + alpha


class JaxRunner:
  """Our code path: models.create, optimizers.create, make_init, the trainer's jitted step."""

  name = "jax"

  def __init__(self, recipe: Recipe, num_classes: int = 10):
    c = recipe.config
    self.mesh = parallel.make_mesh(c.mesh)
    model = models.create(c.model, num_classes, c.dtype)
    tx, self.lr_fn = optimizers.create(c.optimizer, recipe.steps_per_epoch, recipe.total_steps)
    init = make_init(model, tx, (28, 28, 1), c.seed)
    shardings = parallel.param_sharding(jax.eval_shape(init), self.mesh)
    self.state = jax.jit(init, out_shardings=shardings)()
    self.num_params = num_params(self.state.params)
    self.model = model
    self._train_step = jax.jit(make_train_step(model, tx, c), donate_argnums=0)
    self._eval_step = jax.jit(make_eval_step(model, num_classes))
    self._metrics = None

  def put(self, batch):
    return parallel.global_batch(batch, self.mesh)

  def logits(self, batch) -> np.ndarray:
    return np.asarray(self.model.apply({"params": self.state.params}, batch["input"]))

  def step(self, batch) -> None:
    self.state, self._metrics = self._train_step(self.state, batch)

  def sync(self) -> None:
    jax.block_until_ready((self.state, self._metrics))

  def accuracy(self, batches) -> float:
    outs = [self._eval_step(self.state, self.put(b)) for b in batches]
    outs = jax.device_get(outs)
    return float(sum(o["accuracy"] for o in outs) / sum(o["count"] for o in outs))

  @staticmethod
  def info() -> dict:
    import flax
    import optax
    return {"version": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "threads": "XLA default (not set)",
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


class TorchRunner:
  """The same LeNet-5 and recipe in plain eager PyTorch."""

  name = "torch"

  def __init__(self, recipe: Recipe, num_classes: int = 10, flax_params=None):
    import torch
    from torch import nn
    self.torch = torch
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(recipe.config.seed)
    # NCHW; C1 padding=2 is flax's 'SAME' for a 5x5 kernel. Flattening is channel-major
    # here and channel-minor in flax: a fixed permutation of C5's inputs, same network.
    self.model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))
    if flax_params is not None:
      self.model.load_state_dict(torch_state_dict(flax_params))
    self.num_params = sum(p.numel() for p in self.model.parameters())
    opt = recipe.config.optimizer
    self.opt = torch.optim.Adam(self.model.parameters(), lr=opt.learning_rate,
                                betas=(opt.b1, opt.b2), eps=opt.eps)
    self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, recipe.lr_factor)
    self.loss_fn = nn.CrossEntropyLoss()

  def put(self, batch):
    # NHWC with C=1 has the same memory layout as NCHW: the reshape copies nothing.
    x = self.torch.from_numpy(batch["input"]).reshape(-1, 1, 28, 28)
    out = {"input": x, "label": self.torch.from_numpy(batch["label"]).long()}
    if "mask" in batch:
      out["mask"] = self.torch.from_numpy(batch["mask"])
    return out

  def step(self, batch) -> None:
    self.model.train()
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss_fn(self.model(batch["input"]), batch["label"])
    loss.backward()
    self.opt.step()
    self.sched.step()

  def sync(self) -> None:
    pass  # eager CPU execution is synchronous

  def logits(self, batch) -> np.ndarray:
    with self.torch.inference_mode():
      return self.model(self.put(batch)["input"]).numpy()

  def accuracy(self, batches) -> float:
    self.model.eval()
    correct = count = 0.0
    with self.torch.inference_mode():
      for b in map(self.put, batches):
        hit = (self.model(b["input"]).argmax(1) == b["label"]).float()
        correct += float((hit * b["mask"]).sum())
        count += float(b["mask"].sum())
    return correct / count

  def info(self) -> dict:
    t = self.torch
    return {"version": t.__version__, "threads": t.get_num_threads(),
            "interop_threads": t.get_num_interop_threads()}


def torch_state_dict(params) -> dict:
  """Our LeNet5 parameters as the state dict of TorchRunner's nn.Sequential."""
  import torch
  t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
  conv = lambda k: t(np.transpose(k, (3, 2, 0, 1)))  # HWIO -> OIHW
  # flax flattens C5's input as (h, w, c), PyTorch as (c, h, w).
  c5 = params["C5"]["kernel"].reshape(5, 5, 16, -1).transpose(2, 0, 1, 3).reshape(400, -1)
  out = {}
  for i, (name, kernel) in {0: ("C1", conv), 3: ("C3", conv), 7: ("C5", None),
                            9: ("F6", None), 11: ("output", None)}.items():
    k = params[name]["kernel"] if name != "C5" else c5
    out[f"{i}.weight"] = kernel(k) if kernel else t(k.T)
    out[f"{i}.bias"] = t(params[name]["bias"])
  return out


def check_same_function(jax_runner, torch_runner, batch) -> float:
  """Both frameworks must compute the same logits from the same weights."""
  ours, theirs = jax_runner.logits(batch), torch_runner.logits(batch)
  diff = float(np.abs(ours - theirs).max())
  if diff > 1e-4 * max(1.0, float(np.abs(ours).max())):
    raise AssertionError(f"JAX and PyTorch LeNets differ from the same weights: {diff:.3g}")
  return diff


def check_schedules_match(recipe: Recipe) -> None:
  """PyTorch's LambdaLR must follow exactly optax's schedule, step for step."""
  _, lr_fn = optimizers.create(recipe.config.optimizer, recipe.steps_per_epoch,
                               recipe.total_steps)
  steps = np.arange(recipe.total_steps + 2)
  ours = np.asarray(jax.vmap(lr_fn)(jnp.asarray(steps)))
  theirs = recipe.config.optimizer.learning_rate * np.array([recipe.lr_factor(s) for s in steps])
  if not np.allclose(ours, theirs, rtol=1e-5, atol=1e-9):
    raise AssertionError(f"LR schedules differ: max |diff| {np.abs(ours - theirs).max():.3g}")


def warm_up(runner, pool, warmup: int) -> float:
  """Runs the untimed steps; returns the first one's seconds (JAX: with compilation)."""
  t = time.perf_counter()
  runner.step(pool[0])
  runner.sync()
  first = time.perf_counter() - t
  for i in range(1, warmup):
    runner.step(pool[i % len(pool)])
  runner.sync()
  return first


def timed_ms_per_step(runner, pool, steps: int) -> float:
  t = time.perf_counter()
  for i in range(steps):
    runner.step(pool[i % len(pool)])
  runner.sync()
  return 1e3 * (time.perf_counter() - t) / steps


def throughput(runners: dict, pool, args) -> dict:
  """Rounds of --steps timed steps, the frameworks taking turns in every round, so that
  a slow spell of a shared machine falls on both; the median round is reported."""
  pools = {name: [r.put(b) for b in pool] for name, r in runners.items()}
  first = {name: warm_up(r, pools[name], args.warmup) for name, r in runners.items()}
  rounds = {name: [] for name in runners}
  for _ in range(args.rounds):
    for name, r in runners.items():
      rounds[name].append(timed_ms_per_step(r, pools[name], args.steps))
  out = {}
  for name, ms in rounds.items():
    median = float(np.median(ms))
    out[name] = {"examples_per_second": 1e3 * args.batch_size / median, "ms_per_step": median,
                 "ms_per_step_rounds": ms, "examples_per_second_range": [
                     1e3 * args.batch_size / max(ms), 1e3 * args.batch_size / min(ms)],
                 "timed_steps_per_round": args.steps, "rounds": args.rounds,
                 "warmup_steps": args.warmup, "first_step_seconds": first[name]}
  return out


def eval_batches(split, transform, size: int):
  """The whole split in order; the last batch is padded and 'mask' marks real rows."""
  n = len(split)
  for start in range(0, n, size):
    idx = np.arange(start, start + size)
    batch = transform(split.gather(np.minimum(idx, n - 1)))
    batch["mask"] = (idx < n).astype(np.float32)
    yield batch


def train_epoch(runner, ds, recipe: Recipe, epoch: int) -> tuple[float, float, float]:
  """One shuffled pass and a test evaluation: (test accuracy, train s, eval s)."""
  c = recipe.config
  spe, bs = recipe.steps_per_epoch, c.batch_size
  # Same order for every framework; the trainer's grain pipeline is not used so that
  # both are fed by the same plain numpy code.
  order = np.random.default_rng([c.seed, epoch]).permutation(len(ds.train))
  t = time.perf_counter()
  for s in range(spe):
    runner.step(runner.put(ds.transform(ds.train.gather(order[s * bs:(s + 1) * bs]))))
  runner.sync()
  t_eval = time.perf_counter()
  acc = runner.accuracy(eval_batches(ds.test, ds.transform, c.eval_batch_size))
  return acc, t_eval - t, time.perf_counter() - t_eval


def time_to_accuracy(runners: dict, ds, recipe: Recipe, max_epochs: int) -> dict:
  """Each framework trains until TARGET test accuracy; they take turns epoch by epoch, so
  that a slow spell of the machine falls on both."""
  spe, bs = recipe.steps_per_epoch, recipe.config.batch_size
  seconds = {name: [0.0, 0.0] for name in runners}  # train, eval
  history = {name: [] for name in runners}
  for epoch in range(1, max_epochs + 1):
    for name, runner in runners.items():
      if history[name] and history[name][-1]["test_accuracy"] >= TARGET:
        continue
      acc, train_s, eval_s = train_epoch(runner, ds, recipe, epoch)
      seconds[name][0] += train_s
      seconds[name][1] += eval_s
      wall = sum(seconds[name])
      history[name].append({"epoch": epoch, "test_accuracy": acc, "wall_seconds": wall})
      print(f"  {name} epoch {epoch}: test accuracy {acc:.4f}, {wall:.1f} s", flush=True)
  out = {}
  for name, h in history.items():
    train_s, eval_s = seconds[name]
    out[name] = {"reached": h[-1]["test_accuracy"] >= TARGET, "target": TARGET,
                 "epochs": len(h), "test_accuracy": h[-1]["test_accuracy"],
                 "wall_seconds": train_s + eval_s, "train_seconds": train_s,
                 "eval_seconds": eval_s, "train_examples_per_second": len(h) * spe * bs / train_s,
                 "wall_includes": "training (incl. compilation and host batch preparation) "
                                  "and every per-epoch test evaluation",
                 "history": h}
  return out



def print_table(results: dict) -> None:
  names = list(results["frameworks"])
  rows = [("version", lambda r: r["info"]["version"]),
          ("threads", lambda r: r["info"]["threads"]),
          ("params", lambda r: f"{r['num_params']:,}"),
          ("train examples/s (median)", lambda r: f"{r['throughput']['examples_per_second']:,.0f}"),
          ("  range over rounds", lambda r: "{:,.0f}-{:,.0f}".format(
              *r["throughput"]["examples_per_second_range"])),
          ("ms/step (median)", lambda r: f"{r['throughput']['ms_per_step']:.2f}"),
          ("first step s", lambda r: f"{r['throughput']['first_step_seconds']:.2f}")]
  if results["settings"]["time_to_accuracy"]:
    rows += [("epochs to 99%", lambda r: str(r["accuracy"]["epochs"])
              + ("" if r["accuracy"]["reached"] else " (not reached)")),
             ("test accuracy", lambda r: f"{r['accuracy']['test_accuracy']:.4f}"),
             ("wall s (train+eval)", lambda r: f"{r['accuracy']['wall_seconds']:.1f}"),
             ("  of which train s", lambda r: f"{r['accuracy']['train_seconds']:.1f}")]
  table = [["", *names]] + [[label, *(str(get(results["frameworks"][n])) for n in names)]
                            for label, get in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  print()
  for row in table:
    print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths))))
  print(f"\nCPU: {results['machine']['cpu_model']}, {results['machine']['cpu_count']} cores")


def parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=200, help="timed training steps per round")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds per framework")
  p.add_argument("--warmup", type=int, default=20, help="untimed steps first (incl. compile)")
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--skip_accuracy", action="store_true",
                 help="throughput only: no MNIST, no time-to-99%% run")
  p.add_argument("--max_epochs", type=int, default=None,
                 help="epoch cap of the time-to-99%% run (default and maximum: the config's "
                      "num_epochs; the LR schedule always spans num_epochs)")
  p.add_argument("--frameworks", default="jax,torch", help="comma-separated: jax,torch")
  p.add_argument("--torch_init", default="ours", choices=("ours", "default"),
                 help="PyTorch starts from our initial weights, or from its own init")
  p.add_argument("--out", default=str(REPO / "benchmarks/results/lenet_throughput.json"))
  p.add_argument("--data_dir", default=str((REPO / "../shared/data").resolve()),
                 help="folder with the official MNIST files in mnist/ (config.data.manual_dir)")
  p.add_argument("--tfds_data_dir", default="",
                 help="where TFDS keeps prepared data ('' = $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  p.add_argument("--limit_train", type=int, default=0,
                 help="dev only: train on the first N images (checks the code path; the "
                      "numbers are not a benchmark)")
  args = p.parse_args()
  args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
  bad = [f for f in args.frameworks if f not in FRAMEWORKS]
  if bad or not args.frameworks:
    p.error(f"--frameworks: unknown {bad}; choose from {','.join(FRAMEWORKS)}")
  if min(args.steps, args.warmup, args.rounds) < 1:
    p.error("--steps, --warmup and --rounds must be >= 1")
  return args


def main() -> None:
  args = parse_args()
  num_epochs = int(lenet.get_config().num_epochs)
  max_epochs = num_epochs if args.max_epochs is None else args.max_epochs
  if not 1 <= max_epochs <= num_epochs:
    raise SystemExit(f"--max_epochs must be in 1..{num_epochs} (the config's num_epochs)")

  config = make_config(args)
  ds = None
  num_train = 60000  # MNIST's; sets the schedule's length, which throughput ignores
  if not args.skip_accuracy:
    print("loading MNIST ...", flush=True)
    ds = data.load(config.data)
    if args.limit_train:
      ds.train = data.ArraySplit({k: v[:args.limit_train] for k, v in ds.train.arrays.items()})
    num_train = len(ds.train)
  recipe = Recipe(config, num_train)
  if "torch" in args.frameworks:
    check_schedules_match(recipe)

  rng = np.random.default_rng(recipe.config.seed)
  pool = [{"input": rng.random((args.batch_size, 28, 28, 1), dtype=np.float32),
           "label": rng.integers(0, 10, args.batch_size).astype(np.int32)}
          for _ in range(POOL)]

  results = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join(["python", *sys.argv]),
      "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                  "schedulable_cores": len(os.sched_getaffinity(0)),
                  "load_average_at_start": os.getloadavg(), "python": platform.python_version()},
      "settings": {"batch_size": args.batch_size, "dtype": "float32",
                   "timed_steps_per_round": args.steps,
                   "rounds": args.rounds,
                   "warmup_steps": args.warmup, "throughput_data": f"{POOL} random batches",
                   "time_to_accuracy": not args.skip_accuracy, "target_accuracy": TARGET,
                   "max_epochs": max_epochs, "limit_train": args.limit_train or None,
                   "steps_per_epoch": recipe.steps_per_epoch,
                   "schedule_steps": recipe.total_steps, "lr_warmup_steps": recipe.warmup_steps,
                   "optimizer": recipe.config.optimizer.to_dict(),
                   "eval_batch_size": recipe.config.eval_batch_size},
      "frameworks": {},
  }
  load = os.getloadavg()[0]
  if load > 0.5:
    # Busy cores distort both numbers, PyTorch's most: its OpenMP threads wait on each other.
    print(f"warning: load average {load:.1f} on {os.cpu_count()} cores; "
          "benchmark on an otherwise idle machine", flush=True)
  torch_params = None
  if "torch" in args.frameworks and args.torch_init == "ours":
    reference = JaxRunner(recipe)  # our trainer's initial weights
    torch_params = jax.device_get(reference.state.params)

  def make(name: str):
    return JaxRunner(recipe) if name == "jax" else TorchRunner(recipe, flax_params=torch_params)

  if torch_params is not None:
    diff = check_same_function(reference, make("torch"), pool[0])
    results["settings"]["torch_forward_max_abs_diff_at_start"] = diff
  results["settings"]["torch_init"] = args.torch_init
  print(f"throughput: {args.warmup} warm-up steps, then {args.rounds} rounds of {args.steps} "
        f"timed steps, frameworks taking turns ...", flush=True)
  runners = {name: make(name) for name in args.frameworks}
  speed = throughput(runners, pool, args)
  for name, runner in runners.items():
    results["frameworks"][name] = {"num_params": runner.num_params, "info": runner.info(),
                                   "throughput": speed[name]}
  del runners
  if ds is not None:
    print(f"time to {TARGET:.0%} test accuracy, frameworks taking turns by epoch ...",
          flush=True)
    reached = time_to_accuracy({name: make(name) for name in args.frameworks}, ds, recipe,
                               max_epochs)
    for name, out in reached.items():
      results["frameworks"][name]["accuracy"] = out

  print_table(results)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
