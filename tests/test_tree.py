"""``fgrad.tree``: flatten / unflatten / map over nested containers, registered user classes, and
the transforms (grad, vmap, jacobians) over all of them.

Containers: dicts (leaves in sorted-key order, as JAX), lists, tuples, namedtuples, ``None``
(an empty subtree, never a leaf) and classes registered with ``register_node`` or
``register_node_class``. Hypothesis draws random nested trees for the round-trip properties.
"""
from __future__ import annotations

import collections

import numpy as np
import optree
import pytest
import torch
import torch.func as tf
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import tree
from fn_table import assert_tree_close, to_torch

HYPOTHESIS = settings(deadline=None, max_examples=3 * settings.default.max_examples, derandomize=True)

Point = collections.namedtuple("Point", ["x", "y"])


class Linear:
    """A user class registered with ``register_node``: two array children, a static name."""

    def __init__(self, weight, bias, name):
        self.weight, self.bias, self.name = weight, bias, name

    def __repr__(self):
        return f"Linear({self.name!r})"


tree.register_node(Linear, lambda m: ((m.weight, m.bias), m.name),
                   lambda name, children: Linear(*children, name))


@tree.register_node_class
class Scaled:
    """A user class registered with the ``register_node_class`` decorator."""

    def __init__(self, value, scale):
        self.value, self.scale = value, scale

    def tree_flatten(self):
        return (self.value,), self.scale

    @classmethod
    def tree_unflatten(cls, scale, children):
        return cls(children[0], scale)


def nested():
    return {"b": [1.0, (np.arange(2.0), None)], "a": Point(3.0, np.ones((2, 2))), "c": None}


# --------------------------------------------------------------------------------------------
# Flatten, unflatten, map
# --------------------------------------------------------------------------------------------

def test_flatten_order_and_round_trip():
    t = nested()
    leaves, treedef = tree.flatten(t)
    # dict keys sorted; namedtuple fields in order; None contributes no leaf
    assert [np.shape(x) for x in leaves] == [(), (2, 2), (), (2,)]
    assert leaves[0] == 3.0 and leaves[2] == 1.0
    assert tree.num_leaves(t) == 4 == treedef.num_leaves
    back = tree.unflatten(treedef, leaves)
    assert back["c"] is None and back["b"][1][1] is None
    assert isinstance(back["a"], Point) and isinstance(back["b"], list) and isinstance(back["b"][1], tuple)
    assert_tree_close(back, t)
    assert tree.structure(t) == treedef
    assert tree.leaves(t) == leaves


def test_none_is_an_empty_subtree():
    assert tree.leaves(None) == []
    assert tree.leaves([None, 1.0, {"k": None}]) == [1.0]
    assert tree.structure([None, 1.0]) != tree.structure([2.0, 1.0])
    assert tree.map(lambda x: x + 1, [None, 1.0]) == [None, 2.0]


def test_map_over_several_trees_and_with_paths():
    a = {"x": [1.0, 2.0], "y": Point(3.0, 4.0)}
    b = {"x": [10.0, 20.0], "y": Point(30.0, 40.0)}
    assert tree.map(lambda u, v: u + v, a, b) == {"x": [11.0, 22.0], "y": Point(33.0, 44.0)}
    with pytest.raises(ValueError):
        tree.map(lambda u, v: u + v, a, {"x": [1.0], "y": Point(1.0, 2.0)})
    paths = tree.map_with_path(lambda path, leaf: tree.keystr(path), a)   # JAX's key paths
    assert paths == {"x": ["['x'][0]", "['x'][1]"], "y": Point("['y'].x", "['y'].y")}
    p, leaves, _ = tree.flatten_split_paths(a)      # the engine's raw-key triple
    assert p == [("x", 0), ("x", 1), ("y", 0), ("y", 1)] and leaves == [1.0, 2.0, 3.0, 4.0]


# --------------------------------------------------------------------------------------------
# Key paths in jax.tree_util's form. The expected reprs and strings are pinned by hand from
# JAX's documentation (the pytrees page, "Explicit key paths", and the jax.tree_util reference
# for DictKey / SequenceKey / GetAttrKey / FlattenedIndexKey and keystr); jax is not imported.
# --------------------------------------------------------------------------------------------

ATuple = collections.namedtuple("ATuple", ("name",))


def test_flatten_with_path_is_jaxs_pair():
    # JAX's pytrees page: tree = [1, {'k1': 2, 'k2': (3, 4)}, ATuple('foo')]
    t = [1, {"k1": 2, "k2": (3, 4)}, ATuple("foo")]
    pairs, treedef = tree.flatten_with_path(t)
    assert isinstance(pairs, list) and all(isinstance(kp, tuple) for kp, _ in pairs)
    assert [repr(kp) for kp, _ in pairs] == [
        "(SequenceKey(idx=0),)",
        "(SequenceKey(idx=1), DictKey(key='k1'))",
        "(SequenceKey(idx=1), DictKey(key='k2'), SequenceKey(idx=0))",
        "(SequenceKey(idx=1), DictKey(key='k2'), SequenceKey(idx=1))",
        "(SequenceKey(idx=2), GetAttrKey(name='name'))",
    ]
    assert [f"tree{tree.keystr(kp)}: {v}" for kp, v in pairs] == [
        "tree[0]: 1", "tree[1]['k1']: 2", "tree[1]['k2'][0]: 3", "tree[1]['k2'][1]: 4",
        "tree[2].name: foo"]
    assert tree.unflatten(treedef, [v for _, v in pairs]) == t
    assert treedef == tree.structure(t)
    # the same function under JAX's other names
    assert fgrad.tree_util.tree_flatten_with_path(t) == (pairs, treedef)
    assert tree.leaves_with_path(t) == pairs == fgrad.tree_util.tree_leaves_with_path(t)


def test_key_entries_are_jaxs_classes():
    DictKey, SequenceKey = fgrad.tree_util.DictKey, fgrad.tree_util.SequenceKey
    GetAttrKey, FlattenedIndexKey = fgrad.tree_util.GetAttrKey, fgrad.tree_util.FlattenedIndexKey
    assert (DictKey("a").key, SequenceKey(2).idx, GetAttrKey("w").name, FlattenedIndexKey(3).key) \
        == ("a", 2, "w", 3)
    assert DictKey(key="a") == DictKey("a") != DictKey("b") and DictKey(0) != SequenceKey(0)
    assert len({DictKey("a"), DictKey("a"), SequenceKey(0)}) == 2          # hashable, as JAX's
    assert [str(k) for k in (DictKey("a"), DictKey(1), SequenceKey(0), GetAttrKey("w"),
                             FlattenedIndexKey(2))] == \
        ["['a']", "[1]", "[0]", ".w", "[<flat index 2>]"]
    path = (DictKey("params"), SequenceKey(0), GetAttrKey("w"))
    assert tree.keystr(path) == "['params'][0].w"
    assert tree.keystr(path, simple=True, separator="/") == "params/0/w"
    assert tree.keystr(()) == ""
    # a node registered without keys gives its children flat indices
    pairs, _ = tree.flatten_with_path(Linear(np.ones(2), np.zeros(1), "fc"))
    assert [kp for kp, _ in pairs] == [(FlattenedIndexKey(0),), (FlattenedIndexKey(1),)]


def test_flatten_with_path_dicts_none_and_is_leaf():
    t = {"b": None, "a": [2.0, {"z": 3.0, "y": 4.0}], "c": collections.OrderedDict(q=5.0, p=6.0)}
    pairs, _ = tree.flatten_with_path(t)
    assert [tree.keystr(kp) for kp, _ in pairs] == \
        ["['a'][0]", "['a'][1]['y']", "['a'][1]['z']", "['c']['q']", "['c']['p']"]
    assert [v for _, v in pairs] == tree.leaves(t) == [2.0, 4.0, 3.0, 5.0, 6.0]
    stop = lambda x: isinstance(x, Point)     # noqa: E731
    pairs, _ = tree.flatten_with_path({"p": Point(1.0, 2.0), "q": [Point(3.0, 4.0)]}, is_leaf=stop)
    assert [(tree.keystr(kp), v) for kp, v in pairs] == \
        [("['p']", Point(1.0, 2.0)), ("['q'][0]", Point(3.0, 4.0))]
    assert tree.flatten_with_path(1.0) == ([((), 1.0)], tree.structure(1.0))
    assert tree.flatten_with_path(None)[0] == []


def test_map_with_path_passes_jax_key_paths():
    t = {"w": [1.0, 2.0], "p": Point(3.0, 4.0)}
    seen = []

    def f(path, x, y):
        seen.append(path)
        return x + y if isinstance(path[-1], tree.SequenceKey) else x * y
    out = tree.map_with_path(f, t, {"w": [10.0, 20.0], "p": Point(2.0, 3.0)})
    assert out == {"w": [11.0, 22.0], "p": Point(6.0, 12.0)}
    assert seen == [(tree.DictKey("p"), tree.GetAttrKey("x")), (tree.DictKey("p"), tree.GetAttrKey("y")),
                    (tree.DictKey("w"), tree.SequenceKey(0)), (tree.DictKey("w"), tree.SequenceKey(1))]
    assert fgrad.tree_util.tree_map_with_path is tree.map_with_path
    # the path picks per-leaf behaviour, the common use (weight decay on "w" only)
    decayed = tree.map_with_path(lambda kp, x: 0.5 * x if kp[0].key == "w" else x, t)
    assert decayed == {"w": [0.5, 1.0], "p": Point(3.0, 4.0)}


@HYPOTHESIS
@given(st.recursive(st.floats(-1e3, 1e3, allow_nan=False),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text("abc", min_size=1, max_size=2), kids, max_size=3)
                    | st.tuples(kids, kids), max_leaves=8))
def test_key_paths_index_the_tree(t):
    """Following each key path from the root reaches its leaf (the defining property)."""
    pairs, treedef = tree.flatten_with_path(t)
    for kp, leaf in pairs:
        node = t
        for k in kp:
            node = node[k.key] if isinstance(k, tree.DictKey) else node[k.idx]
        assert node == leaf
    assert [p for p, _ in pairs] == [tuple(tree.DictKey(k) if isinstance(k, str) else
                                           tree.SequenceKey(k) for k in raw)
                                     for raw in tree.flatten_split_paths(t)[0]]
    assert tree.unflatten(treedef, [x for _, x in pairs]) == t


def test_reduce_all_and_transpose():
    assert tree.reduce(lambda acc, x: acc + x, {"a": 1.0, "b": [2.0, 3.0]}, 0.0) == 6.0
    assert tree.all({"a": True, "b": [1, 2]}) and not tree.all([True, 0])
    outer, inner = tree.structure([0, 0, 0]), tree.structure({"w": 0, "b": 0})
    rows = [{"w": i, "b": 10 * i} for i in range(3)]
    assert tree.transpose(outer, inner, rows) == {"w": [0, 1, 2], "b": [0, 10, 20]}


def test_is_leaf_stops_the_descent():
    t = {"a": Point(1.0, 2.0), "b": Point(3.0, 4.0)}
    leaves = tree.leaves(t, is_leaf=lambda x: isinstance(x, Point))
    assert leaves == [Point(1.0, 2.0), Point(3.0, 4.0)]


def test_registered_classes_flatten_with_their_static_data():
    m = Linear(np.ones((3, 2)), np.zeros(2), "fc1")
    leaves, treedef = tree.flatten(m)
    assert [x.shape for x in leaves] == [(3, 2), (2,)]
    back = tree.unflatten(treedef, [2 * x for x in leaves])
    assert isinstance(back, Linear) and back.name == "fc1"
    np.testing.assert_allclose(back.weight, 2 * np.ones((3, 2)))
    # static data is part of the structure: a different name is a different tree
    assert tree.structure(Linear(1.0, 2.0, "fc1")) != tree.structure(Linear(1.0, 2.0, "fc2"))
    s = tree.map(lambda x: x * 3, Scaled(np.arange(3.0), scale=0.5))
    assert isinstance(s, Scaled) and s.scale == 0.5
    np.testing.assert_allclose(s.value, [0.0, 3.0, 6.0])
    # nested inside ordinary containers
    assert tree.num_leaves({"layers": [m, Linear(1.0, None, "fc2")], "s": Scaled(1.0, 2.0)}) == 4


def test_registration_lives_in_fgrad_namespace():
    """fgrad registers its nodes in its own optree namespace: other libraries see a leaf."""
    m = Linear(np.ones(2), np.ones(2), "fc")
    assert optree.tree_leaves(m) == [m]
    assert len(tree.leaves(m)) == 2


# --------------------------------------------------------------------------------------------
# Transforms over trees
# --------------------------------------------------------------------------------------------

def _mixed_params(rng):
    return {
        "layers": [Linear(rng.standard_normal((3, 4)), rng.standard_normal(4), "fc1"),
                   Linear(rng.standard_normal((4, 2)), None, "fc2")],
        "point": Point(rng.standard_normal(2), np.float64(0.5)),
        "scaled": Scaled(rng.standard_normal(2), scale=3.0),
        "unused": None,
    }


def _mixed_loss(params, x):
    h = x
    for layer in params["layers"]:
        h = h @ layer.weight
        if layer.bias is not None:
            h = fnp.tanh(h + layer.bias)
    p, s = params["point"], params["scaled"]
    return fnp.sum(h * p.x) * p.y + fnp.sum((s.value * s.scale - h) ** 2)


def test_grad_returns_the_same_tree():
    rng = np.random.default_rng(0)
    params, x = _mixed_params(rng), rng.standard_normal((5, 3))
    g = fgrad.grad(_mixed_loss)(params, x)
    assert tree.structure(g) == tree.structure(params)
    assert g["unused"] is None and g["layers"][1].bias is None and g["layers"][0].name == "fc1"
    assert g["scaled"].scale == 3.0
    for leaf, p_leaf in zip(tree.leaves(g), tree.leaves(params)):
        assert np.shape(leaf) == np.shape(p_leaf)

    # the same loss in torch on the flattened leaves
    leaves, treedef = tree.flatten(params)

    def torch_loss(flat, x):
        (w1, b1, w2, px, py, sv) = flat
        h = torch.tanh(x @ w1 + b1) @ w2
        return torch.sum(h * px) * py + torch.sum((sv * 3.0 - h) ** 2)

    want = tf.grad(torch_loss)(to_torch(tuple(leaves)), torch.from_numpy(x))
    assert_tree_close(tuple(tree.leaves(g)), want)
    # value_and_grad and jacobians keep the tree too
    value, g2 = fgrad.value_and_grad(_mixed_loss)(params, x)
    assert_tree_close(tree.leaves(g2), tree.leaves(g))
    jac = fgrad.jacrev(_mixed_loss)(params, x)
    assert tree.structure(jac) == tree.structure(params)
    assert_tree_close(tree.leaves(fgrad.jacfwd(_mixed_loss)(params, x)), tree.leaves(g), rtol=1e-9)


def test_grad_with_respect_to_a_namedtuple_and_nested_lists():
    def f(p, extra):
        return fnp.sum(p.x ** 2 * p.y) + fnp.sum(extra[0][1] * 3.0)
    p = Point(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    extra = [(np.ones(2), np.ones(3)), []]
    gp, ge = fgrad.grad(f, argnums=(0, 1))(p, extra)
    assert isinstance(gp, Point)
    np.testing.assert_allclose(gp.x, 2 * p.x * p.y)
    np.testing.assert_allclose(gp.y, p.x ** 2)
    assert ge[1] == [] and isinstance(ge[0], tuple)
    np.testing.assert_allclose(ge[0][0], np.zeros(2))
    np.testing.assert_allclose(ge[0][1], np.full(3, 3.0))


def test_vmap_over_trees_with_prefix_in_axes():
    rng = np.random.default_rng(1)
    model = Linear(rng.standard_normal((3, 2)), rng.standard_normal((6, 2)), "fc")   # bias per example
    xs = rng.standard_normal((6, 3))

    def apply(m, x):
        return {"y": x @ m.weight + m.bias, "p": Point(fnp.sum(x), m.name)}

    out = fgrad.vmap(apply, in_axes=(Linear(None, 0, "fc"), 0), out_axes={"y": 0, "p": Point(0, None)})(model, xs)
    assert isinstance(out["p"], Point) and out["p"].y == "fc"
    np.testing.assert_allclose(out["y"], xs @ model.weight + model.bias, rtol=1e-12)
    np.testing.assert_allclose(out["p"].x, xs.sum(axis=1), rtol=1e-12)
    # a namedtuple prefix, and a whole subtree covered by one int
    pts = Point(np.ones((4, 2)), np.arange(8.0).reshape(2, 4))
    got = fgrad.vmap(lambda p: p.x * p.y, in_axes=(Point(0, 1),))(pts)
    np.testing.assert_allclose(got, np.ones((4, 2)) * np.arange(8.0).reshape(2, 4).T)
    stacked = {"a": [np.ones((4, 2)), np.ones((4,))], "b": None}
    got = fgrad.vmap(lambda t: fnp.sum(t["a"][0], axis=-1) + t["a"][1])(stacked)
    np.testing.assert_allclose(got, np.full(4, 3.0))


def test_per_example_gradients_over_a_registered_model():
    rng = np.random.default_rng(2)
    model = Linear(rng.standard_normal((3, 2)), rng.standard_normal(2), "fc")
    xs, ys = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))

    def loss(m, x, y):
        return fnp.sum((fnp.tanh(x @ m.weight + m.bias) - y) ** 2)

    g = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(model, xs, ys)
    assert isinstance(g, Linear) and g.weight.shape == (8, 3, 2) and g.bias.shape == (8, 2)
    for i in (0, 5):
        one = fgrad.grad(loss)(model, xs[i], ys[i])
        np.testing.assert_allclose(g.weight[i], one.weight, rtol=1e-12)
        np.testing.assert_allclose(g.bias[i], one.bias, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Random trees (hypothesis)
# --------------------------------------------------------------------------------------------

_leaf = st.builds(lambda n, v: np.full(n, v), st.integers(0, 3).map(lambda k: (k,) if k else ()),
                  st.floats(-5, 5, allow_nan=False))
_trees = st.recursive(
    _leaf | st.none(),
    lambda kids: (st.lists(kids, max_size=3)
                  | st.lists(kids, max_size=3).map(tuple)
                  | st.dictionaries(st.text("abcdef", min_size=1, max_size=3), kids, max_size=3)
                  | st.builds(Point, kids, kids)
                  | st.builds(lambda w, b: Linear(w, b, "m"), kids, kids)),
    max_leaves=8)


@HYPOTHESIS
@given(t=_trees)
def test_round_trip_property(t):
    leaves, treedef = tree.flatten(t)
    back = tree.unflatten(treedef, leaves)
    assert tree.structure(back) == treedef
    assert all(a is b for a, b in zip(tree.leaves(back), leaves))
    doubled = tree.map(lambda x: 2 * x, t)
    assert tree.structure(doubled) == treedef
    for a, b in zip(tree.leaves(doubled), leaves):
        np.testing.assert_array_equal(a, 2 * b)


@HYPOTHESIS
@given(t=_trees)
def test_grad_of_sum_of_squares_over_any_tree(t):
    def f(tr):
        return sum((fnp.sum(x ** 2) for x in tree.leaves(tr)), 0.0) + 1.0
    g = fgrad.grad(f)(t)
    assert tree.structure(g) == tree.structure(t)
    for gl, x in zip(tree.leaves(g), tree.leaves(t)):
        np.testing.assert_allclose(gl, 2 * x)
