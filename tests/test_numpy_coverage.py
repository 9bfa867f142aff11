"""fgrad.numpy beyond the op table: the cases of issue 10 that a table row cannot express.

The op table (``tests/op_table.py``) checks every new function forward against NumPy and its
derivatives against torch.func, finite differences and each other; this file checks what lies
outside a row's reach: Python lists of traced values, derivatives at special points (std over
one element, sinc at 0, hypot at the origin, the NaN branches of fmax), NumPy's contracts where
fgrad's result legitimately differs (partition), index-expression objects (``r_``/``c_``) with
their directives, traced results of whole-array comparisons under every transform, staging of
the new linear-algebra primitives, and the errors. Reference numbers are NumPy's, computed in
the test, or closed forms written next to them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import fgrad
import fgrad.numpy as fnp
from fgrad.testing import check_grads


# --------------------------------------------------------------------------------------------
# Python lists and tuples of traced values are array-likes
# --------------------------------------------------------------------------------------------

def test_list_of_tracers_is_an_array_like_under_every_transform():
    assert fgrad.grad(lambda a: fnp.mean([a, a * 2]))(1.0) == 1.5
    assert fgrad.grad(lambda a: fnp.sum((a, 3 * a)))(2.0) == 4.0
    _, t = fgrad.jvp(lambda a: fnp.prod([a, a, 2.0]), (3.0,), (1.0,))
    assert t == 12.0   # d(2 a^2) = 4 a
    got = fgrad.vmap(lambda a, b: fnp.max([a, b], axis=0))(np.array([1.0, 5.0]), np.array([4.0, 2.0]))
    np.testing.assert_array_equal(got, [4.0, 5.0])
    # operators and nested lists: [[a, 1], (b, a * b)] @ v
    f = lambda a, b: fnp.sum(fnp.asarray([[a, 1.0], (b, a * b)]) @ np.array([1.0, 2.0]))  # noqa: E731
    np.testing.assert_allclose(fgrad.grad(f, argnums=(0, 1))(2.0, 3.0), (1 + 2 * 3, 1 + 2 * 2))
    np.testing.assert_allclose(fgrad.hessian(lambda a: fnp.sum(fnp.square([a, 2 * a])))(1.5), 10.0)


def test_list_of_tracers_has_numpy_array_dtype():
    x32 = np.float32(1.5)

    def dtypes(a):
        return [fnp.asarray([a, 1.0]).dtype, fnp.array([a, a]).dtype,
                fnp.asarray([a, 1], np.float32).dtype, fnp.array([[a], [2]]).dtype]
    seen = []
    fgrad.grad(lambda a: (seen.extend(dtypes(a)), a)[1])(x32)
    want = [np.array([x32, 1.0]).dtype, np.array([x32, x32]).dtype, np.float32,
            np.array([[x32], [2]]).dtype]
    assert seen == want, (seen, want)


def test_ragged_list_of_tracers_is_a_clear_error():
    message = r"list of traced values must be rectangular .* \[\(2,\), \(3,\)\]"
    with pytest.raises(ValueError, match=message):
        fgrad.grad(lambda a: fnp.sum(fnp.array([a[:2], a])))(np.ones(3))


# --------------------------------------------------------------------------------------------
# Derivatives at special points
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_std_over_one_element_has_gradient_zero(dtype):
    one = np.array([1.5], dtype)
    g = fgrad.grad(lambda a: fnp.std(a))(one)
    assert g.dtype == dtype and np.array_equal(g, [0.0])
    # one element along the reduced axis, with keepdims; and a constant vector with ddof=1
    g = fgrad.grad(lambda a: fnp.sum(fnp.std(a, axis=1, keepdims=True)))(np.ones((3, 1), dtype))
    np.testing.assert_array_equal(g, np.zeros((3, 1)))
    g = fgrad.grad(lambda a: fnp.std(a, ddof=1))(np.full(2, 0.5, dtype))
    np.testing.assert_array_equal(g, [0.0, 0.0])
    assert np.all(np.isfinite(fgrad.hessian(lambda a: fnp.std(a))(np.array([2.0]))))
    g = fgrad.grad(lambda a: fnp.var(a))(one)
    np.testing.assert_array_equal(g, [0.0])
    # and the ordinary case is untouched: d std / dx = (x - mean) / (n std)
    x = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(fgrad.grad(fnp.std)(x), (x - x.mean()) / (3 * x.std()), rtol=1e-12)


def test_std_with_ddof_equal_to_the_count_is_nan_as_numpy():
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(fnp.std(np.array([1.0]), ddof=1)) and np.isnan(np.std(np.array([1.0]), ddof=1))


def test_sinc_derivatives_at_zero():
    # sin(pi x)/(pi x) = 1 - (pi x)^2/6 + (pi x)^4/120 - ...: f'(0) = 0, f''(0) = -pi^2/3,
    # f'''(0) = 0, f''''(0) = pi^4/5
    d1 = fgrad.grad(fnp.sinc)
    d2 = fgrad.grad(d1)
    d4 = fgrad.grad(fgrad.grad(d2))
    assert d1(0.0) == 0.0
    np.testing.assert_allclose(d2(0.0), -math.pi ** 2 / 3, rtol=1e-12)
    np.testing.assert_allclose(fgrad.grad(d2)(0.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d4(0.0), math.pi ** 4 / 5, rtol=1e-10)
    # both branches join smoothly: at the switch |pi x| = 0.1 the derivatives agree with torch's
    for x in (0.1 / math.pi * (1 - 1e-9), 0.1 / math.pi * (1 + 1e-9), 0.5, -2.25):
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (want,) = torch.autograd.grad(torch.sinc(t), t)
        np.testing.assert_allclose(d1(x), want.item(), rtol=1e-9)
    points = np.array([0.0, 1.0, -2.0])
    np.testing.assert_array_equal(fnp.sinc(points), np.sinc(points))


def test_hypot_logaddexp_fmax_at_special_points():
    assert fgrad.grad(lambda x: fnp.hypot(x, 0.0))(0.0) == 0.0          # the 2-norm's convention
    np.testing.assert_allclose(fgrad.grad(fnp.hypot, argnums=(0, 1))(3.0, 4.0), (0.6, 0.8))
    big = np.array([1e300, -1e300])
    np.testing.assert_array_equal(fnp.hypot(big, big), np.hypot(big, big))   # no overflow
    special = np.array([np.inf, -np.inf, np.inf])
    np.testing.assert_array_equal(fnp.logaddexp(special, special), np.logaddexp(special, special))
    np.testing.assert_allclose(fgrad.grad(fnp.logaddexp, argnums=(0, 1))(1.0, 1.0), (0.5, 0.5))
    np.testing.assert_allclose(fgrad.grad(fnp.logaddexp2, argnums=(0, 1))(3.0, 3.0), (0.5, 0.5))
    # fmax/fmin ignore NaN, in value and in derivative
    x, y = np.array([np.nan, 1.0, np.nan, 2.0]), np.array([3.0, np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(fnp.fmax(x, y), np.fmax(x, y))
    np.testing.assert_array_equal(fnp.fmin(x, y), np.fmin(x, y))
    gx, gy = fgrad.grad(lambda x, y: fnp.sum(fnp.fmax(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.0, 1.0, 1.0, 0.5])
    np.testing.assert_array_equal(gy, [1.0, 0.0, 0.0, 0.5])


def test_nan_to_num_passes_the_derivative_only_where_finite():
    x = np.array([np.nan, np.inf, -np.inf, 2.0, -0.5])
    g = fgrad.grad(lambda x: fnp.sum(fnp.nan_to_num(x) * 0.5))(x)   # 0.5: no overflow of max
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 0.5, 0.5])
    ints = np.arange(3)
    assert fnp.nan_to_num(ints) is ints
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(fnp.nan_to_num(x32), np.nan_to_num(x32))


def test_inverse_trig_and_angle_conversions_exist_and_differentiate():
    # the inverse functions HIPS autograd lists, with their derivatives at one point each
    cases = {fnp.arcsin: 1 / math.sqrt(1 - 0.3 ** 2), fnp.arccos: -1 / math.sqrt(1 - 0.3 ** 2),
             fnp.arctan: 1 / (1 + 0.3 ** 2), fnp.arcsinh: 1 / math.sqrt(0.3 ** 2 + 1),
             fnp.arctanh: 1 / (1 - 0.3 ** 2)}
    for fn, want in cases.items():
        np.testing.assert_allclose(fgrad.grad(fn)(0.3), want, rtol=1e-12)
    np.testing.assert_allclose(fgrad.grad(fnp.arccosh)(2.0), 1 / math.sqrt(3), rtol=1e-12)
    np.testing.assert_allclose(fgrad.grad(fnp.arctan2, argnums=(0, 1))(1.0, 2.0), (0.4, -0.2))
    for f in (fnp.deg2rad, fnp.rad2deg, fnp.degrees, fnp.radians, fnp.fabs):
        want = getattr(np, f.__name__)
        for x in (90, np.arange(3), np.arange(3, dtype=np.float32), True):
            got, ref = f(x), want(x)
            assert np.asarray(got).dtype == np.asarray(ref).dtype, (f.__name__, x)
            # NumPy's float32 loop rounds its constant in float32: one ulp apart at most
            np.testing.assert_allclose(got, ref, rtol=2 * np.finfo(np.asarray(ref).dtype).eps)
    assert fgrad.grad(fnp.deg2rad)(1.0) == np.pi / 180


# --------------------------------------------------------------------------------------------
# partition: NumPy's contract (fgrad returns the parts sorted)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kth", [0, 3, -1, [1, 4]])
def test_partition_meets_numpys_contract(rng, kth):
    x = rng.normal(size=(3, 6))
    ours, theirs = fnp.partition(x, kth, axis=1), np.partition(x, kth, axis=1)
    for k in np.atleast_1d(kth) % 6:
        # the same pivot, and on each side the same values (NumPy's in its own order)
        np.testing.assert_array_equal(ours[:, k], theirs[:, k])
        np.testing.assert_array_equal(ours[:, :k], np.sort(theirs[:, :k], axis=1))
        np.testing.assert_array_equal(ours[:, k + 1:], np.sort(theirs[:, k + 1:], axis=1))
    np.testing.assert_array_equal(np.sort(ours, axis=1), np.sort(theirs, axis=1))
    np.testing.assert_array_equal(fnp.partition(x, 2, axis=None), np.sort(x, axis=None))
    with pytest.raises(ValueError, match=r"partition: kth=6 is out of bounds for an axis of size 6"):
        fnp.partition(x, 6)


# --------------------------------------------------------------------------------------------
# r_ and c_
# --------------------------------------------------------------------------------------------

def test_r_and_c_without_tracers_are_numpys():
    v = np.arange(3.0)
    for got, want in [(fnp.r_[v, 0, 1:4], np.r_[v, 0, 1:4]), (fnp.c_[v, v], np.c_[v, v]),
                      (fnp.r_["1,2,0", v, v], np.r_["1,2,0", v, v]),
                      (fnp.r_[-1:1:5j, np.float32(2)], np.r_[-1:1:5j, np.float32(2)])]:
        assert type(got) is np.ndarray and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("directive", ["0", "-1", "0,2", "1,2", "0,2,0", "1,3,-1", "0,3,1"])
def test_r_directives_with_tracers_match_numpy(directive):
    a, b = np.arange(3.0), np.arange(3.0) + 10
    want = np.r_[directive, a, b, 0:3]
    out, tangent = fgrad.jvp(lambda x: fnp.r_[directive, x, b, 0:3], (a,), (np.ones(3),))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(tangent, np.r_[directive, np.ones(3), np.zeros(3), np.zeros(3)])


def test_c_and_r_with_tracers_keep_numpys_dtype_rules():
    x32 = np.ones(2, np.float32)
    out, _ = fgrad.jvp(lambda x: fnp.r_[x, 2.0, -1:1:3j], (x32,), (x32,))
    assert out.dtype == np.r_[x32, 2.0, -1:1:3j].dtype
    out = fgrad.vmap(lambda x: fnp.c_[x, 2 * x])(np.ones((4, 2)))
    assert out.shape == (4, 2, 2)


def test_r_errors():
    with pytest.raises(ValueError, match=r"r_: the matrix directive 'r' makes a numpy.matrix"):
        fgrad.grad(lambda x: fnp.sum(fnp.r_["r", x, x]))(np.ones(2))
    with pytest.raises(ValueError, match=r"r_: a string directive must be the first entry"):
        fgrad.grad(lambda x: fnp.sum(fnp.r_[x, "0"]))(np.ones(2))
    with pytest.raises(ValueError, match=r"c_: unknown directive 'x,y'"):
        fgrad.grad(lambda x: fnp.sum(fnp.c_["x,y", x]))(np.ones(2))


# --------------------------------------------------------------------------------------------
# linspace with traced ends; allclose, isclose, array_equal on traced values
# --------------------------------------------------------------------------------------------

def test_linspace_with_traced_ends():
    start, stop = 1.0, np.array([2.0, 5.0])
    for kw in [dict(num=5), dict(num=4, endpoint=False), dict(num=1), dict(num=0),
               dict(num=3, axis=-1), dict(num=4, dtype=np.int64)]:
        out = fgrad.jvp(lambda a, b: fnp.linspace(a, b, **kw), (start, stop), (0.0, np.zeros(2)))[0]
        want = np.linspace(start, stop, **kw)
        assert out.dtype == want.dtype and out.shape == want.shape, kw
        np.testing.assert_allclose(out, want, rtol=1e-15)
    # d y_i / d start = 1 - i/(n-1), d y_i / d stop = i/(n-1)
    jac = fgrad.jacfwd(lambda ends: fnp.linspace(ends[0], ends[1], 5))(np.array([0.0, 1.0]))
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(jac, np.stack([1 - t, t], axis=1), rtol=1e-15)
    (y, step), (y_dot, step_dot) = fgrad.jvp(lambda b: fnp.linspace(0.0, b, 3, retstep=True),
                                             (4.0,), (1.0,))
    assert step == 2.0 and step_dot == 0.5
    np.testing.assert_array_equal(y_dot, [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match=r"linspace: the number of samples must be non-negative"):
        fgrad.grad(lambda b: fnp.sum(fnp.linspace(0.0, b, -1)))(1.0)


def test_allclose_is_a_traced_boolean_under_transforms():
    def f(a):   # where(allclose(...)) is how a transformed function branches on it
        return fnp.where(fnp.allclose(a, 1.0, atol=1e-3), 2 * a, 3 * a)
    assert fgrad.grad(lambda a: fnp.sum(f(a)))(np.ones(2)).tolist() == [2.0, 2.0]
    assert fgrad.grad(lambda a: fnp.sum(f(a)))(np.array([1.0, 1.5])).tolist() == [3.0, 3.0]
    jitted = fgrad.jit(lambda a, b: fnp.allclose(a, b))
    assert bool(jitted(np.ones(3), np.ones(3) + 1e-9)) and not bool(jitted(np.ones(3), np.zeros(3)))
    rows = np.array([[1.0, 1.0], [1.0, 2.0]])
    assert fgrad.vmap(lambda a: fnp.allclose(a, np.ones(2)))(rows).tolist() == [True, False]
    # under grad the value is known, so Python control flow on it works as in JAX
    assert fgrad.grad(lambda a: a * 2 if fnp.allclose(a, 1.0) else a)(1.0) == 2.0
    # outside transforms: NumPy's own results, Python bools
    assert fnp.allclose(np.ones(2), np.ones(2)) is True and fnp.array_equal([1, 2], [1, 2]) is True
    # shapes are static: a mismatch is a constant False (vmap broadcasts it)
    assert fgrad.vmap(lambda a: fnp.array_equal(a, np.ones(3)))(np.ones((2, 2))).tolist() == [False] * 2


def test_isclose_on_tracers_follows_numpy_on_specials():
    a = np.array([np.inf, -np.inf, np.nan, np.inf, 1.0, 0.0, 1e10])
    b = np.array([np.inf, np.inf, np.nan, 1e308, 1.0 + 1e-9, 1e-9, 1.0001e10])
    for equal_nan in (False, True):
        with np.errstate(invalid="ignore"):   # 0 * inf in both: NaN
            got = fgrad.jvp(lambda x: fnp.where(fnp.isclose(x, b, equal_nan=equal_nan), 1.0, 0.0)
                            * x, (a,), (np.zeros_like(a),))[0]
            want = np.where(np.isclose(a, b, equal_nan=equal_nan), 1.0, 0.0) * a
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# einsum's interleaved form
# --------------------------------------------------------------------------------------------

def test_einsum_interleaved_form_matches_numpy_and_the_string_form(rng):
    x, y, z = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(5, 2, 3))
    cases = [(x, [0, 1], y, [1, 2], [0, 2]), (x, [0, 1], y, [1, 2]), (x, [1, 0]),
             (x, [30, 1], y, [1, 0]), (z, [Ellipsis, 0, 1], y, [1, 2], [Ellipsis, 2, 0]),
             (x, [0, 1], x, [0, 1], [])]
    for args in cases:
        np.testing.assert_allclose(fnp.einsum(*args), np.einsum(*args), rtol=1e-12)
    gx, gy = fgrad.grad(lambda a, b: fnp.sum(fnp.einsum(a, [0, 1], b, [1, 2], [0, 2]) ** 2),
                        argnums=(0, 1))(x, y)
    hx, hy = fgrad.grad(lambda a, b: fnp.sum(fnp.einsum("ij,jk->ik", a, b) ** 2), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, hx, rtol=1e-12)
    np.testing.assert_allclose(gy, hy, rtol=1e-12)
    with pytest.raises(ValueError, match=r"einsum: label 52 in the sublist of operand 0 is out of"):
        fnp.einsum(x, [0, 52])
    with pytest.raises(TypeError, match=r"einsum: the output sublist may hold only integers"):
        fnp.einsum(x, [0, 1], ["i"])
    with pytest.raises(TypeError, match=r"einsum: the first argument must be a subscripts string"):
        fnp.einsum(x, y)


# --------------------------------------------------------------------------------------------
# gradient and diff
# --------------------------------------------------------------------------------------------

def test_gradient_and_diff_edge_cases(rng):
    f = rng.normal(size=(4, 5))
    out = fnp.gradient(f)
    assert isinstance(out, tuple) and len(out) == 2
    assert isinstance(fnp.gradient(f, axis=1), np.ndarray)
    assert fnp.gradient(np.arange(4)).dtype == np.float64
    # traced coordinates: derivative with respect to the grid, against central differences
    coords = np.array([0.0, 0.7, 1.5, 3.0, 3.2])
    check_grads(lambda c: fnp.gradient(f, c, axis=1, edge_order=2), (coords,), order=1)
    check_grads(lambda c: fnp.gradient(f[0], c), (coords,), order=2)
    np.testing.assert_allclose(fgrad.jvp(lambda c: fnp.gradient(f, 1.0, c), (coords,),
                                         (np.zeros(5),))[0][1], np.gradient(f, 1.0, coords)[1])
    with pytest.raises(ValueError, match=r"gradient: axis 0 has 2 element\(s\); edge_order=2 needs"):
        fnp.gradient(np.ones(2), edge_order=2)
    with pytest.raises(ValueError, match=r"gradient: edge_order must be 1 or 2"):
        fnp.gradient(f, edge_order=3)
    with pytest.raises(ValueError, match=r"gradient: coordinates along axis 1 must be a scalar or 1-D"):
        fnp.gradient(f, 1.0, np.ones(4))
    # diff: n=0 returns the input, booleans differ by !=, errors name the function
    assert fnp.diff(f, n=0) is f
    np.testing.assert_array_equal(fnp.diff(f > 0), np.diff(f > 0))
    with pytest.raises(ValueError, match=r"diff: the order n must be non-negative"):
        fnp.diff(f, n=-1)
    with pytest.raises(ValueError, match=r"diff: the input must be at least 1-D"):
        fnp.diff(np.float64(1.0))


# --------------------------------------------------------------------------------------------
# Linear algebra: staging, jit, special arguments
# --------------------------------------------------------------------------------------------

def test_new_linalg_primitives_stage_and_jit(rng):
    a = rng.normal(size=(2, 4, 3))
    p = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    sq = p @ np.diag([1.0, 2.0, 4.0]) @ np.linalg.inv(p)     # real eigenvalues 1, 2, 4

    def f(a, sq):
        u, s, vh = fnp.linalg.svd(a, full_matrices=False)
        w, v = fnp.linalg.eig(sq)
        return (fnp.sum(s) + fnp.sum(fnp.linalg.pinv(a)) + fnp.sum(w) + fnp.linalg.norm(a[0], "nuc")
                + fnp.sum(u[..., 0] ** 2) + fnp.sum(fnp.linalg.svd(a, compute_uv=False)))
    text = str(fgrad.make_jaxpr(f)(a, sq))
    assert "svd" in text and "pinv" in text and "eig" in text
    np.testing.assert_allclose(fgrad.jit(f)(a, sq), f(a, sq), rtol=1e-12)
    np.testing.assert_allclose(fgrad.jit(fgrad.grad(f))(a, sq), fgrad.grad(f)(a, sq), rtol=1e-10)
    shapes = fgrad.eval_shape(lambda a: fnp.linalg.svd(a), a)
    assert [s.shape for s in shapes] == [(2, 4, 4), (2, 3), (2, 3, 3)]


def test_linalg_dtypes_and_hermitian_forms(rng):
    a32 = rng.normal(size=(3, 3)).astype(np.float32)
    spd = a32 @ a32.T + 3 * np.eye(3, dtype=np.float32)
    assert fnp.linalg.eigvals(spd).dtype == np.linalg.eigvals(spd).dtype == np.float32
    assert fnp.linalg.svd(a32)[1].dtype == np.float32 and fnp.linalg.pinv(a32).dtype == np.float32
    spd64 = spd.astype(np.float64)
    np.testing.assert_allclose(fnp.linalg.svd(spd64, hermitian=True)[1],
                               np.linalg.svd(spd64, hermitian=True)[1], rtol=1e-12)
    # hermitian=True reads one triangle and differentiates as a function of a symmetric matrix
    check_grads(lambda a: fnp.linalg.svd((a + a.T) / 2 + 6 * np.eye(3), hermitian=True)[1],
                (spd64,), order=2)
    check_grads(lambda a: fnp.linalg.pinv((a + a.T) / 2, hermitian=True), (spd64,), order=1)
    assert fnp.linalg.svd(np.arange(6).reshape(2, 3)).S.dtype == np.float64
    np.testing.assert_allclose(fnp.linalg.pinv(a32, rtol=None), np.linalg.pinv(a32, rtol=None),
                               rtol=1e-5)


def test_matrix_two_norm_gradient_is_the_top_singular_pair(rng):
    a = rng.normal(size=(4, 3))
    u, s, vh = np.linalg.svd(a)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.linalg.norm(a, 2))(a), np.outer(u[:, 0], vh[0]),
                               rtol=1e-10)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.linalg.norm(a, -2))(a), np.outer(u[:, 2], vh[2]),
                               rtol=1e-10)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.linalg.norm(a, "nuc"))(a), u[:, :3] @ vh,
                               rtol=1e-10)


def test_singular_values_alone_need_no_gaps(rng):
    """The nuclear norm and the sum of squared singular values are smooth where singular values
    repeat: their gradients U @ Vh and 2 A come out right, as torch's."""
    q1, q2 = np.linalg.qr(rng.normal(size=(4, 4)))[0], np.linalg.qr(rng.normal(size=(3, 3)))[0]
    a = q1[:, :3] * np.array([2.0, 2.0, 0.5]) @ q2.T          # singular values 2, 2, 0.5
    u, _, vh = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.linalg.norm(a, "nuc"))(a), u @ vh, atol=1e-12)
    theirs = torch.func.grad(lambda t: torch.linalg.matrix_norm(t, "nuc"))(torch.from_numpy(a))
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.linalg.norm(a, "nuc"))(a), theirs.numpy(),
                               atol=1e-12)
    np.testing.assert_allclose(fgrad.grad(lambda a: fnp.sum(fnp.linalg.svdvals(a) ** 2))(a), 2 * a,
                               atol=1e-12)


def test_eig_with_complex_eigenvalues_raises_in_every_transform():
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    message = r"eig: the (matrix|stack of matrices) of shape \((2, )?2, 2\) has complex eigenvalues"
    for run in (lambda: fnp.linalg.eigvals(rot),
                lambda: fgrad.grad(lambda a: fnp.sum(fnp.linalg.eigvals(a)))(rot),
                lambda: fgrad.vmap(fnp.linalg.eigvals)(np.stack([rot, np.eye(2)]))):
        with pytest.raises(np.linalg.LinAlgError, match=message):
            run()


# --------------------------------------------------------------------------------------------
# Errors of the other new functions name the function and say what to do
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: fnp.diag(np.ones((2, 2, 2))), ValueError, r"diag: input must be 1-D .* got shape \(2, 2, 2\)"),
    (lambda: fnp.vsplit(np.ones(3), 3), ValueError, r"vsplit: only works on arrays of 2 or more"),
    (lambda: fnp.dsplit(np.ones((2, 2)), 2), ValueError, r"dsplit: only works on arrays of 3 or more"),
    (lambda: fnp.hsplit(np.float64(1.0), 1), ValueError, r"hsplit: only works on arrays of 1 or more"),
    (lambda: fnp.array_split(np.ones(3), 0), ValueError, r"array_split: the number of sections must"),
    (lambda: fnp.cross(np.ones(4), np.ones(3)), ValueError, r"cross: vectors must have 2 or 3 components"),
    (lambda: fnp.cross(np.ones((2, 3)), np.ones((4, 3))), ValueError, r"cross: operands of shapes"),
    (lambda: fnp.select([np.ones(2)], [np.ones(2)]), TypeError, r"select: condition 0 has dtype float64"),
    (lambda: fnp.select([np.ones(2) > 0], []), ValueError, r"select: 1 conditions but 0 choices"),
    (lambda: fnp.rot90(np.ones((2, 2)), axes=(0, 0)), ValueError, r"rot90: axes must be different"),
    (lambda: fnp.rollaxis(np.ones((2, 2)), 0, 3), ValueError, r"rollaxis: start must be in \[-2, 2\]"),
    (lambda: fnp.fmax(np.ones(2), np.ones(3)), ValueError, r"fmax: operands of shapes \[\(2,\), \(3,\)\]"),
    (lambda: fnp.hypot(np.ones(2), np.ones(3)), ValueError, r"hypot: operands of shapes \(2,\) and \(3,\)"),
    (lambda: fnp.gradient(np.ones(3), 1.0, 2.0), TypeError, r"gradient: give no spacing, one scalar"),
])
def test_errors_name_the_function(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------------------------
# HIPS-autograd-style programs (``import autograd.numpy as np`` becomes fgrad.numpy)
# --------------------------------------------------------------------------------------------

def test_autograd_style_programs(rng):
    """Functions in the style of HIPS autograd's own tests, checked with check_grads (forward,
    reverse, second order) against finite differences, and under jit against eager."""
    np_ = fnp
    mat, vec = rng.normal(size=(4, 3)), rng.normal(size=3)
    programs = [
        lambda x: np_.sum(np_.sin(np_.r_[x.ravel(), np_.cos(x[0])])),
        lambda x: np_.sum(np_.c_[x[:, 0], x[:, 1] ** 2]),
        lambda x: np_.sum(np_.diag(np_.diag(x @ x.T)) * np_.kron(np_.eye(2), np_.ones((2, 2)))),
        lambda x: np_.sum(np_.cross(x[:, None, :], vec) ** 2),
        lambda x: np_.sum(np_.diff(x, axis=0, append=x[:1]) ** 2) + np_.sum(np_.gradient(x)[1] ** 2),
        lambda x: np_.sum(np_.rot90(np_.column_stack([x, x[:, :1]]), 3) * np_.arange(16).reshape(4, 4)),
        lambda x: np_.sum(np_.stack(np_.array_split(x, [1, 3], axis=0)[1]) ** 3),
        lambda x: np_.sum(np_.select([x > 0, x < -1], [x ** 2, np_.sinc(x)], np_.hypot(x, 1.0))),
        lambda x: np_.sum(np_.logaddexp(x, 0.5 * x) + np_.fmax(x, -x[::-1])),
        lambda x: np_.linalg.norm(x, "nuc") + np_.sum(np_.linalg.pinv(x) ** 2),
        lambda x: np_.std(np_.array([x[0, 0], x[1, 1], x[2, 2]])),
        lambda x: np_.sum(np_.atleast_3d(x) * np_.rollaxis(np_.atleast_3d(x), 2, 0).sum()),
    ]
    for program in programs:
        check_grads(program, (mat,), order=2)
        np.testing.assert_allclose(fgrad.jit(fgrad.grad(program))(mat), fgrad.grad(program)(mat),
                                   rtol=1e-10, atol=1e-12)
