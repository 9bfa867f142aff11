"""``fgrad.numpy.fft``: NumPy's discrete Fourier transforms, differentiable and batchable.

Same names, arguments and results as ``numpy.fft`` (``n``/``s`` crop or zero-pad the input,
``axis``/``axes``, ``norm`` in ``"backward"``, ``"ortho"``, ``"forward"``; float32 stays
single precision, as NumPy 2). Every transform crops or pads its input with fgrad shape ops
and then binds the one ``fft`` primitive of ``fgrad/primitives/fft.py`` (kind ``fft``,
``ifft``, ``rfft`` or ``irfft`` over all the axes at once), whose JVP, VJP and batching rules
hold the math; ``fftshift``/``ifftshift`` are rolls.

Derivatives follow JAX's complex convention (``fgrad/primitives/complex.py``): for a real loss
``L`` of a complex spectrum, ``grad`` returns ``dL/dx - i dL/dy``, the conjugate of torch's::

    >>> import numpy as np, fgrad, fgrad.numpy as fnp
    >>> power = lambda x: fnp.sum(fnp.abs(fnp.fft.rfft(x)) ** 2)   # real in, real out
    >>> fgrad.grad(power)(np.arange(4.0))                        # torch.func.grad agrees
    >>> fgrad.vmap(fgrad.grad(power))(np.ones((3, 8))).shape
    (3, 8)
"""
from __future__ import annotations

import numpy as np

from ..core import Tracer, dtype_of, shape_of
from ..primitives import fft as _fft
from ._funcs import _arr, _axis, astype, divide, pad, roll

__all__ = ["fft", "ifft", "rfft", "irfft", "hfft", "ihfft", "fft2", "ifft2", "rfft2", "irfft2",
           "fftn", "ifftn", "rfftn", "irfftn", "fftshift", "ifftshift", "fftfreq", "rfftfreq"]


def _name(fn):
    return f"fgrad.numpy.fft.{fn}"


def _norm(norm, fn):
    if norm is None:
        return "backward"
    if norm not in _fft.NORMS:
        raise ValueError(f"{_name(fn)}: invalid norm {norm!r}; use None, 'backward', 'ortho' or "
                         f"'forward' (as NumPy)")
    return norm


def _size(n, fn):
    if isinstance(n, Tracer) or int(n) != n:
        raise TypeError(f"{_name(fn)}: transform sizes must be static ints, got {n!r}")
    if n < 1:
        raise ValueError(f"{_name(fn)}: invalid number of FFT data points ({n}); sizes must be "
                         f"at least 1")
    return int(n)


def _cook_nd_args(a, s, axes, fn, inverse_real):
    """``(sizes, axes)`` as ``numpy.fft``'s n-d functions read ``s`` and ``axes``."""
    nd = len(shape_of(a))
    shape = shape_of(a)
    if axes is not None:
        axes = [_axis(ax, nd, f"fft.{fn}") for ax in ((axes,) if isinstance(axes, int) else axes)]
    if s is None:
        axes = list(range(nd)) if axes is None else axes
        s = [shape[ax] for ax in axes]
        if inverse_real and axes:
            s[-1] = 2 * (shape[axes[-1]] - 1)   # the default output of a half spectrum
    else:
        s = list(s)
        if axes is None:   # NumPy: the last len(s) axes
            if len(s) > nd:
                raise ValueError(f"{_name(fn)}: s={tuple(s)} has more entries than the input has "
                                 f"axes (shape {shape})")
            axes = list(range(nd - len(s), nd))
        if len(s) != len(axes):
            raise ValueError(f"{_name(fn)}: s={tuple(s)} and axes={tuple(axes)} have different "
                             f"lengths (shape and axes have different lengths, as NumPy says)")
        s = [shape[ax] if not isinstance(n, Tracer) and n == -1 else n for n, ax in zip(s, axes)]
    return [_size(n, fn) for n in s], axes


def _fit_axis(a, axis, n):
    """``a`` cropped or zero-padded at the end of ``axis`` to size ``n`` (NumPy's ``n``/``s``)."""
    have = shape_of(a)[axis]
    if have > n:
        return a[(slice(None),) * axis + (slice(0, n),)]
    if have < n:
        widths = [(0, 0)] * len(shape_of(a))
        widths[axis] = (0, n - have)
        return pad(a, widths)
    return a


def _transform(kind, a, s, axes, norm, fn):
    """The n-d transform ``kind`` over ``axes`` with sizes ``s`` (NumPy's fftn & co.)."""
    a = _arr(a)
    norm = _norm(norm, fn)
    s, axes = _cook_nd_args(a, s, axes, fn, inverse_real=kind == "irfft")
    if kind == "rfft" and dtype_of(a).kind == "c":
        raise TypeError(f"{_name(fn)}: the input must be real, got {dtype_of(a).name} of shape "
                        f"{shape_of(a)}; use fft/fftn for complex input (NumPy raises too)")
    if not axes:
        if kind in ("rfft", "irfft"):
            raise ValueError(f"{_name(fn)}: a real transform needs at least one axis")
        return a   # NumPy returns the input as it is
    if len(set(axes)) != len(axes):
        return _sequential(kind, a, s, axes, norm, fn)
    if kind == "irfft" and dtype_of(a).kind != "c":
        a = astype(a, np.result_type(dtype_of(a), 1j))   # a real half spectrum (JAX converts too)
    half = kind == "irfft"
    for i, (ax, n) in enumerate(zip(axes, s)):
        a = _fit_axis(a, ax, n // 2 + 1 if half and i == len(axes) - 1 else n)
    return _fft.fft(a, kind, axes, s, norm)


def _sequential(kind, a, s, axes, norm, fn):
    """Repeated axes: one 1-d transform after the other, in NumPy's order."""
    one_d = {"fft": fft, "ifft": ifft, "rfft": rfft, "irfft": irfft}
    if kind in ("fft", "ifft"):
        for ax, n in reversed(list(zip(axes, s))):
            a = one_d[kind](a, n, ax, norm)
        return a
    if kind == "rfft":
        a = rfft(a, s[-1], axes[-1], norm)
        for ax, n in zip(axes[:-1], s[:-1]):
            a = fft(a, n, ax, norm)
        return a
    for ax, n in zip(axes[:-1], s[:-1]):
        a = ifft(a, n, ax, norm)
    return irfft(a, s[-1], axes[-1], norm)


def _one_axis(kind, fn):
    def transform(a, n=None, axis=-1, norm=None):
        return _transform(kind, a, None if n is None else [n], [axis], norm, fn)
    transform.__name__ = transform.__qualname__ = fn
    return transform


def _many_axes(kind, fn, default_axes):
    def transform(a, s=None, axes=default_axes, norm=None):
        return _transform(kind, a, s, axes, norm, fn)
    transform.__name__ = transform.__qualname__ = fn
    return transform


fft = _one_axis("fft", "fft")
fft.__doc__ = "The 1-d discrete Fourier transform along ``axis`` (``n`` crops or zero-pads)."
ifft = _one_axis("ifft", "ifft")
ifft.__doc__ = "The inverse of :func:`fft`."
rfft = _one_axis("rfft", "rfft")
rfft.__doc__ = ("The transform of a real input: the ``n // 2 + 1`` non-negative frequencies (the "
                "others are their conjugates).")
irfft = _one_axis("irfft", "irfft")
irfft.__doc__ = ("The inverse of :func:`rfft`: a real signal of length ``n`` (default "
                 "``2 * (m - 1)``) from a half spectrum of ``m`` entries.")

fft2 = _many_axes("fft", "fft2", (-2, -1))
fft2.__doc__ = "The 2-d transform over ``axes`` (the last two by default)."
ifft2 = _many_axes("ifft", "ifft2", (-2, -1))
ifft2.__doc__ = "The inverse of :func:`fft2`."
rfft2 = _many_axes("rfft", "rfft2", (-2, -1))
rfft2.__doc__ = "The 2-d transform of a real input, halved along the last axis."
irfft2 = _many_axes("irfft", "irfft2", (-2, -1))
irfft2.__doc__ = "The inverse of :func:`rfft2`."
fftn = _many_axes("fft", "fftn", None)
fftn.__doc__ = "The n-d transform over ``axes`` (all by default; ``s`` gives their sizes)."
ifftn = _many_axes("ifft", "ifftn", None)
ifftn.__doc__ = "The inverse of :func:`fftn`."
rfftn = _many_axes("rfft", "rfftn", None)
rfftn.__doc__ = "The n-d transform of a real input, halved along the last of ``axes``."
irfftn = _many_axes("irfft", "irfftn", None)
irfftn.__doc__ = "The inverse of :func:`rfftn`."


def hfft(a, n=None, axis=-1, norm=None):
    """The transform of a Hermitian-symmetric signal given by its first half (a real
    spectrum): ``irfft(conj(a), n)`` with the opposite norm, as NumPy computes it."""
    from ._funcs import conj
    return irfft(conj(_arr(a)), n, axis, _fft.DUAL_NORM[_norm(norm, "hfft")])


def ihfft(a, n=None, axis=-1, norm=None):
    """The inverse of :func:`hfft`: ``conj(rfft(a, n))`` with the opposite norm."""
    from ._funcs import conj
    return conj(rfft(a, n, axis, _fft.DUAL_NORM[_norm(norm, "ihfft")]))


def _shift(x, axes, sign, fn):
    x = _arr(x)
    shape = shape_of(x)
    if axes is None:
        axes = tuple(range(len(shape)))
    elif isinstance(axes, int):
        axes = (axes,)
    axes = tuple(_axis(ax, len(shape), f"fft.{fn}") for ax in axes)
    return roll(x, [sign * (shape[ax] // 2) for ax in axes], axes) if axes else x


def fftshift(x, axes=None):
    """Move the zero frequency to the middle: a roll by ``n // 2`` along ``axes`` (all)."""
    return _shift(x, axes, 1, "fftshift")


def ifftshift(x, axes=None):
    """The inverse of :func:`fftshift`: a roll by ``-(n // 2)``."""
    return _shift(x, axes, -1, "ifftshift")


def fftfreq(n, d=1.0):
    """The sample frequencies ``[0, 1, ..., -1] / (d n)`` of an ``n``-point transform (a
    constant; a traced ``d`` divides it)."""
    if isinstance(d, Tracer):
        return divide(np.fft.fftfreq(n, 1.0), d)
    return np.fft.fftfreq(n, d)


def rfftfreq(n, d=1.0):
    """The non-negative sample frequencies ``[0, 1, ..., n // 2] / (d n)`` of :func:`rfft`."""
    if isinstance(d, Tracer):
        return divide(np.fft.rfftfreq(n, 1.0), d)
    return np.fft.rfftfreq(n, d)

