"""Parameter initialisers with torch.nn.init's names and distributions, as pure functions of a key.

Every initialiser has the signature ``init(key, shape, dtype=float32, **hyper) -> array``:
where ``torch.nn.init.kaiming_uniform_(w, a=...)`` fills a tensor in place, here
``fnn.init.kaiming_uniform(key, w_shape, a=...)`` returns a new array drawn from the same
distribution (the draws differ: fgrad and torch have different generators). Constant
initialisers take the key too, so that every entry of a layer's parameter spec is called the
same way. Fans follow torch: for a weight of shape ``(out, in, *kernel)``,
``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.

All initialisers except :func:`orthogonal` are written with ``fgrad.random`` and
``fgrad.numpy``, so they can be transformed: ``fgrad.vmap(layer.init)(keys)`` initialises an
ensemble of layers at once.

>>> import fgrad, fnn
>>> w = fnn.init.kaiming_uniform(fgrad.random.key(0), (128, 64), a=5 ** 0.5)
>>> bool(abs(w).max() <= 1 / 64 ** 0.5)
True
"""
from __future__ import annotations

import math

import numpy as np

import fgrad.numpy as fnp
from fgrad import random

__all__ = ["calculate_gain", "fan_in_and_fan_out", "uniform", "normal", "trunc_normal",
           "constant", "zeros", "ones", "xavier_uniform", "xavier_normal", "kaiming_uniform",
           "kaiming_normal", "orthogonal"]

_LINEAR_GAIN = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The gain torch recommends for ``nonlinearity`` (scales the std of xavier/kaiming).

    linear/conv/sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2))
    (slope ``param``, default 0.01); selu: 3/4.
    """
    if nonlinearity in _LINEAR_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain('leaky_relu', param): param must be a number, got {slope!r}")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                     f"{', '.join(_LINEAR_GAIN)}, tanh, relu, leaky_relu, selu")


def fan_in_and_fan_out(shape):
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``, as torch computes them."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode, fn):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform(key, shape, a=0.0, b=1.0, dtype=np.float32):
    """U(a, b)."""
    return random.uniform(key, tuple(shape), dtype=dtype, minval=a, maxval=b)


def normal(key, shape, mean=0.0, std=1.0, dtype=np.float32):
    """N(mean, std^2)."""
    return mean + std * random.normal(key, tuple(shape), dtype=dtype)


def trunc_normal(key, shape, mean=0.0, std=1.0, a=-2.0, b=2.0, dtype=np.float32):
    """N(mean, std^2) conditioned on ``a <= x <= b`` (``a`` and ``b`` are absolute, as in torch)."""
    lower, upper = (a - mean) / std, (b - mean) / std
    return mean + std * random.truncated_normal(key, lower, upper, tuple(shape), dtype=dtype)


def constant(key, shape, value, dtype=np.float32):
    """Every entry equal to ``value`` (``key`` is unused)."""
    return fnp.full(tuple(shape), value, dtype=dtype)


def zeros(key, shape, dtype=np.float32):
    """All zeros (``key`` is unused)."""
    return fnp.zeros(tuple(shape), dtype=dtype)


def ones(key, shape, dtype=np.float32):
    """All ones (``key`` is unused)."""
    return fnp.ones(tuple(shape), dtype=dtype)


def xavier_uniform(key, shape, gain=1.0, dtype=np.float32):
    """U(-bound, bound) with ``bound = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio)."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(key, shape, -bound, bound, dtype=dtype)


def xavier_normal(key, shape, gain=1.0, dtype=np.float32):
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return normal(key, shape, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), dtype=dtype)


def kaiming_uniform(key, shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al.).

    ``gain = calculate_gain(nonlinearity, a)``. With torch's layer default ``a = sqrt(5)`` the
    bound is ``1 / sqrt(fan_in)``, the init of ``nn.Linear`` and ``nn.Conv2d`` weights.
    """
    fan = _fan(shape, mode, "kaiming_uniform")
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform(key, shape, -bound, bound, dtype=dtype)


def kaiming_normal(key, shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    """N(0, std^2) with ``std = gain / sqrt(fan)`` (He et al.)."""
    fan = _fan(shape, mode, "kaiming_normal")
    return normal(key, shape, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), dtype=dtype)


def orthogonal(key, shape, gain=1.0, dtype=np.float32):
    """A (semi-)orthogonal matrix times ``gain``: the rows of the ``(shape[0], rest)`` view are
    orthonormal when ``shape[0] <= rest``, else its columns are (Saxe et al.; torch's algorithm,
    the Q of a QR decomposition of a normal matrix with signs fixed by R's diagonal).

    Uses NumPy's QR on a concrete key, so unlike the other initialisers it cannot be vmapped.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal: needs a shape with at least 2 dimensions, got {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    flat = np.asarray(random.normal(key, (rows, cols), dtype=np.float64))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))           # make the decomposition unique (R's diagonal > 0)
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)
