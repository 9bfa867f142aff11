"""Complex numbers in every transform: one table of complex operations, checked against
``torch.func`` (which differentiates complex functions) and complex finite differences.

fgrad follows JAX's convention (``fgrad/primitives/complex.py``): a JVP is the directional
derivative, and a VJP is the transpose of the JVP under the bilinear pairing
``<u, v> = Re(sum(u * v))``. torch pairs cotangents with a conjugate, so the two libraries are
related by

* ``fgrad.jvp(f, z, v) == torch.func.jvp(f, z, v)`` (no convention is involved);
* ``fgrad.vjp(f, z)[1](u) == conj(torch.func.vjp(f, z)[1](conj(u)))``;
* ``fgrad.grad(L)(z) == conj(torch.func.grad(L)(z))`` for a real-valued ``L``;

and every check below uses these identities. For each row (:class:`Row`) and hypothesis-drawn
shapes (broadcasting pairs, 0-d scalars, size-0 axes) and values (complex128, kept away from
branch cuts and poles), the tests check the forward pass against NumPy; ``jvp`` against torch
and central differences along complex directions; ``vjp`` against torch and through the
adjoint identity ``Re<u, J v> = Re<J^T u, v>``; ``grad`` of a real loss; second order
(forward-over-reverse against differences of the gradient and against torch,
reverse-over-reverse through the adjoint identity); ``vmap`` against a loop; ``jit``; and
``jacfwd``/``jacrev(holomorphic=True)`` against ``torch.func.jacfwd``. The FFT rows, which use
the same checks, are in ``tests/test_fft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pytest
import torch
import torch.func
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp
from fgrad.testing import check_grads
from torch_utils import output_list, to_numpy, to_torch

TORCH_TOL = dict(rtol=1e-8, atol=1e-10)
FORWARD_TOL = dict(rtol=1e-10, atol=1e-12)
FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-5, atol=1e-6)
BATCH = 3


# ============================================================================================
# The table
# ============================================================================================

@dataclass(frozen=True)
class Row:
    """One complex operation: ``fn`` (fgrad), ``ref`` (NumPy) and ``torch_fn`` on the operands
    that ``operands`` draws as ``[(domain, shape), ...]``; ``holomorphic`` rows (complex
    operands only, complex outputs) also get the holomorphic Jacobian checks."""
    name: str
    fn: Callable
    ref: Callable
    torch_fn: Callable
    operands: st.SearchStrategy
    holomorphic: bool = False

    def __repr__(self):
        return self.name


# --- value domains: (rng, shape) -> array ------------------------------------------------------

def cnormal(rng, shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def cright(rng, shape):      # the right half plane: log, sqrt, angle stay off their branch cut
    return rng.uniform(0.3, 2.0, shape) + 1j * rng.uniform(-1.5, 1.5, shape)


def csmall(rng, shape):      # |z| < 0.7: arcsin, arctanh, ... off their cuts, tan off its poles
    return rng.uniform(0.05, 0.7, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))


def caway(rng, shape):       # 0.5 <= |z| <= 2: abs, division, reciprocal away from 0
    return rng.uniform(0.5, 2.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))


def rnormal(rng, shape):     # a real operand beside a complex one
    return np.asarray(rng.normal(size=shape))


def raway(rng, shape):
    return np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape))


# --- operand strategies ----------------------------------------------------------------------

ANY_SHAPE = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def unary(domain, shapes=ANY_SHAPE):
    return shapes.map(lambda s: [(domain, s)])


def binary(d1, d2):
    """Two operands of mutually broadcastable shapes (scalars and size-0 axes included)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=0, max_side=3).map(
        lambda b: [(d1, b.input_shapes[0]), (d2, b.input_shapes[1])])


def given_shapes(*domains_and_shapes):
    """A fixed list of operands per draw: each argument is ``(domain, [shape, ...])`` choices
    drawn together by index (so pairs of shapes stay compatible)."""
    n = len(domains_and_shapes[0][1])
    return st.integers(0, n - 1).map(lambda i: [(d, shapes[i]) for d, shapes in domains_and_shapes])


def nd(min_dims):
    return hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=0, max_side=4)


def two_or_more(min_dims=1):   # the first axis has at least 2 entries (fancy indexing)
    return hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=2, max_side=4)


MATMUL = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 1)),
          ((2, 1, 2, 3), (4, 3, 2)), ((0, 3), (3, 2)), ((2, 0), (0, 3))]
SQUARE = [(1, 1), (2, 2), (3, 3), (2, 3, 3), (0, 2, 2)]


def square(domain):
    return st.sampled_from(SQUARE).map(lambda s: [(domain, s)])


# --- helpers for the rows --------------------------------------------------------------------

def _t_H(a):                          # torch's conjugate transpose
    return a.conj().transpose(-1, -2)


def _x_H(xp, a):
    return xp.swapaxes(xp.conj(a), -1, -2)


def _well_conditioned(xp, a):        # a + 3 I
    return a + 3 * xp.eye(a.shape[-1])


def _hermitian_pd(xp, a):             # a a^H + n I (exactly Hermitian)
    return a @ _x_H(xp, a) + a.shape[-1] * xp.eye(a.shape[-1])


def _t_hermitian_pd(a):
    n = a.shape[-1]
    return a @ _t_H(a) + n * torch.eye(n, dtype=a.dtype)


def _hermitian_spread(xp, a):         # Hermitian, eigenvalues about 3 apart
    n = a.shape[-1]
    return (a + _x_H(xp, a)) / 2 + np.diag(3.0 * np.arange(n))


def _t_hermitian_spread(a):
    n = a.shape[-1]
    return (a + _t_H(a)) / 2 + torch.diag(3.0 * torch.arange(n, dtype=torch.float64)).to(a.dtype)


def _eigh_invariants(xp, a):          # w and |V|^2: functions of A that fix no eigenvector phase
    w, v = xp.linalg.eigh(_hermitian_spread(xp, a))
    return w, xp.abs(v) ** 2


def _t_eigh_invariants(a):
    w, v = torch.linalg.eigh(_t_hermitian_spread(a))
    return w, v.abs() ** 2


def xp_row(name, f, torch_f, operands, **flags):
    """A row written once for fgrad.numpy and NumPy (``f(xp, *operands)``)."""
    return Row(name, partial(f, fnp), partial(f, np), torch_f, operands, **flags)


def _row(name, np_name, torch_f, operands, holomorphic=False):
    """A row for a function of the same name in fgrad.numpy and NumPy."""
    return xp_row(name, lambda xp, *a: getattr(xp, np_name)(*a), torch_f, operands,
                  holomorphic=holomorphic)


ROWS = [
    # --- holomorphic elementwise: the real rules, unchanged (no conj) -------------------------
    _row("exp", "exp", torch.exp, unary(cnormal), True),
    _row("log", "log", torch.log, unary(cright), True),
    _row("sqrt", "sqrt", torch.sqrt, unary(cright), True),
    _row("sin", "sin", torch.sin, unary(cnormal), True),
    _row("cos", "cos", torch.cos, unary(cnormal), True),
    _row("tan", "tan", torch.tan, unary(csmall), True),
    _row("tanh", "tanh", torch.tanh, unary(csmall), True),
    _row("sinh", "sinh", torch.sinh, unary(cnormal), True),
    _row("cosh", "cosh", torch.cosh, unary(cnormal), True),
    _row("expm1", "expm1", torch.expm1, unary(cnormal), True),
    _row("log1p", "log1p", torch.log1p, unary(csmall), True),
    _row("arcsin", "arcsin", torch.asin, unary(csmall), True),
    _row("arccos", "arccos", torch.acos, unary(csmall), True),
    _row("arctan", "arctan", torch.atan, unary(csmall), True),
    _row("arcsinh", "arcsinh", torch.asinh, unary(csmall), True),
    _row("arctanh", "arctanh", torch.atanh, unary(csmall), True),
    _row("negative", "negative", torch.neg, unary(cnormal), True),
    _row("square", "square", torch.square, unary(cnormal), True),
    _row("reciprocal", "reciprocal", torch.reciprocal, unary(caway), True),
    xp_row("cube", lambda xp, z: z ** 3, lambda z: z ** 3, unary(cnormal), holomorphic=True),
    # --- not holomorphic: abs, real, imag, conj, angle --------------------------------------
    _row("abs", "abs", torch.abs, unary(caway)),
    xp_row("abs_squared", lambda xp, z: xp.abs(z) ** 2, lambda z: z.abs() ** 2, unary(cnormal)),
    _row("real", "real", torch.real, unary(cnormal)),
    _row("imag", "imag", torch.imag, unary(cnormal)),
    _row("conj", "conj", torch.conj_physical, unary(cnormal)),
    _row("conjugate", "conjugate", torch.conj_physical, unary(cnormal)),
    _row("angle", "angle", torch.angle, unary(cright)),
    xp_row("angle_deg", lambda xp, z: xp.angle(z, deg=True), lambda z: torch.rad2deg(torch.angle(z)),
           unary(cright)),
    xp_row("attributes", lambda xp, z: z.real * 2 + z.imag * z.conj(),
           lambda z: z.real * 2 + z.imag * z.conj(), unary(cnormal)),
    xp_row("z_conj_z", lambda xp, z: z * xp.conj(z), lambda z: z * z.conj(), unary(cnormal)),
    # --- binary, with broadcasting, and real operands beside complex ones ---------------------
    _row("add", "add", torch.add, binary(cnormal, cnormal), True),
    _row("subtract", "subtract", torch.sub, binary(cnormal, cnormal), True),
    _row("multiply", "multiply", torch.mul, binary(cnormal, cnormal), True),
    _row("divide", "divide", torch.div, binary(cnormal, caway), True),
    _row("power", "power", torch.pow, binary(cright, csmall), True),
    _row("multiply_real_complex", "multiply", torch.mul, binary(rnormal, cnormal)),
    _row("add_complex_real", "add", torch.add, binary(cnormal, rnormal)),
    _row("divide_real_by_complex", "divide", torch.div, binary(rnormal, caway)),
    # (torch.func.jvp of pow drops the imaginary part of a real exponent's tangent term, so
    # torch gets the exponent as complex; fgrad's agrees with finite differences either way)
    _row("power_complex_real", "power", lambda z, y: torch.pow(z, y.to(z.dtype)),
         binary(cright, rnormal)),
    xp_row("where", lambda xp, z, w: xp.where(xp.real(z) > 0, z, w),
           lambda z, w: torch.where(z.real > 0, z, w), binary(cnormal, cnormal)),
    xp_row("build_complex", lambda xp, x, y: x + 1j * y, lambda x, y: x + 1j * y,
           binary(rnormal, rnormal)),
    xp_row("exp_i_theta", lambda xp, t: xp.exp(1j * t), lambda t: torch.exp(1j * t), unary(rnormal)),
    xp_row("astype_complex", lambda xp, x: x.astype(np.complex128) * (1 + 2j),
           lambda x: x.to(torch.complex128) * (1 + 2j), unary(rnormal)),
    # --- reductions -----------------------------------------------------------------------------
    _row("sum", "sum", torch.sum, unary(cnormal), True),
    xp_row("sum_last_keepdims", lambda xp, z: xp.sum(z, axis=-1, keepdims=True),
           lambda z: torch.sum(z, dim=-1, keepdim=True), unary(cnormal, nd(1)), holomorphic=True),
    xp_row("mean_axis0", lambda xp, z: xp.mean(z, axis=0), lambda z: torch.mean(z, dim=0),
           unary(cnormal, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)),
           holomorphic=True),
    _row("prod", "prod", torch.prod, unary(caway, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
         True),
    xp_row("cumsum", lambda xp, z: xp.cumsum(z, axis=-1), lambda z: torch.cumsum(z, -1),
           unary(cnormal, nd(1)), holomorphic=True),
    xp_row("var", lambda xp, z: xp.var(z, axis=-1), lambda z: torch.var(z, dim=-1, correction=0),
           unary(cnormal, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))),
    xp_row("std", lambda xp, z: xp.std(z, axis=-1), lambda z: torch.std(z, dim=-1, correction=0),
           unary(cnormal, hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))),
    # --- shapes and indexing ----------------------------------------------------------------
    xp_row("reshape", lambda xp, z: xp.reshape(z, (-1,)), lambda z: z.reshape(-1), unary(cnormal),
           holomorphic=True),
    xp_row("transpose", lambda xp, z: xp.transpose(z), lambda z: z.permute(tuple(reversed(range(z.ndim)))),
           unary(cnormal), holomorphic=True),
    xp_row("broadcast_to", lambda xp, z: xp.broadcast_to(z, (2,) + z.shape),
           lambda z: z.expand((2,) + tuple(z.shape)), unary(cnormal), holomorphic=True),
    xp_row("concatenate", lambda xp, a, b: xp.concatenate([a, b], axis=0),
           lambda a, b: torch.cat([a, b], 0),
           given_shapes((cnormal, [(2, 3), (0, 2), (1,)]), (cnormal, [(1, 3), (3, 2), (2,)])),
           holomorphic=True),
    xp_row("stack", lambda xp, a, b: xp.stack([a, b], axis=-1), lambda a, b: torch.stack([a, b], -1),
           ANY_SHAPE.map(lambda s: [(cnormal, s), (cnormal, s)]), holomorphic=True),
    xp_row("pad", lambda xp, z: xp.pad(z, 1), lambda z: torch.nn.functional.pad(z, (1, 1) * z.ndim),
           unary(cnormal), holomorphic=True),
    xp_row("flip", lambda xp, z: xp.flip(z, axis=-1), lambda z: torch.flip(z, (-1,)),
           unary(cnormal, nd(1)), holomorphic=True),
    xp_row("roll", lambda xp, z: xp.roll(z, 1, axis=-1), lambda z: torch.roll(z, 1, -1),
           unary(cnormal, nd(1)), holomorphic=True),
    xp_row("slice", lambda xp, z: z[..., ::2], lambda z: z[..., ::2], unary(cnormal, nd(1)),
           holomorphic=True),
    xp_row("gather", lambda xp, z: z[np.array([1, 0, 1])], lambda z: z[torch.tensor([1, 0, 1])],
           unary(cnormal, two_or_more()), holomorphic=True),
    xp_row("at_add", lambda xp, z, y: (fnp.at(z)[0].add(y) if xp is fnp else _np_at_add(z, y)),
           lambda z, y: z.index_add(0, torch.tensor([0]), y.unsqueeze(0).expand((1,) + z.shape[1:])),
           given_shapes((cnormal, [(2, 3), (3,), (2,)]), (cnormal, [(3,), (), ()])), holomorphic=True),
    # --- contractions ---------------------------------------------------------------------------
    _row("matmul", "matmul", torch.matmul,
         st.sampled_from(MATMUL).map(lambda p: [(cnormal, p[0]), (cnormal, p[1])]), True),
    _row("matmul_real_complex", "matmul", lambda a, b: torch.matmul(a.to(b.dtype), b),
         st.sampled_from(MATMUL).map(lambda p: [(rnormal, p[0]), (cnormal, p[1])])),
    xp_row("einsum", lambda xp, a, b: xp.einsum("bij,jk->bik", a, b),
           lambda a, b: torch.einsum("bij,jk->bik", a, b),
           given_shapes((cnormal, [(2, 3, 4), (1, 2, 2), (0, 2, 3)]), (cnormal, [(4, 2), (2, 3), (3, 1)])),
           holomorphic=True),
    _row("vdot", "vdot", torch.vdot, given_shapes((cnormal, [(3,), (1,), (0,)]), (cnormal, [(3,), (1,), (0,)]))),
    _row("outer", "outer", torch.outer, given_shapes((cnormal, [(3,), (1,), (0,)]), (cnormal, [(2,), (4,), (2,)])),
         True),
    xp_row("tensordot", lambda xp, a, b: xp.tensordot(a, b, axes=1),
           lambda a, b: torch.tensordot(a, b, dims=1),
           given_shapes((cnormal, [(2, 3), (3,)]), (cnormal, [(3, 2), (3, 4)])), holomorphic=True),
    # --- linear algebra -------------------------------------------------------------------------
    xp_row("inv", lambda xp, a: xp.linalg.inv(_well_conditioned(xp, a)),
           lambda a: torch.linalg.inv(a + 3 * torch.eye(a.shape[-1])), square(cnormal), holomorphic=True),
    xp_row("solve", lambda xp, a, b: xp.linalg.solve(_well_conditioned(xp, a), b),
           lambda a, b: torch.linalg.solve(a + 3 * torch.eye(a.shape[-1]), b),
           given_shapes((cnormal, [(3, 3), (2, 2, 2), (2, 2)]), (cnormal, [(3, 2), (2, 2, 1), (2,)])),
           holomorphic=True),
    xp_row("det", lambda xp, a: xp.linalg.det(_well_conditioned(xp, a)),
           lambda a: torch.linalg.det(a + 3 * torch.eye(a.shape[-1])), square(cnormal), holomorphic=True),
    xp_row("slogdet", lambda xp, a: tuple(xp.linalg.slogdet(_well_conditioned(xp, a))),
           lambda a: tuple(torch.linalg.slogdet(a + 3 * torch.eye(a.shape[-1]))), square(cnormal)),
    xp_row("cholesky", lambda xp, a: xp.linalg.cholesky(_hermitian_pd(xp, a)),
           lambda a: torch.linalg.cholesky(_t_hermitian_pd(a)), square(cnormal)),
    Row("eigh", partial(_eigh_invariants, fnp), partial(_eigh_invariants, np), _t_eigh_invariants,
        st.sampled_from([(1, 1), (2, 2), (3, 3)]).map(lambda s: [(cnormal, s)])),
    xp_row("matrix_power", lambda xp, a: xp.linalg.matrix_power(a, 3),
           lambda a: torch.linalg.matrix_power(a, 3), square(cnormal), holomorphic=True),
    xp_row("norm", lambda xp, z: xp.linalg.norm(z), lambda z: torch.linalg.vector_norm(z),
           unary(caway)),
    xp_row("norm_fro", lambda xp, a: xp.linalg.norm(a, axis=(-2, -1)),
           lambda a: torch.linalg.matrix_norm(a), square(caway)),
    xp_row("norm_1", lambda xp, z: xp.linalg.norm(z, ord=1, axis=-1),
           lambda z: torch.linalg.vector_norm(z, ord=1, dim=-1), unary(caway, nd(1))),
]


def _np_at_add(z, y):
    out = np.array(z, copy=True)
    out[0] += y
    return out


# ============================================================================================
# Shared checks (tests/test_fft.py uses them on its own rows)
# ============================================================================================

def draw_args(data, row):
    operands = data.draw(row.operands, label="operands")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    return tuple(np.asarray(domain(rng, shape)) for domain, shape in operands), operands, seed


def random_like(rng, a):
    """A random tangent/cotangent for ``a``: complex normal for complex ``a``, else real."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return (rng.normal(size=a.shape) + 1j * rng.normal(size=a.shape)).astype(a.dtype)
    return rng.normal(size=a.shape).astype(a.dtype)


def pairing(us, vs):
    """``Re(sum(u * v))`` over all pairs (fgrad's bilinear pairing), and ``sum |u v|`` (a scale)."""
    total, scale = 0.0, 0.0
    for u, v in zip(us, vs):
        terms = np.asarray(u, np.complex128) * np.asarray(v, np.complex128)
        total += float(np.sum(terms.real))
        scale += float(np.sum(np.abs(terms)))
    return total, scale


def assert_close(got, want, what, tol):
    got, want = output_list(got), output_list(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what} #{k}: shape {g.shape}, expected {w.shape}"
        np.testing.assert_allclose(g, w, err_msg=f"{what} #{k}", **tol)


def central_difference(f, args, directions):
    plus = output_list(f(*[a + FD_EPS * d for a, d in zip(args, directions)]))
    minus = output_list(f(*[a - FD_EPS * d for a, d in zip(args, directions)]))
    return [(np.asarray(p) - np.asarray(m)) / (2 * FD_EPS) for p, m in zip(plus, minus)]


def conj_all(xs):
    return [np.conj(x) for x in xs]


def tensors(args):
    return [to_torch(a) for a in args]


def torch_call(fn):
    """``fn`` with a tuple of outputs (torch.func wants tuples, not lists)."""
    def call(*a):
        out = fn(*a)
        return tuple(out) if isinstance(out, (tuple, list)) else out
    return call


def real_loss(fn, weights, xp_sum, real_part):
    """``L(*z) = Re sum_k sum(w_k * f_k(z))``: a real scalar of every output."""
    def loss(*z):
        return sum(xp_sum(real_part(w * o)) for w, o in zip(weights, output_list(fn(*z))))
    return loss


def fgrad_loss(row, weights):
    return real_loss(row.fn, weights, fnp.sum, fnp.real)


def torch_loss(row, weights):
    return real_loss(row.torch_fn, [to_torch(w) for w in weights], torch.sum, torch.real)


def loss_weights(row, args, rng):
    return [random_like(rng, o) for o in output_list(row.ref(*args))]


def check_forward(row, args):
    with np.errstate(all="ignore"):
        want = output_list(row.ref(*args))
        got = output_list(row.fn(*args))
    for g, w in zip(got, want):
        assert isinstance(g, (np.ndarray, np.generic)), type(g)
        assert np.asarray(g).dtype == np.asarray(w).dtype, (np.asarray(g).dtype, np.asarray(w).dtype)
    assert_close(got, want, "forward", FORWARD_TOL)


def check_jvp(row, args, seed):
    rng = np.random.default_rng([seed, 1])
    tangents = [random_like(rng, a) for a in args]
    out, t_out = fgrad.jvp(row.fn, args, tangents)
    for o, t in zip(output_list(out), output_list(t_out)):   # a tangent has its primal's dtype
        assert np.asarray(t).dtype == np.asarray(o).dtype
    t_primal, t_tangent = torch.func.jvp(torch_call(row.torch_fn), tuple(tensors(args)),
                                         tuple(tensors(tangents)))
    assert_close(out, [to_numpy(t) for t in output_list(t_primal)], "jvp primal vs torch", TORCH_TOL)
    assert_close(t_out, [to_numpy(t) for t in output_list(t_tangent)], "jvp vs torch.func.jvp",
                 TORCH_TOL)
    assert_close(t_out, central_difference(row.fn, args, tangents), "jvp vs central differences",
                 FD_TOL)


def check_vjp(row, args, seed):
    rng = np.random.default_rng([seed, 2])
    out, pullback = fgrad.vjp(row.fn, *args)
    outs = output_list(out)
    cts = [random_like(rng, o) for o in outs]
    in_cts = pullback(tuple(cts) if isinstance(out, (tuple, list)) else cts[0])
    for c, a in zip(in_cts, args):       # a cotangent has its primal's dtype: real stays real
        assert np.asarray(c).dtype == a.dtype, (np.asarray(c).dtype, a.dtype)
    t_out, t_pullback = torch.func.vjp(torch_call(row.torch_fn), *tensors(args))
    t_cts = [to_torch(c) for c in conj_all(cts)]
    t_in = t_pullback(tuple(t_cts) if isinstance(t_out, tuple) else t_cts[0])
    # fgrad's (JAX's) VJP is torch's conjugated around:  vjp(u) = conj(torch_vjp(conj(u)))
    assert_close(in_cts, conj_all([to_numpy(c) for c in t_in]), "vjp vs conj(torch vjp(conj u))",
                 TORCH_TOL)
    # the adjoint identity with J v from finite differences:  Re<u, J v> = Re<J^T u, v>
    v = [random_like(rng, a) for a in args]
    lhs, scale = pairing(cts, central_difference(row.fn, args, v))
    rhs, _ = pairing(in_cts, v)
    assert abs(lhs - rhs) <= FD_TOL["atol"] + FD_TOL["rtol"] * scale, (lhs, rhs)


def check_grad(row, args, seed):
    rng = np.random.default_rng([seed, 3])
    w = loss_weights(row, args, rng)
    argnums = tuple(range(len(args)))
    got = fgrad.grad(fgrad_loss(row, w), argnums=argnums)(*args)
    want = torch.func.grad(torch_loss(row, w), argnums=argnums)(*tensors(args))
    # grad of a real loss: fgrad (JAX) gives dL/dx - i dL/dy, torch dL/dx + i dL/dy
    assert_close(got, conj_all([to_numpy(g) for g in want]), "grad vs conj(torch.func.grad)",
                 TORCH_TOL)
    for g, a in zip(got, args):
        assert np.asarray(g).dtype == a.dtype


def check_second_order(row, args, seed, torch_too=True):
    rng = np.random.default_rng([seed, 4])
    w = loss_weights(row, args, rng)
    argnums = tuple(range(len(args)))
    g = fgrad.grad(fgrad_loss(row, w), argnums=argnums)
    v = [random_like(rng, a) for a in args]
    _, hv = fgrad.jvp(g, tuple(args), tuple(v))                      # forward-over-reverse
    assert_close(hv, central_difference(g, args, v), "jvp(grad) vs differences of grad", FD_TOL)
    if torch_too:
        t_g = torch.func.grad(torch_loss(row, w), argnums=argnums)
        _, t_hv = torch.func.jvp(t_g, tuple(tensors(args)), tuple(tensors(v)))
        assert_close(hv, conj_all([to_numpy(h) for h in t_hv]), "jvp(grad) vs torch", TORCH_TOL)
    u = [random_like(rng, a) for a in args]

    def s(*z):                                                          # reverse-over-reverse
        return sum(fnp.sum(fnp.real(ui * gi)) for ui, gi in zip(u, g(*z)))
    gs = fgrad.grad(s, argnums=argnums)(*args)
    lhs, scale = pairing(u, hv)
    rhs, _ = pairing(gs, v)
    assert abs(lhs - rhs) <= 1e-10 + 1e-8 * scale, (lhs, rhs)


def redraw_batch(row, operands, seed):
    rng = np.random.default_rng([seed, 5])
    per_example = [tuple(np.asarray(d(rng, s)) for d, s in operands) for _ in range(BATCH)]
    return per_example, [np.stack(xs) for xs in zip(*per_example)]


def check_vmap(row, operands, seed):
    per_example, stacked = redraw_batch(row, operands, seed)
    got = fgrad.vmap(row.fn)(*stacked)
    want = [np.stack(ks) for ks in zip(*[output_list(row.fn(*ex)) for ex in per_example])]
    assert_close(got, want, "vmap vs loop", FORWARD_TOL)
    w = loss_weights(row, per_example[0], np.random.default_rng([seed, 6]))
    argnums = tuple(range(len(stacked)))
    grad_l = fgrad.grad(fgrad_loss(row, w), argnums=argnums)
    got = fgrad.vmap(grad_l)(*stacked)
    want = [np.stack(ks) for ks in zip(*[grad_l(*ex) for ex in per_example])]
    assert_close(got, want, "vmap(grad) vs loop", FORWARD_TOL)


def check_jit(row, args, seed):
    assert_close(fgrad.jit(row.fn)(*args), row.fn(*args), "jit vs eager", FORWARD_TOL)
    w = loss_weights(row, args, np.random.default_rng([seed, 7]))
    argnums = tuple(range(len(args)))
    loss = fgrad_loss(row, w)
    want = fgrad.grad(loss, argnums=argnums)(*args)
    assert_close(fgrad.jit(fgrad.grad(loss, argnums=argnums))(*args), want, "jit(grad)", FORWARD_TOL)
    assert_close(fgrad.grad(fgrad.jit(loss), argnums=argnums)(*args), want, "grad(jit)", FORWARD_TOL)


def torch_holomorphic_jacobian(fn, args):
    """``df/dz_k`` for each operand: the directional derivative along the real unit direction
    ``e_k`` is ``f'(z) e_k`` for holomorphic ``f``, so ``torch.func.jvp`` along each ``e_k``
    gives a column (torch.func.jacfwd refuses complex inputs)."""
    primals = tuple(tensors(args))
    out_shape = np.shape(to_numpy(fn(*primals)))
    jacobians = []
    for i, a in enumerate(args):
        columns = []
        for k in range(a.size):
            tangents = [torch.zeros_like(p) for p in primals]
            tangents[i].view(-1)[k] = 1
            columns.append(to_numpy(torch.func.jvp(fn, primals, tuple(tangents))[1]))
        jac = np.stack(columns, -1) if columns else np.zeros(out_shape + (0,), a.dtype)
        jacobians.append(jac.reshape(out_shape + a.shape))
    return jacobians


def check_holomorphic(row, args, seed):
    argnums = tuple(range(len(args)))
    want = torch_holomorphic_jacobian(row.torch_fn, args)
    for transform in (fgrad.jacfwd, fgrad.jacrev):
        got = transform(row.fn, argnums=argnums, holomorphic=True)(*args)
        assert_close(got, want, f"{transform.__name__}(holomorphic=True) vs torch.func.jvp",
                     TORCH_TOL)
    w = random_like(np.random.default_rng([seed, 8]), row.ref(*args))
    got = fgrad.grad(lambda *z: fnp.sum(w * row.fn(*z)), argnums=argnums, holomorphic=True)(*args)
    out_axes = tuple(range(w.ndim))
    assert_close(got, [np.tensordot(w, j, axes=(out_axes, out_axes)) for j in want],
                 "grad(holomorphic=True) vs w . J", TORCH_TOL)


# ============================================================================================
# The tests
# ============================================================================================

def rows(table, holomorphic=False):
    return [pytest.param(r, id=r.name) for r in table if r.holomorphic or not holomorphic]


@pytest.mark.parametrize("row", rows(ROWS))
@given(data=st.data())
def test_forward_matches_numpy(row, data):
    check_forward(row, draw_args(data, row)[0])


@pytest.mark.parametrize("row", rows(ROWS))
@given(data=st.data())
def test_jvp_matches_torch_and_finite_differences(row, data):
    args, _, seed = draw_args(data, row)
    check_jvp(row, args, seed)


@pytest.mark.parametrize("row", rows(ROWS))
@given(data=st.data())
def test_vjp_is_conjugated_torch_vjp_and_adjoint(row, data):
    args, _, seed = draw_args(data, row)
    check_vjp(row, args, seed)


@pytest.mark.parametrize("row", rows(ROWS))
@given(data=st.data())
def test_grad_of_real_loss_is_conjugated_torch_grad(row, data):
    args, _, seed = draw_args(data, row)
    check_grad(row, args, seed)


@pytest.mark.parametrize("row", rows(ROWS))
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_second_order(row, data):
    args, _, seed = draw_args(data, row)
    check_second_order(row, args, seed)


@pytest.mark.parametrize("row", rows(ROWS))
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_vmap_matches_loop(row, data):
    _, operands, seed = draw_args(data, row)
    check_vmap(row, operands, seed)


@pytest.mark.parametrize("row", rows(ROWS))
@settings(max_examples=max(settings.default.max_examples // 4, 1))
@given(data=st.data())
def test_jit(row, data):
    args, _, seed = draw_args(data, row)
    check_jit(row, args, seed)


@pytest.mark.parametrize("row", rows(ROWS, holomorphic=True))
@settings(max_examples=max(settings.default.max_examples // 2, 1))
@given(data=st.data())
def test_holomorphic_jacobians_and_grad(row, data):
    args, _, seed = draw_args(data, row)
    check_holomorphic(row, args, seed)


# ============================================================================================
# The convention, pinned; errors; dtypes
# ============================================================================================

# Reference values printed by jax 0.10.2 (jax_enable_x64) in a separate virtualenv:
#   jax.grad(lambda z: jnp.abs(z) ** 2)(1+2j)            -> (2-4j)
#   jax.grad(jnp.angle)(1+2j), jax.grad(jnp.imag)(1+2j)   -> (-0.4-0.2j), -1j
#   jax.grad(lambda z: jnp.real(jnp.conj(z) * z))(1+2j)   -> (2-4j)
#   jax.grad(jnp.abs)(0j)                                 -> 0j
#   jax.grad(lambda x: jnp.real(x * (2+3j)))(1.5)         -> 2.0 (a real input's gradient is real)
#   jax.grad(lambda z: z * z, holomorphic=True)(1+2j)     -> (2+4j)
#   jax.hessian(lambda z: z ** 3, holomorphic=True)(1+2j) -> (6+12j)
#   jax.jacrev(jnp.abs)(1+2j)                             -> (0.4472135954999579-0.8944271909999159j)
#   jax.jacfwd(lambda x: x * (1+1j))(2.0)                 -> (1+1j)
JAX_VALUES = [
    (lambda: fgrad.grad(lambda z: fnp.abs(z) ** 2)(1 + 2j), 2 - 4j),
    (lambda: fgrad.grad(fnp.angle)(1 + 2j), -0.4 - 0.2j),
    (lambda: fgrad.grad(fnp.imag)(1 + 2j), -1j),
    (lambda: fgrad.grad(lambda z: fnp.real(fnp.conj(z) * z))(1 + 2j), 2 - 4j),
    (lambda: fgrad.grad(fnp.abs)(0j), 0j),
    (lambda: fgrad.grad(lambda x: fnp.real(x * (2 + 3j)))(1.5), 2.0),
    (lambda: fgrad.grad(lambda z: z * z, holomorphic=True)(1 + 2j), 2 + 4j),
    (lambda: fgrad.hessian(lambda z: z ** 3, holomorphic=True)(1 + 2j), 6 + 12j),
    (lambda: fgrad.jacrev(fnp.abs)(1 + 2j), 0.4472135954999579 - 0.8944271909999159j),
    (lambda: fgrad.jacfwd(lambda x: x * (1 + 1j))(2.0), 1 + 1j),
]


@pytest.mark.parametrize("call, want", JAX_VALUES, ids=[str(i) for i in range(len(JAX_VALUES))])
def test_values_pinned_from_jax(call, want):
    got = call()
    assert np.asarray(got).dtype.kind == np.asarray(want).dtype.kind
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_grad_is_the_conjugate_of_torch_grad_on_the_issue_example():
    z = 1.0 + 2.0j
    got = fgrad.grad(lambda z: fnp.abs(z) ** 2)(z)
    want = torch.func.grad(lambda z: z.abs() ** 2)(torch.tensor(z, dtype=torch.complex128))
    assert got == np.conj(want.item()) == 2 * np.conj(z)


def test_gradient_descent_with_the_conjugated_gradient_reaches_the_minimum():
    # minimise |z - c|^2: step along -conj(grad), as the grad docstring says
    c = 0.5 - 1.5j
    loss = lambda z: fnp.abs(z - c) ** 2
    z = 3.0 + 3.0j
    for _ in range(100):
        z = z - 0.1 * np.conj(fgrad.grad(loss)(z))
    assert abs(z - c) < 1e-8


ERRORS = [
    ("complex-output", lambda: fgrad.grad(lambda z: z * z)(1 + 2j),
     ["grad(<lambda>)", "real scalar", "c128[]", "holomorphic=True"]),
    ("holomorphic-real-input", lambda: fgrad.grad(lambda x: x * 1j, holomorphic=True)(1.0),
     ["holomorphic=True", "f64[]", "complex inputs"]),
    ("holomorphic-real-output", lambda: fgrad.grad(fnp.abs, holomorphic=True)(1j),
     ["holomorphic=True", "complex scalar", "f64[]"]),
    ("holomorphic-vector-output", lambda: fgrad.grad(lambda z: z * np.ones(2), holomorphic=True)(1j),
     ["complex scalar", "c128[2]", "jacrev"]),
    ("jacfwd-complex-input", lambda: fgrad.jacfwd(fnp.abs)(1 + 2j),
     ["jacfwd(abs)", "complex", "holomorphic=True", "jvp"]),
    ("jacrev-complex-output", lambda: fgrad.jacrev(lambda z: z * z)(1 + 2j),
     ["jacrev(<lambda>)", "real float", "c128[]", "holomorphic=True"]),
    ("jacrev-holomorphic-real-output", lambda: fgrad.jacrev(fnp.abs, holomorphic=True)(1j),
     ["holomorphic=True", "outputs must be complex", "f64[]"]),
    ("jvp-real-tangent", lambda: fgrad.jvp(lambda z: z * z, (1 + 2j,), (1.0,)),
     ["jvp(<lambda>)", "float64", "c128[]", "complex"]),
    ("vjp-real-cotangent", lambda: fgrad.vjp(lambda z: z * z, np.complex128(1 + 2j))[1](1.0),
     ["vjp(<lambda>)", "float64", "c128[]", "complex"]),
    ("linearize-real-tangent", lambda: fgrad.linearize(fnp.exp, np.ones(2) * 1j)[1](np.ones(2)),
     ["linearize(exp)", "float64", "c128[2]", "complex"]),
    ("rfft-of-complex", lambda: fnp.fft.rfft(np.ones(4) * 1j), ["fft.rfft", "real", "complex128"]),
]


@pytest.mark.parametrize("call, pieces", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_as_jax(call, pieces):
    with pytest.raises(TypeError) as info:
        call()
    for piece in pieces:
        assert piece in str(info.value), f"{piece!r} not in {info.value}"


def test_complex64_stays_single_precision_through_every_transform():
    z = (np.arange(3) + 1j).astype(np.complex64)
    x = np.arange(3, dtype=np.float32)
    f = lambda z, x: fnp.exp(z) * x + fnp.conj(z) / (1 + 1j)
    assert f(z, x).dtype == np.complex64
    out, t = fgrad.jvp(f, (z, x), (z, x))
    assert out.dtype == t.dtype == np.complex64
    gz, gx = fgrad.vjp(f, z, x)[1](np.ones(3, np.complex64))
    assert gz.dtype == np.complex64 and gx.dtype == np.float32
    assert fgrad.grad(lambda z: fnp.sum(fnp.abs(z)))(z).dtype == np.complex64


def test_a_real_input_of_a_complex_function_gets_the_real_part():
    # d/dx Re(x (2 + 3i)) = 2; the imaginary 3 is the derivative of Im, not of this loss
    x = np.array([1.0, -2.0])
    g = fgrad.grad(lambda x: fnp.sum(fnp.abs(x * (2 + 3j)) ** 2))(x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, 2 * 13 * x)


def test_sign_of_complex_has_zero_derivative_as_jax():
    z = np.array([1 + 2j, -3j])
    np.testing.assert_array_equal(fgrad.grad(lambda z: fnp.sum(fnp.real(fnp.sign(z))))(z), 0)
    np.testing.assert_allclose(fnp.sign(z), z / np.abs(z))


def test_tracer_attributes_and_real_inputs():
    # x.real / x.imag / x.conj() under grad and vmap; real inputs pass through real/conj
    z = np.array([1 + 2j, 3 - 1j])
    g = fgrad.grad(lambda z: fnp.sum(z.real * z.imag + (z.conj() * z).real))(z)
    want = (z.imag - 1j * z.real) + 2 * np.conj(z)   # xy: y - i x;  |z|^2: 2 conj(z)
    np.testing.assert_allclose(g, want)
    x = np.array([1.0, 2.0])
    assert fgrad.grad(lambda x: fnp.sum(fnp.real(x) + fnp.conj(x) + fnp.imag(x)))(x).tolist() == [2, 2]
    np.testing.assert_allclose(fgrad.vmap(lambda z: z.imag)(np.stack([z, 2 * z])), [z.imag, 2 * z.imag])
    assert fnp.iscomplexobj(z) and fnp.isrealobj(x) and not fnp.iscomplexobj(x)
    np.testing.assert_array_equal(fnp.iscomplex(np.array([1 + 0j, 1j])), [False, True])
    np.testing.assert_array_equal(fnp.isreal(np.array([1 + 0j, 1j])), [True, False])
    assert fnp.iscomplex(1.0) == np.iscomplex(1.0) and fnp.isreal(1.0) == np.isreal(1.0)


def test_stop_gradient_control_flow_and_linearize_with_complex():
    z = np.array([1 + 2j, 3 - 1j])
    np.testing.assert_allclose(   # |sg(z)| |z|: only the second factor is differentiated
        fgrad.grad(lambda z: fnp.sum(fnp.abs(fgrad.stop_gradient(z)) * fnp.abs(z)))(z), np.conj(z))
    # lax.scan carries a complex value (the carry's derivative is not dropped)
    def body(c, x):
        return c * x, fnp.abs(c) ** 2
    loss = lambda z: fnp.sum(fgrad.lax.scan(body, z[0], z)[1])
    unrolled = lambda z: fnp.abs(z[0]) ** 2 + fnp.abs(z[0] * z[0]) ** 2
    np.testing.assert_allclose(fgrad.grad(loss)(z), fgrad.grad(unrolled)(z))
    out, f_jvp = fgrad.linearize(fnp.exp, z)
    np.testing.assert_allclose(f_jvp(1j * z), np.exp(z) * 1j * z)


def test_check_grads_accepts_complex_inputs():
    rng = np.random.default_rng(0)
    z = cnormal(rng, (3,))
    x = rnormal(rng, (3,))
    check_grads(lambda z, x: fnp.sin(z) * x + fnp.abs(z) ** 2, (z, x), order=2)
    check_grads(lambda a: fnp.linalg.inv(a + 3 * np.eye(2)), (cnormal(rng, (2, 2)),), order=2)
    with pytest.raises(AssertionError, match="JVP"):   # a wrong rule is caught (conj dropped)
        bad = fgrad.custom_jvp(lambda z: fnp.conj(z))
        bad.defjvp(lambda p, t: (fnp.conj(p[0]), t[0]))
        check_grads(bad, (z,), order=1, modes=("fwd",))
