"""fgrad.numpy.linalg and fgrad.numpy.einsum against NumPy and torch.func.

Two tables drive the tests (one row = one function or one subscript string):

* ``LINALG``: each row names the fgrad function, the ``torch.linalg`` function and the NumPy
  function it mirrors, and how to draw well-conditioned inputs (``A = Q diag(s) Q^T`` with
  ``s`` kept away from 0; SPD for ``cholesky``; well-separated eigenvalues for ``eigh``, singular
  values for ``svd`` (square, tall and wide) and real eigenvalues for ``eig``).
  Hypothesis draws the seed, the matrix size and the leading batch axes; every row is checked
  for: forward = NumPy, VJP = ``torch.func.vjp``, JVP = ``torch.func.jvp``, ``vmap`` = a Python
  loop, ``jacfwd`` = ``jacrev``, and a Hessian-vector product = torch's (``jvp`` of ``grad``).
* ``EINSUM``: subscripts and shapes, each checked against ``np.einsum`` (forward),
  ``torch.func.vjp``/``jvp`` of ``torch.einsum`` in all operands, and ``vmap`` with the batch
  on each operand in turn; plus randomly generated einsum expressions from hypothesis.

``cholesky`` and ``eigh`` are functions of a symmetric matrix, so their tangents are symmetric
(torch's JVP does not symmetrise a tangent; fgrad's, like JAX's, does). Eigenvectors are
compared after fixing each column's sign (first entry positive), in fgrad, torch and NumPy alike;
so are singular vectors (by ``U``'s first row, ``Vh``'s rows with them), and ``eig``'s pairs are
sorted by eigenvalue first (LAPACK's order differs between NumPy and torch).
"""
from __future__ import annotations

import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.func
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp

EXAMPLES = settings.default.max_examples   # the profile's budget (tests/conftest.py)
RTOL, ATOL = 1e-7, 1e-9


# --------------------------------------------------------------------------------------------
# torch <-> NumPy
# --------------------------------------------------------------------------------------------

def to_torch(x):
    return torch.from_numpy(np.array(x, dtype=np.float64))


def to_numpy(t):
    return t.detach().numpy(force=True) if isinstance(t, torch.Tensor) else np.asarray(t)


def as_list(out):
    """The leaves of an output (an array, a tuple, a namedtuple, a tensor) as NumPy arrays."""
    return [np.asarray(to_numpy(o)) for o in fgrad.tree.leaves(out)]


def torch_outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def seeded(text):
    """A NumPy generator seeded from ``text``: reproducible, and different per test."""
    return np.random.default_rng(zlib.crc32(text.encode()))


def assert_all_close(actual, expected, rtol=RTOL, atol=ATOL):
    actual, expected = list(actual), list(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        a, e = np.asarray(a), np.asarray(to_numpy(e))
        assert a.shape == e.shape, (a.shape, e.shape)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# Well-conditioned inputs
# --------------------------------------------------------------------------------------------

def orthogonal(rng, batch, n):
    q, r = np.linalg.qr(rng.normal(size=batch + (n, n)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def general(rng, batch, n):
    """Q1 diag(s) Q2^T with |s| in [0.6, 2] and random signs: invertible, condition <= 3.4."""
    s = rng.uniform(0.6, 2.0, size=batch + (n,)) * rng.choice([-1.0, 1.0], size=batch + (n,))
    return orthogonal(rng, batch, n) * s[..., None, :] @ np.swapaxes(orthogonal(rng, batch, n), -1, -2)


def spd(rng, batch, n):
    """Q diag(s) Q^T with s in [0.6, 3]."""
    q = orthogonal(rng, batch, n)
    return q * rng.uniform(0.6, 3.0, size=batch + (n,))[..., None, :] @ np.swapaxes(q, -1, -2)


def separated(rng, batch, n):
    """Symmetric with eigenvalues at least 0.5 apart (so eigh's derivative is well defined)."""
    q = orthogonal(rng, batch, n)
    w = rng.uniform(-2, 0, size=batch + (1,)) + np.cumsum(rng.uniform(0.5, 1.5, size=batch + (n,)), -1)
    return q * w[..., None, :] @ np.swapaxes(q, -1, -2)


def triangular(rng, batch, n):
    """A triangular-dominant matrix: |diagonal| in [1, 2] and small off-diagonal entries."""
    d = rng.uniform(1, 2, size=batch + (n,)) * rng.choice([-1.0, 1.0], size=batch + (n,))
    return 0.3 * rng.normal(size=batch + (n, n)) + d[..., None] * np.eye(n)


def rhs(k):
    return lambda rng, batch, n: rng.normal(size=batch + (n, k))


def vector(rng, batch, n):
    return rng.normal(size=(n,))


def separated_singular(rows=0, cols=0):
    """(n + rows, n + cols) matrices U diag(s) V^T with singular values at least 0.5 apart and
    at least 1 (so every derivative of the svd is well defined)."""
    def make(rng, batch, n):
        m, p = n + rows, n + cols
        k = min(m, p)
        s = 0.5 + np.cumsum(rng.uniform(0.5, 1.5, size=batch + (k,)), -1)
        u, v = orthogonal(rng, batch, m)[..., :k], orthogonal(rng, batch, p)[..., :k]
        return u * s[..., None, :] @ np.swapaxes(v, -1, -2)
    return make


def real_eigenvalues(rng, batch, n):
    """P diag(w) P^-1 with a well-conditioned P and real eigenvalues at least 0.5 apart."""
    p = general(rng, batch, n)
    w = rng.uniform(-2, 0, size=batch + (1,)) + np.cumsum(rng.uniform(0.5, 1.5, size=batch + (n,)), -1)
    return p * w[..., None, :] @ np.linalg.inv(p)


def _svd_signed(xp, a, full_matrices=False):
    """svd with each pair (u_i, v_i) signed so that u_i's first entry is positive."""
    if xp is torch:
        u, s, vh = torch.linalg.svd(a, full_matrices=full_matrices)
    else:
        u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
    sign = xp.sign(u[..., :1, :])
    return u * sign, s, vh * xp.swapaxes(sign, -1, -2)


def _eig_sorted(xp, a):
    """eig with ascending eigenvalues (LAPACK's order is not the same everywhere) and each
    eigenvector's first entry positive; torch's complex results are real here."""
    if xp is torch:
        w, v = (t.real for t in torch.linalg.eig(a))
        order = torch.argsort(w, -1)
        w, v = torch.gather(w, -1, order), torch.gather(v, -1, order[..., None, :].expand(v.shape))
    else:
        w, v = xp.linalg.eig(a)
        order = xp.argsort(w, axis=-1)
        w, v = xp.take_along_axis(w, order, -1), xp.take_along_axis(v, order[..., None, :], -1)
    return w, signed_columns(v, xp.sign)


def signed_columns(V, sign):
    """Eigenvectors with each column's first entry made positive (eigh's sign is arbitrary)."""
    return V * sign(V[..., :1, :])


class Case(NamedTuple):
    name: str
    fgrad_fn: Callable
    torch_fn: Callable
    numpy_fn: Callable
    makers: tuple            # one (rng, batch, n) -> array per argument
    diff: tuple = (0,)       # arguments to differentiate
    symmetric: bool = False  # arg 0 is a symmetric matrix: use symmetric tangents
    batch_rhs: bool = True   # the other arguments get the batch axes too


def _eigh_fgrad(a):
    w, V = fnp.linalg.eigh(a)
    return w, signed_columns(V, fnp.sign)


def _eigh_torch(a):
    w, V = torch.linalg.eigh(a)
    return w, signed_columns(V, torch.sign)


def _eigh_numpy(a):
    w, V = np.linalg.eigh(a)
    return w, signed_columns(V, np.sign)


def _solve_tri_numpy(a, b, lower):
    return np.linalg.solve(np.tril(a) if lower else np.triu(a), b)


LINALG = [
    Case("inv", fnp.linalg.inv, torch.linalg.inv, np.linalg.inv, (general,)),
    Case("solve_matrix", fnp.linalg.solve, torch.linalg.solve, np.linalg.solve,
         (general, rhs(2)), diff=(0, 1)),
    # b (n,) is one vector for any batch of a (NumPy 2); torch is given an explicit column
    Case("solve_vector", fnp.linalg.solve,
         lambda a, b: torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1), np.linalg.solve,
         (general, vector), diff=(0, 1), batch_rhs=False),
    Case("solve_broadcast_a", lambda b, a: fnp.linalg.solve(a, b),
         lambda b, a: torch.linalg.solve(a, b), lambda b, a: np.linalg.solve(a, b),
         (rhs(3), lambda rng, batch, n: general(rng, (), n)), diff=(0, 1), batch_rhs=False),
    Case("slogdet", fnp.linalg.slogdet, lambda a: tuple(torch.linalg.slogdet(a)),
         np.linalg.slogdet, (general,)),
    Case("det", fnp.linalg.det, torch.linalg.det, np.linalg.det, (general,)),
    Case("cholesky", fnp.linalg.cholesky, torch.linalg.cholesky, np.linalg.cholesky, (spd,),
         symmetric=True),
    Case("cholesky_upper", lambda a: fnp.linalg.cholesky(a, upper=True),
         lambda a: torch.linalg.cholesky(a, upper=True),
         lambda a: np.linalg.cholesky(a, upper=True), (spd,), symmetric=True),
    Case("eigh", _eigh_fgrad, _eigh_torch, _eigh_numpy, (separated,), symmetric=True),
    Case("eigvalsh", fnp.linalg.eigvalsh, torch.linalg.eigvalsh, np.linalg.eigvalsh,
         (separated,), symmetric=True),
    Case("solve_triangular_lower", lambda a, b: fnp.linalg.solve_triangular(a, b, lower=True),
         lambda a, b: torch.linalg.solve_triangular(a, b, upper=False),
         lambda a, b: _solve_tri_numpy(a, b, True), (triangular, rhs(2)), diff=(0, 1)),
    Case("solve_triangular_upper_T",
         lambda a, b: fnp.linalg.solve_triangular(a, b, trans="T", lower=False),
         lambda a, b: torch.linalg.solve_triangular(a.mT, b, upper=False),
         lambda a, b: _solve_tri_numpy(np.swapaxes(a, -1, -2), b, True), (triangular, rhs(2)),
         diff=(0, 1)),
    Case("matrix_power_3", lambda a: fnp.linalg.matrix_power(a, 3),
         lambda a: torch.linalg.matrix_power(a, 3), lambda a: np.linalg.matrix_power(a, 3),
         (general,)),
    Case("matrix_power_-2", lambda a: fnp.linalg.matrix_power(a, -2),
         lambda a: torch.linalg.matrix_power(a, -2), lambda a: np.linalg.matrix_power(a, -2),
         (general,)),
    Case("norm_fro", lambda x: fnp.linalg.norm(x, axis=(-2, -1)),
         lambda x: torch.linalg.norm(x, dim=(-2, -1)), lambda x: np.linalg.norm(x, axis=(-2, -1)),
         (general,)),
    Case("norm_matrix_1_keepdims", lambda x: fnp.linalg.norm(x, 1, (-2, -1), keepdims=True),
         lambda x: torch.linalg.norm(x, 1, (-2, -1), keepdim=True),
         lambda x: np.linalg.norm(x, 1, (-2, -1), keepdims=True), (general,)),
    Case("norm_matrix_inf", lambda x: fnp.linalg.norm(x, np.inf, (-1, -2)),
         lambda x: torch.linalg.norm(x, float("inf"), (-1, -2)),
         lambda x: np.linalg.norm(x, np.inf, (-1, -2)), (general,)),
    Case("norm_matrix_-inf", lambda x: fnp.linalg.norm(x, -np.inf, (-2, -1)),
         lambda x: torch.linalg.norm(x, -float("inf"), (-2, -1)),
         lambda x: np.linalg.norm(x, -np.inf, (-2, -1)), (general,)),
    Case("norm_vector_2", lambda x: fnp.linalg.norm(x, axis=-1),
         lambda x: torch.linalg.norm(x, dim=-1), lambda x: np.linalg.norm(x, axis=-1), (general,)),
    Case("norm_vector_3_keepdims", lambda x: fnp.linalg.norm(x, 3, axis=0, keepdims=True),
         lambda x: torch.linalg.norm(x, 3, dim=0, keepdim=True),
         lambda x: np.linalg.norm(x, 3, axis=0, keepdims=True), (general,)),
    Case("norm_vector_1", lambda x: fnp.linalg.norm(x, 1, axis=-2),
         lambda x: torch.linalg.norm(x, 1, dim=-2), lambda x: np.linalg.norm(x, 1, axis=-2),
         (general,)),
    Case("norm_vector_inf", lambda x: fnp.linalg.norm(x, np.inf, axis=-1),
         lambda x: torch.linalg.norm(x, float("inf"), dim=-1),
         lambda x: np.linalg.norm(x, np.inf, axis=-1), (general,)),
    Case("norm_flat", fnp.linalg.norm, lambda x: torch.linalg.norm(x.reshape(-1)),
         np.linalg.norm, (general,)),
] + [
    # --- svd, pinv, eig and the norms from singular values (issue 10) ---
    Case("svd", lambda a: _svd_signed(fnp, a), lambda a: _svd_signed(torch, a),
         lambda a: _svd_signed(np, a), (separated_singular(),)),
    Case("svd_tall", lambda a: _svd_signed(fnp, a), lambda a: _svd_signed(torch, a),
         lambda a: _svd_signed(np, a), (separated_singular(rows=2),)),
    Case("svd_wide", lambda a: _svd_signed(fnp, a), lambda a: _svd_signed(torch, a),
         lambda a: _svd_signed(np, a), (separated_singular(cols=1),)),
    # a square matrix: full_matrices=True is the same decomposition, and differentiable
    Case("svd_full_square", lambda a: _svd_signed(fnp, a, True),
         lambda a: _svd_signed(torch, a, True), lambda a: _svd_signed(np, a, True),
         (separated_singular(),)),
    Case("svdvals", lambda a: fnp.linalg.svd(a, compute_uv=False), torch.linalg.svdvals,
         lambda a: np.linalg.svd(a, compute_uv=False), (separated_singular(rows=1),)),
    Case("pinv_square", fnp.linalg.pinv, torch.linalg.pinv, np.linalg.pinv, (general,)),
    Case("pinv_tall", fnp.linalg.pinv, torch.linalg.pinv, np.linalg.pinv,
         (separated_singular(rows=2),)),
    Case("pinv_wide", fnp.linalg.pinv, torch.linalg.pinv, np.linalg.pinv,
         (separated_singular(cols=1),)),
    # torch's hermitian pinv does not symmetrise its gradient (fgrad's does, as eigh's):
    # symmetrising torch's input makes the two conventions the same
    Case("pinv_hermitian", lambda a: fnp.linalg.pinv(a, hermitian=True),
         lambda a: torch.linalg.pinv((a + a.mT) / 2, hermitian=True),
         lambda a: np.linalg.pinv(a, hermitian=True), (spd,), symmetric=True),
    Case("norm_nuc", lambda x: fnp.linalg.norm(x, "nuc", axis=(-2, -1)),
         lambda x: torch.linalg.matrix_norm(x, "nuc"),
         lambda x: np.linalg.norm(x, "nuc", axis=(-2, -1)), (separated_singular(rows=1),)),
    Case("norm_nuc_keepdims", lambda x: fnp.linalg.norm(x, "nuc", (-1, -2), True),
         lambda x: torch.linalg.matrix_norm(x, "nuc", (-1, -2), True),
         lambda x: np.linalg.norm(x, "nuc", (-1, -2), True), (separated_singular(cols=1),)),
    Case("norm_2", lambda x: fnp.linalg.norm(x, 2, axis=(-2, -1)),
         lambda x: torch.linalg.matrix_norm(x, 2), lambda x: np.linalg.norm(x, 2, axis=(-2, -1)),
         (separated_singular(cols=2),)),
    Case("norm_-2_keepdims", lambda x: fnp.linalg.norm(x, -2, axis=(-2, -1), keepdims=True),
         lambda x: torch.linalg.matrix_norm(x, -2, keepdim=True),
         lambda x: np.linalg.norm(x, -2, axis=(-2, -1), keepdims=True), (separated_singular(),)),
    Case("eig", lambda a: _eig_sorted(fnp, a), lambda a: _eig_sorted(torch, a),
         lambda a: _eig_sorted(np, a), (real_eigenvalues,)),
    Case("eigvals", lambda a: fnp.sort(fnp.linalg.eigvals(a), axis=-1),
         lambda a: torch.sort(torch.linalg.eigvals(a).real, -1).values,
         lambda a: np.sort(np.linalg.eigvals(a), axis=-1), (real_eigenvalues,)),
]
LINALG_IDS = [c.name for c in LINALG]

linalg_inputs = st.fixed_dictionaries({
    "seed": st.integers(0, 2 ** 32 - 1),
    "n": st.integers(1, 4),
    "batch": st.sampled_from([(), (2,), (3, 2)]),
})


def make_args(case, draw):
    rng = np.random.default_rng(draw["seed"])
    batch, n = draw["batch"], draw["n"]
    return [make(rng, batch if (i == 0 or case.batch_rhs) else (), n)
            for i, make in enumerate(case.makers)], rng


def random_like(rng, x, symmetric=False):
    t = rng.normal(size=np.shape(x))
    return (t + np.swapaxes(t, -1, -2)) / 2 if symmetric else t


def tangents_for(case, args, rng):
    return [random_like(rng, args[i], case.symmetric and i == 0) for i in case.diff]


def fixed(fn, args, diff):
    """``fn`` as a function of the arguments in ``diff``, the others held fixed."""
    def partial(*moving):
        full = list(args)
        for i, m in zip(diff, moving):
            full[i] = m
        return fn(*full)
    return partial


def torch_fixed(case, args):
    return fixed(lambda *a: case.torch_fn(*a), [to_torch(a) for a in args], case.diff)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=EXAMPLES)
@given(draw=linalg_inputs)
def test_forward_matches_numpy(case, draw):
    args, _ = make_args(case, draw)
    out = case.fgrad_fn(*args)
    assert_all_close(as_list(out), as_list(case.numpy_fn(*args)))
    for o in fgrad.tree.leaves(out):   # plain NumPy results outside transforms
        assert isinstance(o, (np.ndarray, np.generic)), type(o)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=EXAMPLES)
@given(draw=linalg_inputs)
def test_vjp_matches_torch(case, draw):
    args, rng = make_args(case, draw)
    out, pullback = fgrad.vjp(fixed(case.fgrad_fn, args, case.diff), *[args[i] for i in case.diff])
    cts = [rng.normal(size=np.shape(o)) for o in as_list(out)]
    ours = pullback(fgrad.tree.unflatten(fgrad.tree.structure(out), cts))
    t_out, t_pullback = torch.func.vjp(torch_fixed(case, args), *[to_torch(args[i]) for i in case.diff])
    t_cts = [to_torch(c) for c in cts]
    theirs = t_pullback(tuple(t_cts) if isinstance(t_out, tuple) else t_cts[0])
    assert_all_close(as_list(out), [to_numpy(t) for t in torch_outputs(t_out)])
    assert_all_close(ours, theirs, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=EXAMPLES)
@given(draw=linalg_inputs)
def test_jvp_matches_torch(case, draw):
    args, rng = make_args(case, draw)
    tangents = tangents_for(case, args, rng)
    out, out_dot = fgrad.jvp(fixed(case.fgrad_fn, args, case.diff),
                             tuple(args[i] for i in case.diff), tuple(tangents))
    _, t_dot = torch.func.jvp(torch_fixed(case, args), tuple(to_torch(args[i]) for i in case.diff),
                              tuple(to_torch(t) for t in tangents))
    assert_all_close(as_list(out_dot), torch_outputs(t_dot), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=EXAMPLES)
@given(draw=linalg_inputs, mapped=st.integers(0, 2 ** 8), axis=st.integers(0, 3))
def test_vmap_matches_loop(case, draw, mapped, axis):
    """Some arguments carry a new axis of size 3 (at a drawn position), the others are shared."""
    size = 3
    per_example = [make_args(case, dict(draw, seed=draw["seed"] + k))[0] for k in range(size)]
    in_axes = []
    args = []
    for i in range(len(case.makers)):
        if i == 0 or (mapped >> i) & 1:
            ax = axis % (np.ndim(per_example[0][i]) + 1)
            args.append(np.stack([ex[i] for ex in per_example], axis=ax))
            in_axes.append(ax)
        else:
            args.append(per_example[0][i])
            in_axes.append(None)
    got = fgrad.vmap(case.fgrad_fn, in_axes=tuple(in_axes))(*args)
    loop = [case.fgrad_fn(*[np.take(a, k, axis=ax) if ax is not None else a
                            for a, ax in zip(args, in_axes)]) for k in range(size)]
    expected = [np.stack(outs) for outs in zip(*[as_list(o) for o in loop])]
    assert_all_close(as_list(got), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=max(1, EXAMPLES // 2))
@given(draw=linalg_inputs)
def test_jacfwd_equals_jacrev(case, draw):
    args, _ = make_args(case, draw)
    f = fixed(case.fgrad_fn, args, case.diff)
    primals = [args[i] for i in case.diff]
    fwd = fgrad.jacfwd(f, argnums=tuple(range(len(primals))))(*primals)
    rev = fgrad.jacrev(f, argnums=tuple(range(len(primals))))(*primals)
    assert_all_close(as_list(fwd), as_list(rev), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("case", LINALG, ids=LINALG_IDS)
@settings(deadline=None, max_examples=max(1, EXAMPLES // 2))
@given(draw=linalg_inputs)
def test_hessian_vector_product_matches_torch(case, draw):
    """Forward-over-reverse second derivatives: jvp(grad(<w, f(x)>)) in fgrad and in torch."""
    args, rng = make_args(case, draw)
    x = args[0]
    weights = [rng.normal(size=np.shape(o)) for o in as_list(case.numpy_fn(*args))]
    direction = random_like(rng, x, case.symmetric)

    def scalar(x):
        return sum(fnp.sum(w * o) for w, o in zip(weights, fgrad.tree.leaves(case.fgrad_fn(x, *args[1:]))))

    def t_scalar(x):
        outs = torch_outputs(case.torch_fn(x, *[to_torch(a) for a in args[1:]]))
        return sum((to_torch(w) * o).sum() for w, o in zip(weights, outs))

    _, ours = fgrad.jvp(fgrad.grad(scalar), (x,), (direction,))
    _, theirs = torch.func.jvp(torch.func.grad(t_scalar), (to_torch(x),), (to_torch(direction),))
    np.testing.assert_allclose(ours, to_numpy(theirs), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------------
# Second order, staging, special points and errors
# --------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=EXAMPLES)
@given(draw=linalg_inputs)
def test_hessian_of_logdet_matches_torch(draw):
    a, _ = make_args(LINALG[0], dict(draw, batch=()))
    a = a[0]
    ours = fgrad.hessian(lambda a: fnp.linalg.slogdet(a).logabsdet)(a)
    theirs = torch.func.hessian(lambda a: torch.linalg.slogdet(a)[1])(to_torch(a))
    np.testing.assert_allclose(ours, to_numpy(theirs), rtol=1e-7, atol=1e-9)
    # d^2 log|det A| [dA, dB] = -tr(A^-1 dA A^-1 dB)
    inv = np.linalg.inv(a)
    np.testing.assert_allclose(ours, -np.einsum("jk,li->ijkl", inv, inv), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["cholesky", "eigh", "solve_matrix", "slogdet"])
def test_hessian_of_batched_losses_matches_torch(name):
    """Full Hessians (every direction, batched inputs) where torch's JVP convention matches."""
    rng = seeded("test_hessian_of_batched_losses_matches_torch" + name)
    case = LINALG[LINALG_IDS.index(name)]
    args = [make(rng, (2,), 3) for make in case.makers]
    weights = [rng.normal(size=np.shape(o)) for o in as_list(case.numpy_fn(*args))]

    def scalar(x):
        return sum(fnp.sum(w * o) for w, o in zip(weights, fgrad.tree.leaves(case.fgrad_fn(x, *args[1:]))))

    def t_scalar(x):
        outs = torch_outputs(case.torch_fn(x, *[to_torch(a) for a in args[1:]]))
        return sum((to_torch(w) * o).sum() for w, o in zip(weights, outs))

    ours = fgrad.hessian(scalar)(args[0])
    if case.symmetric:   # torch's Hessian acts on unsymmetrised directions: compare on sym ones
        sym = lambda h: (h + np.swapaxes(h, -1, -2)) / 2   # noqa: E731
        ours = sym(ours)
        theirs = sym(to_numpy(torch.func.jacrev(torch.func.grad(t_scalar))(to_torch(args[0]))))
    else:
        theirs = to_numpy(torch.func.hessian(t_scalar)(to_torch(args[0])))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8)


def test_linearize_and_make_jaxpr_stage_linalg():
    """Staging uses the primitives' shape rules (evaluating on zeros would be singular)."""
    rng = seeded("test_linearize_and_make_jaxpr_stage_linalg")
    a, b = spd(rng, (2,), 3), rng.normal(size=(2, 3, 2))

    def f(a):
        L = fnp.linalg.cholesky(a)
        return fnp.linalg.solve(a, b) + fnp.linalg.inv(L) @ b + fnp.linalg.det(a)[:, None, None]

    t = random_like(rng, a, symmetric=True)
    out, f_jvp = fgrad.linearize(f, a)
    np.testing.assert_allclose(f_jvp(t), fgrad.jvp(f, (a,), (t,))[1], rtol=1e-10, atol=1e-12)
    text = str(fgrad.make_jaxpr(f)(a))
    assert "cholesky" in text and "solve" in text and "slogdet" in text


def test_norm_gradient_at_zero_is_zero_like_torch():
    x = np.zeros((2, 3))
    for fn, t_fn in [(lambda x: fnp.linalg.norm(x), lambda x: torch.linalg.norm(x)),
                     (lambda x: fnp.linalg.norm(x, 3, axis=1).sum(),
                      lambda x: torch.linalg.norm(x, 3, dim=1).sum())]:
        ours = fgrad.grad(fn)(x)
        theirs = to_numpy(torch.func.grad(t_fn)(to_torch(x)))
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(ours, np.zeros_like(x))
    assert fnp.linalg.norm(x) == 0.0


def test_norm_forward_other_orders():
    rng = seeded("test_norm_forward_other_orders")
    x = rng.normal(size=(3, 4))
    x[0, 1] = 0.0
    for ord_, axis in [(0, 1), (-np.inf, 0), (0.5, 1), (None, None), ("fro", None), (1, None),
                       (np.inf, None), (2, 0)]:
        np.testing.assert_allclose(fnp.linalg.norm(x, ord_, axis), np.linalg.norm(x, ord_, axis),
                                   rtol=1e-12)
    np.testing.assert_allclose(fnp.linalg.norm(x, keepdims=True), np.linalg.norm(x, keepdims=True))
    np.testing.assert_allclose(fnp.linalg.norm(np.arange(4)), np.linalg.norm(np.arange(4)))


def test_eigh_upper_and_repeated_eigenvalues():
    rng = seeded("test_eigh_upper_and_repeated_eigenvalues")
    a = separated(rng, (), 3)
    lower_junk = a + np.tril(rng.normal(size=(3, 3)), -1)
    np.testing.assert_allclose(fnp.linalg.eigh(lower_junk, UPLO="U")[0],
                               np.linalg.eigh(lower_junk, UPLO="U")[0], rtol=1e-12)
    # eigenvalue-only functions stay finite at repeated eigenvalues: d sum(w^2) = 2 A
    eye = np.eye(3)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.sum(fnp.linalg.eigvalsh(a) ** 2))(eye),
                               2 * eye, atol=1e-12)


def test_matrix_power_zero_and_one():
    rng = seeded("test_matrix_power_zero_and_one")
    a = general(rng, (2,), 3)
    np.testing.assert_array_equal(fnp.linalg.matrix_power(a, 0), np.linalg.matrix_power(a, 0))
    np.testing.assert_array_equal(fnp.linalg.matrix_power(a, 1), a)
    g = fgrad.grad(lambda a: fnp.sum(fnp.linalg.matrix_power(a, 0) * a))(a)
    np.testing.assert_array_equal(g, np.broadcast_to(np.eye(3), a.shape))


@pytest.mark.parametrize("call, message", [
    (lambda: fnp.linalg.inv(np.ones((2, 3))), r"inv: expected a square matrix .* \(2, 3\)"),
    (lambda: fnp.linalg.det(np.ones(3)), r"slogdet: expected a square matrix .* \(3,\)"),
    (lambda: fnp.linalg.cholesky(np.ones((2, 3, 4))), r"cholesky: .*\(2, 3, 4\)"),
    (lambda: fnp.linalg.solve(np.eye(3), np.ones(4)), r"solve: a of shape \(3, 3\) needs b of shape "
                                                     r"\(3,\) or \(\.\.\., 3, k\), got b of shape \(4,\)"),
    (lambda: fnp.linalg.solve(np.ones((2, 3, 3)), np.ones((4, 3, 1))),
     r"solve: the leading \(batch\) axes of a \(2, 3, 3\) and b \(4, 3, 1\)"),
    (lambda: fnp.linalg.solve(np.ones((2, 3, 3)), np.ones((2, 3))),
     r"solve: .*needs b of shape \(3,\) or \(\.\.\., 3, k\), got b of shape \(2, 3\)"),
    (lambda: fnp.linalg.norm(np.ones((2, 2)), 3), r"norm: invalid norm order 3 for matrices"),
    (lambda: fnp.linalg.svd(np.ones(3)), r"svd: expected a matrix .* got shape \(3,\)"),
    (lambda: fnp.linalg.pinv(np.ones((2, 3)), rcond=1e-3, rtol=1e-3), r"pinv: give rcond or rtol"),
    (lambda: fnp.linalg.eig(np.array([[0.0, 1.0], [-1.0, 0.0]])),
     r"eig: the matrix of shape \(2, 2\) has complex eigenvalues \(numpy.linalg.eig returns "
     r"complex128"),
    (lambda: fgrad.grad(lambda a: fnp.sum(fnp.linalg.svd(a)[0]))(np.ones((3, 2))),
     r"svd: no derivative for full_matrices=True with a non-square matrix \(shape \(3, 2\)\)"),
    (lambda: fnp.linalg.norm(np.ones(3), "fro", axis=0), r"norm: ord='fro' is a matrix norm"),
    (lambda: fnp.linalg.norm(np.ones((2, 2, 2)), 1), r"norm: .*1-D or 2-D, got shape \(2, 2, 2\)"),
    (lambda: fnp.linalg.eigh(np.eye(2), UPLO="X"), r"eigh: UPLO must be 'L' or 'U'"),
    (lambda: fnp.linalg.solve_triangular(np.eye(2), np.ones(2), trans="X"), r"trans must be"),
])
def test_errors_name_the_function_and_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_2_solve_treats_only_1d_b_as_a_vector():
    rng = seeded("test_numpy_2_solve_treats_only_1d_b_as_a_vector")
    a = general(rng, (2,), 3)
    b = rng.normal(size=3)
    np.testing.assert_allclose(fnp.linalg.solve(a, b), np.linalg.solve(a, b), rtol=1e-12)
    assert fnp.linalg.solve(a, b).shape == (2, 3)
    b2 = rng.normal(size=(3, 3))   # 2-D: one matrix right-hand side, shared by the batch
    np.testing.assert_allclose(fnp.linalg.solve(a, b2), np.linalg.solve(a, b2), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# einsum
# --------------------------------------------------------------------------------------------

EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),                  # matmul
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),         # batch matmul
    ("i,j->ij", [(3,), (4,)]),                        # outer
    ("ii", [(3, 3)]),                                 # trace
    ("ii->i", [(3, 3)]),                              # diagonal
    ("ij->ji", [(2, 3)]),                             # transpose
    ("ij->", [(2, 3)]),                               # sum
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),       # three operands
    ("...ij,...jk->...ik", [(2, 2, 3), (2, 3, 4)]),   # ellipsis
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (3, 3, 4)]),   # ellipsis broadcasting size-1 dims
    ("ij,jk", [(2, 3), (3, 4)]),                      # implicit output
    ("i,i", [(3,), (3,)]),                            # inner product
    ("i,i->i", [(3,), (3,)]),                         # elementwise product
    ("ij->i", [(2, 3)]),                              # row sums
    ("ij,j->i", [(2, 3), (3,)]),                      # matrix-vector
    ("bij,jk->bik", [(2, 2, 3), (3, 4)]),             # shared weight
    ("iij->ij", [(3, 3, 2)]),                         # diagonal with a passenger axis
    ("iji->j", [(2, 3, 2)]),                          # diagonal of non-adjacent axes
    ("ijk->kji", [(2, 3, 4)]),                        # permutation
    ("ba,Ab", [(2, 3), (4, 2)]),                      # implicit: uppercase sorts first
    ("i,j,k->ijk", [(2,), (3,), (2,)]),               # triple outer
    ("ij,ij->", [(2, 3), (2, 3)]),                    # Frobenius inner product
    ("ii,i->", [(3, 3), (3,)]),                       # diagonal against a vector
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),   # attention scores
    ("bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)]),   # attention mix
    ("i...->...", [(3, 2, 2)]),                       # sum the first axis
    ("...i,...i->...", [(2, 3), (3,)]),               # broadcast inner product
    ("ij,kj->ik", [(2, 3), (4, 3)]),                  # A B^T
    (",ij->ij", [(), (2, 3)]),                        # scalar operand
    ("i,i,i->", [(3,), (3,), (3,)]),                  # three-way inner product
    ("ij,jk,kl,lm->im", [(2, 3), (3, 2), (2, 4), (4, 2)]),   # four operands
    ("ijk,ijk->ik", [(2, 3, 2), (2, 3, 2)]),          # batch over i and k, sum j
    ("ij,ij->ij", [(2, 1), (2, 3)]),                  # a labelled size-1 axis broadcasts
    ("abc,cd,db->a", [(2, 3, 4), (4, 2), (2, 3)]),    # a contraction that closes a loop
    ("i j , j k -> i k", [(2, 3), (3, 4)]),           # spaces are ignored
    ("ab...,b->...a", [(2, 3, 2, 2), (3,)]),          # ellipsis in the middle of the output
    ("i...,j", [(3, 2), (4,)]),                       # implicit output: the ellipsis first
]
EINSUM_IDS = [f"{s}|{'x'.join(map(str, shapes))}" for s, shapes in EINSUM]


def _operands(shapes, seed_text):
    rng = seeded(seed_text)
    return [rng.normal(size=s) for s in shapes], rng


@pytest.mark.parametrize("subscripts, shapes", EINSUM, ids=EINSUM_IDS)
def test_einsum_table(subscripts, shapes):
    ops, rng = _operands(shapes, subscripts + str(shapes))
    expected = np.einsum(subscripts, *ops)
    out = fnp.einsum(subscripts, *ops)
    assert type(out) in (np.ndarray, np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)

    def t_fn(*xs):
        return torch.einsum(subscripts.replace(" ", ""), *xs)
    t_ops = [to_torch(x) for x in ops]

    # VJP in every operand at once (and so in every combination)
    ct = rng.normal(size=np.shape(expected))
    out, pullback = fgrad.vjp(lambda *xs: fnp.einsum(subscripts, *xs), *ops)
    _, t_pullback = torch.func.vjp(t_fn, *t_ops)
    assert_all_close(pullback(ct), t_pullback(to_torch(ct)), rtol=1e-10, atol=1e-12)

    # JVP with a tangent on every operand, and on each operand alone
    tangents = [rng.normal(size=s) for s in shapes]
    for active in [range(len(ops))] + [[i] for i in range(len(ops))]:
        ts = [t if i in active else np.zeros_like(t) for i, t in enumerate(tangents)]
        _, ours = fgrad.jvp(lambda *xs: fnp.einsum(subscripts, *xs), tuple(ops), tuple(ts))
        _, theirs = torch.func.jvp(t_fn, tuple(t_ops), tuple(to_torch(t) for t in ts))
        np.testing.assert_allclose(ours, to_numpy(theirs), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("subscripts, shapes", EINSUM, ids=EINSUM_IDS)
def test_einsum_vmap_on_each_operand(subscripts, shapes):
    """The batch axis on operand i alone (at the last position), then on every operand (first)."""
    ops, rng = _operands(shapes, "vmap" + subscripts + str(shapes))
    size = 2
    batched = [rng.normal(size=(size,) + s) for s in shapes]
    plans = [[i] for i in range(len(ops))] + [list(range(len(ops)))]
    for plan in plans:
        args = [np.moveaxis(batched[i], 0, -1) if (i in plan and len(plan) == 1) else
                batched[i] if i in plan else ops[i] for i in range(len(ops))]
        in_axes = tuple((-1 if len(plan) == 1 else 0) if i in plan else None for i in range(len(ops)))
        got = fgrad.vmap(lambda *xs: fnp.einsum(subscripts, *xs), in_axes=in_axes)(*args)
        loop = np.stack([np.einsum(subscripts, *[batched[i][k] if i in plan else ops[i]
                                                 for i in range(len(ops))]) for k in range(size)])
        np.testing.assert_allclose(got, loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("subscripts, shapes", EINSUM[:12], ids=EINSUM_IDS[:12])
def test_einsum_vmap_of_grad_and_hessian_vector_product(subscripts, shapes):
    """Per-example gradients of <einsum(x, ...)^2> and a second-order check, against torch."""
    ops, rng = _operands(shapes, "grad" + subscripts + str(shapes))
    xs = rng.normal(size=(2,) + shapes[0])

    def loss(x, *rest):
        return fnp.sum(fnp.einsum(subscripts, x, *rest) ** 2)

    def t_loss(x, *rest):
        return (torch.einsum(subscripts, x, *rest) ** 2).sum()

    got = fgrad.vmap(fgrad.grad(loss), in_axes=(0,) + (None,) * (len(ops) - 1))(xs, *ops[1:])
    t_rest = [to_torch(o) for o in ops[1:]]
    theirs = np.stack([to_numpy(torch.func.grad(t_loss)(to_torch(x), *t_rest)) for x in xs])
    np.testing.assert_allclose(got, theirs, rtol=1e-10, atol=1e-12)
    v = rng.normal(size=shapes[0])
    _, hvp = fgrad.jvp(lambda x: fgrad.grad(loss)(x, *ops[1:]), (ops[0],), (v,))
    _, t_hvp = torch.func.jvp(lambda x: torch.func.grad(t_loss)(x, *t_rest), (to_torch(ops[0]),),
                              (to_torch(v),))
    np.testing.assert_allclose(hvp, to_numpy(t_hvp), rtol=1e-10, atol=1e-12)


@st.composite
def einsum_problems(draw):
    """A random einsum: 1-3 operands over labels a-e with fixed sizes, explicit or implicit."""
    sizes = dict(zip("abcde", draw(st.lists(st.integers(1, 3), min_size=5, max_size=5))))
    n_ops = draw(st.integers(1, 3))
    terms = [draw(st.lists(st.sampled_from("abcde"), min_size=0, max_size=3)) for _ in range(n_ops)]
    used = sorted({lab for t in terms for lab in t})
    if draw(st.booleans()):
        spec = ",".join("".join(t) for t in terms)
    else:
        out = draw(st.permutations(used))[:draw(st.integers(0, len(used)))]
        spec = ",".join("".join(t) for t in terms) + "->" + "".join(out)
    shapes = [tuple(sizes[lab] for lab in t) for t in terms]
    return spec, shapes, draw(st.integers(0, 2 ** 32 - 1))


@settings(deadline=None, max_examples=4 * EXAMPLES)
@given(problem=einsum_problems())
def test_einsum_random_expressions(problem):
    subscripts, shapes, seed = problem
    rng = np.random.default_rng(seed)
    ops = [rng.normal(size=s) for s in shapes]
    expected = np.einsum(subscripts, *ops)
    np.testing.assert_allclose(fnp.einsum(subscripts, *ops), expected, rtol=1e-10, atol=1e-12)
    ct = rng.normal(size=np.shape(expected))
    _, pullback = fgrad.vjp(lambda *xs: fnp.einsum(subscripts, *xs), *ops)
    _, t_pullback = torch.func.vjp(lambda *xs: torch.einsum(subscripts, *xs),
                                   *[to_torch(o) for o in ops])
    assert_all_close(pullback(ct), t_pullback(to_torch(ct)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("subscripts, shapes, message", [
    ("ij,jk->ik", [(2, 3)], r"1 operand\(s\)"),
    ("ij,jk->ik", [(2, 3), (4, 5)], r"label 'j' has sizes 3 and 4"),
    ("ijk", [(2, 3)], r"term 'ijk' names 3 axes but its operand has 2"),
    ("ij->iz", [(2, 3)], r"output label\(s\) \['z'\] appear in no input"),
    ("ij->ii", [(2, 2)], r"output 'ii' repeats a label"),
    ("...ij->ij", [(4, 2, 3)], r"'\.\.\.' axes must appear in the output"),
    ("ii->i", [(1, 3)], r"label 'i' repeats in one operand with sizes \[1, 3\]"),
    ("i.j", [(2, 3)], r"malformed ellipsis"),
    ("i1", [(2, 3)], r"only letters"),
])
def test_einsum_errors(subscripts, shapes, message):
    with pytest.raises(ValueError, match=message) as info:
        fnp.einsum(subscripts, *[np.ones(s) for s in shapes])
    assert "fgrad.numpy.einsum" in str(info.value) and str(shapes[0]) in str(info.value)
