"""Affine maps with torch's weight layouts: ``linear`` (weight ``(out, in)``) and ``bilinear``.

Both contract with ``tensordot`` (one ``dot_general``, so one GEMM over all leading axes) rather
than ``x @ weight.T``, which would add a transpose to the program.

>>> import numpy as np, fnn.functional as F
>>> F.linear(np.ones((8, 3)), np.ones((4, 3)), np.zeros(4)).shape
(8, 4)
"""
from __future__ import annotations

import fgrad.numpy as fnp
from fgrad.core import shape_of

__all__ = ["linear", "bilinear"]


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``: input ``(*, in)``, weight ``(out, in)`` or ``(in,)``, bias
    ``(out,)`` or a scalar; returns ``(*, out)`` (``(*,)`` for a 1-d weight)."""
    x_shape, w_shape = shape_of(input), shape_of(weight)
    if len(w_shape) not in (1, 2) or not x_shape or x_shape[-1] != w_shape[-1]:
        raise ValueError(f"fnn.functional.linear: expected input (*, in) and weight (out, in) with "
                         f"matching 'in', got input {x_shape} and weight {w_shape}")
    out = fnp.tensordot(input, weight, axes=([len(x_shape) - 1], [len(w_shape) - 1]))
    return out if bias is None else out + bias


def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = sum_ij x1[..., i] weight[o, i, j] x2[..., j] + bias[o]``.

    input1 ``(*, in1)``, input2 ``(*, in2)`` (same leading shape), weight ``(out, in1, in2)``,
    bias ``(out,)``; returns ``(*, out)``.
    """
    s1, s2, sw = shape_of(input1), shape_of(input2), shape_of(weight)
    if (len(sw) != 3 or not s1 or s1[:-1] != s2[:-1] or s1[-1] != sw[1] or s2[-1] != sw[2]):
        raise ValueError(f"fnn.functional.bilinear: expected input1 (*, in1), input2 (*, in2) and "
                         f"weight (out, in1, in2), got {s1}, {s2} and {sw}")
    # (*, in1) . (out, in1, in2) -> (*, out, in2), then contract in2 with input2
    left = fnp.tensordot(input1, weight, axes=([len(s1) - 1], [1]))
    out = fnp.sum(left * fnp.expand_dims(input2, -2), axis=-1)
    return out if bias is None else out + bias
