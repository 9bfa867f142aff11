"""Pytrees: nested containers of arrays, flattened and rebuilt with optree.

Every transform in fgrad takes and returns pytrees: tuples, lists, dicts, namedtuples, None
(an empty subtree, as in JAX) and classes registered with :func:`register_node`. fgrad
registers its own classes in the ``"fgrad"`` optree namespace so that it never collides with
another library's registrations.

>>> import fgrad
>>> params = {"w": [1.0, 2.0], "b": 3.0}
>>> fgrad.tree.map(lambda x: 2 * x, params)
{'b': 6.0, 'w': [2.0, 4.0]}

The names of ``jax.tree_util`` work too (``fgrad.tree_util`` is this module): ``tree_map``,
``tree_leaves``, ``tree_flatten_with_path``, ``keystr``, ``register_pytree_node``,
``register_dataclass``, ... with JAX's semantics: dicts are flattened in sorted-key order and
rebuilt with sorted keys (``unflatten``, ``map``), a dict whose keys cannot be sorted (mixed
key types) raises ``TypeError``, and key paths are tuples of :class:`DictKey`,
:class:`SequenceKey`, :class:`GetAttrKey` and :class:`FlattenedIndexKey`.

``flatten_with_path`` (``jax.tree.flatten_with_path``, also ``tree_flatten_with_path``)
returns JAX's pair ``([(key_path, leaf), ...], treedef)``:

>>> pairs, _ = fgrad.tree.flatten_with_path({"a": [1.0], "b": 2.0})
>>> pairs
[((DictKey(key='a'), SequenceKey(idx=0)), 1.0), ((DictKey(key='b'),), 2.0)]
>>> fgrad.tree.keystr(pairs[0][0])
"['a'][0]"

The engine, which only needs raw keys for its error messages, calls
:func:`flatten_split_paths`: optree's triple ``(paths, leaves, treedef)`` with plain keys
(``("a", 0)``), cheaper than building key objects for every leaf on every call.
"""
from __future__ import annotations

import builtins
import dataclasses

import optree

NAMESPACE = "fgrad"

__all__ = [
    "flatten", "unflatten", "leaves", "structure", "map", "map_with_path", "flatten_with_path",
    "flatten_split_paths", "leaves_with_path", "reduce", "all", "transpose", "register_node",
    "register_node_class", "broadcast_prefix", "num_leaves", "keystr", "DictKey", "SequenceKey",
    "GetAttrKey", "FlattenedIndexKey", "register_pytree_node", "register_pytree_node_class",
    "register_dataclass", "tree_map", "tree_leaves", "tree_flatten", "tree_unflatten",
    "tree_structure", "tree_reduce", "tree_all", "tree_transpose", "tree_map_with_path",
    "tree_flatten_with_path", "tree_leaves_with_path", "treedef_is_leaf", "all_leaves",
]


# --------------------------------------------------------------------------------------------
# Dicts: sorted keys after a round trip, as JAX
# --------------------------------------------------------------------------------------------

#: treedef -> the same structure with every dict's keys in sorted order (or the treedef itself
#: when it has no dict out of order). optree keeps insertion order on unflatten; JAX sorts.
_SORTED_TREEDEF: dict = {}


def _sorted_treedef(treedef):
    """``treedef`` with its dicts rebuilt in sorted-key order (cached per structure). The leaf
    order is unchanged: optree already flattens dicts in sorted-key order."""
    try:
        return _SORTED_TREEDEF[treedef]
    except KeyError:
        pass
    except TypeError:          # an unhashable treedef (unhashable aux data): compute each time
        return _sort_dicts_of(treedef)
    out = _sort_dicts_of(treedef)
    if len(_SORTED_TREEDEF) > 4096:
        _SORTED_TREEDEF.clear()
    _SORTED_TREEDEF[treedef] = out
    return out


def _sort_dicts_of(treedef):
    if "{" not in repr(treedef):          # no dict anywhere (the common case: tuples, lists)
        return treedef
    changed = [False]

    def rebuild(x):
        if type(x) is dict:
            keys = list(x)
            try:
                ordered = sorted(keys)
            except TypeError:
                raise TypeError(
                    f"fgrad.tree: a dict's keys must be sortable to flatten it, as in JAX; got "
                    f"keys {keys!r} of types {sorted({type(k).__name__ for k in keys})}. Use "
                    f"keys of one type (all str, or all int).") from None
            if ordered != keys:
                changed[0] = True
            return {k: rebuild(x[k]) for k in ordered}
        if optree.tree_is_leaf(x, none_is_leaf=False, namespace=NAMESPACE) or x is None:
            return x
        one = optree.tree_flatten_one_level(x, none_is_leaf=False, namespace=NAMESPACE)
        return one.unflatten_func(one.metadata, [rebuild(c) for c in one.children])

    placeholder = optree.tree_unflatten(treedef, [_Leaf()] * treedef.num_leaves)
    rebuilt = rebuild(placeholder)
    if not changed[0]:
        return treedef
    return optree.tree_structure(rebuilt, is_leaf=lambda y: isinstance(y, _Leaf),
                                 namespace=NAMESPACE)


class _Leaf:
    """A placeholder leaf for rebuilding a structure."""
    __slots__ = ()


def flatten(tree, is_leaf=None):
    """Flatten ``tree`` into ``(leaves, treedef)``; ``unflatten(treedef, leaves)`` undoes it
    (dicts come back with sorted keys; unsortable dict keys raise ``TypeError``, as in JAX)."""
    leaves_, treedef = optree.tree_flatten(tree, is_leaf=is_leaf, namespace=NAMESPACE)
    return leaves_, _sorted_treedef(treedef)


def unflatten(treedef, leaves):
    """Rebuild a tree of structure ``treedef`` from an iterable of leaves."""
    return optree.tree_unflatten(_sorted_treedef(treedef), leaves)


def leaves(tree, is_leaf=None):
    """The leaves of ``tree`` in flattening order (dicts by sorted key)."""
    return flatten(tree, is_leaf=is_leaf)[0]


def structure(tree, is_leaf=None):
    """The treedef of ``tree`` (its shape without the leaves)."""
    return _sorted_treedef(optree.tree_structure(tree, is_leaf=is_leaf, namespace=NAMESPACE))


def num_leaves(tree):
    return structure(tree).num_leaves


def map(f, tree, *rest, is_leaf=None):  # noqa: A001 - mirrors jax.tree.map
    """Apply ``f`` leaf-wise to ``tree`` and the trees in ``rest`` (which must share its structure)."""
    leaves_, treedef = flatten(tree, is_leaf=is_leaf)
    if not rest:
        return optree.tree_unflatten(treedef, [f(x) for x in leaves_])
    others = [treedef.flatten_up_to(r) for r in rest]
    return optree.tree_unflatten(treedef, [f(*xs) for xs in zip(leaves_, *others)])


def map_with_path(f, tree, *rest, is_leaf=None):
    """Like :func:`map` but ``f(key_path, leaf, *others)`` also receives the leaf's key path: a
    tuple of :class:`DictKey` / :class:`SequenceKey` / :class:`GetAttrKey` /
    :class:`FlattenedIndexKey` (``jax.tree_util.tree_map_with_path``; :func:`keystr` prints it)."""
    pairs, treedef = flatten_with_path(tree, is_leaf=is_leaf)
    others = [treedef.flatten_up_to(r) for r in rest]
    return optree.tree_unflatten(treedef, [f(p, x, *xs) for (p, x), *xs in zip(pairs, *others)])


def flatten_split_paths(tree, is_leaf=None):
    """``(paths, leaves, treedef)`` where ``paths[i]`` is the optree path tuple of ``leaves[i]``
    (``("w", 0)``: dict keys, sequence indices, namedtuple field positions)."""
    paths, leaves_, treedef = optree.tree_flatten_with_path(tree, is_leaf=is_leaf,
                                                            namespace=NAMESPACE)
    return paths, leaves_, _sorted_treedef(treedef)


# --------------------------------------------------------------------------------------------
# Key paths (jax.tree_util's key classes and keystr)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DictKey:
    """The key of a dict entry: ``str`` gives ``['name']``."""
    key: object

    def __str__(self):
        return f"[{self.key!r}]"


@dataclasses.dataclass(frozen=True)
class SequenceKey:
    """The index of a list or tuple entry: ``str`` gives ``[0]``."""
    idx: int

    def __str__(self):
        return f"[{self.idx}]"


@dataclasses.dataclass(frozen=True)
class GetAttrKey:
    """A namedtuple field or dataclass attribute: ``str`` gives ``.name``."""
    name: str

    def __str__(self):
        return f".{self.name}"


@dataclasses.dataclass(frozen=True)
class FlattenedIndexKey:
    """The position of a child of a node registered without keys: ``str`` gives ``[<flat index 0>]``."""
    key: int

    def __str__(self):
        return f"[<flat index {self.key}>]"


def _key(entry):
    kind = type(entry).__name__
    if kind == "MappingEntry":
        return DictKey(entry.entry)
    if kind == "SequenceEntry":
        return SequenceKey(entry.entry)
    if kind in ("NamedTupleEntry", "DataclassEntry", "GetAttrEntry", "StructSequenceEntry"):
        return GetAttrKey(getattr(entry, "name", None) or getattr(entry, "field", entry.entry))
    return FlattenedIndexKey(entry.entry)


def flatten_with_path(tree, is_leaf=None):
    """``([(key_path, leaf), ...], treedef)``, as ``jax.tree_util.tree_flatten_with_path``.

    ``key_path`` is a tuple of key entries, one per level: :class:`DictKey` for dict entries,
    :class:`SequenceKey` for list/tuple positions, :class:`GetAttrKey` for namedtuple fields
    and registered dataclasses, :class:`FlattenedIndexKey` for the children of other registered
    nodes. ``unflatten(treedef, [leaf for _, leaf in pairs])`` rebuilds the tree.
    """
    accessors, leaves_, treedef = optree.tree_flatten_with_accessor(
        tree, is_leaf=is_leaf, namespace=NAMESPACE)
    pairs = [(tuple(_key(e) for e in acc), x) for acc, x in zip(accessors, leaves_)]
    return pairs, _sorted_treedef(treedef)


def leaves_with_path(tree, is_leaf=None):
    """``[(key_path, leaf), ...]`` (``jax.tree_util.tree_leaves_with_path``)."""
    return flatten_with_path(tree, is_leaf=is_leaf)[0]


def keystr(keys, *, simple=False, separator=""):
    """A key path as text, as ``jax.tree_util.keystr``: ``"['a'][0].x"``; with ``simple=True``
    the bare keys joined by ``separator`` (``keystr(p, simple=True, separator="/")`` gives ``a/0/x``)."""
    if not simple:
        return separator.join(str(k) for k in keys)
    parts = []
    for k in keys:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return separator.join(parts)


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


def register_pytree_node(nodetype, flatten_func, unflatten_func):
    """``jax.tree_util.register_pytree_node``: ``flatten_func(obj) -> (children, aux_data)``,
    ``unflatten_func(aux_data, children) -> obj``."""
    register_node(nodetype, flatten_func, unflatten_func)


register_pytree_node_class = register_node_class


def register_dataclass(nodetype=None, data_fields=None, meta_fields=None, drop_fields=()):
    """Register a dataclass as a pytree node (``jax.tree_util.register_dataclass``).

    ``data_fields`` are children (arrays a transform sees), ``meta_fields`` static data that
    must be hashable and is part of the structure. With both omitted, as in recent JAX, fields
    marked ``dataclasses.field(metadata=dict(static=True))`` are meta and the rest data. Usable
    as a decorator. Children get :class:`GetAttrKey` paths.
    """
    if nodetype is None:
        return lambda cls: register_dataclass(cls, data_fields, meta_fields, drop_fields)
    if data_fields is None and meta_fields is None:
        if not dataclasses.is_dataclass(nodetype):
            raise TypeError(f"fgrad.tree.register_dataclass: {nodetype.__name__} is not a "
                            f"dataclass; give data_fields and meta_fields explicitly")
        fields = [f for f in dataclasses.fields(nodetype) if f.init and f.name not in drop_fields]
        meta_fields = [f.name for f in fields if f.metadata.get("static", False)]
        data_fields = [f.name for f in fields if not f.metadata.get("static", False)]
    elif data_fields is None or meta_fields is None:
        raise TypeError("fgrad.tree.register_dataclass: give both data_fields and meta_fields, "
                        "or neither (for a dataclass)")
    data_fields, meta_fields = tuple(data_fields), tuple(meta_fields)

    def flatten_fn(obj):
        children = tuple(getattr(obj, name) for name in data_fields)
        meta = tuple(getattr(obj, name) for name in meta_fields)
        return children, meta, data_fields

    def unflatten_fn(meta, children):
        kwargs = dict(zip(meta_fields, meta))
        kwargs.update(zip(data_fields, children))
        return nodetype(**kwargs)

    optree.register_pytree_node(nodetype, flatten_fn, unflatten_fn, namespace=NAMESPACE,
                                path_entry_type=optree.GetAttrEntry)
    return nodetype


def treedef_is_leaf(treedef):
    """True when ``treedef`` is a single leaf."""
    return treedef.num_nodes == 1 and treedef.num_leaves == 1


def all_leaves(iterable, is_leaf=None):
    """True when every element of ``iterable`` is a leaf."""
    return builtins.all(optree.tree_is_leaf(x, is_leaf=is_leaf, namespace=NAMESPACE)
                        for x in iterable)


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


# --- jax.tree_util's names ----------------------------------------------------------------------

tree_map, tree_leaves, tree_flatten, tree_unflatten = map, leaves, flatten, unflatten
tree_structure, tree_reduce, tree_all, tree_transpose = structure, reduce, all, transpose
tree_map_with_path, tree_leaves_with_path = map_with_path, leaves_with_path
tree_flatten_with_path = flatten_with_path
