"""Readers for the official distribution files, with validation.

Used to prepare TFDS datasets offline. Every check names the file and what was
expected, so a user can fix a bad download without reading code.
"""

import gzip
import os
import tarfile

import numpy as np

from deeplearn_jax.errors import DataError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_MEMBERS = {
    "train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["cifar-10-batches-bin/test_batch.bin"],
}
_CIFAR_RECORD = 1 + 32 * 32 * 3


def _where(path: str) -> str:
  return f"put the official file at {path}"


def _read_gz(path: str) -> bytes:
  if not os.path.exists(path):
    raise DataError(f"missing data file {path}: {_where(path)}")
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise DataError(f"corrupt data file {path} ({e}): {_where(path)}") from e


def read_idx(path: str, magic: int, count: int, item_shape: tuple[int, ...]) -> np.ndarray:
  """Reads an IDX file (the MNIST format), checking magic number, count and size."""
  raw = _read_gz(path)
  header = 8 + 4 * len(item_shape)
  if len(raw) < header:
    raise DataError(f"corrupt data file {path}: only {len(raw)} bytes: {_where(path)}")
  dims = np.frombuffer(raw, ">i4", count=1 + 1 + len(item_shape))
  if dims[0] != magic:
    raise DataError(f"corrupt data file {path}: magic number {dims[0]} instead of {magic} "
                    f"(is it the right file?): {_where(path)}")
  if dims[1] != count or tuple(dims[2:]) != item_shape:
    raise DataError(f"unexpected data file {path}: holds {dims[1]} items of shape "
                    f"{tuple(dims[2:])}, expected {count} of {item_shape}")
  expected = header + count * int(np.prod(item_shape, dtype=np.int64))
  if len(raw) != expected:
    raise DataError(f"corrupt data file {path}: {len(raw)} bytes after decompression, "
                    f"expected {expected} (truncated?): {_where(path)}")
  return np.frombuffer(raw, np.uint8, offset=header).reshape((count, *item_shape))


def read_mnist(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """MNIST or Fashion-MNIST split from the four official `*-ubyte.gz` files."""
  images_file, labels_file, count = MNIST_FILES[split]
  images = read_idx(os.path.join(folder, images_file), 2051, count, (28, 28))
  labels = read_idx(os.path.join(folder, labels_file), 2049, count, ())
  if labels.max() > 9:
    raise DataError(f"corrupt data file {os.path.join(folder, labels_file)}: label "
                    f"{labels.max()} out of range 0..9")
  return images[..., None], labels


def read_cifar10(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """CIFAR-10 split from the official binary archive `cifar-10-binary.tar.gz`."""
  path = os.path.join(folder, CIFAR10_ARCHIVE)
  if not os.path.exists(path):
    raise DataError(f"missing data file {path}: {_where(path)}")
  chunks = []
  try:
    with tarfile.open(path, "r:gz") as tar:
      for member in CIFAR10_MEMBERS[split]:
        try:
          f = tar.extractfile(member)
        except KeyError:
          f = None
        if f is None:
          raise DataError(f"corrupt data file {path}: it has no {member}: {_where(path)}")
        raw = f.read()
        if len(raw) != 10000 * _CIFAR_RECORD:
          raise DataError(f"corrupt data file {path}: {member} has {len(raw)} bytes, "
                          f"expected {10000 * _CIFAR_RECORD}: {_where(path)}")
        chunks.append(np.frombuffer(raw, np.uint8).reshape(10000, _CIFAR_RECORD))
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DataError(f"corrupt data file {path} ({e}): {_where(path)}") from e
  records = np.concatenate(chunks)
  labels = records[:, 0]
  if labels.max() > 9:
    raise DataError(f"corrupt data file {path}: label {labels.max()} out of range 0..9")
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> HWC
  return np.ascontiguousarray(images), labels
