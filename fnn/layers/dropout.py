"""Dropout: zero each element with probability ``p`` when training, scaling the rest by ``1/(1-p)``.

Randomness is explicit: ``apply(params, x, key=key, train=True)`` draws the mask from ``key``
(the same key gives the same mask); with ``train=False`` (the default) the layer is the
identity and needs no key. Inside :class:`~fnn.Sequential` each Dropout gets its own subkey.

>>> import numpy as np, fgrad, fnn
>>> drop = fnn.Dropout(0.5)
>>> y = drop.apply({}, np.ones(1000), key=fgrad.random.key(0), train=True)
>>> sorted(set(y.tolist()))                 # dropped, or kept and scaled by 1 / (1 - p)
[0.0, 2.0]
>>> drop.apply({}, np.ones(3))              # train=False: the identity
array([1., 1., 1.])
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from .. import functional as F
from .base import Module

__all__ = ["Dropout"]


@dataclasses.dataclass(frozen=True)
class Dropout(Module):
    """Inverted dropout with probability ``p``; no params."""

    takes_key: ClassVar[bool] = True

    p: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {self.p}")

    def apply(self, params, x, *, key=None, train=False):
        self.check_params(params)
        if train and self.p > 0 and key is None:
            raise ValueError(f"{self.describe()}.apply: train=True needs key=<a fgrad.random key> "
                             f"(split a fresh one for every step), or train=False for evaluation")
        return F.dropout(x, self.p, training=train, key=key)
