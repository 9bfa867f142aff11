"""Scaled dot-product attention, as ``torch.nn.functional.scaled_dot_product_attention``.

``softmax(q k^T * scale + mask) v`` over the last two axes; every leading axis (batch, heads)
broadcasts. A boolean ``attn_mask`` marks the pairs that may attend (True = keep), a float mask
is added to the scores, and ``is_causal`` keeps the lower triangle (position ``i`` sees
``j <= i``, aligned at the top left as torch does when ``L != S``). A query row that may attend
to nothing gives zeros and zero gradients (torch's behaviour too), never NaN.

Dropout on the attention weights needs a random key. torch's third argument is already called
``key`` (the keys of attention), so the random key is the keyword-only ``dropout_key``.

>>> import numpy as np, fnn.functional as F
>>> q = k = v = np.random.rand(2, 4, 10, 16)           # (batch, heads, length, head_dim)
>>> F.scaled_dot_product_attention(q, k, v, is_causal=True).shape
(2, 4, 10, 16)
"""
from __future__ import annotations

import math

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of

from .dropout import dropout

__all__ = ["scaled_dot_product_attention"]


def _softmax_allowing_empty_rows(scores):
    """Softmax over the last axis; a row of only ``-inf`` gives zeros instead of NaN."""
    top = fnp.stop_gradient(fnp.max(scores, axis=-1, keepdims=True))
    top = fnp.where(fnp.isfinite(top), top, 0.0)
    weights = fnp.exp(scores - top)
    total = fnp.sum(weights, axis=-1, keepdims=True)
    return weights / fnp.where(total == 0, 1.0, total)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False, *,
                                 dropout_key=None):
    """Attention of ``query`` ``(..., L, E)`` over ``key`` ``(..., S, E)`` and ``value``
    ``(..., S, Ev)``; returns ``(..., L, Ev)``.

    ``attn_mask``: broadcastable to ``(..., L, S)``, boolean (True = may attend) or float
    (added to the scores). ``is_causal``: a lower-triangular mask (not together with
    ``attn_mask``). ``scale`` defaults to ``1 / sqrt(E)``. ``dropout_p > 0`` drops attention
    weights with the random key ``dropout_key``. ``enable_gqa``: ``key``/``value`` may have fewer
    heads (axis -3) than ``query``; each is shared by ``H_q / H_kv`` query heads.
    """
    fname = "fnn.functional.scaled_dot_product_attention"
    qs, ks, vs = shape_of(query), shape_of(key), shape_of(value)
    if len(qs) < 2 or len(ks) < 2 or len(vs) < 2 or qs[-1] != ks[-1] or ks[-2] != vs[-2]:
        raise ValueError(f"{fname}: expected query (..., L, E), key (..., S, E) and value "
                         f"(..., S, Ev), got {qs}, {ks} and {vs}")
    if enable_gqa and len(qs) >= 3 and ks[-3] != qs[-3]:
        if qs[-3] % ks[-3] or vs[-3] != ks[-3]:
            raise ValueError(f"{fname}: with enable_gqa the query heads ({qs[-3]}) must be a "
                             f"multiple of the key/value heads ({ks[-3]}, {vs[-3]})")
        key = fnp.repeat(key, qs[-3] // ks[-3], axis=-3)
        value = fnp.repeat(value, qs[-3] // vs[-3], axis=-3)
    if scale is None:
        scale = 1.0 / math.sqrt(qs[-1])
    scores = fnp.matmul(query, fnp.swapaxes(key, -1, -2)) * scale          # (..., L, S)
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{fname}: give either attn_mask or is_causal=True, not both")
        attn_mask = np.tril(np.ones((qs[-2], ks[-2]), dtype=bool))
    if attn_mask is not None:
        if dtype_of(attn_mask) == np.bool_:
            scores = fnp.where(attn_mask, scores, -np.inf)
        else:
            scores = scores + attn_mask
    weights = _softmax_allowing_empty_rows(scores)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, key=dropout_key)
    return fnp.matmul(weights, value)
