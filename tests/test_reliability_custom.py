"""Custom rules are checked: what a custom_vjp ``bwd`` or a custom_jvp rule returns must have
the structure, shapes and (real float) dtypes of what it differentiates, as JAX checks.

Each row of a table is one way to get a rule wrong; the test expects the error type and the
pieces of the message that name the rule, the argument path and both shapes. The rules that
are right in unusual ways (None for a whole subtree, a Python float tangent, another float
precision) are a table of their own and must give the right derivative.
"""
from __future__ import annotations

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp


def _pair_product():
    """f({"a", "b"}) = a * b, with the rule under test plugged in as ``bwd``."""
    @fgrad.custom_vjp
    def product(p):
        return p["a"] * p["b"]
    return product


PARAMS = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}

BAD_BWD = [
    # (id, bwd(p, g), exception, pieces of the message)
    ("missing-leaf", lambda p, g: ({"b": g * p["a"]},), TypeError,
     ["custom_vjp product", "bwd=", "argument 0", "['b']", "missing 'a'"]),
    ("extra-leaf", lambda p, g: ({"a": g, "b": g, "c": g},), TypeError,
     ["argument 0", "unexpected 'c'"]),
    ("list-for-dict", lambda p, g: ([g, g],), TypeError, ["argument 0", "list", "dict"]),
    ("array-for-dict", lambda p, g: (g,), TypeError, ["argument 0", "ndarray", "dict"]),
    ("wrong-shape", lambda p, g: ({"a": g * p["b"], "b": g[:1]},), ValueError,
     ["argument 0['b']", "(1,)", "(2,)", "never broadcast"]),
    ("broadcastable-shape", lambda p, g: ({"a": g * p["b"], "b": fnp.ones((3, 2))},), ValueError,
     ["argument 0['b']", "(3, 2)", "(2,)"]),
    ("complex", lambda p, g: ({"a": g * 1j, "b": g},), TypeError,
     ["argument 0['a']", "complex128", "float64"]),
    ("integer", lambda p, g: ({"a": np.ones(2, int), "b": g},), TypeError,
     ["argument 0['a']", "int64"]),
    ("not-a-tuple", lambda p, g: {"a": g, "b": g}, TypeError, ["one cotangent per", "dict"]),
    ("too-many", lambda p, g: ({"a": g, "b": g}, g), TypeError,
     ["one cotangent per differentiable argument (1)", "tuple of length 2"]),
    ("a-string", lambda p, g: ({"a": "x", "b": g},), TypeError, ["argument 0['a']", "str"]),
]


@pytest.mark.parametrize("bwd, exc, pieces", [row[1:] for row in BAD_BWD],
                         ids=[row[0] for row in BAD_BWD])
def test_custom_vjp_bwd_of_the_wrong_kind_is_an_error(bwd, exc, pieces):
    product = _pair_product()
    product.defvjp(lambda p: (product(p), p), bwd)
    with pytest.raises(exc) as info:
        fgrad.grad(lambda p: fnp.sum(product(p)))(PARAMS)
    for piece in pieces:
        assert piece in str(info.value), f"{piece!r} not in {info.value}"
    # and under vmap(grad) the rule runs batched, with the shapes the function sees
    with pytest.raises(exc):
        fgrad.vmap(fgrad.grad(lambda p: fnp.sum(product(p))))(
            fgrad.tree.map(lambda x: np.stack([x, x]), PARAMS))


GOOD_BWD = [
    # (id, bwd, expected gradient)
    ("exact", lambda p, g: ({"a": g * p["b"], "b": g * p["a"]},),
     {"a": PARAMS["b"], "b": PARAMS["a"]}),
    ("none-leaf", lambda p, g: ({"a": g * p["b"], "b": None},),
     {"a": PARAMS["b"], "b": np.zeros(2)}),
    ("none-subtree", lambda p, g: (None,), {"a": np.zeros(2), "b": np.zeros(2)}),
    ("float32-cast", lambda p, g: ({"a": (g * p["b"]).astype(np.float32),
                                    "b": (g * p["a"]).astype(np.float32)},),
     {"a": PARAMS["b"], "b": PARAMS["a"]}),
]


@pytest.mark.parametrize("bwd, expected", [row[1:] for row in GOOD_BWD],
                         ids=[row[0] for row in GOOD_BWD])
def test_custom_vjp_bwd_that_is_right_gives_the_right_gradient(bwd, expected):
    product = _pair_product()
    product.defvjp(lambda p: (product(p), p), bwd)
    got = fgrad.grad(lambda p: fnp.sum(product(p)))(PARAMS)
    assert set(got) == {"a", "b"}
    for k in got:
        assert got[k].dtype == np.float64
        np.testing.assert_allclose(got[k], expected[k])


def test_custom_vjp_fwd_must_return_a_pair_and_nondiff_paths_count_from_the_call():
    @fgrad.custom_vjp
    def double(x):
        return 2 * x
    double.defvjp(lambda x: 2 * x, lambda res, g: (2 * g,))        # forgot the residuals
    with pytest.raises(TypeError, match=r"custom_vjp double \(fwd=<lambda>\).*pair"):
        fgrad.grad(lambda x: fnp.sum(double(x)))(np.ones(2))

    def scaled(k, x):
        return k * x
    scaled = fgrad.custom_vjp(scaled, nondiff_argnums=(0,))
    scaled.defvjp(lambda k, x: (k * x, None), lambda k, res, g: (fnp.ones(3),))
    # the argument is named by its position in the user's call (1), not among the diff args
    with pytest.raises(ValueError, match=r"argument 1 has shape \(3,\).*\(2,\)"):
        fgrad.grad(lambda x: fnp.sum(scaled(2.0, x)))(np.ones(2))


@fgrad.custom_jvp
def _sin(x):
    return fnp.sin(x)


BAD_JVP = [
    # (id, rule(primals, tangents), exception, pieces)
    ("wrong-shape", lambda p, t: (_sin(p[0]), t[0][:1]), ValueError,
     ["custom_jvp _sin", "jvp rule", "(1,)", "(3,)", "never broadcast"]),
    ("broadcast-scalar", lambda p, t: (_sin(p[0]), fnp.sum(t[0])), ValueError, ["()", "(3,)"]),
    ("tuple-for-array", lambda p, t: (_sin(p[0]), (t[0],)), TypeError,
     ["structure of the output", "tuple"]),
    ("complex", lambda p, t: (_sin(p[0]), t[0] * 1j), TypeError, ["complex128"]),
    ("not-a-pair", lambda p, t: _sin(p[0]), TypeError, ["pair (primal_out, tangent_out)"]),
]


@pytest.mark.parametrize("rule, exc, pieces", [row[1:] for row in BAD_JVP],
                         ids=[row[0] for row in BAD_JVP])
@pytest.mark.parametrize("mode", ["jvp", "grad"])
def test_custom_jvp_rule_of_the_wrong_kind_is_an_error(rule, exc, pieces, mode):
    _sin.defjvp(rule)
    x = np.array([0.1, 0.2, 0.3])
    call = (lambda: fgrad.jvp(_sin, (x,), (np.ones(3),))) if mode == "jvp" else \
        (lambda: fgrad.grad(lambda v: fnp.sum(_sin(v)))(x))
    with pytest.raises(exc) as info:
        call()
    for piece in pieces:
        assert piece in str(info.value), f"{piece!r} not in {info.value}"


def test_custom_jvp_python_float_and_other_precision_tangents_are_converted():
    @fgrad.custom_jvp
    def f(x):
        return fnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        return f(primals[0]), 2.0               # a Python float: was AttributeError (astype)

    out, t = fgrad.jvp(f, (1.0,), (1.0,))
    assert t == 2.0 and isinstance(t, np.ndarray)

    @fgrad.custom_jvp
    def g(x):
        return fnp.sin(x)
    g.defjvp(lambda p, t: (g(p[0]), fnp.astype(t[0] * fnp.cos(p[0]), np.float64)))
    x = np.ones(2, np.float32)
    _, t = fgrad.jvp(g, (x,), (np.ones(2, np.float32),))
    assert t.dtype == np.float32
    np.testing.assert_allclose(t, np.cos(x), rtol=1e-6)
    np.testing.assert_allclose(fgrad.grad(lambda v: fnp.sum(g(v)))(x), np.cos(x), rtol=1e-6)


@pytest.mark.parametrize("decorator", [fgrad.custom_vjp, fgrad.custom_jvp], ids=["vjp", "jvp"])
@pytest.mark.parametrize("argnums, exc, piece", [((2,), TypeError, "2 positional"),
                                                  ((0, -2), ValueError, "twice"),
                                                  ((0.5,), TypeError, "nondiff_argnums")],
                         ids=["out-of-range", "repeated", "float"])
def test_nondiff_argnums_that_the_call_does_not_have(decorator, argnums, exc, piece):
    f = decorator(lambda k, x: k * x, nondiff_argnums=argnums)
    if decorator is fgrad.custom_vjp:
        f.defvjp(lambda k, x: (k * x, None), lambda k, res, g: (g,))
    else:
        f.defjvp(lambda k, p, t: (k * p[0], k * t[0]))
    with pytest.raises(exc, match=piece):
        f(2.0, np.ones(2))


def test_negative_nondiff_argnums_count_from_the_end():
    scale = fgrad.custom_jvp(lambda x, k: k * x, nondiff_argnums=(-1,))
    scale.defjvp(lambda k, p, t: (k * p[0], k * t[0]))
    assert fgrad.jvp(lambda x: scale(x, 3.0), (2.0,), (1.0,))[1] == 3.0
    assert fgrad.grad(lambda x: scale(x, 3.0))(2.0) == 3.0
