"""dot_general: the one contraction primitive (as ``lax.dot_general``).

``dot_general(lhs, rhs, dimension_numbers=((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)))``
sums over the contracting axes, keeps the batch axes paired, and returns axes in the order
``(batch..., lhs free..., rhs free...)``. ``matmul``, ``dot``, ``tensordot``, ``inner``,
``outer`` and ``einsum`` in ``fgrad.numpy`` are all written on it, so this is the only place
that needs derivative and batching rules for contractions.

The implementation transposes both operands to ``(batch, free, contract)`` /
``(batch, contract, free)``, flattens them to 3-D (2-D without batch axes) and calls
``np.matmul`` so that BLAS does the work.
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, shape_of
from ..jvp import defjvp
from ..staging import ShapedArray
from ..vmap import move_axis, not_mapped


def _free(ndim, contract, batch):
    return [i for i in range(ndim) if i not in contract and i not in batch]


def _dot_general_impl(lhs, rhs, *, dimension_numbers):
    (lc, rc), (lb, rb) = dimension_numbers
    lhs, rhs = np.asarray(lhs), np.asarray(rhs)
    lf, rf = _free(lhs.ndim, lc, lb), _free(rhs.ndim, rc, rb)
    batch_shape = tuple(lhs.shape[i] for i in lb)
    lf_shape = tuple(lhs.shape[i] for i in lf)
    rf_shape = tuple(rhs.shape[i] for i in rf)
    # math.prod of Python ints: np.prod on a tuple costs ~5 us a call, this ~0.2 us
    k = math.prod(lhs.shape[i] for i in lc)
    m, n = math.prod(lf_shape), math.prod(rf_shape)
    a = np.transpose(lhs, tuple(lb) + tuple(lf) + tuple(lc))
    b = np.transpose(rhs, tuple(rb) + tuple(rc) + tuple(rf))
    if k == 1 and lb:
        # Fast path: nothing to sum (an outer product per batch element, as in per-example
        # weight gradients under vmap). A broadcast multiply beats a stack of K=1 matmuls,
        # which NumPy runs ~10x slower (measured in benchmarks/bench_per_example.py).
        out = a.reshape(batch_shape + (m, 1)) * b.reshape(batch_shape + (1, n))
        return out.reshape(batch_shape + lf_shape + rf_shape)
    # Keep the batch axes as they are and merge only the free and the contracted groups:
    # np.matmul loops over stacked batch axes itself and hands BLAS strided (even transposed)
    # matrices, so views such as the heads of a packed q/k/v projection need no copy. Merging
    # the batch axes into one (as a 3-D matmul would) copies both operands whenever their
    # strides don't line up (measured: attention scores of a 4-head GPT, 0.75 -> 0.4 ms).
    out = np.matmul(a.reshape(batch_shape + (m, k)), b.reshape(batch_shape + (k, n)))
    return out.reshape(batch_shape + lf_shape + rf_shape)


dot_general_p = Primitive("dot_general", _dot_general_impl)


def dot_general(lhs, rhs, dimension_numbers):
    (lc, rc), (lb, rb) = dimension_numbers
    dn = ((tuple(lc), tuple(rc)), (tuple(lb), tuple(rb)))
    return dot_general_p.bind(lhs, rhs, dimension_numbers=dn)


# bilinear: d(x . y) = dx . y + x . dy
defjvp(dot_general_p,
       lambda x_dot, ans, x, y, *, dimension_numbers: dot_general(x_dot, y, dimension_numbers),
       lambda y_dot, ans, x, y, *, dimension_numbers: dot_general(x, y_dot, dimension_numbers))


def _ranges_like(*groups):
    start = 0
    for g in groups:
        yield list(range(start, start + len(g)))
        start += len(g)


def _transpose_lhs(g, x_ndim, y, dimension_numbers, swap_ans=False):
    """x_bar for ans = dot_general(x, y): contract g with y over y's free axes, then put x's axes back."""
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    x_kept = _free(x_ndim, x_contract, x_batch)
    y_kept = _free(len(shape_of(y)), y_contract, y_batch)
    if swap_ans:
        ans_batch, ans_y, _ = _ranges_like(x_batch, y_kept, x_kept)
    else:
        ans_batch, _, ans_y = _ranges_like(x_batch, x_kept, y_kept)
    dims = ((ans_y, y_kept), (ans_batch, list(y_batch)))
    # g.y has axes (batch, x_kept, y_contract order); sort the contracted axes into x's order
    x_contract_sorted_by_y = [x_contract[i] for i in np.argsort(y_contract)]
    out_axes = np.argsort(list(x_batch) + x_kept + x_contract_sorted_by_y)
    return fnp.transpose(dot_general(g, y, dims), tuple(int(a) for a in out_axes))


def _transpose_rhs(g, x, y_ndim, dimension_numbers):
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    swapped = ((y_contract, x_contract), (y_batch, x_batch))
    return _transpose_lhs(g, y_ndim, x, swapped, swap_ans=True)


dot_general_p.vjp = (
    lambda g, ans, x, y, *, dimension_numbers: _transpose_lhs(g, len(shape_of(x)), y, dimension_numbers),
    lambda g, ans, x, y, *, dimension_numbers: _transpose_rhs(g, x, len(shape_of(y)), dimension_numbers),
)


def _dot_general_batch(vals, dims, *, dimension_numbers):
    (x, y), (dx, dy) = vals, dims
    (lc, rc), (lb, rb) = dimension_numbers

    def shift(axes):
        return tuple(a + 1 for a in axes)

    if dx is not not_mapped and dy is not not_mapped:   # a new shared batch axis, first
        x, y = move_axis(x, dx, 0), move_axis(y, dy, 0)
        dn = ((shift(lc), shift(rc)), ((0,) + shift(lb), (0,) + shift(rb)))
        return dot_general(x, y, dn), 0
    if dx is not not_mapped:   # the batch axis is a free axis of lhs: first of lhs's free axes
        x = move_axis(x, dx, 0)
        return dot_general(x, y, ((shift(lc), rc), (shift(lb), rb))), len(lb)
    y = move_axis(y, dy, 0)    # a free axis of rhs: after the batch and lhs free axes
    n_lhs_free = len(shape_of(x)) - len(lc) - len(lb)
    return dot_general(x, y, ((lc, shift(rc)), (lb, shift(rb)))), len(lb) + n_lhs_free


dot_general_p.batch = _dot_general_batch


def _dot_general_abstract_eval(lhs, rhs, *, dimension_numbers):
    """Output axes (batch..., lhs free..., rhs free...); dtype as np.matmul promotes."""
    (lc, rc), (lb, rb) = dimension_numbers
    ls, rs = shape_of(lhs), shape_of(rhs)
    shape = (tuple(ls[i] for i in lb) + tuple(ls[i] for i in _free(len(ls), lc, lb))
             + tuple(rs[i] for i in _free(len(rs), rc, rb)))
    return ShapedArray(shape, np.result_type(np.dtype(lhs.dtype) if hasattr(lhs, "dtype") else lhs,
                                             np.dtype(rhs.dtype) if hasattr(rhs, "dtype") else rhs))


dot_general_p.abstract_eval = _dot_general_abstract_eval
