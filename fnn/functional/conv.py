"""Convolutions (NCHW inputs, OIHW weights, as torch), transposed convolutions, unfold and fold.

How a convolution is computed here (im2col, without a Python loop over pixels):

1. pad the input with ``fgrad.numpy.pad`` (``padding`` as torch: an int, a tuple, ``'valid'``
   or ``'same'``);
2. take every window with ``conv_windows`` (``fgrad/primitives/conv.py``): a strided view of
   shape ``(N, groups, C_in / groups, *out_spatial, *kernel)``, no copy yet;
3. copy the windows once into rows ``(groups, N * prod(out_spatial), prod(kernel) * C_in /
   groups)`` (im2col proper) and multiply them by the weight in one batched ``dot_general``,
   whose batch axis is the group.

Everything is made of differentiable, batchable primitives, so the input, weight and bias
gradients, ``vmap`` over an extra batch axis, and higher derivatives all follow. A transposed
convolution is the adjoint of a convolution: contract the input with the weight, then add the
windows back with ``col2im``.

>>> import numpy as np, fgrad, fnn.functional as F
>>> x, w = np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3))
>>> F.conv2d(x, w, padding="same").shape
(2, 4, 8, 8)
>>> fgrad.grad(lambda w: F.conv2d(x, w, stride=2).sum())(w).shape
(4, 3, 3, 3)
"""
from __future__ import annotations

import math

import fgrad.numpy as fnp
from fgrad.core import shape_of
from fgrad.primitives.conv import col2im, conv_windows, windows_out_shape
from fgrad.primitives.dot import dot_general

from ._utils import ntuple

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "unfold", "fold"]

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def _batched(fname, input, n, what="input"):
    """``(input with a batch axis, was_unbatched)``; torch accepts ``(C, *spatial)`` too."""
    s = shape_of(input)
    if len(s) == n + 2:
        return input, False
    if len(s) == n + 1:
        return fnp.expand_dims(input, 0), True
    raise ValueError(f"{fname}: expected a {n + 2}-d {what} (N, C, {_SPATIAL[n]}) or an unbatched "
                     f"{n + 1}-d {what} (C, {_SPATIAL[n]}), got shape {s}")


def _padding(fname, padding, kernel, dilation, stride):
    """Per-axis ``(before, after)`` padding from torch's ``padding`` argument."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"{fname}: padding must be an int, a tuple, 'valid' or 'same', got "
                             f"{padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{fname}: padding='same' needs stride 1 (as torch), got stride "
                             f"{stride}; give explicit padding for strided convolutions")
        # the output keeps the input's size: d (k - 1) in total, the odd one after (as torch)
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pads = ntuple(fname, "padding", padding, n)
    if any(p < 0 for p in pads):
        raise ValueError(f"{fname}: padding must be non-negative, got {pads}")
    return tuple((p, p) for p in pads)


def _convnd(n, name, input, weight, bias, stride, padding, dilation, groups):
    fname = f"fnn.functional.{name}"
    x, unbatched = _batched(fname, input, n)
    x_shape, w_shape = shape_of(x), shape_of(weight)
    if len(w_shape) != n + 2:
        raise ValueError(f"{fname}: expected a {n + 2}-d weight (out_channels, in_channels / "
                         f"groups, {_SPATIAL[n]}), got shape {w_shape}")
    if groups < 1 or w_shape[0] % groups:
        raise ValueError(f"{fname}: groups ({groups}) must be positive and divide out_channels "
                         f"(weight shape {w_shape})")
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(f"{fname}: input of shape {shape_of(input)} has {x_shape[1]} channels, but "
                         f"weight of shape {w_shape} with groups={groups} expects "
                         f"{w_shape[1] * groups} (= weight.shape[1] * groups)")
    kernel = w_shape[2:]
    stride = ntuple(fname, "stride", stride, n)
    dilation = ntuple(fname, "dilation", dilation, n)
    pads = _padding(fname, padding, kernel, dilation, stride)
    if any(lo or hi for lo, hi in pads):
        x = fnp.pad(x, ((0, 0), (0, 0)) + pads)
    spatial = shape_of(x)[2:]
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(m < s for m, s in zip(spatial, span)):
        raise ValueError(f"{fname}: the padded input's spatial size {spatial} is smaller than the "
                         f"dilated kernel {span} (input {shape_of(input)}, weight {w_shape}, "
                         f"padding {pads}, dilation {dilation})")
    out = _convolve(x, weight, groups, stride, dilation)      # (N, O, *out)
    if bias is not None:
        out = out + fnp.reshape(bias, (-1,) + (1,) * n)
    return out[0] if unbatched else out


def _convolve(x, weight, groups, stride, dilation):
    """``out[b, o, *p] = sum_{c, *k} x[b, c, *(p stride + k dilation)] weight[o, c, *k]``,
    each group of channels on its own: the im2col product, one batched GEMM per call.

    Layout, chosen by measurement. The windows are taken per group, ``(N, G, C/G, *out,
    *kernel)``, and copied once into rows ``(G, N * prod(out), prod(kernel) * C/G)``, channels
    last: copying a window view in that order reads runs of channels and is over twice as fast
    as the order ``(C/G, *kernel)``. The weight gradient contracts with the same rows (kept by
    the reverse pass, so im2col is not redone), and the input gradient arrives channels-last,
    which ``col2im`` reads in contiguous runs. Every other step below is a view.
    """
    n = len(stride)
    s, w_shape = shape_of(x), shape_of(weight)
    kernel = w_shape[2:]
    x = fnp.reshape(x, (s[0], groups, s[1] // groups) + s[2:])
    windows = conv_windows(x, kernel, stride, dilation)           # (N, G, C/G, *out, *kernel)
    out_spatial = shape_of(windows)[3:3 + n]
    rows = fnp.transpose(windows, (1, 0) + tuple(range(3, 3 + 2 * n)) + (2,))
    rows = fnp.reshape(rows, (groups, s[0] * math.prod(out_spatial), -1))   # the im2col copy
    kernel_first = (0,) + tuple(range(2, 2 + n)) + (1,)                      # (O, *kernel, C/G)
    weight = fnp.reshape(fnp.transpose(weight, kernel_first), (groups, w_shape[0] // groups, -1))
    out = dot_general(rows, weight, (((2,), (2,)), ((0,), (0,))))          # (G, rows, O/G)
    out = fnp.reshape(out, (groups, s[0]) + out_spatial + (w_shape[0] // groups,))
    out = fnp.transpose(out, (1, 0, 2 + n) + tuple(range(2, 2 + n)))        # (N, G, O/G, *out)
    return fnp.reshape(out, (s[0], w_shape[0]) + out_spatial)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution (cross-correlation): input ``(N, C_in, L)`` or ``(C_in, L)``, weight
    ``(C_out, C_in / groups, k)``, bias ``(C_out,)``; see :func:`conv2d`."""
    return _convnd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    input ``(N, C_in, H, W)`` (or unbatched ``(C_in, H, W)``), weight
    ``(C_out, C_in / groups, kH, kW)``, bias ``(C_out,)``. ``stride``, ``dilation``: an int or a
    pair. ``padding``: an int, a pair, ``'valid'`` (none) or ``'same'`` (output size = input
    size; stride 1 only; an odd total puts the extra row after). ``groups`` splits the channels
    into independent convolutions (``groups == C_in`` is depthwise). Output
    ``(N, C_out, (H + 2p - d (k - 1) - 1) // s + 1, ...)``.
    """
    return _convnd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-d convolution: input ``(N, C_in, D, H, W)``, weight ``(C_out, C_in / groups, kD, kH,
    kW)``; see :func:`conv2d`."""
    return _convnd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups)


# --------------------------------------------------------------------------------------------
# Transposed convolutions: the adjoint of a convolution
# --------------------------------------------------------------------------------------------

def _conv_transposend(n, name, input, weight, bias, stride, padding, output_padding, groups,
                      dilation):
    fname = f"fnn.functional.{name}"
    x, unbatched = _batched(fname, input, n)
    x_shape, w_shape = shape_of(x), shape_of(weight)
    if len(w_shape) != n + 2:
        raise ValueError(f"{fname}: expected a {n + 2}-d weight (in_channels, out_channels / "
                         f"groups, {_SPATIAL[n]}), got shape {w_shape}")
    if groups < 1 or w_shape[0] % groups:
        raise ValueError(f"{fname}: groups ({groups}) must be positive and divide in_channels "
                         f"(weight shape {w_shape})")
    if x_shape[1] != w_shape[0]:
        raise ValueError(f"{fname}: input of shape {shape_of(input)} has {x_shape[1]} channels, but "
                         f"weight of shape {w_shape} expects {w_shape[0]} (= weight.shape[0])")
    kernel = w_shape[2:]
    stride = ntuple(fname, "stride", stride, n)
    dilation = ntuple(fname, "dilation", dilation, n)
    pads = ntuple(fname, "padding", padding, n)
    extra = ntuple(fname, "output_padding", output_padding, n)
    if any(e >= max(s, d) or e < 0 for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"{fname}: output_padding {extra} must be non-negative and smaller than "
                         f"either stride {stride} or dilation {dilation} (per axis)")
    # out[b, o, p s + k d] += sum_c x[b, c, p] weight[c, o, k]: contract, then add windows back
    full = tuple((h - 1) * s + d * (k - 1) + 1
                 for h, s, d, k in zip(x_shape[2:], stride, dilation, kernel))
    out = _scatter_windows(x, weight, groups, full, stride, dilation)   # (N, C_out, *full)
    if any(extra):
        out = fnp.pad(out, ((0, 0), (0, 0)) + tuple((0, e) for e in extra))
    out_size = tuple(f + e - 2 * p for f, e, p in zip(full, extra, pads))
    if any(m <= 0 for m in out_size):
        raise ValueError(f"{fname}: padding {pads} leaves an empty output of spatial size {out_size} "
                         f"(input {shape_of(input)}, weight {w_shape}, stride {stride})")
    if any(pads):
        out = out[(slice(None), slice(None)) + tuple(slice(p, p + m) for p, m in zip(pads, out_size))]
    if bias is not None:
        out = out + fnp.reshape(bias, (-1,) + (1,) * n)
    return out[0] if unbatched else out


def _scatter_windows(x, weight, groups, full, stride, dilation):
    """``out[b, o, *(p stride + k dilation)] += sum_c x[b, c, *p] weight[c, o, *k]`` within each
    group: the adjoint of :func:`_convolve`, one batched GEMM and one ``col2im``.

    The product is made channels-last, ``(G, N * prod(in), prod(kernel) * O/G)``, so that
    ``col2im`` reads contiguous runs of channels; its reverse pass takes the windows in the same
    order as :func:`_convolve` does.
    """
    n = len(stride)
    s, w_shape = shape_of(x), shape_of(weight)
    kernel, out_per_group = w_shape[2:], w_shape[1]
    x = fnp.reshape(x, (s[0], groups, s[1] // groups) + s[2:])
    x = fnp.transpose(x, (1, 0) + tuple(range(3, 3 + n)) + (2,))            # (G, N, *in, C/G)
    x = fnp.reshape(x, (groups, s[0] * math.prod(s[2:]), s[1] // groups))
    weight = fnp.reshape(weight, (groups, s[1] // groups) + w_shape[1:])     # (G, C/G, O/G, *k)
    weight = fnp.transpose(weight, (0, 1) + tuple(range(3, 3 + n)) + (2,))   # (G, C/G, *k, O/G)
    weight = fnp.reshape(weight, (groups, s[1] // groups, -1))
    cols = dot_general(x, weight, (((2,), (1,)), ((0,), (0,))))            # (G, rows, k O/G)
    cols = fnp.reshape(cols, (groups, s[0]) + s[2:] + kernel + (out_per_group,))
    cols = fnp.transpose(cols, (1, 0, 2 + 2 * n) + tuple(range(2, 2 + 2 * n)))
    out = col2im(cols, full, stride, dilation)                   # (N, G, O/G, *full)
    return fnp.reshape(out, (s[0], groups * out_per_group) + full)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """1-d transposed convolution; see :func:`conv_transpose2d`."""
    return _conv_transposend(1, "conv_transpose1d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-d transposed convolution ("deconvolution"), the adjoint of :func:`conv2d`.

    input ``(N, C_in, H, W)``, weight ``(C_in, C_out / groups, kH, kW)`` (torch's layout),
    bias ``(C_out,)``. Output size per axis:
    ``(H - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1``; ``output_padding``
    (smaller than stride or dilation) adds rows at the end to pick between the input sizes that
    a strided ``conv2d`` maps to the same output size.
    """
    return _conv_transposend(2, "conv_transpose2d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """3-d transposed convolution; see :func:`conv_transpose2d`."""
    return _conv_transposend(3, "conv_transpose3d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


# --------------------------------------------------------------------------------------------
# unfold / fold: im2col and col2im in torch's (N, C * prod(kernel), L) layout
# --------------------------------------------------------------------------------------------

def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding blocks of a batched 4-d input ``(N, C, H, W)`` as ``(N, C kH kW, L)`` (im2col);
    ``L`` counts the block positions in row-major order."""
    fname = "fnn.functional.unfold"
    x, unbatched = _batched(fname, input, 2)
    kernel = ntuple(fname, "kernel_size", kernel_size, 2)
    dilation = ntuple(fname, "dilation", dilation, 2)
    stride = ntuple(fname, "stride", stride, 2)
    pads = ntuple(fname, "padding", padding, 2)
    if any(pads):
        x = fnp.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pads))
    cols = conv_windows(x, kernel, stride, dilation)                # (N, C, oH, oW, kH, kW)
    n, c, oh, ow, kh, kw = shape_of(cols)
    out = fnp.reshape(fnp.transpose(cols, (0, 1, 4, 5, 2, 3)), (n, c * kh * kw, oh * ow))
    return out[0] if unbatched else out


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Add sliding blocks ``(N, C kH kW, L)`` back into ``(N, C, *output_size)`` (col2im); the
    adjoint of :func:`unfold`, so overlapping blocks are summed."""
    fname = "fnn.functional.fold"
    s = shape_of(input)
    unbatched = len(s) == 2
    if len(s) not in (2, 3):
        raise ValueError(f"{fname}: expected a 3-d input (N, C * kH * kW, L) or an unbatched 2-d "
                         f"input, got shape {s}")
    x = fnp.expand_dims(input, 0) if unbatched else input
    size = ntuple(fname, "output_size", output_size, 2)
    kernel = ntuple(fname, "kernel_size", kernel_size, 2)
    dilation = ntuple(fname, "dilation", dilation, 2)
    stride = ntuple(fname, "stride", stride, 2)
    pads = ntuple(fname, "padding", padding, 2)
    padded = tuple(m + 2 * p for m, p in zip(size, pads))
    blocks = windows_out_shape(padded, kernel, stride, dilation)
    n, ckk, length = shape_of(x)
    if ckk % (kernel[0] * kernel[1]) or length != blocks[0] * blocks[1]:
        raise ValueError(f"{fname}: input of shape {s} does not hold (C * {kernel[0] * kernel[1]}) "
                         f"values for each of the {blocks[0] * blocks[1]} blocks {blocks} of "
                         f"output_size {size} (kernel {kernel}, padding {pads}, stride {stride}, "
                         f"dilation {dilation})")
    c = ckk // (kernel[0] * kernel[1])
    cols = fnp.transpose(fnp.reshape(x, (n, c) + kernel + blocks), (0, 1, 4, 5, 2, 3))
    out = col2im(cols, padded, stride, dilation)
    out = out[:, :, pads[0]:pads[0] + size[0], pads[1]:pads[1] + size[1]]
    return out[0] if unbatched else out
