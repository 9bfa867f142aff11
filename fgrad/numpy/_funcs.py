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
from ..primitives import elementwise_extra as ewx

float32, float64, float16 = np.float32, np.float64, np.float16
int8, int16, int32, int64, uint8, uint32 = np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32
bool_ = np.bool_
pi, e, inf, nan, newaxis = np.pi, np.e, np.inf, np.nan, None
dtype = np.dtype
ndarray = np.ndarray
finfo, iinfo, result_type = np.finfo, np.iinfo, np.result_type
issubdtype, integer, floating, inexact, number = np.issubdtype, np.integer, np.floating, np.inexact, np.number


def _arr(x):
    """Leave arrays, tracers and Python scalars alone; turn lists and tuples into arrays.

    Every fgrad.numpy function converts its array-like arguments here, so a (nested) list or
    tuple that holds tracers is accepted wherever NumPy accepts an array-like
    (``fnp.mean([x, y])``, ``fnp.sum((a, b))``): it is stacked into one traced array, in the
    dtype ``numpy.array`` gives the same values (:func:`_stack_nested`).
    """
    if isinstance(x, (Tracer, np.ndarray, np.generic, float, int, bool, complex)):
        return x   # (a Python complex stays weakly typed: complex64 / 1j is complex64, as NumPy)
    if isinstance(x, (list, tuple)) and _holds_tracer(x):
        return _stack_nested(x)
    return np.asarray(x)


def _holds_tracer(seq):
    """True when the nested lists/tuples ``seq`` contain a tracer anywhere."""
    return builtins.any(isinstance(x, Tracer) or (isinstance(x, (list, tuple)) and _holds_tracer(x))
                        for x in seq)


def _stack_nested(seq, dtype=None):
    """A nested list/tuple of tracers, arrays and numbers as one array, as ``numpy.array(seq)``:
    the dtype is NumPy's for those values (Python floats count as float64 here, as in
    ``numpy.array([np.float32(1), 1.0])``), and each level is stacked along a new first axis."""
    if dtype is None:
        dtype = np.result_type(*[dtype_of(x) for x in _flat(seq)]) if seq else np.float64
    parts = [_stack_nested(x, dtype) if isinstance(x, (list, tuple)) else
             astype(x, dtype) if isinstance(x, Tracer) else np.asarray(x, dtype) for x in seq]
    if not parts:
        return np.zeros((0,), dtype)
    try:
        return stack(parts)
    except ValueError:
        raise ValueError(f"fgrad.numpy: a list of traced values must be rectangular to become an "
                         f"array (as numpy.array requires), got elements of shapes "
                         f"{[shape_of(p) for p in parts]}") from None


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

#: Argument types that ``_arr`` leaves alone and ``bind`` hands straight to NumPy: with only
#: these (and fgrad.debug_nans off) the elementwise wrappers call the primitive's NumPy
#: implementation themselves. This is the path every VJP rule's arithmetic takes under a grad
#: with no outer transform; skipping _arr and bind saves ~0.8 us per call there.
_EAGER_TYPES = frozenset({np.ndarray, float, int, bool, np.float64, np.float32, np.int64, np.bool_})


def _unary(prim, name, doc):
    def fn(x):
        if type(x) in _EAGER_TYPES and _core._debug_hook is None:
            return prim.impl(x)
        return bind(prim, _arr(x))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _binary(prim, name, doc):
    def fn(x, y):
        try:
            if type(x) in _EAGER_TYPES and type(y) in _EAGER_TYPES and _core._debug_hook is None:
                return prim.impl(x, y)
            x, y = _arr(x), _arr(y)
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
    if dtype_of(centered).kind == "c":   # |a - mean|^2, real (as NumPy)
        centered_sq = real(centered) * real(centered) + imag(centered) * imag(centered)
    else:
        centered_sq = centered * centered
    return sum(centered_sq, axis=axis, keepdims=keepdims) / builtins.max(n - ddof, 0)


def std(a, axis=None, keepdims=False, ddof=0, dtype=None):
    """Standard deviation: ``sqrt(var(a))``.

    Where the variance is 0 (one element, or all equal) the derivative is 0, not NaN, as in
    torch and HIPS autograd: std is a scaled 2-norm of ``a - mean(a)``, and takes the 2-norm's
    convention at 0 (sqrt's infinite slope would meet var's zero derivative there).
    """
    v = var(a, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype)
    is_zero = v == 0
    return where(is_zero, 0, sqrt(where(is_zero, 1, v)))


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


def _at_least(arys, one):
    out = tuple(one(_arr(a)) for a in arys)
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys):
    """Each array with at least one axis (0-d becomes (1,)); a tuple for several arrays."""
    return _at_least(arys, lambda a: reshape(a, (1,)) if ndim(a) == 0 else a)


def atleast_2d(*arys):
    """Each array with at least two axes, new ones in front: (n,) becomes (1, n)."""
    return _at_least(arys, lambda a: reshape(a, (1,) * (2 - ndim(a)) + shape_of(a))
                     if ndim(a) < 2 else a)


def atleast_3d(*arys):
    """Each array with at least three axes, as NumPy: () -> (1, 1, 1), (n,) -> (1, n, 1),
    (m, n) -> (m, n, 1)."""
    def one(a):
        s = shape_of(a)
        if len(s) >= 3:
            return a
        return reshape(a, {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}[len(s)])
    return _at_least(arys, one)


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
    if builtins.sum(sizes) != n:   # unsorted or negative indices: the pieces overlap; slice each
        lead = (slice(None),) * ax
        return [a[lead + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return list(bind(sh.split_p, a, sizes=sizes, axis=ax))


def array_split(a, indices_or_sections, axis=0):
    """As :func:`split`, but a number of sections need not divide the axis: the first
    ``n % sections`` pieces get one element more. A list of indices splits there, as ``split``."""
    a = _arr(a)
    if not isinstance(indices_or_sections, (int, np.integer)):
        return split(a, indices_or_sections, axis)
    sections = int(indices_or_sections)
    if sections <= 0:
        raise ValueError(f"fgrad.numpy.array_split: the number of sections must be larger than 0, "
                         f"got {sections}")
    n = shape_of(a)[_axis(axis, ndim(a), "array_split")]
    q, r = divmod(n, sections)
    sizes = [q + 1] * r + [q] * (sections - r)
    return split(a, [int(i) for i in np.cumsum(sizes)[:-1]], axis)


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
    """``sum(conj(a) * b)`` over the flattened arrays, as NumPy (the first is conjugated)."""
    return dot(conjugate(ravel(a)), ravel(b))


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
    if isinstance(a, (list, tuple)) and _holds_tracer(a):
        return _stack_nested(a, None if dtype is None else np.dtype(dtype))
    return _made(np.asarray(a, dtype))


def array(a, dtype=None, copy=True):
    if isinstance(a, Tracer) or (isinstance(a, (list, tuple)) and _holds_tracer(a)):
        return asarray(a, dtype)
    return _made(np.array(a, dtype, copy=copy))


def _creation(np_fn):
    def fn(*args, **kwargs):
        return _made(np_fn(*args, **kwargs))
    fn.__name__ = fn.__qualname__ = np_fn.__name__
    fn.__doc__ = f"numpy.{np_fn.__name__} (an array with ``.at`` inside transforms)."
    return fn


arange, eye, identity = _creation(np.arange), _creation(np.eye), _creation(np.identity)
tri = np.tri


def _flat(seq):
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


meshgrid, indices, logspace = np.meshgrid, np.indices, np.logspace


# ============================================================================================
# NumPy coverage: the rest of what HIPS autograd differentiates (issue 10)
#
# Composites of the functions above, so they need no rules of their own; arccosh, hypot,
# logaddexp and logaddexp2 are primitives (fgrad/primitives/elementwise_extra.py says why).
# ============================================================================================

def _float_for(x, ufunc):
    """``x`` in the float dtype NumPy's ``ufunc`` computes it in (integers and bools -> float)."""
    x = _arr(x)
    dt = ufunc(np.zeros((), dtype_of(x))).dtype
    return x if dtype_of(x) == dt and not isinstance(x, (int, bool)) else astype(x, dt)


def _check_broadcast(fn, *xs):
    try:
        np.broadcast_shapes(*(shape_of(x) for x in xs))
    except ValueError:
        raise ValueError(f"{_name(fn)}: operands of shapes {[shape_of(x) for x in xs]} cannot be "
                         f"broadcast together (NumPy broadcasting aligns trailing axes, which must "
                         f"be equal or 1)") from None


arccosh = _unary(ewx.arccosh_p, "arccosh", "Inverse hyperbolic cosine elementwise (x >= 1).")
hypot = _binary(ewx.hypot_p, "hypot", "sqrt(x1**2 + x2**2) without overflow (gradient 0 at the "
                                      "origin, as the 2-norm's).")
logaddexp = _binary(ewx.logaddexp_p, "logaddexp", "log(exp(x1) + exp(x2)) without overflow.")
logaddexp2 = _binary(ewx.logaddexp2_p, "logaddexp2", "log2(2**x1 + 2**x2) without overflow.")


def deg2rad(x):
    """Degrees to radians: ``x * (pi / 180)``, NumPy's constant."""
    return multiply(_float_for(x, np.deg2rad), np.pi / 180.0)


def rad2deg(x):
    """Radians to degrees: ``x * (180 / pi)``, NumPy's constant."""
    return multiply(_float_for(x, np.rad2deg), 180.0 / np.pi)


radians, degrees = deg2rad, rad2deg


def fabs(x):
    """|x| for real ``x``, in a float dtype as NumPy (derivative sign(x), 0 at 0)."""
    return abs(_float_for(x, np.fabs))


def fmax(x1, x2):
    """Elementwise maximum that ignores NaN: NaN only where both operands are NaN (NumPy's
    ``fmax``). The derivative goes to the operand chosen, split evenly on ties as ``maximum``."""
    x1, x2 = _arr(x1), _arr(x2)
    _check_broadcast("fmax", x1, x2)
    return where(isnan(x2), x1, where(isnan(x1), x2, maximum(x1, x2)))


def fmin(x1, x2):
    """Elementwise minimum that ignores NaN (NumPy's ``fmin``); see :func:`fmax`."""
    x1, x2 = _arr(x1), _arr(x2)
    _check_broadcast("fmin", x1, x2)
    return where(isnan(x2), x1, where(isnan(x1), x2, minimum(x1, x2)))


def sinc(x):
    """NumPy's normalised sinc ``sin(pi x) / (pi x)``, 1 at 0.

    Where ``|pi x| < 0.1`` it is the Taylor series of ``sin(y) / y`` to degree 10 (truncation
    error below 1e-21), so every derivative is right at and around 0, where the quotient's
    derivatives would be 0/0 (as JAX's sinc); elsewhere the quotient, as NumPy.
    """
    x = _float_for(x, np.sinc)
    y = x * np.pi
    small = abs(y) < 0.1
    safe = where(small, 1.0, y)
    y2 = y * y
    # sin(y)/y = 1 - y^2/3! + y^4/5! - ...; Horner with the ratios (2k)(2k+1) = 6, 20, 42, 72, 110
    series = 1 - y2 / 6 * (1 - y2 / 20 * (1 - y2 / 42 * (1 - y2 / 72 * (1 - y2 / 110))))
    return where(small, series, sin(safe) / safe)


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):  # noqa: A002 - NumPy's names
    """NaN -> ``nan``, +inf -> ``posinf`` (the dtype's largest value by default), -inf ->
    ``neginf`` (the most negative); other values pass through with derivative 1, the replaced
    ones get derivative 0. Integer and boolean arrays are returned as they are. ``copy`` is
    accepted for NumPy's signature; the result is always a new array (nothing is written in
    place)."""
    x = _arr(x)
    dt = dtype_of(x)
    if dt.kind in "biu":
        return x
    if dt.kind != "f":
        raise TypeError(f"fgrad.numpy.nan_to_num: expected a real float array, got dtype {dt}")
    big = np.finfo(dt)
    x = where(isnan(x), nan, x)
    x = where(x == np.inf, big.max if posinf is None else posinf, x)
    return where(x == -np.inf, big.min if neginf is None else neginf, x)


# --- differences and the numerical gradient ----------------------------------------------------

_NOT_GIVEN = object()


def _along(ax, index, nd):
    """An index that applies ``index`` (a slice or an int) on axis ``ax`` of ``nd`` axes."""
    return (slice(None),) * ax + (index,) + (slice(None),) * (nd - ax - 1)


def diff(a, n=1, axis=-1, prepend=_NOT_GIVEN, append=_NOT_GIVEN):
    """The ``n``-th discrete difference ``a[1:] - a[:-1]`` along ``axis`` (``!=`` for booleans),
    after joining ``prepend`` and ``append`` (scalars are broadcast to one slice) as NumPy."""
    if operator.index(n) < 0:
        raise ValueError(f"fgrad.numpy.diff: the order n must be non-negative, got {n}")
    a = _arr(a)
    if n == 0:
        return a
    nd = ndim(a)
    if nd == 0:
        raise ValueError("fgrad.numpy.diff: the input must be at least 1-D, got a 0-d array")
    ax = _axis(axis, nd, "diff")
    pieces = []
    for extra in (prepend, a, append):
        if extra is _NOT_GIVEN:
            continue
        extra = _arr(extra)
        if ndim(extra) == 0:
            extra = broadcast_to(extra, tuple(1 if i == ax else k for i, k in enumerate(shape_of(a))))
        pieces.append(extra)
    if len(pieces) > 1:
        common = np.result_type(*(dtype_of(p) for p in pieces))
        a = concatenate([astype(p, common) for p in pieces], axis=ax)
    op = not_equal if dtype_of(a) == np.bool_ else subtract
    for _ in range(n):
        a = op(a[_along(ax, slice(1, None), nd)], a[_along(ax, slice(None, -1), nd)])
    return a


def _spacings(varargs, f_shape, axes):
    """Per axis: a scalar spacing, or the 1-D differences of the coordinates (NumPy's rules:
    integer coordinates become float64; evenly spaced NumPy coordinates become one scalar)."""
    if not varargs:
        return [1.0] * len(axes)
    if len(varargs) == 1 and ndim(varargs[0]) == 0:
        return [varargs[0]] * len(axes)
    if len(varargs) != len(axes):
        raise TypeError(f"fgrad.numpy.gradient: give no spacing, one scalar, or one per axis "
                        f"({len(axes)}), got {len(varargs)}")
    out = []
    for ax, d in zip(axes, varargs):
        d = _arr(d)
        if ndim(d) == 0:
            out.append(d)
            continue
        if ndim(d) != 1 or shape_of(d)[0] != f_shape[ax]:
            raise ValueError(f"fgrad.numpy.gradient: coordinates along axis {ax} must be a scalar "
                             f"or 1-D of length {f_shape[ax]}, got shape {shape_of(d)}")
        if dtype_of(d).kind in "iub":
            d = astype(d, np.float64)
        dx = diff(d)
        if not isinstance(dx, Tracer) and np.all(dx == dx[0]):   # uniform: one scalar
            dx = dx[0]
        out.append(dx)
    return out


def gradient(f, *varargs, axis=None, edge_order=1):
    """The gradient of ``f`` sampled on a grid, as NumPy: second-order central differences
    inside, first- (``edge_order=1``) or second-order one-sided differences at the ends.

    ``varargs`` are the spacings: none (1), one scalar for every axis, or one scalar or 1-D
    coordinate array per axis in ``axis``. Returns one array for one axis, else a tuple.
    Differentiable in ``f`` and in traced spacings (a traced coordinate array is always treated
    as unevenly spaced: same values, up to rounding).
    """
    f = _arr(f)
    nd = ndim(f)
    if axis is None:
        axes = tuple(range(nd))
    else:   # in the order given (not sorted, as reductions' axes are)
        axes = tuple(_axis(a, nd, "gradient") for a in (axis if isinstance(axis, (tuple, list))
                                                        else (axis,)))
        if len(set(axes)) != len(axes):
            raise ValueError(f"fgrad.numpy.gradient: repeated axis in {axis!r}")
    if edge_order not in (1, 2):
        raise ValueError(f"fgrad.numpy.gradient: edge_order must be 1 or 2, got {edge_order!r}")
    for ax in axes:
        if shape_of(f)[ax] < edge_order + 1:
            raise ValueError(f"fgrad.numpy.gradient: axis {ax} has {shape_of(f)[ax]} element(s); "
                             f"edge_order={edge_order} needs at least {edge_order + 1}")
    dxs = _spacings(varargs, shape_of(f), axes)
    out_dtype = dtype_of(f) if dtype_of(f).kind == "f" else np.dtype(np.float64)
    f = astype(f, out_dtype)
    outs = []
    for ax, dx in zip(axes, dxs):
        at = lambda i: f[_along(ax, i, nd)]   # noqa: E731 - one slice (int) or a range (slice)
        uniform = ndim(dx) == 0
        shape1 = tuple(-1 if i == ax else 1 for i in range(nd))
        if uniform:   # interior: (f[i+1] - f[i-1]) / 2h
            inner = (at(slice(2, None)) - at(slice(None, -2))) / (2.0 * dx)
        else:         # interior on uneven steps h1 = dx[i-1], h2 = dx[i]: exact for quadratics
            h1, h2 = reshape(dx[:-1], shape1), reshape(dx[1:], shape1)
            inner = (-h2 / (h1 * (h1 + h2)) * at(slice(None, -2))
                     + (h2 - h1) / (h1 * h2) * at(slice(1, -1))
                     + h1 / (h2 * (h1 + h2)) * at(slice(2, None)))
        if edge_order == 1:
            first = (at(1) - at(0)) / (dx if uniform else dx[0])
            last = (at(-1) - at(-2)) / (dx if uniform else dx[-1])
        else:
            if uniform:
                c0, c1, c2 = -1.5 / dx, 2.0 / dx, -0.5 / dx
                d0, d1, d2 = 0.5 / dx, -2.0 / dx, 1.5 / dx
            else:
                h1, h2 = dx[0], dx[1]
                c0 = -(2.0 * h1 + h2) / (h1 * (h1 + h2))
                c1 = (h1 + h2) / (h1 * h2)
                c2 = -h1 / (h2 * (h1 + h2))
                h1, h2 = dx[-2], dx[-1]
                d0 = h2 / (h1 * (h1 + h2))
                d1 = -(h2 + h1) / (h1 * h2)
                d2 = (2.0 * h2 + h1) / (h2 * (h1 + h2))
            first = c0 * at(0) + c1 * at(1) + c2 * at(2)
            last = d0 * at(-3) + d1 * at(-2) + d2 * at(-1)
        pieces = [expand_dims(first, ax), inner, expand_dims(last, ax)]
        outs.append(concatenate([astype(p, out_dtype) for p in pieces], axis=ax))
    return outs[0] if len(outs) == 1 else tuple(outs)


# --- building and splitting arrays ---------------------------------------------------------------

def diag(v, k=0):
    """The ``k``-th diagonal of a 2-D ``v``, or a 2-D array with the 1-D ``v`` on its ``k``-th
    diagonal (zeros elsewhere). Linear, so its derivative is itself."""
    v = _arr(v)
    s = shape_of(v)
    k = operator.index(k)
    if len(s) == 2:
        return diagonal(v, k)
    if len(s) != 1:
        raise ValueError(f"fgrad.numpy.diag: input must be 1-D (to build a matrix) or 2-D (to take "
                         f"a diagonal), got shape {s}")
    n, off = s[0], builtins.abs(k)
    square = where(np.eye(n, dtype=bool), reshape(v, (n, 1)), np.zeros((), dtype_of(v)))
    widths = ((0, off), (off, 0)) if k >= 0 else ((off, 0), (0, off))
    return pad(square, widths)


def append(arr, values, axis=None):
    """``arr`` with ``values`` joined at the end along ``axis`` (both flattened when None)."""
    arr = _arr(arr)
    if axis is None:
        arr, values, axis = ravel(arr), ravel(values), 0
    values = _arr(values)
    common = np.result_type(dtype_of(arr), dtype_of(values))
    return concatenate([astype(arr, common), astype(values, common)], axis=axis)


def column_stack(tup):
    """1-D arrays as columns of a 2-D array (0-d as 1 x 1); 2-D arrays are joined as they are."""
    arrays = [_arr(v) for v in tup]
    arrays = [reshape(v, (-1, 1)) if ndim(v) < 2 else v for v in arrays]
    return concatenate(arrays, axis=1)


def row_stack(tup):
    """NumPy's old name of :func:`vstack`."""
    return vstack(tup)


def dstack(tup):
    """Join arrays along a third axis (each through :func:`atleast_3d`)."""
    return concatenate([atleast_3d(a) for a in tup], axis=2)


def hsplit(ary, indices_or_sections):
    """:func:`split` along axis 1 (axis 0 for 1-D arrays)."""
    a = _arr(ary)
    if ndim(a) == 0:
        raise ValueError("fgrad.numpy.hsplit: only works on arrays of 1 or more dimensions")
    return split(a, indices_or_sections, 1 if ndim(a) > 1 else 0)


def vsplit(ary, indices_or_sections):
    """:func:`split` along axis 0 of an array of 2 or more dimensions."""
    a = _arr(ary)
    if ndim(a) < 2:
        raise ValueError(f"fgrad.numpy.vsplit: only works on arrays of 2 or more dimensions, got "
                         f"shape {shape_of(a)}")
    return split(a, indices_or_sections, 0)


def dsplit(ary, indices_or_sections):
    """:func:`split` along axis 2 of an array of 3 or more dimensions."""
    a = _arr(ary)
    if ndim(a) < 3:
        raise ValueError(f"fgrad.numpy.dsplit: only works on arrays of 3 or more dimensions, got "
                         f"shape {shape_of(a)}")
    return split(a, indices_or_sections, 2)


def rot90(m, k=1, axes=(0, 1)):
    """Rotate by 90 degrees ``k`` times in the plane of ``axes`` (from the first towards the
    second), as flips and a transpose."""
    m = _arr(m)
    nd = ndim(m)
    if len(axes) != 2:
        raise ValueError(f"fgrad.numpy.rot90: axes must name 2 axes, got {axes!r}")
    a0, a1 = (_axis(a, nd, "rot90") for a in axes)
    if a0 == a1:
        raise ValueError(f"fgrad.numpy.rot90: axes must be different, got {axes!r}")
    k = operator.index(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, a0), a1)
    perm = list(range(nd))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    return transpose(flip(m, a1), perm) if k == 1 else flip(transpose(m, perm), a1)


def rollaxis(a, axis, start=0):
    """Move ``axis`` to before position ``start`` (NumPy's older :func:`moveaxis`)."""
    a = _arr(a)
    n = ndim(a)
    axis = _axis(axis, n, "rollaxis")
    if not -n <= start <= n:
        raise ValueError(f"fgrad.numpy.rollaxis: start must be in [{-n}, {n}] for an array with "
                         f"{n} dimension(s), got {start}")
    start = start + n if start < 0 else start
    if axis < start:
        start -= 1
    if axis == start:
        return a
    order = [i for i in range(n) if i != axis]
    order.insert(start, axis)
    return transpose(a, order)


def kron(a, b):
    """The Kronecker product: blocks ``a[i, j, ...] * b``. Both are padded with leading size-1
    axes to the same number of dimensions, as NumPy."""
    a, b = _arr(a), _arr(b)
    nd = builtins.max(ndim(a), ndim(b))
    sa = (1,) * (nd - ndim(a)) + shape_of(a)
    sb = (1,) * (nd - ndim(b)) + shape_of(b)
    # a as (a0, 1, a1, 1, ...) times b as (1, b0, 1, b1, ...), pairs of axes merged
    wide = multiply(reshape(a, tuple(x for n in sa for x in (n, 1))),
                    reshape(b, tuple(x for n in sb for x in (1, n))))
    return reshape(wide, tuple(p * q for p, q in zip(sa, sb)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of (arrays of) 3-vectors, NumPy's conventions for 2-vectors included
    (a 2-vector has z = 0; two 2-vectors give the z component alone). ``axis`` sets all three."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = _arr(a), _arr(b)
    a = moveaxis(a, _axis(axisa, ndim(a), "cross"), -1)
    b = moveaxis(b, _axis(axisb, ndim(b), "cross"), -1)
    na, nb = shape_of(a)[-1], shape_of(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError(f"fgrad.numpy.cross: vectors must have 2 or 3 components, got "
                         f"{na} and {nb} (shapes {shape_of(a)} and {shape_of(b)} after moving "
                         f"axisa/axisb last)")
    _check_broadcast("cross", a[..., 0], b[..., 0])
    common = np.result_type(dtype_of(a), dtype_of(b))
    a, b = astype(a, common), astype(b, common)
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    a2 = a[..., 2] if na == 3 else None
    b2 = b[..., 2] if nb == 3 else None
    if a2 is None:
        x, y = a1 * b2, -(a0 * b2)
    elif b2 is None:
        x, y = -(a2 * b1), a2 * b0
    else:
        x, y = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    out = stack(broadcast_arrays(x, y, z), axis=-1)
    return moveaxis(out, -1, _axis(axisc, ndim(out), "cross"))


def select(condlist, choicelist, default=0):
    """The entry of the first ``choicelist`` item whose condition holds, else ``default``
    (broadcast together, in NumPy's result dtype); the derivative follows the chosen item."""
    if len(condlist) != len(choicelist):
        raise ValueError(f"fgrad.numpy.select: {len(condlist)} conditions but {len(choicelist)} "
                         f"choices; give one choice per condition")
    if not condlist:
        raise ValueError("fgrad.numpy.select: the condition list is empty")
    weak = (int, float, complex)   # Python numbers take part in the dtype weakly, as in NumPy
    choices = [c if type(c) in weak else _arr(c) for c in choicelist]
    dflt = default if type(default) in weak else _arr(default)
    dt = np.result_type(*[c if type(c) in weak else dtype_of(c) for c in choices + [dflt]])
    conds = [_arr(c) for c in condlist]
    for i, c in enumerate(conds):
        if dtype_of(c) != np.bool_:
            raise TypeError(f"fgrad.numpy.select: condition {i} has dtype {dtype_of(c)}; "
                            f"conditions must be boolean arrays")
    _check_broadcast("select", *conds, *choices, dflt)
    shape = np.broadcast_shapes(*(shape_of(x) for x in conds + choices + [dflt]))
    out = broadcast_to(astype(dflt, dt), shape)
    for c, choice in zip(conds[::-1], choices[::-1]):   # the first match is applied last
        out = where(c, astype(choice, dt), out)
    return out


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """A copy of ``a`` in which the ``kth`` element (each of them, for a sequence) is where a
    sort would put it, smaller ones before and larger ones after.

    NumPy leaves the order inside the two parts unspecified, and fgrad returns them sorted: the
    result is ``sort(a, axis)``, the same inside and outside every transform (so ``vmap`` of it
    is the loop of it), but in general not NumPy's arrangement of the parts.
    """
    if order is not None:
        raise ValueError("fgrad.numpy.partition: order= (structured arrays) is not supported")
    a = _arr(a)
    if axis is None:
        a, axis = ravel(a), 0
    ax = _axis(axis, ndim(a), "partition")
    n = shape_of(a)[ax]
    for k in np.atleast_1d(np.asarray(kth)).tolist():
        if not -n <= operator.index(k) < n:
            raise ValueError(f"fgrad.numpy.partition: kth={k} is out of bounds for an axis of "
                             f"size {n}")
    return sort(a, ax)


# --- r_ and c_: NumPy's index-expression builders, over tracers -----------------------------------

def _with_ndmin(x, ndmin):
    return reshape(x, (1,) * (ndmin - ndim(x)) + shape_of(x)) if ndim(x) < ndmin else x


class _AxisConcatenator:
    """``r_[...]`` / ``c_[...]``: join arrays, scalars and ``start:stop:step`` ranges, as NumPy.

    Without tracers among the items this is NumPy's own object (the same array). With tracers it
    follows NumPy's rules with fgrad functions: a leading string directive ``'axis'`` or
    ``'axis,ndmin[,trans1d]'`` sets the joining axis, the minimum number of dimensions and where
    a short array's axes go; slices become ``arange`` (``linspace`` for a complex step); Python
    scalars take part in the dtype weakly. The matrix directives ``'r'``/``'c'`` make
    ``numpy.matrix`` objects and are not supported with tracers.
    """

    __slots__ = ("_numpy", "_name", "axis", "ndmin", "trans1d")

    def __init__(self, numpy_obj, name, axis, ndmin, trans1d):
        self._numpy, self._name = numpy_obj, name
        self.axis, self.ndmin, self.trans1d = axis, ndmin, trans1d

    def __getitem__(self, key):
        items = key if isinstance(key, tuple) else (key,)
        if not _holds_tracer(items):
            return _made(self._numpy[key])
        axis, ndmin, trans1d = self.axis, self.ndmin, self.trans1d
        objs, dtype_parts = [], []
        for k, item in enumerate(items):
            if isinstance(item, str):
                if k != 0:
                    raise ValueError(f"fgrad.numpy.{self._name}: a string directive must be the "
                                     f"first entry, got {item!r} at position {k}")
                if item in ("r", "c"):
                    raise ValueError(f"fgrad.numpy.{self._name}: the matrix directive {item!r} "
                                     f"makes a numpy.matrix, which fgrad does not support on "
                                     f"traced values; use '0,2' or '-1,2,0' style directives")
                try:
                    parts = [int(p) for p in item.split(",")]
                except ValueError:
                    raise ValueError(f"fgrad.numpy.{self._name}: unknown directive {item!r}") from None
                axis = parts[0]
                if len(parts) > 1:
                    ndmin = parts[1]
                if len(parts) > 2:
                    trans1d = parts[2]
                continue
            if isinstance(item, slice):
                new = np.r_[item]      # a constant range: NumPy builds it
                if ndmin > 1:
                    new = np.array(new, ndmin=ndmin)
                    if trans1d != -1:
                        new = new.swapaxes(-1, trans1d)
                objs.append(new)
                dtype_parts.append(new.dtype)
                continue
            if type(item) in np.ScalarType:
                objs.append(item)
                dtype_parts.append(item)
                continue
            item = _arr(item)
            item_ndim = ndim(item)
            new = _with_ndmin(item, ndmin)
            if trans1d != -1 and item_ndim < ndmin:   # NumPy's placement of the original axes
                k2, k1 = ndmin - item_ndim, trans1d
                k1 = k1 + k2 + 1 if k1 < 0 else k1
                order = list(range(ndmin))
                new = transpose(new, order[:k1] + order[k2:] + order[k1:k2])
            objs.append(new)
            dtype_parts.append(dtype_of(new))
        common = np.result_type(*dtype_parts)
        return concatenate([_with_ndmin(astype(o, common), ndmin) for o in objs], axis=axis)

    def __len__(self):
        return 0


r_ = _AxisConcatenator(np.r_, "r_", 0, 1, -1)
c_ = _AxisConcatenator(np.c_, "c_", -1, 2, 0)


# --- linspace and the comparisons of whole arrays, on traced values --------------------------------

def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *,
             device=None):
    """``num`` evenly spaced values from ``start`` to ``stop`` (NumPy's linspace, array
    endpoints and ``axis`` included). Traced endpoints are differentiable: the values are
    ``start + i * step`` with ``step = (stop - start) / (num - 1)`` (``/ num`` without the
    endpoint), and the last one is ``stop`` itself, as NumPy computes them."""
    if not _holds_tracer((start, stop)):
        out = np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
        return (_made(out[0]), out[1]) if retstep else _made(out)
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"fgrad.numpy.linspace: the number of samples must be non-negative, "
                         f"got {num}")
    # NumPy's dtype: Python numbers take part weakly, and integers become float64
    dt = np.result_type(*[x if type(x) in (int, float, complex, bool) else dtype_of(x)
                          for x in (start, stop)], 0.0)
    start, stop = astype(_arr(start), dt), astype(_arr(stop), dt)
    div = num - 1 if endpoint else num
    delta = stop - start
    steps = np.arange(0, num, dtype=dt).reshape((-1,) + (1,) * ndim(delta))
    if div > 0:
        step = delta / div
        y = steps * step
    else:
        step = np.nan
        y = steps * delta
    y = y + start
    if endpoint and num > 1:
        last = broadcast_to(stop, shape_of(y)[1:])
        y = concatenate([y[:-1], expand_dims(astype(last, dtype_of(y)), 0)], axis=0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        y = floor(y)
    y = astype(y, dt if dtype is None else dtype)
    return (y, step) if retstep else y


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|a - b| <= atol + rtol * |b|`` elementwise (infinities equal only to themselves; NaN
    to NaN only with ``equal_nan``). On traced values the result is a traced boolean array."""
    if not _holds_tracer((a, b, rtol, atol)):
        return np.isclose(a, b, rtol, atol, equal_nan)
    a, b = _arr(a), _arr(b)
    if dtype_of(b).kind != "f":   # NumPy: b in a float dtype, so that |MIN_INT| is no trap
        b = astype(b, np.result_type(dtype_of(b), 1.0))
    with np.errstate(invalid="ignore"):   # inf - inf: NaN, then False, as in NumPy
        out = (less_equal(abs(a - b), atol + rtol * abs(b)) & isfinite(b)) | equal(a, b)
    if equal_nan:
        out = out | (isnan(a) & isnan(b))
    return out


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``all(isclose(a, b))``. NumPy returns a Python bool; on traced values this returns a
    traced boolean scalar, as ``jax.numpy.allclose`` does (``bool()`` of it works where the
    value is known, under ``grad``, and not under ``jit``/``vmap``: use ``where`` there)."""
    if not _holds_tracer((a, b, rtol, atol)):
        return np.allclose(a, b, rtol, atol, equal_nan)
    return all(isclose(a, b, rtol, atol, equal_nan))


def array_equal(a1, a2, equal_nan=False):
    """True when the shapes and all elements agree (NaNs pairing up with ``equal_nan``). On
    traced values: a traced boolean scalar (shapes are static, so a shape mismatch is a plain
    ``False``)."""
    if not _holds_tracer((a1, a2)):
        return np.array_equal(a1, a2, equal_nan=equal_nan)
    a1, a2 = _arr(a1), _arr(a2)
    if shape_of(a1) != shape_of(a2):
        return False
    same = equal(a1, a2)
    if equal_nan:
        same = same | (isnan(a1) & isnan(a2))
    return all(same)


del zero

# The public names: everything defined above except the modules and engine names imported
# for internal use (so `from ._funcs import *` brings only NumPy's API into fgrad.numpy).
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and not isinstance(_v, type(np))
           and _n not in ("annotations", "Tracer", "bind", "dtype_of", "shape_of")]


# --------------------------------------------------------------------------------------------
# Complex numbers: real, imag, conj, angle and the dtype predicates. The derivative convention
# is JAX's (the module docstring of fgrad/primitives/complex.py says it in full): grad of a
# real-valued function of z = x + iy is df/dx - i df/dy, the conjugate of torch's z.grad.
# --------------------------------------------------------------------------------------------

from ..primitives import complex as _cx  # noqa: E402 - after the functions the rules use

complex64, complex128 = np.complex64, np.complex128
complexfloating = np.complexfloating


def _is_complex(x):
    return dtype_of(x).kind == "c"


def real(val):
    """The real part, as ``numpy.real`` (a real ``val`` is returned as it is). The cotangent
    of ``Re(z)`` is embedded back as ``g + 0j``."""
    if isinstance(val, Tracer) and not _is_complex(val):
        return val
    return bind(_cx.real_p, _arr(val))


def imag(val):
    """The imaginary part, as ``numpy.imag`` (zeros for a real ``val``, with no derivative).
    The cotangent of ``Im(z)`` is ``-1j * g`` (the transpose of ``dz -> Im(dz)``)."""
    if isinstance(val, Tracer) and not _is_complex(val):
        return zeros_like(val)
    return bind(_cx.imag_p, _arr(val))


def conjugate(x):
    """The complex conjugate elementwise, as ``numpy.conjugate`` (a real tracer is returned
    as it is). Not holomorphic: its cotangent is ``conj(g)``."""
    if isinstance(x, Tracer) and not _is_complex(x):
        return x
    return bind(_cx.conj_p, _arr(x))


conj = conjugate


def angle(z, deg=False):
    """The argument of each complex number, ``arctan2(imag(z), real(z))``, in radians (degrees
    with ``deg=True``), as ``numpy.angle``. Its derivative is ``Im(dz / z)`` (NaN at 0, as JAX)."""
    z = _arr(z)
    out = arctan2(imag(z), real(z))
    return out * (180 / np.pi) if deg else out


def iscomplexobj(x):
    """True when ``x`` has a complex dtype (its values are not looked at)."""
    return _is_complex(x)


def isrealobj(x):
    """True when ``x`` does not have a complex dtype."""
    return not _is_complex(x)


def iscomplex(x):
    """Elementwise: True where the imaginary part is non-zero (no derivative)."""
    x = _arr(x)
    if not _is_complex(x):
        return np.zeros(shape_of(x), bool)[()]
    return not_equal(imag(x), 0)


def isreal(x):
    """Elementwise: True where the imaginary part is zero (no derivative)."""
    x = _arr(x)
    if not _is_complex(x):
        return np.ones(shape_of(x), bool)[()]
    return equal(imag(x), 0)


__all__ += ["complex64", "complex128", "complexfloating", "real", "imag", "conjugate", "conj",
            "angle", "iscomplexobj", "isrealobj", "iscomplex", "isreal"]
