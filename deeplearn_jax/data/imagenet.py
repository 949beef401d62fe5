"""ImageNet (ILSVRC 2012, TFDS `imagenet2012`) read per host and decoded without TensorFlow.

Rows come from `tfds.data_source(..., decoders={"image": SkipDecoding()})`: random access
to the JPEG bytes of exactly the rows this process asks for; decoding, cropping and
resizing happen here, with PIL, in grain's threads (or worker processes with
`config.data.num_workers`).

  train: Inception-style random-resized crop (area 8%-100%, aspect 3/4-4/3) to
         image_size, random horizontal flip;
  eval:  shorter side to image_size / 0.875 (256 for 224), centre crop image_size.

Both decode JPEGs at 1/2, 1/4 or 1/8 scale (PIL's `draft`, a DCT-domain reduction) when
the crop still has at least image_size pixels on each side, then resize (antialiased
bilinear) straight from that crop box, and standardise with ImageNet's per-channel
mean/std into float32 NHWC (config.data.normalize is not used for ImageNet).
config.data.image_size = 0 means 224. The 'validation' split (50,000 images) is the
test split.

Preparation (once, hours: about 150 GB of array_record files for 1.28M images): put the
two archives of https://image-net.org/download-images, ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar, in DIR/imagenet2012/ (or DIR/, or TFDS's own manual folder
<tfds_data_dir>/downloads/manual/) and pass --config.data.manual_dir=DIR (or set
$DEEPLEARN_DATA_DIR). TFDS's registered builder writes the records (same name, version
and features as TFDS's own); its archive reading, done with TensorFlow in TFDS, is
replaced by ours (tarfile, and PIL for the 22 CMYK images and the one PNG that TFDS
re-encodes as RGB JPEG). The test split (ILSVRC2012_img_test.tar, no labels) is not
prepared. The real archives were not available when this was written: preparation is
tested on small fake archives of the same layout only.
"""

import io
import logging
import math
import os
import tarfile
import unittest.mock

import ml_collections
import numpy as np
import PIL.Image

from deeplearn_jax.data import tfds_sources
from deeplearn_jax.data.pipeline import Batch
from deeplearn_jax.errors import DataError

logger = logging.getLogger(__name__)

NAME = "imagenet2012"
NUM_CLASSES = 1000
DEFAULT_IMAGE_SIZE = 224
ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "validation": "ILSVRC2012_img_val.tar"}
SPLITS = {"train": "train", "test": "validation"}  # ours -> TFDS's
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255  # RGB, of the training images
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
EVAL_CROP_FRACTION = 0.875  # 224 of 256


# ---------------------------------------------------------------------------- decoding

def _open(image) -> PIL.Image.Image:
  """A lazily decoded PIL image from JPEG (or PNG) bytes, or from a uint8 HW(C) array
  (sources that decode themselves, such as tfds' mock data)."""
  if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
    return PIL.Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1
                               else image)
  try:
    return PIL.Image.open(io.BytesIO(bytes(image)))
  except Exception as e:  # PIL.UnidentifiedImageError, or bytes() of something else
    raise DataError(f"{NAME}: cannot read an image ({type(e).__name__}: {e})") from e


def crop_resize(im: PIL.Image.Image, box: tuple[float, float, float, float],
                size: int) -> np.ndarray:
  """The `box` (x0, y0, x1, y1, in pixels of the full image) of an opened, not yet
  decoded image, resized to size x size RGB uint8. A JPEG is decoded at the smallest DCT
  scale that keeps at least `size` pixels across the box."""
  width, height = im.size
  box_w, box_h = box[2] - box[0], box[3] - box[1]
  # draft() picks the largest reduction r in (8, 4, 2, 1) with r <= full // requested;
  # it does nothing for other formats and for arrays.
  im.draft("RGB", (max(1, math.ceil(width * size / box_w)),
                   max(1, math.ceil(height * size / box_h))))
  sx, sy = width / im.size[0], height / im.size[1]  # 1 when nothing was reduced
  try:
    if im.mode != "RGB":  # grayscale, CMYK, palette
      im = im.convert("RGB")
    im = im.resize((size, size), PIL.Image.BILINEAR,
                   box=(box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy))
  except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt file
    raise DataError(f"{NAME}: cannot decode an image ({e})") from e
  return np.asarray(im)


def random_crop_box(width: int, height: int,
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
  """Inception's crop: 10 tries at a random area and aspect ratio that fits, else the
  centre crop of the whole image clamped to the aspect range (as torchvision)."""
  area = width * height
  log_ratio = np.log(CROP_ASPECT)
  for _ in range(10):
    target = area * rng.uniform(*CROP_AREA)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      x = int(rng.integers(0, width - w + 1))
      y = int(rng.integers(0, height - h + 1))
      return x, y, x + w, y + h
  ratio = width / height
  if ratio < CROP_ASPECT[0]:
    w, h = width, int(round(width / CROP_ASPECT[0]))
  elif ratio > CROP_ASPECT[1]:
    w, h = int(round(height * CROP_ASPECT[1])), height
  else:
    w, h = width, height
  x, y = (width - w) // 2, (height - h) // 2
  return x, y, x + w, y + h


def center_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
  """The part of the full image that ends up in the centre size x size crop after
  resizing the shorter side to size / 0.875 (for any size)."""
  side = min(width, height) * EVAL_CROP_FRACTION  # size pixels after the resize
  x, y = (width - side) / 2, (height - side) / 2
  return x, y, x + side, y + side


def _normalize(images: list[np.ndarray], labels: np.ndarray) -> Batch:
  x = np.stack(images).astype(np.float32)
  x -= MEAN  # in place: a batch of 128 is 77 MB of float32
  x *= 1 / STD
  return {"input": x, "label": np.asarray(labels, np.int32)}


class TrainTransform:
  """(raw rows, rng) -> batch: random-resized crop, random flip, standardisation.
  A module-level class, so that it pickles for grain's worker processes."""

  def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE):
    self.image_size = image_size

  def __call__(self, rows: Batch, rng: np.random.Generator) -> Batch:
    out = []
    for image in rows["image"]:
      im = _open(image)  # reads the header only: the size, for the crop
      x = crop_resize(im, random_crop_box(*im.size, rng), self.image_size)
      out.append(x[:, ::-1] if rng.random() < 0.5 else x)
    return _normalize(out, rows["label"])


class EvalTransform:
  """raw rows -> batch: resize the shorter side to size / 0.875, centre crop, standardise."""

  def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE):
    self.image_size = image_size

  def __call__(self, rows: Batch) -> Batch:
    out = []
    for image in rows["image"]:
      im = _open(image)
      out.append(crop_resize(im, center_crop_box(*im.size), self.image_size))
    return _normalize(out, rows["label"])


# ----------------------------------------------------------------------------- sources

class SourceSplit:
  """Random access to a TFDS data source's rows: gather(indices) reads those rows only,
  giving {'image': object array of JPEG bytes (or of uint8 arrays), 'label': int32}."""

  def __init__(self, source, batched_reads: bool = True):
    self.source = source  # tfds' array_record sources pickle (they reopen their files)
    self.batched_reads = batched_reads  # __getitems__: one read call for the whole batch

  def __len__(self) -> int:
    return len(self.source)

  def gather(self, indices: np.ndarray) -> Batch:
    keys = [int(i) for i in np.asarray(indices).reshape(-1)]
    if self.batched_reads:
      rows = self.source.__getitems__(keys)
    else:
      rows = [self.source[k] for k in keys]
    images = np.empty(len(rows), object)  # element by element: no numpy 'S' padding
    for i, row in enumerate(rows):
      images[i] = row["image"]
    return {"image": images, "label": np.array([row["label"] for row in rows], np.int32)}


def _archive_folder(data_dir: str, manual_dir: str) -> str:
  """The first folder holding both archives; a one-line DataError otherwise."""
  candidates = [os.path.join(manual_dir, NAME), manual_dir] if manual_dir else []
  candidates.append(os.path.join(data_dir, "downloads", "manual"))  # TFDS's own place
  for folder in candidates:
    present = [f for f in ARCHIVES.values() if os.path.isfile(os.path.join(folder, f))]
    if len(present) == len(ARCHIVES):
      return folder
    if present:
      missing = sorted(set(ARCHIVES.values()) - set(present))
      raise DataError(f"dataset {NAME}: {folder} has {present[0]} but not {missing[0]}; "
                      f"put both {' and '.join(ARCHIVES.values())} there")
  where = (f"{manual_dir}/{NAME}/" if manual_dir else f"DIR/{NAME}/ and pass "
           "--config.data.manual_dir=DIR (or set DEEPLEARN_DATA_DIR)")
  raise DataError(f"dataset {NAME} is not prepared in {data_dir} and its files are missing: "
                  f"put {' and '.join(ARCHIVES.values())} (from "
                  f"https://image-net.org/download-images) in {where}")


def _fixed_image(file_name: str, data: bytes, cmyk: set[str], png: set[str]) -> bytes:
  """TFDS's fixes without TensorFlow: the CMYK JPEGs and the PNG become RGB JPEGs."""
  if file_name not in cmyk and file_name not in png:
    return data
  buf = io.BytesIO()
  PIL.Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="JPEG", quality=100)
  return buf.getvalue()


def _local_builder(data_dir: str, folder: str):
  """TFDS's imagenet2012 builder, its archives read by tarfile instead of TensorFlow."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as tfds_in

  base = type(tfds.builder(NAME, data_dir=data_dir))
  cmyk, png = set(tfds_in.CMYK_IMAGES), set(tfds_in.PNG_IMAGES)

  class LocalBuilder(base, skip_registration=True):
    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._train_examples(os.path.join(folder, ARCHIVES["train"])),
              "validation": self._val_examples(os.path.join(folder, ARCHIVES["validation"]))}

    def _train_examples(self, path):
      # One tar per class (n01440764.tar, ...), each holding that class's JPEGs.
      with tarfile.open(path, "r|") as outer:
        for member in outer:
          if not member.isfile() or not member.name.endswith(".tar"):
            continue
          label = os.path.basename(member.name)[:-4]
          with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
            for m in inner:
              if m.isfile():
                name = os.path.basename(m.name)
                image = _fixed_image(name, inner.extractfile(m).read(), cmyk, png)
                yield name, {"file_name": name, "image": image, "label": label}

    def _val_examples(self, path):
      # validation_labels.txt lists the labels in the sorted order of the file names.
      labels_file = tfds.core.tfds_path(f"datasets/{NAME}/validation_labels.txt")
      labels = labels_file.read_text().strip().splitlines()
      with tarfile.open(path, "r:") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        names = sorted(os.path.basename(m.name) for m in members)
        if len(names) > len(labels):
          raise DataError(f"dataset {NAME}: {path} has {len(names)} images, more than the "
                          f"{len(labels)} validation labels")
        label_of = dict(zip(names, labels))
        for m in members:
          name = os.path.basename(m.name)
          yield name, {"file_name": name, "image": tar.extractfile(m).read(),
                       "label": label_of[name]}

  LocalBuilder.name = NAME
  return LocalBuilder(data_dir=data_dir, file_format="array_record")


def prepare(data_dir: str, manual_dir: str) -> None:
  """Writes TFDS's imagenet2012 (array_record) in data_dir from the two archives."""
  folder = _archive_folder(data_dir, manual_dir)
  logger.info("preparing %s in %s from the archives in %s (hours)", NAME, data_dir, folder)
  try:
    _local_builder(data_dir, folder).download_and_prepare()
  except (tarfile.TarError, EOFError) as e:
    raise DataError(f"dataset {NAME}: corrupt archive in {folder} ({e})") from e


def _data_source(split: str, data_dir: str) -> SourceSplit:
  import tensorflow_datasets as tfds

  source = tfds.data_source(NAME, split=split, data_dir=data_dir, download=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
  if not isinstance(getattr(source, "data_source", None), unittest.mock.Mock):
    return SourceSplit(source)
  # tfds.testing.mock_data re-encodes its random images with TensorFlow to skip decoding,
  # and its __getitems__ is broken: take the images decoded (uint8), one row at a time.
  return SourceSplit(tfds.data_source(NAME, split=split, data_dir=data_dir, download=False),
                     batched_reads=False)


def load_split(split: str, data_dir: str, manual_dir: str) -> SourceSplit:
  """Our split name ('train' or 'test') -> random access to its rows, preparing once."""
  try:
    return _data_source(SPLITS[split], data_dir)
  except Exception:  # not prepared (TFDS raises several types for that)
    pass
  prepare(data_dir, manual_dir)
  return _data_source(SPLITS[split], data_dir)


def load(config: ml_collections.ConfigDict):
  """(train split, test split, eval transform, train transform) for `config`
  (deeplearn_jax.data.load assembles the Dataset)."""
  data_dir = config.get("tfds_data_dir") or tfds_sources.default_data_dir()
  manual = tfds_sources.manual_dir_from(config.get("manual_dir", ""))
  size = int(config.get("image_size", 0)) or DEFAULT_IMAGE_SIZE
  train = load_split("train", data_dir, manual)
  test = load_split("test", data_dir, manual)
  return train, test, EvalTransform(size), TrainTransform(size)
