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

from typing import Any, Callable, NamedTuple

from fgrad import numpy as fnp
from fgrad import tree
from fgrad.core import dtype_of

__all__ = ["GradientTransformation", "EmptyState", "identity", "apply_updates"]


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
    example with a float64 learning rate), as optax does. Example::

        updates, state = tx.update(grads, state, params)
        params = foptim.apply_updates(params, updates)
    """
    return tree.map(lambda p, u: fnp.astype(p + u, dtype_of(p)), params, updates)
