"""Tests of fgrad.testing.check_grads: it passes correct derivatives and fails wrong ones.

A checker is only worth something if it can fail, so besides a table of correct functions
(order 1 and 2, each mode) there are functions with deliberately wrong custom rules: a wrong
JVP (caught by both modes, since reverse mode transposes it), a wrong VJP (caught by reverse
mode only), a rule that is right at first order and wrong at second (caught only at order 2),
and an error smaller than float32's tolerance but larger than float64's.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp
from fgrad.testing import check_grads, check_jvp, check_vjp, numerical_jvp

EXAMPLES = settings.default.max_examples

_rng = np.random.default_rng(0)
X = _rng.normal(size=(3, 4))
W = _rng.normal(size=(4, 2))
V = _rng.normal(size=(4,))
POS = _rng.uniform(0.5, 2.0, size=(3, 4))

# name -> (function, args): one row per function; every row is checked at order 1 and 2 in
# every mode.
CORRECT = {
    "sin": (fnp.sin, (X,)),
    "tanh_matmul": (lambda x, w: fnp.tanh(x @ w), (X, W)),
    "broadcast_div": (lambda x, v: x / (1 + v ** 2), (X, V)),
    "logsumexp": (lambda x: fnp.logsumexp(x, axis=1), (X,)),
    "softmax": (lambda x: fnp.exp(x - fnp.logsumexp(x, axis=-1, keepdims=True)), (X,)),
    "power": (lambda p: p ** 1.5 * fnp.log(p), (POS,)),
    "scalar_python_float": (lambda a: a ** 3 - 2 * a, (1.3,)),
    "reduction_to_scalar": (lambda x, w: fnp.sum((x @ w) ** 2), (X, W)),
    "pytree_in_and_out": (lambda d, s: {"y": fnp.sin(d["a"]) * s, "z": (d["b"] @ d["a"].T, s ** 2)},
                          ({"a": X, "b": X[:2] * 0.5}, np.array(0.7))),
    "indexing": (lambda x: x[1:, ::2] ** 3 + fnp.take(x, np.array([0, 2, 0]), axis=0).sum(), (X,)),
    "float32": (lambda x, w: fnp.tanh(x @ w), (X.astype(np.float32), W.astype(np.float32))),
}
MODES = [("fwd",), ("rev",), ("fwd", "rev")]


@pytest.mark.parametrize("modes", MODES, ids="+".join)
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", CORRECT)
def test_correct_functions_pass(name, order, modes):
    f, args = CORRECT[name]
    check_grads(f, args, order=order, modes=modes)


def test_default_mode_is_both_and_order_is_one():
    check_grads(fnp.tanh, (X,))


# --------------------------------------------------------------------------------------------
# Wrong rules are caught
# --------------------------------------------------------------------------------------------

def _sin_with_jvp(scale):
    """sin with the custom JVP x_dot * cos(x) * scale (correct for scale = 1)."""
    @fgrad.custom_jvp
    def f(x):
        return fnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        return fnp.sin(x), x_dot * fnp.cos(x) * scale
    return f


def _sin_with_vjp(offset):
    """sin with the custom VJP g * cos(x) + offset (correct for offset = 0)."""
    @fgrad.custom_vjp
    def f(x):
        return fnp.sin(x)
    f.defvjp(lambda x: (fnp.sin(x), x), lambda x, g: (g * fnp.cos(x) + offset,))
    return f


def test_custom_rules_that_are_right_pass():
    check_grads(_sin_with_jvp(1.0), (X,), order=2)
    check_grads(_sin_with_vjp(0.0), (X,), order=2)


@pytest.mark.parametrize("modes, label", [(("fwd",), "JVP"), (("rev",), "VJP"),
                                          (("fwd", "rev"), "JVP")])
def test_wrong_custom_jvp_fails_in_every_mode(modes, label):
    with pytest.raises(AssertionError, match=rf"^{label}: .*max abs error .*max rel error 0\.01"):
        check_grads(_sin_with_jvp(1.01), (X,), modes=modes)


def test_wrong_custom_vjp_fails_in_reverse_mode_only():
    wrong = _sin_with_vjp(1e-3)
    check_grads(wrong, (X,), modes=("fwd",), order=2)   # its JVP is sin's own, which is right
    with pytest.raises(AssertionError, match=r"^VJP: <J\^T u, v> against <u, J v> by finite "
                                             r"differences .*max abs error"):
        check_grads(wrong, (X,), modes=("rev",))
    with pytest.raises(AssertionError, match=r"^VJP: "):
        check_grads(wrong, (X,))


def test_adjoint_identity_catches_jvp_vjp_disagreement_below_finite_difference_noise():
    # A VJP off by 1e-6 per element: within the finite-difference check's float64 tolerance,
    # outside the (100 times tighter) comparison of the VJP with the exact JVP.
    wrong = _sin_with_vjp(1e-6)
    check_grads(wrong, (X,), modes=("rev",))
    with pytest.raises(AssertionError, match=r"^VJP: .* from the JVP \(adjoint identity\): error "
                                             r".*the VJP and JVP rules disagree"):
        check_grads(wrong, (X,))
    with pytest.raises(AssertionError, match=r"adjoint identity"):
        check_vjp(wrong, lambda x: fgrad.vjp(wrong, x), (X,),
                  f_jvp=lambda p, t: fgrad.jvp(wrong, tuple(p), tuple(t)))


def _sin_right_only_at_first_order():
    """The tangent x_dot * cos(stop_gradient(x)) is right, but its own derivative is zero."""
    @fgrad.custom_jvp
    def f(x):
        return fnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        return fnp.sin(x), x_dot * fnp.cos(fgrad.stop_gradient(x))
    return f


@pytest.mark.parametrize("modes, label", [(("fwd",), "JVP of JVP"), (("rev",), "VJP of VJP"),
                                          (("fwd", "rev"), "JVP of JVP")])
def test_second_order_errors_need_order_two(modes, label):
    f = _sin_right_only_at_first_order()
    check_grads(f, (X,), order=1, modes=modes)
    with pytest.raises(AssertionError, match=rf"^{label}: "):
        check_grads(f, (X,), order=2, modes=modes)


def test_wrong_primal_output_is_reported():
    with pytest.raises(AssertionError, match=r"^JVP: primal output"):
        check_jvp(fnp.sin, lambda p, t: (fnp.cos(p[0]), t[0] * fnp.cos(p[0])), (X,))
    with pytest.raises(AssertionError, match=r"^VJP: primal output"):
        check_vjp(fnp.sin, lambda x: (fnp.cos(x), lambda g: (g,)), (X,))


def test_check_jvp_and_check_vjp_take_transform_functions():
    f = lambda x, w: fnp.tanh(x @ w)  # noqa: E731
    check_jvp(f, functools.partial(fgrad.jvp, f), (X, W))
    check_vjp(f, functools.partial(fgrad.vjp, f), (X, W))
    doubled = lambda p, t: (f(*p), 2 * fgrad.jvp(f, tuple(p), tuple(t))[1])  # noqa: E731
    with pytest.raises(AssertionError, match=r"tangent output against central finite differences"):
        check_jvp(f, doubled, (X, W))


def test_tolerances_default_by_dtype():
    # a derivative 0.1% off: beyond float64's default tolerance, within float32's
    slightly_wrong = _sin_with_jvp(1.001)
    with pytest.raises(AssertionError, match=r"atol=1e-05 \+ rtol=1e-05"):
        check_grads(slightly_wrong, (X,))
    check_grads(slightly_wrong, (X.astype(np.float32),))
    check_grads(slightly_wrong, (X,), atol=1e-2, rtol=1e-2)
    with pytest.raises(AssertionError, match=r"atol=0\.002 \+ rtol=0\.002"):
        check_grads(_sin_with_jvp(1.01), (X.astype(np.float32),))


def test_numerical_jvp_is_second_order_accurate():
    t = np.ones_like(X)
    fd = numerical_jvp(fnp.exp, (X,), (t,), 1e-3)
    np.testing.assert_allclose(fd, np.exp(X), rtol=1e-6)   # error eps^2/6 e^x ~ 2e-7 relative


def test_argument_errors():
    with pytest.raises(TypeError, match=r"args must be a tuple of arguments, got ndarray; wrap"):
        check_grads(fnp.sin, X)
    with pytest.raises(TypeError, match=r"argument leaf #1 has dtype int64"):
        check_grads(lambda x, n: x * n, (X, np.arange(4)))
    with pytest.raises(ValueError, match=r"modes must be a non-empty subset"):
        check_grads(fnp.sin, (X,), modes=("forward",))
    with pytest.raises(ValueError, match=r"order must be a positive int"):
        check_grads(fnp.sin, (X,), order=0)


# --------------------------------------------------------------------------------------------
# Properties over drawn inputs
# --------------------------------------------------------------------------------------------

arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
                    elements=st.floats(-2, 2))


@settings(max_examples=EXAMPLES, deadline=None)
@given(x=arrays)
def test_correct_rules_pass_on_drawn_inputs(x):
    check_grads(lambda x: fnp.tanh(x) * fnp.exp(0.5 * x) + fnp.sum(x ** 2), (x,), order=2)


@settings(max_examples=EXAMPLES, deadline=None)
@given(x=arrays.filter(lambda a: np.max(np.abs(np.cos(a))) > 0.1))
def test_wrong_rules_fail_on_drawn_inputs(x):
    with pytest.raises(AssertionError):
        check_grads(_sin_with_jvp(1.05), (x,), modes=("fwd",))
