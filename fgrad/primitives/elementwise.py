"""Elementwise primitives: NumPy ufuncs with their derivatives.

Most rows are one line: the NumPy implementation and the partial derivative ``dy/dx`` as a
function of the output ``ans`` and the inputs, with the math in a comment. :func:`unary` and
:func:`binary` turn a partial into both rules (``jvp: x_dot * dy/dx``, ``vjp: y_bar * dy/dx``)
and the broadcasting batch rule; operands broadcast as in NumPy and the reverse trace sums the
cotangent back to each operand's shape. Ops whose rules are better written directly (``div``,
``pow``, ``select``) spell them out.
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of
from ..jvp import defjvp, defjvp_zero
from ..staging import elementwise_abstract_eval
from ..vmap import elementwise_batch_rule


def _np_scalar(x):
    """A Python float, int or complex as a NumPy scalar, so that a partial such as ``1 / x`` at
    ``x = 0.0`` gives ``inf`` (as NumPy and JAX) instead of raising ``ZeroDivisionError``."""
    if type(x) is np.ndarray:     # fast path, most calls: 0.6 -> 0.1 us (two per rule call)
        return x
    if isinstance(x, (float, int, complex)) and not isinstance(x, (bool, np.generic)):
        return (np.float64(x) if isinstance(x, float) else np.int64(x) if isinstance(x, int)
                else np.complex128(x))
    return x


def unary(name, impl, partial):
    """A differentiable unary primitive from its derivative ``partial(ans, x) = dy/dx``."""
    prim = Primitive(name, impl)
    defjvp(prim, lambda x_dot, ans, x: x_dot * partial(_np_scalar(ans), _np_scalar(x)))
    prim.vjp = (lambda g, ans, x: g * partial(_np_scalar(ans), _np_scalar(x)),)
    return elementwise_batch_rule(prim)


def binary(name, impl, partial_x, partial_y):
    """A differentiable binary primitive from ``partial_x(ans, x, y)`` and ``partial_y(...)``."""
    prim = Primitive(name, impl)

    def dx(ans, x, y):
        return partial_x(_np_scalar(ans), _np_scalar(x), _np_scalar(y))

    def dy(ans, x, y):
        return partial_y(_np_scalar(ans), _np_scalar(x), _np_scalar(y))
    defjvp(prim, lambda x_dot, ans, x, y: x_dot * dx(ans, x, y),
           lambda y_dot, ans, x, y: y_dot * dy(ans, x, y))
    prim.vjp = (lambda g, ans, x, y: g * dx(ans, x, y),
                lambda g, ans, x, y: g * dy(ans, x, y))
    return elementwise_batch_rule(prim)


def piecewise_constant(name, impl):
    """Differentiable in type (float output) but with zero derivative almost everywhere."""
    prim = Primitive(name, impl)
    defjvp_zero(prim)
    prim.vjp = tuple(None for _ in range(_arity(impl)))
    elementwise_abstract_eval(prim)   # also for those made elsewhere (stop_gradient in api.py)
    return elementwise_batch_rule(prim)


def nondifferentiable(name, impl):
    """Comparisons, logical and integer ops: no derivative exists (bool/int output)."""
    return elementwise_batch_rule(Primitive(name, impl, differentiable=False))


def _arity(impl):
    return getattr(impl, "nin", 1)


# --- linear ops: the rule is the op itself ---------------------------------------------------

neg_p = Primitive("neg", np.negative)
defjvp(neg_p, lambda x_dot, ans, x: -x_dot)                 # d(-x) = -dx
neg_p.vjp = (lambda g, ans, x: -g,)
elementwise_batch_rule(neg_p)

add_p = Primitive("add", np.add)
defjvp(add_p, lambda x_dot, ans, x, y: x_dot,               # d(x + y) = dx + dy
       lambda y_dot, ans, x, y: y_dot)
add_p.vjp = (lambda g, ans, x, y: g, lambda g, ans, x, y: g)
elementwise_batch_rule(add_p)

sub_p = Primitive("sub", np.subtract)
defjvp(sub_p, lambda x_dot, ans, x, y: x_dot,               # d(x - y) = dx - dy
       lambda y_dot, ans, x, y: -y_dot)
sub_p.vjp = (lambda g, ans, x, y: g, lambda g, ans, x, y: -g)
elementwise_batch_rule(sub_p)

mul_p = Primitive("mul", np.multiply)
defjvp(mul_p, lambda x_dot, ans, x, y: x_dot * y,           # d(x y) = dx y + x dy
       lambda y_dot, ans, x, y: x * y_dot)
mul_p.vjp = (lambda g, ans, x, y: g * y, lambda g, ans, x, y: x * g)
elementwise_batch_rule(mul_p)

div_p = Primitive("div", np.true_divide)
defjvp(div_p, lambda x_dot, ans, x, y: x_dot / _np_scalar(y),   # d(x / y) = dx / y - (x / y) dy / y
       lambda y_dot, ans, x, y: -y_dot * ans / _np_scalar(y))
div_p.vjp = (lambda g, ans, x, y: g / _np_scalar(y), lambda g, ans, x, y: -g * ans / _np_scalar(y))
elementwise_batch_rule(div_p)


# --- unary math --------------------------------------------------------------------------------

exp_p = unary("exp", np.exp, lambda ans, x: ans)                          # d e^x = e^x
log_p = unary("log", np.log, lambda ans, x: 1 / x)                        # d log x = 1/x
expm1_p = unary("expm1", np.expm1, lambda ans, x: ans + 1)                # d (e^x - 1) = e^x
log1p_p = unary("log1p", np.log1p, lambda ans, x: 1 / (1 + x))            # d log(1+x) = 1/(1+x)
sqrt_p = unary("sqrt", np.sqrt, lambda ans, x: 0.5 / ans)                 # d sqrt x = 1/(2 sqrt x)
sin_p = unary("sin", np.sin, lambda ans, x: fnp.cos(x))                   # d sin x = cos x
cos_p = unary("cos", np.cos, lambda ans, x: -fnp.sin(x))                  # d cos x = -sin x
tan_p = unary("tan", np.tan, lambda ans, x: 1 + ans * ans)                # d tan x = 1 + tan^2 x
tanh_p = unary("tanh", np.tanh, lambda ans, x: 1 - ans * ans)             # d tanh x = 1 - tanh^2 x
sinh_p = unary("sinh", np.sinh, lambda ans, x: fnp.cosh(x))               # d sinh x = cosh x
cosh_p = unary("cosh", np.cosh, lambda ans, x: fnp.sinh(x))               # d cosh x = sinh x
arcsin_p = unary("arcsin", np.arcsin, lambda ans, x: 1 / fnp.sqrt(1 - x * x))   # 1/sqrt(1-x^2)
arccos_p = unary("arccos", np.arccos, lambda ans, x: -1 / fnp.sqrt(1 - x * x))  # -1/sqrt(1-x^2)
arctan_p = unary("arctan", np.arctan, lambda ans, x: 1 / (1 + x * x))           # 1/(1+x^2)
arcsinh_p = unary("arcsinh", np.arcsinh, lambda ans, x: 1 / fnp.sqrt(x * x + 1))  # 1/sqrt(x^2+1)
arctanh_p = unary("arctanh", np.arctanh, lambda ans, x: 1 / (1 - x * x))        # 1/(1-x^2)
# logistic(x) = 1 / (1 + e^-x), computed stably; d logistic = logistic (1 - logistic)
logistic_p = unary("logistic", lambda x: _logistic(x), lambda ans, x: ans * (1 - ans))
# erf(x) = 2/sqrt(pi) int_0^x e^-t^2 dt;  d erf x = 2/sqrt(pi) e^(-x^2)
erf_p = unary("erf", lambda x: _erf(x), lambda ans, x: (2 / math.sqrt(math.pi)) * fnp.exp(-x * x))


# erfc(x) = 1 - erf(x), accurate in the tail;  d erfc x = -2/sqrt(pi) e^(-x^2)
erfc_p = unary("erfc", lambda x: _erfc(x), lambda ans, x: (-2 / math.sqrt(math.pi)) * fnp.exp(-x * x))
# erfinv(erf(y)) = y;  d erfinv x = 1 / erf'(erfinv x) = sqrt(pi)/2 e^(erfinv(x)^2)
erfinv_p = unary("erfinv", lambda x: _erfinv(x), lambda ans, x: (math.sqrt(math.pi) / 2) * fnp.exp(ans * ans))
# lgamma(x) = log |Gamma(x)|;  d lgamma x = digamma x
lgamma_p = unary("lgamma", lambda x: _lgamma(x), lambda ans, x: fnp.digamma(x))
# digamma(x) = d lgamma x;  d digamma x = polygamma(1, x)
digamma_p = unary("digamma", lambda x: _polygamma(0, x), lambda ans, x: fnp.polygamma(1, x))

# polygamma(n, x) = d^(n+1) lgamma x, for a static integer order n;  d polygamma(n, x) = polygamma(n+1, x)
polygamma_p = Primitive("polygamma", lambda x, *, n: _polygamma(n, x))
defjvp(polygamma_p, lambda x_dot, ans, x, *, n: x_dot * polygamma_p.bind(x, n=n + 1))
polygamma_p.vjp = (lambda g, ans, x, *, n: g * polygamma_p.bind(x, n=n + 1),)
elementwise_batch_rule(polygamma_p)


def _float(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _erfc(x):
    try:
        from scipy.special import erfc
    except ImportError:  # as _erf: the C library's erfc keeps its accuracy in the tail
        x = _float(x)
        return np.vectorize(math.erfc, otypes=[np.float64])(x).astype(x.dtype)
    return erfc(x)


def _erfinv(y):
    """Inverse error function: Giles' single-precision approximation ("Approximating the erfinv
    function", 2010), then three Newton steps on erf (on log erfc where |y| > 1/2, whose tail
    erf would round away). Exact at 0 and +-1 (+-inf), NaN outside [-1, 1]."""
    y = _float(y)
    out_dtype = y.dtype
    y = y.astype(np.float64)
    with np.errstate(all="ignore"):
        w = -np.log((1.0 - y) * (1.0 + y))
        small = w < 5.0
        ws, wl = w - 2.5, np.sqrt(w) - 3.0
        p_s = np.polyval([2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                          0.00021858087, -0.00125372503, -0.00417768164, 0.246640727,
                          1.50140941], ws)
        p_l = np.polyval([-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                          0.00573950773, -0.0076224613, 0.00943887047, 1.00167406,
                          2.83297682], wl)
        x = np.where(small, p_s, p_l) * y
        a = np.abs(y)
        tail = a > 0.5
        c = 2 / math.sqrt(math.pi)
        for _ in range(3):
            # inside: Newton on erf(x) = y; tail: Newton on log erfc(|x|) = log(1 - |y|),
            # which is nearly linear there (erfc itself falls like e^(-x^2))
            ax = np.abs(x)
            ec = _erfc(ax)
            step_tail = (np.log(ec) - np.log1p(-a)) * ec / (c * np.exp(-ax * ax))
            step_in = (_erf(x) - y) / (c * np.exp(-x * x))
            x = np.where(tail, np.sign(y) * (ax + step_tail), x - step_in)
        x = np.where(a == 1, np.sign(y) * np.inf, x)
        x = np.where(a > 1, np.nan, x)
    return x.astype(out_dtype)


# Stirling's series for lgamma and the asymptotic series of digamma (Bernoulli numbers B_2k),
# used once the argument is shifted above _SHIFT by the recurrences Gamma(x+1) = x Gamma(x),
# digamma(x+1) = digamma(x) + 1/x; terms to z^-13 leave an error below 1e-16 there.
_SHIFT = 10.0
_B2K = [1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6]


def _lgamma(x):
    """log |Gamma(x)|: the recurrence up to x >= 10, then Stirling's series; the reflection
    formula log(pi / |sin(pi x)|) - lgamma(1 - x) for x < 0.5. +inf at 0 and negative integers."""
    x = _float(x)
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        reflect = x < 0.5
        z = np.where(reflect, 1.0 - x, x)
        z, shift = _shift_up(z, lambda zz: np.log(zz))
        series = sum(b / ((2 * k + 1) * (2 * k + 2) * z ** (2 * k + 1)) for k, b in enumerate(_B2K))
        out = (z - 0.5) * np.log(z) - z + 0.5 * math.log(2 * math.pi) + series - shift
        sin_pi_x = np.abs(np.sin(np.pi * np.where(reflect, x, 0.5)))
        out = np.where(reflect, np.log(np.pi / sin_pi_x) - out, out)
        out = np.where(reflect & (x == np.floor(x)), np.inf, out)
    return out.astype(out_dtype)


def _shift_up(z, term):
    """``(z + k, sum of term(z + i) for i < k)`` with k the steps that bring each z above _SHIFT."""
    acc = np.zeros_like(z)
    for _ in range(int(_SHIFT)):
        low = z < _SHIFT
        if not low.any():
            break
        acc = acc + np.where(low, term(np.where(low, z, 1.0)), 0.0)
        z = np.where(low, z + 1.0, z)
    return z, acc


def _polygamma(n, x):
    """``d^(n+1)/dx^(n+1) lgamma(x)``: digamma for n = 0, trigamma for n = 1, ...

    The recurrence psi_n(x) = psi_n(x + 1) - (-1)^n n! / x^(n+1) shifts x above 10 (from below
    0.5 through the reflection formula for digamma, psi(x) = psi(1 - x) - pi / tan(pi x); for
    n >= 1 by the recurrence alone, fine for x > -20), then the asymptotic series
    psi_n(z) ~ (-1)^(n+1) [(n-1)!/z^n + n!/(2 z^(n+1)) + sum_k B_2k (2k+n-1)!/((2k)! z^(2k+n))]
    (for n = 0: log z - 1/(2z) - sum_k B_2k / (2k z^2k)). NaN at 0 and negative integers.
    """
    n = int(n)
    x = _float(x)
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        pole = (x <= 0) & (x == np.floor(x))
        reflect = (x < 0.5) if n == 0 else np.zeros(x.shape, bool)
        z = np.where(reflect, 1.0 - x, x)
        fact_n = math.factorial(n)
        if n == 0:
            z, shift = _shift_up(z, lambda zz: 1.0 / zz)
            out = np.log(z) - 0.5 / z - sum(b / (2 * (k + 1) * z ** (2 * k + 2))
                                            for k, b in enumerate(_B2K)) - shift
            out = np.where(reflect, out - np.pi / np.tan(np.pi * np.where(reflect, x, 0.5)), out)
        else:
            sign = (-1) ** (n + 1)
            z, shift = _shift_up_far(z, lambda zz: fact_n / zz ** (n + 1))
            series = math.factorial(n - 1) / z ** n + fact_n / (2 * z ** (n + 1))
            for k, b in enumerate(_B2K, start=1):
                series = series + b * math.factorial(2 * k + n - 1) / (
                    math.factorial(2 * k) * z ** (2 * k + n))
            out = sign * (series + shift)
        out = np.where(pole, np.nan, out)
    return out.astype(out_dtype)


def _shift_up_far(z, term):
    """:func:`_shift_up` with as many steps as the smallest z needs (negative arguments)."""
    lowest = np.min(z, initial=_SHIFT) if z.size else _SHIFT
    steps = int(min(_SHIFT - lowest, 1e4)) + 1 if np.isfinite(lowest) and lowest < _SHIFT else 0
    acc = np.zeros_like(z)
    for _ in range(steps):
        low = z < _SHIFT
        acc = acc + np.where(low, term(np.where(low, z, 1.0)), 0.0)
        z = np.where(low, z + 1.0, z)
    return z, acc


def _logistic(x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    # e^-|x| never overflows; pick the algebraically equal form for each sign
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _erf(x):
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional: fall back to the C library, one element at a time
        x = np.asarray(x)
        out = np.vectorize(math.erf, otypes=[np.float64])(x)
        return out.astype(x.dtype) if x.dtype.kind == "f" else out
    return erf(x)


# --- abs: sign(x) for reals; not holomorphic for complex z ---------------------------------------

abs_p = Primitive("abs", np.abs)


def _conj_over_abs(ans, z):
    """conj(z) / |z|, and 0 where z = 0 (JAX's choice; torch's too)."""
    return fnp.conj(z) / fnp.where(ans == 0, 1, ans)


# real x: d|x| = sign(x) dx (0 at 0);  complex z: d|z| = Re(conj(z) dz) / |z|, whose transpose
# (fgrad/primitives/complex.py) is z_bar = g conj(z) / |z|
defjvp(abs_p, lambda x_dot, ans, x: (fnp.real(x_dot * _conj_over_abs(ans, x))
                                     if dtype_of(x).kind == "c" else x_dot * fnp.sign(_np_scalar(x))))
abs_p.vjp = (lambda g, ans, x: (g * _conj_over_abs(ans, x) if dtype_of(x).kind == "c"
                                else g * fnp.sign(_np_scalar(x))),)
elementwise_batch_rule(abs_p)


# --- binary math -------------------------------------------------------------------------------

pow_p = Primitive("pow", np.power)


def _pow_dx(ans, x, y):   # d x^y / dx = y x^(y-1), and 0 where y == 0 (x^0 = 1 is constant)
    x = _np_scalar(x)
    if isinstance(y, (int, float)) and not isinstance(y, np.generic):   # a constant exponent
        if y in (0, 1, 2):                            # of 1, x and x*x
            return 0.0 if y == 0 else 1.0 if y == 1 else 2 * x
        return y * fnp.power(x, y - 1)
    y_ok = y != 0
    return fnp.where(y_ok, y * fnp.power(x, fnp.where(y_ok, y, 1) - 1), 0)


def _pow_dy(ans, x, y):   # d x^y / dy = x^y log x  (0 where x == 0, as torch and JAX define it)
    x = _np_scalar(x)
    safe_x = fnp.where(x == 0, 1, x)
    return fnp.where(x == 0, 0, ans * fnp.log(safe_x))


defjvp(pow_p, lambda x_dot, ans, x, y: x_dot * _pow_dx(ans, x, y),
       lambda y_dot, ans, x, y: y_dot * _pow_dy(ans, x, y))
pow_p.vjp = (lambda g, ans, x, y: g * _pow_dx(ans, x, y),
             lambda g, ans, x, y: g * _pow_dy(ans, x, y))
elementwise_batch_rule(pow_p)

# max/min: the derivative goes to the larger (smaller) operand, split evenly on ties (as torch)
maximum_p = binary("maximum", np.maximum,
                   lambda ans, x, y: fnp.where(x > y, 1.0, fnp.where(x == y, 0.5, 0.0)),
                   lambda ans, x, y: fnp.where(y > x, 1.0, fnp.where(x == y, 0.5, 0.0)))
minimum_p = binary("minimum", np.minimum,
                   lambda ans, x, y: fnp.where(x < y, 1.0, fnp.where(x == y, 0.5, 0.0)),
                   lambda ans, x, y: fnp.where(y < x, 1.0, fnp.where(x == y, 0.5, 0.0)))
# atan2(y, x) = angle of (x, y):  d/dy = x / (x^2 + y^2),  d/dx = -y / (x^2 + y^2)
arctan2_p = binary("arctan2", np.arctan2,
                   lambda ans, y, x: x / (x * x + y * y),
                   lambda ans, y, x: -y / (x * x + y * y))
# x mod y = x - floor(x / y) y:  d/dx = 1,  d/dy = -floor(x / y)
remainder_p = binary("remainder", np.remainder,
                     lambda ans, x, y: 1.0,
                     lambda ans, x, y: -fnp.floor(x / y))

# --- select: where(c, x, y) -------------------------------------------------------------------

select_p = Primitive("select", np.where)
defjvp(select_p, None,                                          # d where(c, x, y) = where(c, dx, dy)
       lambda x_dot, ans, c, x, y: fnp.where(c, x_dot, 0),
       lambda y_dot, ans, c, x, y: fnp.where(c, 0, y_dot))
select_p.vjp = (None,
                lambda g, ans, c, x, y: fnp.where(c, g, 0),
                lambda g, ans, c, x, y: fnp.where(c, 0, g))
elementwise_batch_rule(select_p)

# --- zero derivative almost everywhere ------------------------------------------------------------

floor_p = piecewise_constant("floor", np.floor)
ceil_p = piecewise_constant("ceil", np.ceil)
round_p = piecewise_constant("round", np.round)
sign_p = piecewise_constant("sign", np.sign)

# --- no derivative: comparisons, logic, integer arithmetic ---------------------------------------

lt_p = nondifferentiable("lt", np.less)
le_p = nondifferentiable("le", np.less_equal)
gt_p = nondifferentiable("gt", np.greater)
ge_p = nondifferentiable("ge", np.greater_equal)
eq_p = nondifferentiable("eq", np.equal)
ne_p = nondifferentiable("ne", np.not_equal)
logical_and_p = nondifferentiable("logical_and", np.logical_and)
logical_or_p = nondifferentiable("logical_or", np.logical_or)
logical_xor_p = nondifferentiable("logical_xor", np.logical_xor)
logical_not_p = nondifferentiable("logical_not", np.logical_not)
isfinite_p = nondifferentiable("isfinite", np.isfinite)
isnan_p = nondifferentiable("isnan", np.isnan)
isinf_p = nondifferentiable("isinf", np.isinf)
floor_divide_p = nondifferentiable("floor_divide", np.floor_divide)
bitwise_and_p = nondifferentiable("bitwise_and", np.bitwise_and)
bitwise_or_p = nondifferentiable("bitwise_or", np.bitwise_or)
bitwise_xor_p = nondifferentiable("bitwise_xor", np.bitwise_xor)
left_shift_p = nondifferentiable("left_shift", np.left_shift)
right_shift_p = nondifferentiable("right_shift", np.right_shift)
invert_p = nondifferentiable("invert", np.invert)


# --- shape rules (staging): broadcast shapes, NumPy's own result dtype for each dtype combination --
for _p in [v for v in list(globals().values()) if isinstance(v, Primitive)]:
    elementwise_abstract_eval(_p)
