"""Normalisation layers: BatchNorm1d/2d/3d (with running statistics as state), LayerNorm, GroupNorm,
RMSNorm. Affine params are ``weight`` (ones) and ``bias`` (zeros), as torch.

BatchNorm's running statistics are a separate state pytree, ``{"running_mean", "running_var",
"num_batches_tracked"}`` (torch's buffer names), passed in and returned::

    state = bn.init_state()
    y, state = bn.apply(params, x, state=state, train=True)    # batch statistics; state updated
    y, _ = bn.apply(params, x, state=state)                     # train=False: running statistics

The update is torch's: with ``n`` values per channel and the batch's biased variance ``var``,
``running_mean <- (1 - m) running_mean + m mean`` and ``running_var <- (1 - m) running_var +
m var n / (n - 1)``, where ``m = momentum``, or ``1 / num_batches_tracked`` (a cumulative
average) when ``momentum=None``. The statistics carry no gradient (torch updates its buffers
under ``no_grad``).

>>> import numpy as np, fgrad, fnn
>>> bn = fnn.BatchNorm2d(3)
>>> params, state = bn.init(fgrad.random.key(0)), bn.init_state()
>>> y, state = bn.apply(params, np.random.rand(8, 3, 4, 4).astype(np.float32), state=state, train=True)
>>> int(state["num_batches_tracked"])
1
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad.core import shape_of
from .. import functional as F
from .. import init
from .base import Module, ParamSpec, dtype_field

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "RMSNorm"]


def _affine_specs(shape, dtype, bias=True):
    specs = {"weight": ParamSpec(tuple(shape), dtype, init.ones)}
    if bias:
        specs["bias"] = ParamSpec(tuple(shape), dtype, init.zeros)
    return specs


@dataclasses.dataclass(frozen=True)
class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d/3d; ``shapes`` are the accepted input ranks."""

    shapes: ClassVar[dict]

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    dtype: object = dtype_field()

    @property
    def has_state(self):
        return self.track_running_stats

    def param_specs(self):
        return _affine_specs((self.num_features,), self.dtype) if self.affine else {}

    def state_specs(self):
        """Zero means, unit variances, no batches seen (torch's fresh buffers)."""
        if not self.track_running_stats:
            return {}
        c = (self.num_features,)
        return {"running_mean": ParamSpec(c, self.dtype, init.zeros),
                "running_var": ParamSpec(c, self.dtype, init.ones),
                "num_batches_tracked": ParamSpec((), np.dtype(np.int64), init.zeros)}

    def apply(self, params, x, *, state=None, train=False):
        """Normalise ``x`` of shape ``(N, C, *)``; returns ``(y, new_state)`` when tracking
        running statistics, else ``y`` (always normalised with the batch's statistics)."""
        self.check_params(params)
        rank = self.check_input(x, self.shapes, channels=self.num_features, axis=1,
                                channel_name="num_features")
        weight, bias = params.get("weight"), params.get("bias")
        if not self.track_running_stats:
            return F.batch_norm(x, None, None, weight, bias, training=True, eps=self.eps)
        if state is None:
            raise ValueError(f"{self.describe()}.apply: needs state=<the running statistics>; start "
                             f"from layer.init_state()")
        self.check_params(state, what="state")
        mean, var = state["running_mean"], state["running_var"]
        y = F.batch_norm(x, mean, var, weight, bias, training=train, eps=self.eps)
        if not train:
            return y, state
        axes = (0,) + tuple(range(2, rank))
        n = math.prod(shape_of(x)) // self.num_features
        xs = fgrad.stop_gradient(x)
        batch_mean = fnp.mean(xs, axis=axes)
        batch_var = fnp.var(xs, axis=axes) * (n / (n - 1))
        count = state["num_batches_tracked"] + 1
        m = self.momentum if self.momentum is not None else 1.0 / count
        new_state = {"running_mean": fnp.astype((1 - m) * mean + m * batch_mean, mean.dtype),
                     "running_var": fnp.astype((1 - m) * var + m * batch_var, var.dtype),
                     "num_batches_tracked": count}
        return y, new_state


@dataclasses.dataclass(frozen=True)
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` over the batch (and length) axes."""

    shapes: ClassVar[dict] = {2: "(N, C)", 3: "(N, C, L)"}


@dataclasses.dataclass(frozen=True)
class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` per channel, over the batch and spatial axes."""

    shapes: ClassVar[dict] = {4: "(N, C, H, W)"}


@dataclasses.dataclass(frozen=True)
class BatchNorm3d(_BatchNorm):
    """Batch normalisation of ``(N, C, D, H, W)`` per channel."""

    shapes: ClassVar[dict] = {5: "(N, C, D, H, W)"}


def _shape_tuple(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _check_trailing(layer, x, shape):
    got = shape_of(x)
    if len(got) < len(shape) or got[len(got) - len(shape):] != shape:
        raise ValueError(f"{layer.describe()}.apply: expected input of shape (*, "
                         f"{', '.join(map(str, shape))}) (normalized_shape at the end), got shape {got}")


@dataclasses.dataclass(frozen=True)
class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes of each example, then scale and shift
    per element (``weight``, ``bias`` of shape ``normalized_shape``)."""

    normalized_shape: int | tuple
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "normalized_shape", _shape_tuple(self.normalized_shape))

    def param_specs(self):
        return _affine_specs(self.normalized_shape, self.dtype, self.bias) if self.elementwise_affine else {}

    def apply(self, params, x):
        self.check_params(params)
        _check_trailing(self, x, self.normalized_shape)
        return F.layer_norm(x, self.normalized_shape, params.get("weight"), params.get("bias"), self.eps)


@dataclasses.dataclass(frozen=True)
class GroupNorm(Module):
    """Normalise ``(N, C, *)`` over each group of ``C / num_groups`` channels (and all positions),
    then scale and shift per channel."""

    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.num_groups < 1 or self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels={self.num_channels} must be divisible by "
                             f"num_groups={self.num_groups}")

    def param_specs(self):
        return _affine_specs((self.num_channels,), self.dtype) if self.affine else {}

    def apply(self, params, x):
        self.check_params(params)
        self.check_input(x, {r: "(N, C, *)" for r in range(2, 8)}, channels=self.num_channels,
                         axis=1, channel_name="num_channels")
        return F.group_norm(x, self.num_groups, params.get("weight"), params.get("bias"), self.eps)


@dataclasses.dataclass(frozen=True)
class RMSNorm(Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` axes;
    ``eps=None`` is the machine epsilon of the input's dtype (torch's default)."""

    normalized_shape: int | tuple
    eps: float | None = None
    elementwise_affine: bool = True
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "normalized_shape", _shape_tuple(self.normalized_shape))

    def param_specs(self):
        return _affine_specs(self.normalized_shape, self.dtype, bias=False) if self.elementwise_affine else {}

    def apply(self, params, x):
        self.check_params(params)
        _check_trailing(self, x, self.normalized_shape)
        return F.rms_norm(x, self.normalized_shape, params.get("weight"), self.eps)
