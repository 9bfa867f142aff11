"""Multi-head attention with torch's packed parameter layout (``nn.MultiheadAttention``).

Params (torch's state_dict names): ``in_proj_weight (3E, E)`` holding the query, key and value
projections stacked in that order, ``in_proj_bias (3E,)``, ``out_proj.weight (E, E)``,
``out_proj.bias (E,)``; with ``kdim``/``vdim`` different from ``embed_dim`` the three input
projections are separate, ``q_proj_weight (E, E)``, ``k_proj_weight (E, kdim)``,
``v_proj_weight (E, vdim)``; ``add_bias_kv`` adds ``bias_k``, ``bias_v (1, 1, E)``. Init as
torch: xavier-uniform projections, zero biases, ``out_proj.weight`` like a Linear's,
xavier-normal ``bias_k``/``bias_v``.

For each head ``h`` (``E / num_heads`` features), with ``Q, K, V`` the projected inputs,
``A_h = softmax(Q_h K_h^T / sqrt(E / num_heads) + mask)`` and ``out = concat_h(A_h V_h) W_o^T + b_o``.

The query/key/value argument names are torch's, so the random key for attention dropout is
called ``dropout_key`` here.

>>> import numpy as np, fgrad, fnn
>>> mha = fnn.MultiheadAttention(16, 4, batch_first=True)
>>> params = mha.init(fgrad.random.key(0))
>>> x = np.zeros((2, 5, 16), np.float32)
>>> out, weights = mha.apply(params, x, x, x, is_causal=True)
>>> out.shape, weights.shape
((2, 5, 16), (2, 5, 5))
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of
from .. import functional as F
from .. import init
from .base import Module, ParamSpec, dtype_field
from .linear import Linear

__all__ = ["MultiheadAttention", "causal_mask"]


def causal_mask(size, dtype=bool):
    """The ``(size, size)`` mask hiding future positions: True (masked) where ``j > i``."""
    return np.triu(np.ones((size, size), dtype=bool), k=1).astype(dtype)


def additive_mask(mask, dtype):
    """A mask as something to add to attention scores: True (bool) becomes -inf, floats are kept."""
    if dtype_of(mask) == np.bool_:
        return fnp.where(mask, -np.inf, 0.0).astype(dtype)
    return mask


@dataclasses.dataclass(frozen=True)
class MultiheadAttention(Module):
    """``apply(params, query, key, value, *, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False, dropout_key=None, train=False)
    -> (attn_output, attn_weights)``.

    Shapes (``L`` target and ``S`` source lengths, ``N`` batch): query ``(L, N, E)``, key
    ``(S, N, kdim)``, value ``(S, N, vdim)`` (batch first if ``batch_first``; or unbatched
    ``(L, E)``...). ``key_padding_mask (N, S)``: True (or -inf) ignores that key.
    ``attn_mask (L, S)`` or ``(N * num_heads, L, S)``: True (bool) masks, floats are added.
    ``is_causal=True`` without ``attn_mask`` masks future positions (torch requires the mask
    as well; here it is built). Output ``(L, N, E)``; weights ``(N, L, S)`` averaged over heads,
    or ``(N, num_heads, L, S)``, or None when ``need_weights=False``. ``dropout`` drops
    attention weights when ``train=True`` (needs ``dropout_key``).
    """

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    bias: bool = True
    add_bias_kv: bool = False
    add_zero_attn: bool = False
    kdim: int | None = None
    vdim: int | None = None
    batch_first: bool = False
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.embed_dim % self.num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={self.embed_dim} must be divisible by "
                             f"num_heads={self.num_heads}")
        object.__setattr__(self, "kdim", self.kdim or self.embed_dim)
        object.__setattr__(self, "vdim", self.vdim or self.embed_dim)

    @property
    def packed(self):
        """True when query, key and value share the embedding size (one ``in_proj_weight``)."""
        return self.kdim == self.embed_dim and self.vdim == self.embed_dim

    @property
    def out_proj(self):
        return Linear(self.embed_dim, self.embed_dim, bias=self.bias, dtype=self.dtype)

    def param_specs(self):
        e, dtype = self.embed_dim, self.dtype
        if self.packed:
            specs = {"in_proj_weight": ParamSpec((3 * e, e), dtype, init.xavier_uniform)}
        else:
            specs = {f"{name}_proj_weight": ParamSpec((e, d), dtype, init.xavier_uniform)
                     for name, d in (("q", e), ("k", self.kdim), ("v", self.vdim))}
        if self.bias:
            specs["in_proj_bias"] = ParamSpec((3 * e,), dtype, init.zeros)
        out_proj = self.out_proj.param_specs()
        if self.bias:
            out_proj["bias"] = ParamSpec((e,), dtype, init.zeros)
        specs["out_proj"] = out_proj
        if self.add_bias_kv:
            specs["bias_k"] = ParamSpec((1, 1, e), dtype, init.xavier_normal)
            specs["bias_v"] = ParamSpec((1, 1, e), dtype, init.xavier_normal)
        return specs

    def apply(self, params, query, key, value, *, key_padding_mask=None, need_weights=True,
              attn_mask=None, average_attn_weights=True, is_causal=False, dropout_key=None,
              train=False):
        self.check_params(params)
        q_names = "(N, L, E)" if self.batch_first else "(L, N, E)"
        rank = self.check_input(query, {2: "(L, E)", 3: q_names}, channels=self.embed_dim, axis=-1,
                                what="query", channel_name="embed_dim")
        for what, x, dim in (("key", key, self.kdim), ("value", value, self.vdim)):
            self.check_input(x, {rank: q_names.replace("L", "S").replace("E", what[0] + "dim")},
                             channels=dim, axis=-1, what=what, channel_name=f"{what[0]}dim")
        # work batch-first: (N, L, E)
        if rank == 2:
            query, key, value = (fnp.expand_dims(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = fnp.expand_dims(key_padding_mask, 0)
        elif not self.batch_first:
            query, key, value = (fnp.swapaxes(t, 0, 1) for t in (query, key, value))
        if shape_of(key)[:2] != shape_of(value)[:2] or shape_of(key)[0] != shape_of(query)[0]:
            raise ValueError(f"{self.describe()}.apply: query, key and value must share the batch "
                             f"size, and key and value the length; got {shape_of(query)}, "
                             f"{shape_of(key)} and {shape_of(value)} (batch-first)")
        q, k, v = self._project(params, query, key, value)
        out, weights = self._attend(q, k, v, key_padding_mask, attn_mask, is_causal, need_weights,
                                    dropout_key, train)
        out = self.out_proj.apply(params["out_proj"], out)
        if weights is not None and average_attn_weights:
            weights = fnp.mean(weights, axis=1)
        if rank == 2:
            return out[0], None if weights is None else weights[0]
        return (out if self.batch_first else fnp.swapaxes(out, 0, 1)), weights

    def _project(self, params, query, key, value):
        """The input projections, each ``(N, length, E)``."""
        e = self.embed_dim
        if self.packed:
            w_q, w_k, w_v = fnp.split(params["in_proj_weight"], 3)
        else:
            w_q, w_k, w_v = (params[f"{n}_proj_weight"] for n in "qkv")
        b_q = b_k = b_v = None
        if self.bias:
            b_q, b_k, b_v = fnp.split(params["in_proj_bias"], 3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        if self.add_bias_kv:
            n = shape_of(k)[0]
            k = fnp.concatenate([k, fnp.broadcast_to(params["bias_k"], (n, 1, e))], axis=1)
            v = fnp.concatenate([v, fnp.broadcast_to(params["bias_v"], (n, 1, e))], axis=1)
        if self.add_zero_attn:
            zeros = fnp.zeros((shape_of(k)[0], 1, e), dtype_of(k))
            k, v = fnp.concatenate([k, zeros], axis=1), fnp.concatenate([v, zeros], axis=1)
        return q, k, v

    def _attend(self, q, k, v, key_padding_mask, attn_mask, is_causal, need_weights, dropout_key,
                train):
        """Scaled dot-product attention per head: ``(N, L, E)`` output and ``(N, H, L, S)`` weights."""
        (n, length, e), s, h = shape_of(q), shape_of(k)[1], self.num_heads
        heads = functools.partial(_split_heads, heads=h)
        q, k, v = heads(q), heads(k), heads(v)                     # (N, H, len, E / H)
        scores = fnp.matmul(q * (1.0 / math.sqrt(e // h)), fnp.swapaxes(k, -1, -2))  # (N, H, L, S)
        extra = int(self.add_bias_kv) + int(self.add_zero_attn)    # key columns appended by _project
        mask = self._mask(attn_mask, is_causal, key_padding_mask, n, length, s, extra, dtype_of(q))
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        if train and self.dropout > 0:
            if dropout_key is None:
                raise ValueError(f"{self.describe()}.apply: train=True with dropout={self.dropout} "
                                 f"needs dropout_key=<a fgrad.random key>")
            weights = F.dropout(weights, self.dropout, training=True, key=dropout_key)
        out = fnp.matmul(weights, v)                                # (N, H, L, E / H)
        out = fnp.reshape(fnp.swapaxes(out, 1, 2), (n, length, e))
        return out, (weights if need_weights else None)

    def _mask(self, attn_mask, is_causal, key_padding_mask, n, length, s, extra, dtype):
        """The additive mask ``(N or 1, H or 1, L, S)``; ``extra`` key columns (bias_kv, zero
        attention) are appended unmasked, as torch pads its masks."""
        if attn_mask is None and is_causal:
            attn_mask = causal_mask(max(length, s - extra))[:length, :s - extra]
        total = None
        if attn_mask is not None:
            mask = additive_mask(attn_mask, dtype)
            shape = shape_of(mask)
            if shape == (length, s - extra):
                mask = fnp.reshape(mask, (1, 1, length, s - extra))
            elif shape == (n * self.num_heads, length, s - extra):
                mask = fnp.reshape(mask, (n, self.num_heads, length, s - extra))
            else:
                raise ValueError(f"{self.describe()}.apply: attn_mask must have shape "
                                 f"{(length, s - extra)} or {(n * self.num_heads, length, s - extra)}, "
                                 f"got {shape}")
            total = mask
        if key_padding_mask is not None:
            if shape_of(key_padding_mask) != (n, s - extra):
                raise ValueError(f"{self.describe()}.apply: key_padding_mask must have shape "
                                 f"{(n, s - extra)} (batch, source length), got {shape_of(key_padding_mask)}")
            padding = fnp.reshape(additive_mask(key_padding_mask, dtype), (n, 1, 1, s - extra))
            total = padding if total is None else total + padding
        if total is not None and extra:
            total = fnp.pad(total, ((0, 0),) * 3 + ((0, extra),))
        return total


def _split_heads(x, heads):
    """``(N, len, E)`` -> ``(N, heads, len, E / heads)``."""
    n, length, e = shape_of(x)
    return fnp.swapaxes(fnp.reshape(x, (n, length, heads, e // heads)), 1, 2)
