"""Linear-algebra primitives: inv, solve, triangular_solve, slogdet, cholesky, eigh.

Each primitive acts on the last two axes and treats any leading axes as a batch, as
``np.linalg`` does, so its batching rule only moves the vmapped axis to the front
(:func:`~fgrad.vmap.vectorized_batch_rule`). Operands of the two-operand primitives (``solve``,
``triangular_solve``) must already have the same leading axes: ``fgrad.numpy.linalg`` broadcasts
them and turns vector right-hand sides into one-column matrices before binding.

Conventions (those of JAX and ``torch.linalg``):

* Matrix derivatives are written with ``A^-T = (A^-1)^T``, ``tr`` the trace over the last two
  axes and ``sym(X) = (X + X^T) / 2``.
* ``cholesky`` and ``eigh`` are functions of a *symmetric* matrix (NumPy reads only the lower
  triangle). Their JVPs symmetrise the tangent first and their VJPs return symmetric
  cotangents, so the two rules are adjoint to each other and match ``torch.func``.
* ``eigh``'s derivative divides by eigenvalue gaps ``w_j - w_i``: it assumes distinct
  eigenvalues. A pair with an exactly zero gap contributes nothing (exact for functions of the
  eigenvalues alone, where g_V = 0); nearly equal eigenvalues make it blow up, as in JAX and
  torch, because the eigenvectors themselves are then ill-defined.
* Every rule is written in fgrad operations (``@`` on tracers is ``fnp.matmul``), so higher
  derivatives and ``vmap`` of derivatives need nothing more.
"""
from __future__ import annotations

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of, shape_of, zero
from ..jvp import defjvp, sum_tangents
from ..staging import ShapedArray
from ..vmap import vectorized_batch_rule


# --- helpers (in fgrad ops) ---------------------------------------------------------------------

def _T(x):
    """Transpose of the last two axes."""
    return fnp.swapaxes(x, -1, -2)


def _sym(x):
    """The symmetric part (X + X^T) / 2."""
    return (x + _T(x)) / 2


def _diag(x):
    """The diagonal of the last two axes, shape (..., n)."""
    return fnp.diagonal(x, axis1=-2, axis2=-1)


def _diag_embed(v):
    """The (..., n, n) diagonal matrices with ``v`` (..., n) on their diagonal."""
    n = shape_of(v)[-1]
    return fnp.expand_dims(v, -1) * np.eye(n, dtype=dtype_of(v))


def _phi(x):
    """Lower triangle of ``x`` with the diagonal halved (Murray 2016's Phi)."""
    n = shape_of(x)[-1]
    return x * (np.tri(n, dtype=dtype_of(x)) - 0.5 * np.eye(n, dtype=dtype_of(x)))


def _linalg_dtype(*avals):
    """The dtype np.linalg computes in: float32 stays float32; float64 and integers use float64."""
    return np.result_type(*(dtype_of(a) for a in avals), np.float32)


def _aval(shape, *operands):
    return ShapedArray(shape, _linalg_dtype(*operands))


# --- inv: A^-1 ----------------------------------------------------------------------------------

inv_p = Primitive("inv", lambda a: np.linalg.inv(a))
# d(A^-1) = -A^-1 dA A^-1
defjvp(inv_p, lambda a_dot, ans, a: -(ans @ a_dot @ ans))
# A_bar = -A^-T g A^-T
inv_p.vjp = (lambda g, ans, a: -(_T(ans) @ g @ _T(ans)),)
inv_p.abstract_eval = lambda a: _aval(shape_of(a), a)
vectorized_batch_rule(inv_p)


# --- solve: x = A^-1 b, with b a stack of matrices (..., n, k) -----------------------------------

solve_p = Primitive("solve", lambda a, b: np.linalg.solve(a, b))


def _solve_jvp(primals, tangents):
    (a, b), (a_dot, b_dot) = primals, tangents
    x = solve_p.bind(a, b)
    # A x = b  =>  dA x + A dx = db  =>  dx = A^-1 (db - dA x): one solve for both tangents
    rhs = sum_tangents([b_dot, zero if a_dot is zero else -(a_dot @ x)])
    return x, solve_p.bind(a, rhs)


solve_p.jvp = _solve_jvp
solve_p.vjp = (
    # A_bar = -A^-T g x^T
    lambda g, ans, a, b: -(solve_p.bind(_T(a), g) @ _T(ans)),
    # b_bar = A^-T g
    lambda g, ans, a, b: solve_p.bind(_T(a), g),
)
solve_p.abstract_eval = lambda a, b: _aval(shape_of(b), a, b)
vectorized_batch_rule(solve_p)


# --- triangular_solve: x = T^-1 b with T the lower (or upper) triangle of a ----------------------

def _triangle(a, lower):
    return fnp.tril(a) if lower else fnp.triu(a)


def _triangular_solve_impl(a, b, *, lower):
    # NumPy has no triangular solver (and scipy is not a dependency): LU of the triangle is
    # backward stable and runs in LAPACK; it costs O(n^3) instead of substitution's O(n^2 k).
    a = np.asarray(a)
    return np.linalg.solve(np.tril(a) if lower else np.triu(a), b)


triangular_solve_p = Primitive("triangular_solve", _triangular_solve_impl)


def _triangular_solve_jvp(primals, tangents, *, lower):
    (a, b), (a_dot, b_dot) = primals, tangents
    x = triangular_solve_p.bind(a, b, lower=lower)
    # only the triangle is read:  dx = T^-1 (db - tri(dA) x)
    rhs = sum_tangents([b_dot, zero if a_dot is zero else -(_triangle(a_dot, lower) @ x)])
    return x, triangular_solve_p.bind(a, rhs, lower=lower)


triangular_solve_p.jvp = _triangular_solve_jvp
triangular_solve_p.vjp = (
    # A_bar = tri(-T^-T g x^T)
    lambda g, ans, a, b, *, lower:
        _triangle(-(triangular_solve_p.bind(_T(a), g, lower=not lower) @ _T(ans)), lower),
    # b_bar = T^-T g  (T^T is triangular the other way up)
    lambda g, ans, a, b, *, lower: triangular_solve_p.bind(_T(a), g, lower=not lower),
)
triangular_solve_p.abstract_eval = lambda a, b, *, lower: _aval(shape_of(b), a, b)
vectorized_batch_rule(triangular_solve_p)


# --- slogdet: (sign det A, log |det A|) ----------------------------------------------------------

slogdet_p = Primitive("slogdet", lambda a: list(np.linalg.slogdet(a)), multiple_results=True)


def _slogdet_jvp(primals, tangents):
    (a,), (a_dot,) = primals, tangents
    sign, logabsdet = slogdet_p.bind(a)
    # sign is locally constant;  d log|det A| = tr(A^-1 dA)
    return [sign, logabsdet], [zero, fnp.sum(_diag(solve_p.bind(a, a_dot)), axis=-1)]


slogdet_p.jvp = _slogdet_jvp
# A_bar = g_logabsdet A^-T  (the sign output has no derivative)
slogdet_p.vjp = (lambda g, ans, a: fnp.expand_dims(g[1], (-2, -1)) * _T(inv_p.bind(a)),)
slogdet_p.abstract_eval = lambda a: [_aval(shape_of(a)[:-2], a)] * 2
vectorized_batch_rule(slogdet_p)


# --- cholesky: A = L L^T with L lower triangular -------------------------------------------------

cholesky_p = Primitive("cholesky", lambda a: np.linalg.cholesky(a))


def _inv_l_x_inv_lt(L, x):
    """L^-1 X L^-T by two triangular solves: (L^-1 (L^-1 X)^T)^T."""
    y = triangular_solve_p.bind(L, x, lower=True)
    return _T(triangular_solve_p.bind(L, _T(y), lower=True))


def _cholesky_jvp(primals, tangents):
    (a,), (a_dot,) = primals, tangents
    L = cholesky_p.bind(a)
    # dA = dL L^T + L dL^T  =>  L^-1 dA L^-T = L^-1 dL + (L^-1 dL)^T, whose lower triangle with
    # half its diagonal is the lower-triangular L^-1 dL:  dL = L Phi(L^-1 sym(dA) L^-T)
    return L, L @ _phi(_inv_l_x_inv_lt(L, _sym(a_dot)))


def _cholesky_vjp(g, L, a):
    # the adjoint of the JVP (Phi is self-adjoint):  A_bar = sym(L^-T Phi(L^T g) L^-1)
    z = triangular_solve_p.bind(_T(L), _phi(_T(L) @ g), lower=False)        # L^-T Phi(L^T g)
    return _sym(_T(triangular_solve_p.bind(_T(L), _T(z), lower=False)))     # (L^-T z^T)^T = z L^-1


cholesky_p.jvp = _cholesky_jvp
cholesky_p.vjp = (_cholesky_vjp,)
cholesky_p.abstract_eval = lambda a: _aval(shape_of(a), a)
vectorized_batch_rule(cholesky_p)


# --- eigh: A = V diag(w) V^T with ascending w and orthonormal V ----------------------------------

eigh_p = Primitive("eigh", lambda a: list(np.linalg.eigh(a)), multiple_results=True)


def _gap_inverses(w):
    """F_ij = 1 / (w_j - w_i), and 0 where the gap is exactly 0 (the diagonal, repeated w)."""
    gaps = fnp.expand_dims(w, -2) - fnp.expand_dims(w, -1)
    no_gap = gaps == 0
    return fnp.where(no_gap, 0, 1 / fnp.where(no_gap, 1, gaps))


def _eigh_jvp(primals, tangents):
    (a,), (a_dot,) = primals, tangents
    w, V = eigh_p.bind(a)
    m = _T(V) @ _sym(a_dot) @ V
    # dw_i = v_i^T dA v_i;  dV = V (F o V^T dA V), F_ij = 1/(w_j - w_i), zero diagonal
    return [w, V], [_diag(m), V @ (_gap_inverses(w) * m)]


def _eigh_vjp(g, ans, a):
    (g_w, g_V), (w, V) = g, ans
    # A_bar = sym(V (diag(g_w) + F o V^T g_V) V^T)
    inner = _diag_embed(g_w) + _gap_inverses(w) * (_T(V) @ g_V)
    return _sym(V @ inner @ _T(V))


eigh_p.jvp = _eigh_jvp
eigh_p.vjp = (_eigh_vjp,)
eigh_p.abstract_eval = lambda a: [_aval(shape_of(a)[:-1], a), _aval(shape_of(a), a)]
vectorized_batch_rule(eigh_p)
