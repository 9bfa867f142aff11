"""Activation functions and softmax, as ``torch.nn.functional`` names and defaults them.

Every function is written in ``fgrad.numpy`` operations, so it is differentiable to any order
and batchable with ``vmap``. Where torch defines a derivative at a kink, the same branch is
chosen here (``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``, ``hardtanh'`` is 0 at the
bounds). Nothing overflows: exponentials only ever see non-positive arguments, so logits of
``+-1e4`` give finite values and gradients.

torch's ``inplace=True`` has no meaning for pure functions; it is accepted in the same argument
position and rejected with an error, so code ported from torch fails loudly instead of relying
on a mutation that never happens.

>>> import numpy as np, fgrad, fnn.functional as F
>>> fgrad.grad(lambda x: F.gelu(x).sum())(np.linspace(-2, 2, 5))
array([-0.0852318 , -0.08331547,  0.5       ,  1.08331547,  1.0852318 ])
"""
from __future__ import annotations

import math

import fgrad.numpy as fnp
from fgrad.core import shape_of

__all__ = ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
           "sigmoid", "tanh", "softplus", "logsigmoid", "softsign", "softmax", "log_softmax",
           "softmin"]


def _no_inplace(name, inplace):
    if inplace:
        raise ValueError(f"fnn.functional.{name}: inplace=True is not supported; fnn functions "
                         f"are pure, so write y = {name}(x) and use the result.")


def _nonpositive(x):
    """``x`` where ``x <= 0``, else 0: an argument for ``exp`` that can never overflow."""
    return fnp.where(x > 0, 0.0, x)


def _softplus(z):
    """``log(1 + e^z)`` for any ``z``: ``max(z, 0) + log1p(e^-|z|)``; derivative ``sigmoid(z)``."""
    return fnp.maximum(z, 0.0) + fnp.log1p(fnp.exp(-fnp.abs(z)))


def relu(input, inplace=False):
    """``max(x, 0)``; the derivative at 0 is 0 (as torch)."""
    _no_inplace("relu", inplace)
    return fnp.where(input > 0, input, 0.0)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``x`` clipped to ``[min_val, max_val]``; derivative 1 strictly inside, 0 elsewhere."""
    _no_inplace("hardtanh", inplace)
    if min_val > max_val:
        raise ValueError(f"fnn.functional.hardtanh: min_val ({min_val}) must not exceed max_val "
                         f"({max_val})")
    inside = (input > min_val) & (input < max_val)
    return fnp.where(inside, input, fnp.where(input <= min_val, float(min_val), float(max_val)))


def relu6(input, inplace=False):
    """``min(max(x, 0), 6)``: ``hardtanh(x, 0, 6)``."""
    _no_inplace("relu6", inplace)
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``x`` for ``x > 0``, else ``negative_slope * x`` (derivative ``negative_slope`` at 0)."""
    _no_inplace("leaky_relu", inplace)
    return fnp.where(input > 0, input, input * negative_slope)


def elu(input, alpha=1.0, inplace=False):
    """``x`` for ``x > 0``, else ``alpha * (e^x - 1)``."""
    _no_inplace("elu", inplace)
    return fnp.where(input > 0, input, alpha * fnp.expm1(_nonpositive(input)))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    """``scale * elu(x, alpha)`` with the self-normalising constants of Klambauer et al. (2017)."""
    _no_inplace("selu", inplace)
    return _SELU_SCALE * elu(input, _SELU_ALPHA)


def gelu(input, approximate="none"):
    """``x * Phi(x)`` with ``Phi`` the standard normal CDF (``approximate='none'``, via erf) or
    its tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` ('tanh')."""
    if approximate == "none":
        return 0.5 * input * (1.0 + fnp.erf(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + fnp.tanh(inner))
    raise ValueError(f"fnn.functional.gelu: approximate must be 'none' or 'tanh', got "
                     f"{approximate!r}")


def sigmoid(input):
    """``1 / (1 + e^-x)``, computed without overflow (``fgrad.numpy.logistic``)."""
    return fnp.logistic(input)


def tanh(input):
    """Hyperbolic tangent."""
    return fnp.tanh(input)


def silu(input, inplace=False):
    """``x * sigmoid(x)`` (also called swish)."""
    _no_inplace("silu", inplace)
    return input * fnp.logistic(input)


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + e^(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (as torch)."""
    z = input * beta
    return fnp.where(z > threshold, input, _softplus(z) / beta)


def mish(input, inplace=False):
    """``x * tanh(softplus(x))``."""
    _no_inplace("mish", inplace)
    return input * fnp.tanh(_softplus(input))


def logsigmoid(input):
    """``log(sigmoid(x)) = -softplus(-x)``, finite for every ``x``."""
    return -_softplus(-input)


def softsign(input):
    """``x / (1 + |x|)``."""
    return input / (1.0 + fnp.abs(input))


def _softmax_dim(input, dim):
    """torch's implicit choice when ``dim`` is None (deprecated there): 0 for 0-, 1- and 3-d
    inputs, else 1. Passing ``dim`` explicitly is clearer."""
    if dim is None:
        return 0 if len(shape_of(input)) in (0, 1, 3) else 1
    return dim


def _cast(input, dtype):
    return input if dtype is None else fnp.astype(input, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - logsumexp(x, dim)``: log-probabilities along ``dim``, exact for logits of any size."""
    input = _cast(input, dtype)
    dim = _softmax_dim(input, dim)
    return input - fnp.logsumexp(input, axis=dim, keepdims=True)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(log_softmax(x, dim))``: probabilities along ``dim``."""
    return fnp.exp(log_softmax(input, dim, dtype=dtype))


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-x, dim)``."""
    return softmax(-_cast(input, dtype), dim)
