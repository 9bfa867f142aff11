"""Programs from JAX's own documentation, run with one import changed.

Each test is a program written after a page of JAX's documentation (the quickstart, the
autodiff cookbook, the custom-derivative and vmap tutorials, the pytree and random pages),
with ``import jax, jax.numpy as jnp`` replaced by ``import fgrad as jax, fgrad.numpy as jnp``
and nothing else changed in the code a user would type. Values are the ones the pages print
(JAX computes in float32 there, so they are compared to about 1e-6), or torch's, or finite
differences.

One rule differs from JAX and shows here: outside every transform ``jnp`` returns plain NumPy
arrays, which have no ``.at``; inside a transformed function (``jit``, ``grad``, ``vmap``, ...)
creation functions return arrays that have it. ``jnp.at(x)[i].set(v)`` works everywhere.
"""
from __future__ import annotations

import collections
from functools import partial

import numpy as np
import pytest
import torch

import fgrad as jax
import fgrad.numpy as jnp
from fgrad import grad, jacfwd, jacrev, jit, jvp, random, value_and_grad, vjp, vmap
from fgrad import custom_jvp, custom_vjp

JAX_PRINTED = dict(rtol=2e-6, atol=1e-7)    # the pages print float32 results


# --------------------------------------------------------------------------------------------
# Quickstart
# --------------------------------------------------------------------------------------------

def test_quickstart_jit_grad_vmap():
    def selu(x, alpha=1.67, lmbda=1.05):
        return lmbda * jnp.where(x > 0, x, alpha * jnp.exp(x) - alpha)

    key = jax.random.key(1701)
    x = jax.random.normal(key, (1_000,))
    selu_jit = jax.jit(selu)
    np.testing.assert_allclose(selu_jit(x), selu(x))

    def sum_logistic(x):
        return jnp.sum(1.0 / (1.0 + jnp.exp(-x)))

    x_small = jnp.arange(3.)
    derivative_fn = jax.grad(sum_logistic)
    np.testing.assert_allclose(derivative_fn(x_small), [0.25, 0.19661197, 0.10499357], **JAX_PRINTED)

    def first_finite_differences(f, x, eps=1E-3):
        return jnp.array([(f(x + eps * v) - f(x - eps * v)) / (2 * eps) for v in jnp.eye(len(x))])
    np.testing.assert_allclose(first_finite_differences(sum_logistic, x_small),
                               derivative_fn(x_small), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(jax.grad(jax.grad(sum_logistic)))(1.0), -0.0353, atol=1e-4)

    def hessian(fun):
        return jit(jacfwd(jacrev(fun)))
    H = hessian(sum_logistic)(x_small)
    s = 1 / (1 + np.exp(-np.arange(3.)))
    np.testing.assert_allclose(H, np.diag(s * (1 - s) * (1 - 2 * s)), atol=1e-12)

    key1, key2 = random.split(key)
    mat = random.normal(key1, (150, 100))
    batched_x = random.normal(key2, (10, 100))

    def apply_matrix(x):
        return jnp.dot(mat, x)

    def naively_batched_apply_matrix(v_batched):
        return jnp.stack([apply_matrix(v) for v in v_batched])

    @jit
    def batched_apply_matrix(batched_x):
        return jnp.dot(batched_x, mat.T)

    @jit
    def vmap_batched_apply_matrix(batched_x):
        return vmap(apply_matrix)(batched_x)

    np.testing.assert_allclose(naively_batched_apply_matrix(batched_x),
                               batched_apply_matrix(batched_x), atol=1E-12, rtol=1E-12)
    np.testing.assert_allclose(naively_batched_apply_matrix(batched_x),
                               vmap_batched_apply_matrix(batched_x), atol=1E-12, rtol=1E-12)
    assert jax.jacobian is jax.jacrev


def test_quickstart_nested_jit_and_grad():
    def sum_logistic(x):
        return jnp.sum(1.0 / (1.0 + jnp.exp(-x)))
    np.testing.assert_allclose(jax.grad(jax.jit(jax.grad(jax.jit(jax.grad(sum_logistic)))))(1.0),
                               -0.0353, atol=1e-4)


# --------------------------------------------------------------------------------------------
# The autodiff cookbook
# --------------------------------------------------------------------------------------------

def test_cookbook_higher_derivatives_of_tanh():
    grad_tanh = grad(jnp.tanh)
    np.testing.assert_allclose(grad_tanh(2.0), 0.070650816, **JAX_PRINTED)
    np.testing.assert_allclose(grad(grad(grad(jnp.tanh)))(1.0), 0.6216266, **JAX_PRINTED)


def _logistic_regression():
    def sigmoid(x):
        return 0.5 * (jnp.tanh(x / 2) + 1)

    def predict(W, b, inputs):
        return sigmoid(jnp.dot(inputs, W) + b)

    inputs = jnp.array([[0.52, 1.12, 0.77],
                        [0.88, -1.08, 0.15],
                        [0.52, 0.06, -1.30],
                        [0.74, -2.49, 1.39]])
    targets = jnp.array([True, True, False, True])

    def loss(W, b):
        preds = predict(W, b, inputs)
        label_probs = preds * targets + (1 - preds) * (1 - targets)
        return -jnp.sum(jnp.log(label_probs))

    key = random.key(0)
    key, W_key, b_key = random.split(key, 3)
    W = random.normal(W_key, (3,))
    b = random.normal(b_key, ())
    return predict, loss, inputs, targets, W, b


def test_cookbook_logistic_regression_gradients():
    predict, loss, inputs, targets, W, b = _logistic_regression()
    W_grad = grad(loss, argnums=0)(W, b)
    W_grad2 = grad(loss, 0)(W, b)
    b_grad = grad(loss, 1)(W, b)
    W_grad3, b_grad2 = grad(loss, (0, 1))(W, b)
    np.testing.assert_allclose(W_grad, W_grad2)
    np.testing.assert_allclose(W_grad, W_grad3)
    np.testing.assert_allclose(b_grad, b_grad2)

    # torch computes the same gradients
    tW, tb = (torch.tensor(np.asarray(v), requires_grad=True) for v in (W, b))
    ti, tt = torch.from_numpy(inputs), torch.from_numpy(targets.astype(np.float64))
    preds = 0.5 * (torch.tanh((ti @ tW + tb) / 2) + 1)
    (-torch.log(preds * tt + (1 - preds) * (1 - tt)).sum()).backward()
    np.testing.assert_allclose(W_grad, tW.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(b_grad, tb.grad.numpy(), rtol=1e-10)

    def loss2(params_dict):
        preds = predict(params_dict['W'], params_dict['b'], inputs)
        label_probs = preds * targets + (1 - preds) * (1 - targets)
        return -jnp.sum(jnp.log(label_probs))
    g = grad(loss2)({'W': W, 'b': b})
    assert list(g) == ['W', 'b']
    np.testing.assert_allclose(g['W'], W_grad)

    loss_value, Wb_grad = value_and_grad(loss, (0, 1))(W, b)
    np.testing.assert_allclose(loss_value, loss(W, b))
    np.testing.assert_allclose(Wb_grad[0], W_grad)

    eps = 1e-4
    b_grad_numerical = (loss(W, b + eps / 2.) - loss(W, b - eps / 2.)) / eps
    np.testing.assert_allclose(b_grad_numerical, b_grad, rtol=1e-6)
    from fgrad.testing import check_grads
    check_grads(loss, (W, b), order=2)


def test_cookbook_jacobians_hessians_and_hvp():
    predict, loss, inputs, targets, W, b = _logistic_regression()
    f = lambda W: predict(W, b, inputs)   # noqa: E731
    J = jacfwd(f)(W)
    assert J.shape == (4, 3)
    np.testing.assert_allclose(J, jacrev(f)(W), rtol=1e-12)

    def hessian(f):
        return jacfwd(jacrev(f))
    H = hessian(f)(W)
    assert H.shape == (4, 3, 3)

    def hvp(f, x, v):
        return grad(lambda x: jnp.vdot(grad(f)(x), v))(x)

    def hvp_fwd(f, primals, tangents):
        return jvp(grad(f), primals, tangents)[1]

    g = lambda W: loss(W, b)   # noqa: E731
    v = jnp.array([1.0, -2.0, 0.5])
    want = jax.hessian(g)(W) @ v
    np.testing.assert_allclose(hvp(g, W, v), want, rtol=1e-10)
    np.testing.assert_allclose(hvp_fwd(g, (W,), (v,)), want, rtol=1e-10)

    # vector-Jacobian products, and a matrix of them with vmap
    y, vjp_fun = vjp(f, W)
    key = random.key(1)
    M = random.normal(key, (2, 4))
    outs = vmap(vjp_fun)(M)
    np.testing.assert_allclose(outs[0], M @ J, rtol=1e-10)
    # Jacobian-matrix products with vmap over jvp
    S = random.normal(random.key(2), (3, 5))
    pushfwd = partial(jvp, f, (W,))
    _, mjp = vmap(pushfwd, in_axes=(1,), out_axes=(None, 1))((S,))
    np.testing.assert_allclose(mjp, J @ S, rtol=1e-10)


def test_cookbook_per_example_gradients():
    predict, loss, inputs, targets, W, b = _logistic_regression()

    def loss_one(W, b, x, t):
        p = predict(W, b, x)
        return -jnp.log(p * t + (1 - p) * (1 - t))

    perex_grads = jit(vmap(grad(loss_one), in_axes=(None, None, 0, 0)))
    per_example = perex_grads(W, b, inputs, targets)
    assert per_example.shape == (4, 3)
    np.testing.assert_allclose(per_example.sum(0), grad(loss)(W, b), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Custom derivative rules
# --------------------------------------------------------------------------------------------

def test_custom_jvp_log1pexp_is_stable():
    def log1pexp_naive(x):
        return jnp.log(1. + jnp.exp(x))
    with np.errstate(all="ignore"):   # the page's 100. overflows float32; float64 needs 1000.
        assert np.isnan(grad(log1pexp_naive)(1000.))

    @custom_jvp
    def log1pexp(x):
        return jnp.log(1. + jnp.exp(x))

    @log1pexp.defjvp
    def log1pexp_jvp(primals, tangents):
        x, = primals
        x_dot, = tangents
        ans = log1pexp(x)
        ans_dot = (1 - 1/(1 + jnp.exp(x))) * x_dot
        return ans, ans_dot

    assert grad(log1pexp)(100.) == 1.0
    assert grad(log1pexp)(1000.) == 1.0
    np.testing.assert_allclose(jit(log1pexp)(3.), 3.0485873, **JAX_PRINTED)
    np.testing.assert_allclose(jit(grad(log1pexp))(3.), 0.95257413, **JAX_PRINTED)
    np.testing.assert_allclose(vmap(jit(grad(log1pexp)))(jnp.arange(3.)),
                               [0.5, 0.7310586, 0.8807971], **JAX_PRINTED)


def test_custom_jvp_defjvps_and_custom_vjp_clip_gradient():
    @custom_jvp
    def f(x, y):
        return jnp.sin(x) * y

    f.defjvps(lambda x_dot, primal_out, x, y: jnp.cos(x) * x_dot * y,
              lambda y_dot, primal_out, x, y: jnp.sin(x) * y_dot)
    np.testing.assert_allclose(f(2., 3.), 2.7278922, **JAX_PRINTED)
    y, y_dot = jvp(f, (2., 3.), (1., 0.))
    np.testing.assert_allclose(y_dot, -1.2484405, **JAX_PRINTED)
    np.testing.assert_allclose(grad(f)(2., 3.), -1.2484405, **JAX_PRINTED)

    @custom_vjp
    def clip_gradient(lo, hi, x):
        return x  # identity function

    def clip_gradient_fwd(lo, hi, x):
        return x, (lo, hi)  # save bounds as residuals

    def clip_gradient_bwd(res, g):
        lo, hi = res
        return (None, None, jnp.clip(g, lo, hi))  # use None to indicate zero cotangents for lo and hi

    clip_gradient.defvjp(clip_gradient_fwd, clip_gradient_bwd)

    def clip_sin(x):
        x = clip_gradient(-0.75, 0.75, x)
        return jnp.sin(x)

    t = jnp.linspace(0, 10, 20)
    got = vmap(grad(clip_sin))(t)
    np.testing.assert_allclose(got, np.clip(np.cos(t), -0.75, 0.75))


def test_custom_vjp_nondiff_argnums_and_fixed_point():
    @partial(custom_vjp, nondiff_argnums=(0,))
    def app(f, x):
        return f(x)

    def app_fwd(f, x):
        return app(f, x), x

    def app_bwd(f, x, g):
        return (5 * g,)

    app.defvjp(app_fwd, app_bwd)
    assert grad(app, 1)(lambda x: x ** 3, 3.) == 5.0

    from fgrad.lax import while_loop

    @partial(custom_vjp, nondiff_argnums=(0,))
    def fixed_point(f, a, x_guess):
        def cond_fun(carry):
            x_prev, x = carry
            return jnp.abs(x_prev - x) > 1e-6

        def body_fun(carry):
            _, x = carry
            return x, f(a, x)

        _, x_star = while_loop(cond_fun, body_fun, (x_guess, f(a, x_guess)))
        return x_star

    def fixed_point_fwd(f, a, x_init):
        x_star = fixed_point(f, a, x_init)
        return x_star, (a, x_star)

    def fixed_point_rev(f, res, x_star_bar):
        a, x_star = res
        _, vjp_a = vjp(lambda a: f(a, x_star), a)
        a_bar, = vjp_a(fixed_point(partial(rev_iter, f), (a, x_star, x_star_bar), x_star_bar))
        return a_bar, jnp.zeros_like(x_star)

    def rev_iter(f, packed, u):
        a, x_star, x_star_bar = packed
        _, vjp_x = vjp(lambda x: f(a, x), x_star)
        return x_star_bar + vjp_x(u)[0]

    fixed_point.defvjp(fixed_point_fwd, fixed_point_rev)

    def newton_sqrt(a):
        update = lambda a, x: 0.5 * (x + a / x)   # noqa: E731
        return fixed_point(update, a, a)

    np.testing.assert_allclose(newton_sqrt(2.), 1.4142135, **JAX_PRINTED)
    np.testing.assert_allclose(grad(newton_sqrt)(2.), 0.35355338, **JAX_PRINTED)
    np.testing.assert_allclose(grad(grad(newton_sqrt))(2.), -0.088388346, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Automatic vectorization
# --------------------------------------------------------------------------------------------

def test_vmap_tutorial_convolve():
    x = jnp.arange(5)
    w = jnp.array([2., 3., 4.])

    def convolve(x, w):
        output = []
        for i in range(1, len(x)-1):
            output.append(jnp.dot(x[i-1:i+2], w))
        return jnp.array(output)

    np.testing.assert_allclose(convolve(x, w), [11., 20., 29.])
    xs = jnp.stack([x, x])
    ws = jnp.stack([w, w])
    auto_batch_convolve = jax.vmap(convolve)
    np.testing.assert_allclose(auto_batch_convolve(xs, ws), [[11., 20., 29.], [11., 20., 29.]])
    auto_batch_convolve_v2 = jax.vmap(convolve, in_axes=1, out_axes=1)
    xst = jnp.transpose(xs)
    wst = jnp.transpose(ws)
    np.testing.assert_allclose(auto_batch_convolve_v2(xst, wst), [[11., 11.], [20., 20.], [29., 29.]])
    batch_convolve_v3 = jax.vmap(convolve, in_axes=[0, None])
    np.testing.assert_allclose(batch_convolve_v3(xs, w), [[11., 20., 29.], [11., 20., 29.]])
    jitted_batch_convolve = jax.jit(auto_batch_convolve)
    np.testing.assert_allclose(jitted_batch_convolve(xs, ws), [[11., 20., 29.], [11., 20., 29.]])
    # and jnp.convolve itself ("Thinking in JAX": smoothing a noisy signal)
    key = jax.random.key(1701)
    t = jnp.linspace(0, 10, 500)
    y = jnp.sin(t) + 0.2 * jax.random.normal(key, shape=(500,))
    window = jnp.ones(10) / 10
    y_smooth = jnp.convolve(y, window, mode='same')
    np.testing.assert_allclose(y_smooth, np.convolve(y, window, mode='same'), rtol=1e-12)
    g = jax.grad(lambda w: jnp.sum(jnp.convolve(y, w, mode='same') ** 2))(window)
    ty, tw = torch.from_numpy(np.asarray(y)), torch.from_numpy(window).requires_grad_()
    full = torch.nn.functional.conv1d(ty[None, None], tw.flip(0)[None, None], padding=9)[0, 0]
    (full[4:504] ** 2).sum().backward()
    np.testing.assert_allclose(g, tw.grad.numpy(), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------

def test_pytree_page_leaves_map_and_custom_nodes():
    example_trees = [
        [1, 'a', object()],
        (1, (2, 3), ()),
        [1, {'k1': 2, 'k2': (3, 4)}, 5],
        {'a': 2, 'b': (2, 3)},
        jnp.array([1, 2, 3]),
    ]
    counts = [len(jax.tree_util.tree_leaves(pytree)) for pytree in example_trees]
    assert counts == [3, 3, 5, 3, 1]

    list_of_lists = [[1, 2, 3], [1, 2], [1, 2, 3, 4]]
    assert jax.tree.map(lambda x: x*2, list_of_lists) == [[2, 4, 6], [2, 4], [2, 4, 6, 8]]
    another_list_of_lists = list_of_lists
    assert jax.tree.map(lambda x, y: x+y, list_of_lists, another_list_of_lists) == \
        [[2, 4, 6], [2, 4], [2, 4, 6, 8]]
    assert jax.tree.leaves([None, None, None]) == []

    class MyContainer:
        """A named container."""
        def __init__(self, name: str, a: int, b: int, c: int):
            self.name = name
            self.a = a
            self.b = b
            self.c = c

    def flatten_MyContainer(container):
        flat_contents = [container.a, container.b, container.c]
        aux_data = container.name
        return flat_contents, aux_data

    def unflatten_MyContainer(aux_data, flat_contents):
        return MyContainer(aux_data, *flat_contents)

    jax.tree_util.register_pytree_node(MyContainer, flatten_MyContainer, unflatten_MyContainer)
    assert jax.tree_util.tree_leaves([MyContainer('Alice', 1, 2, 3), MyContainer('Bob', 4, 5, 6)]) \
        == [1, 2, 3, 4, 5, 6]
    out = jax.tree.map(lambda x: x + 1, [MyContainer('Alice', 1, 2, 3)])
    assert out[0].name == 'Alice' and (out[0].a, out[0].c) == (2, 4)

    @jax.tree_util.register_pytree_node_class
    class Special:
        def __init__(self, x, y):
            self.x = x
            self.y = y

        def tree_flatten(self):
            return ((self.x, self.y), None)

        @classmethod
        def tree_unflatten(cls, aux_data, children):
            return cls(*children)

    g = jax.grad(lambda s: s.x * s.y)(Special(2.0, 3.0))
    assert (g.x, g.y) == (3.0, 2.0)

    MyOtherContainer = collections.namedtuple('MyOtherContainer', ['name', 'a', 'b', 'c'])
    assert jax.tree.leaves([MyOtherContainer('Alice', 1, 2, 3)]) == ['Alice', 1, 2, 3]


def test_pytree_key_paths_and_transpose():
    ATuple = collections.namedtuple("ATuple", ('name'))
    tree = [1, {'k1': 2, 'k2': (3, 4)}, ATuple('foo')]
    flattened, _ = jax.tree_util.tree_flatten_with_path(tree)
    lines = [f'Value of tree{jax.tree_util.keystr(key_path)}: {value}'
             for key_path, value in flattened]
    assert lines == ["Value of tree[0]: 1", "Value of tree[1]['k1']: 2",
                     "Value of tree[1]['k2'][0]: 3", "Value of tree[1]['k2'][1]: 4",
                     "Value of tree[2].name: foo"]
    for key_path, _ in flattened:
        print(f'Key path of tree{jax.tree_util.keystr(key_path)}: {repr(key_path)}')
    assert isinstance(flattened[1][0][1], jax.tree_util.DictKey)

    episode_steps = [dict(t=1, obs=3), dict(t=2, obs=4)]
    out = jax.tree.transpose(jax.tree.structure([0 for e in episode_steps]),
                             jax.tree.structure(episode_steps[0]), episode_steps)
    assert out == {'obs': [3, 4], 't': [1, 2]}


def test_pytree_page_mlp_training():
    def init_mlp_params(layer_widths):
        params = []
        rng = np.random.default_rng(0)
        for n_in, n_out in zip(layer_widths[:-1], layer_widths[1:]):
            params.append(
                dict(weights=rng.normal(size=(n_in, n_out)) * np.sqrt(2/n_in),
                     biases=np.ones(shape=(n_out,)))
            )
        return params

    params = init_mlp_params([1, 32, 32, 1])
    assert jax.tree.map(lambda x: x.shape, params)[0] == {'biases': (32,), 'weights': (1, 32)}

    def forward(params, x):
        *hidden, last = params
        for layer in hidden:
            x = jax.nn.relu(x @ layer['weights'] + layer['biases'])
        return x @ last['weights'] + last['biases']

    def loss_fn(params, x, y):
        return jnp.mean((forward(params, x) - y) ** 2)

    LEARNING_RATE = 0.001

    @jax.jit
    def update(params, x, y):
        grads = jax.grad(loss_fn)(params, x, y)
        return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    xs = np.random.default_rng(1).normal(size=(128, 1))
    ys = xs ** 2
    before = loss_fn(params, xs, ys)
    for _ in range(100):
        params = update(params, xs, ys)
    assert loss_fn(params, xs, ys) < 0.5 * before


# --------------------------------------------------------------------------------------------
# Random numbers, jax.nn and functional updates
# --------------------------------------------------------------------------------------------

def test_random_page_keys_are_explicit():
    key = random.key(42)
    a, b = random.normal(key), random.normal(key)
    assert a == b                                   # same key, same number
    new_key, subkey = random.split(key)
    assert random.normal(subkey) != a
    key, *subkeys = random.split(key, num=4)
    assert len(subkeys) == 3
    # JAX's two kinds of key: typed (shape ()) and raw (uint32 of shape (2,)), same numbers
    assert random.key(0).shape == () and random.PRNGKey(0).shape == (2,)
    assert random.split(key, 8).shape == (8,) and random.split(random.PRNGKey(0), 8).shape == (8, 2)
    assert random.normal(random.key(0)) == random.normal(random.PRNGKey(0))


def test_functional_updates_inside_transforms():
    """``jnp.zeros(n).at[i].set(v)`` inside jit/grad/vmap (JAX's idiom for building arrays)."""
    @jax.jit
    def scatter(values):
        out = jnp.zeros(5)
        out = out.at[jnp.array([0, 2])].set(values)
        return out.at[4].add(1.0)

    np.testing.assert_allclose(scatter(jnp.array([7.0, 8.0])), [7, 0, 8, 0, 1])

    def f(x):
        y = jnp.zeros(3).at[1].set(x)
        return jnp.sum(y * jnp.arange(3.))
    assert jax.grad(f)(2.0) == 1.0
    np.testing.assert_allclose(jax.vmap(f)(jnp.arange(3.)), [0., 1., 2.])
    x = jnp.array([1, 2, 3])
    y = jnp.at(x)[0].set(10)                        # outside transforms: jnp.at(x)
    assert y.tolist() == [10, 2, 3] and x.tolist() == [1, 2, 3]
    assert type(jnp.zeros(3)) is np.ndarray         # plain NumPy outside transforms


def test_nn_and_scipy_special_names():
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(jax.nn.softmax(x).sum(), 1.0)
    np.testing.assert_allclose(jax.nn.gelu(x), torch.nn.functional.gelu(
        torch.from_numpy(x), approximate="tanh").numpy(), rtol=1e-12)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(x), np.log(np.exp(x).sum()))
    np.testing.assert_allclose(jax.nn.one_hot(jnp.array([0, 2, 3]), 3),
                               [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    init = jax.nn.initializers.glorot_normal()
    w = init(random.key(0), (64, 32))
    assert w.shape == (64, 32)
    assert abs(w.std() - np.sqrt(2 / 96)) < 0.01
    np.testing.assert_allclose(jax.grad(jax.scipy.special.gammaln)(5.0),
                               torch.digamma(torch.tensor(5.0, dtype=torch.float64)).item())
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(jax.grad(jnp.log)(0.0), np.inf)   # as NumPy: no ZeroDivisionError
    assert jax.grad(lambda x: x ** 0)(0.0) == 0.0
    with pytest.raises(TypeError):
        jax.tree.leaves({1: 1.0, "a": 2.0})         # mixed key types, as JAX


# --------------------------------------------------------------------------------------------
# NumPy-style autodiff code written for HIPS autograd (its README and tutorial), with
# ``import autograd.numpy as np; from autograd import grad`` changed to fgrad's
# --------------------------------------------------------------------------------------------

def test_hips_autograd_readme_programs():
    import numpy as onp          # (autograd's tests import numpy's testing separately too)
    import fgrad.numpy as np   # noqa: F811 - the point: NumPy's name for fgrad.numpy
    from fgrad import grad as agrad

    def tanh(x):                 # Define a function
        y = np.exp(-2.0 * x)
        return (1.0 - y) / (1.0 + y)

    grad_tanh = agrad(tanh)      # Obtain its gradient function
    onp.testing.assert_allclose(grad_tanh(1.0), 0.41997434161402603, rtol=1e-14)
    onp.testing.assert_allclose((tanh(1.0001) - tanh(0.9999)) / 0.0002, 0.41997434264973155,
                               rtol=1e-9)
    x = np.linspace(-7, 7, 200)
    # autograd's elementwise_grad(f) is vmap(grad(f)) here
    d2 = jax.vmap(agrad(agrad(tanh)))(x)
    onp.testing.assert_allclose(d2, -2 * np.tanh(x) * (1 - np.tanh(x) ** 2), atol=1e-12)

    def sigmoid(x):
        return 0.5 * (np.tanh(x / 2.) + 1)

    def logistic_predictions(weights, inputs):
        # Outputs probability of a label being true according to logistic model.
        return sigmoid(np.dot(inputs, weights))

    def training_loss(weights):
        # Training loss is the negative log-likelihood of the training labels.
        preds = logistic_predictions(weights, inputs)
        label_probabilities = preds * targets + (1 - preds) * (1 - targets)
        return -np.sum(np.log(label_probabilities))

    # Build a toy dataset.
    inputs = np.array([[0.52, 1.12, 0.77],
                       [0.88, -1.08, 0.15],
                       [0.52, 0.06, -1.30],
                       [0.74, -2.49, 1.39]])
    targets = np.array([True, True, False, True])

    # Define a function that returns gradients of training loss using Autograd.
    training_gradient_fun = agrad(training_loss)

    # Optimize weights using gradient descent.
    weights = np.array([0.0, 0.0, 0.0])
    onp.testing.assert_allclose(training_loss(weights), 2.772588722239781, rtol=1e-12)
    for i in range(100):
        weights -= training_gradient_fun(weights) * 0.01
    onp.testing.assert_allclose(training_loss(weights), 1.0672706757870163, rtol=1e-10)

    # autograd's test style: random inputs from np.random, checked by finite differences
    npr = np.random.RandomState(0)
    W, b = npr.randn(3), npr.randn()
    from fgrad.testing import check_grads
    check_grads(lambda W: np.sum(np.log1p(np.exp(np.dot(inputs, W) + b))), (W,), order=2)
