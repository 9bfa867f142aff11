"""Embedding: a lookup table of ``num_embeddings`` vectors, indexed by integer ids.

Params: ``weight (num_embeddings, embedding_dim)``, drawn from N(0, 1) as torch, with the row
``padding_idx`` (if given) set to zero; that row gets no gradient. ``max_norm`` rescales the
looked-up rows to at most that norm (torch also rescales its table in place; here only the
output is, which gives torch's output and gradient).

>>> import numpy as np, fgrad, fnn
>>> emb = fnn.Embedding(10, 4, padding_idx=0)
>>> params = emb.init(fgrad.random.key(0))
>>> emb.apply(params, np.array([[0, 3], [9, 9]])).shape
(2, 2, 4)
"""
from __future__ import annotations

import dataclasses
import functools

import fgrad.numpy as fnp
from fgrad.core import dtype_of
from .. import functional as F
from .. import init
from .base import Module, ParamSpec, dtype_field

__all__ = ["Embedding"]


def _normal_with_zero_row(key, shape, dtype, padding_idx):
    """N(0, 1) with row ``padding_idx`` zeroed (``None``: no zero row)."""
    weight = init.normal(key, shape, dtype=dtype)
    return weight if padding_idx is None else fnp.at(weight)[padding_idx].set(0.0)


@dataclasses.dataclass(frozen=True)
class Embedding(Module):
    """``apply(params, ids)``: integer ids ``(*)`` -> vectors ``(*, embedding_dim)``."""

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.padding_idx is not None:
            if not -self.num_embeddings <= self.padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within num_embeddings="
                                 f"{self.num_embeddings}, got {self.padding_idx}")
            object.__setattr__(self, "padding_idx", self.padding_idx % self.num_embeddings)

    def param_specs(self):
        shape = (self.num_embeddings, self.embedding_dim)
        weight_init = functools.partial(_normal_with_zero_row, padding_idx=self.padding_idx)
        return {"weight": ParamSpec(shape, self.dtype, weight_init)}

    def apply(self, params, ids):
        self.check_params(params)
        if dtype_of(ids).kind not in "iu":
            raise TypeError(f"{self.describe()}.apply: ids must be integers, got dtype {dtype_of(ids)}")
        return F.embedding(ids, params["weight"], self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq)
