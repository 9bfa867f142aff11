"""``jax.scipy.special`` (and so ``scipy.special``) on fgrad primitives: differentiable,
batchable, and plain NumPy in, plain NumPy out outside transforms.

Primitives with their own derivative rules (``fgrad/primitives/elementwise.py``): ``erf``,
``erfc``, ``erfinv``, ``gammaln`` (``lgamma``), ``digamma``, ``polygamma``, ``expit``
(``logistic``). Composites written here: ``logit``, ``xlogy``, ``xlog1py``, ``entr``,
``logsumexp``, ``betaln``, ``gamma``, ``softmax``, ``log_softmax``, ``ndtr``, ``ndtri``,
``log_ndtr`` (for moderate arguments).

SciPy is not a dependency: the special functions are written in NumPy (series, asymptotic
expansions and Newton steps; see the primitives' docstrings).

>>> import fgrad, fgrad.scipy.special as sp
>>> fgrad.grad(sp.gammaln)(3.0)     # digamma(3) = 1.5 - euler_gamma
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..core import dtype_of, shape_of

__all__ = ["erf", "erfc", "erfinv", "expit", "logit", "gammaln", "digamma", "polygamma",
           "xlogy", "xlog1py", "entr", "logsumexp", "betaln", "gamma", "softmax", "log_softmax",
           "ndtr", "ndtri", "log_ndtr"]

erf = fnp.erf
erfc = fnp.erfc
erfinv = fnp.erfinv
gammaln = fnp.gammaln
digamma = fnp.digamma
polygamma = fnp.polygamma


def expit(x):
    """The logistic sigmoid ``1 / (1 + e^-x)``, computed without overflow."""
    return fnp.logistic(x)


def logit(p):
    """``log(p / (1 - p))``, the inverse of :func:`expit`; ``-inf``/``inf`` at 0 and 1."""
    p = fnp.asarray(p)
    return fnp.log(p) - fnp.log1p(-p)


def xlogy(x, y):
    """``x * log(y)``, and 0 where ``x == 0`` (even where ``y == 0``); the derivative there is
    0 as well (JAX's is ``log(y)`` in x; both agree wherever ``x != 0``)."""
    x, y = fnp.asarray(x), fnp.asarray(y)
    x_ok = x != 0
    safe_y = fnp.where(x_ok, y, 1.0)
    return fnp.where(x_ok, x * fnp.log(safe_y), 0.0)


def xlog1py(x, y):
    """``x * log1p(y)``, and 0 where ``x == 0``."""
    x, y = fnp.asarray(x), fnp.asarray(y)
    x_ok = x != 0
    safe_y = fnp.where(x_ok, y, 0.0)
    return fnp.where(x_ok, x * fnp.log1p(safe_y), 0.0)


def entr(x):
    """``-x log x`` for ``x > 0``, 0 at 0, ``-inf`` for ``x < 0`` (scipy's elementwise entropy)."""
    x = fnp.asarray(x)
    positive = x > 0
    safe = fnp.where(positive, x, 1.0)
    return fnp.where(positive, -x * fnp.log(safe), fnp.where(x == 0, 0.0, -np.inf))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a), axis))`` without overflow; ``b`` weights each term (it may be
    negative with ``return_sign=True``, which returns ``(log|sum|, sign(sum))``)."""
    a = fnp.asarray(a)
    if not return_sign:
        return fnp.logsumexp(a, axis=axis, keepdims=keepdims, b=b)
    s = shape_of(a) if b is None else np.broadcast_shapes(shape_of(a), shape_of(b))
    a = fnp.broadcast_to(a, s)
    m = fnp.stop_gradient(fnp.max(a, axis=axis, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    terms = fnp.exp(a - m) if b is None else b * fnp.exp(a - m)
    total = fnp.sum(terms, axis=axis, keepdims=True)
    sign = fnp.sign(total)
    out = fnp.log(fnp.abs(total)) + m
    if not keepdims:
        axes = tuple(range(len(s))) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        out, sign = fnp.squeeze(out, axes), fnp.squeeze(sign, axes)
    return out, sign


def betaln(a, b):
    """``log |B(a, b)| = gammaln(a) + gammaln(b) - gammaln(a + b)``."""
    return gammaln(a) + gammaln(b) - gammaln(fnp.asarray(a) + b)


def gamma(x):
    """``Gamma(x) = sign * exp(gammaln(x))``, the sign ``(-1)^ceil(-x)`` below 0."""
    x = fnp.asarray(x)
    sign = fnp.where(x > 0, 1.0, fnp.where(fnp.remainder(fnp.floor(x), 2.0) == 0, 1.0, -1.0))
    return sign * fnp.exp(gammaln(x))


def softmax(x, axis=None):
    """``exp(x) / sum(exp(x), axis)`` over ``axis`` (all axes by default, as scipy)."""
    from ..nn import softmax as nn_softmax
    if axis is None:
        x = fnp.asarray(x)
        return fnp.reshape(nn_softmax(fnp.ravel(x), axis=0), shape_of(x))
    return nn_softmax(x, axis=axis)


def log_softmax(x, axis=None):
    """``x - logsumexp(x, axis)`` (all axes by default, as scipy)."""
    x = fnp.asarray(x)
    return x - fnp.logsumexp(x, axis=axis, keepdims=True)


def ndtr(x):
    """The standard normal CDF ``(1 + erf(x / sqrt 2)) / 2`` (``erfc`` below 0 for the tail)."""
    x = fnp.asarray(x)
    z = x * (1 / math.sqrt(2))
    return fnp.where(x < 0, 0.5 * fnp.erfc(-z), 0.5 * (1 + fnp.erf(z)))


def ndtri(p):
    """The standard normal quantile, ``sqrt 2 * erfinv(2p - 1)``."""
    return math.sqrt(2) * fnp.erfinv(2 * fnp.asarray(p) - 1)


def log_ndtr(x):
    """``log(ndtr(x))`` (finite down to about x = -37, where erfc underflows)."""
    return fnp.log(ndtr(x))


del dtype_of
