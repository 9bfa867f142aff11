"""The operations a GPT forward pass is made of, fused for speed: ``conv1d`` (``x @ W + b``),
the tied LM head (``x @ E^T``), ``layer_norm`` over the last axis, the tanh GELU and causal
``attention``.

Each one is a :class:`fgrad.custom_vjp` function with two implementations of the same math:

* a **fast path** in plain NumPy, taken when every array argument is a ``numpy.ndarray`` (no
  transform is tracing the inputs; under ``grad`` the reverse trace hands the custom rule the
  primal NumPy values, so training steps take it). The forward pass is one node on the tape
  instead of the 5 to 15 that the same formula written in fgrad.numpy records, works in place
  where it can, and saves exactly what the hand-written backward pass needs;
* a **reference** written in ``fgrad.numpy`` (``*_reference``), used whenever a value is being
  traced (``vmap``, ``jvp``, staging, or the inner function of ``grad(grad(f))``), and for the
  backward pass whenever the cotangent is traced (``jacrev``'s vmapped pullback): there the
  rule is the VJP of the reference itself, so every transform composes as for any other
  fgrad.numpy code.

Measured on nanoGPT's CPU "baby GPT" shape (GPT-2 with 4 layers of width 128, 4 heads, a
batch of 12 x 64 tokens, vocabulary 65, float32, one BLAS thread, loss and gradient of every
parameter): the same model written with fgrad.numpy formulas records ~1,500 tape nodes and
takes ~250 ms a step; with these kernels, ~160 nodes and ~155 ms, torch eager's 157 ms for
HF's GPT2LMHeadModel (interleaved runs, best of 10). The matrix products, the same BLAS
calls in both, are ~120 ms of it.
"""
from __future__ import annotations

import math

import numpy as np

import fgrad
import fgrad.numpy as fnp

from .. import functional as F

__all__ = ["conv1d", "tied_head", "layer_norm", "gelu_tanh", "gelu_erf", "attention", "softmax",
           "token_cross_entropy"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _all_numpy(*arrays):
    return all(type(a) is np.ndarray for a in arrays)


def _fallback_bwd(reference, primals, g, nondiff=()):
    """The cotangents of ``reference``'s inputs by fgrad's own reverse mode (traced ``g``)."""
    _, pullback = fgrad.vjp(lambda *a: reference(*a, *nondiff), *primals)
    return tuple(pullback(g))


# --------------------------------------------------------------------------------------------
# conv1d: x @ W + b
# --------------------------------------------------------------------------------------------

def conv1d_reference(x, weight, bias):
    return fnp.matmul(x, weight) + bias


@fgrad.custom_vjp
def _conv1d(x, weight, bias):
    if _all_numpy(x, weight, bias):
        out = x @ weight
        out += bias
        return out
    return conv1d_reference(x, weight, bias)


def _conv1d_fwd(x, weight, bias):
    return _conv1d(x, weight, bias), (x, weight, bias)


def _conv1d_bwd(res, g):
    x, weight, bias = res
    if not _all_numpy(g, x, weight):
        return _fallback_bwd(conv1d_reference, res, g)
    # y = x W + b:  x_bar = g W^T,  W_bar = x^T g,  b_bar = sum_rows g  (BLAS reads the .T views)
    return g @ weight.T, x.T @ g, g.sum(axis=0)


_conv1d.defvjp(_conv1d_fwd, _conv1d_bwd)


def conv1d(x, weight, bias):
    """``x @ weight + bias`` for ``x`` ``(N, in)``, ``weight`` ``(in, out)`` (HF's Conv1D)."""
    if _all_numpy(x, weight, bias):      # nothing traced: the NumPy forward, no custom_vjp call
        return _conv1d.fun(x, weight, bias)
    return _conv1d(x, weight, bias)


# --------------------------------------------------------------------------------------------
# tied_head: x @ E^T, the logits of a language model whose head is its token embedding E
# --------------------------------------------------------------------------------------------

def tied_head_reference(x, embedding):
    return fnp.tensordot(x, embedding, axes=([1], [1]))


@fgrad.custom_vjp
def _tied_head(x, embedding):
    if _all_numpy(x, embedding):
        return x @ embedding.T        # BLAS reads the transposed view: no copy of the table
    return tied_head_reference(x, embedding)


def _tied_head_fwd(x, embedding):
    return _tied_head(x, embedding), (x, embedding)


def _tied_head_bwd(res, g):
    x, embedding = res
    if not _all_numpy(g, x, embedding):
        return _fallback_bwd(tied_head_reference, res, g)
    # y = x E^T:  x_bar = g E,  E_bar = g^T x
    return g @ embedding, g.T @ x


_tied_head.defvjp(_tied_head_fwd, _tied_head_bwd)


def tied_head(x, embedding):
    """``x @ embedding.T`` for ``x`` ``(N, C)`` and ``embedding`` ``(V, C)``: logits ``(N, V)``.

    (fgrad.numpy's matmul of a transposed operand copies the ``(V, C)`` table, 25 MB per call
    for GPT-2's vocabulary; NumPy's hands the transposed view to BLAS.)"""
    if _all_numpy(x, embedding):
        return _tied_head.fun(x, embedding)
    return _tied_head(x, embedding)


# --------------------------------------------------------------------------------------------
# layer_norm over the last axis
# --------------------------------------------------------------------------------------------

def layer_norm_reference(x, weight, bias, eps):
    mean = fnp.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = fnp.mean(centered * centered, axis=-1, keepdims=True)
    return centered / fnp.sqrt(var + eps) * weight + bias


def _layer_norm_numpy(x, weight, bias, eps):
    """``(y, x_hat, rstd)`` with ``x_hat = (x - mean) * rstd``, ``rstd = 1 / sqrt(var + eps)``."""
    x_hat = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(x_hat * x_hat, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    x_hat *= rstd
    y = x_hat * weight
    y += bias
    return y, x_hat, rstd


def _layer_norm_fun(x, weight, bias, eps):
    if _all_numpy(x, weight, bias):
        return _layer_norm_numpy(x, weight, bias, eps)[0]
    return layer_norm_reference(x, weight, bias, eps)


def _layer_norm_fwd(x, weight, bias, eps):
    if _all_numpy(x, weight, bias):
        y, x_hat, rstd = _layer_norm_numpy(x, weight, bias, eps)
        return y, (x, weight, bias, x_hat, rstd)
    return layer_norm_reference(x, weight, bias, eps), (x, weight, bias, x, x)


def _layer_norm_bwd(eps, res, g):
    x, weight, bias, x_hat, rstd = res
    if not _all_numpy(g, x, x_hat):
        return _fallback_bwd(layer_norm_reference, (x, weight, bias), g, (eps,))
    # y = x_hat w + b, x_hat = (x - mean) rstd:
    # x_bar = rstd (gw - mean(gw) - x_hat mean(gw x_hat)) with gw = g w
    axes = tuple(range(g.ndim - 1))
    w_bar = np.sum(g * x_hat, axis=axes)
    b_bar = np.sum(g, axis=axes)
    gw = g * weight
    x_bar = gw - gw.mean(axis=-1, keepdims=True)
    gw *= x_hat
    x_bar -= x_hat * gw.mean(axis=-1, keepdims=True)
    x_bar *= rstd
    return x_bar, w_bar, b_bar


_layer_norm = fgrad.custom_vjp(_layer_norm_fun, nondiff_argnums=(3,))
_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis (biased variance, as torch) with ``weight`` and ``bias``."""
    if _all_numpy(x, weight, bias):
        return _layer_norm_numpy(x, weight, bias, eps)[0]
    return _layer_norm(x, weight, bias, eps)


# --------------------------------------------------------------------------------------------
# GELU, tanh approximation (HF's gelu_new): 0.5 x (1 + tanh(z)) = x sigmoid(2 z),
# z = sqrt(2/pi) (x + 0.044715 x^3)
# --------------------------------------------------------------------------------------------

def gelu_tanh_reference(x):
    return F.gelu(x, approximate="tanh")


def _gelu_tanh_numpy(x):
    """``(y, s)`` with ``s = sigmoid(2 z) = 1 / (1 + exp(-2 z))`` and ``y = x s``: the tanh
    written through one exp (NumPy's float32 exp is faster than its tanh), with no
    cancellation in ``1 + tanh(z)``."""
    s = x * x
    s *= -2.0 * _SQRT_2_OVER_PI * _GELU_A
    s -= 2.0 * _SQRT_2_OVER_PI
    s *= x                                   # -2 z
    with np.errstate(over="ignore"):         # exp(-2z) = inf for very negative x: s = 0
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)
    return x * s, s


@fgrad.custom_vjp
def _gelu_tanh(x):
    if _all_numpy(x):
        return _gelu_tanh_numpy(x)[0]
    return gelu_tanh_reference(x)


def _gelu_tanh_fwd(x):
    if _all_numpy(x):
        y, s = _gelu_tanh_numpy(x)
        return y, (x, s)
    return gelu_tanh_reference(x), (x, x)


def _gelu_tanh_bwd(res, g):
    x, s = res
    if not _all_numpy(g, x):
        return _fallback_bwd(gelu_tanh_reference, (x,), g)
    # d/dx [x s(2z)] = s + x s (1 - s) 2 z',   z' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    d = x * x
    d *= 2.0 * _SQRT_2_OVER_PI * 3.0 * _GELU_A
    d += 2.0 * _SQRT_2_OVER_PI
    d *= x
    d *= s
    d *= 1.0 - s
    d += s
    d *= g
    return (d,)


_gelu_tanh.defvjp(_gelu_tanh_fwd, _gelu_tanh_bwd)


def gelu_tanh(x):
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: HF's gelu_new."""
    if _all_numpy(x):
        return _gelu_tanh_numpy(x)[0]
    return _gelu_tanh(x)


def gelu_erf(x):
    """``x Phi(x)`` with the exact normal CDF (HF's "gelu" in ACT2FN)."""
    return F.gelu(x)


# --------------------------------------------------------------------------------------------
# attention: softmax(q k^T scale + mask) v, per batch and head
# --------------------------------------------------------------------------------------------

def softmax(scores):
    """Softmax over the last axis; the row maximum is taken out as a constant."""
    top = fnp.max(fnp.stop_gradient(scores), axis=-1, keepdims=True)
    e = fnp.exp(scores - top)
    return e / fnp.sum(e, axis=-1, keepdims=True)


def attention_reference(q, k, v, scale, bias, allowed, fill, dropout_key, p):
    scores = fnp.matmul(q, fnp.swapaxes(k, -1, -2)) * scale                  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    else:
        scores = fnp.where(allowed, scores, fill)
    weights = softmax(scores)
    if dropout_key is not None:
        weights = F.dropout(weights, p, training=True, key=dropout_key)
    return fnp.matmul(weights, v)


def _attention_numpy(q, k, v, scale, bias, allowed, fill, dropout_key, p):
    """``(out, weights, keep)``: ``keep`` is dropout's mask of kept weights (None without dropout)."""
    scores = q @ k.swapaxes(-1, -2)
    scores *= scale
    if bias is not None:
        scores += bias
    else:
        scores = np.where(allowed, scores, fill)
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    if dropout_key is None:
        return scores @ v, scores, None
    keep = np.asarray(fgrad.random.bernoulli(dropout_key, 1.0 - p, scores.shape))
    return _dropped(scores, keep, p) @ v, scores, keep


def _dropped(x, keep, p):
    """Inverted dropout with a known mask: ``where(keep, x / (1 - p), 0)`` in ``x``'s dtype."""
    return np.where(keep, x / (1.0 - p), 0.0).astype(x.dtype, copy=False)


def _attention_fun(q, k, v, scale, bias, allowed, fill, dropout_key, p):
    if _all_numpy(q, k, v):
        return _attention_numpy(q, k, v, scale, bias, allowed, fill, dropout_key, p)[0]
    return attention_reference(q, k, v, scale, bias, allowed, fill, dropout_key, p)


def _attention_fwd(q, k, v, scale, bias, allowed, fill, dropout_key, p):
    if _all_numpy(q, k, v):
        out, weights, keep = _attention_numpy(q, k, v, scale, bias, allowed, fill, dropout_key, p)
        return out, (q, k, v, weights, keep)
    out = attention_reference(q, k, v, scale, bias, allowed, fill, dropout_key, p)
    return out, (q, k, v, q, None)


def _attention_bwd(scale, bias, allowed, fill, dropout_key, p, res, g):
    q, k, v, weights, keep = res
    if not _all_numpy(g, q, k, v, weights):
        return _fallback_bwd(attention_reference, (q, k, v), g,
                             (scale, bias, allowed, fill, dropout_key, p))
    # out = D v with D = dropout(W), W = softmax(S), S = scale q k^T (+ mask):
    # v_bar = D^T g;  D_bar = g v^T;  W_bar = D_bar * keep / (1 - p);
    # S_bar = W * (W_bar - rowsum(W_bar * W));  q_bar = scale S_bar k;  k_bar = scale S_bar^T q
    dropped = weights if keep is None else _dropped(weights, keep, p)
    v_bar = dropped.swapaxes(-1, -2) @ g
    w_bar = g @ v.swapaxes(-1, -2)
    if keep is not None:
        w_bar = _dropped(w_bar, keep, p)
    s_bar = w_bar
    s_bar -= np.sum(w_bar * weights, axis=-1, keepdims=True)
    s_bar *= weights
    if bias is None:                        # where(allowed, S, fill): no derivative where filled
        s_bar = np.where(allowed, s_bar, 0.0).astype(s_bar.dtype, copy=False)
    s_bar *= scale
    return s_bar @ k, s_bar.swapaxes(-1, -2) @ q, v_bar


_attention = fgrad.custom_vjp(_attention_fun, nondiff_argnums=(3, 4, 5, 6, 7, 8))
_attention.defvjp(_attention_fwd, _attention_bwd)


def attention(q, k, v, scale, bias=None, allowed=None, fill=None, dropout_key=None, p=0.0):
    """``softmax(q k^T * scale + mask) v`` per batch and head: q ``(B, H, T, d)``, k and v
    ``(B, H, S, d)`` -> ``(B, H, T, d)``.

    The mask is either an additive ``bias`` (broadcast to ``(B, H, T, S)``) or
    ``where(allowed, scores, fill)``; ``dropout_key`` drops attention weights with rate ``p``.
    Masks and keys that are themselves being traced take the fgrad.numpy reference directly.
    """
    if not all(m is None or type(m) is np.ndarray for m in (bias, allowed, fill, dropout_key)):
        return attention_reference(q, k, v, scale, bias, allowed, fill, dropout_key, p)
    if _all_numpy(q, k, v):
        return _attention_numpy(q, k, v, scale, bias, allowed, fill, dropout_key, p)[0]
    return _attention(q, k, v, scale, bias, allowed, fill, dropout_key, p)


# --------------------------------------------------------------------------------------------
# token_cross_entropy: mean over kept targets of logsumexp(z_t) - z_t[y_t]
# (with shift: position t predicts labels[t + 1], as HF's labels)
# --------------------------------------------------------------------------------------------

def _predicting(logits, labels, shift):
    """The logits that predict and their targets: ``(z, y)``, shifted by one when ``shift``."""
    return (logits[:, :-1], labels[:, 1:]) if shift else (logits, labels)


def token_cross_entropy_reference(logits, labels, ignore_index, shift):
    vocab = logits.shape[-1]
    z, y = _predicting(logits, labels, shift)
    return F.cross_entropy(fnp.reshape(z, (-1, vocab)), fnp.reshape(y, (-1,)),
                           ignore_index=ignore_index)


def _token_ce_numpy(logits, labels, ignore_index, shift):
    """``(loss, probs, targets, weight)``: the softmax of the predicting positions, the safe
    target ids and each position's weight in the mean (1 / count, or 0 when ignored)."""
    z, targets = _predicting(logits, labels, shift)
    kept = targets != ignore_index
    safe = np.where(kept, targets, 0)
    top = z.max(axis=-1, keepdims=True)
    probs = np.subtract(z, top)
    np.exp(probs, out=probs)
    total = probs.sum(axis=-1, keepdims=True)
    log_z = np.log(total) + top                                  # logsumexp, (B, T', 1)
    picked = np.take_along_axis(z, safe[..., None], axis=-1)
    count = kept.sum()
    weight = (kept / max(count, 1)).astype(logits.dtype)[..., None]
    # every target ignored: a NaN mean (0 / 0) with zero gradient, as torch and F.cross_entropy
    loss = np.sum((log_z - picked) * weight, dtype=logits.dtype) if count else np.nan
    probs /= total
    return np.asarray(loss, dtype=logits.dtype), probs, safe, weight


def _token_ce_fun(logits, labels, ignore_index, shift):
    if _all_numpy(logits, labels):
        return _token_ce_numpy(logits, labels, ignore_index, shift)[0]
    return token_cross_entropy_reference(logits, labels, ignore_index, shift)


def _token_ce_fwd(logits, labels, ignore_index, shift):
    if _all_numpy(logits, labels):
        loss, probs, safe, weight = _token_ce_numpy(logits, labels, ignore_index, shift)
        return loss, (logits, labels, probs, safe, weight)
    loss = token_cross_entropy_reference(logits, labels, ignore_index, shift)
    return loss, (logits, labels, None, None, None)


def _token_ce_bwd(ignore_index, shift, res, g):
    logits, labels, probs, safe, weight = res
    if probs is None or not _all_numpy(g, logits):
        return _fallback_bwd(lambda z, y: token_cross_entropy_reference(z, y, ignore_index, shift),
                             (logits,), g, (labels,)) + (None,)
    # d/dz_t [logsumexp(z_t) - z_t[y]] = softmax(z_t) - onehot(y), times the position's weight;
    # with shift the last position predicts nothing
    grad = np.zeros_like(logits) if shift else np.empty_like(logits)
    inner = grad[:, :-1] if shift else grad
    np.multiply(probs, weight * g, out=inner)
    np.put_along_axis(inner, safe[..., None],
                      np.take_along_axis(inner, safe[..., None], axis=-1) - weight * g, axis=-1)
    return grad, None    # the labels are integers: no cotangent


# The labels are an operand (not a nondiff argument, which must be a concrete value): under jit
# they are traced, and the replayed program hands the kernel their NumPy values.
_token_ce = fgrad.custom_vjp(_token_ce_fun, nondiff_argnums=(2, 3))
_token_ce.defvjp(_token_ce_fwd, _token_ce_bwd)


def token_cross_entropy(logits, labels, ignore_index=-100, shift=True):
    """Mean cross-entropy of ``logits`` ``(B, T, V)`` against the token ids ``labels`` ``(B,
    T)``, skipping ``ignore_index`` targets; with ``shift``, ``logits[:, t]`` is scored on
    ``labels[:, t + 1]``. One pass for the max, one for the exponentials, one for their sum
    (one more to scale them in the backward pass), where the fgrad.numpy formula makes a dozen
    passes over the ``(B, T, V)`` logits."""
    if _all_numpy(logits, labels):
        return _token_ce_numpy(logits, labels, ignore_index, shift)[0]
    return _token_ce(logits, labels, ignore_index, shift)
