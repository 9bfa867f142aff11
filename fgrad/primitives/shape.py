"""Shape primitives: reshape, transpose, broadcast, concatenate, pad, flip, dtype conversion.

All of these are linear, so each JVP applies the op to the tangent and each VJP applies the
op's adjoint to the cotangent (reshape back, inverse permutation, sum over broadcast axes,
slice the pieces out, drop the padding, flip again). Static arguments (shapes, axes, pad
widths, dtypes) are keyword parameters, never traced.
"""
from __future__ import annotations

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of, shape_of, zero
from ..jvp import defjvp
from ..staging import ShapedArray, same_abstract_eval
from ..vjp import unbroadcast
from ..vmap import batch_size, elementwise_batch_rule, move_axis, move_to_front, not_mapped


def linear_unary(prim):
    """JVP of a linear unary op: apply the op to the tangent."""
    return defjvp(prim, lambda x_dot, ans, x, **params: prim.bind(x_dot, **params))


# --- reshape ---------------------------------------------------------------------------------

reshape_p = Primitive("reshape", lambda x, *, shape: np.reshape(x, shape))
linear_unary(reshape_p)
reshape_p.vjp = (lambda g, ans, x, *, shape: fnp.reshape(g, shape_of(x)),)  # reshape back


def _reshape_batch(vals, dims, *, shape):
    (x,), (d,) = vals, dims
    x = move_axis(x, d, 0)
    return reshape_p.bind(x, shape=(shape_of(x)[0],) + tuple(shape)), 0


reshape_p.batch = _reshape_batch


def _reshape_abstract_eval(x, *, shape):
    shape = tuple(shape)
    if -1 in shape:   # one inferred axis
        known = int(np.prod([n for n in shape if n != -1]))
        shape = tuple(int(np.prod(shape_of(x))) // known if n == -1 else n for n in shape)
    return ShapedArray(shape, dtype_of(x))


reshape_p.abstract_eval = _reshape_abstract_eval

# --- transpose ---------------------------------------------------------------------------------

transpose_p = Primitive("transpose", lambda x, *, perm: np.transpose(x, perm))
linear_unary(transpose_p)
transpose_p.vjp = (lambda g, ans, x, *, perm: fnp.transpose(g, tuple(np.argsort(perm))),)  # P^-1


def _transpose_batch(vals, dims, *, perm):
    (x,), (d,) = vals, dims
    x = move_axis(x, d, 0)
    return transpose_p.bind(x, perm=(0,) + tuple(p + 1 for p in perm)), 0


transpose_p.batch = _transpose_batch
transpose_p.abstract_eval = lambda x, *, perm: ShapedArray(tuple(shape_of(x)[p] for p in perm),
                                                           dtype_of(x))

# --- broadcast_to ------------------------------------------------------------------------------

broadcast_to_p = Primitive("broadcast_to", lambda x, *, shape: np.broadcast_to(x, shape))
linear_unary(broadcast_to_p)
broadcast_to_p.vjp = (lambda g, ans, x, *, shape: unbroadcast(g, shape_of(x)),)  # sum the copies


def _broadcast_to_batch(vals, dims, *, shape):
    (x,), (d,) = vals, dims
    x = move_axis(x, d, 0)
    s = shape_of(x)
    x = fnp.reshape(x, (s[0],) + (1,) * (len(shape) - len(s) + 1) + s[1:])
    return broadcast_to_p.bind(x, shape=(s[0],) + tuple(shape)), 0


broadcast_to_p.batch = _broadcast_to_batch
broadcast_to_p.abstract_eval = lambda x, *, shape: ShapedArray(shape, dtype_of(x))

# --- concatenate -------------------------------------------------------------------------------

concatenate_p = Primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis))


def _concatenate_jvp(primals, tangents, *, axis):
    ans = concatenate_p.bind(*primals, axis=axis)
    if all(t is zero for t in tangents):
        return ans, zero
    ts = [fnp.zeros(shape_of(p), dtype_of(p)) if t is zero else t for p, t in zip(primals, tangents)]
    return ans, concatenate_p.bind(*ts, axis=axis)  # d concat(xs) = concat(dxs)


def _concatenate_piece(i):
    def vjp(g, ans, *xs, axis):  # the cotangent of piece i is its slice of g
        start = sum(shape_of(x)[axis] for x in xs[:i])
        index = (slice(None),) * axis + (slice(start, start + shape_of(xs[i])[axis]),)
        return g[index]
    return vjp


concatenate_p.jvp = _concatenate_jvp
concatenate_p.vjp = _concatenate_piece  # variadic: a function from operand index to its rule


def _concatenate_batch(vals, dims, *, axis):
    size = batch_size(vals, dims)
    vals = [move_to_front(v, d, size) for v, d in zip(vals, dims)]
    return concatenate_p.bind(*vals, axis=axis + 1), 0


concatenate_p.batch = _concatenate_batch


def _concatenate_abstract_eval(*xs, axis):
    shape = list(shape_of(xs[0]))
    shape[axis] = sum(shape_of(x)[axis] for x in xs)
    return ShapedArray(shape, np.result_type(*(dtype_of(x) for x in xs)))


concatenate_p.abstract_eval = _concatenate_abstract_eval

# --- pad (constant value) ----------------------------------------------------------------------

pad_p = Primitive("pad", lambda x, value, *, pad_width: np.pad(
    x, pad_width, mode="constant", constant_values=value))


def _unpad(g, pad_width):
    return g[tuple(slice(lo, shape_of(g)[i] - hi) for i, (lo, hi) in enumerate(pad_width))]


defjvp(pad_p, lambda x_dot, ans, x, value, *, pad_width: pad_p.bind(x_dot, 0, pad_width=pad_width),
       # d pad(x, v) = pad(dx, 0) + (dv where padding)
       lambda v_dot, ans, x, value, *, pad_width: pad_p.bind(fnp.zeros(shape_of(x), dtype_of(x)), 1,
                                                             pad_width=pad_width) * v_dot)
pad_p.vjp = (lambda g, ans, x, value, *, pad_width: _unpad(g, pad_width),      # the middle of g
             lambda g, ans, x, value, *, pad_width: fnp.sum(g) - fnp.sum(_unpad(g, pad_width)))


def _pad_batch(vals, dims, *, pad_width):
    (x, value), (dx, dv) = vals, dims
    if dv is not not_mapped:  # a batched pad value: pad with 0, then add value * mask
        size = batch_size(vals, dims)
        x = move_to_front(x, dx, size)
        v = move_axis(value, dv, 0)
        mask = pad_p.bind(np.zeros(shape_of(x)[1:]), 1.0, pad_width=pad_width)
        out = pad_p.bind(x, 0, pad_width=((0, 0),) + tuple(pad_width))
        v = fnp.reshape(v, (size,) + (1,) * len(pad_width))
        return out + v * mask, 0
    x = move_axis(x, dx, 0)
    return pad_p.bind(x, value, pad_width=((0, 0),) + tuple(pad_width)), 0


pad_p.batch = _pad_batch
pad_p.abstract_eval = lambda x, value, *, pad_width: ShapedArray(
    tuple(n + lo + hi for n, (lo, hi) in zip(shape_of(x), pad_width)), dtype_of(x))

# --- flip ----------------------------------------------------------------------------------------

flip_p = Primitive("flip", lambda x, *, axes: np.flip(x, axes))
linear_unary(flip_p)
flip_p.vjp = (lambda g, ans, x, *, axes: flip_p.bind(g, axes=axes),)  # flipping is its own adjoint


def _flip_batch(vals, dims, *, axes):
    (x,), (d,) = vals, dims
    x = move_axis(x, d, 0)
    return flip_p.bind(x, axes=tuple(a + 1 for a in axes)), 0


flip_p.batch = _flip_batch
same_abstract_eval(flip_p)

# --- convert_element_type (astype) -----------------------------------------------------------------


def _convert(x, *, dtype):
    return np.asarray(x).astype(dtype, copy=False)


convert_element_type_p = Primitive("convert_element_type", _convert)


def _convert_jvp(primals, tangents, *, dtype):
    (x,), (x_dot,) = primals, tangents
    ans = convert_element_type_p.bind(x, dtype=dtype)
    if np.dtype(dtype).kind not in "fc":   # to int/bool: the derivative is gone
        return ans, zero
    if dtype_of(x_dot).kind == "c" and np.dtype(dtype).kind == "f":
        x_dot = fnp.real(x_dot)            # complex to real keeps Re z: d Re(z) = Re(dz)
    return ans, convert_element_type_p.bind(x_dot, dtype=dtype)   # d cast(x) = cast(dx)


def _convert_vjp(g, ans, x, *, dtype):
    if np.dtype(dtype).kind not in "fc":
        return zero
    if dtype_of(g).kind == "c" and dtype_of(x).kind != "c":
        g = fnp.real(g)                    # real to complex: the transpose of R -> C is Re
    return convert_element_type_p.bind(g, dtype=dtype_of(x))   # cast back (Re z's: g + 0i)


convert_element_type_p.jvp = _convert_jvp
convert_element_type_p.vjp = (_convert_vjp,)
elementwise_batch_rule(convert_element_type_p)
convert_element_type_p.abstract_eval = lambda x, *, dtype: ShapedArray(shape_of(x), dtype)

# --- split: one array into pieces along an axis (several results) ----------------------------

split_p = Primitive("split", lambda x, *, sizes, axis: np.split(x, np.cumsum(sizes)[:-1], axis=axis),
                    multiple_results=True)


def _split_jvp(primals, tangents, *, sizes, axis):
    (x,), (x_dot,) = primals, tangents
    return split_p.bind(x, sizes=sizes, axis=axis), split_p.bind(x_dot, sizes=sizes, axis=axis)


split_p.jvp = _split_jvp   # linear: d split(x) = split(dx)
# the adjoint of cutting x into pieces is joining the pieces' cotangents back together (one
# concatenate, instead of one zeros-sized scatter per piece as slicing would give)
split_p.vjp = (lambda gs, ans, x, *, sizes, axis: concatenate_p.bind(*gs, axis=axis),)


def _split_batch(vals, dims, *, sizes, axis):
    (x,), (d,) = vals, dims
    outs = split_p.bind(move_axis(x, d, 0), sizes=sizes, axis=axis + 1)
    return outs, [0] * len(outs)


split_p.batch = _split_batch


def _split_abstract_eval(x, *, sizes, axis):
    shape = shape_of(x)
    return [ShapedArray(shape[:axis] + (n,) + shape[axis + 1:], dtype_of(x)) for n in sizes]


split_p.abstract_eval = _split_abstract_eval
