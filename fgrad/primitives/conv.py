"""Sliding windows for convolution and pooling: ``conv_windows`` (im2col) and ``col2im``.

Every convolution, transposed convolution and pooling layer in ``fnn.functional`` is written
on these two linear primitives plus ordinary fgrad ops, so their derivatives need no rules of
their own:

* ``conv_windows(x, window_shape, strides, dilation)`` acts on the last ``n`` axes of ``x``
  (the spatial axes; every axis before them is a batch axis) and returns an array of shape
  ``(..., *out_spatial, *window_shape)``: entry ``[..., o, k]`` is
  ``x[..., o * stride + k * dilation]``, per spatial axis. It is a strided *view* made by
  ``np.lib.stride_tricks.sliding_window_view``, so it costs no copy; the copy (im2col proper)
  happens once, inside the ``dot_general`` that contracts the windows with a kernel.
  Convolution is ``tensordot(windows, kernel)`` over ``(channels, *window)``, max pooling is
  ``max`` over the window axes, average pooling is ``sum``.
* ``col2im(cols, spatial_shape, strides, dilation)`` is its adjoint: it adds every window back
  where it came from (``out[..., o * stride + k * dilation] += cols[..., o, k]``), in a loop
  over the ``prod(window_shape)`` kernel offsets that adds one strided slice each; never a loop
  over pixels. Transposed convolution is ``col2im`` of ``tensordot(x, kernel)``.

Both are linear, so each JVP applies the primitive to the tangent and each VJP applies the
other primitive to the cotangent: ``<windows(x), c> = <x, col2im(c)>``. Leading axes are batch
axes already, so the batching rule only makes sure the mapped axis is one of them.
"""
from __future__ import annotations

import numpy as np

from ..core import Primitive, dtype_of, shape_of
from ..jvp import defjvp
from ..staging import ShapedArray
from ..vmap import move_axis

__all__ = ["conv_windows_p", "col2im_p", "conv_windows", "col2im", "windows_out_shape"]


def _span(window_shape, dilation):
    """Extent of a dilated window: ``dilation * (k - 1) + 1`` per axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(window_shape, dilation))


def windows_out_shape(spatial_shape, window_shape, strides, dilation):
    """Number of window positions per spatial axis: ``(size - span) // stride + 1``."""
    return tuple((n - s) // st + 1
                 for n, s, st in zip(spatial_shape, _span(window_shape, dilation), strides))


# --- conv_windows: x (..., *spatial) -> (..., *out_spatial, *window) ----------------------------

def _conv_windows_impl(x, *, window_shape, strides, dilation):
    x = np.asarray(x)
    n = len(window_shape)
    spatial_axes = tuple(range(x.ndim - n, x.ndim))
    view = np.lib.stride_tricks.sliding_window_view(x, _span(window_shape, dilation), axis=spatial_axes)
    # every stride-th window start, every dilation-th element inside a window
    return view[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)
                + tuple(slice(None, None, d) for d in dilation)]


conv_windows_p = Primitive("conv_windows", _conv_windows_impl)


# --- col2im: cols (..., *out_spatial, *window) -> (..., *spatial), the adjoint -------------------

def _col2im_impl(cols, *, spatial_shape, strides, dilation):
    cols = np.asarray(cols)
    n = len(spatial_shape)
    lead = cols.shape[:cols.ndim - 2 * n]
    out_spatial, window_shape = cols.shape[cols.ndim - 2 * n:cols.ndim - n], cols.shape[cols.ndim - n:]
    out = np.zeros(lead + tuple(spatial_shape), dtype=cols.dtype)
    if 0 in out_spatial:
        return out
    for offset in np.ndindex(*window_shape):   # one strided slice per kernel offset
        target = tuple(slice(k * d, k * d + s * (m - 1) + 1, s)
                       for k, d, s, m in zip(offset, dilation, strides, out_spatial))
        out[(Ellipsis,) + target] += cols[(Ellipsis,) + (slice(None),) * n + offset]
    return out


col2im_p = Primitive("col2im", _col2im_impl)


# --- rules: each primitive is linear and the other's adjoint ------------------------------------

defjvp(conv_windows_p, lambda x_dot, ans, x, **params: conv_windows_p.bind(x_dot, **params))
# <windows(x), c> = <x, col2im(c)>:  x_bar = col2im(g)
conv_windows_p.vjp = (lambda g, ans, x, *, window_shape, strides, dilation: col2im_p.bind(
    g, spatial_shape=shape_of(x)[len(shape_of(x)) - len(window_shape):], strides=strides,
    dilation=dilation),)

defjvp(col2im_p, lambda c_dot, ans, cols, **params: col2im_p.bind(c_dot, **params))
# the adjoint of col2im is windows again:  cols_bar = windows(g)
col2im_p.vjp = (lambda g, ans, cols, *, spatial_shape, strides, dilation: conv_windows_p.bind(
    g, window_shape=shape_of(cols)[len(shape_of(cols)) - len(spatial_shape):], strides=strides,
    dilation=dilation),)


def _leading_axes_batch(prim, n_trailing):
    """Batching for a primitive whose last ``n_trailing(params)`` axes are the ones it acts on."""
    def rule(vals, dims, **params):
        (x,), (d,) = vals, dims
        if d >= len(shape_of(x)) - n_trailing(params):   # mapped axis among the acted-on axes
            x, d = move_axis(x, d, 0), 0
        return prim.bind(x, **params), d
    prim.batch = rule


_leading_axes_batch(conv_windows_p, lambda params: len(params["window_shape"]))
_leading_axes_batch(col2im_p, lambda params: 2 * len(params["spatial_shape"]))


# --- shape rules (staging) -------------------------------------------------------------------------

def _conv_windows_abstract_eval(x, *, window_shape, strides, dilation):
    shape, n = shape_of(x), len(window_shape)   # (..., *spatial) -> (..., *out_spatial, *window)
    out = windows_out_shape(shape[len(shape) - n:], window_shape, strides, dilation)
    return ShapedArray(shape[:len(shape) - n] + tuple(out) + tuple(window_shape), dtype_of(x))


def _col2im_abstract_eval(cols, *, spatial_shape, strides, dilation):
    shape = shape_of(cols)                       # (..., *out_spatial, *window) -> (..., *spatial)
    return ShapedArray(shape[:len(shape) - 2 * len(spatial_shape)] + tuple(spatial_shape),
                       dtype_of(cols))


conv_windows_p.abstract_eval = _conv_windows_abstract_eval
col2im_p.abstract_eval = _col2im_abstract_eval


# --- the functions other modules call ----------------------------------------------------------

def _positive_tuple(name, what, values, n):
    values = tuple(int(v) for v in values)
    if len(values) != n or any(v < 1 for v in values):
        raise ValueError(f"{name}: {what} must be {n} positive integers, got {values}")
    return values


def conv_windows(x, window_shape, strides=None, dilation=None):
    """Sliding windows over the last ``len(window_shape)`` axes of ``x`` (a view, no copy).

    Returns ``(..., *out_spatial, *window_shape)`` with
    ``out[..., o, k] = x[..., o * strides + k * dilation]`` per spatial axis and
    ``out_spatial = (size - dilation * (window - 1) - 1) // strides + 1``. Pad ``x`` first for
    padded convolutions. Outside transforms the result is a read-only NumPy view.
    """
    n = len(window_shape)
    window_shape = _positive_tuple("conv_windows", "window_shape", window_shape, n)
    strides = _positive_tuple("conv_windows", "strides", strides or (1,) * n, n)
    dilation = _positive_tuple("conv_windows", "dilation", dilation or (1,) * n, n)
    if len(shape_of(x)) < n:
        raise ValueError(f"conv_windows: an input of shape {shape_of(x)} has fewer than {n} axes "
                         f"for windows of shape {window_shape}")
    spatial = shape_of(x)[len(shape_of(x)) - n:]
    if any(m < s for m, s in zip(spatial, _span(window_shape, dilation))):
        raise ValueError(f"conv_windows: windows of shape {window_shape} with dilation {dilation} "
                         f"(span {_span(window_shape, dilation)}) do not fit the spatial shape "
                         f"{spatial} of an input of shape {shape_of(x)}")
    return conv_windows_p.bind(x, window_shape=window_shape, strides=strides, dilation=dilation)


def col2im(cols, spatial_shape, strides=None, dilation=None):
    """Add windows ``(..., *out_spatial, *window)`` back into an array ``(..., *spatial_shape)``.

    The adjoint of :func:`conv_windows`: overlapping windows accumulate. ``spatial_shape`` must
    be one whose windows are exactly ``out_spatial`` (trailing rows that no window reaches are
    allowed and stay zero).
    """
    n = len(spatial_shape)
    spatial_shape = tuple(int(s) for s in spatial_shape)
    strides = _positive_tuple("col2im", "strides", strides or (1,) * n, n)
    dilation = _positive_tuple("col2im", "dilation", dilation or (1,) * n, n)
    s = shape_of(cols)
    out_spatial, window_shape = s[len(s) - 2 * n:len(s) - n], s[len(s) - n:]
    if len(s) < 2 * n or windows_out_shape(spatial_shape, window_shape, strides, dilation) != out_spatial:
        raise ValueError(f"col2im: windows of shape {s} (positions {out_spatial}, window "
                         f"{window_shape}) do not tile a spatial shape {spatial_shape} with strides "
                         f"{strides} and dilation {dilation}")
    return col2im_p.bind(cols, spatial_shape=spatial_shape, strides=strides, dilation=dilation)

