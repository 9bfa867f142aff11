"""The NumPy-named functions: argument handling on top of the primitives.

Each function normalises its arguments (axes, shapes, lists to arrays), checks them with an
error that names the function, and binds primitives. Composites (``mean``, ``var``,
``logsumexp``, ``stack``, ``roll``, ``tril``, ...) are written in terms of other functions
here, so they need no rules of their own. On plain NumPy inputs the primitives run NumPy
directly and return what NumPy returns.
"""
from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from .. import core as _core
from ..core import Tracer, bind, dtype_of, shape_of, zero
from ..primitives import dot as _dot, elementwise as ew, indexing as ix, reduction as red, shape as sh

float32, float64, float16 = np.float32, np.float64, np.float16
int8, int16, int32, int64, uint8, uint32 = np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32
bool_ = np.bool_
pi, e, inf, nan, newaxis = np.pi, np.e, np.inf, np.nan, None
dtype = np.dtype
ndarray = np.ndarray
finfo, iinfo, result_type = np.finfo, np.iinfo, np.result_type
issubdtype, integer, floating, inexact, number = np.issubdtype, np.integer, np.floating, np.inexact, np.number


def _arr(x):
    """Leave arrays, tracers and Python scalars alone; turn lists and tuples into arrays."""
    if isinstance(x, (Tracer, np.ndarray, np.generic, float, int, bool)):
        return x
    return np.asarray(x)


def shape(x):
    return shape_of(x)


def ndim(x):
    return len(shape_of(x))


def size(x):
    return math.prod(shape_of(x))


def _name(fn_name):
    return f"fgrad.numpy.{fn_name}"


# --------------------------------------------------------------------------------------------
# Elementwise
# --------------------------------------------------------------------------------------------

def _unary(prim, name, doc):
    def fn(x):
        return bind(prim, _arr(x))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _binary(prim, name, doc):
    def fn(x, y):
        x, y = _arr(x), _arr(y)
        try:
            return bind(prim, x, y)
        except ValueError as err:
            if "broadcast" not in str(err):
                raise
            raise ValueError(f"{_name(name)}: operands of shapes {shape_of(x)} and {shape_of(y)} "
                             f"cannot be broadcast together (NumPy broadcasting aligns trailing "
                             f"axes, which must be equal or 1); reshape or transpose one of "
                             f"them.") from None
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


negative = _unary(ew.neg_p, "negative", "-x elementwise.")
exp = _unary(ew.exp_p, "exp", "e**x elementwise.")
log = _unary(ew.log_p, "log", "Natural logarithm elementwise.")
expm1 = _unary(ew.expm1_p, "expm1", "exp(x) - 1, accurate near 0.")
log1p = _unary(ew.log1p_p, "log1p", "log(1 + x), accurate near 0.")
sqrt = _unary(ew.sqrt_p, "sqrt", "Square root elementwise.")
sin = _unary(ew.sin_p, "sin", "Sine elementwise.")
cos = _unary(ew.cos_p, "cos", "Cosine elementwise.")
tan = _unary(ew.tan_p, "tan", "Tangent elementwise.")
tanh = _unary(ew.tanh_p, "tanh", "Hyperbolic tangent elementwise.")
sinh = _unary(ew.sinh_p, "sinh", "Hyperbolic sine elementwise.")
cosh = _unary(ew.cosh_p, "cosh", "Hyperbolic cosine elementwise.")
arcsin = _unary(ew.arcsin_p, "arcsin", "Inverse sine elementwise.")
arccos = _unary(ew.arccos_p, "arccos", "Inverse cosine elementwise.")
arctan = _unary(ew.arctan_p, "arctan", "Inverse tangent elementwise.")
arcsinh = _unary(ew.arcsinh_p, "arcsinh", "Inverse hyperbolic sine elementwise.")
arctanh = _unary(ew.arctanh_p, "arctanh", "Inverse hyperbolic tangent elementwise.")
abs = absolute = _unary(ew.abs_p, "abs", "|x| elementwise (derivative sign(x), 0 at 0).")
sign = _unary(ew.sign_p, "sign", "Sign elementwise (zero derivative).")
floor = _unary(ew.floor_p, "floor", "Floor elementwise (zero derivative).")
ceil = _unary(ew.ceil_p, "ceil", "Ceiling elementwise (zero derivative).")
erf = _unary(ew.erf_p, "erf", "The error function elementwise.")
logistic = _unary(ew.logistic_p, "logistic", "1 / (1 + exp(-x)), computed without overflow.")
erfc = _unary(ew.erfc_p, "erfc", "1 - erf(x), accurate in the tail (NumPy has none: scipy.special's).")
erfinv = _unary(ew.erfinv_p, "erfinv", "The inverse error function on [-1, 1] (scipy.special's).")
lgamma = gammaln = _unary(ew.lgamma_p, "lgamma", "log |Gamma(x)| (scipy.special.gammaln).")
digamma = _unary(ew.digamma_p, "digamma", "d/dx log Gamma(x) (scipy.special.digamma).")


def polygamma(n, x):
    """The ``n``-th derivative of digamma, for a static integer ``n >= 0`` (scipy.special's)."""
    if isinstance(n, Tracer) or int(n) != n or n < 0:
        raise ValueError(f"fgrad.numpy.polygamma: the order n must be a static integer >= 0, "
                         f"got {n!r}")
    x = _arr(x)
    if int(n) == 0:
        return digamma(x)
    return bind(ew.polygamma_p, x, n=int(n))

logical_not = _unary(ew.logical_not_p, "logical_not", "Logical NOT (no derivative).")
isfinite = _unary(ew.isfinite_p, "isfinite", "True where x is finite.")
isnan = _unary(ew.isnan_p, "isnan", "True where x is NaN.")
isinf = _unary(ew.isinf_p, "isinf", "True where x is +-inf.")
invert = bitwise_not = _unary(ew.invert_p, "invert", "Bitwise NOT.")

add = _binary(ew.add_p, "add", "x + y with broadcasting.")
subtract = _binary(ew.sub_p, "subtract", "x - y with broadcasting.")
multiply = _binary(ew.mul_p, "multiply", "x * y with broadcasting.")
divide = true_divide = _binary(ew.div_p, "divide", "x / y with broadcasting.")
power = _binary(ew.pow_p, "power", "x ** y with broadcasting.")
maximum = _binary(ew.maximum_p, "maximum", "Elementwise max (derivative split evenly on ties).")
minimum = _binary(ew.minimum_p, "minimum", "Elementwise min (derivative split evenly on ties).")
arctan2 = _binary(ew.arctan2_p, "arctan2", "Angle of the point (x2, x1), elementwise.")
remainder = mod = _binary(ew.remainder_p, "remainder", "x mod y (sign of y), elementwise.")
floor_divide = _binary(ew.floor_divide_p, "floor_divide", "floor(x / y) (no derivative).")
less = _binary(ew.lt_p, "less", "x < y.")
less_equal = _binary(ew.le_p, "less_equal", "x <= y.")
greater = _binary(ew.gt_p, "greater", "x > y.")
greater_equal = _binary(ew.ge_p, "greater_equal", "x >= y.")
equal = _binary(ew.eq_p, "equal", "x == y.")
not_equal = _binary(ew.ne_p, "not_equal", "x != y.")
logical_and = _binary(ew.logical_and_p, "logical_and", "Logical AND.")
logical_or = _binary(ew.logical_or_p, "logical_or", "Logical OR.")
logical_xor = _binary(ew.logical_xor_p, "logical_xor", "Logical XOR.")
bitwise_and = _binary(ew.bitwise_and_p, "bitwise_and", "Bitwise AND.")
bitwise_or = _binary(ew.bitwise_or_p, "bitwise_or", "Bitwise OR.")
bitwise_xor = _binary(ew.bitwise_xor_p, "bitwise_xor", "Bitwise XOR.")
left_shift = _binary(ew.left_shift_p, "left_shift", "x << y.")
right_shift = _binary(ew.right_shift_p, "right_shift", "x >> y.")


def round(x, decimals=0):  # noqa: A001 - NumPy's name
    """Round half to even (zero derivative)."""
    if decimals:
        scale = 10.0 ** decimals
        return bind(ew.round_p, _arr(x) * scale) / scale
    return bind(ew.round_p, _arr(x))


around = round


def square(x):
    """x * x."""
    x = _arr(x)
    return multiply(x, x)


def reciprocal(x):
    """1 / x."""
    return divide(1.0, _arr(x)) if dtype_of(x).kind != "f" else divide(np.ones((), dtype_of(x)), x)


def log2(x):
    return log(x) / math.log(2)


def log10(x):
    return log(x) / math.log(10)


def exp2(x):
    return exp(_arr(x) * math.log(2))


def positive(x):
    return _arr(x)


def where(condition, x=None, y=None):
    """``x`` where ``condition`` holds, else ``y`` (broadcast together); the derivative is routed
    the same way. The one-argument form ``where(c)`` is ``nonzero(c)``."""
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise TypeError("fgrad.numpy.where: give both x and y, or neither")
    c, x, y = _arr(condition), _arr(x), _arr(y)
    try:
        return bind(ew.select_p, c, x, y)
    except ValueError as err:
        if "broadcast" not in str(err):
            raise
        raise ValueError(f"fgrad.numpy.where: condition, x and y of shapes {shape_of(c)}, "
                         f"{shape_of(x)}, {shape_of(y)} cannot be broadcast together.") from None


_NO_BOUND = object()


def clip(a, a_min=_NO_BOUND, a_max=_NO_BOUND, *, min=None, max=None):  # noqa: A002 - JAX's names
    """Limit values to ``[min, max]``; the derivative is 1 inside and at the bounds, 0 outside
    (as ``torch.clamp``). JAX's keywords ``min=``/``max=`` and NumPy's ``a_min``/``a_max``
    (positional or keyword) are both accepted."""
    a = _arr(a)
    if a_min is not _NO_BOUND and min is not None or a_max is not _NO_BOUND and max is not None:
        raise TypeError("fgrad.numpy.clip: give each bound once, as a_min/a_max or as min/max")
    a_min = min if a_min is _NO_BOUND else a_min
    a_max = max if a_max is _NO_BOUND else a_max
    if a_min is not None:
        a = where(a < a_min, a_min, a)
    if a_max is not None:
        a = where(a > a_max, a_max, a)
    return a


def nonzero(a):
    a = _concrete(a, "nonzero")
    return np.nonzero(a)


def _concrete(x, what):
    if isinstance(x, Tracer):
        return x._concrete(f"fgrad.numpy.{what}")
    return np.asarray(x)


# --------------------------------------------------------------------------------------------
# Axes
# --------------------------------------------------------------------------------------------

def _axis(axis, ndim_, fn):
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"{_name(fn)}: axis must be an int, got {axis!r}") from None
    if not -ndim_ <= a < ndim_:
        valid = f"use an axis in [{-ndim_}, {ndim_ - 1}]" if ndim_ else "a 0-d array has no axes"
        raise ValueError(f"{_name(fn)}: axis {axis} is out of range for an array with {ndim_} "
                         f"dimension(s); {valid}.")
    return a % ndim_


def _axes(axis, ndim_, fn):
    if axis is None:
        return tuple(range(ndim_))
    if isinstance(axis, (tuple, list)):
        axes = tuple(_axis(a, ndim_, fn) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{_name(fn)}: repeated axis in {axis}")
        return tuple(sorted(axes))
    return (_axis(axis, ndim_, fn),)


def _keep(out, x_shape, axes, keepdims):
    if not keepdims:
        return out
    return reshape(out, tuple(1 if i in axes else n for i, n in enumerate(x_shape)))


# --------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------

def _reduction(prim, name, doc, empty_identity=True):
    def fn(a, axis=None, keepdims=False, dtype=None):
        a = _arr(a)
        if dtype is not None:
            a = astype(a, dtype)
        s = shape_of(a)
        axes = _axes(axis, len(s), name)
        if not empty_identity and builtins.any(s[i] == 0 for i in axes):
            raise ValueError(f"{_name(name)}: zero-size reduction over axes {axes} of an array of "
                             f"shape {s} has no identity; give an `initial` value with "
                             f"fgrad.numpy.where or reduce over non-empty axes.")
        if not axes:
            return a
        return _keep(bind(prim, a, axes=axes), s, axes, keepdims)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


sum = _reduction(red.reduce_sum_p, "sum", "Sum over ``axis`` (all axes by default).")  # noqa: A001
prod = _reduction(red.reduce_prod_p, "prod", "Product over ``axis``; exact derivative with zeros.")
max = amax = _reduction(red.reduce_max_p, "max", "Maximum over ``axis`` (ties share the derivative).",  # noqa: A001
                        empty_identity=False)
min = amin = _reduction(red.reduce_min_p, "min", "Minimum over ``axis`` (ties share the derivative).",  # noqa: A001
                        empty_identity=False)


def _bool_reduction(prim, name):
    def fn(a, axis=None, keepdims=False):
        a = _arr(a)
        s = shape_of(a)
        axes = _axes(axis, len(s), name)
        if not axes:
            return astype(a, bool)
        return _keep(bind(prim, a, axes=axes), s, axes, keepdims)
    fn.__name__ = name
    return fn


any = _bool_reduction(red.reduce_any_p, "any")  # noqa: A001
all = _bool_reduction(red.reduce_all_p, "all")  # noqa: A001


def _arg_reduction(prim, name):
    def fn(a, axis=None, keepdims=False):
        a = _arr(a)
        s = shape_of(a)
        if builtins.any(n == 0 for n in s) and (axis is None or s[_axis(axis, len(s), name)] == 0):
            raise ValueError(f"{_name(name)}: attempt to get {name} of an empty sequence (shape {s})")
        if axis is None:
            out = bind(prim, reshape(a, (-1,)), axis=0)
            return reshape(out, (1,) * len(s)) if keepdims else out
        ax = _axis(axis, len(s), name)
        return _keep(bind(prim, a, axis=ax), s, (ax,), keepdims)
    fn.__name__ = name
    return fn


argmax = _arg_reduction(red.argmax_p, "argmax")
argmin = _arg_reduction(red.argmin_p, "argmin")


def _count(s, axes):
    return math.prod(s[i] for i in axes)


def mean(a, axis=None, keepdims=False, dtype=None):
    """Arithmetic mean over ``axis``."""
    a = _arr(a)
    if dtype_of(a).kind in "biu" and dtype is None:
        dtype = np.float64
    s = shape_of(a)
    n = _count(s, _axes(axis, len(s), "mean"))
    return sum(a, axis=axis, keepdims=keepdims, dtype=dtype) / n


def var(a, axis=None, keepdims=False, ddof=0, dtype=None):
    """Variance ``mean(|a - mean(a)|^2)`` with ``ddof`` as NumPy (torch's ``correction``)."""
    a = _arr(a)
    if dtype is not None or dtype_of(a).kind in "biu":
        a = astype(a, dtype or np.float64)
    s = shape_of(a)
    n = _count(s, _axes(axis, len(s), "var"))
    centered = a - mean(a, axis=axis, keepdims=True)
    return sum(centered * centered, axis=axis, keepdims=keepdims) / builtins.max(n - ddof, 0)


def std(a, axis=None, keepdims=False, ddof=0, dtype=None):
    """Standard deviation: ``sqrt(var(a))``."""
    return sqrt(var(a, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype))


def logsumexp(a, axis=None, keepdims=False, b=None):
    """``log(sum(b * exp(a)))`` over ``axis`` without overflow: the max is taken out first."""
    a = _arr(a)
    s = shape_of(a)
    axes = _axes(axis, len(s), "logsumexp")
    m = stop_gradient(max(a, axis=axes, keepdims=True))
    m = where(isfinite(m), m, 0)
    ex = exp(a - m)
    if b is not None:
        ex = ex * b
    out = log(sum(ex, axis=axes, keepdims=True)) + m
    return out if keepdims else reshape(out, tuple(n for i, n in enumerate(s) if i not in axes))


def cumsum(a, axis=None, dtype=None):
    """Cumulative sum along ``axis`` (flattened when ``axis`` is None)."""
    a = _arr(a)
    if dtype is not None:
        a = astype(a, dtype)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return bind(red.cumsum_p, a, axis=_axis(axis, ndim(a), "cumsum"))


def stop_gradient(x):
    """``x`` with no derivative: transforms treat it as a constant (``jax.lax.stop_gradient``)."""
    from ..api import stop_gradient as sg
    return sg(x)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------

def _shape_arg(new_shape):
    if isinstance(new_shape, (int, np.integer)):
        return (int(new_shape),)
    return tuple(int(n) for n in new_shape)


def reshape(a, newshape=None, order="C", *, shape=None):
    """Reshape ``a``; one entry may be -1 (inferred). ``order="F"`` reads and writes elements
    in Fortran order (first index fastest), as NumPy."""
    new_shape = _shape_arg(shape if shape is not None else newshape)
    if order not in ("C", "F"):
        raise ValueError(f"fgrad.numpy.reshape: order must be 'C' or 'F', got {order!r}")
    a = _arr(a)
    if order == "F":   # Fortran order is C order on the reversed axes
        return transpose(reshape(transpose(a), new_shape[::-1]))
    s = shape_of(a)
    total = _count(s, range(len(s)))
    if new_shape.count(-1) > 1:
        raise ValueError(f"fgrad.numpy.reshape: at most one -1 in the new shape, got {new_shape}")
    if -1 in new_shape:
        known = _count(new_shape, [i for i, n in enumerate(new_shape) if n != -1])
        if known == 0 or total % known:
            raise ValueError(f"fgrad.numpy.reshape: cannot reshape an array of shape {s} "
                             f"({total} elements) into {new_shape}")
        new_shape = tuple(total // known if n == -1 else n for n in new_shape)
    if _count(new_shape, range(len(new_shape))) != total:
        raise ValueError(f"fgrad.numpy.reshape: cannot reshape an array of shape {s} ({total} "
                         f"elements) into shape {new_shape}")
    if new_shape == s:
        return a
    return bind(sh.reshape_p, a, shape=new_shape)


def ravel(a):
    return reshape(a, (-1,))


def transpose(a, axes=None):
    """Permute axes (reverse them by default)."""
    a = _arr(a)
    n = ndim(a)
    perm = tuple(reversed(range(n))) if axes is None else tuple(_axis(p, n, "transpose") for p in axes)
    if sorted(perm) != list(range(n)):
        raise ValueError(f"fgrad.numpy.transpose: axes {axes} are not a permutation of {n} axes")
    if perm == tuple(range(n)):
        return a
    return bind(sh.transpose_p, a, perm=perm)


def moveaxis(a, source, destination):
    """Move axes ``source`` to positions ``destination``; the others keep their order."""
    a = _arr(a)
    n = ndim(a)
    src = [_axis(s, n, "moveaxis") for s in (source if isinstance(source, (tuple, list)) else [source])]
    dst = [_axis(d, n, "moveaxis") for d in
           (destination if isinstance(destination, (tuple, list)) else [destination])]
    if len(src) != len(dst):
        raise ValueError("fgrad.numpy.moveaxis: source and destination need the same number of axes")
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def swapaxes(a, axis1, axis2):
    a = _arr(a)
    n = ndim(a)
    perm = list(range(n))
    i, j = _axis(axis1, n, "swapaxes"), _axis(axis2, n, "swapaxes")
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def expand_dims(a, axis):
    """Insert size-1 axes at ``axis`` (int or tuple) of the result."""
    a = _arr(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out_ndim = ndim(a) + len(axes)
    axes = sorted(_axis(ax, out_ndim, "expand_dims") for ax in axes)
    s = list(shape_of(a))
    for ax in axes:
        s.insert(ax, 1)
    return reshape(a, tuple(s))


def squeeze(a, axis=None):
    """Remove size-1 axes (all of them, or those in ``axis``)."""
    a = _arr(a)
    s = shape_of(a)
    if axis is None:
        axes = [i for i, n in enumerate(s) if n == 1]
    else:
        axes = list(_axes(axis, len(s), "squeeze"))
        bad = [i for i in axes if s[i] != 1]
        if bad:
            raise ValueError(f"fgrad.numpy.squeeze: cannot squeeze axis {bad[0]} of size "
                             f"{s[bad[0]]} (shape {s}); only size-1 axes can be removed")
    return reshape(a, tuple(n for i, n in enumerate(s) if i not in axes))


def broadcast_to(a, shape):
    """Broadcast ``a`` to ``shape`` (the derivative sums the copies back)."""
    a = _arr(a)
    shape = _shape_arg(shape)
    s = shape_of(a)
    if s == shape:
        return a
    try:
        np.broadcast_shapes(s, shape)
        if len(s) > len(shape) or builtins.any(
                m != 1 and m != n for m, n in zip(s[::-1], shape[::-1])):
            raise ValueError
    except ValueError:
        raise ValueError(f"fgrad.numpy.broadcast_to: cannot broadcast an array of shape {s} to "
                         f"shape {shape}") from None
    return bind(sh.broadcast_to_p, a, shape=shape)


def broadcast_arrays(*args):
    args = [_arr(a) for a in args]
    target = np.broadcast_shapes(*(shape_of(a) for a in args))
    return [broadcast_to(a, target) for a in args]


def atleast_1d(a):
    a = _arr(a)
    return reshape(a, (1,)) if ndim(a) == 0 else a


def atleast_2d(a):
    a = _arr(a)
    return reshape(a, (1,) * (2 - ndim(a)) + shape_of(a)) if ndim(a) < 2 else a


def concatenate(arrays, axis=0):
    """Join arrays along an existing axis (``axis=None`` flattens them first)."""
    arrays = [_arr(a) for a in arrays]
    if not arrays:
        raise ValueError("fgrad.numpy.concatenate: need at least one array")
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    shapes = [shape_of(a) for a in arrays]
    n = len(shapes[0])
    if n == 0:
        raise ValueError("fgrad.numpy.concatenate: zero-dimensional arrays cannot be concatenated")
    ax = _axis(axis, n, "concatenate")
    for s in shapes[1:]:
        if len(s) != n or builtins.any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != ax):
            raise ValueError(f"fgrad.numpy.concatenate: shapes {shapes} differ outside axis {ax}")
    if len(arrays) == 1:
        return arrays[0]
    return bind(sh.concatenate_p, *arrays, axis=ax)


def stack(arrays, axis=0):
    """Join arrays of the same shape along a new axis."""
    arrays = [_arr(a) for a in arrays]
    if not arrays:
        raise ValueError("fgrad.numpy.stack: need at least one array")
    shapes = {shape_of(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"fgrad.numpy.stack: all arrays must have the same shape, got {sorted(shapes)}")
    ax = _axis(axis, ndim(arrays[0]) + 1, "stack")
    return concatenate([expand_dims(a, ax) for a in arrays], axis=ax)


def hstack(arrays):
    arrays = [atleast_1d(a) for a in arrays]
    return concatenate(arrays, axis=0 if ndim(arrays[0]) == 1 else 1)


def vstack(arrays):
    return concatenate([atleast_2d(a) for a in arrays], axis=0)


def split(a, indices_or_sections, axis=0):
    """Split into equal sections or at the given indices (views of ``a``'s derivative too)."""
    a = _arr(a)
    ax = _axis(axis, ndim(a), "split")
    n = shape_of(a)[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"fgrad.numpy.split: an axis of size {n} does not split into {k} "
                             f"equal sections; use array_split or give split indices")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    # NumPy's clamping of out-of-range split points: each piece is the slice [lo:hi]
    sizes = tuple(len(range(n)[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))
    if len(sizes) == 1:
        return [a]
    return list(bind(sh.split_p, a, sizes=sizes, axis=ax))


def array_split(a, sections, axis=0):
    a = _arr(a)
    n = shape_of(a)[_axis(axis, ndim(a), "array_split")]
    q, r = divmod(n, sections)
    sizes = [q + 1] * r + [q] * (sections - r)
    return split(a, list(np.cumsum(sizes)[:-1]), axis)


def tile(a, reps):
    """Repeat the whole array ``reps`` times along each axis."""
    a = _arr(a)
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    d = builtins.max(len(reps), ndim(a))
    reps = (1,) * (d - len(reps)) + reps
    a = reshape(a, (1,) * (d - ndim(a)) + shape_of(a))
    s = shape_of(a)
    # (1, s0, 1, s1, ...) broadcast to (r0, s0, r1, s1, ...) then merged pairwise
    expanded = reshape(a, tuple(x for n in s for x in (1, n)))
    target = tuple(x for r, n in zip(reps, s) for x in (r, n))
    return reshape(broadcast_to(expanded, target), tuple(r * n for r, n in zip(reps, s)))


def repeat(a, repeats, axis=None):
    """Repeat each element ``repeats`` times along ``axis`` (flattened when None)."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    ax = _axis(axis, ndim(a), "repeat")
    if isinstance(repeats, (int, np.integer)):
        s = shape_of(a)
        r = int(repeats)
        expanded = expand_dims(a, ax + 1)
        target = s[:ax + 1] + (r,) + s[ax + 1:]
        return reshape(broadcast_to(expanded, target), s[:ax] + (s[ax] * r,) + s[ax + 1:])
    idx = np.repeat(np.arange(shape_of(a)[ax]), np.asarray(repeats, dtype=np.intp))
    return take(a, idx, axis=ax)


def pad(array, pad_width, mode="constant", constant_values=0):
    """Pad with a constant (``mode='constant'``), or ``'edge'``, ``'reflect'``, ``'wrap'``."""
    a = _arr(array)
    n = ndim(a)
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (n, 2)).tolist()
    pw = tuple((int(lo), int(hi)) for lo, hi in pw)
    if builtins.any(lo < 0 or hi < 0 for lo, hi in pw):
        raise ValueError(f"fgrad.numpy.pad: pad widths must be non-negative, got {pad_width}")
    if not builtins.any(lo or hi for lo, hi in pw):   # nothing to pad (always so for 0-d arrays)
        return a
    if mode == "constant":
        return bind(sh.pad_p, a, constant_values, pad_width=pw)
    if mode not in ("edge", "reflect", "wrap", "symmetric"):
        raise ValueError(f"fgrad.numpy.pad: mode {mode!r} is not supported; use 'constant', "
                         f"'edge', 'reflect', 'symmetric' or 'wrap'")
    # the other modes are a gather with a static index per axis
    for ax, (lo, hi) in enumerate(pw):
        size_ = shape_of(a)[ax]
        idx = np.pad(np.arange(size_), (lo, hi), mode=mode)
        a = take(a, idx, axis=ax)
    return a


def flip(m, axis=None):
    """Reverse the order of elements along ``axis`` (all axes by default)."""
    m = _arr(m)
    axes = _axes(axis, ndim(m), "flip")
    return bind(sh.flip_p, m, axes=axes) if axes else m


def fliplr(m):
    return flip(m, 1)


def flipud(m):
    return flip(m, 0)


def roll(a, shift, axis=None):
    """Shift elements cyclically along ``axis`` (over the flattened array when None)."""
    a = _arr(a)
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), shape_of(a))
    if isinstance(axis, (tuple, list)):
        shifts = shift if isinstance(shift, (tuple, list)) else [shift] * len(axis)
        for s, ax in zip(shifts, axis):
            a = roll(a, s, ax)
        return a
    ax = _axis(axis, ndim(a), "roll")
    n = shape_of(a)[ax]
    if n == 0:
        return a
    k = int(shift) % n
    if k == 0:
        return a
    idx = (slice(None),) * ax
    return concatenate([a[idx + (slice(n - k, None),)], a[idx + (slice(0, n - k),)]], axis=ax)


def _tri_mask(s, k, lower):
    n, m = s[-2], s[-1]
    mask = np.tri(n, m, k=k, dtype=bool) if lower else ~np.tri(n, m, k=k - 1, dtype=bool)
    return mask


def tril(m, k=0):
    """Lower triangle of the last two axes (zeros above the ``k``-th diagonal)."""
    m = _arr(m)
    return where(_tri_mask(shape_of(m), k, True), m, 0)


def triu(m, k=0):
    """Upper triangle of the last two axes (zeros below the ``k``-th diagonal)."""
    m = _arr(m)
    return where(_tri_mask(shape_of(m), k, False), m, 0)


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal of the 2-D slices on ``axis1``/``axis2`` (moved to the last axis)."""
    a = _arr(a)
    n = ndim(a)
    a = moveaxis(a, (_axis(axis1, n, "diagonal"), _axis(axis2, n, "diagonal")), (-2, -1))
    rows, cols = shape_of(a)[-2:]
    i = np.arange(builtins.max(0, builtins.min(rows, cols - offset) if offset >= 0
                               else builtins.min(rows + offset, cols)))
    r, c = (i, i + offset) if offset >= 0 else (i - offset, i)
    return a[(Ellipsis, r, c)]


def trace(a, offset=0, axis1=0, axis2=1):
    return sum(diagonal(a, offset, axis1, axis2), axis=-1)


def astype(x, dtype, copy=True):
    """``x`` converted to ``dtype`` (the derivative is converted back; none to int/bool)."""
    x = _arr(x)
    dtype = np.dtype(dtype)
    if dtype_of(x) == dtype and not isinstance(x, (float, int, bool)):
        return x
    return bind(sh.convert_element_type_p, x, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Indexing
# --------------------------------------------------------------------------------------------

def _split_index(idx, fn="indexing"):
    """Split an index into a static template and integer-array operands (see primitives/indexing)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    template, arrays = [], []
    for i in idx:
        if i is None or i is Ellipsis:
            template.append(i)
        elif isinstance(i, slice):
            template.append(slice(*(None if v is None else operator.index(v)
                                    for v in (i.start, i.stop, i.step))))
        elif isinstance(i, (bool, np.bool_)):
            raise TypeError(f"fgrad.numpy {fn}: a boolean scalar index is not supported; use where")
        elif isinstance(i, (int, np.integer)):
            template.append(int(i))
        else:
            kind = dtype_of(i).kind if isinstance(i, Tracer) else np.asarray(i).dtype.kind
            if kind == "b":   # a mask: its True positions become integer arrays
                mask = _concrete(i, "indexing with a boolean mask")
                for a in np.nonzero(mask):
                    template.append(ix.ARRAY)
                    arrays.append(a)
            elif kind in "iu":
                template.append(ix.ARRAY)
                arrays.append(i if isinstance(i, Tracer) else np.asarray(i))
            else:
                raise IndexError(f"fgrad.numpy {fn}: indices must be integers, slices, None, "
                                 f"Ellipsis or integer/boolean arrays, got {type(i).__name__} "
                                 f"of dtype {np.dtype(kind) if kind else '?'}")
    return tuple(template), arrays


def getitem(x, idx):
    """``x[idx]`` with NumPy semantics: basic, advanced and (static) boolean-mask indexing."""
    x = _arr(x)
    template, arrays = _split_index(idx)
    try:
        return bind(ix.gather_p, x, *arrays, template=template)
    except IndexError as err:
        raise IndexError(f"fgrad.numpy indexing: index {idx!r} does not fit an array of shape "
                         f"{shape_of(x)}: {err}") from None


def _scatter(prim, x, idx, y):
    template, arrays = _split_index(idx, ".at[]")
    x, y = _arr(x), _arr(y)
    try:
        return bind(prim, x, y, *arrays, template=template)
    except (IndexError, ValueError) as err:
        raise type(err)(f"fgrad.numpy .at[{idx!r}]: cannot update an array of shape "
                        f"{shape_of(x)} with a value of shape {shape_of(y)}: {err}") from None


_MODES = (None, "promise_in_bounds", "clip", "fill", "drop")


def _default_fill(dt):
    """JAX's fill value for out-of-range reads: NaN, the most negative (signed) or largest
    (unsigned) integer, True."""
    dt = np.dtype(dt)
    if dt.kind in "fc":
        return np.nan
    if dt.kind == "i":
        return np.iinfo(dt).min
    if dt.kind == "u":
        return np.iinfo(dt).max
    return True


def _moded_index(x_shape, idx, mode, fn):
    """``(index, padded_axes)``: ``idx`` with its integer entries brought in range by ``mode``.

    ``"clip"`` clamps each integer index to ``[0, n - 1]`` (after counting negative ones from the
    end); ``"fill"`` and ``"drop"`` send out-of-range indices to position ``n``, one past the end
    of an axis the caller pads by one (``padded_axes``), so that a read there gives the fill
    value and a write there is cut off with the padding. Slices and masks never leave the array.
    """
    if mode not in _MODES:
        raise ValueError(f"fgrad.numpy .at[].{fn}: mode must be one of 'promise_in_bounds', "
                         f"'clip', 'fill' or 'drop', got {mode!r}")
    if mode in (None, "promise_in_bounds"):
        return idx, ()
    parts = list(idx) if isinstance(idx, tuple) else [idx]
    consumed = 0
    for i in parts:
        if i is None or i is Ellipsis:
            continue
        if not isinstance(i, (slice, int, np.integer)) and dtype_of(i).kind == "b":
            consumed += len(shape_of(i))
        else:
            consumed += 1
    out, padded, axis = [], [], 0
    for i in parts:
        if i is None:
            out.append(i)
            continue
        if i is Ellipsis:
            out.append(i)
            axis += len(x_shape) - consumed
            continue
        if isinstance(i, slice):
            out.append(i)
            axis += 1
            continue
        if isinstance(i, (bool, np.bool_)) or (not isinstance(i, (int, np.integer))
                                               and dtype_of(i).kind == "b"):
            out.append(i)
            axis += len(shape_of(i))
            continue
        if axis >= len(x_shape):
            raise IndexError(f"fgrad.numpy .at[].{fn}: too many indices for an array of shape "
                             f"{x_shape}")
        n = x_shape[axis]
        i = i if isinstance(i, (int, np.integer, Tracer)) else np.asarray(i)
        if mode == "clip":
            i = where(i < 0, i + n, i)
            i = clip(i, 0, builtins.max(n - 1, 0))
        else:
            ok = (i >= -n) & (i < n)
            i = where(ok, where(i < 0, i + n, i), n)
            padded.append(axis)
        if isinstance(i, np.ndarray) and i.ndim == 0:
            i = int(i)
        out.append(i)
        axis += 1
    return tuple(out), tuple(padded)


def _pad_axes(x, axes, value):
    pw = [(0, 1 if ax in axes else 0) for ax in range(ndim(x))]
    return pad(x, pw, constant_values=value)


class _IndexUpdateRef:
    """``x.at[idx]``: functional updates that return a new array (``jax.Array.at``).

    ``set add subtract multiply divide min max power apply get``. Repeated indices accumulate in
    ``add``, ``multiply``, ``min`` and ``max`` (every occurrence takes part, as in JAX);
    ``set``, ``power`` and ``apply`` use the last one (NumPy's fancy assignment).
    ``mode``: ``None``/``"promise_in_bounds"`` (NumPy's rule: an out-of-range index raises),
    ``"clip"`` (clamp indices into range), ``"fill"`` (reads out of range give ``fill_value``,
    NaN by default for floats; writes out of range are dropped), ``"drop"`` (writes out of range
    are dropped; for ``get`` as ``"fill"``). ``indices_are_sorted`` and ``unique_indices`` are
    accepted and ignored (they are hints for XLA).
    """

    __slots__ = ("x", "idx")

    def __init__(self, x, idx):
        self.x, self.idx = x, idx

    def get(self, *, mode=None, fill_value=None, indices_are_sorted=False, unique_indices=False):
        x = _arr(self.x)
        idx, padded = _moded_index(shape_of(x), self.idx, mode, "get")
        if padded:
            fill = _default_fill(dtype_of(x)) if fill_value is None else fill_value
            x = _padded_for_fill(x, padded, fill)
        return getitem(x, idx)

    def _update(self, prim, values, mode, fn):
        x = _arr(self.x)
        idx, padded = _moded_index(shape_of(x), self.idx, mode, fn)
        if not padded:
            return _scatter(prim, x, idx, values)
        out = _scatter(prim, _pad_axes(x, padded, 0), idx, values)
        return getitem(out, tuple(slice(0, n) for n in shape_of(x)))

    def set(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        return self._update(ix.scatter_set_p, values, mode, "set")

    def add(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        return self._update(ix.scatter_add_p, values, mode, "add")

    def subtract(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        return self.add(-_arr(values), mode=mode)

    def multiply(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        return self._update(ix.scatter_mul_p, values, mode, "multiply")

    mul = multiply

    def divide(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        return self.multiply(1 / _arr(values), mode=mode)

    def min(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):  # noqa: A003
        """``x[idx] = minimum(x[idx], values)``; the derivative follows the smaller operand."""
        return self._update(ix.scatter_min_p, values, mode, "min")

    def max(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):  # noqa: A003
        """``x[idx] = maximum(x[idx], values)``; the derivative follows the larger operand."""
        return self._update(ix.scatter_max_p, values, mode, "max")

    def power(self, values, *, mode=None, indices_are_sorted=False, unique_indices=False):
        """``x[idx] = x[idx] ** values``."""
        return self.apply(lambda v: power(v, values), mode=mode)

    def apply(self, func, *, mode=None, indices_are_sorted=False, unique_indices=False):
        """``x[idx] = func(x[idx])`` for an elementwise ``func`` (applied once per position)."""
        x = _arr(self.x)
        idx, padded = _moded_index(shape_of(x), self.idx, mode, "apply")
        if padded:
            xp = _pad_axes(x, padded, 0)
            out = _scatter(ix.scatter_set_p, xp, idx, func(getitem(xp, idx)))
            return getitem(out, tuple(slice(0, n) for n in shape_of(x)))
        return _scatter(ix.scatter_set_p, x, idx, func(getitem(x, idx)))


def _padded_for_fill(x, axes, fill):
    """``x`` with one more entry of value ``fill`` at the end of each axis in ``axes``."""
    dt = dtype_of(x)
    if dt.kind in "iub" or not isinstance(fill, float):
        return _pad_axes(x, axes, np.asarray(fill, dt))
    return _pad_axes(x, axes, fill)


class _IndexUpdateHelper:
    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x

    def __getitem__(self, idx):
        return _IndexUpdateRef(self.x, idx)


def at(x):
    """``at(x)[idx].set(v)`` works on NumPy arrays and tracers alike (tracers also have ``x.at``)."""
    return _IndexUpdateHelper(x)


def take(a, indices, axis=None):
    """Elements of ``a`` at ``indices`` along ``axis`` (of the flattened array when None)."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    ax = _axis(axis, ndim(a), "take")
    return getitem(a, (slice(None),) * ax + (_arr(indices),))


def take_along_axis(arr, indices, axis):
    """``arr`` at ``indices`` matched along every other axis (e.g. the logits of the labels)."""
    arr, indices = _arr(arr), _arr(indices)
    n = ndim(arr)
    ax = _axis(axis, n, "take_along_axis")
    if ndim(indices) != n:
        raise ValueError(f"fgrad.numpy.take_along_axis: indices must have the same number of "
                         f"dimensions as arr ({n}), got shape {shape_of(indices)}")
    idx = []
    for i in range(n):
        if i == ax:
            idx.append(indices)
        else:
            shape_i = [1] * n
            shape_i[i] = shape_of(arr)[i]
            idx.append(np.arange(shape_of(arr)[i]).reshape(shape_i))
    return getitem(arr, tuple(idx))


def sort(a, axis=-1):
    """Sorted copy; the derivative follows each element to its sorted place."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    return take_along_axis(a, argsort(a, axis), axis)


def argsort(a, axis=-1):
    """Indices that sort ``a`` along ``axis`` (stable)."""
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    return bind(red.argsort_p, a, axis=_axis(axis, ndim(a), "argsort"))


# --------------------------------------------------------------------------------------------
# Contractions (all on dot_general)
# --------------------------------------------------------------------------------------------

def _contract_check(fn, x, y, ax_x, ax_y):
    sx, sy = shape_of(x), shape_of(y)
    if sx[ax_x] != sy[ax_y]:
        raise ValueError(f"{_name(fn)}: shapes {sx} and {sy} do not match: axis {ax_x} of the "
                         f"first has size {sx[ax_x]} but axis {ax_y} of the second has size "
                         f"{sy[ax_y]}")


def matmul(a, b):
    """Matrix product with NumPy's rules: 1-D operands are vectors, leading axes broadcast."""
    a, b = _arr(a), _arr(b)
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        raise ValueError(f"fgrad.numpy.matmul: operands must be at least 1-D, got shapes {sa} and "
                         f"{sb}; use multiply for scalars")
    va, vb = len(sa) == 1, len(sb) == 1
    if va:
        a = reshape(a, (1,) + sa)
    if vb:
        b = reshape(b, sb + (1,))
    sa, sb = shape_of(a), shape_of(b)
    if sa[-1] != sb[-2]:
        raise ValueError(f"fgrad.numpy.matmul: shapes {shape_of(_arr(a)) if not va else sa[1:]} "
                         f"and {sb if not vb else sb[:-1]} are not aligned: the last axis of the "
                         f"first ({sa[-1]}) must equal the second-to-last axis of the second "
                         f"({sb[-2]})")
    if len(sa) == 2 and len(sb) == 2:
        out = _dot.dot_general(a, b, (((1,), (0,)), ((), ())))
    elif len(sb) == 2:   # (..., n, k) @ (k, m): one big GEMM over the flattened leading axes
        out = _dot.dot_general(a, b, (((len(sa) - 1,), (0,)), ((), ())))
    else:
        try:
            batch = np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise ValueError(f"fgrad.numpy.matmul: batch axes of shapes {sa} and {sb} cannot be "
                             f"broadcast together") from None
        a = broadcast_to(a, batch + sa[-2:])
        b = broadcast_to(b, batch + sb[-2:])
        nb = len(batch)
        out = _dot.dot_general(a, b, (((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb)))))
    if va:
        out = squeeze(out, -2)
    if vb:
        out = squeeze(out, -1)
    return out


def dot(a, b):
    """NumPy's dot: scalars multiply, vectors give the inner product, otherwise sum over the
    last axis of ``a`` and the second-to-last of ``b``."""
    a, b = _arr(a), _arr(b)
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    if ndim(b) <= 2:
        return matmul(a, b)
    _contract_check("dot", a, b, -1, -2)
    return _dot.dot_general(a, b, (((ndim(a) - 1,), (ndim(b) - 2,)), ((), ())))


def vdot(a, b):
    return dot(ravel(a), ravel(b))


def inner(a, b):
    a, b = _arr(a), _arr(b)
    if ndim(a) == 0 or ndim(b) == 0:
        return multiply(a, b)
    _contract_check("inner", a, b, -1, -1)
    return _dot.dot_general(a, b, (((ndim(a) - 1,), (ndim(b) - 1,)), ((), ())))


def outer(a, b):
    return multiply(reshape(ravel(a), (-1, 1)), ravel(b))


def tensordot(a, b, axes=2):
    """Sum products over ``axes`` (an int: the last n of a with the first n of b; or two lists)."""
    a, b = _arr(a), _arr(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        ax_a, ax_b = list(range(ndim(a) - n, ndim(a))), list(range(n))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
    ax_a = [_axis(x, ndim(a), "tensordot") for x in ax_a]
    ax_b = [_axis(x, ndim(b), "tensordot") for x in ax_b]
    if len(ax_a) != len(ax_b):
        raise ValueError("fgrad.numpy.tensordot: both operands need the same number of axes")
    for i, j in zip(ax_a, ax_b):
        _contract_check("tensordot", a, b, i, j)
    return _dot.dot_general(a, b, ((tuple(ax_a), tuple(ax_b)), ((), ())))


def convolve(a, v, mode="full"):
    """Discrete linear convolution of two 1-D arrays, ``out[k] = sum_n a[n] v[k - n]``, with
    NumPy's modes ``"full"`` (length N + M - 1), ``"same"`` (max(N, M)) and ``"valid"``
    (max(N, M) - min(N, M) + 1). Differentiable in both operands: each output is a dot product
    of a window of the zero-padded longer operand with the reversed shorter one."""
    a, v = _arr(a), _arr(v)
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError(f"fgrad.numpy.convolve: a and v must be 1-D, got shapes {shape_of(a)} "
                         f"and {shape_of(v)}")
    n, m = shape_of(a)[0], shape_of(v)[0]
    if n == 0 or m == 0:
        raise ValueError("fgrad.numpy.convolve: a and v must not be empty")
    if m > n:                      # convolution commutes; slide the shorter one
        a, v, n, m = v, a, m, n
    full_len = n + m - 1
    padded = pad(a, (m - 1, m - 1))
    windows = padded[np.arange(full_len)[:, None] + np.arange(m)[None, :]]   # (N + M - 1, M)
    out = matmul(windows, flip(v))
    if mode == "full":
        return out
    if mode == "same":
        start = (m - 1) // 2
        return out[start:start + n]
    if mode == "valid":
        return out[m - 1:n]
    raise ValueError(f"fgrad.numpy.convolve: mode must be 'full', 'same' or 'valid', got {mode!r}")


def correlate(a, v, mode="valid"):
    """Cross-correlation of two 1-D arrays, ``out[k] = sum_n a[n + k] v[n]`` (NumPy's
    ``correlate`` for real inputs: ``"valid"`` by default, also ``"same"`` and ``"full"``)."""
    a, v = _arr(a), _arr(v)
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError(f"fgrad.numpy.correlate: a and v must be 1-D, got shapes {shape_of(a)} "
                         f"and {shape_of(v)}")
    n, m = shape_of(a)[0], shape_of(v)[0]
    if m > n:                      # NumPy: correlate(a, v) = correlate(v, a) reversed
        return flip(correlate(v, a, mode))
    return convolve(a, flip(v), mode)


# --------------------------------------------------------------------------------------------
# Creation (constants: they never depend on traced values)
# --------------------------------------------------------------------------------------------

def _like_dtype(a, dtype):
    return np.dtype(dtype) if dtype is not None else dtype_of(a)


class ArrayWithAt(np.ndarray):
    """What creation functions return inside a transform: a NumPy array with JAX's ``.at``.

    ``jnp.zeros(n).at[i].set(v)`` is the JAX idiom for building an array inside a function, but
    ``numpy.ndarray`` has no ``.at`` and cannot be given one. So while a transform is active
    (``grad``, ``vmap``, ``jit``, ...), ``zeros``, ``ones``, ``full``, ``empty``, the ``*_like``
    functions, ``array``, ``asarray``, ``arange``, ``linspace``, ``eye`` and ``identity`` return
    their array as this thin subclass (a view: no copy). It is an ``ndarray`` in every other
    respect, and NumPy arithmetic on it gives plain ``ndarray`` results (``__array_wrap__``),
    so it does not spread. Outside every transform these functions return plain NumPy arrays,
    as everything in fgrad.numpy does; there ``fgrad.numpy.at(x)[i].set(v)`` is the spelling
    that works on any array.
    """

    @property
    def at(self):
        return _IndexUpdateHelper(self)

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        if return_scalar:
            return obj[()]
        return obj.view(np.ndarray) if type(obj) is not np.ndarray else obj


def _made(out):
    """``out`` as an :class:`ArrayWithAt` while a transform is active, else unchanged."""
    if _core._trace_stack and type(out) is np.ndarray:
        return out.view(ArrayWithAt)
    return out


def zeros(shape, dtype=float):
    return _made(np.zeros(shape, dtype))


def ones(shape, dtype=float):
    return _made(np.ones(shape, dtype))


def full(shape, fill_value, dtype=None):
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dtype) if dtype else fill_value, _shape_arg(shape))
    return _made(np.full(shape, fill_value, dtype))


def empty(shape, dtype=float):
    return _made(np.zeros(shape, dtype))


def zeros_like(a, dtype=None, shape=None):
    return _made(np.zeros(shape_of(a) if shape is None else shape, _like_dtype(a, dtype)))


def ones_like(a, dtype=None, shape=None):
    return _made(np.ones(shape_of(a) if shape is None else shape, _like_dtype(a, dtype)))


def full_like(a, fill_value, dtype=None, shape=None):
    return full(shape_of(a) if shape is None else shape, fill_value, _like_dtype(a, dtype))


def empty_like(a, dtype=None, shape=None):
    return zeros_like(a, dtype, shape)


def asarray(a, dtype=None):
    """``a`` as an array; tracers pass through (converted to ``dtype`` if given)."""
    if isinstance(a, Tracer):
        return a if dtype is None else astype(a, dtype)
    if isinstance(a, (list, tuple)) and builtins.any(isinstance(x, Tracer) for x in _flat(a)):
        return stack([asarray(x, dtype) for x in a])
    return _made(np.asarray(a, dtype))


def array(a, dtype=None, copy=True):
    if isinstance(a, Tracer) or (isinstance(a, (list, tuple)) and builtins.any(
            isinstance(x, Tracer) for x in _flat(a))):
        return asarray(a, dtype)
    return _made(np.array(a, dtype, copy=copy))


def _creation(np_fn):
    def fn(*args, **kwargs):
        return _made(np_fn(*args, **kwargs))
    fn.__name__ = fn.__qualname__ = np_fn.__name__
    fn.__doc__ = f"numpy.{np_fn.__name__} (an array with ``.at`` inside transforms)."
    return fn


arange, linspace, eye, identity = (_creation(np.arange), _creation(np.linspace),
                                   _creation(np.eye), _creation(np.identity))
tri = np.tri


def _flat(seq):
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


meshgrid, indices, logspace = np.meshgrid, np.indices, np.logspace
allclose, array_equal, isclose = np.allclose, np.array_equal, np.isclose

del zero

# The public names: everything defined above except the modules and engine names imported
# for internal use (so `from ._funcs import *` brings only NumPy's API into fgrad.numpy).
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and not isinstance(_v, type(np))
           and _n not in ("annotations", "Tracer", "bind", "dtype_of", "shape_of")]
