"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d (no params; torch's arguments).

>>> import numpy as np, fnn
>>> fnn.MaxPool2d(2).apply({}, np.zeros((1, 3, 8, 8))).shape
(1, 3, 4, 4)
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from .. import functional as F
from .base import Module

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
           "AdaptiveAvgPool2d"]


@dataclasses.dataclass(frozen=True)
class _Pool(Module):
    n: ClassVar[int]

    def check(self, params, x):
        self.check_params(params)
        spatial = {1: "L", 2: "H, W"}[self.n]
        self.check_input(x, {self.n + 1: f"(C, {spatial})", self.n + 2: f"(N, C, {spatial})"})


@dataclasses.dataclass(frozen=True)
class _MaxPool(_Pool):
    kernel_size: int | tuple
    stride: int | tuple | None = None
    padding: int | tuple = 0
    dilation: int | tuple = 1
    return_indices: bool = False
    ceil_mode: bool = False

    def apply(self, params, x):
        """The maximum of each window; with ``return_indices`` also the flat index of each
        maximum in its ``H * W`` plane, ``(values, indices)``."""
        self.check(params, x)
        pool = F.max_pool1d if self.n == 1 else F.max_pool2d
        return pool(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                    self.return_indices)


@dataclasses.dataclass(frozen=True)
class MaxPool1d(_MaxPool):
    """1-d max pooling of ``(N, C, L)``; ``stride`` defaults to ``kernel_size``."""

    n: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class MaxPool2d(_MaxPool):
    """2-d max pooling of ``(N, C, H, W)``; ``stride`` defaults to ``kernel_size``, padding is -inf."""

    n: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True)
class AvgPool1d(_Pool):
    """1-d average pooling of ``(N, C, L)``; zero padding counts if ``count_include_pad``."""

    n: ClassVar[int] = 1

    kernel_size: int | tuple
    stride: int | tuple | None = None
    padding: int | tuple = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    def apply(self, params, x):
        self.check(params, x)
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


@dataclasses.dataclass(frozen=True)
class AvgPool2d(_Pool):
    """2-d average pooling of ``(N, C, H, W)``; ``divisor_override`` replaces the window count."""

    n: ClassVar[int] = 2

    kernel_size: int | tuple
    stride: int | tuple | None = None
    padding: int | tuple = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def apply(self, params, x):
        self.check(params, x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


@dataclasses.dataclass(frozen=True)
class AdaptiveAvgPool1d(_Pool):
    """Average ``(N, C, L)`` into ``output_size`` bins."""

    n: ClassVar[int] = 1

    output_size: int

    def apply(self, params, x):
        self.check(params, x)
        return F.adaptive_avg_pool1d(x, self.output_size)


@dataclasses.dataclass(frozen=True)
class AdaptiveAvgPool2d(_Pool):
    """Average ``(N, C, H, W)`` into an ``output_size`` grid (``None`` keeps that axis' size);
    ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    n: ClassVar[int] = 2

    output_size: int | tuple

    def apply(self, params, x):
        self.check(params, x)
        return F.adaptive_avg_pool2d(x, self.output_size)
