"""Dropout with an explicit random key (no global random state).

``dropout(x, p, key=key)`` zeroes each element with probability ``p`` and scales the survivors
by ``1 / (1 - p)``, so the expected output is ``x`` (torch's "inverted" dropout). The mask comes
from ``fgrad.random.bernoulli(key, 1 - p, x.shape)``: the same key gives the same mask, and a
batched key under ``vmap`` gives every example its own mask.

>>> import numpy as np, fgrad, fnn.functional as F
>>> key = fgrad.random.key(0)
>>> F.dropout(np.ones(6), 0.5, key=key)          # zeros, and the rest scaled by 1 / (1 - p)
array([2., 2., 0., 0., 0., 2.])
"""
from __future__ import annotations

import fgrad.numpy as fnp
from fgrad.core import shape_of

__all__ = ["dropout"]


def dropout(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero each element with probability ``p`` (scaling the rest by ``1 / (1 - p)``) when
    ``training``; return ``input`` unchanged otherwise. ``key`` (from ``fgrad.random``) is
    required when ``training`` and ``p > 0``. ``inplace=True`` is rejected: nothing mutates."""
    fname = "fnn.functional.dropout"
    if inplace:
        raise ValueError(f"{fname}: inplace=True is not supported; fnn functions are pure, so "
                         f"write y = dropout(x, p, key=key) and use the result.")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fname}: dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError(f"{fname}: training with p={p} needs a random key: pass "
                         f"key=fgrad.random.key(seed) (split it for every call), or "
                         f"training=False to turn dropout off")
    if p == 1.0:
        return input * 0.0
    from fgrad import random   # imported here: fgrad.random is optional for the rest of fnn
    keep = random.bernoulli(key, 1.0 - p, shape_of(input))
    return fnp.where(keep, input / (1.0 - p), 0.0)
