"""ImageNet input: TFDS mock data through data.load, JPEG crops with PIL's draft,
determinism of (seed, step), worker processes, preparation from (fake) archives, errors."""

import io
import tarfile

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from PIL import JpegImagePlugin

from deeplearn_jax import data
from deeplearn_jax.data import imagenet
from deeplearn_jax.errors import DataError

# Their module-scoped runs are made once: tests sharing them stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("imagenet_data")


def _jpeg(width, height, mode="RGB", seed=0, fmt="JPEG") -> bytes:
  """Smooth random content (JPEG-friendly, so decoded scales can be compared)."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
  im = PIL.Image.fromarray(small).resize((width, height), PIL.Image.BICUBIC).convert(mode)
  buf = io.BytesIO()
  im.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
  return buf.getvalue()


def _rows(*blobs) -> dict:
  images = np.empty(len(blobs), object)
  for i, b in enumerate(blobs):
    images[i] = b
  return {"image": images, "label": np.arange(len(blobs), dtype=np.int32)}


@pytest.fixture(scope="module")
def mock_ds(tmp_path_factory):
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    return data.load(ml_collections.ConfigDict(dict(
        name="imagenet2012", tfds_data_dir=str(tmp_path_factory.mktemp("tfds")))))


def _train(ds, start, end, **kw):
  return list(data.train_batches(ds.train, seed=1, global_batch=8, start_step=start,
                                 end_step=end, transform=ds.transform,
                                 train_transform=ds.train_transform, **kw))


def _equal(a, b):
  return len(a) == len(b) and all(
      x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_mock_imagenet_batches_are_a_function_of_seed_and_step(mock_ds):
  ds = mock_ds
  assert ds.num_classes == 1000 and len(ds.train) == 24 and ds.input_shape == (224, 224, 3)
  rows = ds.train.gather(np.arange(3))  # the mock source decodes: uint8 arrays
  assert rows["image"].dtype == object and rows["image"][0].dtype == np.uint8
  full = _train(ds, 0, 6)  # 2 epochs of 3 steps
  b = full[0]
  assert b["input"].shape == (8, 224, 224, 3) and b["input"].dtype == np.float32
  assert b["label"].dtype == np.int32 and abs(float(b["input"].mean())) < 3
  assert _equal(_train(ds, 2, 6), full[2:])      # resumed == uninterrupted
  assert _equal(_train(ds, 4, 5), full[4:5])     # the same step twice
  # Each example comes once an epoch, cropped differently (found by a label seen once).
  epochs = [{int(l): x for b in full[e:e + 3] for l, x in zip(b["label"], b["input"])}
            for e in (0, 3)]
  labels, counts = np.unique(np.concatenate([b["label"] for b in full[:3]]), return_counts=True)
  once = labels[counts == 1]
  assert len(once) > 10 and not any(np.allclose(epochs[0][l], epochs[1][l]) for l in once)
  ev = lambda: list(data.eval_batches(ds.test, global_batch=16, transform=ds.transform))
  first, second = ev(), ev()
  assert _equal(first, second) and [float(e["mask"].sum()) for e in first] == [16.0, 8.0]


def test_workers_give_the_same_batches(mock_ds):
  ds = mock_ds
  assert _equal(_train(ds, 1, 4, num_workers=2), _train(ds, 1, 4))
  ev = lambda **kw: list(data.eval_batches(ds.test, global_batch=16, transform=ds.transform,
                                           **kw))
  assert _equal(ev(num_workers=2), ev())


def test_crop_with_draft_matches_full_decode(monkeypatch):
  blob = _jpeg(1600, 1200)
  full = np.asarray(PIL.Image.open(io.BytesIO(blob)).convert("RGB"))
  box = (301, 150, 1301, 1150)  # 1000 x 1000 -> 224: decoded at 1/4
  reductions = []
  draft = JpegImagePlugin.JpegImageFile.draft

  def spy(self, mode, size):
    before = self.size
    out = draft(self, mode, size)
    reductions.append(before[0] / self.size[0])
    return out

  monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
  ours = imagenet.crop_resize(PIL.Image.open(io.BytesIO(blob)), box, 224).astype(np.float32)
  assert reductions == [4.0] and ours.shape == (224, 224, 3)
  ref = np.asarray(PIL.Image.fromarray(full).resize((224, 224), PIL.Image.BILINEAR, box=box),
                   np.float32)
  assert np.abs(ours - ref).mean() < 2.0  # same place and scale, slightly different pixels
  # A small crop needs every pixel: no reduction.
  imagenet.crop_resize(PIL.Image.open(io.BytesIO(blob)), (0, 0, 300, 300), 224)
  assert reductions[-1] == 1.0


def test_eval_crop_is_resize_256_then_centre_224():
  blob = _jpeg(768, 512, seed=1)  # -> 384 x 256 (exactly; decoded at 1/2), crop at (80, 16)
  out = imagenet.EvalTransform(224)(_rows(blob))["input"][0] * imagenet.STD + imagenet.MEAN
  im = PIL.Image.open(io.BytesIO(blob)).convert("RGB").resize((384, 256), PIL.Image.BILINEAR)
  ref = np.asarray(im, np.float32)[16:240, 80:304]
  assert np.abs(out - ref).mean() < 2.0


def test_train_transform_on_jpeg_bytes(monkeypatch):
  gray, cmyk = _jpeg(120, 90, "L", seed=2), _jpeg(90, 120, "CMYK", seed=3)
  png = _jpeg(64, 64, fmt="PNG", seed=4)
  rows = _rows(_jpeg(500, 375), gray, cmyk, png)
  train = imagenet.TrainTransform(64)
  out = train(rows, np.random.default_rng(0))
  assert out["input"].shape == (4, 64, 64, 3) and out["input"].dtype == np.float32
  assert np.array_equal(out["label"], np.arange(4))
  assert _equal([out], [train(rows, np.random.default_rng(0))])
  assert not np.allclose(out["input"], train(rows, np.random.default_rng(1))["input"])
  # A grayscale JPEG becomes 3 equal channels (before standardisation).
  x = imagenet.EvalTransform(64)(_rows(gray))["input"][0] * imagenet.STD + imagenet.MEAN
  assert np.allclose(x[..., 0], x[..., 1], atol=1e-3) and np.allclose(x[..., 1], x[..., 2],
                                                                     atol=1e-3)
  # Flips: with the crop pinned to the whole image, every output is A or A mirrored.
  monkeypatch.setattr(imagenet, "random_crop_box", lambda w, h, rng: (0, 0, w, h))
  outs = train(_rows(*[gray] * 12), np.random.default_rng(0))["input"]
  flipped = [bool(np.array_equal(o, outs[0][:, ::-1])) for o in outs]
  assert any(flipped) and not all(flipped)
  assert all(np.array_equal(o, outs[0]) or f for o, f in zip(outs, flipped))


def test_random_crop_box_ranges():
  rng = np.random.default_rng(0)
  for _ in range(300):
    x0, y0, x1, y1 = imagenet.random_crop_box(500, 375, rng)
    w, h = x1 - x0, y1 - y0
    assert 0 <= x0 < x1 <= 500 and 0 <= y0 < y1 <= 375
    assert 0.07 <= w * h / (500 * 375) <= 1.0 and 0.74 <= w / h <= 1.35
  # No crop of a 1000 x 10 strip has an aspect in range: the centre crop, 4/3 at most.
  assert imagenet.random_crop_box(1000, 10, rng) == (493, 0, 506, 10)


def test_missing_archives_give_one_line(tmp_path, monkeypatch):
  monkeypatch.delenv("DEEPLEARN_DATA_DIR", raising=False)
  cfg = lambda **kw: ml_collections.ConfigDict(dict(name="imagenet2012",
                                                    tfds_data_dir=str(tmp_path / "tfds"), **kw))
  with pytest.raises(DataError) as e:
    data.load(cfg(manual_dir=str(tmp_path)))
  msg = str(e.value)
  assert "\n" not in msg and "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in msg
  assert f"{tmp_path}/imagenet2012/" in msg
  with pytest.raises(DataError, match="--config.data.manual_dir=DIR"):
    data.load(cfg())
  (tmp_path / "imagenet2012").mkdir()
  (tmp_path / "imagenet2012" / "ILSVRC2012_img_train.tar").write_bytes(b"")
  with pytest.raises(DataError, match="has ILSVRC2012_img_train.tar but not ILSVRC2012_img_val"):
    data.load(cfg(manual_dir=str(tmp_path)))


def _add(tar, name, blob):
  info = tarfile.TarInfo(name)
  info.size = len(blob)
  tar.addfile(info, io.BytesIO(blob))


def test_prepare_from_fake_archives(tmp_path):
  """The archives' layout (one tar per class inside the train tar; validation labels by
  sorted file name), TFDS's CMYK and PNG fixes, array_record, read back as JPEG bytes."""
  folder = tmp_path / "manual" / "imagenet2012"
  folder.mkdir(parents=True)
  classes = {"n01440764": ("n01739381_1309.JPEG", _jpeg(40, 30, "CMYK")),  # in TFDS's lists
             "n01443537": ("n02105855_2933.JPEG", _jpeg(40, 30, fmt="PNG"))}
  with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
    for synset, (odd_name, odd) in classes.items():
      buf = io.BytesIO()
      with tarfile.open(fileobj=buf, mode="w") as inner:
        for i in range(3):
          _add(inner, f"{synset}_{i}.JPEG", _jpeg(50 + i, 40, seed=i))
        _add(inner, odd_name, odd)
      _add(outer, f"{synset}.tar", buf.getvalue())
  with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as val:
    for i in (3, 1, 2):
      _add(val, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(30, 60, "L" if i == 2 else "RGB"))
  ds = data.load(ml_collections.ConfigDict(dict(
      name="imagenet2012", manual_dir=str(tmp_path / "manual"),
      tfds_data_dir=str(tmp_path / "tfds"), image_size=32)))
  assert len(ds.train) == 8 and len(ds.test) == 3
  train = ds.train.gather(np.arange(8))
  assert all(isinstance(b, bytes) for b in train["image"])
  opened = [PIL.Image.open(io.BytesIO(b)) for b in train["image"]]
  assert {(im.format, im.mode) for im in opened} == {("JPEG", "RGB")}  # CMYK, PNG fixed
  assert sorted(train["label"]) == [0] * 4 + [1] * 4
  text = lambda f: tfds.core.tfds_path(f"datasets/imagenet2012/{f}").read_text().split()
  names, first3 = text("labels.txt"), text("validation_labels.txt")[:3]
  test = ds.test.gather(np.arange(3))
  assert sorted(test["label"]) == sorted(names.index(s) for s in first3)
  batch = next(data.eval_batches(ds.test, global_batch=4, transform=ds.transform))
  assert batch["input"].shape == (4, 32, 32, 3) and batch["mask"].tolist() == [1, 1, 1, 0]
