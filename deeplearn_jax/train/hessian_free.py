"""Hessian-free optimisation (Martens 2010; Martens & Sutskever 2011) for a squared loss.

    direction, info = hf_direction(predict, params, targets, grads, damping, start, iters)

The curvature is the Gauss-Newton matrix G = J^T H_L J of the model's outputs, never
formed: `gauss_newton_product` multiplies by it with one `jax.jvp` (J v) and one
`jax.vjp` (J^T u). Conjugate gradient solves (G + damping I) d = -g from a warm start
(the last direction, decayed), and the damping follows the Levenberg-Marquardt rule on
the ratio of the actual to the predicted reduction. Structural damping (M & S 2011's
extra term for RNNs) is not implemented.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any


def _dot(a: Params, b: Params) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x: Params, y: Params) -> Params:
  return jax.tree.map(lambda a, b: alpha * a + b, x, y)


def gauss_newton_product(predict: Callable[[Params], jax.Array], params: Params,
                         v: Params) -> Params:
  """G v = J^T H_L J v for the loss mean((predict(params) - targets)^2): J is the
  Jacobian of the outputs by the parameters and H_L = 2 I / (number of outputs)."""
  outputs, jv = jax.jvp(predict, (params,), (v,))
  _, pullback = jax.vjp(predict, params)
  return pullback(jv * (2.0 / outputs.size))[0]


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, x0: Params,
                       iters: int) -> Params:
  """`iters` steps of conjugate gradient on A x = b (A symmetric positive definite)."""
  r = _axpy(-1.0, matvec(x0), b)

  def body(_, carry):
    x, r, p, rr = carry
    ap = matvec(p)
    alpha = rr / jnp.maximum(_dot(p, ap), 1e-30)
    x, r = _axpy(alpha, p, x), _axpy(-alpha, ap, r)
    rr_new = _dot(r, r)
    p = _axpy(rr_new / jnp.maximum(rr, 1e-30), p, r)
    return x, r, p, rr_new

  x, *_ = jax.lax.fori_loop(0, iters, body, (x0, r, r, _dot(r, r)))
  return x


def hf_update(loss: Callable[[Params], jax.Array], predict: Callable[[Params], jax.Array],
              params: Params, damping: jax.Array, previous: Params, *, cg_iters: int,
              decay: float = 0.95):
  """One HF step: (new params, new damping, direction, metrics). The step is taken only
  when it lowers the loss; damping is x2/3 when the actual reduction is over 3/4 of the
  quadratic model's, x3/2 when under 1/4 (Levenberg-Marquardt)."""
  value, grads = jax.value_and_grad(loss)(params)
  gv = lambda v: gauss_newton_product(predict, params, v)
  damped = lambda v: _axpy(damping, v, gv(v))
  start = jax.tree.map(lambda d: decay * d, previous)
  direction = conjugate_gradient(damped, jax.tree.map(jnp.negative, grads), start, cg_iters)
  # The undamped quadratic model's predicted change of the loss.
  predicted = _dot(grads, direction) + 0.5 * _dot(direction, gv(direction))
  candidate = _axpy(1.0, direction, params)
  new_value = loss(candidate)
  rho = (new_value - value) / jnp.minimum(predicted, -1e-30)
  damping = jnp.where(rho > 0.75, damping * 2 / 3, jnp.where(rho < 0.25, damping * 1.5,
                                                              damping))
  accept = jnp.isfinite(new_value) & (new_value < value)
  params = jax.tree.map(lambda c, p: jnp.where(accept, c, p), candidate, params)
  return params, damping, direction, {"loss": value, "rho": rho, "damping": damping,
                                      "accepted": accept.astype(jnp.float32)}
