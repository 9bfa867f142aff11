"""Parameter-tree tools: torch-style dotted names, parameter counts, a printable summary.

fnn keeps parameters as nested dicts whose keys are torch's attribute names, so joining the
keys on a path with ``"."`` gives the torch ``state_dict`` key of that leaf::

    {"0": {"weight": w0, "bias": b0}, "2": {"weight": w2}}  <->  {"0.weight", "0.bias", "2.weight"}

:func:`flatten_names` and :func:`unflatten_names` convert between the two forms; ``fnn.io``
builds saving and torch conversion on them.

>>> import numpy as np, fnn
>>> params = {"fc": {"weight": np.zeros((4, 3)), "bias": np.zeros(4)}}
>>> sorted(fnn.utils.flatten_names(params))
['fc.bias', 'fc.weight']
>>> fnn.utils.count_params(params)
16
"""
from __future__ import annotations

import math

import numpy as np

from fgrad import tree

__all__ = ["path_name", "flatten_names", "unflatten_names", "count_params", "summary"]


def path_name(path, sep="."):
    """The dotted name of a key path: ``("layers", 0, "weight") -> "layers.0.weight"``."""
    return sep.join(str(k) for k in path)


def flatten_names(params, sep=".", is_leaf=None):
    """``{dotted_name: leaf}`` for every leaf of ``params``, in flattening order (``is_leaf`` as
    in ``fgrad.tree.flatten``).

    Raises ``ValueError`` if two paths give the same name (a key that itself contains ``sep``).
    """
    paths, leaves, _ = tree.flatten_split_paths(params, is_leaf=is_leaf)
    names = {}
    for path, leaf in zip(paths, leaves):
        name = path_name(path, sep)
        if name in names:
            raise ValueError(f"flatten_names: two leaves are both named {name!r}; a key contains "
                             f"{sep!r}, which makes dotted names ambiguous")
        names[name] = leaf
    return names


def unflatten_names(flat, sep="."):
    """The nested dict whose :func:`flatten_names` is ``flat`` (every key path becomes dicts).

    ``{"0.weight": w, "0.bias": b} -> {"0": {"weight": w, "bias": b}}``. Raises ``ValueError``
    if a name is both a leaf and a prefix of another name (``"a"`` and ``"a.b"``).
    """
    nested = {}
    for name, value in flat.items():
        *parents, last = name.split(sep)
        node = nested
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"unflatten_names: {sep.join(parents[:i + 1])!r} is both a leaf "
                                 f"and the parent of {name!r}")
        if last in node:
            raise ValueError(f"unflatten_names: {name!r} is both a leaf and the parent of other names")
        node[last] = value
    return nested


def count_params(params):
    """Total number of scalars in the leaves of ``params`` (a Python scalar counts as one)."""
    return sum(math.prod(np.shape(leaf)) for leaf in tree.leaves(params))


def summary(params):
    """A table of every leaf: dotted name, shape, dtype and size, with the total at the bottom."""
    rows = [(name, str(tuple(np.shape(leaf))), str(np.result_type(leaf)), math.prod(np.shape(leaf)))
            for name, leaf in flatten_names(params).items()]
    header = ("name", "shape", "dtype", "size")
    widths = [max([len(header[i])] + [len(str(r[i])) for r in rows]) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.append(f"total: {count_params(params):,} parameters in {len(rows)} arrays")
    return "\n".join(lines)
