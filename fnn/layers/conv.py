"""Convolution layers: Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d (NCHW, torch layouts).

Weights are ``(out_channels, in_channels / groups, *kernel_size)`` for a convolution and
``(in_channels, out_channels / groups, *kernel_size)`` for a transposed one, as in torch;
both are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with torch's ``fan_in`` (weight.shape[1]
times the kernel size; for a transposed convolution that is ``out_channels / groups * k``,
torch's choice), and so is the bias.

>>> import numpy as np, fgrad, fnn
>>> conv = fnn.Conv2d(3, 8, kernel_size=3, padding=1)
>>> params = conv.init(fgrad.random.key(0))
>>> conv.apply(params, np.zeros((2, 3, 16, 16), np.float32)).shape
(2, 8, 16, 16)
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import shape_of
from .. import functional as F
from .base import Module, dtype_field, ntuple
from .linear import uniform_spec

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d"]

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
#: torch's padding_mode -> fgrad.numpy.pad's mode
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _check_ints(name, field, value):
    """A size or tuple of sizes must hold ints: 2.5 or True would be truncated silently."""
    for v in (value if isinstance(value, (list, tuple)) else (value,)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: {field} must be an int or a tuple of ints, got {value!r}")


@dataclasses.dataclass(frozen=True)
class _ConvNd(Module):
    """Checks and params shared by every convolution; ``n`` is the number of spatial dims.

    The subclasses declare the fields, in the positional order of the torch constructors.
    """

    n: ClassVar[int]
    transposed: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        for field in ("in_channels", "out_channels", "groups"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name}: {field} must be an int, got {value!r}")
        for field in ("in_channels", "out_channels"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}: {field} must be positive, got {getattr(self, field)}")
        fields = ("kernel_size", "stride", "dilation")
        if not isinstance(self.padding, str):
            fields += ("padding",)
        if self.transposed:
            fields += ("output_padding",)
        for field in fields:
            _check_ints(name, field, getattr(self, field))
            try:
                object.__setattr__(self, field, ntuple(getattr(self, field), self.n))
            except ValueError as e:
                raise ValueError(f"{name}: {field}: {e}") from None
        # torch refuses these in forward ("non-positive stride is not supported", ...); here
        # they fail at construction, before kernel_size 0 divides by a zero fan-in at init
        for field, low in (("kernel_size", 1), ("stride", 1), ("dilation", 1), ("padding", 0),
                           ("output_padding", 0)):
            value = getattr(self, field, None)
            if isinstance(value, tuple) and any(v < low for v in value):
                what = "positive" if low == 1 else "non-negative"
                raise ValueError(f"{name}: {field} must be {what}, got {value}")
        if self.transposed and any(op >= max(s, d) for op, s, d in zip(
                self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller than "
                             f"the stride {self.stride} or the dilation {self.dilation} (as torch)")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{name}: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        if isinstance(self.padding, str) and self.padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be an int, a tuple, 'same' or 'valid', got "
                             f"{self.padding!r}")
        if self.padding == "same" and any(s != 1 for s in self.stride):
            raise ValueError(f"{name}: padding='same' needs stride 1 (as torch), got {self.stride}")
        allowed = ("zeros",) if self.transposed else ("zeros",) + tuple(_PAD_MODES)
        if self.padding_mode not in allowed:
            raise ValueError(f"{name}: padding_mode must be one of {allowed}, got {self.padding_mode!r}")

    def weight_shape(self):
        c_in, c_out = ((self.in_channels, self.out_channels // self.groups) if self.transposed
                       else (self.out_channels, self.in_channels // self.groups))
        return (c_in, c_out) + self.kernel_size

    def param_specs(self):
        shape = self.weight_shape()
        bound = 1.0 / math.sqrt(shape[1] * math.prod(shape[2:]))
        specs = {"weight": uniform_spec(shape, bound, self.dtype)}
        if self.bias:
            specs["bias"] = uniform_spec((self.out_channels,), bound, self.dtype)
        return specs

    def check_conv_input(self, params, x):
        self.check_params(params)
        spatial = _SPATIAL[self.n]
        self.check_input(x, {self.n + 1: f"(C, {spatial})", self.n + 2: f"(N, C, {spatial})"},
                         channels=self.in_channels, axis=-self.n - 1, channel_name="in_channels")


@dataclasses.dataclass(frozen=True)
class _Conv(_ConvNd):
    in_channels: int
    out_channels: int
    kernel_size: int | tuple
    stride: int | tuple = 1
    padding: int | tuple | str = 0
    dilation: int | tuple = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    dtype: object = dtype_field()

    def apply(self, params, x):
        """Convolve ``x`` of shape ``(N, C_in, *spatial)`` (or unbatched ``(C_in, *spatial)``)."""
        self.check_conv_input(params, x)
        padding = self.padding
        if self.padding_mode != "zeros":
            x = fnp.pad(x, ((0, 0),) * (len(shape_of(x)) - self.n) + self._pad_widths(),
                        mode=_PAD_MODES[self.padding_mode])
            padding = 0
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.n]
        return conv(x, params["weight"], params.get("bias"), self.stride, padding, self.dilation,
                    self.groups)

    def _pad_widths(self):
        """``(before, after)`` per spatial axis; 'same' puts the odd one after, as torch."""
        if self.padding == "valid":
            return ((0, 0),) * self.n
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in self.padding)


@dataclasses.dataclass(frozen=True)
class Conv1d(_Conv):
    """1-d convolution over ``(N, C_in, L)``; params ``weight (C_out, C_in / groups, k)``,
    ``bias (C_out,)``."""

    n: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class Conv2d(_Conv):
    """2-d convolution over ``(N, C_in, H, W)``; params ``weight (C_out, C_in / groups, kH, kW)``,
    ``bias (C_out,)``. ``padding``: int, pair, ``'same'`` or ``'valid'``; ``padding_mode``:
    ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``."""

    n: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True)
class Conv3d(_Conv):
    """3-d convolution over ``(N, C_in, D, H, W)``; see :class:`Conv2d`."""

    n: ClassVar[int] = 3


@dataclasses.dataclass(frozen=True)
class _ConvTranspose(_ConvNd):
    transposed: ClassVar[bool] = True

    in_channels: int
    out_channels: int
    kernel_size: int | tuple
    stride: int | tuple = 1
    padding: int | tuple = 0
    output_padding: int | tuple = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple = 1
    padding_mode: str = "zeros"
    dtype: object = dtype_field()

    def __post_init__(self):
        if isinstance(self.padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple (torch has "
                             f"no 'same'/'valid' for transposed convolutions), got {self.padding!r}")
        super().__post_init__()

    def apply(self, params, x, output_size=None):
        """The adjoint of a convolution: ``(N, C_in, *spatial)`` -> ``(N, C_out, *bigger)``.

        ``output_size`` (the last ``n`` entries are used, as torch) picks the output size among
        those a strided convolution maps to the same input size, in place of ``output_padding``.
        """
        self.check_conv_input(params, x)
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(shape_of(x), tuple(output_size)[-self.n:])
        conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[self.n]
        return conv(x, params["weight"], params.get("bias"), self.stride, self.padding,
                    output_padding, self.groups, self.dilation)

    def _output_padding(self, x_shape, output_size):
        smallest = [(h - 1) * s - 2 * p + d * (k - 1) + 1 for h, s, p, d, k in zip(
            x_shape[-self.n:], self.stride, self.padding, self.dilation, self.kernel_size)]
        extra = tuple(o - m for o, m in zip(output_size, smallest))
        largest = tuple(m + s - 1 for m, s in zip(smallest, self.stride))
        if len(output_size) != self.n or any(not 0 <= e < s for e, s in zip(extra, self.stride)):
            raise ValueError(f"{self.describe()}.apply: output_size {output_size} must be between "
                             f"{tuple(smallest)} and {largest} for an input of shape {x_shape}")
        return extra


@dataclasses.dataclass(frozen=True)
class ConvTranspose1d(_ConvTranspose):
    """1-d transposed convolution; params ``weight (C_in, C_out / groups, k)``, ``bias (C_out,)``."""

    n: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class ConvTranspose2d(_ConvTranspose):
    """2-d transposed convolution ("deconvolution"): ``(N, C_in, H, W)`` ->
    ``(N, C_out, (H - 1) s - 2 p + d (k - 1) + output_padding + 1, ...)``; params
    ``weight (C_in, C_out / groups, kH, kW)``, ``bias (C_out,)``."""

    n: ClassVar[int] = 2
