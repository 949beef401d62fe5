"""Data: official-file readers and their errors, TFDS preparation, deterministic pipelines."""

import glob
import gzip
import io
import os
import tarfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from deeplearn_jax import data
from deeplearn_jax.data import official, tfds_sources
from deeplearn_jax.errors import DataError


def _write_idx(path, magic, dims, payload: bytes):
  header = np.array([magic, *dims], ">i4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + payload)


def _fake_mnist(folder, n_train=60000, n_test=10000):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, n in (("train", n_train), ("test", n_test)):
    images_file, labels_file, _ = official.MNIST_FILES[split]
    _write_idx(os.path.join(folder, images_file), 2051, (n, 28, 28),
               rng.integers(0, 255, n * 784, dtype=np.uint8).tobytes())
    _write_idx(os.path.join(folder, labels_file), 2049, (n,),
               rng.integers(0, 10, n, dtype=np.uint8).tobytes())


def test_idx_reader_rejects_bad_files(tmp_path):
  _fake_mnist(tmp_path, n_test=10000)
  images, labels = official.read_mnist(str(tmp_path), "test")
  assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,)

  path = tmp_path / "t10k-images-idx3-ubyte.gz"
  raw = gzip.open(path).read()
  with gzip.open(path, "wb") as f:  # truncated payload
    f.write(raw[:-100])
  with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*truncated"):
    official.read_mnist(str(tmp_path), "test")

  path.write_bytes(b"this is not gzip")
  with pytest.raises(DataError, match="corrupt data file .*t10k-images"):
    official.read_mnist(str(tmp_path), "test")

  _write_idx(path, 1234, (10000, 28, 28), bytes(10000 * 784))
  with pytest.raises(DataError, match="magic number 1234"):
    official.read_mnist(str(tmp_path), "test")

  path.unlink()
  with pytest.raises(DataError, match="missing data file .*t10k-images-idx3-ubyte.gz"):
    official.read_mnist(str(tmp_path), "test")


def test_cifar_reader_rejects_short_member(tmp_path):
  archive = tmp_path / official.CIFAR10_ARCHIVE
  with tarfile.open(archive, "w:gz") as tar:
    blob = bytes(3073 * 10)  # 10 records instead of 10,000
    info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))
  with pytest.raises(DataError, match="test_batch.bin has 30730 bytes"):
    official.read_cifar10(str(tmp_path), "test")
  with pytest.raises(DataError, match="has no cifar-10-batches-bin/data_batch_1.bin"):
    official.read_cifar10(str(tmp_path), "train")


@pytest.mark.slow
@pytest.mark.slow  # 70,000 PNG encodes and decodes: tens of seconds
@pytest.mark.xdist_group("real_mnist")  # the accelerator check's LeNet test reuses it
def test_prepare_mnist_from_official_files(shared_data, tfds_dir):
  """The real files -> TFDS array_record -> tfds.data_source, without TensorFlow."""
  ds = data.load(ml_collections.ConfigDict(dict(name="mnist", manual_dir=shared_data,
                                                tfds_data_dir=tfds_dir)))
  assert len(ds.train) == 60000 and len(ds.test) == 10000 and ds.num_classes == 10
  images, labels = official.read_mnist(os.path.join(shared_data, "mnist"), "test")
  # TFDS shuffles records on write: compare the multisets via sorted fingerprints.
  ours = ds.test.arrays
  assert np.array_equal(np.sort(ours["label"]), np.sort(labels))
  assert np.isclose(ours["input"].astype(np.float64).sum(), images.astype(np.float64).sum())
  assert np.array_equal(np.bincount(ours["label"]), np.bincount(labels))
  # The decoded arrays are kept beside the records: a second load reads them, and a
  # damaged file is decoded again (and rewritten), never trusted.
  kept = glob.glob(os.path.join(tfds_dir, "mnist", "*", "decoded-test.npz"))
  assert len(kept) == 1
  with open(kept[0], "r+b") as f:
    f.truncate(1000)
  again = data.load(ml_collections.ConfigDict(dict(name="mnist", manual_dir=shared_data,
                                                   tfds_data_dir=tfds_dir)))
  for split in ("train", "test"):
    for key in ("input", "label"):
      assert np.array_equal(getattr(again, split).arrays[key], getattr(ds, split).arrays[key])
  assert os.path.getsize(kept[0]) > 7_000_000


def test_missing_local_files_name_the_folder(tmp_path):
  cfg = ml_collections.ConfigDict(dict(name="fashion_mnist", manual_dir=str(tmp_path),
                                       tfds_data_dir=str(tmp_path / "tfds")))
  with pytest.raises(DataError, match="fashion_mnist.*does not exist"):
    data.load(cfg)
  _fake_mnist(tmp_path / "fashion_mnist")
  os.remove(tmp_path / "fashion_mnist" / "train-labels-idx1-ubyte.gz")
  with pytest.raises(DataError, match="missing data file .*train-labels-idx1-ubyte.gz"):
    data.load(cfg)
  assert not (tmp_path / "tfds" / "fashion_mnist").exists() or not any(
      (tmp_path / "tfds" / "fashion_mnist").glob("*/dataset_info.json"))


def test_unknown_dataset():
  with pytest.raises(DataError, match="unknown dataset 'nope'"):
    data.load(ml_collections.ConfigDict(dict(name="nope")))


def test_tfds_mock_data_goes_through_the_same_path(tmp_path):
  with tfds.testing.mock_data(num_examples=48):
    ds = data.load(ml_collections.ConfigDict(dict(name="cifar10", tfds_data_dir=str(tmp_path))))
  assert len(ds.train) == 48 and ds.input_shape == (32, 32, 3)
  batch = ds.transform(ds.train.gather(np.arange(4)))
  assert batch["input"].dtype == np.float32 and 0.0 <= batch["input"].min() <= 1.0


def test_digits_split_is_fixed_and_disjoint():
  a = data.load(ml_collections.ConfigDict(dict(name="digits")))
  b = data.load(ml_collections.ConfigDict(dict(name="digits", image_size=28)))
  assert len(a.train) + len(a.test) == 1797 and len(a.test) == 360
  assert a.input_shape == (8, 8, 1) and b.input_shape == (28, 28, 1)
  assert np.array_equal(a.test.arrays["label"], b.test.arrays["label"])
  train_rows = {r.tobytes() for r in a.train.arrays["input"]}
  overlap = sum(r.tobytes() in train_rows for r in a.test.arrays["input"])
  assert overlap < 5  # digits has a few duplicated images, nothing more


def _labels(batches):
  return [b["label"].copy() for b in batches]


def test_train_batches_are_a_function_of_seed_and_step():
  split = data.ArraySplit({"input": np.arange(100, dtype=np.float32)[:, None],
                           "label": np.arange(100, dtype=np.int32)})
  ident = lambda b: dict(b)
  full = _labels(data.train_batches(split, seed=3, global_batch=10, start_step=0,
                                    end_step=25, transform=ident))
  tail = _labels(data.train_batches(split, seed=3, global_batch=10, start_step=13,
                                    end_step=25, transform=ident))
  assert len(full) == 25 and all(np.array_equal(a, b) for a, b in zip(full[13:], tail))
  # Each epoch (10 steps) is a permutation, and epochs are shuffled differently.
  epoch0, epoch1 = np.concatenate(full[:10]), np.concatenate(full[10:20])
  assert sorted(epoch0) == list(range(100)) and sorted(epoch1) == list(range(100))
  assert not np.array_equal(epoch0, epoch1)
  other = _labels(data.train_batches(split, seed=4, global_batch=10, start_step=0,
                                     end_step=1, transform=ident))
  assert not np.array_equal(other[0], full[0])


def test_eval_batches_cover_every_example_once():
  split = data.ArraySplit({"input": np.zeros((23, 1), np.float32),
                           "label": np.arange(23, dtype=np.int32)})
  batches = list(data.eval_batches(split, global_batch=8, transform=lambda b: dict(b)))
  assert len(batches) == 3
  seen = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  assert sorted(seen) == list(range(23))


@pytest.mark.slow  # reading the 162 MB archive, then 6,000 PNG encodes and decodes
def test_prepare_cifar10_from_the_official_archive(shared_data, tmp_path, monkeypatch):
  folder = os.path.join(shared_data, "cifar10")
  if not os.path.isfile(os.path.join(folder, official.CIFAR10_ARCHIVE)):
    pytest.skip(f"{os.path.join(folder, official.CIFAR10_ARCHIVE)} not found")
  # The whole archive is read and validated; TFDS then prepares every 10th image (all
  # 60,000 took a minute of CI, TFDS's PNG encoding and decoding, not our code).
  full = {split: official.read_cifar10(folder, split) for split in ("train", "test")}
  assert [len(full[s][0]) for s in ("train", "test")] == [50000, 10000]
  tenth = {split: tuple(a[::10] for a in arrays) for split, arrays in full.items()}

  def every_tenth(path, split):  # the builder's reader, given the folder read above
    assert os.path.samefile(path, folder)
    return tenth[split]

  entry = tfds_sources.LOCAL_FILES["cifar10"]
  monkeypatch.setitem(tfds_sources.LOCAL_FILES, "cifar10", (entry[0], every_tenth, entry[2]))
  ds = data.load(ml_collections.ConfigDict(dict(name="cifar10", manual_dir=shared_data,
                                                tfds_data_dir=str(tmp_path / "tfds"))))
  assert len(ds.train) == 5000 and len(ds.test) == 1000 and ds.input_shape == (32, 32, 3)
  for split, ours in (("train", ds.train.arrays), ("test", ds.test.arrays)):
    images, labels = tenth[split]
    assert np.array_equal(np.bincount(ours["label"]), np.bincount(labels))
    # Per-channel pixel sums survive PNG encoding exactly (lossless) and TFDS's shuffle.
    assert np.array_equal(ours["input"].astype(np.int64).sum((0, 1, 2)),
                          images.astype(np.int64).sum((0, 1, 2)))


def test_augmented_batches_are_the_same_with_worker_processes():
  # Transforms must pickle for spawned workers; the (seed, step) generator must too.
  ds = data.load(ml_collections.ConfigDict(dict(
      name="digits", normalize="standardize", augment="flip_translate", augment_pad=1)))
  runs = [list(data.train_batches(ds.train, seed=0, global_batch=32, start_step=2,
                                  end_step=5, transform=ds.transform,
                                  train_transform=ds.train_transform, num_workers=workers))
          for workers in (0, 2)]
  for a, b in zip(*runs):
    np.testing.assert_array_equal(a["input"], b["input"])
  plain = next(data.train_batches(ds.train, seed=0, global_batch=32, start_step=2,
                                  end_step=3, transform=ds.transform))
  assert not np.array_equal(plain["input"], runs[0][0]["input"])  # augmentation is on
