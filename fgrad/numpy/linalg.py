"""``fgrad.numpy.linalg``: NumPy's linear algebra, differentiable and batchable.

The functions take NumPy's arguments and return what ``numpy.linalg`` returns on plain
arrays; inside a transform they bind the primitives of ``fgrad/primitives/linalg.py``, which
carry the derivative and batching rules. Leading axes are batch axes, as in NumPy::

    >>> import numpy as np, fgrad, fgrad.numpy as fnp
    >>> logdet = lambda a: fnp.linalg.slogdet(a).logabsdet
    >>> a = np.eye(3) * 2.0
    >>> fgrad.grad(logdet)(a)                           # = inv(a).T
    >>> fgrad.vmap(fgrad.hessian(logdet))(np.stack([a, 3 * a])).shape
    (2, 3, 3, 3, 3)

Differences from NumPy, written down: ``cholesky`` and ``eigh`` differentiate as functions of
a symmetric matrix (their gradients are symmetric, as in JAX and torch); ``eigh``'s
derivative needs distinct eigenvalues, ``svd``'s distinct non-zero singular values (for the
singular vectors; the singular values alone are fine), ``eig``'s distinct eigenvalues;
``eig``/``eigvals`` accept only matrices whose eigenvalues are all real (NumPy's real-dtype
case) and raise otherwise; ``svd(full_matrices=True)`` of a non-square matrix has no
derivative (its extra vectors are not unique), as in JAX and HIPS autograd; ``pinv``'s
derivative assumes the rank does not change nearby; ``norm``'s 2-norm has gradient 0 at 0 (as
torch). ``solve_triangular`` is SciPy's function (``scipy.linalg.solve_triangular``), batched.
"""
from __future__ import annotations

import builtins
from collections import namedtuple

import numpy as np

from ..core import Tracer, dtype_of, shape_of
from ..primitives import linalg as la
from ._funcs import (_arr, _axis, abs, astype, bind, broadcast_to, exp, matmul, max, min,
                     moveaxis, ndim, reshape, sqrt, squeeze, sum, swapaxes, where)
from ._funcs import conj, real  # complex inputs

__all__ = ["LinAlgError", "SlogdetResult", "EighResult", "EigResult", "SVDResult", "inv",
           "solve", "solve_triangular", "det", "slogdet", "cholesky", "eigh", "eigvalsh", "eig",
           "eigvals", "svd", "svdvals", "pinv", "norm", "matrix_power"]

LinAlgError = np.linalg.LinAlgError
SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
EigResult = namedtuple("EigResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])


def _float(a):
    """``a`` as an array of a float (or complex) dtype (np.linalg computes integers in float64)."""
    a = _arr(a)
    return a if dtype_of(a).kind in "fc" else astype(a, np.float64)


def _check_square(fn, a):
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise LinAlgError(f"fgrad.numpy.linalg.{fn}: expected a square matrix or a stack of them, "
                          f"shape (..., n, n), got shape {s}")


def _matrix_rhs(fn, a, b):
    """``(a, b_matrix, vector)``: ``b`` as a stack of columns with ``a``'s leading axes.

    As ``numpy.linalg.solve`` in NumPy 2: a 1-D ``b`` of shape (n,) is one vector; any other
    ``b`` is a stack of (n, k) matrices. Leading axes of ``a`` and ``b`` broadcast.
    """
    n = shape_of(a)[-1]
    vector = ndim(b) == 1
    bm = reshape(b, (-1, 1)) if vector else b
    sb = shape_of(bm)
    if len(sb) < 2 or sb[-2] != n:
        raise ValueError(f"fgrad.numpy.linalg.{fn}: a of shape {shape_of(a)} needs b of shape "
                         f"({n},) or (..., {n}, k), got b of shape {shape_of(b)}")
    try:
        batch = np.broadcast_shapes(shape_of(a)[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"fgrad.numpy.linalg.{fn}: the leading (batch) axes of a {shape_of(a)} "
                         f"and b {shape_of(b)} cannot be broadcast together") from None
    return broadcast_to(a, batch + (n, n)), broadcast_to(bm, batch + sb[-2:]), vector


def inv(a):
    """The inverse of each (n, n) matrix in ``a`` (..., n, n)."""
    a = _float(a)
    _check_square("inv", a)
    return bind(la.inv_p, a)


def solve(a, b):
    """``x`` with ``a @ x == b``: ``a`` (..., n, n); ``b`` (n,) (one vector, result (..., n)) or
    (..., n, k) (a stack of matrices, result (..., n, k)), with broadcast leading axes."""
    a, b = _float(a), _float(b)
    _check_square("solve", a)
    a, bm, vector = _matrix_rhs("solve", a, b)
    x = bind(la.solve_p, a, bm)
    return squeeze(x, -1) if vector else x


def solve_triangular(a, b, trans=0, lower=False):
    """``x`` with ``op(a) @ x == b`` for triangular ``a``, as ``scipy.linalg.solve_triangular``.

    Only the lower (``lower=True``) or upper triangle of ``a`` is read, and only that triangle
    gets a derivative. ``trans``: 0 or 'N' solves ``a x = b``; 1, 'T', 2 or 'C' solves
    ``a^T x = b``. ``b`` is (n,) or (..., n, k) as in :func:`solve`, and leading axes broadcast.
    """
    a, b = _float(a), _float(b)
    _check_square("solve_triangular", a)
    if trans in (1, 2, "T", "C"):
        a, lower = swapaxes(a, -1, -2), not lower
    elif trans not in (0, "N"):
        raise ValueError(f"fgrad.numpy.linalg.solve_triangular: trans must be 0, 1, 2, 'N', 'T' "
                         f"or 'C', got {trans!r}")
    a, bm, vector = _matrix_rhs("solve_triangular", a, b)
    x = bind(la.triangular_solve_p, a, bm, lower=builtins.bool(lower))
    return squeeze(x, -1) if vector else x


def slogdet(a):
    """``(sign, logabsdet)`` with ``det(a) = sign * exp(logabsdet)``, computed without overflow.

    ``logabsdet`` has derivative ``tr(a^-1 da)`` (its gradient is ``inv(a).T``); ``sign`` has none.
    """
    a = _float(a)
    _check_square("slogdet", a)
    return SlogdetResult(*bind(la.slogdet_p, a))


def det(a):
    """The determinant, as ``sign * exp(logabsdet)``. Its gradient ``det(a) inv(a).T`` is
    computed through ``inv(a)``, so it needs an invertible ``a`` (torch also handles singular
    matrices, where the gradient is the transposed adjugate)."""
    sign, logabsdet = slogdet(a)
    return sign * exp(logabsdet)


def cholesky(a, *, upper=False):
    """The lower-triangular ``L`` with ``a = L @ L.T`` (``upper=True``: ``L.T``) of each
    symmetric positive-definite matrix. Only the lower triangle of ``a`` is read; the
    derivative treats ``a`` as symmetric (the gradient is symmetric, as torch's)."""
    a = _float(a)
    _check_square("cholesky", a)
    L = bind(la.cholesky_p, a)
    return swapaxes(L, -1, -2) if upper else L


def eigh(a, UPLO="L"):  # noqa: N803 - NumPy's argument name
    """``(eigenvalues, eigenvectors)`` of each symmetric matrix: ascending ``w`` (..., n) and
    orthonormal columns ``V`` (..., n, n) with ``a @ V == V * w``.

    Only the ``UPLO`` ('L' or 'U') triangle is read. The derivative treats ``a`` as symmetric
    and assumes distinct eigenvalues: it divides by the gaps ``w_j - w_i`` (a pair with an
    exactly zero gap contributes nothing, which is exact for functions of the eigenvalues
    alone; nearly equal eigenvalues make the eigenvector derivative blow up, as in JAX and
    torch). Eigenvectors are defined up to sign, so compare them up to sign.
    """
    a = _float(a)
    _check_square("eigh", a)
    if UPLO not in ("L", "U"):
        raise ValueError(f"fgrad.numpy.linalg.eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    if UPLO == "U":   # the upper triangle of a is the lower triangle of a^T
        a = swapaxes(a, -1, -2)
    return EighResult(*bind(la.eigh_p, a))


def eigvalsh(a, UPLO="L"):  # noqa: N803 - NumPy's argument name
    """The ascending eigenvalues of each symmetric matrix (see :func:`eigh`)."""
    return eigh(a, UPLO).eigenvalues


def eig(a):
    """``(eigenvalues, eigenvectors)`` of each square matrix whose eigenvalues are all real:
    ``w`` (..., n) and unit-norm columns ``V`` (..., n, n) with ``a @ V == V * w``, in the real
    dtype NumPy returns for such matrices.

    A matrix with complex eigenvalues (for which NumPy returns complex arrays) raises
    ``LinAlgError``: fgrad's eig is the real case only (for symmetric matrices use ``eigh``).
    The derivative needs distinct eigenvalues (it divides by their gaps, as ``eigh``'s) and
    keeps each eigenvector at unit norm; eigenvectors are defined up to sign.
    """
    a = _float(a)
    _check_square("eig", a)
    _check_real("eig", a)
    return EigResult(*bind(la.eig_p, a))


def eigvals(a):
    """The eigenvalues of each square matrix, all real (see :func:`eig`; same order as eig's,
    which NumPy does not promise to be eigvals' order)."""
    return eig(a).eigenvalues


def _check_matrix(fn, a):
    if ndim(a) < 2:
        raise LinAlgError(f"fgrad.numpy.linalg.{fn}: expected a matrix or a stack of them, shape "
                          f"(..., m, n), got shape {shape_of(a)}")
    _check_real(fn, a)


def _check_real(fn, a):
    """svd, pinv and eig have real rules only: a complex matrix is an error, not a wrong slope."""
    if dtype_of(a).kind == "c":
        raise TypeError(f"fgrad.numpy.linalg.{fn}: complex matrices are not supported (got dtype "
                        f"{dtype_of(a)}, shape {shape_of(a)}); {fn} takes real matrices")


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """The singular value decomposition ``a = U @ (S[..., None] * Vh)`` of each (m, n) matrix:
    ``S`` (..., k) descending, k = min(m, n); ``U`` (..., m, k) and ``Vh`` (..., k, n), or
    (..., m, m) and (..., n, n) with ``full_matrices`` (NumPy's default). ``compute_uv=False``
    returns ``S`` alone. ``hermitian=True``: ``a`` is symmetric (as ``eigh``, only one triangle
    is read and the derivative treats ``a`` as symmetric).

    Derivatives (real matrices): ``dS = diag(U^T dA V)`` always; the singular vectors' need
    distinct, non-zero singular values (they divide by ``s_j^2 - s_i^2``), as in JAX, torch and
    HIPS autograd, and ``full_matrices=True`` has none for non-square ``a``. Singular vectors are
    defined up to a common sign of ``u_i`` and ``v_i``.
    """
    a = _float(a)
    _check_matrix("svd", a)
    out = bind(la.svd_p, a, full_matrices=builtins.bool(full_matrices),
               compute_uv=builtins.bool(compute_uv), hermitian=builtins.bool(hermitian))
    return SVDResult(*out) if compute_uv else out[0]


def svdvals(x):
    """The singular values of each matrix, descending (``svd(x, compute_uv=False)``)."""
    return svd(x, compute_uv=False)


def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """The Moore-Penrose pseudo-inverse (..., n, m) of each (m, n) matrix, as NumPy's: singular
    values at most ``rcond * max(S)`` count as zero (``rcond`` defaults to 1e-15; ``rtol=None``
    means ``max(m, n) * eps``). Its derivative (Golub and Pereyra's) holds where the rank does
    not change nearby, which is every full-rank matrix."""
    a = _float(a)
    _check_matrix("pinv", a)
    if rcond is not None and rtol is not np._NoValue:
        raise ValueError("fgrad.numpy.linalg.pinv: give rcond or rtol, not both")
    if rcond is None:
        rcond = 1e-15 if rtol is np._NoValue else (
            builtins.max(shape_of(a)[-2:]) * np.finfo(dtype_of(a)).eps if rtol is None else rtol)
    if isinstance(rcond, Tracer) or np.ndim(rcond) != 0:
        raise TypeError(f"fgrad.numpy.linalg.pinv: rcond must be a Python or NumPy number, got "
                        f"{type(rcond).__name__} of shape {np.shape(rcond)}")
    return bind(la.pinv_p, a, rcond=float(rcond), hermitian=builtins.bool(hermitian))


def matrix_power(a, n):
    """``a`` multiplied by itself ``n`` times (``n < 0``: powers of ``inv(a)``; ``n = 0``: the
    identity), by repeated squaring."""
    a = _arr(a)
    _check_square("matrix_power", a)
    if not isinstance(n, (int, np.integer)):
        raise TypeError(f"fgrad.numpy.linalg.matrix_power: the exponent must be an int, got {n!r}")
    if n == 0:
        return np.broadcast_to(np.eye(shape_of(a)[-1], dtype=dtype_of(a)), shape_of(a)).copy()
    if n < 0:
        a, n = inv(a), -n
    result = None
    while n:   # a^n = product of a^(2^k) over the set bits k of n
        if n & 1:
            result = a if result is None else matmul(result, a)
        n >>= 1
        if n:
            a = matmul(a, a)
    return result


# --------------------------------------------------------------------------------------------
# norm
# --------------------------------------------------------------------------------------------

def _two_norm(x, axes, keepdims):
    """sqrt(sum x^2) over ``axes``, with derivative 0 (not NaN) where the norm is 0, as torch."""
    # |x|^2 = x conj(x) for complex x (smooth at 0, unlike abs(x) ** 2)
    squares = sum(x * x if dtype_of(x).kind != "c" else real(x * conj(x)), axis=axes, keepdims=keepdims)
    is_zero = squares == 0
    # sqrt'(0) is infinite; take the root of 1 there so no inf * 0 reaches the derivative
    return where(is_zero, 0, sqrt(where(is_zero, 1, squares)))


def _vector_norm(x, ord, axis, keepdims):  # noqa: A002 - NumPy's argument name
    if ord is None or ord == 2:
        return _two_norm(x, (axis,), keepdims)
    if isinstance(ord, str):
        raise ValueError(f"fgrad.numpy.linalg.norm: ord={ord!r} is a matrix norm; vector norms "
                         f"take a number (inf, -inf, 0, 1, 2, p)")
    if ord == np.inf:
        return max(abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return min(abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:   # the number of non-zeros: no derivative
        return sum(astype(x != 0, np.finfo(dtype_of(x)).dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return sum(abs(x), axis=axis, keepdims=keepdims)
    # (sum |x|^p)^(1/p), with derivative 0 where the norm is 0 (the root's slope is infinite there)
    powers = sum(abs(x) ** ord, axis=axis, keepdims=keepdims)
    is_zero = powers == 0
    return where(is_zero, 0, where(is_zero, 1, powers) ** (1.0 / ord))


def _matrix_norm(x, ord, axes, keepdims):  # noqa: A002 - NumPy's argument name
    row, col = axes
    if ord in (None, "fro"):
        return _two_norm(x, axes, keepdims)
    if ord in (2, -2, "nuc"):   # from the singular values: the largest, smallest, or their sum
        s = svdvals(moveaxis(x, axes, (-2, -1)))
        out = sum(s, axis=-1) if ord == "nuc" else (max if ord == 2 else min)(s, axis=-1)
        if not keepdims:
            return out
        return reshape(out, tuple(1 if i in axes else n for i, n in enumerate(shape_of(x))))
    if ord in (1, -1):       # max (min) over columns of the column sums of |x|
        sums, over = sum(abs(x), axis=row, keepdims=True), col
    elif ord in (np.inf, -np.inf):   # max (min) over rows of the row sums of |x|
        sums, over = sum(abs(x), axis=col, keepdims=True), row
    else:
        raise ValueError(f"fgrad.numpy.linalg.norm: invalid norm order {ord!r} for matrices; use "
                         f"None, 'fro', 'nuc', 1, -1, 2, -2, inf or -inf")
    out = (max if ord > 0 else min)(sums, axis=over, keepdims=True)
    return out if keepdims else squeeze(out, axes)


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - NumPy's argument name
    """Vector or matrix norms with NumPy's arguments.

    ``axis=None``: the 2-norm of the flattened ``x`` when ``ord`` is None, else a vector norm of
    a 1-D ``x`` or a matrix norm of a 2-D one. An int ``axis``: vector norms (``ord`` None/2,
    1, inf, -inf, 0 (count of non-zeros), or any p: ``sum(|x|^p)^(1/p)``). A pair of axes:
    matrix norms (``ord`` None/'fro', 1, -1, inf, -inf, and from the singular values 2 (the
    largest), -2 (the smallest) and 'nuc' (their sum)). The 2-norm and p-norms have gradient 0
    at ``x = 0`` (as ``torch.linalg.norm``); max/min-based norms split the gradient evenly
    between ties (also between equal singular values for ord=2/-2; 'nuc''s gradient
    ``U @ Vh`` needs no distinct singular values).
    """
    x = _float(x)
    nd = ndim(x)
    if axis is None:
        if ord is None:
            out = _two_norm(reshape(x, (-1,)), (0,), False)
            return reshape(out, (1,) * nd) if keepdims else out
        if nd not in (1, 2):
            raise ValueError(f"fgrad.numpy.linalg.norm: with ord={ord!r} and axis=None, x must be "
                             f"1-D or 2-D, got shape {shape_of(x)}; give axis")
        axis = tuple(range(nd))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = tuple(_axis(a, nd, "linalg.norm") for a in axes)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    if len(axes) == 2 and axes[0] != axes[1]:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError(f"fgrad.numpy.linalg.norm: axis must be an int or a pair of distinct axes, "
                     f"got {axis!r}")
