"""``fgrad.numpy.fft`` in every transform: a table of transforms checked against ``torch.fft``
under ``torch.func`` and against finite differences, with the checks of ``tests/test_complex.py``
(forward against NumPy; jvp against torch and central differences; vjp against torch's,
conjugated, and through the adjoint identity; grad of a real loss; second order; vmap; jit;
the holomorphic Jacobians of the complex-to-complex transforms).

A row draws its operands *and* its static arguments (``n``/``s``, ``axis``/``axes``,
``norm``): shapes with size-0 batch axes, sizes that crop and that zero-pad, odd and even
lengths (the Hermitian halving of ``rfft``/``irfft`` keeps the Nyquist entry only for even
ones), every norm. ``irfft`` gets arbitrary complex input, whose DC (and Nyquist) imaginary
parts it ignores, so its VJP's mask is checked where it matters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp
from test_complex import (Row, check_forward, check_grad, check_holomorphic, check_jit,
                          check_jvp, check_second_order, check_vjp, check_vmap, cnormal, rnormal)

NORMS = st.sampled_from([None, "backward", "ortho", "forward"])


@dataclass(frozen=True)
class FFTRow:
    """A transform and a strategy drawing ``(operands, kwargs)``; ``kwargs`` use NumPy's names
    and ``torch_fn`` takes them too (it renames ``axis``/``axes`` to ``dim``)."""
    name: str
    fn: Callable
    ref: Callable
    torch_fn: Callable
    draw: st.SearchStrategy
    holomorphic: bool = False

    def bound(self, kwargs):
        """This row with its static arguments fixed: a :class:`Row` of the shared checks."""
        def fix(f):
            def call(*a):
                return f(*a, **kwargs)
            return call
        return Row(f"{self.name}{kwargs}", fix(self.fn), fix(self.ref), fix(self.torch_fn),
                   st.nothing(), self.holomorphic)


# --- drawing shapes and arguments ---------------------------------------------------------------

@st.composite
def one_axis(draw, domain, inverse_real=False):
    """One operand and ``n``, ``axis``, ``norm`` for the 1-d transforms."""
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = draw(st.none() | st.integers(1, 7))
    if n is None:   # the default length must be at least 1 (irfft: 2 (m - 1) with m >= 2)
        shape[axis] = max(shape[axis], 2 if inverse_real else 1)
    return [(domain, tuple(shape))], dict(n=n, axis=axis, norm=draw(NORMS))


@st.composite
def many_axes(draw, domain, inverse_real=False, pair=False):
    """One operand and ``s``, ``axes``, ``norm`` for the 2-d (``pair``) and n-d transforms."""
    shape = list(draw(hnp.array_shapes(min_dims=2 if pair else 1, max_dims=3, min_side=0,
                                       max_side=4)))
    nd = len(shape)
    if pair:
        axes = draw(st.sampled_from([(-2, -1), (0, -1), (-1, 0)] + ([(1, 2), (2, 0)] if nd == 3 else [])))
    else:
        axes = draw(st.none() | st.permutations(range(nd)).flatmap(
            lambda p: st.integers(1, nd).map(lambda k: tuple(p[:k]))))
    listed = list(range(nd)) if axes is None else [a % nd for a in axes]
    s = None
    if axes is not None and draw(st.booleans()):
        s = tuple(draw(st.integers(1, 6)) for _ in listed)
    if s is None:
        for a in listed:
            shape[a] = max(shape[a], 1)
        if inverse_real:
            shape[listed[-1]] = max(shape[listed[-1]], 2)
    kwargs = dict(s=s, norm=draw(NORMS))
    if not (pair and axes == (-2, -1) and draw(st.booleans())):   # sometimes the default
        kwargs["axes"] = axes
    return [(domain, tuple(shape))], kwargs


@st.composite
def shift_args(draw, domain):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    axes = draw(st.none() | st.integers(-len(shape), len(shape) - 1)
                | st.permutations(range(len(shape))).map(lambda p: tuple(p[:2])))
    return [(domain, shape)], dict(axes=axes)


# --- torch with NumPy's argument names -----------------------------------------------------------

def _empty_safe(name, call):
    """``call``, except on an empty input: torch's MKL transforms raise on empty batches
    (``DFTI ERROR: Inconsistent configuration parameters``), so there the (empty) result is
    made from NumPy's shape and dtype, still connected to ``x`` for torch's autograd."""
    def safe(x, **kwargs):
        if x.numel() != 0:
            return call(x, **kwargs)
        out = getattr(np.fft, name)(np.zeros(x.shape, _NUMPY_DTYPE[x.dtype]), **kwargs)
        link = 0 * x.sum()
        if link.is_complex() and out.dtype.kind != "c":
            link = link.real
        return torch.zeros(out.shape, dtype=_TORCH_DTYPE[out.dtype]) + link
    return safe


_NUMPY_DTYPE = {torch.float64: np.float64, torch.complex128: np.complex128,
                torch.float32: np.float32, torch.complex64: np.complex64}
_TORCH_DTYPE = {np.dtype(v): k for k, v in _NUMPY_DTYPE.items()}


def _torch_1d(name):
    def call(x, n=None, axis=-1, norm=None):
        return getattr(torch.fft, name)(x, n=n, dim=axis, norm=norm)
    return _empty_safe(name, call)


def _torch_nd(name, default_axes=None):
    def call(x, s=None, axes=default_axes, norm=None):
        return getattr(torch.fft, name)(x, s=s, dim=axes, norm=norm)
    return _empty_safe(name, call)


def _torch_shift(name):
    def call(x, axes=None):
        return getattr(torch.fft, name)(x, dim=axes)
    return call


def _row(label, name, torch_fn, operands, holomorphic=False):
    """A row for the function ``name`` of fgrad.numpy.fft and numpy.fft."""
    return FFTRow(label, getattr(fnp.fft, name), getattr(np.fft, name), torch_fn, operands, holomorphic)


def _repeated_fftn(xp_fft):
    """``fftn`` over a repeated axis: NumPy applies the 1-d transform twice."""
    def call(x, norm=None):
        return xp_fft.fftn(x, axes=(0, 0), norm=norm)
    return call


def _torch_repeated_fftn(x, norm=None):
    return torch.fft.fft(torch.fft.fft(x, dim=0, norm=norm), dim=0, norm=norm)


def _repeated_real(xp_fft, name):
    """``rfftn``/``irfftn`` over axes (-1, -1): NumPy's two 1-d transforms in a row."""
    def call(x, norm=None):
        return getattr(xp_fft, name)(x, axes=(-1, -1), norm=norm)
    return call


def _torch_repeated_rfftn(x, norm=None):
    # NumPy's s is (n, n): rfft along the last axis, then an n-point fft along it (a crop or pad)
    half = _torch_1d("rfft")(x, axis=-1, norm=norm)
    return _torch_1d("fft")(half, n=x.shape[-1], axis=-1, norm=norm)


def _torch_repeated_irfftn(x, norm=None):     # ifft along the last axis, then irfft along it
    return _torch_1d("irfft")(_torch_1d("ifft")(x, axis=-1, norm=norm), axis=-1, norm=norm)


REPEATED_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4).map(
    lambda s: s[:-1] + (max(s[-1], 2),))


def _power_spectrum(xp):        # a real loss of a real signal through rfft: |X_k|^2
    def call(x, n=None, axis=-1, norm=None):
        return xp.abs(xp.fft.rfft(x, n=n, axis=axis, norm=norm)) ** 2
    return call


def _torch_power_spectrum(x, n=None, axis=-1, norm=None):
    return _torch_1d("rfft")(x, n=n, axis=axis, norm=norm).abs() ** 2


def _circular_convolution(xp):  # irfft(rfft(a) rfft(b)): real in, real out, two operands
    def call(a, b):
        n = a.shape[-1]
        return xp.fft.irfft(xp.fft.rfft(a) * xp.fft.rfft(b), n=n)
    return call


def _torch_circular_convolution(a, b):
    return torch.fft.irfft(torch.fft.rfft(a) * torch.fft.rfft(b), n=a.shape[-1])


ROWS = [
    _row("fft", "fft", _torch_1d("fft"), one_axis(cnormal), holomorphic=True),
    _row("fft_of_real", "fft", _torch_1d("fft"), one_axis(rnormal)),
    _row("ifft", "ifft", _torch_1d("ifft"), one_axis(cnormal), holomorphic=True),
    _row("rfft", "rfft", _torch_1d("rfft"), one_axis(rnormal)),
    _row("irfft", "irfft", _torch_1d("irfft"), one_axis(cnormal, inverse_real=True)),
    _row("hfft", "hfft", _torch_1d("hfft"), one_axis(cnormal, inverse_real=True)),
    _row("ihfft", "ihfft", _torch_1d("ihfft"), one_axis(rnormal)),
    _row("fft2", "fft2", _torch_nd("fft2", (-2, -1)), many_axes(cnormal, pair=True), holomorphic=True),
    _row("ifft2", "ifft2", _torch_nd("ifft2", (-2, -1)), many_axes(cnormal, pair=True), holomorphic=True),
    _row("rfft2", "rfft2", _torch_nd("rfft2", (-2, -1)), many_axes(rnormal, pair=True)),
    _row("irfft2", "irfft2", _torch_nd("irfft2", (-2, -1)), many_axes(cnormal, inverse_real=True, pair=True)),
    _row("fftn", "fftn", _torch_nd("fftn"), many_axes(cnormal), holomorphic=True),
    _row("ifftn", "ifftn", _torch_nd("ifftn"), many_axes(cnormal), holomorphic=True),
    _row("rfftn", "rfftn", _torch_nd("rfftn"), many_axes(rnormal)),
    _row("irfftn", "irfftn", _torch_nd("irfftn"), many_axes(cnormal, inverse_real=True)),
    _row("fftshift", "fftshift", _torch_shift("fftshift"), shift_args(cnormal), holomorphic=True),
    _row("ifftshift", "ifftshift", _torch_shift("ifftshift"), shift_args(cnormal), holomorphic=True),
    _row("fftshift_of_real", "fftshift", _torch_shift("fftshift"), shift_args(rnormal)),
    FFTRow("fftn_repeated_axis", _repeated_fftn(fnp.fft), _repeated_fftn(np.fft), _torch_repeated_fftn,
           hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4).flatmap(
               lambda s: NORMS.map(lambda norm: ([(cnormal, s)], dict(norm=norm))))),
    FFTRow("rfftn_repeated_axis", _repeated_real(fnp.fft, "rfftn"), _repeated_real(np.fft, "rfftn"),
           _torch_repeated_rfftn,
           REPEATED_SHAPES.flatmap(lambda s: NORMS.map(lambda norm: ([(rnormal, s)], dict(norm=norm))))),
    FFTRow("irfftn_repeated_axis", _repeated_real(fnp.fft, "irfftn"), _repeated_real(np.fft, "irfftn"),
           _torch_repeated_irfftn,
           REPEATED_SHAPES.flatmap(lambda s: NORMS.map(lambda norm: ([(cnormal, s)], dict(norm=norm))))),
    FFTRow("power_spectrum", _power_spectrum(fnp), _power_spectrum(np), _torch_power_spectrum,
           one_axis(rnormal)),
    FFTRow("circular_convolution", _circular_convolution(fnp), _circular_convolution(np),
           _torch_circular_convolution,
           st.sampled_from([(4,), (5,), (2, 6), (3, 1)]).map(
               lambda s: ([(rnormal, s), (rnormal, s[-1:])], {}))),
]


def draw_bound(data, row):
    operands, kwargs = data.draw(row.draw, label="operands, kwargs")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    args = tuple(np.asarray(domain(rng, shape)) for domain, shape in operands)
    return row.bound(kwargs), args, operands, seed


def rows(holomorphic=False):
    return [pytest.param(r, id=r.name) for r in ROWS if r.holomorphic or not holomorphic]


@pytest.mark.parametrize("row", rows())
@given(data=st.data())
def test_forward_matches_numpy(row, data):
    bound, args, _, _ = draw_bound(data, row)
    check_forward(bound, args)


@pytest.mark.parametrize("row", rows())
@given(data=st.data())
def test_jvp_matches_torch_and_finite_differences(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_jvp(bound, args, seed)


@pytest.mark.parametrize("row", rows())
@given(data=st.data())
def test_vjp_is_conjugated_torch_vjp_and_adjoint(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_vjp(bound, args, seed)


@pytest.mark.parametrize("row", rows())
@given(data=st.data())
def test_grad_of_real_loss_is_conjugated_torch_grad(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_grad(bound, args, seed)


@pytest.mark.parametrize("row", rows())
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_second_order(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_second_order(bound, args, seed)


@pytest.mark.parametrize("row", rows())
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_vmap_matches_loop(row, data):
    bound, _, operands, seed = draw_bound(data, row)
    check_vmap(bound, operands, seed)


@pytest.mark.parametrize("row", rows())
@settings(max_examples=max(settings.default.max_examples // 4, 1))
@given(data=st.data())
def test_jit(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_jit(bound, args, seed)


@pytest.mark.parametrize("row", rows(holomorphic=True))
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_holomorphic_jacobians_and_grad(row, data):
    bound, args, _, seed = draw_bound(data, row)
    check_holomorphic(bound, args, seed)


# --------------------------------------------------------------------------------------------
# The Hermitian halving, pinned; frequencies; errors
# --------------------------------------------------------------------------------------------

# jax 0.10.2 (jax_enable_x64), in a separate virtualenv:
#   jax.grad(lambda x: (jnp.fft.irfft(x) ** 2).sum())(jnp.array([1+2j, 3-1j, 0.5j]))
#       -> [0.5-0.j, 3. +1.j, 0. -0.j]
#   jax.grad(lambda x: (jnp.fft.irfft(x, n=5) ** 2).sum())(jnp.array([1+2j, 3-1j, 0.5j]))
#       -> [0.4-0.j, 2.4+0.8j, 0. -0.4j]
#   jax.grad(lambda x: jnp.abs(jnp.fft.rfft(x)).sum())(jnp.array([1., 2., 3., 4.]))
#       -> [-0.70710678, 1.29289322, 0.70710678, 2.70710678]
@pytest.mark.parametrize("f, x, want", [
    (lambda x: fnp.sum(fnp.fft.irfft(x) ** 2), np.array([1 + 2j, 3 - 1j, 0.5j]), [0.5, 3 + 1j, 0]),
    (lambda x: fnp.sum(fnp.fft.irfft(x, n=5) ** 2), np.array([1 + 2j, 3 - 1j, 0.5j]),
     [0.4, 2.4 + 0.8j, -0.4j]),
    (lambda x: fnp.sum(fnp.abs(fnp.fft.rfft(x))), np.array([1.0, 2.0, 3.0, 4.0]),
     [-0.70710678, 1.29289322, 0.70710678, 2.70710678]),
], ids=["irfft-even", "irfft-odd", "rfft"])
def test_hermitian_halving_pinned_from_jax(f, x, want):
    got = fgrad.grad(f)(x)
    assert got.dtype == x.dtype
    np.testing.assert_allclose(got, want, atol=1e-8)


def test_rfft_vjp_is_the_transpose_of_the_dense_matrix():
    # rfft as an explicit matrix R (m x n, complex) acting on real x: the transpose under
    # Re<u, v> is x_bar = Re(R^T u); checked for odd and even n, every norm
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 6):
        for norm in ("backward", "ortho", "forward"):
            dense = np.fft.rfft(np.eye(n), axis=0, norm=norm)        # column j = rfft(e_j)
            u = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
            _, pullback = fgrad.vjp(lambda x: fnp.fft.rfft(x, norm=norm), np.zeros(n))
            np.testing.assert_allclose(pullback(u)[0], np.real(dense.T @ u), atol=1e-12)
            # and irfft's, a map from C^m (as R^2m) to R^n
            t = rng.normal(size=n)
            _, pullback = fgrad.vjp(lambda y: fnp.fft.irfft(y, n=n, norm=norm),
                                    np.zeros(n // 2 + 1, complex))
            y_bar = pullback(t)[0]
            basis_re = np.fft.irfft(np.eye(n // 2 + 1), n=n, axis=0, norm=norm)
            basis_im = np.fft.irfft(1j * np.eye(n // 2 + 1), n=n, axis=0, norm=norm)
            # Re(y_bar dy) = t . irfft(dy):  Re(y_bar) = t . irfft(e_k), -Im(y_bar) = t . irfft(i e_k)
            np.testing.assert_allclose(y_bar.real, t @ basis_re, atol=1e-12)
            np.testing.assert_allclose(-y_bar.imag, t @ basis_im, atol=1e-12)


def test_fftfreq_and_rfftfreq():
    for n, d in [(1, 1.0), (4, 0.5), (7, 2.0)]:
        np.testing.assert_array_equal(fnp.fft.fftfreq(n, d), np.fft.fftfreq(n, d))
        np.testing.assert_array_equal(fnp.fft.rfftfreq(n, d), np.fft.rfftfreq(n, d))
    # a traced sample spacing: d/dd (k / (n d)) = -k / (n d^2)
    g = fgrad.grad(lambda d: fnp.sum(fnp.fft.fftfreq(4, d)))(0.5)
    np.testing.assert_allclose(g, -np.sum(np.fft.fftfreq(4, 1.0)) / 0.25)
    g = fgrad.grad(lambda d: fnp.sum(fnp.fft.rfftfreq(5, d)))(2.0)
    np.testing.assert_allclose(g, -np.sum(np.fft.rfftfreq(5, 1.0)) / 4.0)


def test_float32_stays_single_precision():
    x = np.arange(6, dtype=np.float32)
    assert fnp.fft.rfft(x).dtype == np.complex64 == np.fft.rfft(x).dtype
    assert fnp.fft.irfft(fnp.fft.rfft(x)).dtype == np.float32
    g = fgrad.grad(lambda x: fnp.sum(fnp.abs(fnp.fft.fft(x))))(x)
    assert g.dtype == np.float32


def test_no_axes_returns_the_input_as_numpy_does():
    x = np.ones((2, 3))
    assert fnp.fft.fftn(x, axes=()) is x
    assert np.fft.fftn(x, axes=()).dtype == x.dtype


def test_jaxpr_has_one_fft_equation_with_its_params():
    jaxpr = fgrad.make_jaxpr(lambda x: fnp.fft.rfft2(x, s=(3, 4), norm="ortho"))(np.ones((2, 5)))
    ffts = [e for e in jaxpr.eqns if e.prim.name == "fft"]
    assert len(ffts) == 1
    assert ffts[0].params == dict(kind="rfft", axes=(0, 1), lengths=(3, 4), norm="ortho")


BAD = [
    ("norm", lambda: fnp.fft.fft(np.ones(3), norm="unitary"), ValueError,
     ["fgrad.numpy.fft.fft", "'unitary'", "ortho"]),
    ("zero-n", lambda: fnp.fft.fft(np.ones(3), n=0), ValueError, ["fgrad.numpy.fft.fft", "(0)"]),
    ("zero-length-axis", lambda: fnp.fft.rfft(np.ones((2, 0))), ValueError, ["rfft", "(0)"]),
    ("irfft-one-entry", lambda: fnp.fft.irfft(np.ones(1, complex)), ValueError, ["irfft", "(0)"]),
    ("s-and-axes", lambda: fnp.fft.fftn(np.ones((2, 3)), s=(2, 3), axes=(0,)), ValueError,
     ["fgrad.numpy.fft.fftn", "s=(2, 3)", "axes=(0,)"]),
    ("axis-range", lambda: fnp.fft.fft(np.ones((2, 3)), axis=2), ValueError,
     ["fgrad.numpy.fft.fft", "axis 2", "2 dimension"]),
    ("traced-n", lambda: fgrad.grad(lambda x: fnp.sum(fnp.abs(fnp.fft.fft(np.ones(3), n=x))))(2.0),
     TypeError, ["fgrad.numpy.fft.fft", "static ints"]),
    ("rfft-complex", lambda: fnp.fft.rfftn(np.ones((2, 2)) * 1j), TypeError,
     ["fgrad.numpy.fft.rfftn", "real", "complex128", "fftn"]),
]


@pytest.mark.parametrize("call, exc, pieces", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_are_clear_errors(call, exc, pieces):
    with pytest.raises(exc) as info:
        call()
    for piece in pieces:
        assert piece in str(info.value), f"{piece!r} not in {info.value}"

