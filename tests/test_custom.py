"""User-defined derivative rules: custom_vjp, custom_jvp and checkpoint, under every transform.

* ``custom_vjp``: the rule is used by grad, inside vmap(grad) and grad(vmap), with
  ``nondiff_argnums``, pytree arguments and outputs, a gradient-clipping rule, and staged by
  make_jaxpr (no jit needed); forward mode differentiates the function itself (fgrad's
  documented choice); second order differentiates through ``bwd``.
* ``custom_jvp``: a numerically safe ``log1pexp``; its JVP and its automatically transposed VJP
  against torch's softplus; under vmap; second order; finite everywhere.
* ``checkpoint``: same values and gradients as without it (grad, vmap(grad), grad(grad)); a
  Python side effect counts calls to prove the backward pass recomputes the forward pass.
"""
from __future__ import annotations

import collections
import functools

import numpy as np
import pytest
import torch
import torch.func as tf

import fgrad
import fgrad.numpy as fnp
from fgrad.staging import eval_jaxpr
from fn_table import assert_tree_close, to_torch, tree_map


# --------------------------------------------------------------------------------------------
# custom_vjp
# --------------------------------------------------------------------------------------------

@fgrad.custom_vjp
def clip_gradient(x):
    """Identity forward; the backward pass clips the cotangent to [-1, 1]."""
    return x


def _clip_fwd(x):
    return x, None


def _clip_bwd(_, g):
    return (fnp.clip(g, -1.0, 1.0),)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


class TorchClipGradient(torch.autograd.Function):
    """The same rule in torch, for comparison."""

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g.clamp(-1.0, 1.0)

    @staticmethod
    def vmap(info, in_dims, x):
        return x.clone(), in_dims[0]


def _clipped_loss(w, x):
    return fnp.sum(clip_gradient(fnp.tanh(x @ w)) * 5.0) + fnp.sum(w ** 2)


def _torch_clipped_loss(w, x):
    return torch.sum(TorchClipGradient.apply(torch.tanh(x @ w)) * 5.0) + torch.sum(w ** 2)


def _clip_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(3), rng.standard_normal((6, 3))


def test_custom_vjp_gradient_clipping_rule_is_used():
    x = np.array([-2.0, 0.3, 4.0])
    # forward is the identity; d/dx sum(10 x) = 10, clipped to 1
    np.testing.assert_allclose(clip_gradient(x), x)
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(clip_gradient(x) * 10.0))(x), np.ones(3))
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(clip_gradient(x) * 0.5))(x), np.full(3, 0.5))
    w, xs = _clip_data()
    got = fgrad.grad(_clipped_loss, argnums=(0, 1))(w, xs)
    want = tf.grad(_torch_clipped_loss, argnums=(0, 1))(*to_torch((w, xs)))
    assert_tree_close(got, want)


def test_custom_vjp_under_vmap_of_grad_and_grad_of_vmap():
    w, xs = _clip_data(1)
    per_example = fgrad.vmap(fgrad.grad(_clipped_loss), in_axes=(None, 0))(w, xs)
    loop = np.stack([fgrad.grad(_clipped_loss)(w, x) for x in xs])
    np.testing.assert_allclose(per_example, loop, rtol=1e-12)
    want = tf.vmap(tf.grad(_torch_clipped_loss), in_dims=(None, 0))(*to_torch((w, xs)))
    assert_tree_close(per_example, want)

    total = lambda w: fnp.sum(fgrad.vmap(_clipped_loss, in_axes=(None, 0))(w, xs))   # noqa: E731
    np.testing.assert_allclose(fgrad.grad(total)(w), loop.sum(axis=0), rtol=1e-12)
    # the clip applies per element of the mapped values: a batch does not change the rule
    big = np.array([[3.0, -3.0], [0.2, 0.4]])
    g = fgrad.grad(lambda v: fnp.sum(fgrad.vmap(lambda r: clip_gradient(r) * 4.0)(v)))(big)
    np.testing.assert_allclose(g, np.ones((2, 2)))


def test_custom_vjp_nondiff_argnums():
    def clip_between(lo, hi, x):
        return x
    clip_between = fgrad.custom_vjp(clip_between, nondiff_argnums=(0, 1))
    seen = []

    def fwd(lo, hi, x):
        return x, None

    def bwd(lo, hi, _, g):
        seen.append((lo, hi))
        return (fnp.clip(g, lo, hi),)

    clip_between.defvjp(fwd, bwd)
    x = np.array([1.0, 2.0, 3.0])
    g = fgrad.grad(lambda x: fnp.sum(clip_between(-0.5, 2.0, x) * np.array([1.0, 3.0, -4.0])))(x)
    np.testing.assert_allclose(g, [1.0, 2.0, -0.5])
    assert seen == [(-0.5, 2.0)]   # the non-differentiable arguments reach bwd first, unchanged
    per_example = fgrad.vmap(fgrad.grad(lambda v: fnp.sum(clip_between(0.0, 1.0, v) * 3.0)))(np.ones((2, 3)))
    np.testing.assert_allclose(per_example, np.ones((2, 3)))


def test_custom_vjp_pytree_arguments_and_outputs():
    """A dict argument and a (array, dict) output; bwd returns cotangents in the same trees."""
    @fgrad.custom_vjp
    def layer(params, x):
        h = fnp.tanh(x @ params["w"] + params["b"])
        return h, {"norm": fnp.sum(h * h)}

    def fwd(params, x):
        out = layer.fun(params, x)
        return out, (params, x, out[0])

    def bwd(res, cts):
        params, x, h = res
        h_bar, aux_bar = cts
        h_bar = h_bar + aux_bar["norm"] * 2 * h        # d norm / dh = 2 h
        z_bar = h_bar * (1 - h * h)                     # d tanh(z) = 1 - tanh(z)^2
        return ({"w": x.T @ z_bar, "b": fnp.sum(z_bar, axis=0)}, z_bar @ params["w"].T)

    layer.defvjp(fwd, bwd)

    def plain(params, x):
        h = fnp.tanh(x @ params["w"] + params["b"])
        return h, {"norm": fnp.sum(h * h)}

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    x = rng.standard_normal((4, 3))

    def loss(fn):
        def f(params, x):
            h, aux = fn(params, x)
            return fnp.sum(h * np.arange(2.0)) + 0.3 * aux["norm"]
        return f

    out, aux = layer(params, x)
    assert set(aux) == {"norm"}
    got = fgrad.grad(loss(layer), argnums=(0, 1))(params, x)
    assert_tree_close(got, fgrad.grad(loss(plain), argnums=(0, 1))(params, x))
    assert set(got[0]) == {"w", "b"}
    # and with a rule that is deliberately not the derivative, grad follows the rule
    scaled = fgrad.custom_vjp(lambda params, x: plain(params, x))
    scaled.defvjp(fwd, lambda res, cts: tree_map(lambda c: 2 * c, bwd(res, cts)))
    assert_tree_close(fgrad.grad(loss(scaled))(params, x),
                      tree_map(lambda g: 2 * g, fgrad.grad(loss(plain))(params, x)))


def test_custom_vjp_bwd_returning_none_means_no_cotangent():
    @fgrad.custom_vjp
    def scale(x, y):
        return x * y

    scale.defvjp(lambda x, y: (x * y, y), lambda y, g: (g * y, None))
    gx, gy = fgrad.grad(lambda x, y: fnp.sum(scale(x, y)), argnums=(0, 1))(np.ones(2), np.full(2, 3.0))
    np.testing.assert_allclose(gx, [3.0, 3.0])
    np.testing.assert_allclose(gy, [0.0, 0.0])
    g = fgrad.vmap(fgrad.grad(lambda x, y: fnp.sum(scale(x, y)), argnums=1))(np.ones((2, 2)), np.ones((2, 2)))
    np.testing.assert_allclose(g, np.zeros((2, 2)))


def test_custom_vjp_forward_mode_differentiates_the_function():
    """fgrad's documented choice: jvp of a custom_vjp function uses the function, not the rule."""
    x = np.array([3.0, -0.5])
    _, t = fgrad.jvp(lambda x: clip_gradient(x) * 10.0, (x,), (np.ones(2),))
    np.testing.assert_allclose(t, [10.0, 10.0])
    np.testing.assert_allclose(fgrad.jacfwd(lambda x: clip_gradient(x) * 10.0)(x), 10 * np.eye(2))
    np.testing.assert_allclose(fgrad.jacrev(lambda x: clip_gradient(x) * 10.0)(x), np.eye(2))


def test_custom_vjp_second_order_differentiates_bwd():
    @fgrad.custom_vjp
    def cube(x):
        return x ** 3

    cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (g * 3 * x ** 2,))
    np.testing.assert_allclose(fgrad.grad(cube)(2.0), 12.0)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(cube))(2.0), 12.0)   # d/dx 3x^2 = 6x
    np.testing.assert_allclose(fgrad.hessian(lambda v: fnp.sum(cube(v)))(np.array([1.0, 2.0])),
                               np.diag([6.0, 12.0]))
    want = tf.grad(tf.grad(lambda x: x ** 3))(torch.tensor(2.0, dtype=torch.float64))
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(cube))(2.0), want.item())


def test_custom_vjp_staged_by_make_jaxpr():
    """No jit needed: make_jaxpr traces through the rule, and the program replays it."""
    w, xs = _clip_data(3)
    xs[:, 0] *= 4.0    # some cotangents beyond the clip

    def loss(w, xs):   # the cotangent reaching clip_gradient depends on the inputs, so it is staged
        return fnp.sum(clip_gradient(fnp.tanh(xs @ w)) * xs[:, 0])

    jaxpr = fgrad.make_jaxpr(fgrad.grad(loss))(w, xs)
    names = [eqn.prim.name for eqn in jaxpr.eqns]
    assert "custom_vjp_call" not in names   # inlined: the program is made of ordinary primitives
    assert "select" in names                # bwd's clip is in the backward program
    (replayed,) = eval_jaxpr(jaxpr, jaxpr.consts, w, xs)
    np.testing.assert_allclose(replayed, fgrad.grad(loss)(w, xs), rtol=1e-12)
    h = np.tanh(xs @ w)
    np.testing.assert_allclose(replayed, ((1 - h * h) * np.clip(xs[:, 0], -1, 1)) @ xs, rtol=1e-12)
    # the forward program is just the function
    fwd = fgrad.make_jaxpr(lambda x: clip_gradient(x) * 2.0)(xs)
    np.testing.assert_allclose(eval_jaxpr(fwd, fwd.consts, xs)[0], xs * 2.0)


def test_custom_vjp_errors():
    @fgrad.custom_vjp
    def no_rule(x):
        return x
    with pytest.raises(TypeError, match="defvjp"):
        no_rule(1.0)

    @fgrad.custom_vjp
    def bad_count(x, y):
        return x * y
    bad_count.defvjp(lambda x, y: (x * y, None), lambda _, g: (g,))
    with pytest.raises(TypeError, match="bad_count.*one cotangent per differentiable argument"):
        fgrad.grad(bad_count)(1.0, 2.0)

    @fgrad.custom_vjp
    def bad_shape(x):
        return fnp.sum(x)
    bad_shape.defvjp(lambda x: (fnp.sum(x), None), lambda _, g: (fnp.ones(2) * g,))
    with pytest.raises(ValueError, match=r"bad_shape.*\(2,\).*\(3,\)"):
        fgrad.grad(bad_shape)(np.ones(3))


# --------------------------------------------------------------------------------------------
# custom_jvp
# --------------------------------------------------------------------------------------------

@fgrad.custom_jvp
def log1pexp(x):
    """``log(1 + e^x)``, finite for any x: ``x + log1p(e^-x)`` for large x."""
    return fnp.where(x > 30.0, x + fnp.log1p(fnp.exp(-fnp.abs(x))), fnp.log1p(fnp.exp(fnp.minimum(x, 30.0))))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return log1pexp(x), x_dot * fnp.logistic(x)     # d log(1 + e^x) = sigmoid(x) dx


def _softplus(x):
    return torch.nn.functional.softplus(x, beta=1.0, threshold=50.0)


def test_custom_jvp_log1pexp_jvp_and_transposed_vjp_match_torch():
    x = np.linspace(-6.0, 25.0, 7)
    t = np.random.default_rng(4).standard_normal(7)
    out, t_out = fgrad.jvp(log1pexp, (x,), (t,))
    out_want, t_want = tf.jvp(_softplus, (torch.from_numpy(x),), (torch.from_numpy(t),))
    assert_tree_close(out, out_want)
    assert_tree_close(t_out, t_want)
    # reverse mode is the JVP rule transposed automatically
    _, pullback = fgrad.vjp(log1pexp, x)
    _, torch_pullback = tf.vjp(_softplus, torch.from_numpy(x))
    assert_tree_close(pullback(t), torch_pullback(torch.from_numpy(t)))
    assert_tree_close(fgrad.grad(lambda x: fnp.sum(log1pexp(x)))(x), torch.sigmoid(torch.from_numpy(x)))


def test_custom_jvp_is_finite_where_the_plain_gradient_is_not():
    x = np.array([-800.0, 0.0, 40.0, 800.0])
    with np.errstate(over="ignore", invalid="ignore"):
        g = fgrad.grad(lambda x: fnp.sum(log1pexp(x)))(x)
        h = fgrad.vmap(fgrad.grad(fgrad.grad(log1pexp)))(x)
        naive = fgrad.grad(lambda x: fnp.sum(fnp.log1p(fnp.exp(x))))(x)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    np.testing.assert_allclose(g, [0.0, 0.5, 1.0, 1.0], atol=1e-15)
    assert not np.all(np.isfinite(naive))   # why the rule exists: exp(800) overflows


def test_custom_jvp_under_vmap_and_second_order():
    x = np.linspace(-3.0, 3.0, 5)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(fgrad.vmap(log1pexp)(x), np.log1p(np.exp(x)), rtol=1e-12)
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(log1pexp))(x), s, rtol=1e-12)
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(fgrad.grad(log1pexp)))(x), s * (1 - s), rtol=1e-12)
    np.testing.assert_allclose(fgrad.hessian(lambda v: fnp.sum(log1pexp(v)))(x), np.diag(s * (1 - s)),
                               rtol=1e-12, atol=1e-15)
    _, t = fgrad.jvp(fgrad.vmap(log1pexp), (x,), (np.ones(5),))
    np.testing.assert_allclose(t, s, rtol=1e-12)
    want = tf.vmap(tf.grad(tf.grad(_softplus)))(torch.from_numpy(x))
    assert_tree_close(fgrad.vmap(fgrad.grad(fgrad.grad(log1pexp)))(x), want)
    # a batch of 2-D inputs through grad(vmap)
    xs = np.linspace(-2, 2, 6).reshape(2, 3)
    g = fgrad.grad(lambda v: fnp.sum(fgrad.vmap(log1pexp)(v) ** 2))(xs)
    np.testing.assert_allclose(g, 2 * np.log1p(np.exp(xs)) / (1 + np.exp(-xs)), rtol=1e-12)


def test_custom_jvp_rule_is_what_transforms_use():
    """A rule that is deliberately 3x the derivative shows up in jvp, grad, vmap and jacfwd."""
    @fgrad.custom_jvp
    def f(x, y):
        return fnp.sin(x) * y

    @f.defjvp
    def f_jvp(primals, tangents):
        (x, y), (x_dot, y_dot) = primals, tangents
        return f(x, y), 3 * (fnp.cos(x) * y * x_dot + fnp.sin(x) * y_dot)

    x, y = np.array([0.1, 0.7]), np.array([2.0, -1.0])
    true_gx, true_gy = np.cos(x) * y, np.sin(x)
    gx, gy = fgrad.grad(lambda x, y: fnp.sum(f(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 3 * true_gx)
    np.testing.assert_allclose(gy, 3 * true_gy)
    np.testing.assert_allclose(fgrad.jacfwd(f)(x, y), np.diag(3 * true_gx))
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(f))(x, y), 3 * true_gx)


def test_custom_jvp_nondiff_argnums_and_pytrees():
    def power(n, p):
        return {"y": p["x"] ** n}
    power = fgrad.custom_jvp(power, nondiff_argnums=(0,))

    @power.defjvp
    def power_jvp(n, primals, tangents):
        (p,), (p_dot,) = primals, tangents
        return power(n, p), {"y": n * p["x"] ** (n - 1) * p_dot["x"]}   # d x^n = n x^(n-1) dx

    p = {"x": np.array([1.0, 2.0])}
    g = fgrad.grad(lambda p: fnp.sum(power(3, p)["y"]))(p)
    np.testing.assert_allclose(g["x"], 3 * p["x"] ** 2)
    assert fgrad.jvp(lambda p: power(2, p), (p,), ({"x": np.ones(2)},))[1]["y"].tolist() == [2.0, 4.0]


def test_custom_jvp_staged_by_make_jaxpr():
    x = np.linspace(-1, 1, 3)
    jaxpr = fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(log1pexp(x))))(x)
    assert "custom_jvp_call" not in str(jaxpr)
    assert "logistic" in str(jaxpr)          # the backward program is the rule, transposed
    np.testing.assert_allclose(eval_jaxpr(jaxpr, jaxpr.consts, x)[0], 1 / (1 + np.exp(-x)), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Integer operands (labels, indices) pass through every rule undifferentiated
# --------------------------------------------------------------------------------------------

def _pick_data():
    return np.array([0.5, 1.0, 2.0]), np.array([2, 0, 2]), np.array([[2, 0, 0], [1, 1, 2]])


def _pick_grad(x, i):
    """d/dx sum(sin(x[i])): cos(x[i]) scattered back, repeated indices adding up."""
    g = np.zeros_like(x)
    np.add.at(g, i, np.cos(x[i]))
    return g


@fgrad.custom_jvp
def pick_sin(x, i):
    return fnp.sin(fnp.take(x, i))


@pick_sin.defjvp
def _pick_sin_jvp(primals, tangents):
    (x, i), (x_dot, _) = primals, tangents     # the integer operand's tangent is a zero
    return pick_sin(x, i), fnp.cos(fnp.take(x, i)) * fnp.take(x_dot, i)


@fgrad.custom_vjp
def pick_sin_vjp(x, i):
    return fnp.sin(fnp.take(x, i))


pick_sin_vjp.defvjp(lambda x, i: (pick_sin_vjp(x, i), (x, i)),
                    lambda res, g: (fnp.at(fnp.zeros_like(res[0]))[res[1]].add(fnp.cos(fnp.take(*res)) * g),
                                    None))


@pytest.mark.parametrize("fn", [pick_sin, pick_sin_vjp, fgrad.checkpoint(lambda x, i: fnp.sin(fnp.take(x, i)))],
                         ids=["custom_jvp", "custom_vjp", "checkpoint"])
def test_integer_operands_under_every_transform(fn):
    x, i, batch_i = _pick_data()
    loss = lambda x, i: fnp.sum(fn(x, i))   # noqa: E731
    np.testing.assert_allclose(fgrad.grad(loss)(x, i), _pick_grad(x, i), rtol=1e-12)
    _, t = fgrad.jvp(lambda x: fn(x, i), (x,), (np.ones(3),))
    np.testing.assert_allclose(t, np.cos(x[i]), rtol=1e-12)
    per_index = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0))(x, batch_i)
    np.testing.assert_allclose(per_index, np.stack([_pick_grad(x, b) for b in batch_i]), rtol=1e-12)
    counts = np.bincount(i, minlength=3)
    np.testing.assert_allclose(fgrad.hessian(loss)(x, i), np.diag(-np.sin(x) * counts), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------

def _counted(fn):
    """``fn`` that counts its calls (a Python side effect, run each time it is traced)."""
    counter = collections.Counter()

    def wrapped(*args):
        counter["calls"] += 1
        return fn(*args)
    wrapped.__name__ = fn.__name__
    return wrapped, counter


def _block(w, x):
    h = fnp.tanh(x @ w["w1"])
    return fnp.sin(h @ w["w2"]) + x


def _block_loss(block):
    return lambda w, x: fnp.sum(block(w, block(w, x)) ** 2)


def _block_data(seed=0):
    rng = np.random.default_rng(seed)
    w = {"w1": rng.standard_normal((4, 6)) * 0.5, "w2": rng.standard_normal((6, 4)) * 0.5}
    return w, rng.standard_normal((5, 4))


def test_checkpoint_same_values_and_gradients():
    w, x = _block_data()
    plain, remat = _block_loss(_block), _block_loss(fgrad.checkpoint(_block))
    np.testing.assert_allclose(remat(w, x), plain(w, x))
    assert_tree_close(fgrad.grad(remat, argnums=(0, 1))(w, x), fgrad.grad(plain, argnums=(0, 1))(w, x))
    per_example = fgrad.vmap(fgrad.grad(remat), in_axes=(None, 0))(w, x)
    assert_tree_close(per_example, fgrad.vmap(fgrad.grad(plain), in_axes=(None, 0))(w, x))
    # second order: Hessian-vector products by grad(grad) and by jvp(grad)
    v = {"w1": np.ones((4, 6)), "w2": np.ones((6, 4))}

    def hvp_rr(loss):
        return fgrad.grad(lambda w: sum(fnp.sum(g * v[k]) for k, g in fgrad.grad(loss)(w, x).items()))(w)
    assert_tree_close(hvp_rr(remat), hvp_rr(plain), rtol=1e-9)
    assert_tree_close(fgrad.jvp(fgrad.grad(remat), (w, x), (v, np.zeros_like(x)))[1],
                      fgrad.jvp(fgrad.grad(plain), (w, x), (v, np.zeros_like(x)))[1], rtol=1e-9)
    assert fgrad.remat is fgrad.checkpoint


def test_checkpoint_matches_torch_checkpoint():
    import torch.utils.checkpoint as tcp
    w, x = _block_data(1)

    def torch_block(w1, w2, x):
        return torch.sin(torch.tanh(x @ w1) @ w2) + x

    tw1, tw2, tx = (torch.from_numpy(a).requires_grad_() for a in (w["w1"], w["w2"], x))
    y = tcp.checkpoint(torch_block, tw1, tw2, tcp.checkpoint(torch_block, tw1, tw2, tx, use_reentrant=False),
                       use_reentrant=False)
    torch.sum(y ** 2).backward()
    g = fgrad.grad(_block_loss(fgrad.checkpoint(_block)))(w, x)
    assert_tree_close(g, {"w1": tw1.grad, "w2": tw2.grad})


def test_checkpoint_recomputes_the_forward_pass_in_the_backward_pass():
    w, x = _block_data(2)
    counted, counter = _counted(_block)
    remat = fgrad.checkpoint(counted)
    loss = lambda w: fnp.sum(remat(w, x) ** 2)   # noqa: E731

    remat(w, x)
    assert counter["calls"] == 1                 # no transform: one plain call
    counter.clear()
    _, pullback = fgrad.vjp(loss, w)
    assert counter["calls"] == 1                 # the forward pass ran once and kept only inputs
    pullback(1.0)
    assert counter["calls"] == 2                 # the backward pass ran the block again
    pullback(2.0)
    assert counter["calls"] == 3                 # ... every time it runs

    # without checkpoint the backward pass uses the saved intermediates: one call in all
    plain, plain_counter = _counted(_block)
    _, pullback = fgrad.vjp(lambda w: fnp.sum(plain(w, x) ** 2), w)
    pullback(1.0)
    assert plain_counter["calls"] == 1

    counter.clear()
    fgrad.vmap(fgrad.grad(lambda w, x: fnp.sum(remat(w, x) ** 2)), in_axes=(None, 0))(w, x)
    assert counter["calls"] == 2                 # under vmap too: forward once, once more backward


def test_checkpoint_rematerialisation_is_visible_in_the_staged_program():
    """The staged value-and-gradient program computes tanh twice with checkpoint, once without."""
    w, x = _block_data(3)

    def count_tanh(block):
        loss = lambda w: fnp.sum(block(w, x) ** 2)   # noqa: E731
        jaxpr = fgrad.make_jaxpr(fgrad.value_and_grad(loss))(w)
        value, grads = fgrad.value_and_grad(loss)(w)
        replayed = eval_jaxpr(jaxpr, jaxpr.consts, *fgrad.tree.leaves(w))
        np.testing.assert_allclose(replayed[0], value)
        return sum(eqn.prim.name == "tanh" for eqn in jaxpr.eqns)

    assert count_tanh(_block) == 1
    assert count_tanh(fgrad.checkpoint(_block)) == 2


# --------------------------------------------------------------------------------------------
# checkpoint policies and defjvps (JAX's names)
# --------------------------------------------------------------------------------------------

POLICIES = ["nothing_saveable", "everything_saveable", "dots_saveable",
            "dots_with_no_batch_dims_saveable"]


@pytest.mark.parametrize("name", POLICIES)
def test_checkpoint_policies_keep_values_and_gradients(name):
    policy = getattr(fgrad.checkpoint_policies, name)
    w, x = _block_data(4)
    plain, remat = _block_loss(_block), _block_loss(fgrad.checkpoint(_block, policy=policy))
    np.testing.assert_allclose(remat(w, x), plain(w, x))
    assert_tree_close(fgrad.grad(remat, argnums=(0, 1))(w, x), fgrad.grad(plain, argnums=(0, 1))(w, x))
    assert_tree_close(fgrad.vmap(fgrad.grad(remat), in_axes=(None, 0))(w, x),
                      fgrad.vmap(fgrad.grad(plain), in_axes=(None, 0))(w, x))
    v = {"w1": np.ones((4, 6)), "w2": np.ones((6, 4))}

    def hvp(loss):
        return fgrad.grad(lambda w: sum(fnp.sum(g * v[k]) for k, g in fgrad.grad(loss)(w, x).items()))(w)
    assert_tree_close(hvp(remat), hvp(plain), rtol=1e-9)
    assert_tree_close(fgrad.jit(fgrad.grad(remat))(w, x), fgrad.grad(plain)(w, x))


def _count_in_program(block, prim_name):
    w, x = _block_data(5)
    loss = lambda w: fnp.sum(block(w, x) ** 2)   # noqa: E731
    jaxpr = fgrad.make_jaxpr(fgrad.value_and_grad(loss))(w)
    return sum(eqn.prim.name == prim_name for eqn in jaxpr.eqns)


def test_checkpoint_policy_decides_what_the_backward_pass_recomputes():
    cp = fgrad.checkpoint_policies
    plain_dots, plain_tanh = _count_in_program(_block, "dot_general"), _count_in_program(_block, "tanh")
    nothing = fgrad.checkpoint(_block, policy=cp.nothing_saveable)
    dots = fgrad.checkpoint(_block, policy=cp.dots_saveable)
    # nothing saved: both products and tanh run again; dots saved: only the elementwise work
    assert _count_in_program(nothing, "dot_general") == plain_dots + 2
    assert _count_in_program(nothing, "tanh") == plain_tanh + 1
    assert _count_in_program(dots, "dot_general") == plain_dots
    assert _count_in_program(dots, "tanh") == plain_tanh + 1
    assert fgrad.checkpoint(_block, policy=cp.everything_saveable) is _block


def test_dots_with_no_batch_dims_saveable_recomputes_batched_products():
    cp = fgrad.checkpoint_policies

    def attention_like(w, x):          # one product with a batch axis, one without
        h = fnp.einsum("bij,bkj->bik", x[None] @ w["w1"], x[None] @ w["w1"])
        return fnp.sum(fnp.tanh(h))
    plain = _count_in_program(lambda w, x: attention_like(w, x), "dot_general")
    no_batch = fgrad.checkpoint(attention_like, policy=cp.dots_with_no_batch_dims_saveable)
    everything_dots = fgrad.checkpoint(attention_like, policy=cp.dots_saveable)
    assert _count_in_program(everything_dots, "dot_general") == plain
    assert _count_in_program(no_batch, "dot_general") > plain
    w, x = _block_data(6)
    assert_tree_close(fgrad.grad(no_batch)(w, x), fgrad.grad(attention_like)(w, x))


def test_checkpoint_custom_policy_static_argnums_and_decorator_form():
    seen = []

    def policy(prim, *args, **params):
        seen.append(prim.name)
        return prim.name == "tanh"

    @functools.partial(fgrad.checkpoint, policy=policy, static_argnums=(2,))
    def block(w, x, square):
        h = fnp.tanh(x @ w["w1"])
        return h * h if square else h

    w, x = _block_data(7)
    loss = lambda w: fnp.sum(block(w, x, True))   # noqa: E731
    want = fgrad.grad(lambda w: fnp.sum(fnp.tanh(x @ w["w1"]) ** 2))(w)
    assert_tree_close(fgrad.grad(loss)(w), want)
    assert "tanh" in seen and "dot_general" in seen


def test_custom_jvp_defjvps_one_rule_per_argument():
    calls = collections.Counter()

    @fgrad.custom_jvp
    def f(x, y):
        return fnp.sin(x) * y

    def dx(x_dot, ans, x, y):
        calls["x"] += 1
        return fnp.cos(x) * x_dot * y

    f.defjvps(dx, lambda y_dot, ans, x, y: fnp.sin(x) * y_dot)
    x, y = np.array([0.3, 1.2]), np.array([2.0, -1.0])
    gx, gy = fgrad.grad(lambda x, y: fnp.sum(f(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, np.cos(x) * y)
    np.testing.assert_allclose(gy, np.sin(x))
    assert calls["x"] >= 1                        # the rule, not differentiation of f
    _, t = fgrad.jvp(f, (x, y), (np.ones(2), np.zeros(2)))
    np.testing.assert_allclose(t, np.cos(x) * y)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(lambda x: fnp.sum(f(x, 2.0))))(0.5), -2 * np.sin(0.5))

    @fgrad.custom_jvp
    def g(x, n):
        return x * n

    g.defjvps(lambda x_dot, ans, x, n: x_dot * n, None)   # None: no derivative in n
    np.testing.assert_allclose(fgrad.grad(g)(1.5, 3.0), 3.0)
    assert fgrad.grad(g, argnums=1)(1.5, 3.0) == 0.0
    with pytest.raises(TypeError, match="nondiff_argnums"):
        fgrad.custom_jvp(lambda x, n: x, nondiff_argnums=(1,)).defjvps(None)
