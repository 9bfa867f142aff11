"""Activation layers (torch.nn's ReLU, GELU, ...): parameter-free wrappers of ``fnn.functional``,
for use inside :class:`~fnn.Sequential`. Their params are ``{}``.

>>> import numpy as np, fnn
>>> fnn.LeakyReLU(0.1).apply({}, np.array([-1.0, 2.0]))
array([-0.1,  2. ])
"""
from __future__ import annotations

import dataclasses

from .. import functional as F
from .base import Module

__all__ = ["ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"]


@dataclasses.dataclass(frozen=True)
class _Activation(Module):
    def apply(self, params, x):
        self.check_params(params)
        return self.fn(x)


@dataclasses.dataclass(frozen=True)
class ReLU(_Activation):
    """``max(x, 0)``."""

    def fn(self, x):
        return F.relu(x)


@dataclasses.dataclass(frozen=True)
class LeakyReLU(_Activation):
    """``x`` if ``x > 0`` else ``negative_slope * x``."""

    negative_slope: float = 0.01

    def fn(self, x):
        return F.leaky_relu(x, self.negative_slope)


@dataclasses.dataclass(frozen=True)
class ELU(_Activation):
    """``x`` if ``x > 0`` else ``alpha * (e^x - 1)``."""

    alpha: float = 1.0

    def fn(self, x):
        return F.elu(x, self.alpha)


@dataclasses.dataclass(frozen=True)
class GELU(_Activation):
    """``x * Phi(x)`` (``approximate='tanh'`` for the tanh approximation)."""

    approximate: str = "none"

    def fn(self, x):
        return F.gelu(x, approximate=self.approximate)


@dataclasses.dataclass(frozen=True)
class SiLU(_Activation):
    """``x * sigmoid(x)``."""

    def fn(self, x):
        return F.silu(x)


@dataclasses.dataclass(frozen=True)
class Sigmoid(_Activation):
    """``1 / (1 + e^-x)``."""

    def fn(self, x):
        return F.sigmoid(x)


@dataclasses.dataclass(frozen=True)
class Tanh(_Activation):
    """Hyperbolic tangent."""

    def fn(self, x):
        return F.tanh(x)


@dataclasses.dataclass(frozen=True)
class Softmax(_Activation):
    """Probabilities along ``dim`` (the last axis by default; torch's ``dim=None`` guesses one)."""

    dim: int = -1

    def fn(self, x):
        return F.softmax(x, dim=self.dim)


@dataclasses.dataclass(frozen=True)
class LogSoftmax(_Activation):
    """Log-probabilities along ``dim``."""

    dim: int = -1

    def fn(self, x):
        return F.log_softmax(x, dim=self.dim)
