"""Composition: ``chain`` runs gradient transformations one after another.

A named optimizer is a chain of small stages, e.g. AdamW is::

    chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay),
          scale_by_learning_rate(learning_rate))

The updates flow through the stages in order; the chain's state is the tuple of the stages'
states, so ``state[0]`` is the first stage's.
"""
from __future__ import annotations

from .base import GradientTransformation, check_like

__all__ = ["chain"]


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` in sequence: each one's updates are the next one's input.

    Every stage receives the same ``params``. With no arguments this is the identity. When
    ``params`` are given, the incoming updates must have their structure, shapes and kinds of
    dtype (``ValueError`` names the first leaf that differs); each stage that keeps state per
    parameter checks the updates against it too.
    """
    return named_chain("chain", *transforms)


def named_chain(name, *transforms: GradientTransformation) -> GradientTransformation:
    """:func:`chain`, whose errors name the optimizer (``foptim.adam``) instead of ``chain``."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            what = f"{len(state)} stage states" if isinstance(state, tuple) else \
                f"a {type(state).__name__}"
            raise ValueError(f"foptim.{name}.update: the state holds {what} but the optimizer "
                             f"has {len(transforms)} stages; pass the state that this "
                             f"optimizer's init returned")
        if params is not None:
            check_like(f"foptim.{name}.update", "grads", updates, "params", params)
        new_state = []
        for transform, stage_state in zip(transforms, state):
            updates, stage_state = transform.update(updates, stage_state, params)
            new_state.append(stage_state)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)
