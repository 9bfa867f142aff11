"""JAX's namespaces on fgrad: ``fgrad.nn`` (and its initializers), ``fgrad.scipy.special``,
``fgrad.tree``'s ``jax.tree_util`` names, ``.at[]``'s modes and methods, JAX's keywords, and
the derivative rules at Python scalars. Values are checked against torch (``torch.nn.functional``,
``torch.special``) and NumPy; gradients against ``torch.func``.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fgrad
import fgrad.numpy as fnp
import fgrad.nn as nn
import fgrad.scipy.special as sp
from fgrad import tree

RTOL = dict(rtol=1e-10, atol=1e-12)


def _t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def _grad_vs_torch(f, tf, x):
    g = fgrad.grad(lambda x: fnp.sum(f(x)))(x)
    tg = torch.func.grad(lambda t: tf(t).sum())(_t(x)).numpy()
    # (torch's hardsigmoid backward uses a float32 1/6, hence 1e-7)
    np.testing.assert_allclose(g, tg, rtol=1e-7, atol=1e-12)


# --------------------------------------------------------------------------------------------
# fgrad.nn
# --------------------------------------------------------------------------------------------

X = np.array([-30.0, -3.5, -1.2, -0.25, 0.3, 1.3, 2.5, 5.9, 7.0, 40.0])   # no kinks hit

ACTIVATIONS = {
    "relu": (nn.relu, F.relu), "relu6": (nn.relu6, F.relu6), "sigmoid": (nn.sigmoid, torch.sigmoid),
    "softplus": (nn.softplus, F.softplus), "log_sigmoid": (nn.log_sigmoid, F.logsigmoid),
    "soft_sign": (nn.soft_sign, F.softsign), "silu": (nn.silu, F.silu), "swish": (nn.swish, F.silu),
    "elu": (nn.elu, F.elu), "celu": (lambda x: nn.celu(x, 0.5), lambda t: F.celu(t, 0.5)),
    "selu": (nn.selu, F.selu), "leaky_relu": (nn.leaky_relu, F.leaky_relu),
    "hard_tanh": (nn.hard_tanh, F.hardtanh), "hard_sigmoid": (nn.hard_sigmoid, F.hardsigmoid),
    "hard_silu": (nn.hard_silu, F.hardswish), "mish": (nn.mish, F.mish),
    "gelu_tanh": (nn.gelu, lambda t: F.gelu(t, approximate="tanh")),     # JAX's default
    "gelu_exact": (lambda x: nn.gelu(x, approximate=False), F.gelu),
    "tanh": (nn.tanh, torch.tanh),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_torch_values_and_gradients(name):
    f, tf = ACTIVATIONS[name]
    np.testing.assert_allclose(f(X), tf(_t(X)).numpy(), **RTOL)
    _grad_vs_torch(f, tf, X)
    assert np.all(np.isfinite(fgrad.grad(lambda x: fnp.sum(f(x)))(X)))
    np.testing.assert_allclose(fgrad.vmap(f)(X.reshape(5, 2)), f(X).reshape(5, 2), **RTOL)


def test_activation_kinks_follow_jax():
    zero = np.array([0.0, 6.0, 1.0, -1.0])
    np.testing.assert_array_equal(fgrad.vmap(fgrad.grad(nn.relu))(zero), [0, 1, 1, 0])
    np.testing.assert_array_equal(fgrad.vmap(fgrad.grad(nn.relu6))(zero), [0, 0, 1, 0])
    np.testing.assert_array_equal(fgrad.vmap(fgrad.grad(nn.leaky_relu))(zero), [1, 1, 1, 0.01])
    np.testing.assert_array_equal(fgrad.vmap(fgrad.grad(nn.hard_tanh))(zero), [1, 0, 1, 1])


def test_glu_squareplus_and_softmax_family():
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(nn.glu(x), F.glu(_t(x), dim=-1).numpy(), **RTOL)
    np.testing.assert_allclose(nn.glu(x, axis=0 if x.shape[0] % 2 == 0 else -1),
                               F.glu(_t(x), dim=-1).numpy(), **RTOL)
    np.testing.assert_allclose(nn.squareplus(x), (x + np.sqrt(x * x + 4)) / 2, **RTOL)
    for axis in (-1, 0, (0, 1)):
        t_axis = axis if isinstance(axis, int) else None
        if t_axis is not None:
            np.testing.assert_allclose(nn.softmax(x, axis), F.softmax(_t(x), t_axis).numpy(), **RTOL)
            np.testing.assert_allclose(nn.log_softmax(x, axis), F.log_softmax(_t(x), t_axis).numpy(),
                                       **RTOL)
    np.testing.assert_allclose(nn.softmax(x), F.softmax(_t(x), -1).numpy(), **RTOL)   # axis=-1
    np.testing.assert_allclose(nn.softmax(x, axis=(0, 1)).sum(), 1.0)
    big = np.array([1e4, -1e4, 0.0])
    assert np.all(np.isfinite(nn.log_softmax(big)))
    assert np.all(np.isfinite(fgrad.grad(lambda x: nn.log_softmax(x)[0])(big)))
    # where= leaves entries out of the normaliser (JAX: softmax 0 there, log_softmax -inf)
    mask = np.array([True, False, True])
    v = np.array([1.0, 5.0, 2.0])
    np.testing.assert_allclose(nn.softmax(v, where=mask), [1 / (1 + np.e), 0, np.e / (1 + np.e)])
    assert nn.log_softmax(v, where=mask)[1] == -np.inf
    _grad_vs_torch(lambda x: nn.log_softmax(x) * np.arange(4.0), lambda t: F.log_softmax(t, -1)
                   * torch.arange(4.0, dtype=torch.float64), x)


def test_logsumexp_b_and_return_sign():
    a = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    b = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(nn.logsumexp(a, axis=1), torch.logsumexp(_t(a), 1).numpy(), **RTOL)
    out, sign = sp.logsumexp(a, axis=1, b=b, return_sign=True)
    s = (b * np.exp(a)).sum(1)
    np.testing.assert_allclose(out, np.log(np.abs(s)), **RTOL)
    np.testing.assert_array_equal(sign, np.sign(s))
    out, sign = sp.logsumexp(a, b=b[None], return_sign=True, keepdims=True)
    assert out.shape == sign.shape == (1, 1)
    g = fgrad.grad(lambda a: sp.logsumexp(a, axis=1, b=np.abs(b)).sum())(a)
    tg = torch.func.grad(lambda t: torch.logsumexp(t + torch.log(_t(np.abs(b))), 1).sum())(_t(a))
    np.testing.assert_allclose(g, tg.numpy(), **RTOL)


def test_standardize_matches_layer_norm():
    x = np.random.default_rng(1).normal(size=(4, 5)) * 3 + 1
    np.testing.assert_allclose(nn.standardize(x), F.layer_norm(_t(x), (5,), eps=1e-5).numpy(), **RTOL)
    _grad_vs_torch(lambda x: nn.standardize(x) * np.arange(5.0),
                   lambda t: F.layer_norm(t, (5,), eps=1e-5) * torch.arange(5.0, dtype=torch.float64), x)
    np.testing.assert_allclose(nn.standardize(x, axis=0, mean=0.0, variance=1.0),
                               x / np.sqrt(1 + 1e-5), **RTOL)
    mask = np.ones((4, 5), bool)
    mask[:, -1] = False
    want = F.layer_norm(_t(x[:, :4]), (4,), eps=1e-5).numpy()
    np.testing.assert_allclose(nn.standardize(x, where=mask)[:, :4], want, **RTOL)


def test_one_hot_is_float_with_zero_rows_out_of_range():
    ids = np.array([[0, 3], [-1, 7]])
    out = nn.one_hot(ids, 4)
    assert out.dtype == np.float64 and out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0, 1])
    np.testing.assert_array_equal(out[1], np.zeros((2, 4)))          # -1 and 7: zero rows
    assert nn.one_hot(ids, 4, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(nn.one_hot(np.array([1, 0]), 3, axis=0), [[0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(fgrad.vmap(lambda i: nn.one_hot(i, 3))(np.array([2, 0])),
                                  F.one_hot(torch.tensor([2, 0]), 3).numpy())
    # inside jit too (the ids traced)
    np.testing.assert_array_equal(fgrad.jit(lambda i: nn.one_hot(i, 3))(np.array([2, 5])),
                                  [[0, 0, 1], [0, 0, 0]])


# --------------------------------------------------------------------------------------------
# fgrad.nn.initializers
# --------------------------------------------------------------------------------------------

INIT = nn.initializers


@pytest.mark.parametrize("name, factory, var", [
    ("glorot_uniform", INIT.glorot_uniform, lambda fi, fo: 2 / (fi + fo)),
    ("glorot_normal", INIT.glorot_normal, lambda fi, fo: 2 / (fi + fo)),
    ("xavier_uniform", INIT.xavier_uniform, lambda fi, fo: 2 / (fi + fo)),
    ("lecun_uniform", INIT.lecun_uniform, lambda fi, fo: 1 / fi),
    ("lecun_normal", INIT.lecun_normal, lambda fi, fo: 1 / fi),
    ("he_uniform", INIT.he_uniform, lambda fi, fo: 2 / fi),
    ("he_normal", INIT.he_normal, lambda fi, fo: 2 / fi),
    ("kaiming_normal", INIT.kaiming_normal, lambda fi, fo: 2 / fi),
])
def test_variance_scaling_family(name, factory, var):
    key = fgrad.random.key(0)
    shape = (3, 3, 40, 60)              # HWIO conv kernel: receptive field 9
    w = factory()(key, shape)
    fan_in, fan_out = 9 * 40, 9 * 60
    assert w.shape == shape and w.dtype == np.float64
    np.testing.assert_allclose(w.var(), var(fan_in, fan_out), rtol=0.05)
    np.testing.assert_array_equal(factory()(key, shape), w)            # same key, same weights
    assert factory(dtype=np.float32)(key, shape).dtype == np.float32
    assert factory()(key, shape, np.float32).dtype == np.float32
    bound = (np.sqrt(3 * var(fan_in, fan_out)) if "uniform" in name
             else 2 * np.sqrt(var(fan_in, fan_out)) / 0.87962566103423978)
    assert np.abs(w).max() <= bound + 1e-12


def test_simple_initializers_and_orthogonal():
    key = fgrad.random.key(3)
    assert INIT.zeros(key, (2, 3)).sum() == 0 and INIT.ones(key, (2,)).sum() == 2
    np.testing.assert_array_equal(INIT.constant(-0.5)(key, (2, 2)), np.full((2, 2), -0.5))
    w = INIT.normal(stddev=0.5)(key, (200, 100))
    np.testing.assert_allclose(w.std(), 0.5, rtol=0.03)
    u = INIT.uniform(scale=2.0)(key, (200, 100))
    assert u.min() >= 0 and u.max() < 2.0
    t = INIT.truncated_normal(stddev=1.0)(key, (200, 100))
    assert np.abs(t).max() <= 2.0
    for shape in [(6, 4), (4, 6), (3, 2, 5)]:
        q = INIT.orthogonal(scale=2.0)(key, shape)
        assert q.shape == shape
        m = q.reshape(-1, shape[-1])
        small = min(m.shape)
        gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2-D"):
        INIT.glorot_uniform()(key, (5,))
    with pytest.raises(ValueError, match="mode"):
        INIT.variance_scaling(1.0, "fan_sum", "normal")


# --------------------------------------------------------------------------------------------
# fgrad.scipy.special
# --------------------------------------------------------------------------------------------

SPECIAL = {   # name: (fgrad, torch, sample points)
    "erf": (sp.erf, torch.special.erf, np.linspace(-3, 3, 13)),
    "erfc": (sp.erfc, torch.special.erfc, np.array([-3.0, -0.5, 0.0, 0.7, 3.0, 8.0, 20.0])),
    "erfinv": (sp.erfinv, torch.special.erfinv, np.array([-0.999, -0.7, -0.1, 0.0, 0.3, 0.95, 0.999999])),
    "expit": (sp.expit, torch.special.expit, np.array([-50.0, -2.0, 0.0, 1.5, 50.0])),
    "logit": (sp.logit, torch.special.logit, np.array([1e-6, 0.2, 0.5, 0.9, 1 - 1e-6])),
    "gammaln": (sp.gammaln, torch.special.gammaln, np.array([1e-3, 0.5, 1.0, 2.0, 3.7, 12.0, 150.0,
                                                             -0.5, -2.3])),
    "digamma": (sp.digamma, torch.special.digamma, np.array([1e-3, 0.5, 1.0, 2.0, 3.7, 12.0, 150.0,
                                                             -0.5, -2.3])),
    "entr": (sp.entr, torch.special.entr, np.array([1e-8, 0.3, 1.0, 2.5])),
    "ndtr": (sp.ndtr, torch.special.ndtr, np.array([-8.0, -1.0, 0.0, 2.0])),
    "ndtri": (sp.ndtri, torch.special.ndtri, np.array([1e-6, 0.1, 0.5, 0.975])),
    "log_ndtr": (sp.log_ndtr, torch.special.log_ndtr, np.array([-5.0, -1.0, 0.0, 2.0])),
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_functions_match_torch(name):
    f, tf, x = SPECIAL[name]
    np.testing.assert_allclose(f(x), tf(_t(x)).numpy(), rtol=1e-9, atol=1e-12)
    g = fgrad.vmap(fgrad.grad(f))(x)
    tg = torch.func.vmap(torch.func.grad(tf))(_t(x)).numpy()
    np.testing.assert_allclose(g, tg, rtol=1e-7, atol=1e-12)


def test_special_functions_edges():
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(sp.erfinv(np.array([-1.0, 1.0, 0.0])), [-np.inf, np.inf, 0])
        assert np.isnan(sp.erfinv(1.5))
        assert sp.gammaln(0.0) == np.inf and sp.gammaln(-2.0) == np.inf
        assert sp.entr(0.0) == 0.0 and sp.entr(-1.0) == -np.inf
    np.testing.assert_allclose(sp.erfinv(sp.erf(np.linspace(-4, 4, 17))), np.linspace(-4, 4, 17),
                               rtol=1e-9)
    np.testing.assert_allclose(sp.polygamma(1, np.array([1.0, 0.5])), [np.pi ** 2 / 6, np.pi ** 2 / 2],
                               rtol=1e-13)
    np.testing.assert_allclose(sp.gamma(np.array([5.0, 0.5, -1.5])), [24, np.sqrt(np.pi),
                                                                      4 * np.sqrt(np.pi) / 3])
    np.testing.assert_allclose(sp.betaln(2.0, 3.0), np.log(1 / 12))
    # second derivatives through the chain lgamma -> digamma -> polygamma(1) -> polygamma(2)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(sp.gammaln))(2.5),
                               torch.polygamma(1, torch.tensor(2.5, dtype=torch.float64)).item(), rtol=1e-9)
    np.testing.assert_allclose(fgrad.grad(fgrad.grad(sp.digamma))(2.5),
                               torch.polygamma(2, torch.tensor(2.5, dtype=torch.float64)).item(), rtol=1e-9)
    with pytest.raises(ValueError, match="static integer"):
        sp.polygamma(1.5, 2.0)


def test_xlogy_xlog1py_are_zero_at_zero():
    x, y = np.array([0.0, 0.0, 2.0, 0.5]), np.array([0.0, 3.0, 3.0, 0.2])
    np.testing.assert_allclose(sp.xlogy(x, y), torch.special.xlogy(_t(x), _t(y)).numpy(), **RTOL)
    np.testing.assert_allclose(sp.xlog1py(x, y), torch.special.xlog1py(_t(x), _t(y)).numpy(), **RTOL)
    gy = fgrad.grad(lambda y: fnp.sum(sp.xlogy(x, y)))(y)
    assert np.all(np.isfinite(gy))
    np.testing.assert_allclose(gy[2:], x[2:] / y[2:])
    gx = fgrad.grad(lambda x: fnp.sum(sp.xlogy(x, y)))(x)
    np.testing.assert_allclose(gx[2:], np.log(y[2:]))


# --------------------------------------------------------------------------------------------
# fgrad.tree: jax.tree_util's names
# --------------------------------------------------------------------------------------------

def test_tree_util_names_and_dict_order():
    t = {"b": 1.0, "a": [2.0, {"z": 3.0, "y": 4.0}]}
    out = fgrad.tree_util.tree_map(lambda x: x, t)
    assert list(out) == ["a", "b"] and list(out["a"][1]) == ["y", "z"]       # sorted, as JAX
    leaves, treedef = fgrad.tree_util.tree_flatten(t)
    assert leaves == [2.0, 4.0, 3.0, 1.0]
    assert list(fgrad.tree_util.tree_unflatten(treedef, leaves)) == ["a", "b"]
    assert list(fgrad.grad(lambda p: p["b"] * p["a"])({"b": 1.0, "a": 2.0})) == ["a", "b"]
    with pytest.raises(TypeError, match="sortable"):
        tree.flatten({1: 1.0, "a": 2.0})
    with pytest.raises(TypeError, match="sortable"):
        fgrad.grad(lambda p: p[1])({1: 1.0, "a": 2.0})
    od = collections.OrderedDict([("b", 1), ("a", 2)])
    assert list(tree.map(lambda x: x, od)) == ["b", "a"]                     # OrderedDict keeps order
    # fgrad's own callers use the raw-key triple; flatten_with_path is JAX's pair
    paths, leaves, _ = tree.flatten_split_paths(t)
    assert paths[0] == ("a", 0)
    assert [p for p, _ in tree.flatten_with_path(t)[0]][0] == (tree.DictKey("a"), tree.SequenceKey(0))


def test_key_paths_keystr_and_register_dataclass():
    @tree.register_dataclass
    @dataclasses.dataclass
    class Params:
        w: np.ndarray
        b: float
        name: str = dataclasses.field(default="layer", metadata=dict(static=True))

    p = Params(np.ones(2), 0.5, "dense")
    pairs, _ = tree.tree_flatten_with_path({"layer": p, "xs": (1.0,)})
    assert [tree.keystr(k) for k, _ in pairs] == ["['layer'].w", "['layer'].b", "['xs'][0]"]
    assert tree.keystr(pairs[0][0], simple=True, separator="/") == "layer/w"
    assert [k for k, _ in tree.leaves_with_path([3.0])] == [(tree.SequenceKey(0),)]
    g = fgrad.grad(lambda p: fnp.sum(p.w) * p.b)(p)
    assert isinstance(g, Params) and g.name == "dense"
    np.testing.assert_allclose(g.w, [0.5, 0.5])
    assert g.b == 2.0

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    fgrad.tree_util.register_dataclass(Pair, data_fields=["a"], meta_fields=["b"])
    out = tree.map(lambda x: x * 10, Pair(1.0, "static"))
    assert out.a == 10.0 and out.b == "static"
    labels = tree.map_with_path(lambda k, x: tree.keystr(k), {"w": [0.0, 0.0]})
    assert labels == {"w": ["['w'][0]", "['w'][1]"]}

    class Node:
        def __init__(self, kids):
            self.kids = kids
    fgrad.tree_util.register_pytree_node(Node, lambda n: (n.kids, None), lambda aux, kids: Node(kids))
    assert [tree.keystr(k) for k, _ in tree.leaves_with_path(Node([1.0, 2.0]))] == \
        ["[<flat index 0>]", "[<flat index 1>]"]


# --------------------------------------------------------------------------------------------
# .at[]: modes and the extra methods; creation functions inside transforms
# --------------------------------------------------------------------------------------------

def test_at_modes():
    x = np.arange(10.0).reshape(5, 2)
    idx = np.array([0, 6, -1, -7])
    np.testing.assert_array_equal(fnp.at(x)[idx].get(mode="clip"), x[[0, 4, 4, 0]])
    got = fnp.at(x)[idx].get(mode="fill", fill_value=-1.0)
    np.testing.assert_array_equal(got, [[0, 1], [-1, -1], [8, 9], [-1, -1]])
    assert np.isnan(fnp.at(x)[7].get(mode="fill")).all()                  # NaN by default
    assert fnp.at(np.arange(3))[5].get(mode="fill") == np.iinfo(np.int64).min
    with pytest.raises(IndexError):
        fnp.at(x)[idx].get()                                             # NumPy's rule by default
    np.testing.assert_array_equal(fnp.at(x)[idx].set(100.0, mode="drop"),
                                  np.where(np.isin(np.arange(5), [0, 4])[:, None], 100.0, x))
    np.testing.assert_array_equal(fnp.at(x)[idx].add(1.0, mode="clip"),
                                  x + np.array([[2], [0], [0], [0], [2]]))
    np.testing.assert_array_equal(fnp.at(x)[:, 3].get(mode="fill", fill_value=0.0), np.zeros(5))
    # gradients through a dropping update and a filling read
    g = fgrad.grad(lambda x: fnp.sum(fnp.at(x)[idx].get(mode="fill", fill_value=0.0) ** 2))(x)
    np.testing.assert_array_equal(g, 2 * x * np.array([[1], [0], [0], [0], [1]]))
    g = fgrad.grad(lambda v: fnp.sum(fnp.at(x)[idx].add(v, mode="drop")))(np.ones((4, 2)))
    np.testing.assert_array_equal(g, [[1, 1], [0, 0], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match="mode"):
        fnp.at(x)[0].get(mode="wrap")


def test_at_min_max_power_apply():
    x = np.array([1.0, 5.0, 3.0, -2.0])
    np.testing.assert_array_equal(fnp.at(x)[np.array([1, 1, 3])].min(np.array([4.0, 2.0, 0.0])),
                                  [1, 2, 3, -2])
    np.testing.assert_array_equal(fnp.at(x)[:2].max(3.0), [3, 5, 3, -2])
    np.testing.assert_array_equal(fnp.at(x)[2].power(2), [1, 5, 9, -2])
    np.testing.assert_allclose(fnp.at(x)[1:3].apply(fnp.sqrt), [1, np.sqrt(5), np.sqrt(3), -2])
    g = fgrad.grad(lambda x: fnp.sum(fnp.at(x)[2].power(3.0)))(x)
    np.testing.assert_array_equal(g, [1, 1, 27, 1])
    t = _t(x).requires_grad_()
    y = torch.tensor([4.0, 2.0, 0.0], dtype=torch.float64, requires_grad=True)
    out = t.scatter_reduce(0, torch.tensor([1, 1, 3]), y, reduce="amin", include_self=True)
    (out * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    gx, gy = fgrad.grad(lambda x, y: fnp.sum(fnp.at(x)[np.array([1, 1, 3])].min(y) * np.arange(4.0)),
                        argnums=(0, 1))(x, y.detach().numpy())
    np.testing.assert_allclose(gx, t.grad.numpy())
    np.testing.assert_allclose(gy, y.grad.numpy())


def test_creation_functions_have_at_inside_transforms_only():
    def build(v):
        out = fnp.zeros((2, 3))
        out = out.at[0, 1].set(v)
        out = out.at[1].add(fnp.ones(3).at[2].multiply(v))
        eye = fnp.eye(3).at[0, 0].set(v)
        return fnp.sum(out) + fnp.sum(fnp.arange(3.0).at[1].max(v)) + fnp.trace(eye) \
            + fnp.sum(fnp.full((2,), 1.0).at[0].min(v)) + fnp.sum(fnp.array([1.0, 2.0]).at[1].set(v))
    assert fgrad.grad(build)(5.0) == pytest.approx(1 + 1 + 1 + 1 + 0 + 1)
    np.testing.assert_allclose(fgrad.jit(build)(5.0), build_plain(5.0))
    np.testing.assert_allclose(fgrad.vmap(build)(np.array([5.0, -1.0])), [build_plain(5.0), build_plain(-1.0)])
    for make in (lambda: fnp.zeros(3), lambda: fnp.ones(3), lambda: fnp.arange(3),
                 lambda: fnp.asarray([1.0]), lambda: fnp.eye(2), lambda: fnp.zeros_like(np.ones(2))):
        assert type(make()) is np.ndarray                                # plain NumPy outside
    # inside, NumPy arithmetic on such an array gives plain ndarrays (the subclass does not spread)
    seen = []
    fgrad.grad(lambda x: (seen.append(type(fnp.zeros(2) + 1.0)), fnp.sum(x * x))[1])(np.ones(2))
    assert seen == [np.ndarray]
    out = fgrad.vmap(lambda x: fnp.zeros(2))(np.ones(3))
    assert type(out) is np.ndarray


def build_plain(v):
    out = np.zeros((2, 3))
    out[0, 1] = v
    ones = np.ones(3)
    ones[2] *= v
    out[1] += ones
    eye = np.eye(3)
    eye[0, 0] = v
    a = np.arange(3.0)
    a[1] = max(a[1], v)
    f = np.full((2,), 1.0)
    f[0] = min(f[0], v)
    return out.sum() + a.sum() + np.trace(eye) + f.sum() + 1.0 + v


# --------------------------------------------------------------------------------------------
# JAX's keywords and Python scalars
# --------------------------------------------------------------------------------------------

def test_clip_keywords():
    x = np.arange(5.0)
    np.testing.assert_array_equal(fnp.clip(x, min=1, max=3), np.clip(x, 1, 3))
    np.testing.assert_array_equal(fnp.clip(x, a_min=1, a_max=3), np.clip(x, 1, 3))
    np.testing.assert_array_equal(fnp.clip(x, max=2), np.minimum(x, 2))
    np.testing.assert_array_equal(fgrad.grad(lambda x: fnp.sum(fnp.clip(x, min=1.5)))(x), [0, 0, 1, 1, 1])
    with pytest.raises(TypeError, match="once"):
        fnp.clip(x, 1, min=2)
    assert fgrad.jacobian is fgrad.jacrev


def test_python_scalar_derivatives_follow_numpy():
    with np.errstate(divide="ignore", invalid="ignore"):
        assert fgrad.grad(fnp.log)(0.0) == np.inf                        # no ZeroDivisionError
        assert fgrad.grad(fnp.sqrt)(0.0) == np.inf
        assert fgrad.grad(lambda x: 1.0 / x)(0.0) == -np.inf
        assert fgrad.grad(fnp.arctanh)(1.0) == np.inf
        assert fgrad.jvp(fnp.log, (0.0,), (1.0,))[1] == np.inf
    assert fgrad.grad(lambda x: x ** 0)(0.0) == 0.0                      # x^0 = 1 is constant
    assert fgrad.grad(lambda x: x ** 0.0)(0.0) == 0.0
    np.testing.assert_array_equal(fgrad.grad(lambda x: fnp.sum(x ** np.array([0.0, 2.0])))(np.zeros(2)),
                                  [0.0, 0.0])
    assert fgrad.grad(lambda y: 0.0 ** y)(0.0) == 0.0
    assert fgrad.grad(fgrad.grad(lambda x: x ** 0))(0.0) == 0.0
