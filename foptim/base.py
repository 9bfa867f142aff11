"""The optimizer contract: a gradient transformation is a pair of pure functions.

This is optax's design. An optimizer never owns or mutates anything; it is a
:class:`GradientTransformation` holding two functions::

    state = tx.init(params)                              # the optimizer's memory, a pytree
    updates, state = tx.update(grads, state, params)     # a new state is returned
    params = foptim.apply_updates(params, updates)       # params + updates, leaf by leaf

Hyper-parameters live in the closure of the factory that built ``tx``
(``foptim.adam(learning_rate=1e-3)``); the state is a small ``NamedTuple`` of arrays
(step counts, moment estimates); ``params``, ``grads`` and ``updates`` are pytrees of one
structure (``fgrad.tree``). Every array operation is an ``fgrad.numpy`` operation, so an
update step can itself be transformed: ``fgrad.grad`` through a step (meta-learning a
learning rate), ``fgrad.vmap`` over a batch of models (ensembles)::

    def loss_after_step(lr, params, x, y):
        tx = foptim.sgd(lr)
        grads = fgrad.grad(loss)(params, x, y)
        updates, _ = tx.update(grads, tx.init(params), params)
        return loss(foptim.apply_updates(params, updates), x, y)

    d_lr = fgrad.grad(loss_after_step)(0.1, params, x, y)

Every other module builds on this one: ``transforms.py`` holds the small transformations,
``combine.chain`` composes them, ``alias.py`` names the familiar optimizers as chains and
``schedules.py`` gives learning rates that depend on the step count.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from fgrad import numpy as fnp
from fgrad import tree
from fgrad.core import Tracer, dtype_of, shape_of

__all__ = ["GradientTransformation", "EmptyState", "identity", "apply_updates", "check_like",
           "check_hyperparameter"]


class GradientTransformation(NamedTuple):
    """An optimizer, or one stage of one: ``init(params) -> state`` and
    ``update(grads, state, params=None) -> (updates, new_state)``.

    ``update`` takes the incoming updates (the gradients, for the first stage of a chain) and
    returns the transformed updates; ``params`` is needed only by transformations that look
    at the parameters (weight decay). Both functions are pure: they return new pytrees and
    leave their arguments untouched.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple]


class EmptyState(NamedTuple):
    """The state of a transformation that remembers nothing (an empty pytree)."""


def identity() -> GradientTransformation:
    """Pass updates through unchanged (the neutral element of :func:`foptim.chain`)."""

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return updates, state

    return GradientTransformation(init, update)


def apply_updates(params, updates):
    """``params + updates`` leaf by leaf, each result in its parameter's dtype.

    The cast keeps float32 parameters float32 when an update was computed in float64 (for
    example with a float64 learning rate), as optax does. ``updates`` must have the structure
    and the shapes of ``params`` (an update is never broadcast into a parameter: a ``(3, 1)``
    update would turn a ``(3,)`` parameter into ``(3, 3)``); a ``ValueError`` names the first
    leaf, by path, that differs. Example::

        updates, state = tx.update(grads, state, params)
        params = foptim.apply_updates(params, updates)
    """
    check_like("foptim.apply_updates", "updates", updates, "params", params, dtypes=False)
    return tree.map(lambda p, u: fnp.astype(p + u, dtype_of(p)), params, updates)


# --------------------------------------------------------------------------------------------
# Checks shared by the transformations
# --------------------------------------------------------------------------------------------

def _path(path):
    return "".join(f"[{k!r}]" for k in path) or "the top level"


def check_like(where, what, value, like_what, like, *, dtypes=True, note=""):
    """Raise ``ValueError`` unless the pytree ``value`` has the structure and leaf shapes (and,
    with ``dtypes``, the kinds of dtype) of ``like``, naming the first leaf that differs by its
    path. Float precisions may differ (``apply_updates`` casts each update to its parameter's
    dtype, as optax does); a complex or integer gradient for a float parameter may not.

    This is what keeps an optimizer from broadcasting: a ``(3, 1)`` gradient for a ``(3,)``
    parameter, or a gradient tree with a leaf missing, is an error rather than a silently
    reshaped parameter or optree's generic structure message.
    """
    note = f" ({note})" if note else ""
    paths, leaves, treedef = tree.flatten_split_paths(value)
    like_paths, like_leaves, like_treedef = tree.flatten_split_paths(like)
    if treedef != like_treedef:
        missing = [p for p in like_paths if p not in set(paths)]
        extra = [p for p in paths if p not in set(like_paths)]
        detail = "; ".join(s for s in (
            f"missing from {what}: {', '.join(_path(p) for p in missing[:5])}" if missing else "",
            f"in {what} but not in {like_what}: {', '.join(_path(p) for p in extra[:5])}"
            if extra else "") if s) or f"{what} is {treedef}, {like_what} is {like_treedef}"
        raise ValueError(f"{where}: {what} must have the tree structure of {like_what}: "
                         f"{detail}{note}")
    for path, x, y in zip(paths, leaves, like_leaves):
        if shape_of(x) != shape_of(y):
            raise ValueError(f"{where}: {what}{_path(path) if path else ''} has shape "
                             f"{shape_of(x)} but {like_what}{_path(path) if path else ''} has "
                             f"shape {shape_of(y)}; they must match exactly (nothing is "
                             f"broadcast){note}")
        if dtypes and dtype_of(x).kind != dtype_of(y).kind:
            raise ValueError(f"{where}: {what}{_path(path) if path else ''} has dtype "
                             f"{dtype_of(x).name} but {like_what}{_path(path) if path else ''} "
                             f"has dtype {dtype_of(y).name}; a gradient has its parameter's "
                             f"kind of dtype (real float for a float parameter)")


def check_hyperparameter(where, name, value, *, low=None, high=None, low_open=False,
                         high_open=False, why=""):
    """Raise ``ValueError`` when a concrete number lies outside ``[low, high]`` (an open end
    with ``low_open``/``high_open``) or is NaN. Schedules, traced values (a learning rate being
    differentiated) and ``None`` are not checked."""
    if value is None or callable(value) or isinstance(value, Tracer):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        return
    bad = math.isnan(v)
    if low is not None:
        bad = bad or v < low or (low_open and v == low)
    if high is not None:
        bad = bad or v > high or (high_open and v == high)
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        interval = (f"in {lo}, {hi}" if low is not None and high is not None
                    else f"{'>' if low_open else '>='} {low}" if low is not None
                    else f"{'<' if high_open else '<='} {high}")
        raise ValueError(f"{where}: {name} must be {interval}, got {value!r}"
                         + (f" ({why})" if why else ""))
