"""The CNN families (AlexNet, ResNets, MobileNet v1) and fully sharded data parallel:
published parameter counts, mixed precision, zero-init residuals, batch norm across
devices, fsdp runs that match data-parallel ones, and exact resume of a BN model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from deeplearn_jax import configs, models, parallel
from deeplearn_jax.checkpoint import saved_steps
from deeplearn_jax.models.alexnet import local_response_norm
from deeplearn_jax.models.mobilenet import LAYERS
from deeplearn_jax.models.resnet import BasicBlock, BottleneckBlock
from deeplearn_jax.train import supervised
from deeplearn_jax.train.state import make_init, num_params
from conftest import crash_at, override, patch_batches, train_losses


def _model(name, num_classes=1000, dtype="float32", **fields):
  return models.create(ml_collections.ConfigDict(dict(name=name, **fields)), num_classes,
                       dtype)


def _abstract(model, shape):
  """(logits, variables) as shapes only: no compute, even at 224x224."""
  x = jnp.zeros((1, *shape), jnp.float32)
  return jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x))


def _leaf(tree, *names):
  """The one leaf whose path names all of `names` (e.g. an Adam moment of a kernel)."""
  found = [x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
           if all(n in jax.tree_util.keystr(path) for n in names)]
  assert len(found) == 1, (names, len(found))
  return found[0]


def _spec(x):
  """x's partition spec, one entry per dimension (jit may drop trailing Nones)."""
  spec = tuple(x.sharding.spec)
  return spec + (None,) * (x.ndim - len(spec))


def _conv(k, cin, cout, bias=True, groups=1):
  return k * k * cin // groups * cout + (cout if bias else 0)


def _alexnet_count(groups, classes=1000):
  # Layer shapes of Krizhevsky et al. 2012 figure 2; conv3 and the dense layers see all.
  return (_conv(11, 3, 96) + _conv(5, 96, 256, groups=groups) + _conv(3, 256, 384)
          + _conv(3, 384, 384, groups=groups) + _conv(3, 384, 256, groups=groups)
          + (6 * 6 * 256 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * classes)


def _cifar_resnet_count(depth, width, classes=10):
  """Option A shortcuts have no parameters; each BN has a scale and a bias."""
  n = (depth - 2) // 6
  total = _conv(3, 3, width, bias=False) + 2 * width
  cin = width
  for w in (width, 2 * width, 4 * width):
    for _ in range(n):
      total += _conv(3, cin, w, bias=False) + _conv(3, w, w, bias=False) + 4 * w
      cin = w
  return total + (cin + 1) * classes


def _mobilenet_count(width, classes=1000):
  c = int(32 * width)
  total = _conv(3, 3, c, bias=False) + 2 * c
  for features, _ in LAYERS:
    out = int(features * width)
    total += 9 * c + 2 * c + c * out + 2 * out  # depthwise 3x3 + BN, pointwise 1x1 + BN
    c = out
  return total + (c + 1) * classes


@pytest.mark.parametrize("name,fields,size,classes,expected", [
    # torchvision's counts (BN scale and bias included, running statistics not).
    ("resnet18", {}, 224, 1000, 11_689_512),
    ("resnet34", {}, 224, 1000, 21_797_672),
    ("resnet50", {}, 224, 1000, 25_557_032),
    ("resnet101", {}, 224, 1000, 44_549_160),
    # The paper's two-GPU AlexNet, and the one-tower net with the same layer sizes.
    ("alexnet", {}, 224, 1000, 60_965_224),
    ("alexnet", {"groups": 1}, 227, 1000, 62_378_344),
    ("mobilenet_v1", {}, 224, 1000, 4_231_976),
    ("mobilenet_v1", {"width": 0.5}, 224, 1000, None),
    ("cifar_resnet", {}, 32, 10, None),
    ("cifar_resnet", {"depth": 56}, 32, 10, None),
])
def test_parameter_counts_and_output_shapes(name, fields, size, classes, expected):
  logits, variables = _abstract(_model(name, classes, **fields), (size, size, 3))
  assert logits.shape == (1, classes) and logits.dtype == jnp.float32
  n = num_params(variables["params"])
  if name == "alexnet":
    assert n == _alexnet_count(fields.get("groups", 2))
  if name == "mobilenet_v1":
    assert n == _mobilenet_count(fields.get("width", 1.0))
  if name == "cifar_resnet":
    depth = fields.get("depth", 20)
    assert n == _cifar_resnet_count(depth, 16)
    # He et al. 2015 table 6: 0.27M params at depth 20, 0.85M at 56.
    assert round(n / 1e6, 2) == {20: 0.27, 56: 0.85}[depth]
  if expected is not None:
    assert n == expected
  if fields.get("width") == 0.5:
    assert round(n / 1e6, 1) == 1.3  # Howard et al. 2017 table 6
  if "resnet" in name or "mobilenet" in name:
    assert variables["batch_stats"]  # BN everywhere, running statistics apart from params


def _variables(model, x, seed=0):
  """Variables of the model's shapes filled from numpy. Tests that need values but not
  the init itself use these: each jax.random.normal shape takes XLA about a second to
  compile on CPU."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return jnp.full(leaf.shape, 1.0 if "var" in name else 0.0, jnp.float32)
    if len(leaf.shape) == 1:  # biases and BN scales/offsets
      return jnp.asarray(rng.normal(0.0, 0.1, leaf.shape) + ("scale" in name), jnp.float32)
    fan_in = np.prod(leaf.shape[:-1])
    return jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(model.init,
                                                               jax.random.PRNGKey(0), x))


# Each family small enough to compile and run on CPU in seconds.
TINY = [
    ("alexnet", dict(groups=2), 64),
    ("resnet18", dict(width=8, stage_sizes=(1, 1, 1, 1)), 32),
    ("resnet50", dict(width=4, stage_sizes=(1, 1, 1, 1)), 32),
    ("cifar_resnet", dict(depth=8, width=8, shortcut="projection"), 8),
    ("mobilenet_v1", dict(width=0.25), 32),
]


@pytest.mark.accelerator
@pytest.mark.parametrize("name,fields,size", TINY)
def test_forward_in_float32_and_bfloat16(name, fields, size):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, size, size, 3)), jnp.float32)
  f32, bf16 = _model(name, 10, **fields), _model(name, 10, "bfloat16", **fields)
  shapes = jax.eval_shape(f32.init, jax.random.PRNGKey(0), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(shapes))
  # The bf16 model has the same float32 variables: the dtype changes the computation only.
  assert jax.eval_shape(bf16.init, jax.random.PRNGKey(0), x) == shapes
  variables = _variables(f32, x)

  @jax.jit  # one compilation: faster on CPU than running the ops one by one
  def forward(variables):
    """{dtype: (training logits, updated batch stats, eval logits)}."""
    out = {}
    for model in (f32, bf16):
      logits, new = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                rngs={"dropout": jax.random.PRNGKey(1)})
      out[model.dtype] = logits, new, model.apply(variables, x, train=False)
    return out

  outs = forward(variables)
  for logits, new, eval_logits in outs.values():
    for out in (logits, eval_logits):
      assert out.shape == (4, 10) and out.dtype == jnp.float32
      assert np.all(np.isfinite(out))
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(new))  # stats in float32
  jaxpr = jax.make_jaxpr(lambda v: bf16.apply(v, x))(variables)
  heavy = [e for e in jaxpr.eqns if e.primitive.name in ("conv_general_dilated", "dot_general")]
  assert heavy and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in heavy)
  a, b = np.asarray(outs["float32"][2]), np.asarray(outs["bfloat16"][2])
  assert not np.array_equal(a, b)  # bf16 really computed in bf16 ...
  assert np.linalg.norm(a - b) < 0.1 * np.linalg.norm(a)  # ... to bf16 precision


def test_resnet18_has_the_paper_layout():
  model = _model("resnet18", 10, "bfloat16", width=8)
  x = jnp.zeros((2, 32, 32, 3))
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x))(jax.eval_shape(model.init,
                                                                     jax.random.PRNGKey(0), x))
  convs = [e.params["window_strides"] for e in jaxpr.eqns
           if e.primitive.name == "conv_general_dilated"]
  # stem, two per basic block, three projections; stride 2 in the stem and at each
  # stage's first block (its first conv and its projection).
  assert len(convs) == 1 + 8 * 2 + 3
  assert sum(s == (2, 2) for s in convs) == 1 + 3 * 2


@pytest.mark.parametrize("block,features", [(BasicBlock, 16), (BottleneckBlock, 4)])
def test_zero_init_residual_makes_identity_blocks(block, features):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6, 6, 16)), jnp.float32)
  zero, plain = block(features, zero_init_residual=True), block(features)
  v = zero.init(jax.random.PRNGKey(0), x)
  for train in (False, True):
    y = zero.apply(v, x, train=train, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(y, nn.relu(x), atol=1e-6)
  assert not np.allclose(plain.apply(plain.init(jax.random.PRNGKey(0), x), x), nn.relu(x))


@pytest.mark.parametrize("name,last_bn", [("resnet18", "bn2"), ("resnet50", "bn3"),
                                          ("cifar_resnet", "bn2")])
def test_zero_init_residual_zeroes_every_last_bn_scale(name, last_bn):
  x = jnp.zeros((1, 32, 32, 3))
  for flag, value in ((True, 0.0), (False, 1.0)):
    model = _model(name, 10, zero_init_residual=flag)

    @jax.jit
    def scales(key):
      # Only the BN scales leave the jit, so XLA drops the random draws of the kernels.
      params = model.init(key, x)["params"]
      return {b: {n: p["scale"] for n, p in layers.items() if n.startswith("bn")}
              for b, layers in params.items() if b.startswith("stage")}

    blocks = scales(jax.random.PRNGKey(0))
    assert len(blocks) == {"resnet18": 8, "resnet50": 16, "cifar_resnet": 9}[name]
    for layers in blocks.values():
      assert np.all(layers.pop(last_bn) == value)
      assert all(np.all(s == 1.0) for s in layers.values())


def test_local_response_norm_follows_the_paper_formula():
  x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32) * 30
  expect = np.empty_like(x)
  for i in range(7):
    window = x[..., max(0, i - 2):min(7, i + 3)]
    expect[..., i] = x[..., i] / (2.0 + 1e-4 * np.sum(window**2, axis=-1)) ** 0.75
  np.testing.assert_allclose(local_response_norm(jnp.asarray(x)), expect, rtol=1e-5)


@pytest.mark.accelerator(devices=8)
def test_batch_norm_statistics_are_global_over_the_sharded_batch():
  model = _model("cifar_resnet", 10, depth=8, width=8)
  x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
  variables = _variables(model, x[:1])
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))

  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(data=8)))
  sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  assert len(sharded.addressable_shards) == 8 and sharded.addressable_shards[0].data.shape[0] == 2
  logits8, stats8 = step(variables, sharded)
  logits1, stats1 = step(variables, jax.device_put(x, jax.devices()[0]))
  _, local = step(variables, x[:2])  # what one device would see on its own
  for a, b, c in zip(jax.tree.leaves(stats8), jax.tree.leaves(stats1), jax.tree.leaves(local)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, c, rtol=1e-3)
  np.testing.assert_allclose(logits8, logits1, rtol=1e-5, atol=1e-5)


def test_fsdp_rules_shard_large_leaves_along_their_largest_divisible_dimension():
  leaves = {"conv": (3, 3, 64, 128), "dense": (1000, 30), "odd": (999, 33), "bias": (4096,),
            "small": (100, 6), "scalar": ()}
  abstract = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in leaves.items()}
  specs = lambda mesh: {k: s.spec for k, s in parallel.param_sharding(abstract, mesh).items()}
  dp = parallel.make_mesh(ml_collections.ConfigDict(dict(data=8)))
  assert all(s == P() for s in specs(dp).values())  # data parallel: all replicated
  fsdp = parallel.make_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=4)))
  assert specs(fsdp) == {"conv": P(None, None, None, "fsdp"), "dense": P("fsdp", None),
                         "odd": P(), "bias": P(), "small": P(), "scalar": P()}
  assert 4096 < parallel.FSDP_MIN_SIZE <= 1000 * 30  # what the expectations above assume


def test_fsdp_state_is_born_sharded():
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(fsdp=8)))
  model = _model("mlp", 10, hidden=(256, 256))
  init = make_init(model, optax.adam(1e-3), (8, 8, 1), seed=0)
  shardings = parallel.param_sharding(jax.eval_shape(init), mesh)
  state = jax.jit(init, out_shardings=shardings)()
  mu = _leaf(state.opt_state, "mu", "Dense_1", "kernel")
  for leaf in (state.params["Dense_1"]["kernel"], mu):
    assert _spec(leaf) == ("fsdp", None)
    assert {s.data.shape for s in leaf.addressable_shards} == {(32, 256)}
  assert state.params["Dense_2"]["bias"].sharding.spec == P()
  assert state.step.sharding.spec == P()


def _config(model, steps, **overrides):
  c = supervised.base_config()
  c.model = ml_collections.ConfigDict(model)
  c.optimizer.name, c.optimizer.learning_rate = "adam", 1e-3
  configs.make_smoke(c, steps=steps)
  c.log_every_steps = 2
  c.eval_every_epochs = -1
  return override(c, **overrides)


@pytest.mark.slow
@pytest.mark.accelerator(devices=8)
def test_fsdp_training_matches_data_parallel_and_one_device(tmp_path):
  mlp = dict(name="mlp", hidden=(256, 256))
  meshes = {"one": dict(data=1), "dp8": dict(data=8), "dp2_fsdp4": dict(data=2, fsdp=4)}
  runs = {k: supervised.run(_config(mlp, 20, mesh=ml_collections.ConfigDict(m)),
                            str(tmp_path / k)) for k, m in meshes.items()}
  ref = train_losses(tmp_path / "one")
  assert len(ref) == 10 and ref[-1][1] < ref[0][1]
  for k in meshes:
    losses = train_losses(tmp_path / k)
    assert [s for s, _ in losses] == [s for s, _ in ref]
    np.testing.assert_allclose([l for _, l in losses], [l for _, l in ref], rtol=1e-5,
                               err_msg=k)
  state = runs["dp2_fsdp4"].state  # still sharded after 20 donated steps
  assert _spec(state.params["Dense_1"]["kernel"]) == ("fsdp", None)
  assert _spec(_leaf(state.opt_state, "nu", "Dense_1", "kernel")) == ("fsdp", None)
  np.testing.assert_allclose(state.params["Dense_1"]["kernel"],
                             runs["one"].state.params["Dense_1"]["kernel"], atol=1e-5)
  assert _spec(runs["dp8"].state.params["Dense_1"]["kernel"]) == (None, None)


@pytest.mark.slow
@pytest.mark.accelerator(devices=8)
def test_bn_model_resumes_with_identical_params_and_batch_stats(tmp_path, monkeypatch):
  """A cifar_resnet (BN) run under fsdp, crashed after a checkpoint and resumed."""
  resnet = dict(name="cifar_resnet", depth=8, width=16, shortcut="projection")
  config = _config(resnet, 12, mesh=ml_collections.ConfigDict(dict(data=2, fsdp=4)))
  ref = supervised.run(config, str(tmp_path / "ref"))
  assert "fsdp" in _spec(ref.state.params["stage3_block1"]["conv2"]["kernel"])
  with monkeypatch.context() as m:
    patch_batches(m, crash_at(10))  # between the checkpoints of steps 8 and 12
    with pytest.raises(RuntimeError, match="simulated crash"):
      supervised.run(config, str(tmp_path / "run"))
  assert saved_steps(str(tmp_path / "run" / "checkpoints")) == [4, 8]
  resumed = supervised.run(config, str(tmp_path / "run"))
  for part in ("params", "batch_stats", "opt_state"):
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        getattr(ref.state, part), getattr(resumed.state, part))
    assert all(jax.tree.leaves(same)), f"resumed {part} differ from the uninterrupted run"
  assert not np.allclose(ref.state.batch_stats["stem_bn"]["mean"], 0.0)  # stats were updated
  assert train_losses(tmp_path / "run") == train_losses(tmp_path / "ref")
