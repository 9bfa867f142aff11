"""fgrad.testing: check derivatives numerically (``jax.test_util.check_grads``).

Three checks, each along random directions so that a whole Jacobian is probed at the cost of
one product (the HIPS autograd / JAX recipe):

* **forward mode**: the JVP ``J v`` against central finite differences
  ``(f(x + eps v) - f(x - eps v)) / (2 eps)``, whose error is ``O(eps^2)``;
* **reverse mode**: the VJP ``J^T u`` through the inner-product identity
  ``<J^T u, v> = <u, J v>``, with ``J v`` from finite differences (so reverse mode is checked
  on its own), and, when both modes are checked, also against the JVP itself. Both sides of
  that comparison are exact up to rounding, so it uses a tolerance 100 times tighter (relative
  to ``sum |u_i (J v)_i|``, the size of the terms) and catches a VJP rule that disagrees with
  its JVP twin by less than the finite-difference noise;
* **higher orders** recursively: for ``order=2`` the derivative functions themselves,
  ``(x, v) -> jvp(f, x, v)`` and ``x -> vjp(f, x)[1](f(x))``, are checked the same way, which
  covers forward-over-forward, reverse-over-forward, forward-over-reverse and
  reverse-over-reverse.

>>> import fgrad, fgrad.numpy as fnp
>>> from fgrad.testing import check_grads
>>> check_grads(lambda x, w: fnp.tanh(x @ w), (x, w), order=2)

Tolerances default by dtype: float64 ``atol = rtol = 1e-5`` with ``eps = 1e-4``; float32 (or
any lower-precision input or output) ``atol = rtol = 2e-3`` with ``eps = 1e-3``. A failure
raises ``AssertionError`` saying which check failed and by how much.

Complex inputs and outputs (complex128 counts as float64, complex64 as float32) are checked
along random complex directions, with JAX's pairing ``<u, v> = Re(sum(u * v))`` in the
inner-product identity (``fgrad/primitives/complex.py``), as ``jax.test_util.check_grads``.
"""
from __future__ import annotations

import numpy as np

from . import tree
from .api import jvp, vjp
from .core import dtype_of, shape_of

__all__ = ["check_grads", "check_jvp", "check_vjp", "numerical_jvp"]

_PRECISE_DTYPES = (np.dtype(np.float64), np.dtype(np.complex128))
#: (eps, atol = rtol) for float64 and for anything less precise.
_PRECISE = (1e-4, 1e-5)
_LOOSE = (1e-3, 2e-3)
#: The JVP-vs-VJP comparison has no finite-difference error: it is this much tighter.
_ADJOINT_TIGHTER = 100


def _is_inexact(x):
    return dtype_of(x).kind in "fc"


def _float_leaves(x):
    return [leaf for leaf in tree.leaves(x) if _is_inexact(leaf)]


def _defaults(*trees):
    """``(eps, tol)`` for the least precise float among the leaves of ``trees``."""
    precise = all(dtype_of(leaf) in _PRECISE_DTYPES for t in trees for leaf in _float_leaves(t))
    return _PRECISE if precise else _LOOSE


def _random_like(rng, x):
    """A standard-normal array shaped like ``x`` (complex normal for complex leaves, zeros for
    integer and boolean ones)."""
    dt = dtype_of(x)
    if dt.kind == "c":
        return np.asarray(rng.standard_normal(shape_of(x)) + 1j * rng.standard_normal(shape_of(x)), dt)
    if dt.kind != "f":
        return np.zeros(shape_of(x), dt)
    return np.asarray(rng.standard_normal(shape_of(x)), dt)


def _axpy(a, t, x):
    """``x + a t`` in ``x``'s dtype (integer leaves stay as they are)."""
    if not _is_inexact(x):
        return x
    return (np.asarray(x) + a * np.asarray(t)).astype(dtype_of(x))


def _wide(x):
    """``x`` in float64, or complex128 if it is complex."""
    return np.asarray(x, np.complex128 if dtype_of(x).kind == "c" else np.float64)


def _inner(xs, ys, absolute=False):
    """``<xs, ys> = Re(sum(x * y))`` over float and complex leaves, in double precision
    (``sum |x y|`` with ``absolute``)."""
    total = 0.0
    for x, y in zip(tree.leaves(xs), tree.leaves(ys)):
        if _is_inexact(x):
            terms = _wide(x) * _wide(y)
            total += float(np.sum(np.abs(terms) if absolute else np.real(terms)))
    return total


def numerical_jvp(f, args, tangents, eps):
    """Central finite differences ``(f(x + eps t) - f(x - eps t)) / (2 eps)`` (a pytree)."""
    f_pos = f(*tree.map(lambda x, t: _axpy(eps, t, x), tuple(args), tuple(tangents)))
    f_neg = f(*tree.map(lambda x, t: _axpy(-eps, t, x), tuple(args), tuple(tangents)))
    return tree.map(lambda p, n: (_wide(p) - _wide(n)) / (2 * eps), f_pos, f_neg)


def _assert_close(actual, expected, atol, rtol, what):
    """Every float leaf of ``actual`` within ``atol + rtol |expected|`` of ``expected``."""
    a_leaves, a_tree = tree.flatten(actual)
    e_leaves, e_tree = tree.flatten(expected)
    if a_tree != e_tree:
        raise AssertionError(f"{what}: output structures differ: {a_tree} vs {e_tree}")
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        if not _is_inexact(a):
            continue
        wide = np.complex128 if dtype_of(a).kind == "c" or dtype_of(e).kind == "c" else np.float64
        a, e = np.asarray(a, wide), np.asarray(e, wide)
        if a.shape != e.shape:
            raise AssertionError(f"{what}: output #{i} has shape {a.shape}, expected {e.shape}")
        err = np.abs(a - e)
        bad = ~(err <= atol + rtol * np.abs(e)) & ~(np.isnan(a) & np.isnan(e))
        if bad.any():
            where = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1)),
                                     a.shape)
            rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
            leaf = f" output #{i}" if len(a_leaves) > 1 else ""
            at = f" at index {tuple(int(j) for j in where)}" if a.ndim else ""
            raise AssertionError(
                f"{what}:{leaf} {int(bad.sum())} of {a.size} element(s) differ beyond "
                f"atol={atol:g} + rtol={rtol:g} * |expected|; max abs error "
                f"{float(np.nanmax(err)):.3g}, max rel error {float(np.nanmax(rel)):.3g}; "
                f"worst{at}: got {_number(a[where])}, expected {_number(e[where])}")


def _number(x):
    return f"{complex(x):.10g}" if np.iscomplexobj(x) else f"{float(x):.10g}"


def _settings(args, out, eps, atol, rtol):
    default_eps, default_tol = _defaults(args, out)
    return (default_eps if eps is None else eps, default_tol if atol is None else atol,
            default_tol if rtol is None else rtol)


def check_jvp(f, f_jvp, args, atol=None, rtol=None, eps=None, err_msg="JVP"):
    """Check ``f_jvp(primals, tangents) -> (f(*primals), J tangents)`` against finite
    differences of ``f`` along a random direction."""
    args = tuple(args)
    rng = np.random.default_rng(0)
    tangents = tree.map(lambda x: _random_like(rng, x), args)
    out, t_out = f_jvp(args, tangents)
    expected_out = f(*args)
    eps, atol, rtol = _settings(args, expected_out, eps, atol, rtol)
    _assert_close(out, expected_out, atol, rtol, f"{err_msg}: primal output")
    _assert_close(t_out, numerical_jvp(f, args, tangents, eps), atol, rtol,
                  f"{err_msg}: tangent output against central finite differences (eps={eps:g})")


def check_vjp(f, f_vjp, args, atol=None, rtol=None, eps=None, err_msg="VJP", f_jvp=None):
    """Check ``f_vjp(*args) -> (f(*args), pullback)`` by ``<pullback(u), v> = <u, J v>``.

    ``J v`` comes from finite differences of ``f``; if ``f_jvp`` (as for :func:`check_jvp`)
    is given, the identity is also checked against ``f_jvp``'s exact ``J v``.
    """
    args = tuple(args)
    rng = np.random.default_rng(1)
    out, pullback = f_vjp(*args)
    expected_out = f(*args)
    eps, atol, rtol = _settings(args, expected_out, eps, atol, rtol)
    _assert_close(out, expected_out, atol, rtol, f"{err_msg}: primal output")
    v = tree.map(lambda x: _random_like(rng, x), args)
    u = tree.map(lambda y: _random_like(rng, y), out)
    u_jt = _inner(tuple(pullback(u)), v)   # <J^T u, v>
    j_v = numerical_jvp(f, args, v, eps)
    _assert_close(u_jt, _inner(u, j_v), atol, rtol,
                  f"{err_msg}: <J^T u, v> against <u, J v> by finite differences (eps={eps:g})")
    if f_jvp is not None:
        j_v = f_jvp(args, v)[1]
        exact = _inner(u, j_v)
        bound = (atol + rtol * _inner(u, j_v, absolute=True)) / _ADJOINT_TIGHTER
        if not abs(u_jt - exact) <= bound:
            raise AssertionError(
                f"{err_msg}: <J^T u, v> = {u_jt:.12g} against <u, J v> = {exact:.12g} from the "
                f"JVP (adjoint identity): error {abs(u_jt - exact):.3g} > {bound:.3g} = "
                f"(atol + rtol * sum|u * J v|) / {_ADJOINT_TIGHTER}; the VJP and JVP rules "
                f"disagree")


def check_grads(f, args, order=1, modes=("fwd", "rev"), eps=None, atol=None, rtol=None):
    """Check ``f``'s derivatives up to ``order`` in ``modes`` (``jax.test_util.check_grads``).

    ``args`` is a tuple of arguments (pytrees of float arrays). ``modes`` is a subset of
    ``("fwd", "rev")``. ``eps``, ``atol`` and ``rtol`` default by dtype (see the module
    docstring). Raises ``AssertionError`` naming the failing check (``"VJP of JVP: ..."`` is the
    reverse-mode check of the forward-mode derivative) with the measured error.
    """
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"check_grads: args must be a tuple of arguments, got "
                        f"{type(args).__name__}; wrap a single argument as (x,)")
    args = tuple(args)
    for i, leaf in enumerate(tree.leaves(args)):
        if not _is_inexact(leaf):
            raise TypeError(f"check_grads: argument leaf #{i} has dtype {dtype_of(leaf).name}; "
                            f"only float (and complex) inputs have derivatives. Close over the "
                            f"others (functools.partial or a lambda).")
    if isinstance(modes, str):
        modes = (modes,)
    unknown = set(modes) - {"fwd", "rev"}
    if unknown or not modes:
        raise ValueError(f"check_grads: modes must be a non-empty subset of ('fwd', 'rev'), "
                         f"got {modes!r}")
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"check_grads: order must be a positive int, got {order!r}")
    tols = dict(atol=atol, rtol=rtol, eps=eps)

    def f_jvp_of(fun):
        return lambda primals, tangents: jvp(fun, tuple(primals), tuple(tangents))

    def check(fun, fun_args, k, label):
        fwd_msg = f"JVP of {label}" if label else "JVP"
        rev_msg = f"VJP of {label}" if label else "VJP"
        if "fwd" in modes:
            check_jvp(fun, f_jvp_of(fun), fun_args, err_msg=fwd_msg, **tols)
            if k > 1:
                check(f_jvp_of(fun), (fun_args, fun_args), k - 1, fwd_msg)
        if "rev" in modes:
            check_vjp(fun, lambda *a: vjp(fun, *a), fun_args, err_msg=rev_msg,
                      f_jvp=f_jvp_of(fun) if "fwd" in modes else None, **tols)
            if k > 1:
                def pulled_back(*a):   # x -> J(x)^T f(x): its derivative needs f's second
                    out, pullback = vjp(fun, *a)
                    return pullback(out)
                check(pulled_back, fun_args, k - 1, rev_msg)

    check(f, args, order, "")
