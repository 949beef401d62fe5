"""Character language models (experiments/char_lm.py): the Transformer's causal mask,
the loss at initialisation, a deterministic sampler, exact resume, the model-parallel
sharding rule, and bad text / context / prompt input as one clear error (exit 2)."""

import math
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import SHARED_DATA, smoke_config
from deeplearn_jax import cli, metrics, parallel
from deeplearn_jax.checkpoint import read_checkpoint
from deeplearn_jax.data import text as text_lib
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.transformer import Transformer, causal_attention, model_axis_dim
from deeplearn_jax.train import language_model, loop
from experiments import char_lm

# Their module-scoped runs are made once: tests sharing them stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("char_lm")

SHAKESPEARE = os.path.join(SHARED_DATA, "tinyshakespeare", "input.txt")
STEPS = 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
  """The first 20,000 characters of tiny-shakespeare as a data.name=text file."""
  if not os.path.isfile(SHAKESPEARE):
    pytest.skip(f"tiny-shakespeare not found at {SHAKESPEARE}")
  path = tmp_path_factory.mktemp("text") / "shakespeare.txt"
  with open(SHAKESPEARE, encoding="utf-8") as f:
    path.write_text(f.read()[:20000], encoding="utf-8")
  return str(path)


def _config(corpus, variant="smoke", **overrides):
  return smoke_config(char_lm, variant, **{"data.name": "text", "data.path": corpus,
                                           "num_train_steps": STEPS,
                                           "optimizer.learning_rate": 1e-2, **overrides})


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("lm") / "run")
  config = _config(corpus)
  return workdir, config, char_lm.train_and_evaluate(config, workdir)


def _tiny(vocab=65, context=16, **kw):
  return Transformer(num_classes=vocab, num_layers=2, num_heads=2, width=32, context=context,
                     **kw)


def test_causal_mask_hides_the_future():
  model = _tiny()
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, 65)
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  t = 7
  changed = x.at[:, t + 1:].set((x[:, t + 1:] + 1) % 65)
  a, b = model.apply({"params": params}, x), model.apply({"params": params}, changed)
  np.testing.assert_array_equal(a[:, :t + 1], b[:, :t + 1])
  assert not np.allclose(a[:, t + 1:], b[:, t + 1:])  # the change is seen from t + 1 on


def test_attention_with_weight_dropout_is_the_fused_attention_without_it():
  q, k, v = jax.random.normal(jax.random.PRNGKey(7), (3, 2, 9, 4, 8))
  np.testing.assert_allclose(causal_attention(q, k, v, lambda w: w),
                             jax.nn.dot_product_attention(q, k, v, is_causal=True),
                             rtol=1e-5, atol=1e-6)


def test_training_dropout_keeps_the_mask_causal():
  model = _tiny(dropout=0.5)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, 65)
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  apply = lambda tokens: model.apply({"params": params}, tokens, train=True,
                                     rngs={"dropout": jax.random.PRNGKey(2)})
  t = 7
  a, b = apply(x), apply(x.at[:, t + 1:].set((x[:, t + 1:] + 1) % 65))
  np.testing.assert_array_equal(a[:, :t + 1], b[:, :t + 1])
  assert not np.allclose(a, model.apply({"params": params}, x))  # dropout is on


def test_loss_at_init_is_about_ln_vocab():
  model = _tiny()
  windows = jax.random.randint(jax.random.PRNGKey(2), (8, 17), 0, 65)
  params = model.init(jax.random.PRNGKey(3), windows[:, :-1])["params"]
  loss = float(jnp.mean(language_model._token_losses(model, params, windows)))
  assert abs(loss - math.log(65)) < 0.05, loss


def test_sampler_is_deterministic_for_a_seed():
  model = _tiny()
  params = model.init(jax.random.PRNGKey(4), jnp.zeros((1, 16), jnp.int32))["params"]
  sample = language_model.make_sampler(model, 16, 40, temperature=1.0, top_k=10)
  prompt = jnp.asarray([1, 2, 3], jnp.int32)
  a, b = (np.asarray(sample(params, prompt, jax.random.PRNGKey(s))) for s in (5, 5))
  c = np.asarray(sample(params, prompt, jax.random.PRNGKey(6)))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (40,) and (a != c).any()


def test_trains_and_samples(trained):
  workdir, config, res = trained
  text = text_lib.load(config.data)
  # 30 steps of a 27k-parameter net: clearly below the uniform guess, ln(vocab).
  assert res["val_loss"] < math.log(text.vocab_size) - 0.5, res
  assert res["best_val_loss"] <= res["val_loss"]
  assert res["val_bits_per_char"] == pytest.approx(res["val_loss"] / math.log(2))
  assert res["tokens_per_second"] > 0
  with open(os.path.join(workdir, "samples.txt"), encoding="utf-8") as f:
    assert len(f.read()) > 40
  # The kept parameters are those of the lowest validation row, and give its loss.
  rows = [r for r in metrics.read_metrics(workdir) if r["split"] in ("eval", "test")]
  lowest = min(rows, key=lambda r: r["loss"])
  assert res["best_val_step"] == lowest["step"] and res["best_val_loss"] == lowest["loss"]
  model = language_model.make_model(config, text.vocab_size)
  evaluate = language_model.make_evaluate(model, config, text.val)
  best = evaluate(types.SimpleNamespace(params=loop.best_params(workdir)))
  assert best["loss"] == pytest.approx(lowest["loss"], rel=1e-6)


def test_sample_from_a_trained_run(trained):
  workdir, config, _ = trained
  config = cli.load_config(f"{char_lm.__file__}:smoke", [
      f"--config.sample_from={workdir}", "--config.prompt=ROMEO:", "--config.num_samples=1",
      "--config.sample_length=30"])
  a = char_lm.train_and_evaluate(config, "/nonexistent")["samples"]
  assert a == char_lm.train_and_evaluate(config, "/nonexistent")["samples"]
  assert a[0].startswith("ROMEO:") and len(a[0]) == 36


def test_resume_is_exact(trained, corpus, tmp_path, monkeypatch):
  reference_dir, config, reference = trained
  original = text_lib.train_window_batch

  def crash_at_25(tokens, seed, step, *args, **kw):
    if step == 25:  # after the checkpoint of step 20
      raise RuntimeError("simulated crash")
    return original(tokens, seed, step, *args, **kw)

  workdir = str(tmp_path / "run")
  monkeypatch.setattr(text_lib, "train_window_batch", crash_at_25)
  with pytest.raises(RuntimeError, match="simulated crash"):
    char_lm.train_and_evaluate(_config(corpus), workdir)
  monkeypatch.setattr(text_lib, "train_window_batch", original)
  resumed = char_lm.train_and_evaluate(_config(corpus), workdir)
  for key in ("val_loss", "best_val_loss", "final_train_loss", "num_params"):
    assert resumed[key] == reference[key], key
  same = jax.tree.map(np.array_equal, read_checkpoint(os.path.join(workdir, "checkpoints")),
                      read_checkpoint(os.path.join(reference_dir, "checkpoints")))
  assert all(jax.tree.leaves(same))


def test_model_axis_splits_the_blocks():
  model = _tiny()
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, 16), jnp.int32))["params"])
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=1, model=4)))
  specs = parallel.param_sharding(params, mesh, model_axis_dim)
  assert specs["block0"]["qkv"]["kernel"].spec == P(None, "model")
  assert specs["block1"]["mlp_proj"]["kernel"].spec == P("model", None)
  assert specs["wte"]["embedding"].spec == P()
  # The sharded forward computes what the unsharded one does.
  real = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))["params"]
  x = jax.random.randint(jax.random.PRNGKey(1), (4, 16), 0, 65)
  sharded = jax.device_put(real, specs)
  out = jax.jit(lambda p: model.apply({"params": p}, x))(sharded)
  np.testing.assert_allclose(out, model.apply({"params": real}, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("content, overrides, message", [
    (b"", {}, "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "not a text file"),
    (b"\xff\xfeh\xe9llo wor\xffld", {}, "not UTF-8"),
    (b"To be, or not to be: that is the question.\n" * 3, {"context": 64},
     "longer than the data"),
    (b"To be, or not to be: that is the question.\n" * 20, {"prompt": "JULIET\u2019S"},
     "not in the text vocabulary"),
])
def test_bad_input_is_one_clear_line(tmp_path, content, overrides, message):
  path = tmp_path / "corpus.txt"
  path.write_bytes(content)
  workdir = tmp_path / "run"
  flags = ["--config.data.name=text", f"--config.data.path={path}"]
  flags += [f"--config.{k}={v}" for k, v in overrides.items()]
  config = cli.load_config(f"{char_lm.__file__}:smoke", flags)
  with pytest.raises(UserError) as e:
    char_lm.train_and_evaluate(config, str(workdir))
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
  assert e.value.exit_code == 2
  assert not workdir.exists()
