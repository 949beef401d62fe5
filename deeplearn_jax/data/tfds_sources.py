"""TFDS datasets read through `tfds.data_source` (array_record), never TensorFlow.

When a dataset is not prepared, it is prepared from the official files in a local
folder (`config.data.manual_dir` or $DEEPLEARN_DATA_DIR) by TFDS's own builder,
fed by our validated readers. Without local files TFDS's own download is tried.
"""

import logging
import os

import numpy as np

from deeplearn_jax.data import official
from deeplearn_jax.errors import DataError

logger = logging.getLogger(__name__)

# name -> (folder under manual_dir, reader of the official files, expected files)
LOCAL_FILES = {
    "mnist": ("mnist", official.read_mnist, "the four MNIST *-ubyte.gz files"),
    "fashion_mnist": ("fashion_mnist", official.read_mnist,
                      "the four Fashion-MNIST *-ubyte.gz files"),
    "cifar10": ("cifar10", official.read_cifar10, official.CIFAR10_ARCHIVE),
}


def default_data_dir() -> str:
  """Where TFDS keeps prepared data: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def manual_dir_from(config_value: str) -> str:
  """The folder of official files: config.data.manual_dir, else $DEEPLEARN_DATA_DIR."""
  return config_value or os.environ.get("DEEPLEARN_DATA_DIR", "")


def _local_builder(name: str, data_dir: str, folder: str):
  """TFDS's registered builder for `name`, with its splits read from local files."""
  import PIL.Image
  import tensorflow_datasets as tfds

  base = type(tfds.builder(name, data_dir=data_dir))
  reader = LOCAL_FILES[name][1]

  class LocalBuilder(base, skip_registration=True):
    # Same name and version, so the result is exactly what TFDS would prepare.
    def _split_generators(self, dl_manager):
      del dl_manager
      # Read (and validate) both splits before writing anything.
      splits = {s: reader(folder, s) for s in ("train", "test")}
      return {s: self._generate_examples(s, *arrays) for s, arrays in splits.items()}

    def _generate_examples(self, split, images, labels):
      # PIL images: TFDS encodes them without TensorFlow (numpy images need TF).
      has_id = "id" in self.info.features
      for i, (image, label) in enumerate(zip(images, labels)):
        ex = {"image": PIL.Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image),
              "label": int(label)}
        if has_id:
          ex["id"] = f"{split}_{i:05d}"
        yield i, ex

  LocalBuilder.name = name
  return LocalBuilder(data_dir=data_dir, file_format="array_record")


def prepare(name: str, data_dir: str, manual_dir: str) -> None:
  """Prepares `name` in `data_dir`, from local official files when there are any."""
  import tensorflow_datasets as tfds

  if name in LOCAL_FILES and manual_dir:
    folder = os.path.join(manual_dir, LOCAL_FILES[name][0])
    if not os.path.isdir(folder):
      raise DataError(f"dataset {name}: folder {folder} does not exist; put "
                      f"{LOCAL_FILES[name][2]} there")
    logger.info("preparing %s in %s from the official files in %s", name, data_dir, folder)
    _local_builder(name, data_dir, folder).download_and_prepare()
    return
  try:
    tfds.builder(name, data_dir=data_dir, file_format="array_record").download_and_prepare()
  except Exception as e:  # TFDS raises many kinds here; all mean "no data".
    hint = ""
    if name in LOCAL_FILES:
      hint = (f"; without internet, put {LOCAL_FILES[name][2]} in DIR/{LOCAL_FILES[name][0]}/ "
              "and pass --config.data.manual_dir=DIR (or set DEEPLEARN_DATA_DIR)")
    msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise DataError(f"dataset {name} is not prepared in {data_dir} and could not be "
                    f"downloaded ({msg}){hint}") from e


def load_split(name: str, split: str, data_dir: str, manual_dir: str):
  """Returns TFDS's random-access data source for one split, preparing it if needed."""
  import tensorflow_datasets as tfds

  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"unknown dataset {name!r}") from e
  except Exception:  # not prepared (TFDS raises several types for that)
    pass
  prepare(name, data_dir, manual_dir)
  return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def read_all(source, keys=("image", "label")) -> dict[str, np.ndarray]:
  """Decodes a whole (small) split into memory: one pass, then pure numpy indexing. The
  decoded arrays of a prepared split are kept beside its records (`decoded-<split>.npz`),
  so that later loads skip decoding (MNIST's 70,000 PNGs: about 16 s here)."""
  cache = _decoded_path(source)
  if cache and os.path.isfile(cache):
    try:
      with np.load(cache) as z:
        arrays = {k: z[k] for k in keys}
      if all(len(a) == len(source) for a in arrays.values()):
        return arrays
    except Exception as e:  # a damaged or older file: decoded again and rewritten
      logger.warning("ignoring %s (%s)", cache, str(e).splitlines()[0] if str(e) else e)
  indices = list(range(len(source)))
  try:  # one batched read: MNIST loads in 16 s instead of 38 s
    records = source.__getitems__(indices)
  except TypeError:  # under tfds.testing.mock_data the batched read has the wrong signature
    records = [source[i] for i in indices]
  arrays = {k: np.stack([np.asarray(r[k]) for r in records]) for k in keys}
  if cache:
    tmp = f"{cache}.tmp{os.getpid()}.npz"
    try:  # written whole, then renamed into place: never half a file
      np.savez(tmp, **arrays)
      os.replace(tmp, cache)
    except OSError as e:  # a read-only data folder: decode every time
      logger.info("cannot keep decoded arrays in %s (%s)", cache, e)
      if os.path.exists(tmp):
        os.remove(tmp)
  return arrays


def _decoded_path(source) -> str | None:
  """Where read_all keeps a split's decoded arrays: beside its array_record files (so
  they go with the prepared data), or None for a source that has none (mock data)."""
  info = getattr(source, "dataset_info", None)
  folder, split = getattr(info, "data_dir", None), getattr(source, "split", None)
  if not (isinstance(folder, str) and isinstance(split, str) and os.path.isdir(folder)):
    return None
  records = f"{info.name}-{split}.array_record"
  if not any(f.startswith(records) for f in os.listdir(folder)):
    return None
  return os.path.join(folder, f"decoded-{split}.npz")
