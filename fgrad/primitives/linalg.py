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
* Complex matrices follow JAX's convention (``fgrad/primitives/complex.py``): ``inv``,
  ``solve`` and ``triangular_solve`` are holomorphic, so their rules hold as written (plain
  transposes, no conjugates). ``cholesky`` and ``eigh`` are functions of a *Hermitian* matrix
  (``A = L L^H``, ``A = V diag(w) V^H`` with real ``w``) and ``slogdet``'s outputs are not
  holomorphic; their JVPs use ``X^H`` where the real ones use ``X^T``, and their VJPs are the
  transposes under the bilinear pairing ``Re(sum(u * v))``: ``conj(adjoint(conj(g)))``, with
  ``adjoint`` the usual complex adjoint (torch's backward formula).
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


def _conj(x):
    """conj(X) for complex X; a real X as it is (no copy, no operation on the tape)."""
    return fnp.conj(x) if dtype_of(x).kind == "c" else x


def _H(x):
    """The conjugate transpose X^H of the last two axes (X^T for real X)."""
    return _T(_conj(x))


def _sym(x):
    """The symmetric part (X + X^T) / 2; for complex X the Hermitian part (X + X^H) / 2."""
    return (x + _H(x)) / 2


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


def _real_aval(shape, *operands):
    """The real counterpart (log|det|, eigenvalues of a Hermitian matrix are real)."""
    return ShapedArray(shape, np.finfo(_linalg_dtype(*operands)).dtype)


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
    t = fnp.sum(_diag(solve_p.bind(a, a_dot)), axis=-1)     # d log det A = tr(A^-1 dA)
    if dtype_of(a).kind != "c":
        # sign is locally constant;  d log|det A| = tr(A^-1 dA)
        return [sign, logabsdet], [zero, t]
    # complex A:  d log|det A| = Re t,  d sign = d e^(i arg det A) = i Im(t) sign
    return [sign, logabsdet], [1j * fnp.imag(t) * sign, fnp.real(t)]


def _slogdet_vjp(g, ans, a):
    (g_sign, g_logabsdet), (sign, _) = g, ans
    # A_bar = c A^-T with c = g_logabsdet (real A: the sign has no derivative); complex A:
    # c = g_logabsdet + i Im(g_sign sign), so that Re(c t) = g_logabsdet Re t + Re(g_sign i Im(t) sign)
    c = g_logabsdet if dtype_of(a).kind != "c" else g_logabsdet + 1j * fnp.imag(g_sign * sign)
    return fnp.expand_dims(c, (-2, -1)) * _T(inv_p.bind(a))


slogdet_p.jvp = _slogdet_jvp
slogdet_p.vjp = (_slogdet_vjp,)
slogdet_p.abstract_eval = lambda a: [_aval(shape_of(a)[:-2], a), _real_aval(shape_of(a)[:-2], a)]
vectorized_batch_rule(slogdet_p)


# --- cholesky: A = L L^T with L lower triangular -------------------------------------------------

cholesky_p = Primitive("cholesky", lambda a: np.linalg.cholesky(a))


def _inv_l_x_inv_lt(L, x):
    """L^-1 X L^-T by two triangular solves: (L^-1 (L^-1 X)^T)^T (L^-H, ^H for complex L)."""
    y = triangular_solve_p.bind(L, x, lower=True)
    return _H(triangular_solve_p.bind(L, _H(y), lower=True))


def _cholesky_jvp(primals, tangents):
    (a,), (a_dot,) = primals, tangents
    L = cholesky_p.bind(a)
    # dA = dL L^T + L dL^T  =>  L^-1 dA L^-T = L^-1 dL + (L^-1 dL)^T, whose lower triangle with
    # half its diagonal is the lower-triangular L^-1 dL:  dL = L Phi(L^-1 sym(dA) L^-T)
    # (complex: ^H for ^T; the diagonal of L^-1 dL is real, as L's is)
    return L, L @ _phi(_inv_l_x_inv_lt(L, _sym(a_dot)))


def _cholesky_vjp(g, L, a):
    # the adjoint of the JVP (Phi is self-adjoint):  A_bar = sym(L^-T Phi(L^T g) L^-1); complex:
    # A_bar = conj(herm(L^-H Phi(L^H conj(g)) L^-1)) (the adjoint, conjugated around: JAX's pairing)
    g = _conj(g)
    z = triangular_solve_p.bind(_H(L), _phi(_H(L) @ g), lower=False)        # L^-T Phi(L^T g)
    return _conj(_sym(_H(triangular_solve_p.bind(_H(L), _H(z), lower=False))))   # (L^-T z^T)^T = z L^-1


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
    m = _H(V) @ _sym(a_dot) @ V
    # dw_i = v_i^T dA v_i;  dV = V (F o V^T dA V), F_ij = 1/(w_j - w_i), zero diagonal
    # (complex Hermitian A: V^H for V^T, and dw = Re diag(m), as JAX; w is real)
    dw = _diag(m) if dtype_of(m).kind != "c" else fnp.real(_diag(m))
    return [w, V], [dw, V @ (_gap_inverses(w) * m)]


def _eigh_vjp(g, ans, a):
    (g_w, g_V), (w, V) = g, ans
    # A_bar = sym(V (diag(g_w) + F o V^T g_V) V^T); complex: the adjoint with V^H, conjugated
    # around (JAX's pairing): A_bar = conj(herm(V (diag(g_w) + F o V^H conj(g_V)) V^H))
    inner = _diag_embed(g_w) + _gap_inverses(w) * (_H(V) @ _conj(g_V))
    return _conj(_sym(V @ inner @ _H(V)))


eigh_p.jvp = _eigh_jvp
eigh_p.vjp = (_eigh_vjp,)
eigh_p.abstract_eval = lambda a: [_real_aval(shape_of(a)[:-1], a), _aval(shape_of(a), a)]
vectorized_batch_rule(eigh_p)


# ================================================================================================
# svd, pinv, eig (issue 10: HIPS autograd's linalg). Real matrices; the formulas are JAX's
# (svd JVP), Townsend's "Differentiating the singular value decomposition" (svd VJP, as HIPS
# autograd's), Golub & Pereyra 1973 (pinv) and Giles 2008 / Boeddeker et al. 2017 (eig).
# ================================================================================================

def _safe_inverse(x):
    """1 / x, and 0 where x is exactly 0 (a zero singular value, a repeated one's gap)."""
    at_zero = x == 0
    return fnp.where(at_zero, 0, 1 / fnp.where(at_zero, 1, x))


# --- svd: A = U diag(s) V^T, s descending; U (..., m, k), V^T (..., k, n), k = min(m, n) --------

def _svd_impl(a, *, full_matrices, compute_uv, hermitian):
    if compute_uv:
        return list(np.linalg.svd(a, full_matrices=full_matrices, hermitian=hermitian))
    return [np.linalg.svd(a, compute_uv=False, hermitian=hermitian)]


svd_p = Primitive("svd", _svd_impl, multiple_results=True)


def _reduced_svd(a, hermitian):
    return svd_p.bind(a, full_matrices=False, compute_uv=True, hermitian=hermitian)


def _check_svd_derivative(a, full_matrices):
    m, n = shape_of(a)[-2:]
    if full_matrices and m != n:
        raise ValueError(f"fgrad.numpy.linalg.svd: no derivative for full_matrices=True with a "
                         f"non-square matrix (shape {shape_of(a)}): the {abs(m - n)} extra "
                         f"singular vectors are not unique. Use full_matrices=False.")


def _svd_gap_inverses(s):
    """F_ij = 1 / (s_j^2 - s_i^2), as (s_j + s_i)(s_j - s_i) for accuracy; 0 on the diagonal
    and for repeated singular values."""
    row, col = fnp.expand_dims(s, -2), fnp.expand_dims(s, -1)
    return _safe_inverse((row + col) * (row - col))


def _svd_jvp(primals, tangents, *, full_matrices, compute_uv, hermitian):
    (a,), (a_dot,) = primals, tangents
    if hermitian:
        a_dot = _sym(a_dot)
    U, s, Vh = _reduced_svd(a, hermitian)
    V = _T(Vh)
    dS = _T(U) @ a_dot @ V
    ds = _diag(dS)                                     # ds_i = u_i^T dA v_i
    if not compute_uv:
        return [s], [ds]
    _check_svd_derivative(a, full_matrices)
    # dU = U (F o (dS S + S dS^T)),  dV = V (F o (S dS + dS^T S)),  F_ij = 1 / (s_j^2 - s_i^2);
    # the part of dA outside the singular subspaces turns the k columns of U (or of V) out of it
    F = _svd_gap_inverses(s)
    dSS = dS * fnp.expand_dims(s, -2)                  # dS diag(s)
    SdS = fnp.expand_dims(s, -1) * dS                  # diag(s) dS
    dU = U @ (F * (dSS + _T(dSS)))
    dV = V @ (F * (SdS + _T(SdS)))
    m, n = shape_of(a)[-2:]
    s_inv = fnp.expand_dims(_safe_inverse(s), -2)
    if m > n:   # dU += (I - U U^T) dA V diag(1/s)
        dAV = a_dot @ V
        dU = dU + (dAV - U @ (_T(U) @ dAV)) * s_inv
    if n > m:   # dV += (I - V V^T) dA^T U diag(1/s)
        dAtU = _T(a_dot) @ U
        dV = dV + (dAtU - V @ (Vh @ dAtU)) * s_inv
    return [U, s, Vh], [dU, ds, _T(dV)]


def _svd_vjp(g, ans, a, *, full_matrices, compute_uv, hermitian):
    if not compute_uv:   # A_bar = U diag(g_s) V^T
        U, _, Vh = _reduced_svd(a, hermitian)
        a_bar = (U * fnp.expand_dims(g[0], -2)) @ Vh
        return _sym(a_bar) if hermitian else a_bar
    _check_svd_derivative(a, full_matrices)
    (U, s, Vh), (g_U, g_s, g_Vh) = ans, g
    V, g_V = _T(Vh), _T(g_Vh)
    # A_bar = U [(F o (U^T g_U - g_U^T U)) S + diag(g_s) + S (F o (V^T g_V - g_V^T V))] V^T
    F = _svd_gap_inverses(s)
    UtgU, VtgV = _T(U) @ g_U, _T(V) @ g_V
    inner = ((F * (UtgU - _T(UtgU))) * fnp.expand_dims(s, -2) + _diag_embed(g_s)
             + fnp.expand_dims(s, -1) * (F * (VtgV - _T(VtgV))))
    a_bar = U @ inner @ Vh
    m, n = shape_of(a)[-2:]
    s_inv = _safe_inverse(s)
    if m > n:   # + (I - U U^T) g_U diag(1/s) V^T
        a_bar = a_bar + ((g_U - U @ UtgU) * fnp.expand_dims(s_inv, -2)) @ Vh
    if n > m:   # + U diag(1/s) g_V^T (I - V V^T)
        a_bar = a_bar + (U * fnp.expand_dims(s_inv, -2)) @ _T(g_V - V @ VtgV)
    return _sym(a_bar) if hermitian else a_bar


def _svd_abstract_eval(a, *, full_matrices, compute_uv, hermitian):
    batch, (m, n) = shape_of(a)[:-2], shape_of(a)[-2:]
    k = min(m, n)
    s = _aval(batch + (k,), a)
    if not compute_uv:
        return [s]
    ku, kv = (m, n) if full_matrices else (k, k)
    return [_aval(batch + (m, ku), a), s, _aval(batch + (kv, n), a)]


svd_p.jvp = _svd_jvp
svd_p.vjp = (_svd_vjp,)
svd_p.abstract_eval = _svd_abstract_eval
vectorized_batch_rule(svd_p)


# --- pinv: the Moore-Penrose pseudo-inverse A+ (n, m) of A (m, n) --------------------------------

pinv_p = Primitive("pinv", lambda a, *, rcond, hermitian:
                   np.linalg.pinv(a, rcond=rcond, hermitian=hermitian))


def _pinv_jvp(primals, tangents, *, rcond, hermitian):
    (a,), (a_dot,) = primals, tangents
    P = pinv_p.bind(a, rcond=rcond, hermitian=hermitian)
    if hermitian:
        a_dot = _sym(a_dot)
    dAt = _T(a_dot)
    # for locally constant rank (Golub & Pereyra):
    # dA+ = -A+ dA A+ + A+ A+^T dA^T (I - A A+) + (I - A+ A) dA^T A+^T A+
    return P, (-(P @ a_dot @ P) + (P @ _T(P)) @ (dAt - (dAt @ a) @ P)
               + (dAt - P @ (a @ dAt)) @ (_T(P) @ P))


def _pinv_vjp(g, P, a, *, rcond, hermitian):
    gt = _T(g)
    # the adjoint of the JVP (A A+ and A+ A are symmetric projections):
    # A_bar = -A+^T g A+^T + (I - A A+) g^T A+ A+^T + A+^T A+ g^T (I - A+ A)
    a_bar = (-(_T(P) @ g @ _T(P)) + (gt - a @ (P @ gt)) @ (P @ _T(P))
             + (_T(P) @ P) @ (gt - (gt @ P) @ a))
    return _sym(a_bar) if hermitian else a_bar


pinv_p.jvp = _pinv_jvp
pinv_p.vjp = (_pinv_vjp,)
pinv_p.abstract_eval = lambda a, *, rcond, hermitian: _aval(shape_of(a)[:-2] + shape_of(a)[::-1][:2], a)
vectorized_batch_rule(pinv_p)


# --- eig: A V = V diag(w) with real w and unit-norm real columns V (real eigenvalues only) --------

def _eig_impl(a):
    w, V = np.linalg.eig(a)
    if w.dtype.kind == "c":
        raise np.linalg.LinAlgError(
            f"fgrad.numpy.linalg.eig: the {'matrix' if np.ndim(a) == 2 else 'stack of matrices'} "
            f"of shape {np.shape(a)} has complex eigenvalues (numpy.linalg.eig returns "
            f"{w.dtype} for it); fgrad's eig supports only matrices "
            f"whose eigenvalues are all real. For a symmetric matrix use eigh.")
    return [w, V]


eig_p = Primitive("eig", _eig_impl, multiple_results=True)


def _eig_jvp(primals, tangents):
    (a,), (a_dot,) = primals, tangents
    w, V = eig_p.bind(a)
    M = solve_p.bind(V, a_dot @ V)                     # V^-1 dA V
    # dw_i = (V^-1 dA V)_ii;  dV = V (F o V^-1 dA V), F_ij = 1/(w_j - w_i), then each column
    # keeps unit norm: dv_i -= v_i (v_i^T dv_i)
    dV = V @ (_gap_inverses(w) * M)
    return [w, V], [_diag(M), dV - V * fnp.expand_dims(_diag(_T(V) @ dV), -2)]


def _eig_vjp(g, ans, a):
    (g_w, g_V), (w, V) = g, ans
    # the adjoint of the JVP:  A_bar = V^-T (diag(g_w) + F o V^T (g_V - V diag(V^T g_V))) V^T
    g_V = g_V - V * fnp.expand_dims(_diag(_T(V) @ g_V), -2)
    inner = _diag_embed(g_w) + _gap_inverses(w) * (_T(V) @ g_V)
    return solve_p.bind(_T(V), inner @ _T(V))


eig_p.jvp = _eig_jvp
eig_p.vjp = (_eig_vjp,)
eig_p.abstract_eval = lambda a: [_aval(shape_of(a)[:-1], a), _aval(shape_of(a), a)]
vectorized_batch_rule(eig_p)
