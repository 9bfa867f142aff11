"""The discrete Fourier transform: one primitive for NumPy's four kinds over any set of axes.

``fft_p.bind(x, kind=..., axes=..., lengths=..., norm=...)`` (as ``lax.fft``'s ``fft_type`` and
``fft_lengths``, plus NumPy's ``norm``):

* ``kind``: ``"fft"``/``"ifft"`` (complex to complex), ``"rfft"`` (real to the half spectrum)
  or ``"irfft"`` (half spectrum to real), computed as ``numpy.fft.fftn`` / ``ifftn`` /
  ``rfftn`` / ``irfftn``;
* ``axes``: distinct non-negative axes, transformed together; the Hermitian half is along
  the last of them;
* ``lengths``: the transform size ``N_a`` along each axis (NumPy's ``s``). ``fgrad.numpy.fft``
  has already cropped or zero-padded the input to it, so the input's size along each axis
  *is* ``N_a``, except along the last axis of ``irfft``, which holds the ``N // 2 + 1``
  entries of a half spectrum (``lengths`` says which ``N`` it came from: odd or even);
* ``norm``: ``"backward"`` (the forward transform unscaled, the inverse by ``1/N``),
  ``"ortho"`` (both by ``1/sqrt(N)``) or ``"forward"`` (the forward transform by ``1/N``).

The math of the rules. All four transforms are R-linear, so each JVP is the transform of the
tangent. The VJPs are their transposes under fgrad's bilinear pairing ``Re(sum(u * v))``
(JAX's convention, ``fgrad/primitives/complex.py``). With ``F_jk = exp(-2 pi i jk / N)``:

* ``fft``/``ifft``: ``F`` is symmetric (``F^T = F``, and ``conj(F)`` too), so each transform is
  its own transpose: the VJP is the same transform, same norm, of the cotangent.
* ``rfft``: ``y = c (F x)[:m]`` for real ``x`` (``m = N//2 + 1``), so ``x_bar = Re(c F^T t)``
  restricted to the kept frequencies. ``irfft`` rebuilds a full spectrum from a half one by
  Hermitian symmetry, counting every frequency except DC and Nyquist twice, and drops the
  imaginary part of those two; so ``x_bar = irfft(conj(t) / mask)`` with ``mask = 1`` at DC
  (and Nyquist for even ``N``), 2 elsewhere, and the *dual* norm (backward <-> forward, ortho
  stays), whose scale is the forward transform's.
* ``irfft``: the transpose of the above: ``Y_bar = mask * conj(rfft(t))`` with the dual norm
  (the mask: the Hermitian twins of each kept frequency add up in the output).

Several axes compose: the other axes are complex transforms (their own transposes, applied
before or after the half-spectrum axis), so the same two formulas hold with ``rfftn`` and
``irfftn`` and the mask along the last axis only (JAX's ``_rfft_transpose`` /
``_irfft_transpose``).
"""
from __future__ import annotations

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of, shape_of
from ..staging import ShapedArray
from ..vmap import move_axis

KINDS = ("fft", "ifft", "rfft", "irfft")
NORMS = ("backward", "ortho", "forward")
#: The norm whose scale is the other direction's: the transposes of rfft and irfft use it.
DUAL_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}

_NUMPY = {"fft": np.fft.fftn, "ifft": np.fft.ifftn, "rfft": np.fft.rfftn, "irfft": np.fft.irfftn}


def _fft_impl(x, *, kind, axes, lengths, norm):
    return _NUMPY[kind](x, s=lengths, axes=axes, norm=norm)


fft_p = Primitive("fft", _fft_impl)


def fft(x, kind, axes, lengths, norm):
    return fft_p.bind(x, kind=kind, axes=tuple(axes), lengths=tuple(lengths), norm=norm)


def _half_spectrum_mask(ndim, axes, lengths, dtype):
    """1 at DC (and Nyquist when N is even), 2 elsewhere, along the last transformed axis,
    shaped to broadcast against a half spectrum of ``ndim`` axes, in the real ``dtype``."""
    n = lengths[-1]
    mask = np.full(n // 2 + 1, 2.0, dtype)
    mask[0] = 1.0
    if n % 2 == 0:
        mask[-1] = 1.0
    shape = [1] * ndim
    shape[axes[-1]] = n // 2 + 1
    return mask.reshape(shape)


def _real_dtype(x):
    return np.finfo(dtype_of(x)).dtype


# linear in x:  d fft(x) = fft(dx), for every kind
fft_p.jvp = lambda primals, tangents, **params: (fft_p.bind(primals[0], **params),
                                                 fft_p.bind(tangents[0], **params))


def _fft_vjp(g, ans, x, *, kind, axes, lengths, norm):
    if kind in ("fft", "ifft"):   # F^T = F:  x_bar = fft(g), the same kind and norm
        return fft(g, kind, axes, lengths, norm)
    mask = _half_spectrum_mask(len(shape_of(g)), axes, lengths, _real_dtype(g))
    if kind == "rfft":            # x_bar = irfft(conj(g) / mask), dual norm
        return fft(fnp.conj(g) / mask, "irfft", axes, lengths, DUAL_NORM[norm])
    # irfft:  Y_bar = mask * conj(rfft(g)), dual norm
    return mask * fnp.conj(fft(g, "rfft", axes, lengths, DUAL_NORM[norm]))


fft_p.vjp = (_fft_vjp,)


def _fft_batch(vals, dims, *, kind, axes, lengths, norm):
    (x,), (d,) = vals, dims   # the batch axis goes first; the transformed axes move up by one
    return fft(move_axis(x, d, 0), kind, [a + 1 for a in axes], lengths, norm), 0


fft_p.batch = _fft_batch


def _fft_abstract_eval(x, *, kind, axes, lengths, norm):
    shape = list(shape_of(x))
    if kind == "irfft":
        shape[axes[-1]] = lengths[-1]
        return ShapedArray(tuple(shape), _real_dtype(x))
    if kind == "rfft":
        shape[axes[-1]] = lengths[-1] // 2 + 1
    return ShapedArray(tuple(shape), np.result_type(dtype_of(x), 1j))


fft_p.abstract_eval = _fft_abstract_eval
