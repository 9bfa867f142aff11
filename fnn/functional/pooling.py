"""Pooling over windows: max and average pooling (1-d, 2-d), and adaptive average pooling.

Max and average pooling take the same windows as convolution (``conv_windows``, a strided view,
no copy) and reduce them with ``max`` or ``sum`` over the window axes; derivatives and ``vmap``
follow from those primitives. Padding is explicit (``-inf`` for max pooling, zeros for average
pooling), and ``ceil_mode`` adds the extra padding at the end that torch's rounding up implies.

Ties in max pooling: torch sends the whole gradient of a window to one of its maximal
elements, fgrad's ``max`` splits it evenly between them. The two agree wherever a window has a
single maximum, which is almost surely the case for real-valued data.

Adaptive average pooling averages over the bins ``[floor(i L / out), ceil((i + 1) L / out))``.
Since each bin is a product of intervals, it is two small matrix products,
``A_h @ x @ A_w^T``, with averaging matrices built in NumPy once per shape.

>>> import numpy as np, fnn.functional as F
>>> F.max_pool2d(np.random.rand(2, 3, 8, 8), 2).shape
(2, 3, 4, 4)
"""
from __future__ import annotations

import math

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of
from fgrad.primitives.conv import conv_windows

from ._utils import ntuple

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d"]

_SPATIAL = {1: "L", 2: "H, W"}


def _pool_geometry(fname, n, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Check the arguments; return ``(x, unbatched, kernel, stride, dilation, pads, out_size)``.

    ``pads`` is the per-axis ``(before, after)`` padding, where ``after`` includes the extra that
    ``ceil_mode`` needs so that the last (partial) window exists. Output size per axis (torch):
    ``floor_or_ceil((L + 2p - d (k - 1) - 1) / s) + 1``, less one if ``ceil_mode`` would start
    the last window in the right padding.
    """
    s = shape_of(input)
    if len(s) not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected a {n + 2}-d input (N, C, {_SPATIAL[n]}) or an unbatched "
                         f"{n + 1}-d input (C, {_SPATIAL[n]}), got shape {s}")
    unbatched = len(s) == n + 1
    x = fnp.expand_dims(input, 0) if unbatched else input
    kernel = ntuple(fname, "kernel_size", kernel_size, n)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)
    stride = kernel if no_stride else ntuple(fname, "stride", stride, n)
    pads = ntuple(fname, "padding", padding, n)
    dilation = ntuple(fname, "dilation", dilation, n)
    if any(v < 1 for v in kernel + stride + dilation):
        raise ValueError(f"{fname}: kernel_size {kernel}, stride {stride} and dilation {dilation} "
                         f"must be positive")
    if any(p < 0 or 2 * p > k for p, k in zip(pads, kernel)):
        raise ValueError(f"{fname}: padding {pads} must be non-negative and at most half the "
                         f"kernel size {kernel}")
    sizes, full_pads = [], []
    for length, k, st, p, d in zip(shape_of(x)[2:], kernel, stride, pads, dilation):
        span = d * (k - 1) + 1
        room = length + 2 * p - span
        if room < 0:
            raise ValueError(f"{fname}: the padded input's spatial size is smaller than the "
                             f"window (input {s}, kernel {kernel}, padding {pads}, dilation "
                             f"{dilation})")
        out = (-(-room // st) if ceil_mode else room // st) + 1
        if ceil_mode and (out - 1) * st >= length + p:   # the last window would start in padding
            out -= 1
        sizes.append(out)
        full_pads.append((p, max(0, (out - 1) * st + span - length - p)))
    return x, unbatched, kernel, stride, dilation, tuple(full_pads), tuple(sizes)


def _max_poolnd(n, name, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    fname = f"fnn.functional.{name}"
    x, unbatched, kernel, stride, dilation, pads, _ = _pool_geometry(
        fname, n, input, kernel_size, stride, padding, dilation, ceil_mode)
    if any(lo or hi for lo, hi in pads):
        x = fnp.pad(x, ((0, 0), (0, 0)) + pads, constant_values=-np.inf)
    if not return_indices and stride == kernel and dilation == (1,) * n:
        # Fast path for windows that tile the input (the usual 2x2, stride 2): split each spatial
        # axis into (out, kernel), a view even of a strided array, and take the max over the
        # kernel axes. Its gradient is a reshape back instead of col2im's loop over kernel
        # offsets (W6 of benchmarks/bench_jit.py: the two pools' backward 17 -> 6 ms).
        spatial = shape_of(x)[2:]
        out_size = tuple(m // k for m, k in zip(spatial, kernel))
        if any(o * k != m for o, k, m in zip(out_size, kernel, spatial)):   # rows no window reaches
            x = x[(slice(None), slice(None)) + tuple(slice(0, o * k) for o, k in zip(out_size, kernel))]
        blocks = fnp.reshape(x, shape_of(x)[:2] + tuple(d for o, k in zip(out_size, kernel) for d in (o, k)))
        out = fnp.max(blocks, axis=tuple(range(3, 3 + 2 * n, 2)))
        return out[0] if unbatched else out
    windows = conv_windows(x, kernel, stride, dilation)        # (N, C, *out, *kernel)
    window_axes = tuple(range(2 + n, 2 + 2 * n))
    out = fnp.max(windows, axis=window_axes)
    if not return_indices:
        return out[0] if unbatched else out
    indices = _argmax_indices(windows, shape_of(x)[2:], pads, kernel, stride, dilation, n)
    return (out[0], indices[0]) if unbatched else (out, indices)


def _argmax_indices(windows, padded_spatial, pads, kernel, stride, dilation, n):
    """torch's ``return_indices``: the flat index, in the unpadded input, of each window's max."""
    unpadded = tuple(m - lo - hi for m, (lo, hi) in zip(padded_spatial, pads))
    flat = np.pad(np.arange(math.prod(unpadded)).reshape(unpadded), pads, constant_values=-1)
    flat_windows = conv_windows(flat, kernel, stride, dilation)      # (*out, *kernel), NumPy
    out_spatial = shape_of(windows)[2:2 + n]
    per_window = math.prod(kernel)
    flat_windows = flat_windows.reshape(out_spatial + (per_window,))
    best = fnp.argmax(fnp.reshape(windows, shape_of(windows)[:2 + n] + (per_window,)), axis=-1)
    lead = shape_of(best)[:2]
    picked = fnp.take_along_axis(np.broadcast_to(flat_windows, lead + shape_of(flat_windows)),
                                 fnp.expand_dims(best, -1), axis=-1)
    return fnp.squeeze(picked, -1)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-d max pooling; see :func:`max_pool2d`."""
    return _max_poolnd(1, "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-d max pooling of ``(N, C, H, W)`` (or ``(C, H, W)``) as torch.

    ``stride`` defaults to ``kernel_size``; ``padding`` (at most half the kernel) pads with
    ``-inf``; ``ceil_mode`` rounds the output size up. ``return_indices=True`` also returns the
    flat index into each ``H * W`` plane of every maximum (first one on ties, as torch).
    Gradients on ties are split evenly (torch picks one element); see the module docstring.
    A dilated window that lies entirely in the padding gives ``-inf`` and no gradient.
    """
    return _max_poolnd(2, "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def _avg_poolnd(n, name, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
    fname = f"fnn.functional.{name}"
    x, unbatched, kernel, stride, dilation, pads, out_size = _pool_geometry(
        fname, n, input, kernel_size, stride, padding, 1, ceil_mode)
    if any(lo or hi for lo, hi in pads):
        x = fnp.pad(x, ((0, 0), (0, 0)) + pads)
    windows = conv_windows(x, kernel, stride, dilation)
    total = fnp.sum(windows, axis=tuple(range(2 + n, 2 + 2 * n)))
    if divisor_override:
        out = total / divisor_override
    else:
        divisor = _avg_divisor(shape_of(x)[2:], pads, kernel, stride, count_include_pad)
        out = total / divisor.astype(dtype_of(total))
    return out[0] if unbatched else out


def _avg_divisor(padded_spatial, pads, kernel, stride, count_include_pad):
    """How many elements each window averages over, as torch counts them (a NumPy constant).

    With ``count_include_pad`` a window counts the user's padding but not the extra padding
    that ``ceil_mode`` adds at the end; without it, only elements of the input itself.
    """
    counted = np.zeros(padded_spatial)
    region = []
    for m, (lo, hi) in zip(padded_spatial, pads):   # lo is the user's padding on both sides
        length = m - lo - hi
        region.append(slice(0, length + 2 * lo) if count_include_pad else slice(lo, lo + length))
    counted[tuple(region)] = 1.0
    n = len(kernel)
    return np.sum(conv_windows(counted, kernel, stride), axis=tuple(range(n, 2 * n)))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-d average pooling; see :func:`avg_pool2d`."""
    return _avg_poolnd(1, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-d average pooling of ``(N, C, H, W)`` (or ``(C, H, W)``) as torch.

    ``stride`` defaults to ``kernel_size``; zero ``padding`` counts towards the average when
    ``count_include_pad`` (torch's default); ``divisor_override`` replaces the count.
    """
    return _avg_poolnd(2, "avg_pool2d", input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override)


def _adaptive_matrix(length, out):
    """``(out, length)`` matrix averaging over torch's adaptive bins."""
    a = np.zeros((out, length))
    for i in range(out):
        start, end = (i * length) // out, -(-((i + 1) * length) // out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def _adaptive_avg_poolnd(n, name, input, output_size):
    fname = f"fnn.functional.{name}"
    s = shape_of(input)
    if len(s) not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected a {n + 2}-d input (N, C, {_SPATIAL[n]}) or an unbatched "
                         f"{n + 1}-d input (C, {_SPATIAL[n]}), got shape {s}")
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * n
    if len(sizes) != n:
        raise ValueError(f"{fname}: output_size must be an int or {n} ints, got {output_size}")
    spatial = s[len(s) - n:]
    sizes = tuple(m if o is None else int(o) for o, m in zip(sizes, spatial))
    if any(o < 1 for o in sizes):
        raise ValueError(f"{fname}: output_size {sizes} must be positive")
    dtype = dtype_of(input) if dtype_of(input).kind == "f" else np.float64
    out = input
    for axis, (length, o) in enumerate(zip(spatial, sizes)):   # one small product per axis
        ax = len(s) - n + axis
        bins = _adaptive_matrix(length, o).astype(dtype)         # (out, length)
        out = fnp.moveaxis(fnp.tensordot(out, bins, axes=([ax], [1])), -1, ax)
    return out


def adaptive_avg_pool1d(input, output_size):
    """Average ``(N, C, L)`` into ``output_size`` bins (torch's adaptive bins)."""
    return _adaptive_avg_poolnd(1, "adaptive_avg_pool1d", input, output_size)


def adaptive_avg_pool2d(input, output_size):
    """Average ``(N, C, H, W)`` into an ``output_size`` grid of bins (``None`` keeps a size)."""
    return _adaptive_avg_poolnd(2, "adaptive_avg_pool2d", input, output_size)
