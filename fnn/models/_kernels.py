"""The few operations a GPT forward pass is made of, written for speed.

``conv1d`` (``x @ W + b``, HF's Conv1D layout), ``layer_norm`` over the last axis, the two
GELUs and causal ``attention``. Each is a function of fgrad.numpy values, so every transform
applies to it.
"""
from __future__ import annotations

import math

import fgrad.numpy as fnp
from fgrad.primitives.dot import dot_general

from .. import functional as F

__all__ = ["conv1d", "layer_norm", "gelu_tanh", "gelu_erf", "attention", "softmax"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def conv1d(x, weight, bias):
    """``x @ weight + bias`` for ``x`` ``(N, in)``, ``weight`` ``(in, out)``: one GEMM."""
    return dot_general(x, weight, (((1,), (0,)), ((), ()))) + bias


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis (biased variance, as torch)."""
    mean = fnp.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = fnp.mean(centered * centered, axis=-1, keepdims=True)
    return centered * (1.0 / fnp.sqrt(var + eps)) * weight + bias


def gelu_tanh(x):
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: HF's gelu_new."""
    return F.gelu(x, approximate="tanh")


def gelu_erf(x):
    """``x Phi(x)`` with the exact normal CDF (HF's "gelu")."""
    return F.gelu(x)


def softmax(scores):
    """Softmax over the last axis; the row maximum is taken out as a constant."""
    top = fnp.max(fnp.stop_gradient(scores), axis=-1, keepdims=True)
    e = fnp.exp(scores - top)
    return e / fnp.sum(e, axis=-1, keepdims=True)


def attention(q, k, v, scale, bias=None, allowed=None, fill=None, dropout_key=None, p=0.0):
    """``softmax(q k^T * scale + mask) v`` per batch and head: q ``(B, H, T, d)``, k and v
    ``(B, H, S, d)`` -> ``(B, H, T, d)``.

    The mask is either an additive ``bias`` (broadcast to ``(B, H, T, S)``) or
    ``where(allowed, scores, fill)``; ``dropout_key`` drops attention weights with rate ``p``.
    """
    scores = dot_general(q * scale, k, (((3,), (3,)), ((0, 1), (0, 1))))     # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    else:
        scores = fnp.where(allowed, scores, fill)
    weights = softmax(scores)
    if dropout_key is not None:
        weights = F.dropout(weights, p, training=True, key=dropout_key)
    return dot_general(weights, v, (((3,), (2,)), ((0, 1), (0, 1))))
