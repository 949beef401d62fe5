"""The imagenet_cnn experiment and the fast CIFAR recipe's parts: patch whitening,
host augmentation, frozen parameters, test-time flips, learning rate per batch."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deeplearn_jax import checkpoint, data, models
from deeplearn_jax.data import augment
from deeplearn_jax.errors import DataError, UserError
from deeplearn_jax.models import fast_cifar
from deeplearn_jax.train import optimizers
from deeplearn_jax.train.state import make_init
from deeplearn_jax.train.steps import make_eval_step
from conftest import override
from experiments import imagenet_cnn


def test_whitening_kernel_whitens_patches():
  rng = np.random.default_rng(0)
  # Correlated channels and neighbouring pixels, as in photos.
  base = rng.normal(size=(200, 17, 17, 1))
  images = np.repeat(np.repeat(base, 2, 1), 2, 2)[:, :32, :32] * np.array([1.0, 0.8, 0.5])
  images = images + 0.1 * rng.normal(size=images.shape)
  kernel = fast_cifar.whitening_kernel(images.astype(np.float32), eps=1e-6)
  assert kernel.shape == (2, 2, 3, 24)
  out = jax.lax.conv_general_dilated(jnp.asarray(images, jnp.float32), kernel[..., :12],
                                     (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  cov = np.cov(np.asarray(out).reshape(-1, 12), rowvar=False)
  np.testing.assert_allclose(cov, np.eye(12), atol=0.05)
  np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])


def test_flip_translate_draws_shifted_mirrored_crops():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, size=(64, 8, 8, 3), dtype=np.uint8)
  out = augment.flip_translate(images, np.random.default_rng(1), pad=2)
  again = augment.flip_translate(images, np.random.default_rng(1), pad=2)
  np.testing.assert_array_equal(out, again)  # a pure function of the generator
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  flips = shifts = 0
  for i in range(len(images)):
    windows = {(dy, dx, f) for dy in range(5) for dx in range(5) for f in (0, 1)
               if np.array_equal(out[i], (lambda w: w[:, ::-1] if f else w)(
                   padded[i, dy:dy + 8, dx:dx + 8]))}
    assert windows, f"image {i} is not a shifted (mirrored) crop of its original"
    dy, dx, f = sorted(windows)[0]
    flips += f
    shifts += (dy, dx) != (2, 2)
  assert 16 < flips < 48 and shifts > 40


def test_translate_shifts_without_mirroring():
  """`translate` (digits: a mirrored 2 is no 2): shifted crops, never a mirror image."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, size=(32, 8, 8, 1), dtype=np.uint8)
  out = augment.make("translate", 2)({"input": images}, np.random.default_rng(1))["input"]
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  shifts = 0
  for i in range(len(images)):
    offsets = [(dy, dx) for dy in range(5) for dx in range(5)
               if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
    assert offsets, f"image {i} is not a shifted crop of its original"
    shifts += offsets[0] != (2, 2)
  assert shifts > 20


def test_unknown_augmentation_is_refused():
  with pytest.raises(DataError, match="augment must be one of"):
    augment.make("rotate", 2)


def test_test_time_flip_averages_the_mirror():
  model = models.create(ml_collections.ConfigDict(dict(name="fast_cifar", widths=(4, 8, 8))),
                        10)
  tx, _ = optimizers.create(optimizers.default_config(), 1, 1)
  state = jax.jit(make_init(model, tx, (32, 32, 3), seed=0))()
  x = np.random.default_rng(0).normal(size=(6, 32, 32, 3)).astype(np.float32)
  labels = np.arange(6, dtype=np.int32)
  batch = {"input": x, "label": labels, "mask": np.ones(6, np.float32)}
  logits = jax.jit(lambda v: model.apply({"params": state.params,
                                           "batch_stats": state.batch_stats}, v))
  mean = 0.5 * (logits(x) + logits(x[:, :, ::-1]))
  expected = -jnp.take_along_axis(jax.nn.log_softmax(mean), labels[:, None], 1).sum()
  got = jax.jit(make_eval_step(model, 10, flip=True))(state, batch)["loss"]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  plain = jax.jit(make_eval_step(model, 10, flip=False))(state, batch)["loss"]
  assert abs(float(plain) - float(got)) > 1e-6


def test_fast_cifar_im2col_convs_equal_xla_convs():
  """The CPU-fast convolutions are the same function of the same parameters."""
  make = lambda conv: models.create(
      ml_collections.ConfigDict(dict(name="fast_cifar", widths=(4, 8, 8), conv=conv)), 10)
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  variables = make("lax").init(jax.random.PRNGKey(0), x)
  other = make("im2col").init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(variables) == jax.tree.structure(other)
  run = lambda conv: make(conv).apply(variables, x, train=True, mutable=["batch_stats"])
  (lax_out, lax_stats), (ours, our_stats) = run("lax"), run("im2col")
  np.testing.assert_allclose(ours, lax_out, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               our_stats, lax_stats)
  with pytest.raises(UserError, match="conv must be one of"):
    make("fft")


def test_learning_rate_follows_the_global_batch():
  c = imagenet_cnn.get_config("resnet50")
  assert c.optimizer.learning_rate == pytest.approx(0.1 * c.batch_size / 256)
  with c.unlocked():
    c.batch_size = 256
  assert c.optimizer.learning_rate == pytest.approx(0.1)


@pytest.mark.slow
def test_fast_cifar_recipe_learns_with_its_whitening_frozen(tmp_path):
  c = imagenet_cnn.get_config("cifar10,smoke")
  assert c.model.name == "fast_cifar" and c.whiten_samples > 0
  results = imagenet_cnn.train_and_evaluate(c, str(tmp_path))
  assert results["test_accuracy"] > 0.5, results  # 10 classes: chance is 0.1
  computed = imagenet_cnn.whitening(c, data.load(c.data))["whiten"]["kernel"]
  folder = str(tmp_path / "checkpoints")
  first, final = (checkpoint.read_checkpoint(folder, s)["params"]
                  for s in (checkpoint.saved_steps(folder)[0], None))
  np.testing.assert_array_equal(first["whiten"]["kernel"], computed)  # set from the data
  np.testing.assert_array_equal(final["whiten"]["kernel"], computed)  # and frozen
  assert not np.allclose(final["whiten"]["bias"], 0)                  # the bias trains
  assert computed.shape == (2, 2, 3, 24) and np.isfinite(computed).all()


def test_imagenet_cnn_smoke_learns(tmp_path):
  results = imagenet_cnn.train_and_evaluate(imagenet_cnn.get_config("smoke"), str(tmp_path))
  for key in ("num_params", "test_accuracy", "test_top5_accuracy"):
    assert key in results
  assert results["test_accuracy"] > 0.5, results


def test_train_steps_on_mock_imagenet(tmp_path):
  """The ImageNet recipe end to end on TFDS mock data: random-resized crops, a ResNet
  with batch norm, Nesterov with warmup, top-1 and top-5 (crops of 64 to stay fast)."""
  import tensorflow_datasets as tfds

  config = override(imagenet_cnn.get_config("resnet18"), **{
      "data.tfds_data_dir": str(tmp_path / "tfds"), "data.image_size": 64,
      "model.name": "cifar_resnet", "dtype": "float32", "batch_size": 8,
      "eval_batch_size": 8, "num_train_steps": 4, "log_every_steps": 1,
      "checkpoint_every_steps": 2, "optimizer.warmup_steps": 2, "progress": False})
  with config.unlocked():
    config.model.depth, config.model.width = 8, 4
  with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
    results = imagenet_cnn.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["steps"] == 4 and np.isfinite(results["final_train_loss"])
  assert 0.0 <= results["test_accuracy"] <= results["test_top5_accuracy"] <= 1.0
