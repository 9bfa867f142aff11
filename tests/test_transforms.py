"""The transforms, alone and composed, against ``torch.func`` (float64).

Every row of ``fn_table.CASES`` goes through grad, value_and_grad, vjp, jvp, linearize, vmap,
jacfwd, jacrev and hessian and is compared with the matching ``torch.func`` transform of the
row's torch twin. Then the compositions users write: grad of grad (to third order),
per-example gradients (vmap of grad), grad of vmap, Hessian-vector products (jvp of grad),
vmap of vmap, jacfwd of jacrev, vmap of jacrev, nested grads that close over an outer tracer
(perturbation confusion), stop_gradient, dtypes and Python scalars. Hypothesis draws shapes,
axes and values for the broadcasting, reduction and vmap properties.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.func as tf
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp
from fn_table import (CASES, HAS_EINSUM, MLP_SHAPES, SCALAR_CASES, Case, LABELS, assert_tree_close,
                      index_tree, mlp_loss, output_weights, random_like, scalarize, stack_trees,
                      to_torch, torch_mlp_loss, tree_leaves, tree_map, tree_vdot)

# three times the profile's budget (conftest.py: 8 in CI, so 24 here; FGRAD_HYPOTHESIS_EXAMPLES scales it)
HYPOTHESIS = settings(deadline=None, max_examples=3 * settings.default.max_examples, derandomize=True)
ids = [c.name for c in CASES]
scalar_ids = [c.name for c in SCALAR_CASES]


def test_einsum_rows_present():
    """The einsum rows join the table only when fgrad.numpy.einsum exists; it must (DESIGN.md)."""
    assert HAS_EINSUM, "fgrad.numpy.einsum is missing, so the einsum rows of fn_table are not run"
    assert any(c.name.startswith("einsum") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_table_forward_matches_torch(case):
    """The two versions of each row compute the same function (the table itself is right)."""
    args = case.draw()
    assert_tree_close(case.fn(*args), case.torch_fn(*to_torch(args)))


# --------------------------------------------------------------------------------------------
# Each transform on every row
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=ids)
def test_grad(case):
    args = case.draw()
    f, torch_f = scalarize(case, output_weights(case, args))
    argnums = tuple(range(case.nargs))
    got = fgrad.grad(f, argnums=argnums)(*args)
    want = tf.grad(torch_f, argnums=argnums)(*to_torch(args))
    assert_tree_close(got, want)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_value_and_grad(case):
    args = case.draw(seed=1)
    f, torch_f = scalarize(case, output_weights(case, args))
    value, g = fgrad.value_and_grad(f)(*args)
    g_want, value_want = tf.grad_and_value(torch_f)(*to_torch(args))
    assert_tree_close(value, value_want)
    assert_tree_close(g, g_want)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vjp(case):
    args = case.draw()
    ct = output_weights(case, args, seed=2)
    out, pullback = fgrad.vjp(case.fn, *args)
    out_want, torch_pullback = tf.vjp(case.torch_fn, *to_torch(args))
    assert_tree_close(out, out_want)
    assert_tree_close(pullback(ct), torch_pullback(to_torch(ct)))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jvp(case):
    args = case.draw()
    tangents = random_like(args, np.random.default_rng(3))
    out, t_out = fgrad.jvp(case.fn, args, tangents)
    out_want, t_want = tf.jvp(case.torch_fn, to_torch(args), to_torch(tangents))
    assert_tree_close(out, out_want)
    assert_tree_close(t_out, t_want)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_adjoint_identity(case):
    """``<u, J v> = <J^T u, v>``: fgrad's JVP rules and VJP rules agree with each other."""
    args = case.draw()
    rng = np.random.default_rng(4)
    v = random_like(args, rng)
    u = output_weights(case, args, seed=5)
    _, jv = fgrad.jvp(case.fn, args, v)
    _, pullback = fgrad.vjp(case.fn, *args)
    np.testing.assert_allclose(tree_vdot(u, jv), tree_vdot(pullback(u), v), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch's fx tracing
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_linearize(case):
    args = case.draw()
    rng = np.random.default_rng(6)
    t1, t2 = random_like(args, rng), random_like(args, rng)
    out, f_jvp = fgrad.linearize(case.fn, *args)
    out_want, torch_f_jvp = tf.linearize(case.torch_fn, *to_torch(args))
    assert_tree_close(out, out_want)
    for t in (t1, t2):   # the same linear map, evaluated twice
        assert_tree_close(f_jvp(*t), torch_f_jvp(*to_torch(t)))


def _batch(case, size=3):
    draws = [case.draw(seed=10 + i) for i in range(size)]
    return draws, stack_trees(draws)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap(case):
    draws, batched = _batch(case)
    got = fgrad.vmap(case.fn)(*batched)
    assert_tree_close(got, stack_trees([case.fn(*d) for d in draws]))
    assert_tree_close(got, tf.vmap(case.torch_fn)(*to_torch(batched)))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap_negative_axes(case):
    """Batch axis last on the way in (``in_axes=-1``) and on the way out (``out_axes=-1``)."""
    draws, batched = _batch(case)
    last = tree_map(lambda x: np.moveaxis(x, 0, -1), batched)
    got = fgrad.vmap(case.fn, in_axes=-1, out_axes=-1)(*last)
    want = tree_map(lambda x: np.moveaxis(x, 0, -1), stack_trees([case.fn(*d) for d in draws]))
    assert_tree_close(got, want)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jacfwd_jacrev(case):
    args = case.draw()
    argnums = tuple(range(case.nargs))
    t_args = to_torch(args)
    want = tf.jacrev(case.torch_fn, argnums=argnums)(*t_args)
    assert_tree_close(fgrad.jacrev(case.fn, argnums=argnums)(*args), want)
    assert_tree_close(fgrad.jacfwd(case.fn, argnums=argnums)(*args), want)
    assert_tree_close(fgrad.jacfwd(case.fn)(*args), tf.jacfwd(case.torch_fn)(*t_args))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_hessian(case):
    """Hessians of every row (scalarised by a fixed random cotangent) w.r.t. its first argument."""
    args = case.draw()
    f, torch_f = (case.fn, case.torch_fn) if case.scalar else scalarize(case, output_weights(case, args))
    assert_tree_close(fgrad.hessian(f)(*args), tf.hessian(torch_f)(*to_torch(args)), rtol=1e-8)


@pytest.mark.parametrize("case", SCALAR_CASES, ids=scalar_ids)
def test_hessian_all_argnums(case):
    args = case.draw()
    argnums = tuple(range(case.nargs))
    got = fgrad.hessian(case.fn, argnums=argnums)(*args)
    assert_tree_close(got, tf.hessian(case.torch_fn, argnums=argnums)(*to_torch(args)), rtol=1e-8)


# --------------------------------------------------------------------------------------------
# argnums and has_aux
# --------------------------------------------------------------------------------------------

def _three(x, y, z):
    return fnp.sum(fnp.tanh(x @ y) * z) + fnp.sum(y ** 3)


def _torch_three(x, y, z):
    return torch.sum(torch.tanh(x @ y) * z) + torch.sum(y ** 3)


@pytest.mark.parametrize("argnums", [0, 1, 2, -1, (0,), (0, 2), (2, 0), (0, 1, 2)])
def test_value_and_grad_argnums(argnums):
    args = Case("three", _three, _torch_three, ((3,), (3, 4), (4,))).draw()
    value, g = fgrad.value_and_grad(_three, argnums=argnums)(*args)
    g_want, v_want = tf.grad_and_value(_torch_three, argnums=argnums)(*to_torch(args))
    assert_tree_close(value, v_want)
    assert_tree_close(g, g_want)
    assert isinstance(g, tuple) == isinstance(argnums, tuple)


def test_grad_has_aux():
    def loss(w, x):
        pred = fnp.tanh(x @ w)
        return fnp.mean(pred ** 2), {"pred": pred, "n": 7}

    def torch_loss(w, x):
        pred = torch.tanh(x @ w)
        return torch.mean(pred ** 2), {"pred": pred}

    w, x = np.linspace(-1, 1, 3), np.arange(12.0).reshape(4, 3) / 10
    (value, aux), g = fgrad.value_and_grad(loss, has_aux=True)(w, x)
    g2, aux2 = fgrad.grad(loss, has_aux=True)(w, x)
    g_want, (v_want, aux_want) = tf.grad_and_value(torch_loss, has_aux=True)(*to_torch((w, x)))
    assert_tree_close(value, v_want)
    assert_tree_close(g, g_want)
    assert_tree_close(g2, g_want)
    # aux comes back as plain values, not tracers, with non-array leaves untouched
    assert isinstance(aux["pred"], np.ndarray) and isinstance(aux2["pred"], np.ndarray)
    assert aux["n"] == 7
    assert_tree_close(aux["pred"], aux_want["pred"])
    # tuple argnums with aux
    (gw, gx), aux3 = fgrad.grad(loss, argnums=(0, 1), has_aux=True)(w, x)
    gw_want, gx_want = tf.grad(lambda *a: torch_loss(*a)[0], argnums=(0, 1))(*to_torch((w, x)))
    assert_tree_close((gw, gx), (gw_want, gx_want))


def test_vjp_and_jacobians_has_aux():
    def f(x):
        y = fnp.sin(x) * x
        return y, fnp.sum(y)

    x = np.linspace(0.1, 1.0, 4)
    y, pullback, aux = fgrad.vjp(f, x, has_aux=True)
    np.testing.assert_allclose(aux, np.sum(np.sin(x) * x))
    (g,) = pullback(np.ones(4))
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-12)
    jac_r, aux_r = fgrad.jacrev(f, has_aux=True)(x)
    jac_f, aux_f = fgrad.jacfwd(f, has_aux=True)(x)
    np.testing.assert_allclose(jac_r, np.diag(np.cos(x) * x + np.sin(x)), rtol=1e-12)
    np.testing.assert_allclose(jac_f, jac_r, rtol=1e-12)
    np.testing.assert_allclose(aux_r, aux)
    np.testing.assert_allclose(aux_f, aux)


# --------------------------------------------------------------------------------------------
# vmap's in_axes / out_axes / axis_size
# --------------------------------------------------------------------------------------------

def _affine(w, x, b):
    return fnp.tanh(w @ x) + b


def _torch_affine(w, x, b):
    return torch.tanh(w @ x) + b


@pytest.mark.parametrize("in_axes, shapes", [
    (0, ((5, 2, 3), (5, 3), (5, 2))),
    ((None, 0, None), ((2, 3), (5, 3), (2,))),
    ((None, 1, 0), ((2, 3), (3, 5), (5, 2))),
    ((2, -1, None), ((2, 3, 5), (3, 5), (2,))),
    ([None, 0, 0], ((2, 3), (5, 3), (5, 2))),
])
def test_vmap_in_axes(in_axes, shapes):
    rng = np.random.default_rng(0)
    w, x, b = (rng.standard_normal(s) for s in shapes)
    got = fgrad.vmap(_affine, in_axes=in_axes)(w, x, b)
    torch_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
    want = tf.vmap(_torch_affine, in_dims=torch_axes)(*to_torch((w, x, b)))
    assert_tree_close(got, want)
    assert got.shape == (5, 2)


@pytest.mark.parametrize("out_axes", [0, 1, -1, 2])
def test_vmap_out_axes(out_axes):
    xs = np.random.default_rng(1).standard_normal((4, 2, 3))
    got = fgrad.vmap(lambda x: fnp.sin(x) * 2, out_axes=out_axes)(xs)
    want = tf.vmap(lambda x: torch.sin(x) * 2, out_dims=out_axes)(torch.from_numpy(xs))
    assert_tree_close(got, want)


def test_vmap_pytree_in_axes_and_out_axes():
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal((4, 2))}  # b mapped on 0
    xs = rng.standard_normal((3, 4))                                             # mapped on 1

    def f(p, x):
        y = x @ p["w"] + p["b"]
        return {"y": y, "norm": fnp.sum(y * y)}

    got = fgrad.vmap(f, in_axes=({"w": None, "b": 0}, 1), out_axes={"y": 1, "norm": 0})(params, xs)
    loop = [f({"w": params["w"], "b": params["b"][i]}, xs[:, i]) for i in range(4)]
    np.testing.assert_allclose(got["y"], np.stack([o["y"] for o in loop], axis=1), rtol=1e-12)
    np.testing.assert_allclose(got["norm"], np.array([o["norm"] for o in loop]), rtol=1e-12)

    def torch_f(p, x):
        y = x @ p["w"] + p["b"]
        return {"y": y, "norm": torch.sum(y * y)}

    want = tf.vmap(torch_f, in_dims=({"w": None, "b": 0}, 1), out_dims={"y": 1, "norm": 0})(
        to_torch(params), torch.from_numpy(xs))
    assert_tree_close(got, want)


def test_vmap_out_axes_none_for_unmapped_output():
    w = np.arange(3.0)
    out, mapped = fgrad.vmap(lambda w, x: (w * 2, x * w), in_axes=(None, 0), out_axes=(None, 0))(
        w, np.ones((5, 3)))
    np.testing.assert_allclose(out, w * 2)
    assert mapped.shape == (5, 3)


def test_vmap_unmapped_output_is_broadcast():
    got = fgrad.vmap(lambda x, c: c * 2.0, in_axes=(0, None))(np.ones((4, 2)), np.arange(3.0))
    np.testing.assert_allclose(got, np.tile(np.arange(3.0) * 2, (4, 1)))


def test_vmap_axis_size_with_no_mapped_argument():
    got = fgrad.vmap(lambda c: fnp.sin(c) + 1.0, in_axes=None, axis_size=4)(np.arange(3.0))
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, np.tile(np.sin(np.arange(3.0)) + 1.0, (4, 1)))
    got = fgrad.vmap(lambda a, b: a * b, in_axes=(None, None), axis_size=2)(2.0, np.ones(3))
    np.testing.assert_allclose(got, np.full((2, 3), 2.0))


def test_vmap_keyword_arguments_are_mapped():
    xs, ys = np.ones((3, 2)), np.arange(6.0).reshape(3, 2)
    got = fgrad.vmap(lambda x, scale: x * fnp.sum(scale))(xs, scale=ys)
    np.testing.assert_allclose(got, xs * ys.sum(axis=1, keepdims=True))


def test_nested_vmap_matches_torch():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    dist = lambda x, y: fnp.sqrt(fnp.sum((x - y) ** 2))   # noqa: E731
    torch_dist = lambda x, y: torch.sqrt(torch.sum((x - y) ** 2))   # noqa: E731
    got = fgrad.vmap(fgrad.vmap(dist, in_axes=(None, 0)), in_axes=(0, None))(a, b)
    want = tf.vmap(tf.vmap(torch_dist, in_dims=(None, 0)), in_dims=(0, None))(*to_torch((a, b)))
    assert got.shape == (4, 5)
    assert_tree_close(got, want)
    # the inner vmap maps an axis that is not the outer one's
    xs = rng.standard_normal((2, 3, 4))
    got = fgrad.vmap(fgrad.vmap(lambda v: v * fnp.sum(v), in_axes=1, out_axes=1), in_axes=2)(xs)
    want = tf.vmap(tf.vmap(lambda v: v * torch.sum(v), in_dims=1, out_dims=1), in_dims=2)(
        torch.from_numpy(xs))
    assert_tree_close(got, want)


# --------------------------------------------------------------------------------------------
# Compositions
# --------------------------------------------------------------------------------------------

def test_grad_of_grad_and_third_order():
    f = lambda x: fnp.sin(x) * fnp.exp(x / 2) + x ** 4 / 7   # noqa: E731
    torch_f = lambda x: torch.sin(x) * torch.exp(x / 2) + x ** 4 / 7   # noqa: E731
    x = 0.7
    tx = torch.tensor(x, dtype=torch.float64)
    for order in (1, 2, 3, 4):
        df, torch_df = f, torch_f
        for _ in range(order):
            df, torch_df = fgrad.grad(df), tf.grad(torch_df)
        np.testing.assert_allclose(df(x), torch_df(tx).item(), rtol=1e-12)
    # tanh''' = -2 (1 - t^2)(1 - 3 t^2) with t = tanh(x), by hand
    t = np.tanh(0.3)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(fgrad.grad(fnp.tanh)))(0.3),
                               -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12)


def tree_vdot_traced(a, b):
    """``<a, b>`` over the leaves of two trees, in fgrad ops (usable inside transforms)."""
    return sum(fnp.sum(x * y) for x, y in zip(tree_leaves(a), tree_leaves(b)))


@pytest.mark.parametrize("case", SCALAR_CASES, ids=scalar_ids)
def test_grad_of_grad_on_table(case):
    """grad of <grad f, w>: Hessian-vector products by reverse-over-reverse."""
    args = case.draw()
    w = random_like(args, np.random.default_rng(7))
    t_w = to_torch(w)
    argnums = tuple(range(case.nargs))

    def f2(*a):
        return tree_vdot_traced(fgrad.grad(case.fn, argnums=argnums)(*a), w)

    def torch_f2(*a):
        g = tf.grad(case.torch_fn, argnums=argnums)(*a)
        return sum(torch.sum(x * y) for x, y in zip(tree_leaves(g), tree_leaves(t_w)))

    got = fgrad.grad(f2, argnums=argnums)(*args)
    assert_tree_close(got, tf.grad(torch_f2, argnums=argnums)(*to_torch(args)), rtol=1e-8)


def _mlp_data(batch=16, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) * 0.5 for k, s in MLP_SHAPES.items()}
    return params, rng.standard_normal((batch, 5)), LABELS[:batch]


def test_per_example_gradients_vmap_of_grad():
    params, xs, labels = _mlp_data(16)
    got = fgrad.vmap(fgrad.grad(mlp_loss), in_axes=(None, 0, 0))(params, xs, labels)
    want = tf.vmap(tf.grad(torch_mlp_loss), in_dims=(None, 0, 0))(
        to_torch(params), torch.from_numpy(xs), torch.from_numpy(labels))
    assert_tree_close(got, want)
    assert got["w1"].shape == (16, 8, 5)
    # each row is the gradient on that one example, and their mean is the batch gradient
    one = fgrad.grad(mlp_loss)(params, xs[3:4], labels[3:4])
    assert_tree_close(index_tree(got, 3), one)
    assert_tree_close(tree_map(lambda g: g.mean(axis=0), got),
                      fgrad.grad(mlp_loss)(params, xs, labels))


def test_grad_of_vmap():
    params, xs, labels = _mlp_data(16, seed=1)

    def total(p):
        return fnp.sum(fgrad.vmap(mlp_loss, in_axes=(None, 0, 0))(p, xs, labels))

    def torch_total(p):
        return torch.sum(tf.vmap(torch_mlp_loss, in_dims=(None, 0, 0))(
            p, torch.from_numpy(xs), torch.from_numpy(labels)))

    got = fgrad.grad(total)(params)
    assert_tree_close(got, tf.grad(torch_total)(to_torch(params)))
    assert_tree_close(got, tree_map(lambda g: 16 * g, fgrad.grad(mlp_loss)(params, xs, labels)))


def test_hessian_vector_products_jvp_of_grad():
    params, xs, labels = _mlp_data(16, seed=2)
    v = random_like(params, np.random.default_rng(8))
    loss = functools.partial(mlp_loss, x=xs, labels=labels)
    g, hvp = fgrad.jvp(fgrad.grad(loss), (params,), (v,))
    torch_loss = functools.partial(torch_mlp_loss, x=torch.from_numpy(xs),
                                   labels=torch.from_numpy(labels))
    g_want, hvp_want = tf.jvp(tf.grad(torch_loss), (to_torch(params),), (to_torch(v),))
    assert_tree_close(g, g_want)
    assert_tree_close(hvp, hvp_want)
    # the same product through reverse-over-reverse
    hvp_rr = fgrad.grad(lambda p: tree_vdot_traced(fgrad.grad(loss)(p), v))(params)
    assert_tree_close(hvp_rr, hvp_want)


@pytest.mark.parametrize("case", SCALAR_CASES, ids=scalar_ids)
def test_hvp_on_table_matches_hessian(case):
    args = case.draw()
    v = random_like(args[0], np.random.default_rng(9))
    f = lambda a0: case.fn(a0, *args[1:])   # noqa: E731
    _, hvp = fgrad.jvp(fgrad.grad(f), (args[0],), (v,))
    torch_f = lambda a0: case.torch_fn(a0, *to_torch(args[1:]))   # noqa: E731
    _, hvp_want = tf.jvp(tf.grad(torch_f), (to_torch(args[0]),), (to_torch(v),))
    assert_tree_close(hvp, hvp_want, rtol=1e-8)


def test_jacfwd_of_jacrev_equals_jacrev_of_jacfwd():
    def f(x):
        return fnp.stack([fnp.sum(fnp.sin(x) * x[::-1]), fnp.prod(fnp.tanh(x) + 2)])

    x = np.array([0.3, -0.8, 1.2, 0.5])
    fr = fgrad.jacfwd(fgrad.jacrev(f))(x)
    rf = fgrad.jacrev(fgrad.jacfwd(f))(x)
    rr = fgrad.jacrev(fgrad.jacrev(f))(x)
    ff = fgrad.jacfwd(fgrad.jacfwd(f))(x)
    assert fr.shape == (2, 4, 4)
    for other in (rf, rr, ff):
        np.testing.assert_allclose(fr, other, rtol=1e-11, atol=1e-12)
    want = tf.jacfwd(tf.jacrev(lambda x: torch.stack(
        [torch.sum(torch.sin(x) * x.flip(0)), torch.prod(torch.tanh(x) + 2)])))(torch.from_numpy(x))
    assert_tree_close(fr, want)
    np.testing.assert_allclose(fr, np.swapaxes(fr, 1, 2), rtol=1e-11)   # Hessians are symmetric


def test_vmap_of_jacrev_and_jacfwd():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 4))
    xs = rng.standard_normal((6, 4))
    f = lambda w, x: fnp.tanh(w @ x)   # noqa: E731
    torch_f = lambda w, x: torch.tanh(w @ x)   # noqa: E731
    got = fgrad.vmap(fgrad.jacrev(f, argnums=1), in_axes=(None, 0))(w, xs)
    want = tf.vmap(tf.jacrev(torch_f, argnums=1), in_dims=(None, 0))(*to_torch((w, xs)))
    assert got.shape == (6, 3, 4)
    assert_tree_close(got, want)
    got_w = fgrad.vmap(fgrad.jacfwd(f), in_axes=(None, 0))(w, xs)
    want_w = tf.vmap(tf.jacfwd(torch_f), in_dims=(None, 0))(*to_torch((w, xs)))
    assert got_w.shape == (6, 3, 3, 4)
    assert_tree_close(got_w, want_w)


def test_jacrev_of_vmap():
    x = np.linspace(-1, 1, 5)
    got = fgrad.jacrev(fgrad.vmap(lambda v: fnp.sin(v) * v))(x)
    np.testing.assert_allclose(got, np.diag(np.cos(x) * x + np.sin(x)), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Perturbation confusion: nested derivatives of closures
# --------------------------------------------------------------------------------------------

def test_perturbation_confusion_classic():
    """d/dx [x * d/dy (x + y)] at y = 1: the inner derivative is 1, so the answer is 1 for every
    x (Siskind & Pearlmutter; an implementation that confuses the two perturbations gets 2)."""
    def outer(x):
        return x * fgrad.grad(lambda y: x + y)(1.0)

    def torch_outer(x):
        return x * tf.grad(lambda y: x + y)(torch.tensor(1.0, dtype=torch.float64))

    for x in (1.0, 2.5):
        assert fgrad.grad(outer)(x) == 1.0
        assert tf.grad(torch_outer)(torch.tensor(x, dtype=torch.float64)).item() == 1.0
    # forward mode over reverse mode, and forward over forward
    assert fgrad.jvp(outer, (2.0,), (1.0,))[1] == 1.0

    def outer_fwd(x):
        return x * fgrad.jvp(lambda y: x + y, (1.0,), (1.0,))[1]
    assert fgrad.jvp(outer_fwd, (2.0,), (1.0,))[1] == 1.0
    assert fgrad.grad(outer_fwd)(2.0) == 1.0


def test_perturbation_confusion_product():
    """d/dx [x * d/dy (x * y)] = d/dx [x * x] = 2x; confusion would add the cross term."""
    def outer(x):
        return fgrad.grad(lambda y: x * y)(1.0) * x

    def torch_outer(x):
        return tf.grad(lambda y: x * y)(torch.tensor(1.0, dtype=torch.float64)) * x

    np.testing.assert_allclose(fgrad.grad(outer)(2.0), 4.0)
    np.testing.assert_allclose(tf.grad(torch_outer)(torch.tensor(2.0, dtype=torch.float64)).item(), 4.0)
    # the outer value is a vmap tracer: each example's x stays its own
    xs = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(outer))(xs), 2 * xs)


def test_nested_grad_closing_over_outer_tracer_vector():
    """The inner grad is taken while w is the outer grad's tracer: d/dw sum(w * grad_x <w, x^2>)."""
    w = np.array([0.5, -1.0, 2.0])
    x0 = np.array([1.0, 2.0, 3.0])

    def outer(w):
        inner_grad = fgrad.grad(lambda x: fnp.sum(w * x ** 2))(x0)   # = 2 w x0
        return fnp.sum(w * inner_grad)                               # = 2 sum(w^2 x0)

    np.testing.assert_allclose(fgrad.grad(outer)(w), 4 * w * x0, rtol=1e-12)

    def torch_outer(w):
        inner = tf.grad(lambda x: torch.sum(w * x ** 2))(torch.from_numpy(x0))
        return torch.sum(w * inner)
    assert_tree_close(fgrad.grad(outer)(w), tf.grad(torch_outer)(torch.from_numpy(w)))


# --------------------------------------------------------------------------------------------
# stop_gradient, dtypes, Python scalars
# --------------------------------------------------------------------------------------------

def test_stop_gradient_under_grad_jvp_vmap():
    f = lambda x: x * fgrad.stop_gradient(x ** 2) + fnp.sin(x)   # noqa: E731
    x = np.array([0.5, -1.5, 2.0])
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(f(x)))(x), x ** 2 + np.cos(x), rtol=1e-12)
    _, t = fgrad.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, x ** 2 + np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(fgrad.vmap(f)(x), x ** 3 + np.sin(x), rtol=1e-12)
    per_example = fgrad.vmap(fgrad.grad(f))(x)
    np.testing.assert_allclose(per_example, x ** 2 + np.cos(x), rtol=1e-12)
    # second order: stop_gradient blocks the second derivative too (d2/dx2 [x*c + sin x] = -sin x)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(f))(0.5), -np.sin(0.5), rtol=1e-12)
    # torch's detach is the same thing
    torch_f = lambda x: x * (x ** 2).detach() + torch.sin(x)   # noqa: E731
    assert_tree_close(fgrad.vmap(fgrad.grad(f))(x), tf.vmap(tf.grad(torch_f))(torch.from_numpy(x)))
    # on a pytree, non-float leaves pass through
    tree = fgrad.stop_gradient({"a": np.ones(2), "i": np.arange(3)})
    assert tree["i"].dtype.kind == "i"


def test_float32_inputs_give_float32_results():
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    w = np.ones(3, np.float32)
    f = lambda w, x: fnp.sum(fnp.tanh(x @ w) * 2.0)   # noqa: E731  (a Python float stays weak)
    gw, gx = fgrad.grad(f, argnums=(0, 1))(w, x)
    assert gw.dtype == np.float32 and gx.dtype == np.float32
    _, t = fgrad.jvp(lambda x: fnp.exp(x) * 0.5, (x,), (np.ones_like(x),))
    assert t.dtype == np.float32
    assert fgrad.jacrev(lambda x: fnp.sin(x))(x[0]).dtype == np.float32
    assert fgrad.jacfwd(lambda x: fnp.sin(x))(x[0]).dtype == np.float32
    assert fgrad.vmap(fgrad.grad(lambda v: fnp.sum(v ** 2)))(x).dtype == np.float32
    assert fgrad.hessian(lambda v: fnp.sum(v ** 3))(x[0]).dtype == np.float32
    want = tf.grad(lambda w: torch.sum(torch.tanh(torch.from_numpy(x) @ w) * 2.0))(torch.from_numpy(w))
    np.testing.assert_allclose(gw, want.numpy(), rtol=1e-6)


def test_python_scalar_inputs():
    assert fgrad.grad(lambda x: x * x + 3 * x)(2.0) == 7.0
    np.testing.assert_allclose(fgrad.grad(fnp.sin)(1.0), np.cos(1.0))
    np.testing.assert_allclose(fgrad.grad(lambda x, y: x * y ** 2, argnums=(0, 1))(3.0, 2.0), (4.0, 12.0))
    out, t = fgrad.jvp(lambda x: x ** 3, (2.0,), (1.0,))
    assert (float(out), float(t)) == (8.0, 12.0)
    np.testing.assert_allclose(fgrad.hessian(lambda x: x ** 4)(1.5), 12 * 1.5 ** 2)
    y, pullback = fgrad.vjp(lambda x: x * 5.0, 2.0)
    assert float(pullback(1.0)[0]) == 5.0
    # a Python scalar mixed into a vmap, unmapped
    np.testing.assert_allclose(fgrad.vmap(lambda x, s: x * s, in_axes=(0, None))(np.arange(3.0), 2.0),
                               [0.0, 2.0, 4.0])
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(fnp.asarray([x, 2 * x, x * x])))(3.0), 9.0)


# --------------------------------------------------------------------------------------------
# Properties drawn by hypothesis
# --------------------------------------------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False, min_value=-3, max_value=3)


@HYPOTHESIS
@given(data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
def test_broadcasting_grads_match_torch(data, shapes):
    """Gradients of broadcast arithmetic undo the broadcast (sum over added and size-1 axes)."""
    sx, sy = shapes.input_shapes
    x = data.draw(hnp.arrays(np.float64, sx, elements=st.floats(**finite)))
    y = data.draw(hnp.arrays(np.float64, sy, elements=st.floats(**finite)))
    f = lambda x, y: fnp.sum(fnp.sin(x * y) + x / (1 + y * y) - fnp.exp(x - y) / 3)   # noqa: E731
    torch_f = lambda x, y: torch.sum(torch.sin(x * y) + x / (1 + y * y) - torch.exp(x - y) / 3)   # noqa: E731
    gx, gy = fgrad.grad(f, argnums=(0, 1))(x, y)
    assert gx.shape == sx and gy.shape == sy
    assert_tree_close((gx, gy), tf.grad(torch_f, argnums=(0, 1))(*to_torch((x, y))))


@HYPOTHESIS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_reduction_vjps_match_torch(data, shape):
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    keepdims = data.draw(st.booleans())
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(**finite), unique=True))
    dim = tuple(range(len(shape))) if axis is None else axis
    pairs = [
        (lambda x: fnp.sum(x, axis=axis, keepdims=keepdims), lambda x: torch.sum(x, dim=dim, keepdim=keepdims)),
        (lambda x: fnp.mean(x, axis=axis, keepdims=keepdims), lambda x: torch.mean(x, dim=dim, keepdim=keepdims)),
        (lambda x: fnp.max(x, axis=axis, keepdims=keepdims), lambda x: torch.amax(x, dim=dim, keepdim=keepdims)),
        (lambda x: fnp.logsumexp(x, axis=axis, keepdims=keepdims),
         lambda x: torch.logsumexp(x, dim=dim, keepdim=keepdims)),
        (lambda x: fnp.var(x, axis=axis, keepdims=keepdims),
         lambda x: torch.var(x, dim=dim, keepdim=keepdims, unbiased=False)),
    ]
    rng = np.random.default_rng(0)
    for f, torch_f in pairs:
        out, pullback = fgrad.vjp(f, x)
        out_want, torch_pullback = tf.vjp(torch_f, torch.from_numpy(x))
        assert_tree_close(out, out_want)
        ct = rng.standard_normal(np.shape(out))
        assert_tree_close(pullback(ct), torch_pullback(torch.from_numpy(ct)))


@HYPOTHESIS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_vmap_any_axis_matches_loop(data, shape):
    """vmap over any in_axis, to any out_axis, of a function with reductions and matmul."""
    in_axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(**finite)))
    inner_ndim = len(shape) - 1
    out_axis = data.draw(st.integers(-(inner_ndim + 1), inner_ndim))

    def f(v):
        return fnp.tanh(v) * fnp.sum(v ** 2) + fnp.mean(v)

    got = fgrad.vmap(f, in_axes=in_axis, out_axes=out_axis)(x)
    loop = np.stack([f(np.take(x, i, axis=in_axis)) for i in range(x.shape[in_axis])], axis=out_axis)
    np.testing.assert_allclose(got, loop, rtol=1e-12, atol=1e-12)
    g = fgrad.vmap(fgrad.grad(lambda v: fnp.sum(f(v))), in_axes=in_axis, out_axes=out_axis)(x)
    loop_g = np.stack([fgrad.grad(lambda v: fnp.sum(f(v)))(np.take(x, i, axis=in_axis))
                       for i in range(x.shape[in_axis])], axis=out_axis)
    np.testing.assert_allclose(g, loop_g, rtol=1e-12, atol=1e-12)


@HYPOTHESIS
@given(x=hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(**finite)))
def test_elementwise_hessian_diagonal_matches_torch(x):
    f = lambda x: fnp.sum(fnp.sin(fnp.exp(fnp.tanh(x))) * fnp.log1p(x * x))   # noqa: E731
    torch_f = lambda x: torch.sum(torch.sin(torch.exp(torch.tanh(x))) * torch.log1p(x * x))   # noqa: E731
    assert_tree_close(fgrad.hessian(f)(x), tf.hessian(torch_f)(torch.from_numpy(x)), rtol=1e-8, atol=1e-9)
