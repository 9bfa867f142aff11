"""``jax.nn.initializers``: each factory returns ``init(key, shape, dtype=...) -> array``.

JAX's layout conventions: a dense kernel is ``(in, out)`` (torch's ``nn.Linear`` weight is
``(out, in)``: use ``fnn.init`` for torch's), so ``fan_in = shape[in_axis]`` with
``in_axis=-2``, ``fan_out = shape[out_axis]`` with ``out_axis=-1``, and any other axis
(a convolution's spatial axes) is the receptive field that multiplies both. The default dtype
is float64, NumPy's (JAX's is float32 unless x64 is on); pass ``dtype=np.float32`` as needed.

>>> import fgrad, fgrad.nn as nn
>>> w = nn.initializers.glorot_uniform()(fgrad.random.key(0), (784, 128))
"""
from __future__ import annotations

import math

import numpy as np

from .. import random

__all__ = ["zeros", "ones", "constant", "normal", "uniform", "truncated_normal",
           "variance_scaling", "glorot_uniform", "glorot_normal", "xavier_uniform",
           "xavier_normal", "lecun_uniform", "lecun_normal", "he_uniform", "he_normal",
           "kaiming_uniform", "kaiming_normal", "orthogonal"]

_DEFAULT = np.float64


def zeros(key, shape, dtype=_DEFAULT):
    """An initializer itself (as JAX): ``zeros(key, shape)``."""
    return np.zeros(tuple(shape), dtype)


def ones(key, shape, dtype=_DEFAULT):
    """An initializer itself (as JAX): ``ones(key, shape)``."""
    return np.ones(tuple(shape), dtype)


def constant(value, dtype=_DEFAULT):
    """``init`` filling every entry with ``value``."""
    def init(key, shape, dtype=dtype):
        return np.full(tuple(shape), value, dtype)
    return init


def normal(stddev=1e-2, dtype=_DEFAULT):
    """``init`` drawing from N(0, stddev^2)."""
    def init(key, shape, dtype=dtype):
        return random.normal(key, tuple(shape), dtype) * np.asarray(stddev, dtype)
    return init


def uniform(scale=1e-2, dtype=_DEFAULT):
    """``init`` drawing from U[0, scale) (JAX's; not symmetric around 0)."""
    def init(key, shape, dtype=dtype):
        return random.uniform(key, tuple(shape), dtype) * np.asarray(scale, dtype)
    return init


def truncated_normal(stddev=1e-2, dtype=_DEFAULT, lower=-2.0, upper=2.0):
    """``init`` drawing ``stddev * z`` with ``z`` a standard normal truncated to [lower, upper]."""
    def init(key, shape, dtype=dtype):
        return random.truncated_normal(key, lower, upper, tuple(shape), dtype) * np.asarray(stddev, dtype)
    return init


def _axes_size(shape, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return math.prod(shape[a] for a in axes), {a % len(shape) for a in axes}


def _compute_fans(shape, in_axis=-2, out_axis=-1, batch_axis=()):
    if len(shape) <= 1:
        raise ValueError(f"fgrad.nn.initializers: can't compute input and output sizes of a "
                         f"{len(shape)}-dimensional weights tensor (shape {tuple(shape)}); it "
                         f"must be at least 2-D")
    in_size, in_set = _axes_size(shape, in_axis)
    out_size, out_set = _axes_size(shape, out_axis)
    batch_size, batch_set = _axes_size(shape, batch_axis)
    receptive = math.prod(n for i, n in enumerate(shape) if i not in in_set | out_set | batch_set)
    return in_size * receptive, out_size * receptive


def variance_scaling(scale, mode, distribution, in_axis=-2, out_axis=-1, batch_axis=(),
                     dtype=_DEFAULT):
    """``init`` with variance ``scale / n``, ``n`` = fan_in, fan_out or their mean (``mode``),
    from ``distribution`` ``"truncated_normal"`` (rescaled so the truncated law has that
    variance), ``"normal"`` or ``"uniform"`` (on ``[-sqrt(3 var), sqrt(3 var)]``)."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"fgrad.nn.initializers.variance_scaling: invalid mode {mode!r}; use "
                         f"'fan_in', 'fan_out' or 'fan_avg'")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"fgrad.nn.initializers.variance_scaling: invalid distribution "
                         f"{distribution!r}; use 'truncated_normal', 'normal' or 'uniform'")

    def init(key, shape, dtype=dtype):
        shape = tuple(shape)
        fan_in, fan_out = _compute_fans(shape, in_axis, out_axis, batch_axis)
        denominator = {"fan_in": fan_in, "fan_out": fan_out,
                       "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / denominator
        if distribution == "truncated_normal":
            # 0.8796... is the standard deviation of a standard normal truncated to (-2, 2)
            stddev = math.sqrt(variance) / 0.87962566103423978
            return random.truncated_normal(key, -2.0, 2.0, shape, dtype) * np.asarray(stddev, dtype)
        if distribution == "normal":
            return random.normal(key, shape, dtype) * np.asarray(math.sqrt(variance), dtype)
        return random.uniform(key, shape, dtype, -1.0, 1.0) * np.asarray(math.sqrt(3 * variance), dtype)
    return init


def glorot_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(1.0, "fan_avg", "uniform", in_axis, out_axis, batch_axis, dtype)


def glorot_normal(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(1.0, "fan_avg", "truncated_normal", in_axis, out_axis, batch_axis, dtype)


def lecun_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, batch_axis, dtype)


def lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis, dtype)


def he_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(2.0, "fan_in", "uniform", in_axis, out_axis, batch_axis, dtype)


def he_normal(in_axis=-2, out_axis=-1, batch_axis=(), dtype=_DEFAULT):
    return variance_scaling(2.0, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis, dtype)


xavier_uniform, xavier_normal = glorot_uniform, glorot_normal
kaiming_uniform, kaiming_normal = he_uniform, he_normal


def orthogonal(scale=1.0, column_axis=-1, dtype=_DEFAULT):
    """``init`` giving ``scale`` times a uniformly random matrix with orthonormal columns (or
    rows, whichever are fewer), the other axes flattened into rows (``jax.nn.initializers``'s).
    Needs a concrete key (a QR decomposition in NumPy)."""
    def init(key, shape, dtype=dtype):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"fgrad.nn.initializers.orthogonal: needs at least 2 dimensions, "
                             f"got shape {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        matrix_shape = (n_cols, n_rows) if n_rows < n_cols else (n_rows, n_cols)
        a = np.asarray(random.normal(key, matrix_shape, np.float64))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))       # the sign fix that makes the distribution uniform
        if n_rows < n_cols:
            q = q.T
        rest = tuple(n for i, n in enumerate(shape) if i != column_axis % len(shape))
        q = np.moveaxis(np.reshape(q, rest + (n_cols,)), -1, column_axis)
        return (scale * q).astype(dtype)
    return init
