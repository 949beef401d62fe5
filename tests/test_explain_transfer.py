"""Attribution (completeness of integrated gradients), reuse of a trained network
(init_from with a skip list, frozen layers) and the rotated-line change of coordinates,
on tiny data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import override
from deeplearn_jax import attribution, checkpoint, cli, configs, data
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.mlp import MLP
from deeplearn_jax.train import supervised
from deeplearn_jax.train.state import load_pretrained, make_init
from experiments import explain, imagenet_cnn, lenet, representations, transfer

# Their module-scoped runs are made once: tests sharing them stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("explain_transfer")


def _images(n=16, shape=(8, 8, 1), seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return (jax.random.uniform(k1, (n, *shape)), jax.random.randint(k2, (n,), 0, 3))


def _relative_gap(apply, params, x, y, steps, target):
  maps = attribution.integrated_gradients(apply, params, x, y, steps=steps, target=target)
  f = attribution.class_score(apply, params, x, y, target)
  gap = f - attribution.class_score(apply, params, jnp.zeros_like(x), y, target)
  return np.abs(np.asarray(maps.sum((1, 2, 3)) - gap)) / np.abs(np.asarray(gap))


def test_integrated_gradients_complete_exactly_for_a_linear_model_and_within_1pct_for_a_net():
  x, y = _images()
  w = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
  linear = lambda p, v: v.reshape(len(v), -1) @ p
  # Exact (to rounding) even with 2 intervals: the gradient is the same along the path.
  assert _relative_gap(linear, w, x, y, 2, "logit").max() < 1e-5
  net = MLP(num_classes=3, hidden=(32, 32), activation="tanh")
  variables = net.init(jax.random.PRNGKey(2), x)
  apply = lambda p, v: net.apply(p, v)
  coarse = _relative_gap(apply, variables, x, y, 4, "prob")
  fine = _relative_gap(apply, variables, x, y, 64, "prob")
  assert fine.max() < 0.01 and fine.max() < coarse.max()


@pytest.mark.parametrize("fill", attribution.FILLS)
def test_occlusion_is_the_mean_drop_of_the_squares_covering_each_pixel(fill):
  x, y = _images(n=3, shape=(5, 5, 2))
  w = jax.random.normal(jax.random.PRNGKey(1), (50, 3))
  linear = lambda p, v: v.reshape(len(v), -1) @ p
  heat = attribution.occlusion(linear, w, x, y, patch=2, stride=2, value=0.5, fill=fill)
  x = np.asarray(x)
  occluder = np.asarray(attribution.blur(x, 2.0)) if fill == "blur" else np.full_like(x, 0.5)
  prob = lambda v: jax.nn.softmax(v.reshape(len(v), -1) @ np.asarray(w))[np.arange(3), y]
  drops, counts = np.zeros((3, 5, 5)), np.zeros((5, 5))
  for i in (0, 2, 3):  # by hand: corners every 2 pixels, and one more reaching the border
    for j in (0, 2, 3):
      inside = np.zeros((5, 5, 1), bool)
      inside[i:i + 2, j:j + 2] = True
      drops += (prob(x) - prob(np.where(inside, occluder, x)))[:, None, None] * inside[..., 0]
      counts += inside[..., 0]
  want = np.repeat((drops / counts)[..., None], 2, -1)
  np.testing.assert_allclose(heat, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(UserError, match="unknown fill"):
    attribution.occlusion(linear, w, x, y, fill="zeros")


@pytest.mark.parametrize("fill", attribution.FILLS)
def test_deletion_and_insertion_move_whole_regions_in_the_maps_order(fill):
  x, y = _images(n=3, shape=(8, 8, 2))
  w = jax.random.normal(jax.random.PRNGKey(1), (128, 3))
  linear = lambda p, v: v.reshape(len(v), -1) @ p
  maps = jax.random.uniform(jax.random.PRNGKey(2), x.shape)
  out = attribution.deletion_insertion(linear, w, x, y, maps, steps=16, region=2, fill=fill)
  canvas = np.asarray(attribution.blur(x, 2.0))
  x, maps = np.asarray(x), np.asarray(maps)
  removed = canvas if fill == "blur" else np.zeros_like(x)
  for i in range(3):  # by hand: 2 x 2 squares by their summed map, highest first, one a step
    order = np.argsort(-maps[i].reshape(4, 2, 4, 2, 2).sum((1, 3, 4)).ravel())
    for k in range(17):
      top = np.zeros(16, bool)
      top[order[:k]] = True
      top = np.repeat(np.repeat(top.reshape(4, 4), 2, 0), 2, 1)[..., None]
      for kind, image in (("deletion", np.where(top, removed[i], x[i])),
                          ("insertion", np.where(top, x[i], canvas[i]))):
        prob = jax.nn.softmax(image.reshape(-1) @ np.asarray(w))[int(y[i])]
        np.testing.assert_allclose(out[f"{kind}_curve"][i, k], prob, rtol=1e-5, atol=1e-6)
  with pytest.raises(UserError, match="divide"):
    attribution.deletion_insertion(linear, w, x, y, maps, region=3)
  with pytest.raises(UserError, match="unknown fill"):
    attribution.deletion_insertion(linear, w, x, y, maps, fill="zeros")


def test_every_map_has_the_images_shape_and_bad_images_are_one_line():
  x, y = _images(n=5)
  net = MLP(num_classes=3, hidden=(16,))
  variables = net.init(jax.random.PRNGKey(0), x)
  apply = lambda p, v: net.apply(p, v)
  for method in attribution.METHODS:
    extra = {"key": jax.random.PRNGKey(0), "samples": 2} if method == "smoothgrad" else {}
    maps = attribution.attribute(method, apply, variables, np.asarray(x), np.asarray(y),
                                 (8, 8, 1), 3, batch_size=4, **extra)
    assert maps.shape == x.shape and np.isfinite(maps).all()
  for images, labels, message in [(np.zeros((5, 28, 28, 1)), np.zeros(5, int), "do not fit"),
                                  (np.zeros((5, 8, 8)), np.zeros(5, int), "do not fit"),
                                  (np.zeros((5, 8, 8, 1)), np.full(5, 7), "labels must lie")]:
    with pytest.raises(UserError, match=message) as err:
      attribution.attribute("gradients", apply, variables, images, labels, (8, 8, 1), 3)
    assert "\n" not in str(err.value)


def test_rotated_line_needs_a_change_of_coordinates():
  c = representations.get_config("smoke")
  line, _ = representations.line_part(c)
  assert line["raw_best_axis_threshold_accuracy"] < 0.9
  assert line["learned_z0_accuracy"] == 1.0
  assert line["cosine_learned_axis_true_normal"] > 0.99


def _mlp_config(steps, **overrides):
  c = supervised.base_config()
  configs.make_smoke(c, steps=steps)
  c.model.hidden, c.batch_size, c.checkpoint_every_steps = (16, 16), 32, -1
  c.optimizer.name, c.optimizer.learning_rate = "adam", 0.01
  return override(c, **overrides)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A finished run: the network whose layers are reused."""
  wd = str(tmp_path_factory.mktemp("source"))
  return wd, supervised.run(_mlp_config(20), wd)


def test_transfer_loads_exactly_the_asked_parameters_and_frozen_ones_stay(source, tmp_path):
  src_dir, src = source
  frozen = _mlp_config(20, init_from=src_dir, init_from_skip=("Dense_2",),
                       seed=7, **{"optimizer.frozen": ("Dense_0",)})
  out = supervised.run(frozen, str(tmp_path / "frozen"))
  before, after = jax.device_get(src.state.params), jax.device_get(out.state.params)
  # Copied and frozen: bit-for-bit the source's after 20 updates of the run.
  np.testing.assert_array_equal(after["Dense_0"]["kernel"], before["Dense_0"]["kernel"])
  np.testing.assert_array_equal(after["Dense_0"]["bias"], before["Dense_0"]["bias"])
  # Copied, trained: moved away from the source's values.
  assert not np.allclose(after["Dense_1"]["kernel"], before["Dense_1"]["kernel"])
  # What init_from hands the run: the source's leaves, and None (init's own) for the head.
  abstract = jax.eval_shape(make_init(MLP(num_classes=10, hidden=(16, 16)), optax.identity(),
                                      (8, 8, 1), 0)).params
  loaded = load_pretrained(src_dir, abstract, skip=("Dense_2",))
  assert loaded["Dense_2"] == {"kernel": None, "bias": None}
  for layer in ("Dense_0", "Dense_1"):
    for name in ("kernel", "bias"):
      np.testing.assert_array_equal(loaded[layer][name], before[layer][name])
  assert not np.allclose(after["Dense_2"]["kernel"], before["Dense_2"]["kernel"])
  assert out.results["test_accuracy"] > 0.3  # 10 classes: it learned


def test_bad_init_from_is_one_line_before_anything_is_written(source, tmp_path):
  src_dir, src = source
  partial = str(tmp_path / "partial")
  params = jax.device_get(src.state.params)
  checkpoint.save_params(partial, {"Dense_0": params["Dense_0"]})
  cases = [(partial, ("Dense_2",), "lacks Dense_1/bias"),
           (src_dir, ("head",), "'head' names no parameter"),
           (str(tmp_path / "nowhere"), ("Dense_2",), "cannot load parameters from")]
  for init_from, skip, message in cases:
    wd = tmp_path / "run"
    with pytest.raises(UserError, match=message) as err:
      supervised.run(_mlp_config(5, init_from=init_from, init_from_skip=skip), str(wd))
    assert "\n" not in str(err.value) and not wd.exists()
  # The command line's own parsing of the skip list, and its error.
  config = cli.load_config("experiments/lenet.py:smoke", [f"--config.init_from={partial}",
                                                           "--config.init_from_skip=('output',)"])
  with pytest.raises(UserError, match="lacks C1"):
    lenet.train_and_evaluate(config, str(tmp_path / "lenet"))


def test_transfer_splits_classes_and_plans_the_layer_curve():
  ds = data.load(transfer.get_config("smoke").data)
  part = transfer._split(ds, (5, 6, 7, 8, 9), 4, seed=0)
  labels = part.train.gather(np.arange(len(part.train)))["label"]
  assert np.bincount(labels).tolist() == [4] * 5 and part.num_classes == 5
  test = part.test.gather(np.arange(len(part.test)))["label"]
  original = ds.test.gather(np.arange(len(ds.test)))["label"]
  assert len(test) == np.sum(original >= 5) and set(test) == set(range(5))
  c = transfer.get_config("smoke")
  children = transfer.target_children(c, "/w", 5)
  assert children["finetune_5_seed0"].init_from == "/w/source"
  # LP-FT: every parameter of the same cell's frozen run (its trained head too), all trained.
  lpft = children["lpft_5_seed0"]
  assert lpft.init_from == "/w/frozen_5_seed0" and not lpft.init_from_skip
  assert not lpft.optimizer.frozen
  names = list(children)
  assert names.index("frozen_5_seed0") < names.index("lpft_5_seed0")
  with pytest.raises(UserError, match="frozen must come before"):
    transfer.target_children(configs.replaced(c, methods=("lpft", "frozen")), "/w", 5)
  assert tuple(children["copy2_5_seed0"].optimizer.frozen) == ("C1", "C3")
  assert tuple(children["copy2_5_seed0"].init_from_skip) == ("C5", "F6", "output")
  assert "copy0_5_seed0" not in children and "copy4_5_seed0" not in children
  # Yosinski's "+" curve: the same copies, none of them frozen.
  assert tuple(children["tune2_5_seed0"].init_from_skip) == ("C5", "F6", "output")
  assert not children["tune2_5_seed0"].optimizer.frozen
  assert "tune4_5_seed0" not in children
  with pytest.raises(UserError, match="curve_finetuned needs method finetune"):
    transfer.target_children(configs.replaced(c, methods=("frozen", "scratch")), "/w", 5)
  plain = transfer.target_children(configs.replaced(c, curve_finetuned=False), "/w", 5)
  assert "copy2_5_seed0" in plain and not any(n.startswith("tune") for n in plain)
  assert tuple(children["frozen_5_seed0"].optimizer.frozen) == ("C1", "C3", "C5", "F6")
  assert children["scratch_5_seed0"].init_from == ""


def test_explain_full_is_the_cifar10_net_imagenet_cnn_trains():
  """`:cifar10,full` differs from imagenet_cnn:cifar10 only in what explaining needs, so a
  finished imagenet_cnn run of the same seed can stand in for its child folder."""
  full = explain.get_config("cifar10,full").nets.cifar10.to_dict()
  trained = imagenet_cnn.get_config("cifar10").to_dict()
  assert full.pop("explain") and full.pop("test_time_flip") is False
  trained.pop("test_time_flip")
  assert full == trained
  small = explain.get_config("cifar10").nets.cifar10
  assert small.num_epochs < trained["num_epochs"]
