"""Affine layers and shape helpers: Linear, Bilinear, Identity, Flatten (torch.nn's names and layouts).

>>> import numpy as np, fgrad, fnn
>>> layer = fnn.Linear(3, 2)
>>> params = layer.init(fgrad.random.key(0))        # {"weight": (2, 3), "bias": (2,)}
>>> layer.apply(params, np.ones((5, 3), np.float32)).shape
(5, 2)
"""
from __future__ import annotations

import dataclasses
import functools
import math

import fgrad.numpy as fnp
from fgrad.core import shape_of
from .. import functional as F
from .. import init
from .base import Module, ParamSpec, dtype_field

__all__ = ["Linear", "Bilinear", "Identity", "Flatten", "uniform_spec"]


def uniform_spec(shape, bound, dtype):
    """A parameter drawn from U(-bound, bound): torch's default for weights and biases, where
    ``bound = 1 / sqrt(fan_in)`` (``kaiming_uniform(a=sqrt(5))`` reduces to the same bound)."""
    return ParamSpec(tuple(shape), dtype, functools.partial(init.uniform, a=-bound, b=bound))


def _bound(fan_in):
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Linear(Module):
    """``y = x @ weight.T + bias``: input ``(*, in_features)`` -> ``(*, out_features)``.

    Params: ``weight (out_features, in_features)``, ``bias (out_features,)`` (if ``bias``), both
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as torch.
    """

    in_features: int
    out_features: int
    bias: bool = True
    dtype: object = dtype_field()

    def param_specs(self):
        bound = _bound(self.in_features)
        specs = {"weight": uniform_spec((self.out_features, self.in_features), bound, self.dtype)}
        if self.bias:
            specs["bias"] = uniform_spec((self.out_features,), bound, self.dtype)
        return specs

    def apply(self, params, x):
        self.check_params(params)
        self.check_input(x, None, channels=self.in_features, axis=-1, channel_name="in_features")
        return F.linear(x, params["weight"], params.get("bias"))


@dataclasses.dataclass(frozen=True)
class Bilinear(Module):
    """``y[..., o] = x1 @ weight[o] @ x2 + bias[o]``: inputs ``(*, in1)``, ``(*, in2)`` -> ``(*, out)``.

    Params: ``weight (out, in1, in2)``, ``bias (out,)``, both U(-1/sqrt(in1), 1/sqrt(in1)) as torch.
    """

    in1_features: int
    in2_features: int
    out_features: int
    bias: bool = True
    dtype: object = dtype_field()

    def param_specs(self):
        bound = _bound(self.in1_features)
        shape = (self.out_features, self.in1_features, self.in2_features)
        specs = {"weight": uniform_spec(shape, bound, self.dtype)}
        if self.bias:
            specs["bias"] = uniform_spec((self.out_features,), bound, self.dtype)
        return specs

    def apply(self, params, x1, x2):
        self.check_params(params)
        self.check_input(x1, None, channels=self.in1_features, axis=-1, what="input1",
                         channel_name="in1_features")
        self.check_input(x2, None, channels=self.in2_features, axis=-1, what="input2",
                         channel_name="in2_features")
        return F.bilinear(x1, x2, params["weight"], params.get("bias"))


@dataclasses.dataclass(frozen=True)
class Identity(Module):
    """Returns its input (a placeholder in a :class:`~fnn.Sequential`); no params."""

    def apply(self, params, x):
        self.check_params(params)
        return x


@dataclasses.dataclass(frozen=True)
class Flatten(Module):
    """Merges dims ``start_dim..end_dim`` into one (torch's default keeps the batch dim 0)."""

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params, x):
        self.check_params(params)
        shape = shape_of(x)
        rank = len(shape)
        start = self.start_dim + rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + rank if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < rank:
            raise ValueError(f"{self.describe()}.apply: cannot flatten dims {self.start_dim}..{self.end_dim} "
                             f"of an input of shape {shape}")
        return fnp.reshape(x, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])
