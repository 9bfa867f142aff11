"""``fgrad.lax`` control flow against the same loops written out in Python, and against torch.

One :class:`LoopCase` is one row: a function written with ``fgrad.lax`` (scan, cond, switch,
fori_loop, while_loop, map, nested and mixed), the same function written with Python loops and
``if``s (which every transform unrolls), and its float64 arguments. Every row is checked for
values, ``grad``, ``jvp``, ``vmap`` (each argument mapped in turn, all mapped, a non-leading
axis), ``grad(vmap)``, ``vmap(grad)``, ``jit`` (equal to eager to 1e-12, one trace for several
calls) and, where the row allows reverse mode, the Hessian and ``grad(grad)``. Then come the
things a row cannot say: pytree carries, ``reverse``, ``xs=None``, integer carries, length 0,
the generated loop in ``jit(f).lower(...).source``, batched predicates, an RNN against
``torch.func``, and the error messages.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from fn_table import assert_tree_close

TOL = dict(rtol=1e-12, atol=1e-12)


def close(actual, expected, tol=TOL):
    assert_tree_close(actual, expected, **tol)


# ============================================================================================
# The table: each control-flow function and its hand-written loop
# ============================================================================================

@dataclasses.dataclass
class LoopCase:
    name: str
    lax_fn: Callable          # written with fgrad.lax; returns a real scalar
    loop_fn: Callable         # the same with Python loops and ifs
    args: Callable            # rng -> tuple of float64 arrays
    reverse_mode: bool = True  # grad / hessian apply (False for while_loop)


def cell(w, h, x):
    return fnp.tanh(w @ h + x)


def rnn_lax(w, h0, xs):
    h, hs = lax.scan(lambda h, x: (cell(w, h, x), fnp.sum(h * h)), h0, xs)
    return fnp.sum(h) + fnp.sum(hs)


def rnn_loop(w, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        total = total + fnp.sum(h * h)
        h = cell(w, h, x)
    return fnp.sum(h) + total


def pytree_lax(w, h0, xs):
    """Dict carry with an integer counter, tuple xs, reverse order, dict ys."""
    def body(c, x):
        a, b = x
        h = fnp.sin(w @ c["h"]) * b + a
        return {"h": h, "n": c["n"] + 1}, {"y": h * c["n"], "z": fnp.sum(a)}
    c, ys = lax.scan(body, {"h": h0, "n": 0}, (xs, fnp.cos(xs[:, 0])), reverse=True)
    return fnp.sum(c["h"] ** 2) + fnp.sum(ys["y"] * np.arange(len(xs))[:, None]) + fnp.sum(ys["z"])


def pytree_loop(w, h0, xs):
    h, n, ys, zs = h0, 0, [None] * len(xs), [None] * len(xs)
    for t in reversed(range(len(xs))):
        a, b = xs[t], fnp.cos(xs[t, 0])
        new = fnp.sin(w @ h) * b + a
        ys[t], zs[t] = new * n, fnp.sum(a)
        h, n = new, n + 1
    total = fnp.sum(h ** 2)
    for t in range(len(xs)):
        total = total + fnp.sum(ys[t] * t) + zs[t]
    return total


def no_xs_lax(w, h0, xs):
    """xs=None with length; the carry holds an integer index that the body uses."""
    def body(c, _):
        h, i = c
        return (h * fnp.cos(w[0, 0] * i) + fnp.take(xs, i, axis=0), i + 1), fnp.sum(h) * i
    (h, _), ys = lax.scan(body, (h0, 0), None, length=len(xs))
    return fnp.sum(h * h) + fnp.sum(ys)


def no_xs_loop(w, h0, xs):
    h, total = h0, 0.0
    for i in range(len(xs)):
        total = total + fnp.sum(h) * i
        h = h * fnp.cos(w[0, 0] * i) + xs[i]
    return fnp.sum(h * h) + total


def nested_lax(w, h0, xs):
    """A scan whose body scans over the columns of its row."""
    def outer(h, row):
        inner, _ = lax.scan(lambda s, v: (fnp.tanh(s * v + w[0, 1]), None), fnp.sum(h), row)
        return h * inner + row, inner
    h, ys = lax.scan(outer, h0, xs)
    return fnp.sum(h) + fnp.sum(ys ** 2)


def nested_loop(w, h0, xs):
    h, total = h0, 0.0
    for row in xs:
        s = fnp.sum(h)
        for v in row:
            s = fnp.tanh(s * v + w[0, 1])
        h, total = h * s + row, total + s ** 2
    return fnp.sum(h) + total


def cond_in_scan_lax(w, h0, xs):
    def body(h, x):
        h = lax.cond(fnp.sum(h * x) > 0, lambda h: fnp.tanh(w @ h), lambda h: h * x, h)
        return h, h[0]
    h, ys = lax.scan(body, h0, xs)
    return fnp.sum(h) + fnp.sum(ys)


def cond_in_scan_loop(w, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = fnp.tanh(w @ h) if fnp.sum(h * x) > 0 else h * x
        total = total + h[0]
    return fnp.sum(h) + total


def scan_in_cond_lax(w, h0, xs):
    def run(h):
        return lax.scan(lambda c, x: (cell(w, c, x), None), h, xs)[0]
    return fnp.sum(lax.cond(fnp.sum(h0) > 0, run, lambda h: h * 2.0, h0))


def scan_in_cond_loop(w, h0, xs):
    if fnp.sum(h0) > 0:
        h = h0
        for x in xs:
            h = cell(w, h, x)
        return fnp.sum(h)
    return fnp.sum(h0 * 2.0)


def switch_lax(w, h0, xs):
    index = fnp.astype(fnp.floor(fnp.sum(xs[0]) * 2), np.int64)   # any int: switch clamps it
    branches = [lambda h: fnp.sum(fnp.exp(h)), lambda h: fnp.sum(w @ h), lambda h: fnp.sum(h ** 3)]
    return lax.switch(index, branches, h0)


def switch_loop(w, h0, xs):
    index = min(max(int(fnp.floor(fnp.sum(xs[0]) * 2)), 0), 2)
    if index == 0:
        return fnp.sum(fnp.exp(h0))
    if index == 1:
        return fnp.sum(w @ h0)
    return fnp.sum(h0 ** 3)


def fori_lax(w, h0, xs):
    return fnp.sum(lax.fori_loop(1, 4, lambda i, h: fnp.sin(w @ h) * i + fnp.take(xs, i, axis=0), h0))


def fori_loop_py(w, h0, xs):
    h = h0
    for i in range(1, 4):
        h = fnp.sin(w @ h) * i + xs[i]
    return fnp.sum(h)


def map_lax(w, h0, xs):
    return fnp.sum(lax.map(lambda x: fnp.tanh(w @ x + h0), xs) ** 2)


def map_loop(w, h0, xs):
    return sum(fnp.sum(fnp.tanh(w @ x + h0) ** 2) for x in xs)


def while_lax(w, h0, xs):
    """Iterate until the norm passes a threshold (a data-dependent trip count)."""
    def body(c):
        h, i = c
        return h * 1.5 + fnp.tanh(w @ h) * 0.1, i + 1
    h, n = lax.while_loop(lambda c: (fnp.sum(c[0] * c[0]) < 20.0) & (c[1] < 50), body, (h0, 0))
    return fnp.sum(h) * n


def while_loop_py(w, h0, xs):
    h, n = h0, 0
    while fnp.sum(h * h) < 20.0 and n < 50:
        h, n = h * 1.5 + fnp.tanh(w @ h) * 0.1, n + 1
    return fnp.sum(h) * n


def _args(rng, t=5, d=3):
    return (rng.standard_normal((d, d)) * 0.6, rng.standard_normal(d), rng.standard_normal((t, d)))


CASES = [
    LoopCase("scan_rnn", rnn_lax, rnn_loop, _args),
    LoopCase("scan_pytree_reverse", pytree_lax, pytree_loop, _args),
    LoopCase("scan_no_xs", no_xs_lax, no_xs_loop, _args),
    LoopCase("scan_nested", nested_lax, nested_loop, _args),
    LoopCase("cond_in_scan", cond_in_scan_lax, cond_in_scan_loop, _args),
    LoopCase("scan_in_cond", scan_in_cond_lax, scan_in_cond_loop, _args),
    LoopCase("switch", switch_lax, switch_loop, _args),
    LoopCase("fori_loop", fori_lax, fori_loop_py, _args),
    LoopCase("map", map_lax, map_loop, _args),
    LoopCase("while_loop", while_lax, while_loop_py,
             lambda rng: (rng.standard_normal((3, 3)) * 0.6, rng.standard_normal(3) * 0.3 + 0.5,
                          rng.standard_normal((5, 3))), reverse_mode=False),
]
IDS = [c.name for c in CASES]
REVERSE = [c for c in CASES if c.reverse_mode]


def case_args(case, seed=0):
    return case.args(np.random.default_rng(seed))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_matches_loop(case, seed):
    args = case_args(case, seed)
    close(case.lax_fn(*args), case.loop_fn(*args))


@pytest.mark.parametrize("case", REVERSE, ids=[c.name for c in REVERSE])
@pytest.mark.parametrize("seed", [0, 1])
def test_grad_matches_loop(case, seed):
    args = case_args(case, seed)
    close(fgrad.grad(case.lax_fn, argnums=(0, 1, 2))(*args),
          fgrad.grad(case.loop_fn, argnums=(0, 1, 2))(*args))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jvp_matches_loop(case):
    args = case_args(case)
    tangents = tuple(np.random.default_rng(7).standard_normal(np.shape(a)) for a in args)
    close(fgrad.jvp(case.lax_fn, args, tangents), fgrad.jvp(case.loop_fn, args, tangents))


@pytest.mark.parametrize("case", REVERSE, ids=[c.name for c in REVERSE])
def test_hessian_and_grad_of_grad_match_loop(case):
    args = case_args(case)
    for argnum in (0, 1):
        close(fgrad.hessian(case.lax_fn, argnum)(*args), fgrad.hessian(case.loop_fn, argnum)(*args))

    def gg(fn):
        return fgrad.grad(lambda h: fnp.sum(fnp.sin(fgrad.grad(fn, 0)(args[0], h, args[2]))))(args[1])
    close(gg(case.lax_fn), gg(case.loop_fn))


def batched(case, in_axes, size=3, seed=0):
    """Arguments with a batch of ``size`` at ``in_axes`` (None: one unbatched value)."""
    draws = [case_args(case, seed + k) for k in range(size)]
    out = []
    for i, ax in enumerate(in_axes):
        out.append(draws[0][i] if ax is None else np.stack([d[i] for d in draws], axis=ax))
    return tuple(out)


def loop_over(fn, args, in_axes):
    size = next(np.shape(a)[ax] for a, ax in zip(args, in_axes) if ax is not None)
    return np.stack([np.asarray(fn(*[a if ax is None else np.take(a, k, axis=ax)
                                     for a, ax in zip(args, in_axes)])) for k in range(size)])


IN_AXES = [(0, None, None), (None, 0, None), (None, None, 0), (0, 0, 0), (None, 1, 2),
           (2, None, 1)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("in_axes", IN_AXES, ids=[str(a) for a in IN_AXES])
def test_vmap_matches_loop(case, in_axes):
    args = batched(case, in_axes)
    close(fgrad.vmap(case.lax_fn, in_axes=in_axes)(*args), loop_over(case.loop_fn, args, in_axes))


@pytest.mark.parametrize("case", REVERSE, ids=[c.name for c in REVERSE])
@pytest.mark.parametrize("in_axes", [(None, None, 0), (0, 0, 0)], ids=["xs", "all"])
def test_vmap_of_grad_and_grad_of_vmap(case, in_axes):
    args = batched(case, in_axes)
    per_row = fgrad.vmap(fgrad.grad(case.lax_fn, argnums=(0, 1)), in_axes=in_axes)(*args)
    want = [fgrad.grad(case.loop_fn, argnums=(0, 1))(*[a if ax is None else a[k]
                                                       for a, ax in zip(args, in_axes)])
            for k in range(3)]
    close(per_row, tuple(np.stack([w[i] for w in want]) for i in range(2)))

    # grad of the summed vmap: per-row gradients stacked (mapped args) or summed (shared args)
    got = fgrad.grad(lambda *a: fnp.sum(fgrad.vmap(case.lax_fn, in_axes=in_axes)(*a)),
                     argnums=(0, 1, 2))(*args)
    rows = [fgrad.grad(case.loop_fn, argnums=(0, 1, 2))(*[a if ax is None else a[k]
                                                          for a, ax in zip(args, in_axes)])
            for k in range(3)]
    close(got, tuple(sum(r[i] for r in rows) if ax is None else np.stack([r[i] for r in rows])
                     for i, ax in enumerate(in_axes)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_equals_eager_and_traces_once(case):
    transforms = [case.lax_fn] + ([fgrad.grad(case.lax_fn, argnums=(0, 1, 2))]
                                  if case.reverse_mode else [])
    for fn in transforms:
        jitted = fgrad.jit(fn)
        for seed in range(3):
            args = case_args(case, seed)
            close(jitted(*args), fn(*args))
        assert jitted.trace_count == 1
    args = case_args(case)
    vm = fgrad.jit(fgrad.vmap(case.lax_fn, in_axes=(None, None, 0)))
    xs = np.stack([args[2], args[2] * 0.5])
    close(vm(args[0], args[1], xs), fgrad.vmap(case.lax_fn, in_axes=(None, None, 0))(args[0], args[1], xs))


@given(length=st.integers(0, 6), d=st.integers(1, 4), seed=st.integers(0, 2 ** 16),
       reverse=st.booleans())
def test_scan_against_loop_hypothesis(length, d, seed, reverse):
    rng = np.random.default_rng(seed)
    w, h0, xs = rng.standard_normal((d, d)) * 0.5, rng.standard_normal(d), rng.standard_normal((length, d))

    def f(w, h0, xs):
        h, hs = lax.scan(lambda h, x: (cell(w, h, x), h * x), h0, xs, reverse=reverse)
        return fnp.sum(h ** 2) + fnp.sum(fnp.sin(hs))

    def loop(w, h0, xs):
        h, total = h0, 0.0
        for t in (reversed(range(length)) if reverse else range(length)):
            total = total + fnp.sum(fnp.sin(h * xs[t]))
            h = cell(w, h, xs[t])
        return fnp.sum(h ** 2) + total
    close(f(w, h0, xs), loop(w, h0, xs))
    close(fgrad.grad(f, argnums=(0, 1, 2))(w, h0, xs), fgrad.grad(loop, argnums=(0, 1, 2))(w, h0, xs))
    t = tuple(rng.standard_normal(np.shape(a)) for a in (w, h0, xs))
    close(fgrad.jvp(f, (w, h0, xs), t), fgrad.jvp(loop, (w, h0, xs), t))
    close(fgrad.jit(f)(w, h0, xs), f(w, h0, xs))


# ============================================================================================
# scan: what the table does not say
# ============================================================================================

def test_scan_returns_carry_and_stacked_pytree_ys():
    xs = {"a": np.arange(6.0).reshape(3, 2), "b": np.array([1, 2, 3])}

    def body(c, x):
        return c + x["b"], (x["a"] * c, {"n": x["b"] * 2})
    c, (ya, yb) = lax.scan(body, 0, xs)
    assert c == 6 and np.asarray(c).dtype == np.int64
    np.testing.assert_array_equal(ya, np.array([[0, 0], [2, 3], [12, 15]]))
    np.testing.assert_array_equal(yb["n"], [2, 4, 6])
    assert isinstance(ya, np.ndarray) and ya.shape == (3, 2)


def test_scan_length_zero_and_xs_none():
    c, ys = lax.scan(lambda c, x: (c * 2, c + x), np.ones(2), np.zeros((0, 2)))
    np.testing.assert_array_equal(c, np.ones(2))
    assert ys.shape == (0, 2)
    c, ys = lax.scan(lambda c, x: (c + 1, x), 0.5, None, length=3)
    assert float(c) == 3.5 and ys is None
    g = fgrad.grad(lambda h: fnp.sum(lax.scan(lambda c, x: (c * x, c), h, np.zeros((0, 2)))[0]))(np.ones(2))
    np.testing.assert_array_equal(g, np.ones(2))


def test_scan_weak_python_scalar_carry_adopts_the_body_dtype():
    xs = np.ones(4, np.float32)
    c, ys = lax.scan(lambda c, x: (c + x, c * x), 0.0, xs)
    assert np.asarray(c).dtype == np.float32 and ys.dtype == np.float32 and float(c) == 4.0


def test_scan_integer_carry_under_every_transform():
    def f(h, xs):
        (h, n), _ = lax.scan(lambda c, x: ((c[0] * x + c[1], c[1] + 1), None), (h, 0), xs)
        return h * n

    def loop(h, xs):
        n = 0
        for x in xs:
            h, n = h * x + n, n + 1
        return h * n
    xs = np.linspace(0.5, 1.5, 4)
    close(f(1.5, xs), loop(1.5, xs))
    close(fgrad.grad(f, argnums=(0, 1))(1.5, xs), fgrad.grad(loop, argnums=(0, 1))(1.5, xs))
    close(fgrad.vmap(f, in_axes=(0, None))(np.array([1.0, 2.0]), xs),
          np.array([loop(1.0, xs), loop(2.0, xs)]))
    close(fgrad.jit(fgrad.grad(f))(1.5, xs), fgrad.grad(loop)(1.5, xs))


def test_scan_closure_over_an_outer_grad_value_and_perturbation_confusion():
    # the body closes over x, which an outer grad differentiates: d/dx [x * d/dy (x y)] = 2x
    def inner(x):
        return fgrad.grad(lambda y: lax.scan(lambda c, _: (c * x * y, None), 1.0, None, length=1)[0])(1.0)
    close(fgrad.grad(lambda x: x * inner(x))(3.0), 6.0)


def test_jit_source_shows_loops_over_compiled_bodies():
    args = _args(np.random.default_rng(0))
    source = fgrad.jit(fgrad.grad(rnn_lax)).lower(*args).source
    assert "for __i0 in range(5):" in source                  # forward scan
    assert "in range(4, -1, -1):" in source                    # the reverse scan of the VJP
    assert "# _scan_body" in source and "def scan_body_jit" in source   # bodies listed
    assert "np.tanh" in source
    compile(source, "<source>", "exec")                        # listing is valid Python
    w_source = fgrad.jit(while_lax).lower(*args).source
    assert "while _while_cond" in w_source
    c_source = fgrad.jit(scan_in_cond_lax).lower(*args).source
    assert "_branches" in c_source and "for __i" not in c_source.split("return")[0]


def test_jit_prunes_unread_scan_and_cond_outputs():
    def f(h0, xs):
        c, (ys, zs) = lax.scan(lambda h, x: (h * x, (fnp.exp(h), fnp.sin(x))), h0, xs)
        a, b = lax.cond(fnp.sum(c) > 0, lambda v: (v * 2.0, fnp.cosh(v)), lambda v: (v, fnp.tanh(v)), c)
        return a, zs
    h0, xs = np.ones(3), np.linspace(0.1, 1.0, 12).reshape(4, 3)
    lowered = fgrad.jit(f).lower(h0, xs)
    assert "np.exp" not in lowered.source and "np.sin" in lowered.source
    assert "cosh" not in lowered.source and "tanh" not in lowered.source
    close(fgrad.jit(f)(h0, xs), f(h0, xs))
    # an unread carry the body still reads for a kept output stays
    g = lambda h0, xs: lax.scan(lambda c, x: ((c[0] + x, c[1] * 2.0), c[0] * c[1]), (h0, h0), xs)[1]  # noqa: E731
    close(fgrad.jit(g)(h0, xs), g(h0, xs))


def test_jit_with_traced_fori_bounds_is_a_while_loop():
    f = fgrad.jit(lambda x, n: lax.fori_loop(0, n, lambda i, v: v * 2.0 + i, x))
    close(f(1.0, 3), ((1.0 * 2 + 0) * 2 + 1) * 2 + 2)
    close(f(1.0, 0), 1.0)
    assert f.trace_count == 1
    assert "while " in f.lower(1.0, 3).source
    # and its forward-mode derivative
    close(fgrad.jvp(lambda x: lax.fori_loop(0, fnp.asarray(3), lambda i, v: v * v, x), (1.5,), (1.0,))[1],
          8 * 1.5 ** 7)


def test_make_jaxpr_prints_the_nested_body():
    text = str(fgrad.make_jaxpr(rnn_lax)(*_args(np.random.default_rng(0))))
    assert "scan[" in text and "tanh" in text and "length=5" in text
    assert text.count("lambda") == 2


def test_rnn_scan_against_torch_func():
    rng = np.random.default_rng(3)
    w, u, h0 = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((4, 3)), rng.standard_normal(4)
    xs = rng.standard_normal((6, 8, 3))        # (batch, time, features)

    def loss(w, u, h0, seq):
        h, hs = lax.scan(lambda h, x: (fnp.tanh(w @ h + u @ x),) * 2, h0, seq)
        return fnp.sum(hs ** 2) + fnp.sum(h)

    def torch_loss(w, u, h0, seq):
        h, total = h0, 0.0
        for t in range(seq.shape[0]):
            h = torch.tanh(w @ h + u @ seq[t])
            total = total + torch.sum(h ** 2)
        return total + torch.sum(h)

    T = [torch.tensor(a) for a in (w, u, h0, xs)]
    want = torch.func.vmap(torch.func.grad(torch_loss, argnums=(0, 1)), in_dims=(None, None, None, 0))(*T)
    got = fgrad.vmap(fgrad.grad(loss, argnums=(0, 1)), in_axes=(None, None, None, 0))(w, u, h0, xs)
    close(got, tuple(t.numpy() for t in want), dict(rtol=1e-10, atol=1e-12))
    got_jit = fgrad.jit(fgrad.vmap(fgrad.grad(loss, argnums=(0, 1)), in_axes=(None, None, None, 0)))(w, u, h0, xs)
    close(got_jit, got)
    hv = torch.func.hessian(torch_loss, argnums=2)(*[t[0] if i == 3 else t for i, t in enumerate(T)])
    close(fgrad.hessian(loss, 2)(w, u, h0, xs[0]), hv.numpy(), dict(rtol=1e-10, atol=1e-12))


# ============================================================================================
# cond / switch / while_loop semantics
# ============================================================================================

def test_cond_and_switch_values_and_clamping():
    x = np.array([0.5, -1.0])
    close(lax.cond(True, fnp.sin, fnp.cos, x), np.sin(x))
    close(lax.cond(np.int64(0), fnp.sin, fnp.cos, x), np.cos(x))     # integers: != 0
    branches = [lambda v: v, lambda v: v * 2, lambda v: v * 3]
    for i, want in [(-5, x), (0, x), (1, 2 * x), (2, 3 * x), (9, 3 * x)]:
        close(lax.switch(i, branches, x), want)
        close(fgrad.jit(lambda i, v: lax.switch(i, branches, v))(np.int64(i), x), want)
    close(fgrad.vmap(lambda i, v: lax.switch(i, branches, v))(np.array([-1, 1, 7]), np.ones((3, 2))),
          np.array([[1, 1], [2, 2], [3, 3.0]]))
    close(lax.cond(True, lambda a, b: {"s": a + b}, lambda a, b: {"s": a - b}, 1.0, x), {"s": 1 + x})


def test_cond_batched_predicate_selects_and_differentiates():
    xs = np.array([[0.3, 0.2], [-0.4, 0.1], [1.0, -2.0]])

    def f(x):
        return fnp.sum(lax.cond(fnp.sum(x) > 0, lambda v: fnp.exp(v), lambda v: v ** 2, x))

    def loop(x):
        return fnp.sum(fnp.exp(x) if fnp.sum(x) > 0 else x ** 2)
    close(fgrad.vmap(f)(xs), np.array([loop(x) for x in xs]))
    close(fgrad.vmap(fgrad.grad(f))(xs), np.array([fgrad.grad(loop)(x) for x in xs]))
    close(fgrad.grad(lambda a: fnp.sum(fgrad.vmap(f)(a)))(xs), np.array([fgrad.grad(loop)(x) for x in xs]))
    source = fgrad.jit(fgrad.vmap(f)).lower(xs).source
    assert "np.where" in source      # a batched predicate becomes a select over both branches


def test_while_loop_batched_predicate_freezes_finished_rows():
    def count_doublings(x):
        return lax.while_loop(lambda c: c[0] < 10.0, lambda c: (c[0] * 2.0, c[1] + 1), (x, 0))

    xs = np.array([1.0, 3.0, 20.0, 9.0])
    vals, counts = fgrad.vmap(count_doublings)(xs)
    np.testing.assert_array_equal(counts, [4, 2, 0, 1])
    np.testing.assert_array_equal(vals, [16.0, 12.0, 20.0, 18.0])
    vals_t = fgrad.jvp(fgrad.vmap(lambda x: count_doublings(x)[0]), (xs,), (np.ones(4),))[1]
    np.testing.assert_array_equal(vals_t, [16.0, 4.0, 1.0, 2.0])
    jv, jc = fgrad.jit(fgrad.vmap(count_doublings))(xs)
    np.testing.assert_array_equal(jc, counts)
    # unbatched predicate, batched carry: one trip count for the whole batch
    f = fgrad.vmap(lambda v: lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * v, c[1] + 1), (1.0, 0))[0])
    close(f(np.array([2.0, 3.0])), np.array([8.0, 27.0]))


def test_fori_loop_static_bounds_are_reverse_differentiable():
    f = lambda x: lax.fori_loop(0, 6, lambda i, v: v * fnp.sin(v) + i * 0.1, x)   # noqa: E731

    def loop(x):
        for i in range(6):
            x = x * fnp.sin(x) + i * 0.1
        return x
    close(fgrad.grad(f)(0.7), fgrad.grad(loop)(0.7))
    close(fgrad.hessian(f)(0.7), fgrad.hessian(loop)(0.7))
    close(lax.fori_loop(3, 1, lambda i, v: v + 1.0, 0.0), 0.0)          # empty range
    close(lax.fori_loop(np.int32(0), np.int32(3), lambda i, v: v + i, np.int32(0)), 3)
    assert "scan[" in str(fgrad.make_jaxpr(f)(0.7))


@pytest.mark.parametrize("batch_size", [None, 1, 2, 3, 7])
def test_map_matches_a_loop_with_and_without_batch_size(batch_size):
    xs = {"a": np.linspace(-1, 1, 14).reshape(7, 2), "b": np.arange(7.0)}
    f = lambda r: fnp.sin(r["a"]) * r["b"]   # noqa: E731
    want = np.stack([np.sin(xs["a"][i]) * xs["b"][i] for i in range(7)])
    close(lax.map(f, xs, batch_size=batch_size), want)
    close(fgrad.jit(lambda xs: lax.map(f, xs, batch_size=batch_size))(xs), want)
    g = fgrad.grad(lambda xs: fnp.sum(lax.map(f, xs, batch_size=batch_size) ** 2))(xs)
    close(g, fgrad.grad(lambda xs: fnp.sum(fgrad.vmap(f)(xs) ** 2))(xs))


@given(thresholds=st.lists(st.floats(0.5, 40.0), min_size=1, max_size=5),
       start=st.floats(0.1, 2.0), factor=st.floats(1.1, 3.0))
def test_vmap_while_loop_against_rows_hypothesis(thresholds, start, factor):
    def grow(limit, x):
        return lax.while_loop(lambda c: c[0] < limit, lambda c: (c[0] * factor, c[1] + 1), (x, 0))

    def grow_loop(limit, x):
        n = 0
        while x < limit:
            x, n = x * factor, n + 1
        return x, n
    limits = np.array(thresholds)
    xs = np.full(len(limits), start)
    got = fgrad.vmap(grow)(limits, xs)
    want = [grow_loop(lim, x) for lim, x in zip(limits, xs)]
    close(got[0], np.array([w[0] for w in want]))
    np.testing.assert_array_equal(got[1], [w[1] for w in want])
    close(fgrad.jit(fgrad.vmap(grow))(limits, xs), got)
    tangent = fgrad.jvp(lambda x: fgrad.vmap(grow)(limits, x)[0], (xs,), (np.ones(len(xs)),))[1]
    close(tangent, np.array([factor ** w[1] for w in want]))


def test_stop_gradient_is_reexported():
    assert lax.stop_gradient is fgrad.stop_gradient
    close(fgrad.grad(lambda x: lax.stop_gradient(x) * x)(3.0), 3.0)


def test_custom_rules_inside_a_body_are_used():
    @fgrad.custom_vjp
    def clip_gradient(x):
        return x
    clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (fnp.clip(g, -0.1, 0.1),))
    f = lambda x: lax.scan(lambda c, _: (clip_gradient(c) * 2.0, None), x, None, length=2)[0]  # noqa: E731
    for grad_f in (fgrad.grad(f), fgrad.jit(fgrad.grad(f))):
        close(grad_f(1.0), 0.1)                     # 1 -> *2 -> clip 0.1 -> *2 -> clip 0.1
    close(fgrad.vmap(fgrad.grad(f))(np.ones(3)), np.full(3, 0.1))
    close(fgrad.grad(lambda x: fnp.sum(fgrad.vmap(f)(x)))(np.ones(3)), np.full(3, 0.1))
    close(fgrad.jvp(f, (1.0,), (1.0,))[1], 4.0)    # forward mode differentiates fun itself

    @fgrad.custom_jvp
    def loud_sin(x):
        return fnp.sin(x)

    @loud_sin.defjvp
    def loud_sin_jvp(primals, tangents):
        return loud_sin(primals[0]), tangents[0] * 10.0 * fnp.cos(primals[0])
    g = lambda x: lax.scan(lambda c, _: (loud_sin(c), None), x, None, length=2)[0]  # noqa: E731

    def g_loop(x):
        return 100.0 * fnp.cos(fnp.sin(x)) * fnp.cos(x)
    close(fgrad.jvp(g, (0.5,), (1.0,))[1], g_loop(0.5))
    close(fgrad.grad(g)(0.5), g_loop(0.5))          # reverse mode transposes the rule
    close(fgrad.jit(fgrad.grad(g))(0.5), g_loop(0.5))
    close(fgrad.vmap(fgrad.grad(g))(np.array([0.5, 0.7])), g_loop(np.array([0.5, 0.7])))


def test_checkpoint_inside_a_scan_recomputes_in_the_backward_loop():
    w = np.eye(3) * 0.5
    plain = lambda c, x: (fnp.tanh(w @ c + x), fnp.sum(c))   # noqa: E731
    remat = lambda c, x: (fgrad.checkpoint(lambda c, x: fnp.tanh(w @ c + x))(c, x), fnp.sum(c))  # noqa: E731

    def loss(body):
        return lambda h: fnp.sum(lax.scan(body, h, np.ones((4, 3)))[0] ** 2)
    h0 = np.full(3, 0.2)
    close(fgrad.grad(loss(remat))(h0), fgrad.grad(loss(plain))(h0))
    close(fgrad.jit(fgrad.grad(loss(remat)))(h0), fgrad.grad(loss(plain))(h0))
    close(fgrad.hessian(loss(remat))(h0), fgrad.hessian(loss(plain))(h0))
    source = fgrad.jit(fgrad.grad(loss(remat))).lower(h0).source
    backward_body = source[source.rindex("# _scan_body"):]
    assert "_branches" in backward_body and "np.tanh" in backward_body.split("# _branch")[-1]


def test_debug_nans_sees_inside_a_scan():
    with fgrad.debug_nans():
        with pytest.raises(FloatingPointError, match="log"):
            lax.scan(lambda c, x: (c + fnp.log(x), None), 0.0, np.array([1.0, -1.0]))


# ============================================================================================
# errors
# ============================================================================================

def test_while_loop_under_grad_names_the_alternatives():
    f = lambda x: lax.while_loop(lambda v: v < 10.0, lambda v: v * 2.0, x)   # noqa: E731
    with pytest.raises(fgrad.TransformError, match="fori_loop.*scan"):
        fgrad.grad(f)(1.0)
    with pytest.raises(fgrad.TransformError, match="while_loop"):
        fgrad.jit(fgrad.grad(f))(1.0)
    close(fgrad.jvp(f, (1.5,), (1.0,))[1], 8.0)       # forward mode works: 1.5 -> 12 in 3 steps


@pytest.mark.parametrize("true_fun, false_fun, match", [
    (lambda x: x, lambda x: (x, x), r"same structure.*true_fun"),
    (lambda x: x, lambda x: fnp.stack([x, x]), r"true_fun returns f64\[\] and false_fun returns f64\[2\]"),
    (lambda x: x, lambda x: x.astype(np.float32), r"f64\[\].*f32\[\]"),
])
def test_cond_branches_must_agree(true_fun, false_fun, match):
    with pytest.raises(TypeError, match=match):
        lax.cond(True, true_fun, false_fun, 1.0)
    with pytest.raises(TypeError, match="false_fun"):
        fgrad.jit(lambda p, x: lax.cond(p, true_fun, false_fun, x))(True, 1.0)


def test_switch_branches_must_agree_and_index_must_be_int():
    with pytest.raises(TypeError, match=r"branches\[0\] \(<lambda>\) returns f64\[\] and branches\[2\] \(<lambda>\) returns f64\[1\]"):
        lax.switch(0, [lambda x: x, lambda x: x, lambda x: x[None]], 1.0)
    with pytest.raises(TypeError, match="integer scalar"):
        lax.switch(1.0, [lambda x: x, lambda x: x], 1.0)


@pytest.mark.parametrize("body, match", [
    (lambda c, x: ((c, c), x), r"structure"),
    (lambda c, x: (fnp.stack([c, c]), x), r"carry is f64\[\] going in and f64\[2\] coming out"),
    (lambda c, x: (c.astype(np.float32), x), r"f64\[\] going in and f32\[\] coming out"),
    (lambda c, x: c, r"pair \(carry, y\)"),
])
def test_scan_body_must_keep_the_carry(body, match):
    with pytest.raises(TypeError, match=match):
        lax.scan(body, np.float64(0.0), np.ones(3))


def test_while_body_must_keep_the_carry_and_cond_must_be_bool_scalar():
    with pytest.raises(TypeError, match=r"f64\[\] going in and f64\[2\] coming out"):
        lax.while_loop(lambda v: v < 1.0, lambda v: fnp.stack([v, v]), np.float64(0.0))
    with pytest.raises(TypeError, match=r"boolean scalar, got f64\[\]"):
        lax.while_loop(lambda v: v, lambda v: v, 0.0)
    with pytest.raises(TypeError, match=r"boolean scalar, got bool\[2\]"):
        lax.while_loop(lambda v: v < 1.0, lambda v: v, np.zeros(2))


def test_cond_predicate_must_be_a_bool_or_int_scalar():
    with pytest.raises(TypeError, match=r"scalar, got bool\[2\].*where"):
        lax.cond(np.array([True, False]), lambda x: x, lambda x: x, 1.0)
    with pytest.raises(TypeError, match="boolean .* got dtype float64"):
        lax.cond(1.0, lambda x: x, lambda x: x, 1.0)
    with pytest.raises(TypeError, match="boolean"):
        fgrad.jit(lambda p: lax.cond(p, lambda: 1.0, lambda: 2.0))(np.float64(1.0))


def test_scan_length_and_xs_errors():
    with pytest.raises(ValueError, match="length=4 but the leading axis of xs has length 3"):
        lax.scan(lambda c, x: (c, x), 0.0, np.ones(3), length=4)
    with pytest.raises(ValueError, match=r"xs\[0\] has 3, xs\[1\] has 2"):
        lax.scan(lambda c, x: (c, x), 0.0, (np.ones(3), np.ones(2)))
    with pytest.raises(ValueError, match="pass length="):
        lax.scan(lambda c, x: (c, x), 0.0, None)
    with pytest.raises(TypeError, match="scalar"):
        lax.scan(lambda c, x: (c, x), 0.0, 1.0)
    with pytest.raises(TypeError, match="length must be"):
        lax.scan(lambda c, x: (c, x), 0.0, None, length=2.5)


def test_python_control_flow_in_a_body_says_what_to_use():
    with pytest.raises(fgrad.ConcretizationError, match="fgrad.lax.cond"):
        lax.scan(lambda c, x: (c + 1 if x > 0 else c, None), 0.0, np.ones(2))


def test_scan_vjp_computes_cotangents_only_for_what_the_tape_tracks():
    # an RNN over data xs: grad w.r.t. the weights needs no cotangent of xs, so the backward
    # body holds one product per weight (w_x.T-side and w_h-side), none for x_t @ w_x's x_t
    def loss(w_x, w_h, xs):
        def step(h, x):
            h = fnp.tanh(x @ w_x + h @ w_h)
            return h, fnp.sum(h)
        _, ys = fgrad.lax.scan(step, np.zeros(3), xs)
        return fnp.sum(ys)

    def backward_dots(argnums):
        text = str(fgrad.make_jaxpr(fgrad.grad(loss, argnums=argnums))(np.ones((2, 3)), np.ones((3, 3)), np.ones((5, 2))))
        last_scan = text.rindex("scan[")
        return text[last_scan:].count("dot_general")

    assert backward_dots((0, 1)) < backward_dots((0, 1, 2))
    rng = np.random.default_rng(0)
    w_x, w_h, xs = rng.normal(size=(2, 3)), rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(5, 2))

    def unrolled(w_x, w_h, xs):
        h, total = np.zeros(3), 0.0
        for x in xs:
            h = fnp.tanh(x @ w_x + h @ w_h)
            total = total + fnp.sum(h)
        return total
    for argnums in ((0,), (1, 2), (0, 1, 2)):
        got = fgrad.grad(loss, argnums=argnums)(w_x, w_h, xs)
        want = fgrad.grad(unrolled, argnums=argnums)(w_x, w_h, xs)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
