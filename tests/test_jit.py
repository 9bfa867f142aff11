"""``fgrad.jit``: staged once per signature, replayed as generated NumPy, equal to eager code.

* every row of the shared function table with jit in each position (jit(f), jit(grad(f)),
  grad(jit(f)), vmap(jit(f)), jit(vmap(f)), jvp(jit(f)), jit(jit(f))), equal to eager to 1e-12;
* the cache: same signature, no retrace; a new shape, dtype, structure or static value traces;
  Python scalars are dynamic (one trace for every value) and keep NumPy's weak promotion;
* static_argnums / static_argnames, pytree arguments and results (dicts, tuples, None);
* donation really writes into the donated buffer; other inputs and constants never change;
* each program pass on a small hand-made program; the generated source and its comments;
* the errors (Python control flow on a traced value, raw NumPy, non-array arguments, retrace
  warning); eval_shape; staging with tracers of an outer transform;
* a training step (value_and_grad + foptim.adam) under jit equal to eager over 5 steps.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
import foptim
from fgrad import passes
from fgrad.jit import RETRACE_WARNING_AFTER, RetraceWarning
from fgrad.core import PRIMITIVES
from fgrad.staging import Eqn, Jaxpr, Literal, ShapedArray, Var, dce, eval_jaxpr
from fn_table import CASES, assert_tree_close, output_weights, random_like, scalarize, stack_trees

TOL = dict(rtol=1e-12, atol=1e-12)


def close(actual, expected):
    assert_tree_close(actual, expected, **TOL)


def scalar_fn(case, args):
    if case.scalar:
        return case.fn
    return scalarize(case, output_weights(case, args))[0]


# --------------------------------------------------------------------------------------------
# the table, with jit in every position
# --------------------------------------------------------------------------------------------

ids = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jit_equals_eager_and_replays_without_tracing(case):
    jitted = fgrad.jit(case.fn)
    for seed in (0, 1, 2):
        args = case.draw(seed)
        close(jitted(*args), case.fn(*args))
    assert jitted.trace_count == 1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jit_of_grad(case):
    args = case.draw(0)
    f = scalar_fn(case, args)
    argnums = tuple(range(case.nargs))
    jitted = fgrad.jit(fgrad.grad(f, argnums=argnums))
    for seed in (0, 1):
        fresh = case.draw(seed)
        close(jitted(*fresh), fgrad.grad(f, argnums=argnums)(*fresh))
    assert jitted.trace_count == 1
    value, g = fgrad.jit(fgrad.value_and_grad(f))(*args)
    want_value, want_g = fgrad.value_and_grad(f)(*args)
    close(value, want_value)
    close(g, want_g)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_grad_of_jit(case):
    args = case.draw(0)
    f = scalar_fn(case, args)
    argnums = tuple(range(case.nargs))
    close(fgrad.grad(fgrad.jit(f), argnums=argnums)(*args), fgrad.grad(f, argnums=argnums)(*args))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jvp_of_jit(case):
    args = case.draw(0)
    tangents = random_like(args, np.random.default_rng(7))
    close(fgrad.jvp(fgrad.jit(case.fn), args, tangents), fgrad.jvp(case.fn, args, tangents))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap_of_jit_and_jit_of_vmap(case):
    batch = stack_trees([case.draw(s) for s in range(3)])
    want = fgrad.vmap(case.fn)(*batch)
    close(fgrad.vmap(fgrad.jit(case.fn))(*batch), want)
    jitted = fgrad.jit(fgrad.vmap(case.fn))
    close(jitted(*batch), want)
    close(jitted(*stack_trees([case.draw(s) for s in range(3, 6)])),
          fgrad.vmap(case.fn)(*stack_trees([case.draw(s) for s in range(3, 6)])))
    assert jitted.trace_count == 1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jit_of_jit(case):
    args = case.draw(0)
    inner = fgrad.jit(case.fn)
    outer = fgrad.jit(lambda *a: inner(*a))
    close(outer(*args), case.fn(*args))
    assert inner.trace_count == 0          # inside the outer trace the inner one is inlined
    close(inner(*args), case.fn(*args))    # and on its own it compiles as usual


def test_per_example_grads_under_jit():
    from fn_table import mlp_loss
    case = next(c for c in CASES if c.name == "mlp_cross_entropy")
    params, x = case.draw(0)
    labels = np.arange(x.shape[0]) % 3
    per_ex = fgrad.vmap(fgrad.grad(mlp_loss), in_axes=(None, 0, 0))
    close(fgrad.jit(per_ex)(params, x, labels), per_ex(params, x, labels))


def test_hessian_under_jit_and_jit_under_hessian():
    f = lambda x: fnp.sum(fnp.sin(x) * fnp.exp(x) ** 2)   # noqa: E731
    x = np.linspace(-1, 1, 4)
    close(fgrad.jit(fgrad.hessian(f))(x), fgrad.hessian(f)(x))
    close(fgrad.hessian(fgrad.jit(f))(x), fgrad.hessian(f)(x))


def test_custom_vjp_under_jit_and_grad_of_jit_keeps_the_custom_rule():
    @fgrad.custom_vjp
    def clip_grad(x):
        return x

    clip_grad.defvjp(lambda x: (x, None), lambda _, g: (fnp.clip(g, -1.0, 1.0),))
    f = lambda x: fnp.sum(clip_grad(x) * 5.0)   # noqa: E731
    x = np.ones(3)
    np.testing.assert_array_equal(fgrad.grad(f)(x), np.ones(3))
    np.testing.assert_array_equal(fgrad.grad(fgrad.jit(f))(x), np.ones(3))   # jit_call's VJP
    np.testing.assert_array_equal(fgrad.jit(fgrad.grad(f))(x), np.ones(3))   # staged backward


# --------------------------------------------------------------------------------------------
# transforms of a jitted function: one jit_call equation on its program
# --------------------------------------------------------------------------------------------

def _counting(f):
    calls = []

    def g(*args):
        calls.append(1)
        return f(*args)
    return g, calls


def test_grad_jvp_vmap_of_jit_trace_once_and_replay_compiled_programs():
    f, calls = _counting(lambda w, x: fnp.sum(fnp.tanh(x @ w) ** 2))
    jitted = fgrad.jit(f)
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(3, 2)), rng.normal(size=(5, 3))
    eager = lambda w, x: fnp.sum(fnp.tanh(x @ w) ** 2)   # noqa: E731
    for _ in range(3):
        close(fgrad.grad(jitted, argnums=(0, 1))(w, x), fgrad.grad(eager, argnums=(0, 1))(w, x))
        close(fgrad.jvp(jitted, (w, x), (w, x)), fgrad.jvp(eager, (w, x), (w, x)))
        close(fgrad.vmap(jitted, in_axes=(None, 0))(w, x[:, None]),
              fgrad.vmap(eager, in_axes=(None, 0))(w, x[:, None]))
    assert len(calls) == 2 and jitted.trace_count == 2   # (f64[3,2], f64[5,3]) and the vmapped row
    # the primitive the transforms saw, and the programs its rules built, each cached on it
    (jaxpr, _, _), = [e for k, e in jitted._call_cache.items() if k[1][1][0].shape == (5, 3)]
    assert {("vjp", (True, True)), ("jvp", (True, True))} <= set(jaxpr._derived)


def test_vjp_of_jit_splits_one_forward_and_one_backward_pass():
    from fgrad.primitives.control import split_vjp
    w, x = np.ones((3, 2)), np.ones((5, 3))
    jitted = fgrad.jit(lambda w, x: fnp.sum(fnp.tanh(x @ w) ** 2))
    fgrad.grad(jitted)(w, x)
    (jaxpr, _, _), = jitted._call_cache.values()
    assert set(jaxpr._derived) == {("vjp", (True, False))}   # grad w.r.t. w only
    fwd, bwd, _ = split_vjp(jaxpr, (True, False))
    fwd_prims = [e.prim.name for e in passes.optimize(fwd)[0].eqns]
    bwd_prims = [e.prim.name for e in passes.optimize(bwd)[0].eqns]
    assert fwd_prims.count("tanh") == 1 and fwd_prims.count("dot_general") == 1
    assert "tanh" not in bwd_prims                 # the backward reads tanh's result, saved
    assert bwd_prims.count("dot_general") == 1     # only x.T @ g: w's cotangent, not x's
    every = [e.prim.name for e in passes.optimize(split_vjp(jaxpr)[1])[0].eqns]
    assert every.count("dot_general") == 2          # (by default every float input gets one)


def test_transforms_compose_around_jit_to_any_depth():
    f = lambda x: fnp.sum(fnp.sin(x) * fnp.exp(x) ** 2)   # noqa: E731
    jf = fgrad.jit(f)
    x = np.linspace(-1, 1, 4)
    close(fgrad.jacfwd(fgrad.jit(fgrad.grad(jf)))(x), fgrad.hessian(f)(x))
    close(fgrad.jacrev(fgrad.jit(fgrad.jacfwd(jf)))(x), fgrad.hessian(f)(x))
    close(fgrad.vmap(fgrad.grad(jf))(np.stack([x, 2 * x])), fgrad.vmap(fgrad.grad(f))(np.stack([x, 2 * x])))
    close(fgrad.grad(lambda x: fgrad.jvp(jf, (x,), (fnp.ones_like(x),))[1])(x),
          fgrad.grad(lambda x: fgrad.jvp(f, (x,), (fnp.ones_like(x),))[1])(x))
    close(fgrad.jit(fgrad.grad(jf))(x), fgrad.grad(f)(x))
    # under staging the program is inlined, not called
    text = str(fgrad.make_jaxpr(fgrad.grad(jf))(x))
    assert "jit_call" not in text and "sin" in text


def test_custom_jvp_and_checkpoint_rules_survive_under_transforms_of_jit():
    @fgrad.custom_jvp
    def f(x):
        return fnp.sin(x)
    f.defjvp(lambda p, t: (fnp.sin(p[0]), 2.0 * t[0]))     # not sin's derivative: visible
    g = lambda x: fnp.sum(f(x) * x)   # noqa: E731
    x = np.linspace(0.2, 1, 3)
    close(fgrad.grad(fgrad.jit(g))(x), 2.0 * x + np.sin(x))
    close(fgrad.jvp(fgrad.jit(g), (x,), (np.ones(3),))[1], np.sum(2.0 * x + np.sin(x)))
    close(fgrad.vmap(fgrad.grad(fgrad.jit(g)))(np.stack([x, 2 * x])),
          np.stack([2.0 * x + np.sin(x), 4.0 * x + np.sin(2 * x)]))
    h = lambda x: fnp.sum(fgrad.checkpoint(lambda y: fnp.tanh(y) ** 2)(x))   # noqa: E731
    close(fgrad.grad(fgrad.jit(h))(x), fgrad.grad(h)(x))
    close(fgrad.hessian(fgrad.jit(h))(x), fgrad.hessian(h)(x))


def test_jit_under_grad_closing_over_an_outer_tracer():
    x0 = np.arange(3.0)

    def loss(w):
        return fgrad.jit(lambda x: fnp.sum(x * w * w))(x0)
    close(fgrad.grad(loss)(2.0), 4.0 * x0.sum())
    close(fgrad.vmap(fgrad.grad(loss))(np.array([1.0, 3.0])), np.array([2.0, 6.0]) * x0.sum())


def test_jit_under_grad_with_static_integer_and_scalar_arguments():
    def f(x, n, i, scale):
        return fnp.sum(x ** n * scale) + fnp.sum(x[i])
    jitted = fgrad.jit(f, static_argnums=(1,))
    x, i = np.linspace(0.5, 2, 4), np.array([0, 2])
    for n in (2, 3):
        close(fgrad.grad(jitted)(x, n, i, 0.5), fgrad.grad(f)(x, n, i, 0.5))
    close(fgrad.vmap(jitted, in_axes=(0, None, None, None))(np.stack([x, x]), 2, i, 1.5),
          fgrad.vmap(f, in_axes=(0, None, None, None))(np.stack([x, x]), 2, i, 1.5))
    value, g = fgrad.value_and_grad(fgrad.jit(lambda x: (fnp.sum(x ** 2), x)), has_aux=True)(x)
    close(value, (np.sum(x ** 2), x))
    close(g, 2 * x)


def test_python_control_flow_in_a_jitted_function_under_grad_is_a_clear_error():
    def f(x):
        return fnp.sum(x) if fnp.sum(x) > 0 else -fnp.sum(x)
    with pytest.raises(fgrad.ConcretizationError, match=r"jit\(f\).*fgrad.lax.cond"):
        fgrad.grad(fgrad.jit(f))(np.ones(3))


# --------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------

def test_cache_hits_and_retraces():
    calls = []

    def f(x, y):
        calls.append(1)
        return fnp.tanh(x) * y

    jitted = fgrad.jit(f)
    x = np.ones(3)
    jitted(x, x)
    jitted(x + 1, x * 2)               # same shapes and dtypes: replayed
    assert jitted.trace_count == 1 and len(calls) == 1
    jitted(np.ones(4), np.ones(4))     # new shape
    assert jitted.trace_count == 2
    jitted(x.astype(np.float32), x.astype(np.float32))   # new dtype
    assert jitted.trace_count == 3
    jitted(x, np.ones((2, 3)))         # new shape of one argument
    assert jitted.trace_count == 4
    jitted(x, x)                       # seen before
    assert jitted.trace_count == 4 and len(calls) == 4
    assert jitted._cache_size() == 4


def test_python_scalars_are_dynamic_and_weakly_typed():
    jitted = fgrad.jit(lambda x, s: x * s + s)
    x32 = np.ones(3, np.float32)
    for s in (0.5, 1.5, 2.0):
        out = jitted(x32, s)
        assert out.dtype == np.float32                      # NumPy's weak promotion, as eager
        np.testing.assert_array_equal(out, x32 * s + s)
    assert jitted.trace_count == 1
    jitted(x32, 3)             # an int is another signature (int promotion differs)
    assert jitted(x32, np.float64(2.0)).dtype == np.float64
    assert jitted.trace_count == 3


def test_static_argnums_and_argnames():
    def f(x, n, *, mode="sum"):
        y = x
        for _ in range(n):             # Python control flow on a static value
            y = fnp.sin(y)
        return fnp.sum(y) if mode == "sum" else fnp.max(y)

    x = np.linspace(0, 1, 5)
    jitted = fgrad.jit(f, static_argnums=1, static_argnames="mode")
    close(jitted(x, 3), f(x, 3))
    close(jitted(x, 3, mode="max"), f(x, 3, mode="max"))
    close(jitted(x * 2, 3, mode="max"), f(x * 2, 3, mode="max"))
    assert jitted.trace_count == 2
    close(jitted(x, 2), f(x, 2))
    assert jitted.trace_count == 3
    by_name = fgrad.jit(f, static_argnames=("n",))   # a static name passed by position
    close(by_name(x, 4), f(x, 4))
    with pytest.raises(TypeError, match="hashable"):
        fgrad.jit(lambda x, shape: x, static_argnums=1)(x, [1, 2])


def test_pytree_arguments_and_outputs():
    def f(p, pair, nothing):
        assert nothing is None
        a, b = pair
        return {"y": p["w"] @ a + p["b"], "aux": (fnp.sum(b), None, 3)}

    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    pair = (rng.standard_normal(3), rng.standard_normal(4))
    jitted = fgrad.jit(f)
    out = jitted(p, pair, None)
    close(out["y"], f(p, pair, None)["y"])
    assert out["aux"][1] is None and out["aux"][2] == 3
    close(out["aux"][0], np.sum(pair[1]))
    jitted({"w": p["w"], "b": p["b"]}, pair, None)
    assert jitted.trace_count == 1
    jitted(p, [pair[0], pair[1]], None)    # a list instead of a tuple: another structure
    assert jitted.trace_count == 2


def test_keyword_arguments_are_dynamic_unless_static():
    jitted = fgrad.jit(lambda x, scale=1.0: x * scale)
    np.testing.assert_array_equal(jitted(np.ones(2), scale=np.array(3.0)), [3.0, 3.0])
    np.testing.assert_array_equal(jitted(np.ones(2), scale=np.array(4.0)), [4.0, 4.0])
    assert jitted.trace_count == 1


def test_retrace_warning_after_many_traces():
    jitted = fgrad.jit(lambda x, n: x * n, static_argnums=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(RETRACE_WARNING_AFTER - 1):
            jitted(np.ones(2), n)
        assert not caught
        jitted(np.ones(2), 100)
    assert len(caught) == 1 and issubclass(caught[0].category, RetraceWarning)
    message = str(caught[0].message)
    assert "traced 8 times" in message and "static argument changed" in message


# --------------------------------------------------------------------------------------------
# the replay is plain NumPy
# --------------------------------------------------------------------------------------------

def test_replay_binds_no_primitive(monkeypatch):
    f = lambda x: fnp.sum(fnp.tanh(x) ** 2)   # noqa: E731
    jitted = fgrad.jit(fgrad.value_and_grad(f))
    x = np.linspace(0, 1, 4)
    jitted(x)
    import sys
    from fgrad.core import Primitive, bind

    def no_bind(*a, **k):
        raise AssertionError("bind was called during a replay")
    monkeypatch.setattr(Primitive, "bind", no_bind)
    for module in list(sys.modules.values()):     # every module that imported bind by name
        if getattr(module, "bind", None) is bind:
            monkeypatch.setattr(module, "bind", no_bind)
    with pytest.raises(AssertionError, match="bind was called"):
        fnp.sum(x)          # the patch is in force (elementwise ops on arrays skip bind eagerly)
    value, g = jitted(x * 2)
    assert type(g) is np.ndarray
    np.testing.assert_allclose(g, 2 * np.tanh(2 * x) * (1 - np.tanh(2 * x) ** 2), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# donation and the inputs that must not change
# --------------------------------------------------------------------------------------------

def test_donated_buffer_is_reused():
    jitted = fgrad.jit(lambda x, y: fnp.tanh(x * 2.0) + y, donate_argnums=0)
    x, y = np.linspace(0, 1, 8), np.ones(8)
    want = np.tanh(x * 2.0) + y
    out = jitted(x, y)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert np.shares_memory(out, x)            # the result was written into x's buffer
    np.testing.assert_array_equal(y, np.ones(8))
    lowered = jitted.lower(np.ones(8), np.ones(8))
    assert "out=a" in lowered.source or "writes into" in lowered.source


def test_donation_skipped_when_the_buffer_is_shared_or_read_only():
    jitted = fgrad.jit(lambda x, y: x * 2.0 + y, donate_argnums=0)
    x = np.linspace(0, 1, 4)
    out = jitted(x, x)                          # the same array twice: not donated
    np.testing.assert_allclose(out, 3 * np.linspace(0, 1, 4))
    np.testing.assert_allclose(x, np.linspace(0, 1, 4))
    ro = np.linspace(0, 1, 4)
    ro.flags.writeable = False
    np.testing.assert_allclose(jitted(ro, np.ones(4)), ro * 2 + 1)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_inputs_and_constants_are_never_overwritten(case):
    """Property: after any call (forward or backward program) every input is unchanged."""
    args = case.draw(3)
    copies = fgrad.tree.map(np.copy, args)
    f = scalar_fn(case, args)
    fgrad.jit(case.fn)(*args)
    fgrad.jit(fgrad.value_and_grad(f, argnums=tuple(range(case.nargs))))(*args)
    fgrad.jit(fgrad.vmap(case.fn))(*stack_trees([args, args]))
    close(args, copies)


def test_constants_and_views_are_never_written():
    table = np.linspace(1, 2, 6)

    def f(x):
        v = fnp.reshape(x * 2.0, (2, 3))      # a view of a fresh buffer, still read below
        w = fnp.exp(v)                        # must not overwrite v's buffer...
        return w + fnp.reshape(v, (6,)).reshape(2, 3) + table.reshape(2, 3), table * 1.0

    x = np.arange(6.0)
    jitted = fgrad.jit(f)
    (a, b), want = jitted(x), f(x)
    close((a, b), want)
    np.testing.assert_array_equal(table, np.linspace(1, 2, 6))
    a2, _ = jitted(x)
    close(a2, want[0])


# --------------------------------------------------------------------------------------------
# passes, each on a small hand-made program
# --------------------------------------------------------------------------------------------

P = {name: PRIMITIVES[name] for name in ("mul", "add", "sub", "neg", "tanh", "exp", "transpose",
                                           "reshape", "broadcast_to", "convert_element_type",
                                           "reduce_sum")}


def var(shape=(3,), dtype=np.float64, name="v"):
    return Var(ShapedArray(shape, dtype), name)


def eqn(prim, ins, out, **params):
    return Eqn(P[prim], list(ins), params, [out])


def run(jaxpr, *args):
    return eval_jaxpr(jaxpr, jaxpr.consts, *args)


def test_pass_simplify_algebraic_identities():
    x = var(name="x")
    i = var(dtype=np.int64, name="i")
    m, a, s, r, b, c, n1, n2, r2 = (var(name=f"t{k}") for k in range(9))
    t1, t2, t3 = var((3, 1), name="t1"), var((1, 3), name="t2"), var((3, 1), name="t3")
    out_i = var(name="oi")
    jaxpr = Jaxpr([x, i], [], [], [
        eqn("mul", [x, Literal(1.0)], m),                  # x * 1 -> x
        eqn("add", [Literal(0.0), m], a),                  # 0 + x -> x
        eqn("sub", [a, Literal(0)], s),                    # x - 0 -> x
        eqn("reshape", [s], r, shape=(3,)),                # to its own shape -> x
        eqn("broadcast_to", [r], b, shape=(3,)),           # to its own shape -> x
        eqn("convert_element_type", [b], c, dtype=np.dtype(np.float64)),   # same dtype -> x
        eqn("reshape", [c], t1, shape=(3, 1)),
        eqn("transpose", [t1], t2, perm=(1, 0)),
        eqn("transpose", [t2], t3, perm=(1, 0)),           # transpose of transpose -> t1
        eqn("reshape", [t3], r2, shape=(3,)),              # reshape of reshape of c -> c
        eqn("neg", [r2], n1), eqn("neg", [n1], n2),        # -(-x) -> x
        eqn("mul", [i, Literal(1.0)], out_i),              # i64 * 1.0 is a float: kept
    ], [n2, out_i])
    simple = dce(passes.simplify(jaxpr))
    simple = dce(passes._simplify_all(simple))
    assert simple.outvars[0] is x
    assert [e.prim.name for e in simple.eqns] == ["mul"]
    np.testing.assert_array_equal(run(simple, np.arange(3.0), np.arange(3))[1], np.arange(3.0))


def test_pass_cse():
    x = var(name="x")
    t1, t2, p1, p2, out = (var(name=n) for n in ("t1", "t2", "p1", "p2", "out"))
    jaxpr = Jaxpr([x], [], [], [
        eqn("tanh", [x], t1), eqn("tanh", [x], t2),                   # same op twice
        eqn("mul", [t1, Literal(2.0)], p1), eqn("mul", [t2, Literal(2.0)], p2),
        eqn("add", [p1, p2], out)], [out])
    merged = passes.cse(jaxpr)
    assert [e.prim.name for e in merged.eqns] == ["tanh", "mul", "add"]
    assert merged.eqns[-1].inputs[0] is merged.eqns[-1].inputs[1]
    x0 = np.linspace(0, 1, 3)
    np.testing.assert_allclose(run(merged, x0)[0], 4 * np.tanh(x0))
    # different parameters or literal types are different expressions
    s1, s2 = var((), name="s1"), var((), name="s2")
    keep = Jaxpr([x], [], [], [eqn("reduce_sum", [x], s1, axes=(0,)),
                               eqn("reduce_sum", [x], s2, axes=())], [s1, s2])
    assert len(passes.cse(keep).eqns) == 2


def test_pass_fold_constants():
    c, x = var(name="c"), var(name="x")
    e1, e2, out = var(name="e1"), var(name="e2"), var(name="out")
    table = np.array([0.0, 1.0, 2.0])
    jaxpr = Jaxpr([x], [c], [table], [
        eqn("exp", [c], e1), eqn("mul", [e1, Literal(2.0)], e2),   # constants only: folded
        eqn("add", [x, e2], out)], [out])
    folded = dce(passes.fold_constants(jaxpr))
    assert [e.prim.name for e in folded.eqns] == ["add"]
    assert len(folded.consts) == 1
    np.testing.assert_allclose(folded.consts[0], np.exp(table) * 2)
    np.testing.assert_allclose(run(folded, np.ones(3))[0], 1 + np.exp(table) * 2)


def test_pass_dce():
    x = var(name="x")
    used, unused = var(name="used"), var(name="unused")
    jaxpr = Jaxpr([x], [], [], [eqn("exp", [x], unused), eqn("tanh", [x], used)], [used])
    assert [e.prim.name for e in dce(jaxpr).eqns] == ["tanh"]


def test_pass_buffer_reuse_liveness_and_aliases():
    x = var(name="x")
    a, b, c, d, e = (var(name=n) for n in "abcde")
    v = var((3, 1), name="v")
    jaxpr = Jaxpr([x], [], [], [
        eqn("exp", [x], a),            # 0: x is an input (not donated): never written
        eqn("tanh", [a], b),           # 1: a dead after this -> b written into a
        eqn("reshape", [b], v, shape=(3, 1)),   # 2: v is a view of b
        eqn("mul", [b, Literal(2.0)], c),       # 3: b is read here, but its view v is read later
        eqn("reshape", [v], d, shape=(3,)),     # 4: d is a view of b too
        eqn("add", [c, d], e),         # 5: c is dead after this -> write into c; d aliases b
    ], [e])
    plan = passes.plan_buffer_reuse(jaxpr)
    assert 0 not in plan                 # never into an input
    assert plan[1] == 0                  # tanh(a) into a
    assert 3 not in plan                 # b still has a live view (v, d)
    assert plan[5] == 0                  # c + d into c (d aliases b, not c)
    assert passes.plan_buffer_reuse(jaxpr, donated=[x])[0] == 0   # donated: x may be written
    # a value that is returned is never overwritten
    ret = Jaxpr([x], [], [], [eqn("exp", [x], a), eqn("tanh", [a], b)], [a, b])
    assert passes.plan_buffer_reuse(ret) == {}


def test_optimize_removes_the_redundant_work_of_a_backward_pass():
    f = lambda x: fnp.sum(fnp.tanh(x) * fnp.tanh(x) * 1.0)   # noqa: E731
    lowered = fgrad.jit(fgrad.grad(f)).lower(np.ones(4))
    stats = dict(lowered.stats)
    assert lowered.stats[0][0] == "staged"
    assert len(lowered.jaxpr.eqns) < lowered.stats[0][1]
    assert stats["cse"] <= stats["simplify"]
    names = [e.prim.name for e in lowered.jaxpr.eqns]
    assert names.count("tanh") == 1


# --------------------------------------------------------------------------------------------
# lower: the program and its source
# --------------------------------------------------------------------------------------------

def test_lower_text_and_source_one_line_per_equation_with_comments():
    f = lambda w, x: fnp.mean(fnp.tanh(x @ w) ** 2)   # noqa: E731
    w, x = np.ones((3, 2)), np.ones((5, 3))
    lowered = fgrad.jit(fgrad.value_and_grad(f)).lower(w, x)
    text = lowered.as_text()
    assert text.startswith("{ lambda") and text == str(lowered.jaxpr)
    lines = [ln for ln in lowered.source.splitlines() if ln.startswith("        ") and " = " in ln
             and not ln.strip().startswith("#")]
    assert len(lines) == len(lowered.jaxpr.eqns)
    for line, e in zip(lines, lowered.jaxpr.eqns):
        assert f"# {e.prim.name}" in line
    assert "# tanh" in lowered.source and "vjp of tanh" in lowered.source
    assert "vjp of dot_general" in lowered.source
    assert "@" in lowered.source and "np.tanh(" in lowered.source
    compiled = lowered.compile()
    value, g = compiled(w, x)
    close(value, f(w, x))


def test_jvp_and_batch_rules_are_named_in_the_source():
    f = lambda x: fnp.sin(x)   # noqa: E731
    src = fgrad.jit(lambda x, t: fgrad.jvp(f, (x,), (t,))).lower(np.ones(3), np.ones(3)).source
    assert "jvp of sin" in src
    g = lambda x: fnp.sum(x, axis=0)   # noqa: E731
    src = fgrad.jit(fgrad.vmap(g, in_axes=1)).lower(np.ones((3, 4))).source
    assert "batch of reduce_sum" in src or "reduce_sum" in src


def test_generated_source_shows_in_tracebacks():
    jitted = fgrad.jit(lambda x, i: fnp.take(x, i))
    jitted(np.ones(3), np.array([0]))
    with pytest.raises(IndexError) as info:
        jitted(np.ones(3), np.array([7]))
    assert "fgrad.jit" in str(info.traceback[-1].path) or any(
        "fgrad.jit" in str(t.path) for t in info.traceback)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

def test_python_control_flow_on_a_traced_value_is_a_clear_error():
    def f(x):
        if fnp.sum(x) > 0:
            return x
        return -x

    with pytest.raises(fgrad.ConcretizationError) as info:
        fgrad.jit(f)(np.ones(3))
    message = str(info.value)
    assert "jit(f)" in message and "bool(x)" in message
    assert "fgrad.numpy.where" in message and "static_argnums" in message and "lax.cond" in message


@pytest.mark.parametrize("convert, what", [(float, "float(x)"), (int, "int(x)")])
def test_float_and_int_of_a_traced_value(convert, what):
    with pytest.raises(fgrad.ConcretizationError, match=r"jit\(<lambda>\).*" + re_escape(what)):
        fgrad.jit(lambda x: convert(fnp.sum(x)))(np.ones(2))


def re_escape(s):
    import re
    return re.escape(s)


def test_numpy_on_a_traced_value_is_a_clear_error():
    with pytest.raises(fgrad.TracerArrayConversionError, match=r"jit\(<lambda>\).*fgrad.numpy"):
        fgrad.jit(lambda x: np.asarray(x) + 1)(np.ones(2))
    with pytest.raises(fgrad.TracerArrayConversionError, match="fgrad.numpy.sin"):
        fgrad.jit(lambda x: np.sin(x))(np.ones(2))


def test_non_array_arguments_and_bad_settings():
    with pytest.raises(TypeError, match="static_argnums"):
        fgrad.jit(lambda x, s: x)(np.ones(2), "mode")
    with pytest.raises(TypeError, match="function"):
        fgrad.jit(3)
    with pytest.raises(ValueError, match="static and donated"):
        fgrad.jit(lambda x: x, static_argnums=0, donate_argnums=0)


# --------------------------------------------------------------------------------------------
# eval_shape, abstract_eval, staging with outer tracers
# --------------------------------------------------------------------------------------------

def test_eval_shape():
    def f(p, x):
        h = fnp.tanh(x @ p["w"] + p["b"])
        return {"out": h, "norm": fnp.sum(h * h, axis=-1), "none": None}

    p = {"w": fgrad.ShapeDtypeStruct((3, 4), np.float32), "b": np.zeros(4, np.float32)}
    out = fgrad.eval_shape(f, p, fgrad.ShapeDtypeStruct((7, 3), np.float32))
    assert out["out"] == fgrad.ShapeDtypeStruct((7, 4), np.float32)
    assert out["norm"].shape == (7,) and out["norm"].dtype == np.float32
    assert out["none"] is None
    big = fgrad.ShapeDtypeStruct((100_000, 10_000), np.float64)   # 8 GB if it were computed
    assert fgrad.eval_shape(lambda x: fnp.sum(fnp.exp(x), axis=0), big).shape == (10_000,)


ABSTRACT_CASES = [
    ("elementwise f32 * python float", lambda x: x * 2.0, [np.ones((2, 3), np.float32)]),
    ("int / int", lambda i: i / 2, [np.arange(4)]),
    ("comparison", lambda x: x > 0, [np.ones(3)]),
    ("where", lambda x: fnp.where(x > 0, x, 0.0), [np.ones((2, 3), np.float32)]),
    ("sum of bool", lambda x: fnp.sum(x > 0), [np.ones(3)]),
    ("argmax", lambda x: fnp.argmax(x, axis=1), [np.ones((2, 3))]),
    ("cumsum int32", lambda x: fnp.cumsum(x, axis=0), [np.ones((2, 3), np.int32)]),
    ("matmul f32 f64", lambda a, b: a @ b, [np.ones((2, 3), np.float32), np.ones((3, 4))]),
    ("einsum batched", lambda a, b: fnp.einsum("bij,bjk->bik", a, b),
     [np.ones((2, 3, 4)), np.ones((2, 4, 5))]),
    ("reshape -1", lambda x: fnp.reshape(x, (-1, 2)), [np.ones((3, 4))]),
    ("transpose", lambda x: fnp.transpose(x, (2, 0, 1)), [np.ones((2, 3, 4))]),
    ("concatenate", lambda a, b: fnp.concatenate([a, b], axis=1),
     [np.ones((2, 3), np.float32), np.ones((2, 1))]),
    ("pad", lambda x: fnp.pad(x, ((1, 2), (0, 1))), [np.ones((2, 3))]),
    ("gather advanced", lambda x, i: x[i, 1:], [np.ones((4, 5)), np.array([[0, 1], [2, 3]])]),
    ("gather mixed", lambda x, i: x[:, i, None], [np.ones((4, 5, 2)), np.array([0, 3])]),
    ("scatter", lambda x, i: fnp.at(x)[i].add(1.0), [np.ones((4, 5)), np.array([0, 0])]),
    ("astype", lambda x: x.astype(np.float32), [np.ones(3)]),
    ("split", lambda x: fnp.split(x, [1, 3], axis=1), [np.ones((2, 5))]),
    ("max keepdims", lambda x: fnp.max(x, axis=(0, 2), keepdims=True), [np.ones((2, 3, 4))]),
]


@pytest.mark.parametrize("name, f, args", ABSTRACT_CASES, ids=[c[0] for c in ABSTRACT_CASES])
def test_abstract_eval_matches_numpy(name, f, args):
    want = f(*args)
    got = fgrad.eval_shape(f, *args)
    for w, g in zip(fgrad.tree.leaves(want), fgrad.tree.leaves(got)):
        assert (np.shape(w), np.asarray(w).dtype) == (g.shape, g.dtype), name
    close(fgrad.jit(f)(*args), want)


def test_common_primitives_have_shape_rules():
    common = ["add", "mul", "tanh", "exp", "select", "lt", "reduce_sum", "reduce_max", "argmax",
              "cumsum", "reshape", "transpose", "broadcast_to", "concatenate", "pad", "flip",
              "convert_element_type", "split", "dot_general", "gather", "scatter_add"]
    assert [n for n in common if PRIMITIVES[n].abstract_eval is None] == []


def test_staging_sees_tracers_of_an_outer_transform():
    f = lambda x: fnp.sin(x) * fnp.exp(x)   # noqa: E731
    xs = np.linspace(0, 1, 6).reshape(2, 3)

    def tangent_at(x):
        _, f_jvp = fgrad.linearize(f, x)
        return f_jvp(np.ones(3))
    close(fgrad.vmap(tangent_at)(xs), fgrad.vmap(lambda x: fgrad.jvp(f, (x,), (np.ones(3),))[1])(xs))

    def uses_make_jaxpr(x):
        jaxpr = fgrad.make_jaxpr(lambda y: fnp.sum(fnp.sin(y) * x))(np.ones(3))
        return eval_jaxpr(jaxpr, jaxpr.consts, x)[0]
    x = np.linspace(0.1, 0.5, 3)
    close(fgrad.grad(uses_make_jaxpr)(x), np.sin(x) + x * np.cos(x))   # d/dx sum(sin(x) x)


# --------------------------------------------------------------------------------------------
# a training step
# --------------------------------------------------------------------------------------------

def test_mlp_training_step_with_adam_under_jit_equals_eager():
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((16, 8)) * 0.3, "b1": np.zeros(16),
              "w2": rng.standard_normal((3, 16)) * 0.3, "b2": np.zeros(3)}
    x, labels = rng.standard_normal((32, 8)), rng.integers(0, 3, 32)
    opt = foptim.adam(1e-2)

    def loss(p, x, labels):
        h = fnp.tanh(x @ p["w1"].T + p["b1"])
        logits = h @ p["w2"].T + p["b2"]
        logp = logits - fnp.logsumexp(logits, axis=-1, keepdims=True)
        return -fnp.mean(fnp.take_along_axis(logp, labels[:, None], axis=-1))

    def step(p, state, x, labels):
        value, g = fgrad.value_and_grad(loss)(p, x, labels)
        updates, state = opt.update(g, state, p)
        return foptim.apply_updates(p, updates), state, value

    jitted = fgrad.jit(step, donate_argnums=(0, 1))
    p_eager, s_eager = params, opt.init(params)
    p_jit, s_jit = fgrad.tree.map(np.copy, params), opt.init(params)
    for _ in range(5):
        p_eager, s_eager, v_eager = step(p_eager, s_eager, x, labels)
        p_jit, s_jit, v_jit = jitted(p_jit, s_jit, x, labels)
        close(v_jit, v_eager)
        close(p_jit, p_eager)
    close(fgrad.tree.leaves(s_jit), fgrad.tree.leaves(s_eager))
    assert jitted.trace_count == 1


def test_pass_simplify_transpose_of_a_product_is_the_swapped_product():
    a, b = var((4, 3), name="a"), var((4, 5), name="b")
    d, t = var((3, 5), name="d"), var((5, 3), name="t")
    dot = Eqn(PRIMITIVES["dot_general"], [a, b], {"dimension_numbers": (((0,), (0,)), ((), ()))}, [d])
    jaxpr = Jaxpr([a, b], [], [], [dot, eqn("transpose", [d], t, perm=(1, 0))], [t])
    simple = dce(passes.simplify(jaxpr))
    assert [e.prim.name for e in simple.eqns] == ["dot_general"]
    assert simple.eqns[0].inputs == [b, a]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(run(simple, x, y)[0], (x.T @ y).T, rtol=1e-13)
    assert run(simple, x, y)[0].flags.c_contiguous


def test_pass_simplify_drops_stop_gradient_only_for_replay():
    x, y = var(name="x"), var(name="y")
    jaxpr = Jaxpr([x], [], [], [Eqn(PRIMITIVES["stop_gradient"], [x], {}, [y])], [y])
    assert len(passes.simplify(jaxpr).eqns) == 1          # may still be transformed
    assert passes.simplify(jaxpr, for_replay=True).outvars == [x]


def test_generated_code_frees_intermediates_after_their_last_use():
    # each intermediate is deleted after its last reader, as eager mode frees a tape's values:
    # otherwise a backward pass would hold every intermediate until the function returns
    f = fgrad.jit(fgrad.grad(lambda x: fnp.sum(fnp.sin(fnp.cos(x) * 2.0) ** 2)))
    x = np.linspace(-1.0, 1.0, 7)
    source = f.lower(x).source
    deleted = {name.strip() for line in source.splitlines() if line.strip().startswith("del ")
               for name in line.strip()[4:].split(",")}
    assert len(deleted) >= 3
    returned = source.split("return [")[1].split("]")[0]
    assert not deleted & {n.strip() for n in returned.split(",")}
    np.testing.assert_allclose(f(x), fgrad.grad(lambda x: fnp.sum(fnp.sin(fnp.cos(x) * 2.0) ** 2))(x),
                               rtol=1e-14)
