"""Datasets by name -> in-memory splits -> grain pipelines of per-host numpy batches.

    ds = data.load(config.data)
    it = pipeline.train_batches(ds.train, ..., transform=ds.transform)

Every batch is a dict with 'input' (float32) and 'label' (int32); eval batches add 'mask'.
"""

import dataclasses
from typing import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplearn_jax.data import augment as augment_lib
from deeplearn_jax.data import embedded, imagenet, spoken_digit, tfds_sources
from deeplearn_jax.data.pipeline import (ArraySplit, Batch, RandomTransform, Split, eval_batches,
                                        train_batches)
from deeplearn_jax.errors import DataError

NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10,  # through TFDS
               "imagenet2012": 1000,                             # TFDS, read per batch
               "digits": 10, "xor": 2, "and": 2, "or": 2,        # embedded
               "mock_images": 10,
               "spoken_digit": 10}                               # WAVs -> log-mel frames
TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10")
NAMES = tuple(NUM_CLASSES)


@dataclasses.dataclass
class Dataset:
  """A dataset's splits in memory (or on disk, ImageNet), its classes and transforms."""
  name: str
  train: Split
  test: Split
  num_classes: int
  transform: Callable[[Batch], Batch]  # raw rows -> model-ready float32 batch
  # Training rows only: (raw rows, rng) -> batch, e.g. random crops (None: transform).
  train_transform: RandomTransform | None = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    return self.transform(self.train.gather(np.arange(1)))["input"].shape[1:]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 NHWC images to size x size (done once, in memory)."""
  if size <= 0 or images.shape[1:3] == (size, size):
    return images
  import PIL.Image
  out = [np.asarray(PIL.Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im)
                    .resize((size, size), PIL.Image.BILINEAR)) for im in images]
  return np.stack(out).reshape(len(images), size, size, images.shape[-1])


def _make_transform(kind: str, train_inputs: np.ndarray) -> Callable[[Batch], Batch]:
  """uint8 images -> float32 in [0, 1] ('unit'), in {0, 1} ('binarize') or standardised
  per channel."""
  is_image = train_inputs.dtype == np.uint8
  if kind not in ("unit", "standardize", "binarize", "none"):
    raise DataError("config.data.normalize must be unit, standardize, binarize or none, "
                    f"got {kind!r}")
  scale = 1.0 / 255.0 if is_image and kind != "none" else 1.0
  mean, std = np.float32(0.0), np.float32(1.0)
  if kind == "standardize":
    x = train_inputs.astype(np.float32) * scale
    axes = tuple(range(x.ndim - 1))
    mean, std = x.mean(axes).astype(np.float32), (x.std(axes) + 1e-6).astype(np.float32)

  return Normalize(scale, mean, std, binarize=kind == "binarize")


class Normalize:
  """Raw rows -> float32 inputs: (x * scale [> 1/2 when binarizing] - mean) / std. A
  class, not a closure, so that grain worker processes can pickle it. The same passes
  run on the host (`__call__`, numpy) or inside a compiled step (`on_device`, for data
  kept on the accelerator: config.data.on_device), with the same float32 results but
  for standardizing, which XLA on a CPU divides as x * (1 / std): 1 ulp apart at times."""

  def __init__(self, scale: float, mean, std, binarize: bool):
    scale = np.float32(scale)
    # The passes that are not identities, decided once: on a GPU the host's conversion
    # of each batch can cost more than the step itself. Binarizing is a deterministic
    # threshold at 1/2, the common binarisation of MNIST for RBMs (the other one samples
    # each pixel with its intensity as probability).
    self.passes = [(name, value) for name, value, needed in (
        ("multiply", scale, scale != 1), ("greater", np.float32(0.5), binarize),
        ("subtract", mean, bool(np.any(mean != 0))), ("divide", std, bool(np.any(std != 1))))
        if needed]

  def __call__(self, batch: Batch) -> Batch:
    x = batch["input"].astype(np.float32)
    for name, value in self.passes:
      getattr(np, name)(x, value, out=x)  # in place on the one new array
    return {"input": x, "label": batch["label"].astype(np.int32)}

  def on_device(self, batch: Batch) -> Batch:
    x = batch["input"].astype(jnp.float32)
    for name, value in self.passes:
      x = getattr(jnp, name)(x, value).astype(jnp.float32)
    return {"input": x, "label": batch["label"].astype(jnp.int32)}


def load(config: ml_collections.ConfigDict) -> Dataset:
  """Loads `config.name`'s train and test splits into memory."""
  name = config.name
  if name not in NAMES:
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
  if name == "imagenet2012":  # JPEGs read and decoded batch by batch, never all in memory
    train, test, transform, train_transform = imagenet.load(config)
    return Dataset(name, train, test, NUM_CLASSES[name], transform, train_transform)
  if name == "spoken_digit":  # sequences of audio features with their lengths
    return spoken_digit.load(config)
  if name not in TFDS_NAMES:
    splits = (embedded.digits() if name == "digits" else embedded.mock_images()
              if name == "mock_images" else embedded.truth_table(name))
  else:
    data_dir = config.get("tfds_data_dir") or tfds_sources.default_data_dir()
    manual = tfds_sources.manual_dir_from(config.get("manual_dir", ""))
    splits = {}
    for split in ("train", "test"):
      raw = tfds_sources.read_all(tfds_sources.load_split(name, split, data_dir, manual))
      splits[split] = {"input": raw["image"], "label": raw["label"].astype(np.int32)}
  size = int(config.get("image_size", 0))
  for s in splits.values():
    if s["input"].ndim == 4:
      s["input"] = _resize(s["input"], size)
  transform = _make_transform(config.get("normalize", "unit"), splits["train"]["input"])
  augment = augment_lib.make(config.get("augment", "none"), int(config.get("augment_pad", 0)))
  return Dataset(name, ArraySplit(splits["train"]), ArraySplit(splits["test"]), NUM_CLASSES[name],
                 transform, None if augment is None else AugmentThen(augment, transform))


class AugmentThen:
  """train_transform: random augmentation of the raw rows, then the usual transform."""

  def __init__(self, augment: RandomTransform, transform: Callable[[Batch], Batch]):
    self.augment, self.transform = augment, transform

  def __call__(self, rows: Batch, rng: np.random.Generator) -> Batch:
    return self.transform(self.augment(rows, rng))


def from_arrays(name: str, train: Batch, test: Batch, num_classes: int) -> Dataset:
  """A dataset of arrays computed in memory (e.g. a trained layer's features), fed to
  the model as they are."""
  return Dataset(name, ArraySplit(train), ArraySplit(test), num_classes,
                 _make_transform("none", train["input"]))


__all__ = ["Dataset", "load", "from_arrays", "train_batches", "eval_batches", "ArraySplit", "NAMES"]
