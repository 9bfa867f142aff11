"""Reductions over static axes: sum, max, min, prod, argmax/argmin, any/all, cumsum.

The primitives never keep dims; ``fgrad.numpy`` reshapes for ``keepdims=True``. In every VJP
the cotangent first gets its reduced axes back (:func:`expand_to`), then broadcasts over them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of, shape_of
from ..jvp import defjvp
from ..staging import reduction_abstract_eval
from ..vmap import reduction_batch_rule


def expand_to(g, x_shape, axes):
    """Put the reduced ``axes`` back into ``g`` (as size 1) and broadcast to ``x_shape``."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
    return fnp.broadcast_to(fnp.reshape(g, kept), x_shape)


# --- sum: linear; the adjoint copies g back over the summed axes --------------------------------

reduce_sum_p = Primitive("reduce_sum", lambda x, *, axes: np.sum(x, axis=axes))
defjvp(reduce_sum_p, lambda x_dot, ans, x, *, axes: reduce_sum_p.bind(x_dot, axes=axes))
reduce_sum_p.vjp = (lambda g, ans, x, *, axes: expand_to(g, shape_of(x), axes),)
reduction_batch_rule(reduce_sum_p)


# --- max / min: the derivative flows to the extremal entries, split evenly between ties ----------

def _extremum(name, np_fn):
    prim = Primitive(name, lambda x, *, axes: np_fn(x, axis=axes))

    def hits(ans, x, axes):   # 1 at each of the k positions that attain the extremum, and k
        hit = (x == expand_to(ans, shape_of(x), axes)).astype(dtype_of(x))
        return hit, reduce_sum_p.bind(hit, axes=axes)

    # mask = hit / k:  d max(x) = sum(dx * hit) / k;  max(x)_bar = (g / k) * hit
    # (dividing the reduced g, not the full-size mask, saves a pass over x)
    def jvp(x_dot, ans, x, *, axes):
        hit, k = hits(ans, x, axes)
        return reduce_sum_p.bind(x_dot * hit, axes=axes) / k

    def vjp(g, ans, x, *, axes):
        hit, k = hits(ans, x, axes)
        return expand_to(g / k, shape_of(x), axes) * hit
    defjvp(prim, jvp)
    prim.vjp = (vjp,)
    return reduction_batch_rule(prim)


reduce_max_p = _extremum("reduce_max", np.max)
reduce_min_p = _extremum("reduce_min", np.min)


# --- prod: d prod(x) / dx_i = prod_{j != i} x_j (exact with zeros, unlike prod / x_i) ---------------

reduce_prod_p = Primitive("reduce_prod", lambda x, *, axes: np.prod(x, axis=axes))


def _prod_others(x, axes):
    """``prod_{j != i} x_j`` over ``axes`` for every i, shaped like ``x``."""
    shape = shape_of(x)
    rest = [i for i in range(len(shape)) if i not in axes]
    xt = fnp.transpose(x, tuple(rest) + tuple(axes))           # (..kept.., ..reduced..)
    kept_shape = tuple(shape[i] for i in rest)
    n = math.prod(shape[i] for i in axes)
    flat = fnp.reshape(xt, kept_shape + (n,))
    # row i of the (n, n) grid holds x with x_i replaced by 1; its product is prod_{j != i} x_j
    grid = fnp.where(np.eye(n, dtype=bool), 1, fnp.expand_dims(flat, -2))
    others = reduce_prod_p.bind(grid, axes=(len(kept_shape) + 1,))
    others = fnp.reshape(others, kept_shape + tuple(shape[i] for i in axes))
    return fnp.transpose(others, tuple(np.argsort(tuple(rest) + tuple(axes))))


defjvp(reduce_prod_p, lambda x_dot, ans, x, *, axes:
       reduce_sum_p.bind(x_dot * _prod_others(x, axes), axes=axes))
reduce_prod_p.vjp = (lambda g, ans, x, *, axes: expand_to(g, shape_of(x), axes) * _prod_others(x, axes),)
reduction_batch_rule(reduce_prod_p)


# --- no derivative: argmax/argmin (one axis), any/all ---------------------------------------------

argmax_p = reduction_batch_rule(Primitive("argmax", lambda x, *, axis: np.argmax(x, axis=axis),
                                          differentiable=False), "axis")
argmin_p = reduction_batch_rule(Primitive("argmin", lambda x, *, axis: np.argmin(x, axis=axis),
                                          differentiable=False), "axis")
reduce_any_p = reduction_batch_rule(Primitive("reduce_any", lambda x, *, axes: np.any(x, axis=axes),
                                              differentiable=False))
reduce_all_p = reduction_batch_rule(Primitive("reduce_all", lambda x, *, axes: np.all(x, axis=axes),
                                              differentiable=False))
argsort_p = reduction_batch_rule(Primitive("argsort", lambda x, *, axis: np.argsort(x, axis=axis,
                                                                                   kind="stable"),
                                           differentiable=False), "axis")


# --- cumsum: linear; the adjoint is a cumulative sum from the other end ---------------------------

cumsum_p = Primitive("cumsum", lambda x, *, axis: np.cumsum(x, axis=axis))
defjvp(cumsum_p, lambda x_dot, ans, x, *, axis: cumsum_p.bind(x_dot, axis=axis))
# y_j = sum_{i <= j} x_i  =>  x_bar_i = sum_{j >= i} y_bar_j
cumsum_p.vjp = (lambda g, ans, x, *, axis:
                fnp.flip(cumsum_p.bind(fnp.flip(g, axis), axis=axis), axis),)
reduction_batch_rule(cumsum_p, "axis")


# --- shape rules (staging): the reduced axes removed, NumPy's own result dtype ------------------
for _p in (reduce_sum_p, reduce_max_p, reduce_min_p, reduce_prod_p, reduce_any_p, reduce_all_p):
    reduction_abstract_eval(_p)
for _p in (argmax_p, argmin_p):
    reduction_abstract_eval(_p, "axis")
for _p in (argsort_p, cumsum_p):
    reduction_abstract_eval(_p, "axis", keeps_shape=True)
