"""A language-model trainer on the one loop driver (train/loop.py): next-token
cross-entropy on random windows of a token corpus, evaluation over every token of the
validation split, and sampling.

    outcome = language_model.run(config, workdir, text)   # text: data/text.py's Text

Step s trains on `batch_size` windows of `context + 1` tokens whose starts are drawn
from (seed, s) alone (text.train_window_batch), so a resumed run sees the same batches
as an uninterrupted one; dropout keys are fold_in(rng, s). The model is any registered
one that maps tokens [batch, time] to logits [batch, time, vocab]: the Transformer
(models/transformer.py) or the recurrent LMs (models/rnn.py with readout='all').
Results: val_loss (nats per token over the whole validation split), val_bits_per_char,
best_val_loss (over every evaluation) and best_val_step, final_train_loss,
tokens_per_second. The parameters of the best evaluation are kept in WORKDIR/best, and
samples come from them (nanoGPT keeps its best checkpoint on tiny-shakespeare too: the
last one has often overfit)."""

import functools
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from deeplearn_jax import configs, metrics, models, parallel, run_folder
from deeplearn_jax.checkpoint import read_checkpoint, saved_steps
from deeplearn_jax.data import text as text_lib
from deeplearn_jax.errors import UserError
from deeplearn_jax.models.transformer import model_axis_dim
from deeplearn_jax.train import loop, nan_guard, optimizers
from deeplearn_jax.train.state import make_init

VOCAB_FILE = "vocab.json"   # the run's vocabulary, so sampling needs no data


def base_config() -> ml_collections.ConfigDict:
  """configs.base() plus the model, optimizer, context, precision and sampling keys."""
  c = configs.base()
  c.data.name = "tinyshakespeare"
  c.data.path = ""                # data.name=text: any UTF-8 text file
  c.context = 64                  # tokens per training window (the Transformer's maximum)
  c.batch_size = 12
  c.eval_batch_size = 256         # validation windows per call
  c.num_train_steps = 2000
  c.eval_every_steps = 250
  c.eval_every_epochs = -1.0
  c.checkpoint_every_steps = 500
  c.checkpoint_every_epochs = -1.0
  c.log_every_steps = 50
  c.dtype = "auto"                # auto: bfloat16 compute on GPU/TPU, float32 on CPU
  c.model = ml_collections.ConfigDict(dict(name="transformer", num_layers=4, num_heads=4,
                                           width=128, dropout=0.0, attention="auto"))
  c.optimizer = optimizers.default_config()
  c.optimizer.update(dict(name="adamw", learning_rate=1e-3, b1=0.9, b2=0.99,
                          weight_decay=0.1, grad_clip_norm=1.0, schedule="cosine",
                          warmup_steps=100, end_learning_rate_factor=0.1))
  # Sampling: after training (samples.txt), or from a finished run (sample_from).
  c.sample_from = ""              # a trained run's workdir: sample from it, train nothing
  c.prompt = "\n"
  c.num_samples = 2
  c.sample_length = 500
  c.temperature = 0.8
  c.top_k = 200                   # 0: the whole vocabulary
  c.sample_seed = 1337
  return c


def compute_dtype(name: str) -> str:
  if name == "auto":
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return name


def make_model(config: ml_collections.ConfigDict, vocab_size: int):
  """The registered model config.model names, with config.context for the Transformer
  and readout='all' over token embeddings for the recurrent ones."""
  spec = ml_collections.ConfigDict(config.model.to_dict())
  if spec.name == "transformer":
    spec.context = config.context
  elif spec.name == "rnn":
    spec.readout, spec.vocab_size = "all", vocab_size
  return models.create(spec, vocab_size, compute_dtype(config.dtype))


def _logits(model, params, x, train=False, key=None):
  rngs = {"dropout": key} if train else {}
  return model.apply({"params": params}, x, train=train, rngs=rngs)


def _token_losses(model, params, windows, train=False, key=None):
  """Cross-entropy (nats) of each next token of windows [batch, context + 1]."""
  logits = _logits(model, params, windows[:, :-1], train, key)
  return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:])


def make_step(model, tx):
  def step(state, batch):
    key = jax.random.fold_in(state.rng, state.step)
    loss_fn = lambda p: jnp.mean(_token_losses(model, p, batch["tokens"], True, key))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: state.lr_scale * u, updates)
    new = state.replace(params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
    return nan_guard.guarded_update(state, new, jnp.isfinite(loss)), {"loss": loss}

  return step


def make_evaluate(model, config: ml_collections.ConfigDict, tokens: np.ndarray):
  """evaluate(state) -> {loss, bits_per_char}: the mean loss over every token of
  `tokens` after the first, in padded chunks of eval_batch_size windows."""
  windows, mask = text_lib.eval_windows(tokens, config.context)
  n = min(config.eval_batch_size, len(windows))  # a short split pads no bigger batch
  pad = -len(windows) % n
  windows = np.concatenate([windows, np.zeros((pad, windows.shape[1]), windows.dtype)])
  mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])

  @jax.jit
  def part(params, w, m):
    return jnp.sum(jnp.where(m, _token_losses(model, params, w), 0.0))

  def evaluate(state) -> dict[str, float]:
    total = sum(part(state.params, windows[i:i + n], mask[i:i + n])
                for i in range(0, len(windows), n))
    loss = float(total) / float(mask.sum())
    return {"loss": loss, "bits_per_char": loss / math.log(2)}

  return evaluate


def make_sampler(model, context: int, length: int, temperature: float, top_k: int):
  """sample(params, prompt ids, key) -> `length` new token ids. Each new token reads
  the last `context` tokens (a causal model: logits at position p see tokens <= p, so
  a window not yet full is padded on the right and read at its last real token)."""
  if temperature <= 0:
    raise UserError(f"config.temperature must be > 0, got {temperature}")

  @jax.jit
  def sample(params, prompt, key):
    prompt = prompt[-context:]
    n0 = prompt.shape[0]
    window = jnp.zeros((context,), jnp.int32).at[:n0].set(prompt)

    def one(carry, k):
      window, n = carry
      logits = _logits(model, params, window[None])[0, n - 1] / temperature
      if 0 < top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][-1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
      tok = jax.random.categorical(k, logits).astype(jnp.int32)
      full = n == context
      window = jnp.where(full, jnp.roll(window, -1).at[-1].set(tok), window.at[n].set(tok))
      return (window, jnp.minimum(n + 1, context)), tok

    _, toks = jax.lax.scan(one, (window, jnp.asarray(n0)), jax.random.split(key, length))
    return toks

  return sample


def samples(config: ml_collections.ConfigDict, model, params, text) -> list[str]:
  """config.num_samples texts continuing config.prompt, each prompt + sample_length
  new characters; the same for the same sample_seed."""
  if not config.prompt:
    raise UserError("config.prompt must not be empty")
  prompt = text.encode(config.prompt)
  sample = make_sampler(model, config.context, config.sample_length, config.temperature,
                        config.top_k)
  key = jax.random.PRNGKey(config.sample_seed)
  return [config.prompt + text.decode(sample(params, prompt, jax.random.fold_in(key, i)))
          for i in range(config.num_samples)]


def _write_samples(workdir: str, texts: list[str]) -> None:
  with open(os.path.join(workdir, "samples.txt"), "w", encoding="utf-8") as f:
    f.write("\n\n---------------\n\n".join(texts) + "\n")


def _check(config: ml_collections.ConfigDict, text) -> None:
  text_lib.check_context(text, config.context)
  for key in ("num_train_steps", "batch_size", "eval_batch_size"):
    if config[key] < 1:
      raise UserError(f"config.{key} must be >= 1, got {config[key]}")
  if config.sample_length < 1 or config.num_samples < 0:
    raise UserError("config.sample_length must be >= 1 and num_samples >= 0")
  text.encode(config.prompt)  # a bad prompt fails before training, not after
  nan_guard.validate(config)


def run(config: ml_collections.ConfigDict, workdir: str, text) -> loop.Outcome:
  """Trains (or resumes) in workdir; results.json as in the module docstring, and
  samples.txt."""
  _check(config, text)
  model = make_model(config, text.vocab_size)
  steps = config.num_train_steps
  tx, lr = optimizers.create(config.optimizer, steps, steps)
  init = make_init(model, tx, (config.context,), config.seed, jnp.int32)
  mesh = parallel.make_mesh(config.mesh)
  local_batch = parallel.check_batch_size(config.batch_size, mesh)
  evaluate = make_evaluate(model, config, text.val)

  def batches(start: int):
    for s in range(start, steps):
      yield {"tokens": text_lib.train_window_batch(text.train, config.seed, s, local_batch,
                                                   config.context, jax.process_index())}

  def results(test: dict, last_train: dict, state) -> dict[str, Any]:
    del state
    vals = [r["loss"] for r in metrics.read_metrics(workdir) if r["split"] in ("eval", "test")]
    return {"val_loss": test["loss"], "val_bits_per_char": test["bits_per_char"],
            "best_val_loss": min(vals + [test["loss"]]),
            "best_val_step": (saved_steps(loop.best_folder(workdir)) or [None])[-1],
            "final_train_loss": last_train.get("loss")}

  def after(state, res) -> None:
    if config.num_samples:  # from the best parameters (none kept if every row was NaN)
      best = loop.best_params(workdir)
      params = state.params if best is None else best
      _write_samples(workdir, samples(config, model, params, text))

  trainer = loop.Trainer(
      name=f"char_lm {config.model.name}", init=init, step=make_step(model, tx),
      evaluate=evaluate, results=results, batches=batches, after=after, keep_best="loss",
      log_extras=lambda s: {"learning_rate": float(lr(s))}, progress={"loss": "loss"},
      examples_per_step=config.batch_size * config.context,
      init_error=f"config.model cannot read windows of {config.context} tokens",
      # The Transformer's own rule splits its blocks over a 'model' mesh axis.
      shardings=functools.partial(parallel.param_sharding, model_axis_dim=model_axis_dim)
      if config.model.name == "transformer" else parallel.param_sharding)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
  out = loop.run(config, workdir, trainer, mesh=mesh, steps_per_epoch=steps,
                 total_steps=steps)
  out.results["tokens_per_second"] = out.results.get("examples_per_second")
  if jax.process_index() == 0:
    run_folder.atomic_write_json(os.path.join(workdir, VOCAB_FILE),
                                 {"name": text.name, "chars": text.chars})
    run_folder.atomic_write_json(os.path.join(workdir, "results.json"), out.results)
  return out


def sample_from(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Samples from the trained run in config.sample_from with this config's prompt,
  temperature, top_k, length and seed; prints nothing, returns {"samples": [...]}."""
  workdir = config.sample_from
  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      trained = ml_collections.ConfigDict(json.load(f))
    with open(os.path.join(workdir, VOCAB_FILE), encoding="utf-8") as f:
      vocab = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"config.sample_from={workdir} is not a finished char_lm run "
                    f"({getattr(e, 'strerror', None) or e})") from None
  text = text_lib.Text(vocab["name"], vocab["chars"], np.zeros(0, np.int32),
                       np.zeros(0, np.int32))
  model = make_model(trained, text.vocab_size)
  params = loop.best_params(workdir)  # a run from before the best was kept: its last
  if params is None:
    params = read_checkpoint(os.path.join(workdir, "checkpoints"))["params"]
  settings = ml_collections.ConfigDict(config.to_dict())
  settings.context = trained.context
  return {"samples": samples(settings, model, params, text)}
