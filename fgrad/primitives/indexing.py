"""Indexing: gather (``x[idx]``) and scatter (``x.at[idx].add/set/mul/min/max``).

An index is split into a static *template* and traced integer *arrays*: the template is the
index tuple with every integer array replaced by :data:`ARRAY`, and the arrays are positional
operands (so ``vmap`` can batch them: ``x[labels]`` with batched labels). Integers, slices,
``None`` and ``Ellipsis`` stay in the template. Boolean masks are turned into integer arrays
by ``fgrad.numpy`` before they get here (their shape depends on their values).

Batching with arrays uses one trick for every case: move the batch axis of ``x`` to the front
and add ``arange(B)`` as a leading advanced index. NumPy then puts the broadcast advanced
dimensions, batch first, at the front of the result whichever way the original index mixed
slices and arrays, so the output's batch axis is always 0.
"""
from __future__ import annotations

import numpy as np

from ..core import Primitive, dtype_of, shape_of
from ..jvp import defjvp
from ..staging import ShapedArray, same_abstract_eval
from ..vmap import batch_size, move_axis, move_to_front, not_mapped
from .. import numpy as fnp


class _ArrayMarker:
    __slots__ = ()

    def __repr__(self):
        return "ARRAY"


ARRAY = _ArrayMarker()


def build_index(template, arrays):
    it = iter(arrays)
    return tuple(next(it) if t is ARRAY else t for t in template)


# --- gather ----------------------------------------------------------------------------------

def _gather_impl(x, *arrays, template):
    return np.asarray(x)[build_index(template, arrays)]


gather_p = Primitive("gather", _gather_impl)
# gather is linear in x: d x[idx] = dx[idx]; the index arrays carry no derivative
defjvp(gather_p, lambda x_dot, ans, x, *arrays, template: gather_p.bind(x_dot, *arrays, template=template))
# the adjoint of reading x[idx] is adding g into zeros at idx (repeated indices accumulate)
gather_p.vjp = lambda i: (
    (lambda g, ans, x, *arrays, template:
     scatter_add_p.bind(fnp.zeros(shape_of(x), dtype_of(x)), g, *arrays, template=template))
    if i == 0 else None)


def _expand_ellipsis(template, ndim):
    consumed = sum(1 for t in template if t is not None and t is not Ellipsis)
    out = []
    for t in template:
        out.extend([slice(None)] * (ndim - consumed) if t is Ellipsis else [t])
    return out


def _batched_index(vals, dims, template, n_front):
    """Batch ``x`` (operand 0) and the index arrays (operands ``n_front:``) of a gather/scatter.

    Returns ``(x, arrays, template, x_bdim, out_bdim)``: ``x`` with its batch axis at ``x_bdim``
    and an index that selects per batch element, whose result has the batch axis at
    ``out_bdim``. NumPy puts a *contiguous* block of advanced indices (integer arrays and ints)
    where the block stands, and a split block first; so ``arange(B)`` joins the block at its
    start and ``x``'s batch axis goes where the block starts reading ``x``.
    """
    size = batch_size(vals, dims)
    x_ndim = len(shape_of(vals[0])) - (dims[0] is not not_mapped)
    x = move_to_front(vals[0], dims[0], size)
    arrays, array_dims = vals[n_front:], dims[n_front:]
    if not any(t is ARRAY for t in template):   # basic indexing keeps a leading axis in front
        return x, list(arrays), (slice(None),) + tuple(template), 0, 0
    t = _expand_ellipsis(template, x_ndim)
    adv = [i for i, e in enumerate(t) if e is ARRAY or isinstance(e, int)]
    k = adv[0] if adv == list(range(adv[0], adv[-1] + 1)) else 0
    x_bdim = sum(1 for e in t[:k] if e is not None)   # x axes read before the block
    x = move_axis(x, 0, x_bdim)
    rank = max([len(shape_of(a)) - (d is not not_mapped) for a, d in zip(arrays, array_dims)] + [0])
    new_arrays = [np.arange(size).reshape((size,) + (1,) * rank)]
    for a, d in zip(arrays, array_dims):
        if d is not_mapped:
            new_arrays.append(a)
        else:
            a = move_axis(a, d, 0)
            s = shape_of(a)
            new_arrays.append(fnp.reshape(a, (size,) + (1,) * (rank - len(s) + 1) + s[1:]))
    return x, new_arrays, tuple(t[:k]) + (ARRAY,) + tuple(t[k:]), x_bdim, k


def _gather_batch(vals, dims, *, template):
    x, arrays, template, _, out_bdim = _batched_index(vals, dims, template, 1)
    return gather_p.bind(x, *arrays, template=template), out_bdim


gather_p.batch = _gather_batch


def _gather_abstract_eval(x, *arrays, template):
    """NumPy's indexing shape rules, applied to a zero-stride view (no data of x's size)."""
    probe = np.broadcast_to(np.zeros((), bool), shape_of(x))
    index = build_index(template, [np.zeros(shape_of(a), np.intp) for a in arrays])
    return ShapedArray(probe[index].shape, dtype_of(x))


gather_p.abstract_eval = _gather_abstract_eval


# --- scatter: add, set, mul ----------------------------------------------------------------------

def _scatter_impl(mode):
    def impl(x, y, *arrays, template):
        out = np.array(x, copy=True)
        index = build_index(template, arrays)
        if mode == "set":
            out[index] = y
        elif arrays:   # ufunc.at accumulates over repeated indices
            (np.add if mode == "add" else np.multiply).at(out, index, y)
        elif mode == "add":
            out[index] += y
        else:
            out[index] *= y
        return out
    return impl


scatter_add_p = Primitive("scatter_add", _scatter_impl("add"))
scatter_set_p = Primitive("scatter_set", _scatter_impl("set"))
scatter_mul_p = Primitive("scatter_mul", _scatter_impl("mul"))


def _scatter_extremum_impl(ufunc):
    def impl(x, y, *arrays, template):
        out = np.array(x, copy=True)
        ufunc.at(out, build_index(template, arrays), y)   # every repeated index takes part
        return out
    return impl


scatter_min_p = Primitive("scatter_min", _scatter_extremum_impl(np.minimum))
scatter_max_p = Primitive("scatter_max", _scatter_extremum_impl(np.maximum))


def _gather(g, arrays, template):
    return gather_p.bind(g, *arrays, template=template)


def _zeros(x):
    return fnp.zeros(shape_of(x), dtype_of(x))


# out = x;  out[idx] += y
defjvp(scatter_add_p,
       lambda x_dot, ans, x, y, *arrays, template: x_dot,
       lambda y_dot, ans, x, y, *arrays, template:
       scatter_add_p.bind(_zeros(ans), y_dot, *arrays, template=template))
scatter_add_p.vjp = lambda i: {
    0: lambda g, ans, x, y, *arrays, template: g,                              # x_bar = g
    1: lambda g, ans, x, y, *arrays, template: _gather(g, arrays, template),   # y_bar = g[idx]
}.get(i)

# out = x;  out[idx] = y   (x's entries at idx are overwritten, so they get no derivative)
defjvp(scatter_set_p,
       lambda x_dot, ans, x, y, *arrays, template:
       scatter_set_p.bind(x_dot, 0, *arrays, template=template),
       lambda y_dot, ans, x, y, *arrays, template:
       scatter_set_p.bind(_zeros(ans), y_dot, *arrays, template=template))
scatter_set_p.vjp = lambda i: {
    0: lambda g, ans, x, y, *arrays, template: scatter_set_p.bind(g, 0, *arrays, template=template),
    1: lambda g, ans, x, y, *arrays, template: _gather(g, arrays, template),
}.get(i)

# out = x;  out[idx] *= y   (derivatives assume each index appears once)
defjvp(scatter_mul_p,
       lambda x_dot, ans, x, y, *arrays, template:
       scatter_mul_p.bind(x_dot, y, *arrays, template=template),
       lambda y_dot, ans, x, y, *arrays, template:
       scatter_add_p.bind(_zeros(ans), _gather(x, arrays, template) * y_dot, *arrays, template=template))
scatter_mul_p.vjp = lambda i: {
    0: lambda g, ans, x, y, *arrays, template: scatter_mul_p.bind(g, y, *arrays, template=template),
    1: lambda g, ans, x, y, *arrays, template: _gather(g * x, arrays, template),
}.get(i)


# out = x;  out[idx] = min(out[idx], y) (max alike), over every occurrence of each index.
# The derivative goes to the operands equal to the result, split evenly between ties (as
# fgrad.numpy.minimum/maximum and torch.amin): with e_x = [x == out] and e_y = [y == out[idx]],
# n = e_x + scatter_add(e_y), d out = (e_x x_dot + scatter_add(e_y y_dot)) / n.
def _extremum_weights(ans, x, y, arrays, template):
    y = fnp.broadcast_to(y, shape_of(_gather(ans, arrays, template)))
    e_x = fnp.astype(fnp.equal(x, ans), dtype_of(ans))
    e_y = fnp.astype(fnp.equal(y, _gather(ans, arrays, template)), dtype_of(ans))
    count = e_x + scatter_add_p.bind(_zeros(ans), e_y, *arrays, template=template)
    return e_x / count, e_y, count


def _extremum_rules(prim):
    def x_jvp(x_dot, ans, x, y, *arrays, template):
        w_x, _, _ = _extremum_weights(ans, x, y, arrays, template)
        return x_dot * w_x

    def y_jvp(y_dot, ans, x, y, *arrays, template):
        _, e_y, count = _extremum_weights(ans, x, y, arrays, template)
        y_dot = fnp.broadcast_to(y_dot, shape_of(e_y))
        return scatter_add_p.bind(_zeros(ans), y_dot * e_y, *arrays, template=template) / count

    def x_vjp(g, ans, x, y, *arrays, template):
        return g * _extremum_weights(ans, x, y, arrays, template)[0]

    def y_vjp(g, ans, x, y, *arrays, template):
        _, e_y, count = _extremum_weights(ans, x, y, arrays, template)
        return _gather(g / count, arrays, template) * e_y    # summed to y's shape by the tape

    defjvp(prim, x_jvp, y_jvp)
    prim.vjp = lambda i: {0: x_vjp, 1: y_vjp}.get(i)


_extremum_rules(scatter_min_p)
_extremum_rules(scatter_max_p)


def _scatter_batch(prim):
    def rule(vals, dims, *, template):
        unbatched_x_shape = _unbatched_shape(vals[0], dims[0])
        indexed = np.broadcast_to(np.zeros((), bool), unbatched_x_shape)[build_index(template, [
            np.zeros(_unbatched_shape(a, d), np.intp) for a, d in zip(vals[2:], dims[2:])])].shape
        x, arrays, new_template, x_bdim, out_bdim = _batched_index(vals, dims, template, 2)
        y, dy = vals[1], dims[1]
        # give y the batched indexed shape: B at out_bdim, the rest broadcast
        size = shape_of(x)[x_bdim]
        if dy is not_mapped:
            y = fnp.expand_dims(fnp.broadcast_to(y, indexed), out_bdim)
        else:
            y = fnp.broadcast_to(fnp.reshape(move_axis(y, dy, 0), (size,) + (1,) * (
                len(indexed) - len(shape_of(y)) + 1) + shape_of(y)[:dy] + shape_of(y)[dy + 1:]),
                (size,) + indexed)
            y = move_axis(y, 0, out_bdim)
        return prim.bind(x, y, *arrays, template=new_template), x_bdim
    prim.batch = rule


def _unbatched_shape(v, d):
    s = shape_of(v)
    return s if d is not_mapped else s[:d] + s[d + 1:]


for _p in (scatter_add_p, scatter_set_p, scatter_mul_p, scatter_min_p, scatter_max_p):
    _scatter_batch(_p)
    same_abstract_eval(_p)   # the result is x with some entries replaced


