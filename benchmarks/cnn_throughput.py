r"""Training throughput of a CNN on synthetic data: images/s, FLOPs per image, FLOP/s
reached and model-FLOPs utilisation against the device's peak.

    python benchmarks/cnn_throughput.py --model=resnet50 --image_size=224 --batch=256 \
        --dtype=bfloat16                                         # on a GPU
    python benchmarks/cnn_throughput.py --model=resnet50 --batch=8 --steps=3   # CPU, tiny
    python benchmarks/cnn_throughput.py --model=fast_cifar --image_size=32 --batch=512 \
        --widths=32,128,128                                      # the :cifar10 recipe's net

It times the trainer's own jitted step (steps.make_train_step: forward, backward,
optimizer update, SGD with Nesterov momentum; the state donated) on one device, on
random inputs and labels already on the device, so no input pipeline is measured.
FLOPs per image are XLA's count for the training step lowered for the host CPU (the
model's count on any backend: a compiled GPU step hides its convolutions in cuDNN calls
that its own count leaves out), divided by the batch; "model FLOPs" use the usual 3x
the forward count. The peak is
the device's nominal dense figure when known (--peak_tflops, or a table for H100/H200/
A100), else the rate of a large float32 matmul measured here (a practical peak). Writes
benchmarks/results/cnn_throughput_<model>_<device>.json. `measure` is the whole
measurement as a function (benchmarks/accelerator_check.py calls it).
"""

import argparse
import json
import os
import platform
import time

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from deeplearn_jax import models  # noqa: E402
from deeplearn_jax.train import optimizers, supervised  # noqa: E402
from deeplearn_jax.train.state import make_init, num_params  # noqa: E402
from deeplearn_jax.train.steps import make_train_step  # noqa: E402

# Nominal dense bf16 tensor-core peaks (TFLOP/s), from the vendors' data sheets; the first
# key found in the device kind wins, so the PCIe and NVL cards come before the SXM ones.
NOMINAL_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0,
                       "A100": 312.0}


def _flops(fn, *args) -> float:
  """XLA's FLOP count of jitted fn on args, lowered and counted for the host CPU: the
  count is the model's, the same on every backend, whereas a GPU's compiled program
  hides its convolutions in cuDNN calls that its own count leaves out (and jax 0.11's
  lowered GPU programs return no count at all)."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), args)
  lowered = fn.lower(*shapes)
  cost = lowered.cost_analysis() or lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def matmul_peak(dtype: str, n: int = 4096, repeats: int = 10) -> float:
  """FLOP/s of an n x n matmul on the default device (a practical peak). Random
  operands: constant ones or zeros can run faster than real data."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * n ** 3 * repeats / (time.perf_counter() - t0)


def nominal_peak(kind: str) -> float:
  """The device's nominal dense bf16 FLOP/s from NOMINAL_BF16_TFLOPS, 0.0 if unknown."""
  return next((v * 1e12 for k, v in NOMINAL_BF16_TFLOPS.items() if k in kind), 0.0)


def measure(model_cfg: ml_collections.ConfigDict, *, image_size: int, num_classes: int,
            batch: int, dtype: str, steps: int = 20, warmup: int = 3, rounds: int = 1,
            peak_tflops: float = 0.0, peak_source: str = "given",
            train_config: ml_collections.ConfigDict | None = None) -> dict:
  """Times the trainer's jitted step of `model_cfg` on random images already on the
  device; returns the result dict this script writes. `train_config` (an experiment's
  config) supplies the optimizer and loss settings; default: Nesterov SGD. With several
  rounds of `steps` steps the median round is reported, with the range. The peak:
  `peak_tflops` (described by `peak_source`), else the device's nominal one, else a
  4096^2 matmul measured here."""
  model = models.create(model_cfg, num_classes, dtype)
  if train_config is None:
    train_config = supervised.base_config()
    train_config.optimizer.name = "nesterov"
  tx, _ = optimizers.create(train_config.optimizer, 1000, 100000)
  shape = (image_size, image_size, 3)
  state = jax.jit(make_init(model, tx, shape, seed=0))()
  step = jax.jit(make_train_step(model, tx, train_config), donate_argnums=0)
  key = jax.random.PRNGKey(1)
  batch_arrays = {"input": jax.random.normal(key, (batch, *shape), jnp.float32),
                  "label": jax.random.randint(key, (batch,), 0, num_classes)}
  t0 = time.perf_counter()
  step.lower(state, batch_arrays).compile()
  compile_seconds = time.perf_counter() - t0
  forward = jax.jit(lambda s, x: model.apply(
      {"params": s.params, **({"batch_stats": s.batch_stats} if s.batch_stats else {})}, x))
  forward_flops = _flops(forward, state, batch_arrays["input"])

  for _ in range(warmup):
    state, m = step(state, batch_arrays)
  jax.block_until_ready(m)
  times = []
  for _ in range(max(1, rounds)):
    t0 = time.perf_counter()
    for _ in range(steps):
      state, m = step(state, batch_arrays)
    jax.block_until_ready(m)
    times.append((time.perf_counter() - t0) / steps)
  seconds = sorted(times)[len(times) // 2]

  device = jax.devices()[0]
  kind = device.device_kind
  nominal = peak_tflops * 1e12 or nominal_peak(kind)
  if not peak_tflops:
    peak_source = "nominal" if nominal else f"measured {dtype} 4096^2 matmul"
  peak = nominal or matmul_peak(dtype)
  step_flops = _flops(step, state, batch_arrays)
  model_flops = 3 * forward_flops
  return {
      "model": model_cfg.name, "widths": ",".join(map(str, model_cfg.get("widths", ()))),
      "conv": model_cfg.get("conv", "") or "default", "image_size": image_size,
      "batch": batch, "dtype": dtype, "num_params": num_params(state.params),
      "device": kind, "platform": device.platform, "host_cores": os.cpu_count(),
      "jax": jax.__version__, "host": platform.processor() or platform.machine(),
      "images_per_second": batch / seconds, "step_seconds": seconds,
      "images_per_second_range": [batch / max(times), batch / min(times)],
      "timed_steps": steps, "rounds": len(times), "compile_seconds": compile_seconds,
      "xla_flops_per_image": step_flops / batch,
      "model_flops_per_image": model_flops / batch,
      "achieved_tflops": step_flops / seconds / 1e12,
      "peak_tflops": peak / 1e12, "peak_source": peak_source,
      "mfu": model_flops / seconds / peak,
      "load_average": os.getloadavg()[0],
  }


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="resnet50")
  p.add_argument("--widths", default="", help="fast_cifar: comma-separated block widths")
  p.add_argument("--conv", default="", help="fast_cifar: lax | im2col")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--num_classes", type=int, default=1000)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--rounds", type=int, default=1, help="rounds of --steps; median reported")
  p.add_argument("--peak_tflops", type=float, default=0.0)
  p.add_argument("--out", default="")
  args = p.parse_args()

  model_cfg = ml_collections.ConfigDict({"name": args.model})
  if args.widths:
    model_cfg.widths = tuple(int(w) for w in args.widths.split(","))
  if args.conv:
    model_cfg.conv = args.conv
  result = measure(model_cfg, image_size=args.image_size, num_classes=args.num_classes,
                   batch=args.batch, dtype=args.dtype, steps=args.steps, warmup=args.warmup,
                   rounds=args.rounds, peak_tflops=args.peak_tflops,
                   peak_source="--peak_tflops")
  out = args.out or os.path.join("benchmarks", "results",
                                 f"cnn_throughput_{args.model}_{result['platform']}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
