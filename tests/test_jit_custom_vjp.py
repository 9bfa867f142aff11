"""custom_vjp under jit: the rule's fwd and bwd run as two calls of the compiled program, on
the replay's NumPy values, so a rule with a NumPy fast path (fnn.models' kernels) keeps it.

Checked: gradients equal eager to 1e-12; the program holds one fwd and one bwd call per use
and replays call the user's functions on plain arrays; a rule closing over a traced value (a
jit argument passed as a nondiff argument) is traced through instead; the two call primitives'
own rules (which only a direct bind can reach) agree with differentiating fwd/bwd themselves.
"""
from __future__ import annotations

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad.custom import custom_vjp_bwd_call_p, custom_vjp_fwd_call_p

SEEN = []


@fgrad.custom_vjp
def softplus(x):
    return fnp.log1p(fnp.exp(x))


def softplus_fwd(x):
    SEEN.append(("fwd", type(x)))
    if type(x) is np.ndarray:                       # the NumPy fast path
        s = 1.0 / (1.0 + np.exp(-x))
        return np.log1p(np.exp(x)), (x, s)
    return fnp.log1p(fnp.exp(x)), (x, 1.0 / (1.0 + fnp.exp(-x)))


def softplus_bwd(res, g):
    SEEN.append(("bwd", type(g)))
    _, s = res
    return (g * s,)


softplus.defvjp(softplus_fwd, softplus_bwd)


def loss(w, x):
    return fnp.sum(softplus(x @ w) ** 2)


def test_jit_grad_calls_the_rule_on_arrays_and_matches_eager():
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((3, 2)), rng.standard_normal((5, 3))
    eager = fgrad.grad(loss)(w, x)
    jitted = fgrad.jit(fgrad.grad(loss))
    jitted(w, x)                                       # trace (and learn the shapes)
    SEEN.clear()
    np.testing.assert_allclose(jitted(w, x), eager, rtol=1e-12, atol=1e-12)
    assert SEEN == [("fwd", np.ndarray), ("bwd", np.ndarray)]
    source = jitted.lower(w, x).source
    assert source.count("custom_vjp_fwd_call") >= 1 and source.count("custom_vjp_bwd_call") >= 1


def test_value_and_grad_of_a_gpt_step_under_jit_matches_eager():
    fnn_models = pytest.importorskip("fnn.models")
    model = fnn_models.GPT2(fnn_models.GPT2Config(vocab_size=30, n_positions=16, n_embd=16,
                                                  n_layer=2, n_head=2), dtype=np.float64)
    params = model.init(fgrad.random.key(0))
    ids = np.arange(24).reshape(2, 12) % 30
    f = fgrad.value_and_grad(lambda p, i: fnn_models.lm_loss(model.apply(p, i), i))
    (l_e, g_e), (l_j, g_j) = f(params, ids), fgrad.jit(f)(params, ids)
    assert abs(l_e - l_j) < 1e-12
    for a, b in zip(fgrad.tree.leaves(g_e), fgrad.tree.leaves(g_j)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_a_rule_closing_over_a_traced_value_is_traced_through():
    scaled = fgrad.custom_vjp(lambda x, k: x * k, nondiff_argnums=(1,))
    scaled.defvjp(lambda x, k: (x * k, None), lambda k, res, g: (g * k,))
    f = fgrad.jit(fgrad.grad(lambda x, k: fnp.sum(scaled(x, k))))
    x = np.arange(3.0)
    np.testing.assert_allclose(f(x, np.full(3, 2.0)), np.full(3, 2.0))
    np.testing.assert_allclose(f(x, np.full(3, 5.0)), np.full(3, 5.0))   # k is not baked in
    assert "custom_vjp_fwd_call" not in f.lower(x, np.full(3, 2.0)).source


def _fwd_flat(x):
    return [x ** 3], (fnp.sin(x),)


def _bwd_flat(res, cts):
    (s,) = res
    return [cts[0] * s]


def test_the_call_primitives_rules_differentiate_fwd_and_bwd_themselves():
    from fgrad.custom import _ResidualTree
    x, t = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    box = _ResidualTree()

    def fwd_call(x):
        return custom_vjp_fwd_call_p.bind(x, fwd=_fwd_flat, residuals=box)

    def expected_fwd(x):
        return [x ** 3, fnp.sin(x)]

    out, tan = fgrad.jvp(fwd_call, (x,), (t,))
    out_e, tan_e = fgrad.jvp(expected_fwd, (x,), (t,))
    for a, b in zip(out + tan, out_e + tan_e):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    g = fgrad.grad(lambda x: fnp.sum(fwd_call(x)[0] * fwd_call(x)[1]))(x)
    g_e = fgrad.grad(lambda x: fnp.sum(x ** 3 * fnp.sin(x)))(x)
    np.testing.assert_allclose(g, g_e, rtol=1e-13)
    xs = np.stack([x, 2 * x])
    for a, b in zip(fgrad.vmap(fwd_call)(xs), fgrad.vmap(expected_fwd)(xs)):
        np.testing.assert_allclose(a, b, rtol=1e-14)

    fwd_call(x)                                         # records the residual tree in box
    avals = (fgrad.ShapeDtypeStruct(x.shape, x.dtype),)

    def bwd_call(s, g):
        return custom_vjp_bwd_call_p.bind(s, g, bwd=_bwd_flat, residuals=box, n_res=1,
                                          cts_avals=avals)[0]

    s = np.sin(x)
    np.testing.assert_allclose(fgrad.grad(lambda s: fnp.sum(bwd_call(s, t)))(s), t)
    np.testing.assert_allclose(fgrad.vmap(bwd_call, in_axes=(None, 0))(s, np.stack([t, t])),
                               np.stack([t * s, t * s]))
