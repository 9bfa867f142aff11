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
from ..core import Primitive
from ..jvp import defjvp, defjvp_zero
from ..staging import elementwise_abstract_eval
from ..vmap import elementwise_batch_rule


def unary(name, impl, partial):
    """A differentiable unary primitive from its derivative ``partial(ans, x) = dy/dx``."""
    prim = Primitive(name, impl)
    defjvp(prim, lambda x_dot, ans, x: x_dot * partial(ans, x))
    prim.vjp = (lambda g, ans, x: g * partial(ans, x),)
    return elementwise_batch_rule(prim)


def binary(name, impl, partial_x, partial_y):
    """A differentiable binary primitive from ``partial_x(ans, x, y)`` and ``partial_y(...)``."""
    prim = Primitive(name, impl)
    defjvp(prim, lambda x_dot, ans, x, y: x_dot * partial_x(ans, x, y),
           lambda y_dot, ans, x, y: y_dot * partial_y(ans, x, y))
    prim.vjp = (lambda g, ans, x, y: g * partial_x(ans, x, y),
                lambda g, ans, x, y: g * partial_y(ans, x, y))
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
defjvp(div_p, lambda x_dot, ans, x, y: x_dot / y,           # d(x / y) = dx / y - (x / y) dy / y
       lambda y_dot, ans, x, y: -y_dot * ans / y)
div_p.vjp = (lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y)
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
abs_p = unary("abs", np.abs, lambda ans, x: fnp.sign(x))                  # d |x| = sign x (0 at 0)
# logistic(x) = 1 / (1 + e^-x), computed stably; d logistic = logistic (1 - logistic)
logistic_p = unary("logistic", lambda x: _logistic(x), lambda ans, x: ans * (1 - ans))
# erf(x) = 2/sqrt(pi) int_0^x e^-t^2 dt;  d erf x = 2/sqrt(pi) e^(-x^2)
erf_p = unary("erf", lambda x: _erf(x), lambda ans, x: (2 / math.sqrt(math.pi)) * fnp.exp(-x * x))


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


# --- binary math -------------------------------------------------------------------------------

pow_p = Primitive("pow", np.power)


def _pow_dx(ans, x, y):   # d x^y / dx = y x^(y-1)
    if isinstance(y, (int, float)) and y in (1, 2):   # constant exponents of x and x*x
        return 1.0 if y == 1 else 2 * x
    return y * fnp.power(x, y - 1)


def _pow_dy(ans, x, y):   # d x^y / dy = x^y log x  (0 where x == 0, as torch and JAX define it)
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
