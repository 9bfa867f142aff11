"""Transformer layers: ``TransformerEncoderLayer`` and ``TransformerDecoderLayer`` as torch's.

Each is built from the other layers (MultiheadAttention, Linear, LayerNorm), so its params are
theirs under torch's attribute names: ``self_attn``, (decoder: ``multihead_attn``),
``linear1``, ``linear2``, ``norm1``, ``norm2``, (decoder: ``norm3``). With ``d`` a block's
dropout, post-norm (torch's default) computes for the encoder

    x = norm1(x + d(self_attn(x)));   x = norm2(x + d(linear2(d(act(linear1(x))))))

and pre-norm (``norm_first=True``) ``x = x + d(self_attn(norm1(x)))``, then
``x = x + d(ff(norm2(x)))``. The decoder adds a cross-attention block on ``memory`` between
the two. Dropout is applied only when ``train=True`` (with ``key``).

>>> import numpy as np, fgrad, fnn
>>> layer = fnn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
>>> params = layer.init(fgrad.random.key(0))
>>> layer.apply(params, np.zeros((2, 5, 16), np.float32), is_causal=True).shape
(2, 5, 16)
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

from fgrad import random
from .. import functional as F
from .attention import MultiheadAttention
from .base import Module, dtype_field
from .linear import Linear
from .normalization import LayerNorm

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


@dataclasses.dataclass(frozen=True)
class _TransformerLayer(Module):
    """What the encoder and decoder layers share: sub-layers, dropout and the feed-forward block."""

    takes_key: ClassVar[bool] = True
    blocks: ClassVar[int]

    def __post_init__(self):
        super().__post_init__()
        if not (callable(self.activation) or self.activation in _ACTIVATIONS):
            raise ValueError(f"{type(self).__name__}: activation must be 'relu', 'gelu' or a "
                             f"function, got {self.activation!r}")

    def attention(self):
        return MultiheadAttention(self.d_model, self.nhead, dropout=self.dropout, bias=self.bias,
                                  batch_first=self.batch_first, dtype=self.dtype)

    def sublayers(self):
        """``{torch attribute name: layer}`` for every sub-layer with parameters."""
        layers = {"self_attn": self.attention()}
        if self.blocks == 3:
            layers["multihead_attn"] = self.attention()
        layers["linear1"] = Linear(self.d_model, self.dim_feedforward, bias=self.bias, dtype=self.dtype)
        layers["linear2"] = Linear(self.dim_feedforward, self.d_model, bias=self.bias, dtype=self.dtype)
        for i in range(1, self.blocks + 1):
            layers[f"norm{i}"] = LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias,
                                           dtype=self.dtype)
        return layers

    def param_specs(self):
        return {name: layer.param_specs() for name, layer in self.sublayers().items()}

    def _dropper(self, key, train):
        """``drop(x)``: dropout with a fresh subkey per call when training, else the identity."""
        if not train or self.dropout == 0:
            return lambda x: x, lambda: None
        if key is None:
            raise ValueError(f"{self.describe()}.apply: train=True with dropout={self.dropout} needs "
                             f"key=<a fgrad.random key>")
        # two draws per attention block (attention weights, block output), two in the feed-forward
        keys = iter(random.split(key, 2 * self.blocks))
        return (lambda x: F.dropout(x, self.dropout, training=True, key=next(keys))), lambda: next(keys)

    def _attend(self, layers, params, name, x, memory, mask, padding, is_causal, drop, next_key, train):
        out, _ = layers[name].apply(params[name], x, memory, memory, attn_mask=mask,
                                    key_padding_mask=padding, need_weights=False,
                                    is_causal=is_causal, dropout_key=next_key(), train=train)
        return drop(out)

    def _feed_forward(self, layers, params, x, drop):
        act = self.activation if callable(self.activation) else _ACTIVATIONS[self.activation]
        h = drop(act(layers["linear1"].apply(params["linear1"], x)))
        return drop(layers["linear2"].apply(params["linear2"], h))

    def _check_sequence(self, x, what):
        names = "(N, L, d_model)" if self.batch_first else "(L, N, d_model)"
        self.check_input(x, {2: "(L, d_model)", 3: names}, channels=self.d_model, axis=-1,
                         what=what, channel_name="d_model")


@dataclasses.dataclass(frozen=True)
class TransformerEncoderLayer(_TransformerLayer):
    """Self-attention then a feed-forward block, each with a residual connection and LayerNorm.

    ``apply(params, src, *, src_mask=None, src_key_padding_mask=None, is_causal=False,
    key=None, train=False)``; ``src`` is ``(L, N, d_model)`` (``(N, L, d_model)`` if
    ``batch_first``); masks as :class:`~fnn.MultiheadAttention`'s ``attn_mask`` and
    ``key_padding_mask``; ``is_causal`` without ``src_mask`` masks future positions.
    """

    blocks: ClassVar[int] = 2

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    dtype: object = dtype_field()

    def apply(self, params, src, *, src_mask=None, src_key_padding_mask=None, is_causal=False,
              key=None, train=False):
        self.check_params(params)
        self._check_sequence(src, "src")
        layers = self.sublayers()
        drop, next_key = self._dropper(key, train)
        norm = {i: (lambda y, i=i: layers[f"norm{i}"].apply(params[f"norm{i}"], y)) for i in (1, 2)}

        def self_attention(y):
            return self._attend(layers, params, "self_attn", y, y, src_mask, src_key_padding_mask,
                                is_causal, drop, next_key, train)

        x = src
        if self.norm_first:
            x = x + self_attention(norm[1](x))
            return x + self._feed_forward(layers, params, norm[2](x), drop)
        x = norm[1](x + self_attention(x))
        return norm[2](x + self._feed_forward(layers, params, x, drop))


@dataclasses.dataclass(frozen=True)
class TransformerDecoderLayer(_TransformerLayer):
    """Self-attention on the target, cross-attention to ``memory``, then a feed-forward block.

    ``apply(params, tgt, memory, *, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False, key=None,
    train=False)``; torch's argument names and shapes.
    """

    blocks: ClassVar[int] = 3

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str | Callable = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    dtype: object = dtype_field()

    def apply(self, params, tgt, memory, *, tgt_mask=None, memory_mask=None,
              tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
              memory_is_causal=False, key=None, train=False):
        self.check_params(params)
        self._check_sequence(tgt, "tgt")
        self._check_sequence(memory, "memory")
        layers = self.sublayers()
        drop, next_key = self._dropper(key, train)
        norm = {i: (lambda y, i=i: layers[f"norm{i}"].apply(params[f"norm{i}"], y)) for i in (1, 2, 3)}

        def self_attention(y):
            return self._attend(layers, params, "self_attn", y, y, tgt_mask, tgt_key_padding_mask,
                                tgt_is_causal, drop, next_key, train)

        def cross_attention(y):
            return self._attend(layers, params, "multihead_attn", y, memory, memory_mask,
                                memory_key_padding_mask, memory_is_causal, drop, next_key, train)

        x = tgt
        if self.norm_first:
            x = x + self_attention(norm[1](x))
            x = x + cross_attention(norm[2](x))
            return x + self._feed_forward(layers, params, norm[3](x), drop)
        x = norm[1](x + self_attention(x))
        x = norm[2](x + cross_attention(x))
        return norm[3](x + self._feed_forward(layers, params, x, drop))
