"""Pytrees: nested containers of arrays, flattened and rebuilt with optree.

Every transform in fgrad takes and returns pytrees: tuples, lists, dicts, namedtuples, None
(an empty subtree, as in JAX) and classes registered with :func:`register_node`. fgrad
registers its own classes in the ``"fgrad"`` optree namespace so that it never collides with
another library's registrations.

>>> import fgrad
>>> params = {"w": [1.0, 2.0], "b": 3.0}
>>> fgrad.tree.map(lambda x: 2 * x, params)
{'b': 6.0, 'w': [2.0, 4.0]}
"""
from __future__ import annotations

import optree

NAMESPACE = "fgrad"

__all__ = [
    "flatten", "unflatten", "leaves", "structure", "map", "map_with_path", "flatten_with_path",
    "reduce", "all", "transpose", "register_node", "register_node_class", "broadcast_prefix",
    "num_leaves",
]


def flatten(tree, is_leaf=None):
    """Flatten ``tree`` into ``(leaves, treedef)``; ``unflatten(treedef, leaves)`` undoes it."""
    return optree.tree_flatten(tree, is_leaf=is_leaf, namespace=NAMESPACE)


def unflatten(treedef, leaves):
    """Rebuild a tree of structure ``treedef`` from an iterable of leaves."""
    return optree.tree_unflatten(treedef, leaves)


def leaves(tree, is_leaf=None):
    """The leaves of ``tree`` in flattening order."""
    return optree.tree_leaves(tree, is_leaf=is_leaf, namespace=NAMESPACE)


def structure(tree, is_leaf=None):
    """The treedef of ``tree`` (its shape without the leaves)."""
    return optree.tree_structure(tree, is_leaf=is_leaf, namespace=NAMESPACE)


def num_leaves(tree):
    return structure(tree).num_leaves


def map(f, tree, *rest, is_leaf=None):  # noqa: A001 - mirrors jax.tree.map
    """Apply ``f`` leaf-wise to ``tree`` and the trees in ``rest`` (which must share its structure)."""
    return optree.tree_map(f, tree, *rest, is_leaf=is_leaf, namespace=NAMESPACE)


def map_with_path(f, tree, *rest, is_leaf=None):
    """Like :func:`map` but ``f(path, leaf, *others)`` also receives the leaf's path tuple."""
    return optree.tree_map_with_path(f, tree, *rest, is_leaf=is_leaf, namespace=NAMESPACE)


def flatten_with_path(tree, is_leaf=None):
    """``(paths, leaves, treedef)`` where ``paths[i]`` is the key path to ``leaves[i]``."""
    return optree.tree_flatten_with_path(tree, is_leaf=is_leaf, namespace=NAMESPACE)


def reduce(f, tree, initializer=None, is_leaf=None):
    """Fold ``f`` over the leaves of ``tree``."""
    if initializer is None:
        return optree.tree_reduce(f, tree, is_leaf=is_leaf, namespace=NAMESPACE)
    return optree.tree_reduce(f, tree, initializer, is_leaf=is_leaf, namespace=NAMESPACE)


def all(tree):  # noqa: A001 - mirrors jax.tree.all
    """True if every leaf is truthy."""
    return optree.tree_all(tree, namespace=NAMESPACE)


def transpose(outer_treedef, inner_treedef, tree):
    """Turn a tree of structure outer-of-inner into inner-of-outer."""
    return optree.tree_transpose(outer_treedef, inner_treedef, tree)


def register_node(cls, flatten_fn, unflatten_fn):
    """Register ``cls`` as a pytree node.

    ``flatten_fn(obj) -> (children, aux_data)`` and ``unflatten_fn(aux_data, children) -> obj``
    (the argument order of ``jax.tree_util.register_pytree_node``).
    """
    optree.register_pytree_node(
        cls, flatten_fn, lambda aux, children: unflatten_fn(aux, children), namespace=NAMESPACE)
    return cls


def register_node_class(cls):
    """Class decorator: ``cls`` defines ``tree_flatten(self)`` and ``tree_unflatten(cls, aux, children)``."""
    return register_node(cls, lambda obj: obj.tree_flatten(), cls.tree_unflatten)


def broadcast_prefix(prefix, tree, what="in_axes", against="argument"):
    """Repeat the leaves of ``prefix`` over the subtrees of ``tree`` they stand for.

    Returns a list with one entry per leaf of ``tree``. ``None`` inside ``prefix`` is a leaf
    (as in ``vmap``'s ``in_axes``). Raises ``ValueError`` naming the path where the two differ.
    """
    out = []

    def walk(p, t, path):
        if p is None or optree.tree_is_leaf(p, none_is_leaf=True, namespace=NAMESPACE):
            out.extend([p] * num_leaves(t))
            return
        p_kids, p_keys = _one_level(p, none_is_leaf=True)
        t_kids, t_keys = _one_level(t, none_is_leaf=False)
        where = f"at {_fmt_path(what, path)}"
        if t_kids is None or type(p) is not type(t):
            raise ValueError(
                f"{what} must be a tree prefix of the {against}s: {where} {what} has a "
                f"{type(p).__name__} ({_short(p)}) where the {against} is a {type(t).__name__} "
                f"({_short(t)}). Use one int or None to cover a whole subtree.")
        if sorted(repr(k) for k in p_keys) != sorted(repr(k) for k in t_keys):
            raise ValueError(
                f"{what} must be a tree prefix of the {against}s: {where} {what} has entries "
                f"{_keys(p_keys)} but the {against} has {_keys(t_keys)}.")
        t_by_key = dict(zip(t_keys, t_kids))
        for k, pk in zip(p_keys, p_kids):
            walk(pk, t_by_key[k], path + (k,))

    walk(prefix, tree, ())
    return out



def _one_level(x, none_is_leaf):
    """``(children, keys)`` of one node, or ``(None, None)`` for a leaf."""
    if optree.tree_is_leaf(x, none_is_leaf=none_is_leaf, namespace=NAMESPACE):
        return None, None
    one = optree.tree_flatten_one_level(x, none_is_leaf=none_is_leaf, namespace=NAMESPACE)
    return list(one.children), list(one.entries)


def _keys(keys):
    return "[" + ", ".join(repr(k) for k in keys) + "]"


def _fmt_path(what, path):
    return what + "".join(f"[{k!r}]" for k in path) if path else "the top level"


def _short(x):
    s = repr(x)
    return s if len(s) < 60 else s[:57] + "..."
