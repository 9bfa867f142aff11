"""Composition: ``chain`` runs gradient transformations one after another.

A named optimizer is a chain of small stages, e.g. AdamW is::

    chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay),
          scale_by_learning_rate(learning_rate))

The updates flow through the stages in order; the chain's state is the tuple of the stages'
states, so ``state[0]`` is the first stage's.
"""
from __future__ import annotations

from .base import GradientTransformation

__all__ = ["chain"]


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` in sequence: each one's updates are the next one's input.

    Every stage receives the same ``params``. With no arguments this is the identity.
    """

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(f"chain.update: the state holds {len(state)} stage states but the "
                             f"chain has {len(transforms)} stages; pass the state that this "
                             f"chain's init returned")
        new_state = []
        for transform, stage_state in zip(transforms, state):
            updates, stage_state = transform.update(updates, stage_state, params)
            new_state.append(stage_state)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)
