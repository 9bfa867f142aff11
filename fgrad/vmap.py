"""Batching: the vmap trace carries a batch axis inside every value.

A :class:`BatchTracer` holds ``(val, bdim)``: ``val`` has one more axis than the value the
user's function sees, at position ``bdim``. A primitive's ``batch`` rule takes the values and
their batch axes (``not_mapped`` = ``None`` for values without one) and returns the batched
result and where its batch axis is. Most rules first move every batch axis to the front
(:func:`move_to_front`) and then apply the primitive once to the whole batch.

The builders below cover the shapes most primitives share: elementwise ops with NumPy
broadcasting, reductions over static axes, and ops that act on the first axes and leave the
rest alone.
"""
from __future__ import annotations

from . import numpy as fnp   # partly initialised while fgrad.numpy imports the primitives (which
#                              import this module); used in functions only, where an import
#                              statement would cost ~2 us a call (move_axis, broadcast_batch)
from .core import Trace, Tracer, bind, dtype_of, shape_of
from .errors import MissingRuleError

__all__ = ["BatchTrace", "BatchTracer", "not_mapped", "move_to_front", "move_axis",
           "broadcast_batch", "elementwise_batch_rule", "reduction_batch_rule",
           "vectorized_batch_rule"]

not_mapped = None


class BatchTracer(Tracer):
    __slots__ = ("val", "bdim")

    def __init__(self, trace, val, bdim):
        self._trace = trace
        self.val = val
        self.bdim = bdim

    @property
    def shape(self):
        s = shape_of(self.val)
        return s[:self.bdim] + s[self.bdim + 1:]

    @property
    def dtype(self):
        return dtype_of(self.val)


class BatchTrace(Trace):
    transform_name = "vmap"

    def __init__(self, level, axis_size):
        super().__init__(level)
        self.axis_size = axis_size

    def process_primitive(self, prim, args, params):
        vals, dims = [], []
        for x in args:
            if type(x) is BatchTracer and x._trace is self:
                vals.append(x.val)
                dims.append(x.bdim)
            else:
                vals.append(x)
                dims.append(not_mapped)
        if prim.batch is None:
            raise MissingRuleError(f"primitive {prim.name} has no batching rule, so vmap "
                                   f"cannot handle it; define prim.batch beside its impl")
        out, out_dim = prim.batch(vals, dims, **params)
        if prim.multiple_results:
            return [self.wrap(o, d) for o, d in zip(out, out_dim)]
        return self.wrap(out, out_dim)

    def wrap(self, val, bdim):
        return val if bdim is not_mapped else BatchTracer(self, val, bdim)


# --------------------------------------------------------------------------------------------
# Helpers and rule builders (written in fgrad ops: batching rules are traced by outer transforms)
# --------------------------------------------------------------------------------------------

def move_axis(x, src, dst):
    return x if src == dst else fnp.moveaxis(x, src, dst)


def move_to_front(x, bdim, size=None):
    """``x`` with its batch axis first; an unmapped ``x`` is broadcast to ``size`` if given."""
    if bdim is not_mapped:
        if size is None:
            return x
        return fnp.broadcast_to(x, (size,) + shape_of(x))
    return move_axis(x, bdim, 0)


def batch_size(vals, dims):
    for v, d in zip(vals, dims):
        if d is not not_mapped:
            return shape_of(v)[d]
    raise AssertionError("batch rule called with no mapped operand")


def broadcast_batch(vals, dims):
    """Prepare operands of a broadcasting op: batch axes first, ranks aligned.

    A mapped operand of (unbatched) rank ``r`` becomes ``(B, 1, ..., 1, *shape)`` with as many
    ones as the largest operand rank needs, so that NumPy broadcasting lines the batch axes up;
    unmapped operands are left as they are (they broadcast from the right).
    """
    rank = max(len(shape_of(v)) - (d is not not_mapped) for v, d in zip(vals, dims))
    out = []
    for v, d in zip(vals, dims):
        if d is not_mapped:
            out.append(v)
            continue
        v = move_axis(v, d, 0)
        s = shape_of(v)
        if len(s) - 1 < rank:
            v = fnp.reshape(v, (s[0],) + (1,) * (rank - len(s) + 1) + s[1:])
        out.append(v)
    return out


def elementwise_batch_rule(prim):
    """Batching for elementwise primitives with NumPy broadcasting."""
    def rule(vals, dims, **params):
        if len(vals) == 1:
            return bind(prim, vals[0], **params), dims[0]
        # Fast path: the mapped operands have their batch axis at one position and one rank, so
        # NumPy's broadcasting lines the batch axes up as they are, and the others are scalars
        # (x * 1.01 under vmap). Saves broadcast_batch's moves and reshapes.
        bdim = rank = None
        for v, d in zip(vals, dims):
            if d is not_mapped:
                if shape_of(v):
                    break
            elif bdim is None:
                bdim, rank = d, len(shape_of(v))
            elif d != bdim or len(shape_of(v)) != rank:
                break
        else:
            return bind(prim, *vals, **params), bdim
        return bind(prim, *broadcast_batch(vals, dims), **params), 0
    prim.batch = rule
    return prim


def reduction_batch_rule(prim, axes_param="axes"):
    """Batching for primitives that act on the static axes ``params[axes_param]`` of operand 0."""
    def rule(vals, dims, **params):
        (x,), (d,) = vals, dims
        x = move_axis(x, d, 0)
        axes = params[axes_param]
        if isinstance(axes, tuple):
            params[axes_param] = tuple(a + 1 for a in axes)
        else:
            params[axes_param] = axes + 1
        return prim.bind(x, **params), 0
    prim.batch = rule
    return prim


def vectorized_batch_rule(prim):
    """Batching for primitives that treat leading axes as a batch already (np.linalg style)."""
    def rule(vals, dims, **params):
        size = batch_size(vals, dims)
        vals = [move_to_front(v, d, size) for v, d in zip(vals, dims)]
        out = prim.bind(*vals, **params)
        if prim.multiple_results:
            return out, [0] * len(out)
        return out, 0
    prim.batch = rule
    return prim
