"""Staging: ``make_jaxpr`` records a function as a small program, and ``eval_jaxpr`` replays it.

Checks the printed form (one equation per line, typed shapes such as ``f64[3]``, constants as
constvars or inline literals), that replaying the program on new inputs of the same shapes
reproduces the function (and its grad / vmap), that staged programs are themselves
transformable, and that ``linearize``'s ``f_jvp`` is a replayed linear program that vmap, grad
and jvp accept.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.func as tf

import fgrad
import fgrad.numpy as fnp
from fgrad.staging import Jaxpr, eval_jaxpr
from fn_table import CASES, assert_tree_close, random_like, stack_trees, to_torch

EQUATION = re.compile(r"^    (?:[a-z]+:(?:f64|f32|i64|i32|bool)\[[0-9,]*\] ?)+ = [a-z_]+(?:\[.*\])?(?: .+)?$")
TYPED = re.compile(r"[a-z]+:((?:f64|f32|i64|i32|bool)\[[0-9,]*\])")


def replay(jaxpr, *args):
    """Run a staged program on flat arguments; one output is returned bare."""
    outs = eval_jaxpr(jaxpr, jaxpr.consts, *fgrad.tree.leaves(args))
    return outs[0] if len(outs) == 1 else outs


def f_simple(x, w):
    return fnp.sum(fnp.tanh(x @ w) * 2.0 + np.arange(2.0))


def test_printed_form_one_equation_per_line_with_typed_shapes():
    x, w = np.ones((3, 4)), np.ones((4, 2))
    jaxpr = fgrad.make_jaxpr(f_simple)(x, w)
    lines = str(jaxpr).splitlines()
    assert re.fullmatch(r"\{ lambda [a-z]+:f64\[2\] ; [a-z]+:f64\[3,4\] [a-z]+:f64\[4,2\]\. let", lines[0])
    assert re.fullmatch(r"  in \([a-z]+\) \}", lines[-1])
    body = lines[1:-1]
    assert len(body) == len(jaxpr.eqns) >= 4
    for line in body:
        assert EQUATION.match(line), line
    prims = [e.prim.name for e in jaxpr.eqns]
    assert prims[0] == "dot_general" and "tanh" in prims and prims[-1] == "reduce_sum"
    assert "f64[3,2] = tanh" in str(jaxpr)
    assert "f64[] = reduce_sum[axes=(0, 1)]" in str(jaxpr)
    assert jaxpr.pretty() == str(jaxpr)


def test_dtypes_in_the_printed_types():
    def f(x, n, mask):
        return fnp.where(mask, x.astype(np.float32) * n, 0.0)
    jaxpr = fgrad.make_jaxpr(f)(np.ones(3), np.arange(3), np.array([True, False, True]))
    text = str(jaxpr)
    assert set(TYPED.findall(text.splitlines()[0])) == {"f64[3]", "i64[3]", "bool[3]"}
    assert "f32[3] = convert_element_type" in text


def test_constants_are_constvars_and_scalars_are_literals():
    table = np.linspace(0, 1, 5)

    def f(x):
        return fnp.sin(x) * 3.0 + table
    jaxpr = fgrad.make_jaxpr(f)(np.ones(5))
    header = str(jaxpr).splitlines()[0]
    assert " ; " in header                     # constants listed before the inputs
    assert len(jaxpr.constvars) == 1 and jaxpr.consts[0] is table   # captured, not copied
    assert re.search(r"= mul [a-z]+ 3\.0$", str(jaxpr), re.M)       # the scalar is inline
    # a function with no array constants has no constvars and no ';'
    plain = fgrad.make_jaxpr(lambda x: fnp.exp(x) + 1.0)(np.ones(2))
    assert plain.constvars == [] and " ; " not in str(plain).splitlines()[0]


def test_unused_computation_is_dropped():
    def f(x):
        fnp.cos(x) * 4.0        # computed and discarded
        return fnp.sin(x)
    jaxpr = fgrad.make_jaxpr(f)(np.ones(3))
    assert [e.prim.name for e in jaxpr.eqns] == ["sin"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_eval_jaxpr_reproduces_every_table_function(case):
    """Traced on one draw, replayed on another: the program depends on shapes only."""
    jaxpr = fgrad.make_jaxpr(case.fn)(*case.draw(seed=0))
    assert isinstance(jaxpr, Jaxpr)
    fresh = case.draw(seed=1)
    want = fgrad.tree.leaves(case.fn(*fresh))
    got = eval_jaxpr(jaxpr, jaxpr.consts, *fgrad.tree.leaves(fresh))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


def test_make_jaxpr_of_grad_and_of_grad_of_grad():
    f = lambda x: fnp.sum(fnp.sin(x) * x ** 2)   # noqa: E731
    x0, x1 = np.linspace(-1, 1, 4), np.linspace(0.5, 2, 4)
    jaxpr = fgrad.make_jaxpr(fgrad.grad(f))(x0)
    assert "cos" in str(jaxpr)                       # d sin = cos is in the backward program
    for line in str(jaxpr).splitlines()[1:-1]:
        assert EQUATION.match(line), line
    np.testing.assert_allclose(replay(jaxpr, x1), fgrad.grad(f)(x1), rtol=1e-12)
    np.testing.assert_allclose(replay(jaxpr, x1), np.cos(x1) * x1 ** 2 + 2 * x1 * np.sin(x1), rtol=1e-12)
    second = fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(fgrad.grad(f)(x))))(x0)
    np.testing.assert_allclose(replay(second, x1), fgrad.grad(lambda x: fnp.sum(fgrad.grad(f)(x)))(x1),
                               rtol=1e-12)


def test_make_jaxpr_of_vmap_has_the_batch_axis_in_its_types():
    f = lambda w, x: fnp.tanh(x @ w)   # noqa: E731
    w, xs = np.ones((3, 2)), np.ones((7, 3))
    jaxpr = fgrad.make_jaxpr(fgrad.vmap(f, in_axes=(None, 0)))(w, xs)
    text = str(jaxpr)
    assert "f64[7,3]" in text.splitlines()[0] and "f64[7,2] = tanh" in text
    rng = np.random.default_rng(0)
    w1, xs1 = rng.standard_normal((3, 2)), rng.standard_normal((7, 3))
    np.testing.assert_allclose(replay(jaxpr, w1, xs1), np.tanh(xs1 @ w1), rtol=1e-12)
    per_ex = fgrad.make_jaxpr(fgrad.vmap(fgrad.grad(lambda w, x: fnp.sum(f(w, x))), in_axes=(None, 0)))(w, xs)
    np.testing.assert_allclose(replay(per_ex, w1, xs1),
                               fgrad.vmap(fgrad.grad(lambda w, x: fnp.sum(f(w, x))), in_axes=(None, 0))(w1, xs1),
                               rtol=1e-12)


def test_make_jaxpr_with_pytrees_and_several_outputs():
    def f(p, x):
        y = x @ p["w"] + p["b"]
        return {"y": y, "norm": fnp.sum(y * y)}
    p = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    jaxpr = fgrad.make_jaxpr(f)(p, np.ones(3))
    assert len(jaxpr.invars) == 3 and len(jaxpr.outvars) == 2
    rng = np.random.default_rng(1)
    p1 = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    x1 = rng.standard_normal(3)
    norm, y = replay(jaxpr, p1, x1)   # outputs in flattening order: dict keys sorted
    want = f(p1, x1)
    np.testing.assert_allclose(y, want["y"], rtol=1e-12)
    np.testing.assert_allclose(norm, want["norm"], rtol=1e-12)


def test_staged_programs_are_transformable():
    """eval_jaxpr goes through bind, so grad / vmap / jvp apply to a replayed program."""
    f = lambda x: fnp.sum(fnp.exp(fnp.sin(x)) / (1 + x * x))   # noqa: E731
    x = np.linspace(-1, 1, 5)
    jaxpr = fgrad.make_jaxpr(f)(x)
    replayed = lambda x: replay(jaxpr, x)   # noqa: E731
    np.testing.assert_allclose(fgrad.grad(replayed)(x), fgrad.grad(f)(x), rtol=1e-12)
    xs = np.random.default_rng(2).standard_normal((3, 5))
    np.testing.assert_allclose(fgrad.vmap(replayed)(xs), fgrad.vmap(f)(xs), rtol=1e-12)
    np.testing.assert_allclose(fgrad.hessian(replayed)(x), fgrad.hessian(f)(x), rtol=1e-10)
    restaged = fgrad.make_jaxpr(replayed)(x)
    assert [e.prim.name for e in restaged.eqns] == [e.prim.name for e in jaxpr.eqns]


# --------------------------------------------------------------------------------------------
# linearize
# --------------------------------------------------------------------------------------------

def test_linearize_evaluates_f_once_and_f_jvp_is_a_replayed_linear_program():
    calls = []

    def f(x):
        calls.append(1)
        return fnp.sin(x) * fnp.exp(x[::-1])

    x = np.linspace(0.1, 0.9, 4)
    out, f_jvp = fgrad.linearize(f, x)
    assert len(calls) == 1
    np.testing.assert_allclose(out, np.sin(x) * np.exp(x[::-1]))
    t = np.array([1.0, -2.0, 0.5, 3.0])
    _, t_want = fgrad.jvp(f, (x,), (t,))
    calls.clear()
    np.testing.assert_allclose(f_jvp(t), t_want, rtol=1e-12)
    np.testing.assert_allclose(f_jvp(2 * t), 2 * t_want, rtol=1e-12)   # linear
    assert calls == []                                                   # f is not run again
    # only the tangent computation was kept: sin/cos/exp of the primal are constants
    linear = fgrad.make_jaxpr(f_jvp)(t)
    assert not {"sin", "cos", "exp"} & {e.prim.name for e in linear.eqns}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch's fx tracing
def test_linearize_f_jvp_under_vmap_grad_and_jvp():
    rng = np.random.default_rng(3)
    w, x = rng.standard_normal((3, 4)), rng.standard_normal(4)
    f = lambda w, x: fnp.tanh(w @ x) * fnp.sum(x ** 2)   # noqa: E731
    torch_f = lambda w, x: torch.tanh(w @ x) * torch.sum(x ** 2)   # noqa: E731
    _, f_jvp = fgrad.linearize(f, w, x)
    tw, tx = rng.standard_normal((5, 3, 4)), rng.standard_normal((5, 4))
    batched = fgrad.vmap(f_jvp)(tw, tx)
    _, torch_f_jvp = tf.linearize(torch_f, *to_torch((w, x)))
    assert_tree_close(batched, tf.vmap(torch_f_jvp)(*to_torch((tw, tx))))
    # the Jacobian from vmapping f_jvp over the basis of x
    jac = fgrad.vmap(lambda e: f_jvp(np.zeros_like(w), e), out_axes=1)(np.eye(4))
    np.testing.assert_allclose(jac, fgrad.jacfwd(f, argnums=1)(w, x), rtol=1e-12)
    # grad of a linear map is its transpose: <u, J t> differentiated in t gives J^T u
    u = rng.standard_normal(3)
    gw, gx = fgrad.grad(lambda a, b: fnp.sum(f_jvp(a, b) * u), argnums=(0, 1))(np.zeros_like(w), np.zeros_like(x))
    _, pullback = fgrad.vjp(f, w, x)
    assert_tree_close((gw, gx), pullback(u))
    # jvp of a linear map is itself
    _, t_out = fgrad.jvp(f_jvp, (tw[0], tx[0]), (tw[1], tx[1]))
    np.testing.assert_allclose(t_out, f_jvp(tw[1], tx[1]), rtol=1e-12)


def test_linearize_with_pytree_primals_and_outputs():
    def f(p):
        return {"a": fnp.sin(p["x"]) * p["y"], "b": fnp.sum(p["x"] ** 3)}
    p = {"x": np.array([0.2, 0.4]), "y": np.array(1.5)}
    out, f_jvp = fgrad.linearize(f, p)
    t = random_like(p, np.random.default_rng(4))
    assert_tree_close(f_jvp(t), fgrad.jvp(f, (p,), (t,))[1])
    assert_tree_close(out, f(p))
    ts = stack_trees([t, random_like(p, np.random.default_rng(5))])
    batched = fgrad.vmap(f_jvp)(ts)
    assert batched["a"].shape == (2, 2) and batched["b"].shape == (2,)


# --------------------------------------------------------------------------------------------
# what staging records beyond the equations
# --------------------------------------------------------------------------------------------

def test_each_equation_records_the_rule_that_staged_it():
    jaxpr = fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(fnp.tanh(x) * x)))(np.ones(3))
    sources = {(e.prim.name, e.source) for e in jaxpr.eqns}
    assert ("tanh", None) in sources                       # the forward pass: no rule
    assert any(s == "vjp of tanh" for _, s in sources)     # 1 - tanh^2 came from tanh's VJP
    assert any(s == "vjp of mul" for _, s in sources)
    tangent = fgrad.make_jaxpr(lambda x: fgrad.jvp(fnp.sin, (x,), (x,))[1])(np.ones(2))
    assert [(e.prim.name, e.source) for e in tangent.eqns] == [("cos", "jvp of sin"),
                                                              ("mul", "jvp of sin")]


def test_staging_errors_name_the_staging_and_the_ways_out():
    def f(x):
        return x if x > 0 else -x
    with pytest.raises(fgrad.ConcretizationError, match=r"make_jaxpr.*fgrad.numpy.where"):
        fgrad.make_jaxpr(f)(1.0)
    with pytest.raises(fgrad.TracerArrayConversionError, match="make_jaxpr"):
        fgrad.make_jaxpr(lambda x: np.asarray(x))(np.ones(2))


def test_values_of_an_outer_transform_are_constants_of_the_program():
    """vmap(linearize(f)) and grad of a function that stages a closure (the staging trace used
    to ask NumPy for the rank of an outer tracer, which raised TracerArrayConversionError)."""
    f = lambda x: fnp.sin(x) * x   # noqa: E731
    xs = np.linspace(0, 1, 6).reshape(2, 3)
    got = fgrad.vmap(lambda x: fgrad.linearize(f, x)[1](np.ones(3)))(xs)
    np.testing.assert_allclose(got, np.cos(xs) * xs + np.sin(xs), rtol=1e-12)

    def staged_closure(w):
        jaxpr = fgrad.make_jaxpr(lambda x: fnp.sum(x * w))(np.ones(3))
        assert len(jaxpr.constvars) == 1        # w, a tracer of grad, is a constant here
        return replay(jaxpr, np.arange(3.0))
    np.testing.assert_allclose(fgrad.grad(staged_closure)(np.ones(3)), np.arange(3.0))
