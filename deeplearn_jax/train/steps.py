"""Jitted train and eval steps of supervised classification."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from deeplearn_jax.train import losses, nan_guard
from deeplearn_jax.train.state import TrainState, path_name


def _variables(state: TrainState, params):
  v = {"params": params}
  if state.batch_stats:
    v["batch_stats"] = state.batch_stats
  return v


def _extra_inputs(batch) -> dict:
  """The model's keyword inputs a batch carries besides `input`: `lengths` of padded
  sequences, when present."""
  return {"lengths": batch["lengths"]} if "lengths" in batch else {}


def kernel_grad_norms(grads) -> dict[str, jax.Array]:
  """The L2 norm of the gradient of every weight matrix or filter (biases and batch-norm
  parameters left out), keyed by its module path, e.g. 'Dense_0' or 'block/conv'."""
  out = {}
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    if g.ndim > 1:
      name = path_name(path[:-1])
      # Scaled by the largest entry: squares of vanished gradients (< 1e-19) underflow.
      g = g.astype(jnp.float32)
      scale = jnp.max(jnp.abs(g))
      scale = jnp.where(scale > 0, scale, 1.0)
      out[name] = scale * jnp.sqrt(jnp.sum(jnp.square(g / scale)))
  return out


LOSSES = ("softmax", "masked_bce")


def data_loss(kind: str, logits, batch, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss: 'softmax' (cross-entropy, integer labels) or 'masked_bce'
  (multi-label [b, tasks], label -1 missing, the batch's optional 'weight' per entry)."""
  if kind == "masked_bce":
    return losses.masked_binary_cross_entropy(logits, batch["label"], batch.get("weight"))
  return losses.cross_entropy(logits, batch["label"], label_smoothing)


def correct(kind: str, logits, labels) -> jax.Array:
  """Per-example accuracy: argmax == label, or the fraction of labelled tasks right."""
  if kind == "masked_bce":
    return losses.multilabel_correct(logits, labels)
  return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def loss_kind(config: ml_collections.ConfigDict) -> str:
  kind = config.get("loss", "softmax")
  if kind not in LOSSES:
    raise ValueError(f"config.loss must be one of {', '.join(LOSSES)}, got {kind!r}")
  return kind


def make_loss(model: nn.Module, config: ml_collections.ConfigDict):
  """loss(params, state, batch, rng) -> (total, (data loss, logits, new variables)):
  the training objective (config.loss, default softmax cross-entropy), with config's
  label smoothing and L1/L2 penalties, in training mode (dropout on, batch norm on the
  batch's statistics)."""
  l1, l2, smoothing = config.l1, config.l2, config.label_smoothing
  kind = loss_kind(config)

  def loss(params, state: TrainState, batch, rng):
    has_bn = bool(state.batch_stats)
    out = model.apply(_variables(state, params), batch["input"], train=True,
                      **_extra_inputs(batch), rngs={"dropout": rng},
                      mutable=["batch_stats"] if has_bn else False)
    logits, new_vars = out if has_bn else (out, {})
    ce = data_loss(kind, logits, batch, smoothing).mean()
    total = ce
    if l2 > 0:
      total = total + l2 * losses.l2_penalty(params)
    if l1 > 0:
      total = total + l1 * losses.l1_penalty(params)
    return total, (ce, logits, new_vars)

  return loss


def layer_grad_norms(model: nn.Module, config: ml_collections.ConfigDict, state: TrainState,
                     batch) -> dict[str, jax.Array]:
  """Each kernel's gradient norm of the training objective at `state` on `batch`
  (e.g. at initialisation, where vanishing gradients show)."""
  loss = make_loss(model, config)

  @jax.jit  # one compilation, not one per operation
  def norms(state, batch):
    rng = jax.random.fold_in(state.rng, 0)
    return kernel_grad_norms(jax.grad(lambda p: loss(p, state, batch, rng)[0])(state.params))

  return norms(state, batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict):
  """config: the experiment config (reads l1, l2, max_norm, label_smoothing, and
  log_layer_grad_norms: add each kernel's gradient norm as `grad_norm/<module>`)."""
  loss_fn = make_loss(model, config)
  kind = loss_kind(config)
  # Models that know their layers' dropout (the MLP) state the max-norm radius in
  # Srivastava et al.'s units; for the others it bounds the weights as they are.
  input_keep = getattr(model, "input_keep", dict)()

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (total, (ce, logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    if config.max_norm > 0:
      params = losses.max_norm(params, config.max_norm, input_keep)
    updated = state.replace(params=params, opt_state=opt_state,
                            batch_stats=new_vars.get("batch_stats", state.batch_stats))
    # A non-finite loss skips the update and records its step (see nan_guard).
    ok = jnp.isfinite(total)
    new_state = nan_guard.guarded_update(state, updated, ok)
    metrics = {"loss": ce, "total_loss": total, "finite": ok.astype(jnp.float32),
               "accuracy": jnp.mean(correct(kind, logits, batch["label"]))}
    if config.log_layer_grad_norms:
      metrics.update({f"grad_norm/{k}": v for k, v in kernel_grad_norms(grads).items()})
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, num_classes: int, flip: bool = False,
                   loss: str = "softmax"):
  """Returns sums over the real (mask=1) rows; the host divides by `count`. flip: the
  logits are the mean over each image and its horizontal mirror. loss: as config.loss
  (masked_bce: the unweighted masked loss, accuracy over the labelled tasks)."""

  def eval_step(state: TrainState, batch):
    apply = lambda x: model.apply(_variables(state, state.params), x, train=False,
                                  **_extra_inputs(batch))
    logits = apply(batch["input"])
    if flip:
      logits = 0.5 * (logits + apply(batch["input"][:, :, ::-1]))
    mask = batch["mask"]
    unweighted = {k: v for k, v in batch.items() if k != "weight"}
    out = {"loss": jnp.sum(data_loss(loss, logits, unweighted) * mask),
           "accuracy": jnp.sum(correct(loss, logits, batch["label"]) * mask),
           "count": jnp.sum(mask)}
    if num_classes > 5 and loss == "softmax":
      out["top5_accuracy"] = jnp.sum(losses.topk_correct(logits, batch["label"], 5) * mask)
    return out

  return eval_step
