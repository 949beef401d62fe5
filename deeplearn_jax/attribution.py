"""What a trained classifier looks at: attribution maps, and scores of how good a map is.

    maps = attribution.attribute("integrated_gradients", apply_fn, variables, images, labels,
                                 input_shape)

Methods (each a pure function of (apply_fn, params, images, labels, ...) that returns a
map of the images' shape, jitted with apply_fn static and batched over the images):
  occlusion             Zeiler & Fergus 2014: a patch of the baseline value (or with
                        fill='blur' of the blurred copy) slid over the image; each pixel
                        gets the mean drop in the class score of the patches that cover it
  gradients             Simonyan, Vedaldi & Zisserman 2013: d score / d input
  smoothgrad            Smilkov et al. 2017: gradients averaged over noisy copies
  integrated_gradients  Sundararajan, Taly & Yan 2017: (x - x0) times the gradient
                        averaged along the straight path from the baseline x0 to x
                        (trapezoid rule); attributions sum to F(x) - F(x0) (completeness)
Scores (Petsiuk, Das & Saenko 2018): deletion and insertion curves of the class
probability as pixels, or square regions of them (Samek et al. 2017), are removed (set to
the baseline, or with fill='blur' to a blurred copy) or added (onto the blurred copy) in
the order a map ranks them; their areas (lower deletion, higher insertion is better)
against a random order.

The class score F is the softmax probability of the label (target='prob') or its logit
(target='logit'). `apply_fn(params, images) -> logits` must act on each image alone (a
model with batch norm in inference mode does).
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from deeplearn_jax.errors import UserError

ApplyFn = Callable[[Any, jax.Array], jax.Array]
METHODS = ("occlusion", "gradients", "smoothgrad", "integrated_gradients")
FILLS = ("baseline", "blur")  # what a removed pixel becomes (occlusion, deletion)


def class_score(apply_fn: ApplyFn, params, images, labels, target: str = "prob") -> jax.Array:
  """F(x) for each image: the label's softmax probability or logit, [N]."""
  logits = apply_fn(params, images)
  if target == "prob":
    logits = jax.nn.softmax(logits, axis=-1)
  elif target != "logit":
    raise ValueError(f"target must be 'prob' or 'logit', got {target!r}")
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def _input_grads(apply_fn, params, images, labels, target):
  # Each image's score depends only on that image, so the gradient of the sum is the
  # per-image gradient, in one backward pass.
  return jax.grad(lambda x: class_score(apply_fn, params, x, labels, target).sum())(images)


@functools.partial(jax.jit, static_argnames=("apply_fn", "target"))
def gradients(apply_fn: ApplyFn, params, images, labels, target: str = "prob") -> jax.Array:
  """The vanilla gradient map (Simonyan et al. 2013)."""
  return _input_grads(apply_fn, params, images, labels, target)


@functools.partial(jax.jit, static_argnames=("apply_fn", "samples", "target"))
def smoothgrad(apply_fn: ApplyFn, params, images, labels, key, samples: int = 32,
               sigma: float = 0.15, target: str = "prob") -> jax.Array:
  """Gradients averaged over `samples` copies with Gaussian noise of std `sigma` times each
  image's value range (Smilkov et al. 2017 found 10-20% best)."""
  axes = tuple(range(1, images.ndim))
  scale = sigma * (images.max(axes, keepdims=True) - images.min(axes, keepdims=True))

  def one(total, k):
    noisy = images + scale * jax.random.normal(k, images.shape, images.dtype)
    return total + _input_grads(apply_fn, params, noisy, labels, target), None

  total, _ = jax.lax.scan(one, jnp.zeros_like(images), jax.random.split(key, samples))
  return total / samples


@functools.partial(jax.jit, static_argnames=("apply_fn", "steps", "target"))
def integrated_gradients(apply_fn: ApplyFn, params, images, labels, baseline=None,
                         steps: int = 64, target: str = "prob") -> jax.Array:
  """(x - x0) * the path-mean of the gradient from x0 (default: zeros) to x, by the
  trapezoid rule over `steps` intervals. Exact for a model linear in its input."""
  baseline = jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(baseline,
                                                                             images.shape)
  alphas = jnp.linspace(0.0, 1.0, steps + 1)
  weights = jnp.full((steps + 1,), 1.0 / steps).at[0].set(0.5 / steps).at[-1].set(0.5 / steps)

  def one(total, aw):
    alpha, w = aw
    g = _input_grads(apply_fn, params, baseline + alpha * (images - baseline), labels, target)
    return total + w * g, None

  mean_grad, _ = jax.lax.scan(one, jnp.zeros_like(images), (alphas, weights))
  return (images - baseline) * mean_grad


def _check_fill(fill: str) -> None:
  if fill not in FILLS:
    raise UserError(f"unknown fill {fill!r}; known: {', '.join(FILLS)}")


def _patch_corners(size: int, patch: int, stride: int) -> list[int]:
  corners = list(range(0, max(size - patch, 0) + 1, stride))
  if corners[-1] + patch < size:  # the last patch reaches the border
    corners.append(size - patch)
  return corners


@functools.partial(jax.jit, static_argnames=("apply_fn", "patch", "stride", "fill",
                                             "blur_sigma", "target"))
def occlusion(apply_fn: ApplyFn, params, images, labels, patch: int = 4, stride: int = 2,
              value: float = 0.0, fill: str = "baseline", blur_sigma: float = 2.0,
              target: str = "prob") -> jax.Array:
  """Zeiler & Fergus 2014: F(x) - F(x with a patch x patch square set to `value`, or with
  fill='blur' to the blurred copy: a grey square adds edges of its own, a blurred one
  only takes the detail away), for every patch position (every `stride` pixels); each
  pixel gets the mean over the patches that cover it, repeated over the channels."""
  _check_fill(fill)
  n, h, w = images.shape[:3]
  corners = np.array([(i, j) for i in _patch_corners(h, patch, stride)
                      for j in _patch_corners(w, patch, stride)], np.int32)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  full = class_score(apply_fn, params, images, labels, target)
  occluder = blur(images, blur_sigma) if fill == "blur" else value

  def one(carry, corner):
    drop_sum, count = carry
    i, j = corner[0], corner[1]
    inside = (rows >= i) & (rows < i + patch) & (cols >= j) & (cols < j + patch)  # [h, w]
    mask = inside.reshape(1, h, w, *([1] * (images.ndim - 3)))
    drop = full - class_score(apply_fn, params, jnp.where(mask, occluder, images), labels,
                              target)
    return (drop_sum + drop[:, None, None] * inside, count + inside), None

  (drop_sum, count), _ = jax.lax.scan(
      one, (jnp.zeros((n, h, w)), jnp.zeros((h, w))), jnp.asarray(corners))
  heat = drop_sum / jnp.maximum(count, 1)
  return jnp.broadcast_to(heat.reshape(n, h, w, *([1] * (images.ndim - 3))), images.shape)


def blur(images: jax.Array, sigma: float) -> jax.Array:
  """A Gaussian blur of NHWC images (each channel alone, edges padded by reflection): the
  insertion curve's starting canvas."""
  radius = max(1, int(round(3 * sigma)))
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (t / sigma) ** 2)
  k = k / k.sum()
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
  h, w = images.shape[1:3]
  x = sum(k[d] * x[:, d:d + h] for d in range(2 * radius + 1))
  return sum(k[d] * x[:, :, d:d + w] for d in range(2 * radius + 1))


def deletion_insertion(apply_fn: ApplyFn, params, images, labels, maps, baseline=0.0,
                       blur_sigma: float = 2.0, steps: int = 28, region: int = 1,
                       fill: str = "baseline") -> dict[str, jax.Array]:
  """Petsiuk et al. 2018: pixels ranked by the map (summed over channels), then removed
  (set to `baseline`, or with fill='blur' to the blurred copy: scattered pixels then
  take their neighbourhood's colour instead of standing out as dots, so a random order
  no longer wins by adding noise) or inserted (onto the blurred copy) in that order,
  `steps` equal groups at a time. With region > 1, squares of region x region pixels are
  ranked by their summed map and removed or inserted whole (Samek et al. 2017's region
  perturbation): a random order then removes blocks, not scattered pixels, which a net
  reads as noise. Returns the curves of the label's probability [N, steps + 1] and
  their areas over the fraction of the image [N] ('deletion': lower is better,
  'insertion': higher is better)."""
  h, w = images.shape[1:3]
  if region < 1 or h % region or w % region:
    raise UserError(f"the deletion/insertion region {region} must be >= 1 and divide the "
                    f"image's {h} x {w} pixels")
  _check_fill(fill)
  return _deletion_insertion(apply_fn, params, images, labels, maps, baseline, blur_sigma,
                             steps, region, fill)


@functools.partial(jax.jit, static_argnames=("apply_fn", "steps", "blur_sigma", "region",
                                             "fill"))
def _deletion_insertion(apply_fn, params, images, labels, maps, baseline, blur_sigma, steps,
                        region, fill):
  n, h, w = images.shape[:3]
  rows, cols = h // region, w // region
  saliency = maps.reshape(n, rows, region, cols, region, -1).sum((2, 4, 5)).reshape(n, -1)
  rank = jnp.argsort(jnp.argsort(-saliency, axis=1), axis=1).reshape(n, rows, cols)  # 0 = top
  rank = jnp.repeat(jnp.repeat(rank, region, 1), region, 2)[..., None]
  canvas = blur(images, blur_sigma)
  removed = (canvas if fill == "blur" else
             jnp.broadcast_to(jnp.asarray(baseline, images.dtype), images.shape))
  counts = jnp.round(jnp.linspace(0, rows * cols, steps + 1)).astype(jnp.int32)

  def one(_, k):
    top = rank < k
    deleted = class_score(apply_fn, params, jnp.where(top, removed, images), labels)
    inserted = class_score(apply_fn, params, jnp.where(top, images, canvas), labels)
    return None, (deleted, inserted)

  _, (deleted, inserted) = jax.lax.scan(one, None, counts)
  area = lambda curve: jnp.trapezoid(curve, dx=1.0 / steps, axis=0)
  return {"deletion": area(deleted), "insertion": area(inserted),
          "deletion_curve": deleted.T, "insertion_curve": inserted.T}


def check_inputs(images, labels, input_shape, num_classes: int) -> None:
  """UserError (one line) for images a model does not take or labels it cannot give."""
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
    raise UserError(f"images of shape {tuple(images.shape[1:])} do not fit the model, "
                    f"which takes {tuple(input_shape)}")
  if labels.shape != images.shape[:1]:
    raise UserError(f"{labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} "
                    "images")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise UserError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")


def attribute(method: str, apply_fn: ApplyFn, params, images, labels, input_shape,
              num_classes: int, *, batch_size: int = 100, **kwargs) -> np.ndarray:
  """The maps of `method` for every image, computed `batch_size` images at a time (one
  compilation: the last batch is padded), after checking the inputs."""
  if method not in METHODS:
    raise UserError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
  check_inputs(images, labels, input_shape, num_classes)
  fn = globals()[method]
  return _batched(lambda x, y: fn(apply_fn, params, x, y, **kwargs), images, labels,
                  batch_size)


def scores(apply_fn: ApplyFn, params, images, labels, maps, *, batch_size: int = 100,
           **kwargs) -> dict[str, np.ndarray]:
  """deletion_insertion over all images, `batch_size` at a time."""
  return _batched(lambda x, y, m: deletion_insertion(apply_fn, params, x, y, m, **kwargs),
                  images, labels, batch_size, maps)


def scores_of(apply_fn: ApplyFn, params, images, labels, *, batch_size: int = 100,
              target: str = "prob") -> np.ndarray:
  """class_score of every image, `batch_size` at a time."""
  return _batched(lambda x, y: _class_score_jit(apply_fn, params, x, y, target), images,
                  labels, batch_size)


_class_score_jit = jax.jit(class_score, static_argnames=("apply_fn", "target"))


def _batched(fn, images, labels, batch_size: int, *more):
  n = len(images)
  pieces = []
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size) % n  # pad the last batch with repeats
    got = fn(jnp.asarray(images[idx]), jnp.asarray(labels[idx]),
             *[jnp.asarray(m[idx]) for m in more])
    keep = min(batch_size, n - start)
    pieces.append(jax.tree.map(lambda a: np.asarray(a)[:keep], got))
  return jax.tree.map(lambda *a: np.concatenate(a), *pieces)
