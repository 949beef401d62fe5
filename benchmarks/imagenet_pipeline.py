r"""ImageNet input pipeline on this CPU: images/s of the train and eval transforms at 224.

Command (from the repository root; minutes):

    python benchmarks/imagenet_pipeline.py

The images are synthetic JPEGs of ImageNet's typical sizes (500x375 the most, then
500x333, 375x500, 500x500, 640x480, 1024x768), quality 90, with smooth random content
(four octaves of bicubically upsampled noise plus pixel noise) so that they compress
like photos, about 100 KB each: --distinct of them, repeated, in an in-memory split of
JPEG bytes (what deeplearn_jax.data.imagenet reads from TFDS), so no disk is timed.

For each transform (train: random-resized crop + flip; eval: resize 256 + centre crop
224; both decode with PIL's draft and standardise to float32) and each number of grain
worker processes (--workers, 0 = threads only, the pipeline's num_threads=2 in each
process), it builds the same pipeline as training and evaluation
(`data.train_batches` / `data.eval_batches`, batch 128), skips --warmup batches (which
include starting the workers) and reports images/s over the next --steps batches.
It also times the bare transforms in this process, one thread, with and without
`draft` (the decode at reduced scale), in images per CPU second (best of 3), on the
same mix of sizes and on 1024x768 images only.

The machine is usually shared (the load average is recorded): the figures are lower
bounds. Results: JSON printed and written to --out
(default benchmarks/results/imagenet_pipeline.json). Quick check of the code path:

    python benchmarks/imagenet_pipeline.py --steps 1 --warmup 1 --batch 16 --distinct 16 \
        --workers 0 1 --out /tmp/imagenet_check.json
"""

import argparse
import datetime
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
from PIL import JpegImagePlugin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deeplearn_jax import data  # noqa: E402
from deeplearn_jax.data import imagenet  # noqa: E402

# (width, height) -> share of the images, roughly ImageNet's mix.
SIZES = {(500, 375): 0.45, (500, 333): 0.2, (375, 500): 0.15, (500, 500): 0.08,
         (640, 480): 0.08, (1024, 768): 0.04}


def synthetic_jpeg(width: int, height: int, rng: np.random.Generator) -> bytes:
  """Smooth random content at several scales plus fine noise, quality 90: ~100 KB
  at 500x375, like an ImageNet photo."""
  x = np.full((height, width, 3), 128.0, np.float32)
  for factor, weight in ((2, 0.3), (6, 0.3), (24, 0.4), (96, 0.4)):
    small = rng.integers(0, 256, (max(2, height // factor), max(2, width // factor), 3),
                         dtype=np.uint8)
    up = PIL.Image.fromarray(small).resize((width, height), PIL.Image.BICUBIC)
    x += weight * (np.asarray(up, np.float32) - 128)
  x += rng.normal(0, 6, x.shape)
  buf = io.BytesIO()
  PIL.Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
  return buf.getvalue()


def object_array(blobs: list[bytes]) -> np.ndarray:
  out = np.empty(len(blobs), object)  # not numpy bytes ('S', padded to the longest)
  out[:] = blobs
  return out


def synthetic_split(distinct: int, total: int, seed: int = 0) -> data.ArraySplit:
  rng = np.random.default_rng(seed)
  sizes = list(SIZES)
  picks = rng.choice(len(sizes), distinct, p=list(SIZES.values()))
  blobs = [synthetic_jpeg(*sizes[p], rng) for p in picks]
  return data.ArraySplit({"image": object_array([blobs[i % distinct] for i in range(total)]),
                          "label": rng.integers(0, 1000, total).astype(np.int32)})


def pipeline_rate(kind: str, split, batch: int, warmup: int, steps: int, workers: int,
                  size: int) -> float:
  """images/s over `steps` batches after `warmup` batches."""
  train, evaluate = imagenet.TrainTransform(size), imagenet.EvalTransform(size)
  if kind == "train":
    it = data.train_batches(split, seed=0, global_batch=batch, start_step=0,
                            end_step=warmup + steps, transform=evaluate,
                            train_transform=train, num_workers=workers)
  else:
    it = data.eval_batches(split, global_batch=batch, transform=evaluate, num_workers=workers)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(steps):
    b = next(it)
    assert b["input"].shape == (batch, size, size, 3) and b["input"].dtype == np.float32
  rate = steps * batch / (time.perf_counter() - start)
  it.close()
  return rate


def transform_rate(kind: str, rows, size: int) -> float:
  """Images per CPU second of the bare transform in this thread (CPU time rather than
  wall time: less sensitive to other processes on a shared machine)."""
  fn = imagenet.TrainTransform(size) if kind == "train" else imagenet.EvalTransform(size)
  rng = np.random.default_rng(0)
  start = time.thread_time()
  fn(rows, rng) if kind == "train" else fn(rows)
  return len(rows["label"]) / (time.thread_time() - start)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--warmup", type=int, default=4, help="batches skipped before timing")
  p.add_argument("--steps", type=int, default=10, help="batches timed")
  p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--distinct", type=int, default=256, help="distinct synthetic JPEGs")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--out", default=str(REPO / "benchmarks/results/imagenet_pipeline.json"))
  args = p.parse_args()

  total = args.batch * (args.warmup + args.steps)
  split = synthetic_split(args.distinct, total)
  jpeg_kb = float(np.mean([len(b) for b in split.arrays["image"][:args.distinct]]) / 1000)
  load_before = os.getloadavg()

  pipeline = {}
  for kind in ("train", "eval"):
    for workers in args.workers:
      rate = pipeline_rate(kind, split, args.batch, args.warmup, args.steps, workers,
                           args.image_size)
      pipeline[f"{kind}_workers{workers}"] = round(rate, 1)
      print(f"{kind:5s} workers={workers}: {rate:7.1f} images/s", flush=True)

  # Bare transforms with and without draft (full-size decoding), alternated: best of 3;
  # on the mix above and on large (1024x768) images only.
  rng = np.random.default_rng(1)
  row_sets = {"mix": split.gather(np.arange(min(args.distinct, args.batch))),
              "1024x768": {"image": object_array([synthetic_jpeg(1024, 768, rng)
                                                  for _ in range(32)]),
                           "label": np.zeros(32, np.int32)}}
  draft = JpegImagePlugin.JpegImageFile.draft
  variants = {"draft": draft, "no_draft": lambda self, mode, size: None}
  bare = {f"{kind}_{rows}_{v}": 0.0 for rows in row_sets for kind in ("train", "eval")
          for v in variants}
  try:
    for _ in range(3):
      for v, fn in variants.items():
        JpegImagePlugin.JpegImageFile.draft = fn
        for rows, batch in row_sets.items():
          for kind in ("train", "eval"):
            key = f"{kind}_{rows}_{v}"
            bare[key] = round(max(bare[key], transform_rate(kind, batch, args.image_size)), 1)
  finally:
    JpegImagePlugin.JpegImageFile.draft = draft

  result = {
      "benchmark": "imagenet_pipeline",
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "images_per_s": pipeline,
      "bare_transform_images_per_cpu_s_one_thread": bare,
      "setup": {
          "batch": args.batch, "warmup_batches": args.warmup, "timed_batches": args.steps,
          "image_size": args.image_size, "num_threads_per_process": 2,
          "distinct_jpegs": args.distinct, "mean_jpeg_kb": round(jpeg_kb, 1),
          "jpeg_sizes": {f"{w}x{h}": s for (w, h), s in SIZES.items()}, "quality": 90,
      },
      "machine": {
          "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "processor": platform.processor(), "python": platform.python_version(),
          "pillow": PIL.__version__,
          "load_average_before": [round(x, 2) for x in load_before],
          "load_average_after": [round(x, 2) for x in os.getloadavg()],
      },
      "note": "shared CPU: lower bounds",
  }
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
