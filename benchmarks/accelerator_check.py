r"""A GPU check in one command: the device, the accelerator tests and four measurements,
as one JSON summary on stdout and in --out.

    python benchmarks/accelerator_check.py --out=gpu_check.json     # one H100/H200, < 8 min
    python benchmarks/accelerator_check.py --smoke --out=/tmp/s.json  # CPU, the same code path

Parts, in this order; each runs in its own subprocess under its own time budget, so a
crash, an out-of-memory or a hang is recorded as {"error": ...} in its entry and the
other parts still run; the whole command stops within --limit_seconds (470: 8 minutes
with a margin). Every entry has `seconds`, its own wall time.

  device       device_kind, platform, device count, jax/jaxlib versions, nvidia-smi's line,
               and the rate of a random bf16 8192^2 matmul (a practical peak).
  tests        pytest in a subprocess, in two phases. "device": the tests marked
               `accelerator` that run on the device itself (bit-identical resume of a
               crashed run, the bf16 forward of each CNN family, a bf16 training step).
               "cpu_fake_devices": those marked `accelerator(devices=8)` (8 devices
               against 1: data parallel, fsdp, batch-norm statistics, fsdp resume); one GPU
               cannot form an 8-device mesh, so they run on 8 fake CPU devices
               (JAX_PLATFORMS=cpu): they check the sharding code with the jax installed on
               the GPU host, not the GPU. Passed/failed/skipped counts and failing names.
  resnet50     training throughput, bf16, synthetic 224x224 images, batch 256: images/s and
               MFU (model FLOPs = 3x XLA's forward count, against the nominal dense bf16
               peak, 989 TFLOP/s for H100/H200 SXM, and against the matmul measured in
               `device`), beside MLPerf's ~7,000 images/s per H100. The measurement is
               benchmarks/cnn_throughput.py's `measure`, with the :resnet50 recipe's step.
  lenet_mnist  experiments/lenet.py's config on the real MNIST files in --data_dir,
               evaluated after every epoch; the time to 99% test accuracy is the
               `wall_seconds` of the first metrics.jsonl row at >= 99% (counted from the
               start of training, so it includes compilation; loading the data is timed
               apart). Known record: 0.76 s on a laptop GPU, one epoch. Missing MNIST
               files give a "skipped" entry that says where they were looked for.
  fast_cifar   training throughput of models/fast_cifar.py at the :cifar10_gpu width
               (64-256-256, XLA's convolutions, bf16, batch 1024, synthetic 32x32 images),
               with that recipe's step.
  nanogpt      experiments/char_lm.py's `transformer` config (nanoGPT's GPU run: 6 layers,
               width 384, context 256, batch 64, 5,000 iterations) on tiny-shakespeare in
               --data_dir, for as long as its budget allows: iterations/s and tokens/s after
               compilation, the iterations reached, the last and the best validation loss
               over the whole split (every 250 iterations, nanoGPT's interval; its
               published figure is its best checkpoint's), and the projected time for all
               5,000. Published: val 1.4697 in about 3 minutes on one A100. A missing
               input.txt gives a "skipped" entry.

--smoke runs every part on tiny models, batches and step counts (a few seconds each on a
CPU; the numbers are not a benchmark) and runs pytest only on two quick tests, so CI can
run it (tests/test_accelerator_check.py). The XLA compilation cache of
deeplearn_jax.cli.setup_jax is used: a second run compiles less, which shortens LeNet's
time to 99%; `compile_cache_entries_before` in each part says whether it was warm.
"""

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `experiments` and benchmarks/ are not installed packages

PARTS = ("device", "tests", "resnet50", "fast_cifar", "lenet_mnist", "nanogpt")
# Seconds each part may take at most (full run, smoke run); the overall limit also binds.
BUDGETS = {"device": (40, 60), "tests_device": (100, 90), "tests_cpu_fake_devices": (80, 90),
           "resnet50": (100, 90), "fast_cifar": (45, 90), "lenet_mnist": (105, 120),
           "nanogpt": (150, 120)}
TARGET = 0.99
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
REFERENCES = {
    "nominal_bf16_dense_tflops": {"H100 SXM": 989.0, "H200 SXM": 989.0},
    "measured_bf16_matmul_tflops_h100": 790.0,
    "mlperf_resnet50_images_per_second_per_h100": 7000.0,
    "lenet_mnist_99_seconds_laptop_gpu": 0.76,
    "lenet_mnist_99_epochs_laptop_gpu": 1,
    "nanogpt_shakespeare_char_val_loss": 1.4697,
    "nanogpt_shakespeare_char_minutes_a100": 3,
}
# Selections of the two pytest phases (pytest >= 8.3 matches marker arguments).
DEVICE_TESTS = "accelerator and not accelerator(devices=8)"
FAKE_DEVICE_TESTS = "accelerator(devices=8)"
# pytest collects only the files that hold accelerator tests: a GPU image that lacks the
# RL or chemistry packages can still run them.
ACCELERATOR_TEST_FILES = sorted(
    str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
    if "pytest.mark.accelerator" in p.read_text(encoding="utf-8"))
SMOKE_TEST_FILES = {"device": ["tests/test_accelerator_check.py"],
                    "cpu_fake_devices": ["tests/test_cnn.py::"
                                         "test_batch_norm_statistics_are_global_over_the_"
                                         "sharded_batch"]}


# ---------------------------------------------------------------- the parts (children)

def _cache_entries() -> int:
  import jax
  cache = jax.config.jax_compilation_cache_dir
  try:
    return sum(1 for _ in os.scandir(cache)) if cache else 0
  except OSError:
    return 0


def part_device(args) -> dict:
  import jax
  import jaxlib
  from benchmarks.cnn_throughput import matmul_peak
  devices = jax.devices()
  n, repeats = (512, 3) if args.smoke else (8192, 50)
  return {"device_kind": devices[0].device_kind, "platform": devices[0].platform,
          "device_count": len(devices), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "matmul": f"bfloat16 {n}x{n}, random operands, {repeats} repeats",
          "matmul_tflops": matmul_peak("bfloat16", n, repeats) / 1e12}


def _throughput(args, model_cfg, train_config, **kwargs) -> dict:
  import jax
  from benchmarks.cnn_throughput import measure, nominal_peak
  steps = dict(steps=2, warmup=1, rounds=1) if args.smoke else dict(steps=30, warmup=5,
                                                                   rounds=3)
  peak = {}
  if not nominal_peak(jax.devices()[0].device_kind) and args.matmul_tflops:
    # No data-sheet figure for this device: the matmul `device` measured, not another one.
    peak = dict(peak_tflops=args.matmul_tflops, peak_source="the bf16 matmul of `device`")
  return measure(model_cfg, train_config=train_config, **steps, **peak, **kwargs)


def part_resnet50(args) -> dict:
  import ml_collections
  from experiments import imagenet_cnn
  config = imagenet_cnn.get_config("resnet50")
  model = ml_collections.ConfigDict(dict(name="resnet50"))
  size, batch, classes = 224, 256, 1000
  if args.smoke:  # the smallest ResNet: even a 1-block ResNet-50 takes a minute to compile
    model = ml_collections.ConfigDict(dict(name="cifar_resnet", depth=8, width=4))
    size, batch, classes = 16, 4, 10
  return _throughput(args, model, config, image_size=size, num_classes=classes, batch=batch,
                     dtype="bfloat16")


def part_fast_cifar(args) -> dict:
  from experiments import imagenet_cnn
  config = imagenet_cnn.get_config("cifar10_gpu,smoke" if args.smoke else "cifar10_gpu")
  batch = config.batch_size
  if args.smoke:
    batch = 8
    with config.unlocked():
      config.model.widths = (4, 8, 8)
  return _throughput(args, config.model, config, image_size=32, num_classes=10,
                     batch=batch, dtype="bfloat16")


def lenet_config(args):
  """experiments/lenet.py's config on the files in --data_dir, evaluated every epoch."""
  from experiments import lenet
  c = lenet.get_config()
  with c.unlocked():
    c.data.manual_dir = args.data_dir
    c.data.tfds_data_dir = args.tfds_data_dir
    c.eval_every_epochs = 1.0
    c.progress = False
    # The host loop and input pipeline, not the GPU, bounded one step a call: the data
    # stay on the device and half an epoch runs as one compiled call.
    c.data.on_device = True
    c.steps_per_call = 234
    if args.smoke:  # a few steps and two evaluations: the code path, not the target
      c.num_train_steps, c.log_every_steps, c.steps_per_call = 40, 10, 20
      c.eval_every_steps, c.eval_every_epochs = 20, -1.0
  return c


def part_lenet_mnist(args) -> dict:
  from deeplearn_jax import data
  from deeplearn_jax.models import layers
  from deeplearn_jax.train import supervised
  config = lenet_config(args)
  t0 = time.perf_counter()
  ds = data.load(config.data)
  load_seconds = time.perf_counter() - t0
  results = supervised.run(config, args.workdir, dataset=ds).results
  steps_per_epoch = len(ds.train) // config.batch_size
  return {"data_load_seconds": load_seconds, "conv": layers.conv_kind(config.model.conv),
          "batch_size": config.batch_size, "steps_per_epoch": steps_per_epoch,
          "final_test_accuracy": results["test_accuracy"],
          "examples_per_second": results.get("examples_per_second"),
          "train_seconds": results.get("train_seconds"),
          **time_to_target(args.workdir, steps_per_epoch)}


def time_to_target(workdir: str, steps_per_epoch: int) -> dict:
  """The first evaluation at >= TARGET test accuracy in workdir's metrics.jsonl."""
  from deeplearn_jax import metrics
  rows = [r for r in metrics.read_metrics(workdir)
          if r["split"] in ("eval", "test") and "accuracy" in r]
  hit = next((r for r in rows if r["accuracy"] >= TARGET), None)
  out = {"target_accuracy": TARGET, "reached": hit is not None, "evaluations": len(rows),
         "best_accuracy": max((r["accuracy"] for r in rows), default=None),
         "time_to_target_seconds": hit["wall_seconds"] if hit else None,
         "epochs_to_target": hit["step"] / steps_per_epoch if hit else None,
         "time_includes": "compilation, training and every per-epoch evaluation "
                          "(metrics.jsonl wall_seconds); not the data loading"}
  return out


def nanogpt_config(args):
  """experiments/char_lm.py's `transformer` config (the whole-split validation every 500
  iterations), or its smoke version."""
  from experiments import char_lm
  c = char_lm.get_config("transformer,smoke" if args.smoke else "transformer")
  with c.unlocked():
    c.data.manual_dir = args.data_dir
    c.progress = False
    c.num_samples = 0
    if not args.smoke:
      c.eval_every_steps, c.checkpoint_every_steps = 250, -1  # nanoGPT's eval_interval
  return c


def part_nanogpt(args) -> dict:
  from deeplearn_jax.data import text
  from deeplearn_jax.train import language_model
  config = nanogpt_config(args)
  results = language_model.run(config, args.nanogpt_workdir,
                               text.load(config.data)).results
  return {"val_loss": results["val_loss"], "best_val_loss": results["best_val_loss"],
          **nanogpt_progress(args.nanogpt_workdir, config)}


def nanogpt_progress(workdir: str, config) -> dict:
  """Iterations reached, speed after the first logged row (compilation) and the last
  validation loss, from workdir's metrics.jsonl: also for a run stopped at its budget."""
  from deeplearn_jax import metrics
  if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    return {}
  rows = metrics.read_metrics(workdir)
  train = [r for r in rows if r["split"] == "train"]
  evals = [r for r in rows if r["split"] in ("eval", "test") and "loss" in r]
  out = {"iterations": train[-1]["step"] if train else 0,
         "planned_iterations": config.num_train_steps,
         "last_val_loss": evals[-1]["loss"] if evals else None,
         "last_val_iteration": evals[-1]["step"] if evals else None}
  if len(train) >= 2 and train[-1]["wall_seconds"] > train[0]["wall_seconds"]:
    rate = ((train[-1]["step"] - train[0]["step"])
            / (train[-1]["wall_seconds"] - train[0]["wall_seconds"]))
    out.update(iterations_per_second=rate,
               tokens_per_second=rate * config.batch_size * config.context,
               projected_seconds_all_iterations=config.num_train_steps / rate)
  return out


CHILD_PARTS = {"device": part_device, "resnet50": part_resnet50,
               "fast_cifar": part_fast_cifar, "lenet_mnist": part_lenet_mnist,
               "nanogpt": part_nanogpt}


def child_main(name: str, args, out_path: str) -> int:
  """Runs one part in this process and writes its JSON; an exception becomes its error."""
  import logging
  from deeplearn_jax.cli import setup_jax
  setup_jax(args.gpu_deterministic)
  logging.getLogger().setLevel(logging.WARNING)
  result, code = {}, 0
  try:
    result["compile_cache_entries_before"] = _cache_entries()
    result.update(CHILD_PARTS[name](args))
  except Exception as e:  # recorded in the summary; the parent goes on with the others
    traceback.print_exc()
    result["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
    code = 1
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(result, f, default=float)
  return code


# ---------------------------------------------------------------- the parent

class Deadline:
  """The overall limit, shared out to the parts."""

  def __init__(self, seconds: float):
    self.end = time.monotonic() + seconds

  def left(self) -> float:
    return self.end - time.monotonic()

  def budget(self, seconds: float) -> float:
    return min(seconds, self.left() - 2.0)  # 2 s to kill a child and write the summary


def _run_process(cmd: list[str], timeout: float, log_path: str, env=None) -> tuple[int, bool]:
  """(exit code, timed out). Output goes to log_path; on timeout the whole process group
  (the child and anything it started) is killed."""
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      return proc.wait(timeout=max(timeout, 0.1)), False
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      return -signal.SIGKILL, True


def _tail(path: str, chars: int = 1500) -> str:
  try:
    return Path(path).read_text(encoding="utf-8", errors="replace")[-chars:]
  except OSError:
    return ""


def run_child(name: str, args, deadline: Deadline, tmp: str) -> dict:
  seconds = BUDGETS[name][args.smoke]
  if name == "nanogpt" and args.nanogpt_seconds:
    seconds = args.nanogpt_seconds
  budget = deadline.budget(seconds)
  if budget < 5:
    return {"error": f"not run: the {args.limit_seconds:.0f} s limit was reached"}
  out_path, log_path = os.path.join(tmp, f"{name}.json"), os.path.join(tmp, f"{name}.log")
  child_args = {k: v for k, v in vars(args).items() if not k.startswith("_")}
  cmd = [sys.executable, str(Path(__file__).resolve()), f"--_child={name}",
         f"--_child_out={out_path}", f"--_child_args={json.dumps(child_args)}"]
  t0 = time.monotonic()
  code, timed_out = _run_process(cmd, budget, log_path)
  result = {}
  if os.path.exists(out_path):
    result = json.loads(Path(out_path).read_text(encoding="utf-8"))
  if timed_out:
    result["error"] = f"timed out after its budget of {budget:.0f} s"
  elif code != 0 and "error" not in result:
    result["error"] = f"the part's process exited with code {code}"
  if "error" in result:
    result["log_tail"] = _tail(log_path)
  result["seconds"] = time.monotonic() - t0
  return result


STATUS = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def run_pytest(phase: str, marks: str, args, deadline: Deadline, tmp: str, env) -> dict:
  budget = deadline.budget(BUDGETS[f"tests_{phase}"][args.smoke])
  if budget < 5:
    return {"error": f"not run: the {args.limit_seconds:.0f} s limit was reached"}
  paths = SMOKE_TEST_FILES[phase] if args.smoke else ACCELERATOR_TEST_FILES
  cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--tb=short",
         "-m", marks, *paths]
  log_path = os.path.join(tmp, f"pytest_{phase}.log")
  t0 = time.monotonic()
  code, timed_out = _run_process(cmd, budget, log_path, env)
  status = {}
  for line in _tail(log_path, 10 ** 7).splitlines():
    m = STATUS.match(line)
    if m:  # a teardown ERROR after PASSED overrides it
      status[m.group(1)] = m.group(2) if status.get(m.group(1)) != "ERROR" else "ERROR"
  counts = lambda *kinds: sum(1 for s in status.values() if s in kinds)
  out = {"command": " ".join(["pytest", "-m", repr(marks), *paths]),
         "passed": counts("PASSED", "XFAIL"), "failed": counts("FAILED", "ERROR", "XPASS"),
         "skipped": counts("SKIPPED"), "exit_code": code,
         "failures": [t for t, s in status.items() if s in ("FAILED", "ERROR", "XPASS")][:20],
         "seconds": time.monotonic() - t0}
  if timed_out:
    out["error"] = f"timed out after its budget of {budget:.0f} s (counts: tests finished)"
  elif code not in (0, 5):  # 5: no test selected
    out["error"] = f"pytest exited with code {code}"
  if "error" in out:
    out["log_tail"] = _tail(log_path, 3000)
  return out


def part_tests(args, deadline: Deadline, tmp: str) -> dict:
  device = run_pytest("device", DEVICE_TESTS, args, deadline, tmp, dict(os.environ))
  fake = run_pytest("cpu_fake_devices", FAKE_DEVICE_TESTS, args, deadline, tmp,
                    dict(os.environ, JAX_PLATFORMS="cpu"))
  phases = {"device": device, "cpu_fake_devices": fake}
  total = lambda key: sum(p.get(key, 0) for p in phases.values())
  return {"passed": total("passed"), "failed": total("failed"), "skipped": total("skipped"),
          "all_passed": total("failed") == 0 and total("passed") > 0
                        and not any("error" in p for p in phases.values()),
          **phases}


def shakespeare(data_dir: str) -> str:
  return os.path.join(data_dir, "tinyshakespeare", "input.txt")


def missing_mnist(data_dir: str) -> list[str]:
  folder = os.path.join(data_dir, "mnist")
  return [f for f in MNIST_FILES if not os.path.isfile(os.path.join(folder, f))]


def nvidia_smi() -> str | None:
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                          "clocks.max.sm,power.limit", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def add_comparisons(summary: dict) -> None:
  """MFU against the matmul measured in `device`, and ResNet-50 against MLPerf."""
  matmul = summary.get("device", {}).get("matmul_tflops")
  for name in ("resnet50", "fast_cifar"):
    r = summary.get(name, {})
    if "images_per_second" in r and matmul:
      r["mfu_vs_measured_matmul"] = (r["model_flops_per_image"] * r["images_per_second"]
                                     / (matmul * 1e12))
  r = summary.get("resnet50", {})
  if "images_per_second" in r:
    r["fraction_of_mlperf_per_h100"] = (
        r["images_per_second"] / REFERENCES["mlperf_resnet50_images_per_second_per_h100"])


def main_parent(args) -> dict:
  deadline = Deadline(args.limit_seconds)
  start = time.monotonic()
  summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": " ".join(["python", *sys.argv]), "smoke": args.smoke,
             "limit_seconds": args.limit_seconds}
  with tempfile.TemporaryDirectory(prefix="accelerator_check_") as tmp:
    if not args.workdir:
      args.workdir = os.path.join(tmp, "lenet_run")
    args.nanogpt_workdir = os.path.join(tmp, "nanogpt_run")
    for name in args.parts:
      print(f"[{time.monotonic() - start:5.0f} s] {name} ...", file=sys.stderr, flush=True)
      if name == "tests":
        summary[name] = part_tests(args, deadline, tmp)
      elif name == "lenet_mnist" and missing_mnist(args.data_dir):
        folder = os.path.join(os.path.abspath(args.data_dir), "mnist")
        why = (f"MNIST files missing in {folder}: {', '.join(missing_mnist(args.data_dir))}; "
               "put the four official *-ubyte.gz files there or pass --data_dir")
        print(f"  skipped: {why}", file=sys.stderr, flush=True)
        summary[name] = {"skipped": why}
      elif name == "nanogpt" and not os.path.isfile(shakespeare(args.data_dir)):
        why = f"tiny-shakespeare missing: {shakespeare(args.data_dir)}"
        print(f"  skipped: {why}", file=sys.stderr, flush=True)
        summary[name] = {"skipped": why}
      else:
        summary[name] = run_child(name, args, deadline, tmp)
        if name == "lenet_mnist" and "error" in summary[name]:
          _partial_lenet(summary[name], args.workdir)
        if name == "nanogpt" and "error" in summary[name]:  # stopped at its budget
          summary[name].update(nanogpt_progress(args.nanogpt_workdir, nanogpt_config(args)))
      if name == "device":
        summary[name]["nvidia_smi"] = nvidia_smi()
        args.matmul_tflops = summary[name].get("matmul_tflops", 0.0)
      if "error" in summary[name]:
        print(f"  error: {summary[name]['error']}", file=sys.stderr, flush=True)
  summary["references"] = REFERENCES
  add_comparisons(summary)
  summary["total_seconds"] = time.monotonic() - start
  return summary


def _partial_lenet(entry: dict, workdir: str) -> None:
  """A LeNet run cut short may still have reached the target: read its metrics.jsonl."""
  if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    return
  sys.path.insert(0, str(REPO))
  try:
    from experiments import lenet
    steps_per_epoch = 60000 // lenet.get_config().batch_size
    entry.update(time_to_target(workdir, steps_per_epoch))
  except Exception as e:  # the error already recorded is the one that matters
    entry["partial_read_error"] = f"{type(e).__name__}: {e}"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default="", help="also write the JSON summary here")
  p.add_argument("--smoke", action="store_true",
                 help="tiny models and steps on any device (CI); not a benchmark")
  p.add_argument("--data_dir", default=str((REPO / "../shared/data").resolve()),
                 help="folder with the official MNIST files in mnist/")
  p.add_argument("--tfds_data_dir", default="",
                 help="where TFDS keeps prepared data ('' = $TFDS_DATA_DIR or "
                      "~/tensorflow_datasets)")
  p.add_argument("--workdir", default="", help="LeNet's run folder (default: a temporary one)")
  p.add_argument("--limit_seconds", type=float, default=470.0,
                 help="the whole run stops within this many seconds")
  p.add_argument("--gpu_deterministic", action="store_true",
                 help="time the parts with XLA's deterministic GPU kernels (--gpu_deterministic "
                      "of the experiments); the tests turn them on on GPUs")
  p.add_argument("--nanogpt_seconds", type=float, default=0.0,
                 help="the nanogpt part's budget (default 150 s; all 5,000 iterations may "
                      "need more, with --limit_seconds raised to match)")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
  p.add_argument("--_child", default="", help=argparse.SUPPRESS)
  p.add_argument("--_child_out", default="", help=argparse.SUPPRESS)
  p.add_argument("--_child_args", default="", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.matmul_tflops = 0.0  # set from the `device` part for the throughput parts
  if args._child_args:  # a child takes the parent's settings as they were resolved
    for k, v in json.loads(args._child_args).items():
      setattr(args, k, v)
  if isinstance(args.parts, str):
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
  bad = [s for s in args.parts if s not in PARTS]
  if bad:
    p.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
  return args


def main() -> None:
  args = parse_args()
  if args._child:
    sys.exit(child_main(args._child, args, args._child_out))
  summary = main_parent(args)
  text = json.dumps(summary, indent=2, default=float)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
  print(text)


if __name__ == "__main__":
  main()
