"""``jax.nn``'s names and semantics on fgrad.numpy: activations, softmax, one_hot, initializers.

Everything here is a pure function of ``fgrad.numpy`` operations, so it is differentiable to
any order and batchable with ``vmap``. The names, argument names and defaults are JAX's, which
differ from ``torch.nn.functional`` (``fnn.functional``) in a few places a port should know:

============================  ===============================  ================================
fgrad.nn (JAX)                fnn.functional (torch)           difference
============================  ===============================  ================================
``gelu(x, approximate=True)``  ``gelu(x, approximate="none")``  JAX defaults to the tanh form
``softmax(x, axis=-1)``       ``softmax(x, dim=None)``         JAX's default axis is the last
``one_hot(x, n)`` float       ``one_hot(x, n)`` int64          out-of-range ids give a zero
                                                               row (torch raises)
``leaky_relu'(0) = 1``        ``leaky_relu'(0) = slope``       JAX's ``where(x >= 0, ...)``
``hard_tanh'(+-1) = 1``       ``hardtanh'(+-1) = 0``           JAX's ``where(x > 1, ...)``
============================  ===============================  ================================

Elsewhere the derivatives at kinks agree: ``relu'(0) = 0``; ``relu6'`` is 0 at 0 and at 6.
``fnn.functional``'s activations call these functions wherever the semantics coincide (torch's
argument names and defaults around them), so each activation has one implementation; only
``leaky_relu`` and ``hardtanh`` are written twice, for the kinks above.

>>> import numpy as np, fgrad, fgrad.nn as nn
>>> fgrad.grad(lambda x: nn.gelu(x).sum())(np.linspace(-2, 2, 5))
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..core import dtype_of, shape_of
from . import initializers  # noqa: F401

__all__ = ["relu", "relu6", "sigmoid", "log_sigmoid", "softplus", "soft_sign", "silu", "swish",
           "elu", "celu", "selu", "gelu", "glu", "leaky_relu", "hard_tanh", "hard_sigmoid",
           "hard_silu", "hard_swish", "mish", "squareplus", "tanh", "softmax", "log_softmax",
           "logsumexp", "standardize", "one_hot", "initializers"]


def _nonpositive(x):
    """``x`` where ``x <= 0``, else 0: an argument for ``exp`` that never overflows."""
    return fnp.where(x > 0, 0.0, x)


def relu(x):
    """``max(x, 0)``; the derivative at 0 is 0 (as ``jax.nn.relu``)."""
    return fnp.where(x > 0, x, 0.0)


def relu6(x):
    """``min(max(x, 0), 6)``; the derivative is 0 at 0 and at 6 (as ``jax.nn.relu6``)."""
    return fnp.where(x > 0, fnp.where(x < 6, x, 6.0), 0.0)


def sigmoid(x):
    """``1 / (1 + e^-x)``, computed without overflow."""
    return fnp.logistic(x)


def softplus(x):
    """``log(1 + e^x) = max(x, 0) + log1p(e^-|x|)``; derivative ``sigmoid(x)``."""
    return fnp.maximum(x, 0.0) + fnp.log1p(fnp.exp(-fnp.abs(x)))


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``, finite for every ``x``."""
    return -softplus(-x)


def soft_sign(x):
    """``x / (|x| + 1)``."""
    return x / (fnp.abs(x) + 1.0)


def silu(x):
    """``x * sigmoid(x)`` (``swish``)."""
    return x * fnp.logistic(x)


swish = silu


def elu(x, alpha=1.0):
    """``x`` for ``x > 0``, else ``alpha * (e^x - 1)``."""
    return fnp.where(x > 0, x, alpha * fnp.expm1(_nonpositive(x)))


def celu(x, alpha=1.0):
    """``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``."""
    return fnp.where(x > 0, x, alpha * fnp.expm1(_nonpositive(x) / alpha))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    """``scale * elu(x, alpha)`` with the self-normalising constants."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def gelu(x, approximate=True):
    """``x * Phi(x)``: by default (as JAX) the tanh approximation
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; ``approximate=False`` is exact (erf)."""
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1.0 + fnp.tanh(inner))
    return 0.5 * x * (1.0 + fnp.erf(x * (1.0 / math.sqrt(2.0))))


def glu(x, axis=-1):
    """Gated linear unit: ``a * sigmoid(b)`` with ``a, b`` the two halves of ``x`` on ``axis``."""
    size = shape_of(x)[axis]
    if size % 2:
        raise ValueError(f"fgrad.nn.glu: axis {axis} has odd size {size}; it must split in two")
    a, b = fnp.split(x, 2, axis=axis)
    return a * fnp.logistic(b)


def leaky_relu(x, negative_slope=0.01):
    """``x`` for ``x >= 0``, else ``negative_slope * x`` (JAX's derivative at 0 is 1)."""
    return fnp.where(x >= 0, x, negative_slope * x)


def hard_tanh(x):
    """``x`` clipped to ``[-1, 1]`` (derivative 0 outside, 1 at the bounds, as JAX)."""
    return fnp.where(x > 1, 1.0, fnp.where(x < -1, -1.0, x))


def hard_sigmoid(x):
    """``relu6(x + 3) / 6``."""
    return relu6(x + 3.0) / 6.0


def hard_silu(x):
    """``x * hard_sigmoid(x)`` (``hard_swish``)."""
    return x * hard_sigmoid(x)


hard_swish = hard_silu


def mish(x):
    """``x * tanh(softplus(x))``."""
    return x * fnp.tanh(softplus(x))


def squareplus(x, b=4):
    """``(x + sqrt(x^2 + b)) / 2``, a smooth ReLU."""
    return (x + fnp.sqrt(x * x + b)) / 2


def tanh(x):
    return fnp.tanh(x)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a)))`` over ``axis`` without overflow (``jax.nn.logsumexp``)."""
    from ..scipy.special import logsumexp as lse
    return lse(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)


def _masked(x, where, fill):
    return x if where is None else fnp.where(where, x, fill)


def log_softmax(x, axis=-1, where=None, initial=None):
    """``x - logsumexp(x, axis)``: log-probabilities along ``axis`` (the last by default).
    ``where`` (a boolean mask) leaves masked-out entries out of the normaliser; their outputs
    are ``-inf``, as JAX."""
    x = fnp.asarray(x)
    m = fnp.stop_gradient(fnp.max(_masked(x, where, -np.inf), axis=axis, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    shifted = x - m
    total = fnp.sum(_masked(fnp.exp(shifted), where, 0.0), axis=axis, keepdims=True)
    return _masked(shifted - fnp.log(total), where, -np.inf)


def softmax(x, axis=-1, where=None, initial=None):
    """``exp(x) / sum(exp(x), axis)`` along ``axis`` (the last by default); masked-out entries
    (``where=False``) are 0."""
    x = fnp.asarray(x)
    m = fnp.stop_gradient(fnp.max(_masked(x, where, -np.inf), axis=axis, keepdims=True))
    m = fnp.where(fnp.isfinite(m), m, 0.0)
    unnormalized = _masked(fnp.exp(x - m), where, 0.0)
    return unnormalized / fnp.sum(unnormalized, axis=axis, keepdims=True)


def standardize(x, axis=-1, mean=None, variance=None, epsilon=1e-5, where=None):
    """``(x - mean) / sqrt(variance + epsilon)`` with the statistics over ``axis`` unless given
    (``jax.nn.standardize``; ``where`` masks entries out of the statistics)."""
    x = fnp.asarray(x)
    if where is None:
        if mean is None:
            mean = fnp.mean(x, axis=axis, keepdims=True)
        if variance is None:
            centered = x - fnp.mean(x, axis=axis, keepdims=True)
            variance = fnp.mean(centered * centered, axis=axis, keepdims=True)
    else:
        count = fnp.sum(fnp.astype(where, dtype_of(x)), axis=axis, keepdims=True)
        if mean is None:
            mean = fnp.sum(fnp.where(where, x, 0.0), axis=axis, keepdims=True) / count
        if variance is None:
            c = fnp.where(where, x - mean, 0.0)
            variance = fnp.sum(c * c, axis=axis, keepdims=True) / count
    return (x - mean) * (1.0 / fnp.sqrt(variance + epsilon))


def one_hot(x, num_classes, *, dtype=np.float64, axis=-1):
    """``x[..., None] == arange(num_classes)`` as ``dtype`` (float64 by default; JAX's default
    is float32): out-of-range ids, negative ones included, give an all-zero row, as JAX.
    ``axis`` is where the new class axis goes."""
    if not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"fgrad.nn.one_hot: num_classes must be a static int, got "
                        f"{type(num_classes).__name__}")
    x = fnp.asarray(x)
    n_out = len(shape_of(x)) + 1
    ax = axis % n_out
    classes = np.arange(int(num_classes)).reshape((-1,) + (1,) * (n_out - 1 - ax))
    hits = fnp.expand_dims(x, ax) == classes
    return fnp.astype(hits, dtype)
