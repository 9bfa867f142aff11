"""Activation functions and softmax, as ``torch.nn.functional`` names and defaults them.

One implementation of each activation: where torch's and JAX's semantics coincide (values and
the derivative chosen at every kink), these are torch's argument conventions around
``fgrad.nn`` (``jax.nn``'s names), which is written in ``fgrad.numpy``: ``relu``, ``relu6``,
``elu``, ``selu``, ``gelu``, ``sigmoid``, ``tanh``, ``silu``, ``softplus``, ``mish``,
``logsigmoid``, ``softsign``, ``softmax`` and ``log_softmax``. Two differ at their kinks and
are written here: ``leaky_relu'(0) = negative_slope`` (JAX: 1) and ``hardtanh'`` is 0 at the
bounds (JAX: 1); the ``fgrad.nn`` docstring has the table of differences (defaults too:
``gelu``'s ``approximate``, ``softmax``'s axis).

Every function is differentiable to any order and batchable with ``vmap``. Where torch defines
a derivative at a kink, the same branch is chosen here (``relu'(0) = 0``). Nothing overflows:
exponentials only ever see non-positive arguments, so logits of ``+-1e4`` give finite values
and gradients.

torch's ``inplace=True`` has no meaning for pure functions; it is accepted in the same argument
position and rejected with an error, so code ported from torch fails loudly instead of relying
on a mutation that never happens.

>>> import numpy as np, fgrad, fnn.functional as F
>>> fgrad.grad(lambda x: F.gelu(x).sum())(np.linspace(-2, 2, 5))
array([-0.0852318 , -0.08331547,  0.5       ,  1.08331547,  1.0852318 ])
"""
from __future__ import annotations

import fgrad.nn as jnn
import fgrad.numpy as fnp
from fgrad.core import shape_of

__all__ = ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
           "sigmoid", "tanh", "softplus", "logsigmoid", "softsign", "softmax", "log_softmax",
           "softmin"]


def _no_inplace(name, inplace):
    if inplace:
        raise ValueError(f"fnn.functional.{name}: inplace=True is not supported; fnn functions "
                         f"are pure, so write y = {name}(x) and use the result.")


#: ``log(1 + e^z)`` for any ``z``: ``max(z, 0) + log1p(e^-|z|)``; derivative ``sigmoid(z)``
_softplus = jnn.softplus


def relu(input, inplace=False):
    """``max(x, 0)``; the derivative at 0 is 0 (as torch and JAX)."""
    _no_inplace("relu", inplace)
    return jnn.relu(input)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``x`` clipped to ``[min_val, max_val]``; derivative 1 strictly inside, 0 elsewhere."""
    _no_inplace("hardtanh", inplace)
    if min_val > max_val:
        raise ValueError(f"fnn.functional.hardtanh: min_val ({min_val}) must not exceed max_val "
                         f"({max_val})")
    inside = (input > min_val) & (input < max_val)
    return fnp.where(inside, input, fnp.where(input <= min_val, float(min_val), float(max_val)))


def relu6(input, inplace=False):
    """``min(max(x, 0), 6)``, as ``hardtanh(x, 0, 6)``: the derivative is 0 at 0 and at 6."""
    _no_inplace("relu6", inplace)
    return jnn.relu6(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``x`` for ``x > 0``, else ``negative_slope * x`` (derivative ``negative_slope`` at 0)."""
    _no_inplace("leaky_relu", inplace)
    return fnp.where(input > 0, input, input * negative_slope)


def elu(input, alpha=1.0, inplace=False):
    """``x`` for ``x > 0``, else ``alpha * (e^x - 1)``."""
    _no_inplace("elu", inplace)
    return jnn.elu(input, alpha)


def selu(input, inplace=False):
    """``scale * elu(x, alpha)`` with the self-normalising constants of Klambauer et al. (2017)."""
    _no_inplace("selu", inplace)
    return jnn.selu(input)


def gelu(input, approximate="none"):
    """``x * Phi(x)`` with ``Phi`` the standard normal CDF (``approximate='none'``, via erf) or
    its tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` ('tanh').
    (torch's default is the exact form; ``fgrad.nn.gelu``'s, as JAX's, the tanh form.)"""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"fnn.functional.gelu: approximate must be 'none' or 'tanh', got "
                         f"{approximate!r}")
    return jnn.gelu(input, approximate=approximate == "tanh")


def sigmoid(input):
    """``1 / (1 + e^-x)``, computed without overflow (``fgrad.numpy.logistic``)."""
    return jnn.sigmoid(input)


def tanh(input):
    """Hyperbolic tangent."""
    return jnn.tanh(input)


def silu(input, inplace=False):
    """``x * sigmoid(x)`` (also called swish)."""
    _no_inplace("silu", inplace)
    return jnn.silu(input)


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + e^(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (as torch;
    ``fgrad.nn.softplus`` is the ``beta = 1``, no-threshold form)."""
    z = input * beta
    return fnp.where(z > threshold, input, jnn.softplus(z) / beta)


def mish(input, inplace=False):
    """``x * tanh(softplus(x))``."""
    _no_inplace("mish", inplace)
    return jnn.mish(input)


def logsigmoid(input):
    """``log(sigmoid(x)) = -softplus(-x)``, finite for every ``x``."""
    return jnn.log_sigmoid(input)


def softsign(input):
    """``x / (1 + |x|)``."""
    return jnn.soft_sign(input)


def _softmax_dim(input, dim):
    """torch's implicit choice when ``dim`` is None (deprecated there): 0 for 0-, 1- and 3-d
    inputs, else 1. Passing ``dim`` explicitly is clearer."""
    if dim is None:
        return 0 if len(shape_of(input)) in (0, 1, 3) else 1
    return dim


def _cast(input, dtype):
    return input if dtype is None else fnp.astype(input, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - logsumexp(x, dim)``: log-probabilities along ``dim``, exact for logits of any size
    (``fgrad.nn.log_softmax`` along torch's ``dim``)."""
    input = _cast(input, dtype)
    return jnn.log_softmax(input, axis=_softmax_dim(input, dim))


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / sum(exp(x), dim)`` with the max taken out first: probabilities along ``dim``
    (``fgrad.nn.softmax`` along torch's ``dim``)."""
    input = _cast(input, dtype)
    return jnn.softmax(input, axis=_softmax_dim(input, dim))


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-x, dim)``."""
    return softmax(-_cast(input, dtype), dim)
