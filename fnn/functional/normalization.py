"""Normalisation layers as pure functions: batch, layer, group and RMS normalisation.

Each one standardises over some axes, ``(x - mean) / sqrt(var + eps)`` with the biased
variance (as torch), then applies an optional per-feature affine map. Statistics are written in
``fgrad.numpy`` so gradients flow through them (training mode) and ``vmap`` works.

``batch_norm`` does not update running statistics: torch mutates ``running_mean`` and
``running_var`` in place when ``training=True``, which a pure function cannot do. A stateful
layer computes them itself and returns them (torch's update, with ``n`` values per channel):
``running_mean <- (1 - momentum) running_mean + momentum mean``,
``running_var <- (1 - momentum) running_var + momentum var * n / (n - 1)``.

>>> import numpy as np, fnn.functional as F
>>> x = np.random.rand(4, 3, 5, 5)
>>> F.layer_norm(x, (5, 5)).shape, F.group_norm(x, 3).shape
((4, 3, 5, 5), (4, 3, 5, 5))
"""
from __future__ import annotations

import math

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of

__all__ = ["batch_norm", "layer_norm", "group_norm", "rms_norm"]


def _standardize(x, axes, eps):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance)."""
    mean = fnp.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = fnp.mean(centered * centered, axis=axes, keepdims=True)
    return centered / fnp.sqrt(var + eps)


def _per_channel(v, ndim):
    """A ``(C,)`` vector shaped to broadcast along axis 1 of an ``ndim``-d ``(N, C, ...)`` input."""
    return fnp.reshape(v, (-1,) + (1,) * (ndim - 2))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel of ``(N, C, *)`` over the batch and spatial axes.

    ``training=True`` uses the batch's statistics (and needs more than one value per channel);
    ``training=False`` uses ``running_mean`` and ``running_var`` (``(C,)``). ``weight`` and
    ``bias`` (``(C,)``) scale and shift. ``momentum`` is accepted for torch's signature; the
    running statistics are not updated (see the module docstring for the formula).
    """
    fname = "fnn.functional.batch_norm"
    s = shape_of(input)
    if len(s) < 2:
        raise ValueError(f"{fname}: expected an input (N, C, *) with at least 2 dimensions, got "
                         f"shape {s}")
    ndim = len(s)
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is not None and shape_of(v) != (s[1],):
            raise ValueError(f"{fname}: {name} must have shape ({s[1]},) for an input of shape "
                             f"{s}, got {shape_of(v)}")
    if training:
        per_channel = math.prod(s) // s[1]
        if per_channel <= 1:
            raise ValueError(f"{fname}: expected more than 1 value per channel when training, got "
                             f"input of shape {s}")
        out = _standardize(input, (0,) + tuple(range(2, ndim)), eps)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{fname}: training=False needs running_mean and running_var")
        out = ((input - _per_channel(running_mean, ndim))
               / fnp.sqrt(_per_channel(running_var, ndim) + eps))
    if weight is not None:
        out = out * _per_channel(weight, ndim)
    if bias is not None:
        out = out + _per_channel(bias, ndim)
    return out


def _normalized_axes(fname, input, normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    s = shape_of(input)
    if not shape or s[len(s) - len(shape):] != shape or len(shape) > len(s):
        raise ValueError(f"{fname}: normalized_shape {shape} must match the trailing dimensions "
                         f"of the input, got input of shape {s}")
    return shape, tuple(range(len(s) - len(shape), len(s)))


def _check_affine(fname, name, v, shape):
    if v is not None and shape_of(v) != shape:
        raise ValueError(f"{fname}: {name} must have shape {shape}, got {shape_of(v)}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` axes; ``weight``/``bias`` have that shape."""
    fname = "fnn.functional.layer_norm"
    shape, axes = _normalized_axes(fname, input, normalized_shape)
    _check_affine(fname, "weight", weight, shape)
    _check_affine(fname, "bias", bias, shape)
    out = _standardize(input, axes, eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Split the channels of ``(N, C, *)`` into ``num_groups`` groups and normalise each group
    over its channels and spatial positions; ``weight``/``bias`` are per channel ``(C,)``."""
    fname = "fnn.functional.group_norm"
    s = shape_of(input)
    if len(s) < 2 or num_groups < 1 or s[1] % num_groups:
        raise ValueError(f"{fname}: expected an input (N, C, *) whose C is divisible by "
                         f"num_groups={num_groups}, got shape {s}")
    _check_affine(fname, "weight", weight, (s[1],))
    _check_affine(fname, "bias", bias, (s[1],))
    grouped = fnp.reshape(input, (s[0], num_groups, -1))
    out = fnp.reshape(_standardize(grouped, (2,), eps), s)
    if weight is not None:
        out = out * _per_channel(weight, len(s))
    if bias is not None:
        out = out + _per_channel(bias, len(s))
    return out


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` axes.

    ``eps=None`` uses the machine epsilon of the input's dtype, as torch does.
    """
    fname = "fnn.functional.rms_norm"
    shape, axes = _normalized_axes(fname, input, normalized_shape)
    _check_affine(fname, "weight", weight, shape)
    if eps is None:
        dt = dtype_of(input)
        eps = float(np.finfo(dt if dt.kind == "f" else np.float64).eps)
    out = input / fnp.sqrt(fnp.mean(input * input, axis=axes, keepdims=True) + eps)
    return out if weight is None else out * weight
