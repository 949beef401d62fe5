r"""LSTM training throughput on CPU: our JAX LSTM against PyTorch's torch.nn.LSTM.

Command (from the repository root, on an otherwise idle machine; torch is optional:
`pip install torch==2.13.0`):

    python benchmarks/lstm_throughput.py

Both train the same network on the same batch: a one-layer LSTM (batch 64, hidden 256,
100 steps of 64 input features, float32), a linear head on the last step's output,
cross-entropy over 10 classes, Adam (lr 1e-3, the same betas and eps). Ours is
models.create's "rnn" model (the input projection hoisted out of the scan, the four gate
matmuls fused, the hand-written backward pass of models/lstm_scan.py) in a plain jitted
optax step with the state donated; PyTorch's is eager nn.LSTM(batch_first=True) +
nn.Linear starting from our initial weights (the two forward passes are checked equal
first), with torch.set_num_threads(--torch_threads; "2,1" times one runner per thread
count, each setting its own before its steps) and JAX on XLA's default threading.

Timing: --warmup untimed steps (JAX's first includes compilation), then --rounds rounds
of --steps timed steps, the runners taking turns in every round because a shared VM's
speed drifts; steps/s of the median round is reported with the range. --jax_unroll
"1,4" adds a JAX runner per scan unroll to the rotation, and --jax_gradient
fused,autodiff one with JAX's own gradient of the scanned step beside the hand-written
one. --torch_onednn on,off adds a PyTorch runner with oneDNN off
(torch.backends.mkldnn.enabled=False): on CPUs nn.LSTM otherwise trains through oneDNN's
fused LSTM primitive. The load average is recorded at the start and the end: other
processes slow both, PyTorch's OpenMP threads most.

Result (2 vCPUs "AMD EPYC", AVX2, quiet: load 1.7-1.8; 2026-11-27; `--torch_threads 2,1`):
with DEEPLEARN_JAX_MALLOC=keep, importing deeplearn_jax keeps freed host memory for the
whole process, PyTorch included (deeplearn_jax/host_memory.py): ours 6.90 steps/s,
PyTorch 7.63 on 2 threads and 4.69 on 1 (results/lstm_throughput_kept_memory.json);
without it (glibc as it comes, both): ours 4.60, PyTorch 5.62 and 3.60
(..._system_malloc.json). Ours is
0.90x PyTorch's 2 threads under the same malloc settings (0.82x under glibc's); earlier
runs (2026-11-26, lstm_throughput.json, glibc's): ours 4.33, PyTorch 5.32. At load
5.5 -> 3.8 (`--jax_unroll 1,2 --jax_gradient fused,autodiff`, lstm_throughput_variants
.json): unroll 2 and JAX's own gradient were both slower than the default. With
`--torch_onednn on,off --rounds 9` (kept memory, load 1.0 -> 1.5): ours 6.15, PyTorch
6.69 with oneDNN and 3.92 without it (results/lstm_throughput_onednn.json).

Results: a table on stdout and JSON in --out (default benchmarks/results/lstm_throughput.json).
Quick check of the code path (the numbers are not a benchmark):

    python benchmarks/lstm_throughput.py --steps 1 --rounds 1 --warmup 1 --seq_len 10 \
        --out /tmp/lstm_check.json
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from deeplearn_jax import host_memory, models  # noqa: E402
from deeplearn_jax.train.state import num_params  # noqa: E402

LR = 1e-3


class JaxRunner:
  """Our "rnn" model (cell lstm, readout last) and an optax Adam step under jax.jit."""

  def __init__(self, args, unroll: int, fused: bool = True):
    self.name = f"jax(unroll={unroll})" + ("" if fused else ",autodiff")
    cfg = ml_collections.ConfigDict(dict(name="rnn", cell="lstm", hidden=args.hidden,
                                         unroll=unroll, fused=fused))
    self.model = models.create(cfg, args.classes)
    self.params = self.model.init(jax.random.PRNGKey(args.seed),
                                  jnp.zeros((1, args.seq_len, args.features)))["params"]
    self.num_params = num_params(self.params)
    tx = optax.adam(LR)
    model = self.model

    def step(state, x, y):
      params, opt_state = state

      def loss_fn(p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    self._step = jax.jit(step, donate_argnums=0)
    self.state = (jax.tree.map(jnp.array, self.params), tx.init(self.params))
    self.loss = None

  def put(self, batch):
    return jnp.asarray(batch["input"]), jnp.asarray(batch["label"])

  def logits(self, batch) -> np.ndarray:
    return np.asarray(self.model.apply({"params": self.params}, *self.put(batch)[:1]))

  def step(self, batch) -> None:
    self.state, self.loss = self._step(self.state, *batch)

  def sync(self) -> None:
    jax.block_until_ready((self.state, self.loss))

  @staticmethod
  def info() -> dict:
    import flax
    return {"version": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "backend": jax.default_backend(), "threads": "XLA default (not set)",
            "host_memory_kept": host_memory.keep_freed_memory(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


class TorchRunner:
  """torch.nn.LSTM + nn.Linear in eager mode, torch.optim.Adam, from our weights."""

  def __init__(self, args, flax_params, threads: int, onednn: bool = True):
    import torch
    self.torch = torch
    self.threads, self.onednn = threads, onednn
    self.name = (f"torch({threads} thread{'s' if threads > 1 else ''}"
                 + ("" if onednn else ", no oneDNN") + ")")
    torch.set_num_threads(threads)
    self.lstm = torch.nn.LSTM(args.features, args.hidden, batch_first=True)
    self.head = torch.nn.Linear(args.hidden, args.classes)
    self._load(flax_params)
    params = list(self.lstm.parameters()) + list(self.head.parameters())
    self.num_params = sum(p.numel() for p in params)
    self.opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)

  def _load(self, p) -> None:
    # Both order the gates i, f, g, o; PyTorch's second bias (b_hh) is ours summed in b_ih.
    t = lambda a: self.torch.from_numpy(np.array(a, np.float32))
    cell = p["rnn"]["layer0"]["forward"]
    with self.torch.no_grad():
      self.lstm.weight_ih_l0.copy_(t(cell["input"]["kernel"]).T)
      self.lstm.bias_ih_l0.copy_(t(cell["input"]["bias"]))
      self.lstm.weight_hh_l0.copy_(t(cell["recurrent_kernel"]).T)
      self.lstm.bias_hh_l0.zero_()
      self.head.weight.copy_(t(p["head"]["kernel"]).T)
      self.head.bias.copy_(t(p["head"]["bias"]))

  def put(self, batch):
    return (self.torch.from_numpy(np.array(batch["input"])),
            self.torch.from_numpy(np.array(batch["label"], np.int64)))

  def _logits(self, x):
    out, _ = self.lstm(x)
    return self.head(out[:, -1])

  def logits(self, batch) -> np.ndarray:
    with self.torch.inference_mode():
      return self._logits(self.put(batch)[0]).numpy()

  def step(self, batch) -> None:
    x, y = batch
    if self.torch.get_num_threads() != self.threads:  # another torch runner changed it
      self.torch.set_num_threads(self.threads)
    # On CPUs nn.LSTM trains through oneDNN's fused LSTM primitive unless this is off.
    self.torch.backends.mkldnn.enabled = self.onednn
    self.opt.zero_grad(set_to_none=True)
    self.torch.nn.functional.cross_entropy(self._logits(x), y).backward()
    self.opt.step()

  def sync(self) -> None:
    pass  # eager CPU execution is synchronous

  def info(self) -> dict:
    t = self.torch
    return {"version": t.__version__, "threads": t.get_num_threads(),
            "interop_threads": t.get_num_interop_threads(),
            "mkldnn": bool(t.backends.mkldnn.is_available()), "onednn_used": self.onednn}


def timed_steps_per_second(runner, batch, steps: int) -> float:
  t = time.perf_counter()
  for _ in range(steps):
    runner.step(batch)
  runner.sync()
  return steps / (time.perf_counter() - t)


def throughput(runners: list, batch, args) -> dict:
  """Interleaved rounds: each round times every runner once, in turn."""
  batches, first = {}, {}
  for r in runners:
    batches[r.name] = r.put(batch)
    t = time.perf_counter()
    r.step(batches[r.name])
    r.sync()
    first[r.name] = time.perf_counter() - t
    for _ in range(args.warmup - 1):
      r.step(batches[r.name])
    r.sync()
  rounds = {r.name: [] for r in runners}
  for i in range(args.rounds):
    for r in runners:
      rounds[r.name].append(timed_steps_per_second(r, batches[r.name], args.steps))
    print(f"  round {i + 1}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in rounds.items())
          + " steps/s", flush=True)
  return {name: {"steps_per_second": float(np.median(v)),
                 "steps_per_second_range": [min(v), max(v)], "steps_per_second_rounds": v,
                 "ms_per_step": 1e3 / float(np.median(v)),
                 "examples_per_second": args.batch_size * float(np.median(v)),
                 "first_step_seconds": first[name]} for name, v in rounds.items()}



def parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--seq_len", type=int, default=100)
  p.add_argument("--features", type=int, default=64, help="input features per step")
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--steps", type=int, default=5, help="timed training steps per round")
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--warmup", type=int, default=3, help="untimed steps first (incl. compile)")
  p.add_argument("--jax_unroll", default="1", help="comma-separated scan unrolls, one "
                 "JAX runner each")
  p.add_argument("--jax_gradient", default="fused", help="comma-separated: 'fused' (the "
                 "LSTM's hand-written backward pass, the default) and/or 'autodiff' (JAX's "
                 "gradient of the scanned step), one JAX runner each")
  p.add_argument("--torch_threads", default="2", help="comma-separated thread counts, one "
                 "PyTorch runner each")
  p.add_argument("--torch_onednn", default="on", help="comma-separated: 'on' (PyTorch's "
                 "default: nn.LSTM through oneDNN's fused LSTM) and/or 'off' "
                 "(torch.backends.mkldnn.enabled=False), one PyTorch runner each per thread count")
  p.add_argument("--frameworks", default="jax,torch", help="comma-separated: jax,torch")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=str(REPO / "benchmarks/results/lstm_throughput.json"))
  args = p.parse_args()
  args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
  if not args.frameworks or set(args.frameworks) - {"jax", "torch"}:
    p.error("--frameworks: choose from jax,torch")
  args.jax_unroll = [int(u) for u in args.jax_unroll.split(",")]
  args.torch_threads = [int(t) for t in args.torch_threads.split(",")]
  onednn = [o.strip() for o in args.torch_onednn.split(",")]
  if not onednn or set(onednn) - {"on", "off"}:
    p.error("--torch_onednn: choose from on,off")
  args.torch_onednn = [o == "on" for o in onednn]
  grads = [g.strip() for g in args.jax_gradient.split(",")]
  if not grads or set(grads) - {"fused", "autodiff"}:
    p.error("--jax_gradient: choose from fused,autodiff")
  args.jax_gradient = [g == "fused" for g in grads]
  if min(args.steps, args.rounds, args.warmup, *args.jax_unroll, *args.torch_threads) < 1:
    p.error("--steps, --rounds, --warmup, --jax_unroll and --torch_threads must be >= 1")
  return args


def main() -> None:
  args = parse_args()
  rng = np.random.default_rng(args.seed)
  batch = {"input": rng.normal(size=(args.batch_size, args.seq_len, args.features))
           .astype(np.float32),
           "label": rng.integers(0, args.classes, args.batch_size).astype(np.int32)}
  load = os.getloadavg()
  if load[0] > 0.5:
    print(f"warning: load average {load[0]:.1f} on {os.cpu_count()} cores; "
          "benchmark on an otherwise idle machine", flush=True)
  runners = []
  if "jax" in args.frameworks:
    runners = [JaxRunner(args, u, fused) for fused in args.jax_gradient for u in args.jax_unroll]
  settings = {k: getattr(args, k) for k in ("batch_size", "hidden", "seq_len", "features",
                                            "classes", "steps", "rounds", "warmup",
                                            "jax_unroll", "torch_threads")}
  settings["torch_onednn"] = args.torch_onednn
  settings["jax_gradient"] = ["fused" if g else "autodiff" for g in args.jax_gradient]
  settings.update(dtype="float32", optimizer=f"adam lr {LR}", loss="softmax cross-entropy "
                  "on the last step's output", data="one fixed random batch")
  if "torch" in args.frameworks:
    reference = runners[0] if runners else JaxRunner(args, 1)
    torch_runners = [TorchRunner(args, reference.params, t, o)
                     for o in args.torch_onednn for t in args.torch_threads]
    ours, theirs = reference.logits(batch), torch_runners[0].logits(batch)
    diff = float(np.abs(ours - theirs).max())
    if diff > 1e-4 * max(1.0, float(np.abs(ours).max())):
      raise AssertionError(f"JAX and PyTorch LSTMs differ from the same weights: {diff:.3g}")
    settings["torch_forward_max_abs_diff_at_start"] = diff
    runners += torch_runners
  print(f"{args.warmup} warm-up steps, then {args.rounds} rounds of {args.steps} timed steps, "
        "runners taking turns ...", flush=True)
  speed = throughput(runners, batch, args)
  results = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join(["python", *sys.argv]),
      "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                  "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
                  "python": platform.python_version()},
      "settings": settings,
      "frameworks": {r.name: {"num_params": r.num_params, "info": r.info(), **speed[r.name]}
                     for r in runners},
  }
  print()
  for name, r in results["frameworks"].items():
    lo, hi = r["steps_per_second_range"]
    print(f"{name:28s} {r['steps_per_second']:7.2f} steps/s (rounds {lo:.2f}-{hi:.2f}), "
          f"{r['ms_per_step']:7.1f} ms/step, {r['num_params']:,} params")
  print(f"CPU: {results['machine']['cpu_model']}, {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} at start, {results['machine']['load_average_at_end'][0]:.1f} at end")
  print(json.dumps({n: round(r["steps_per_second"], 3)
                    for n, r in results["frameworks"].items()}))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
