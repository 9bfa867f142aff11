"""A fused LSTM layer: one layer and direction over a whole sequence as one ``custom_vjp``.

``fnn.LSTM`` runs through :func:`lstm_sequence` (when it has no projection and no dropout
between layers). The function has two implementations of the same math, as the GPT kernels of
``fnn/models/_kernels.py``:

* a **fast path** in plain NumPy, taken when every array argument is a ``numpy.ndarray`` (no
  transform traces them; under ``grad`` the reverse trace hands the custom rule its NumPy
  primals, and ``jit`` calls the rule on the replay's arrays). As torch's ``nn.LSTM``, it
  computes the input projection ``x W_ih^T + b`` of every step in one GEMM, runs the recurrence
  with one GEMM and a few in-place NumPy operations per step, and saves the gate activations
  for a hand-written backward pass, which ends with one GEMM each for ``W_ih``, ``W_hh`` and
  ``x``. The tape gets one node for the whole sequence instead of ~20 per step;
* a **reference** written in ``fgrad.numpy`` (:func:`lstm_sequence_reference`), used whenever a
  value is traced (``vmap``, ``jvp``, staging, ``grad(grad(f))``), and for the backward pass
  whenever the cotangent is traced (``jacrev``'s vmapped pullback): there the rule is the VJP
  of the reference, so every transform composes.

The gates (torch's order i, f, g, o), for each step ``t`` (in reverse order when ``reverse``)::

    a = x_t W_ih^T + b_ih + h W_hh^T + b_hh             (N, 4H)
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);   g = tanh(a_g)
    c' = f c + i g;   h' = o tanh(c')

and the backward pass, with ``dh`` and ``dc`` the cotangents flowing into step ``t``::

    dh_t = d_out_t + dh;   dc_t = dc + dh_t o (1 - tanh(c')^2)
    da_o = dh_t tanh(c') o (1 - o);   da_i = dc_t g i (1 - i)
    da_f = dc_t c f (1 - f);          da_g = dc_t i (1 - g^2)
    dh <- da W_hh;   dc <- dc_t f;    W_hh_bar += da^T h;   W_ih_bar += da^T x_t;   b_bar += sum da

The fast path computes the four gates with one ``exp`` over the block of pre-activations
(``sigmoid(x) = 1 / (1 + e^-x)``, ``tanh(x) = 2 sigmoid(2x) - 1``; see :func:`_gates_`): it
agrees with the reference's ``sigmoid`` and ``tanh`` to within a few ulp of 1 (absolute).

Measured in ``benchmarks/bench_nn`` (LSTM(64, 128), batch 32, 50 steps, float32, one thread,
CPU time, interleaved with torch on the loaded 2-core machine): forward+backward 147 ms with
the cell-by-cell tape, 53 ms with this kernel, torch eager 38.5 ms (3.8x -> 1.4x).
"""
from __future__ import annotations

import functools

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of

from .. import functional as F

__all__ = ["lstm_sequence", "lstm_sequence_reference"]


def _all_numpy(*arrays):
    # isinstance: fgrad.numpy's creation functions return an ndarray subclass inside transforms
    return all(isinstance(a, np.ndarray) for a in arrays)


def _unstack(x):
    """The steps of a sequence ``x`` of shape ``(L, ...)``: ``L`` arrays of shape ``(...)``.

    One ``split`` rather than ``L`` slices ``x[t]``: under ``grad`` the cotangent of a slice of a
    tracked array is a full-size array, which would make the backward pass quadratic in ``L``.
    """
    n = shape_of(x)[0]
    if n == 0:
        return []
    return [fnp.reshape(piece, shape_of(piece)[1:]) for piece in fnp.split(x, n, axis=0)]


# --------------------------------------------------------------------------------------------
# The reference: fgrad.numpy, differentiable and batchable by every transform
# --------------------------------------------------------------------------------------------

def lstm_sequence_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False):
    """``(out, h_n, c_n)`` of one LSTM layer over ``x`` ``(L, N, in)`` from ``h0``, ``c0``
    ``(N, H)``: ``out`` ``(L, N, H)`` holds every step's ``h`` (in time order also when
    ``reverse``, which runs the recurrence from the last step to the first)."""
    xw = F.linear(x, w_ih, b_ih)                    # every step's input projection, one GEMM
    if b_hh is not None:
        xw = xw + b_hh
    steps = _unstack(xw)
    h, c = h0, c0
    outs = [None] * len(steps)
    for t in (range(len(steps) - 1, -1, -1) if reverse else range(len(steps))):
        i, f, g, o = fnp.split(steps[t] + F.linear(h, w_hh), 4, axis=-1)
        c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
        h = F.sigmoid(o) * F.tanh(c)
        outs[t] = h
    if not outs:
        dtype = np.result_type(*(dtype_of(a) for a in (x, h0, w_ih, w_hh)))
        return fnp.zeros((0,) + shape_of(h0), dtype), h, c
    return fnp.stack(outs), h, c


# --------------------------------------------------------------------------------------------
# The NumPy fast path
# --------------------------------------------------------------------------------------------

def _gates_(a, hidden):
    """The pre-activations ``a`` ``(N, 4H)`` become the gates i, f, g, o, in place, with one
    ``exp`` over the whole block: ``sigmoid(x) = 1 / (1 + e^-x)`` and
    ``tanh(x) = 2 sigmoid(2x) - 1`` (NumPy's float32 exp is ~2.5x faster than its tanh here)."""
    g = a[:, 2 * hidden:3 * hidden]
    g *= 2.0
    np.negative(a, out=a)
    with np.errstate(over="ignore"):      # e^-x = inf where x < -88 (float32): sigmoid 0, exact
        np.exp(a, out=a)
    a += 1.0
    np.reciprocal(a, out=a)
    g *= 2.0
    g -= 1.0


def _forward_numpy(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """``(out, h_n, c_n), saved``: the recurrence in NumPy, keeping the gate activations, every
    ``c`` and ``tanh(c)`` for the backward pass."""
    length, batch, n_in = x.shape
    hidden = w_hh.shape[1]
    dtype = np.result_type(x, h0, c0, w_ih, w_hh, *(b for b in (b_ih, b_hh) if b is not None))
    # acts[t] holds the pre-activations a_t, then (in place) the gates i, f, g, o
    acts = (x.reshape(length * batch, n_in) @ w_ih.T).astype(dtype, copy=False)
    acts = acts.reshape(length, batch, 4 * hidden)
    for b in (b_ih, b_hh):
        if b is not None:
            acts += b
    cs = np.empty((length, batch, hidden), dtype)
    tanh_cs = np.empty_like(cs)
    out = np.empty_like(cs)
    h, c = h0.astype(dtype, copy=False), c0.astype(dtype, copy=False)
    w_hh_t = w_hh.T
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        a = acts[t]
        a += h @ w_hh_t
        _gates_(a, hidden)
        i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c_new = cs[t]
        np.multiply(f, c, out=c_new)
        c_new += i * g                               # c' = f c + i g
        np.tanh(c_new, out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=out[t])       # h' = o tanh(c')
        h, c = out[t], c_new
    return (out, h.copy(), c.copy()), (acts, cs, tanh_cs, out)


def _backward_numpy(primals, saved, reverse, d_out, d_h, d_c):
    """The cotangents of ``(x, h0, c0, w_ih, w_hh, b_ih, b_hh)`` (see the module docstring)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = primals
    acts, cs, tanh_cs, out = saved
    length, batch, n_in = x.shape
    hidden = w_hh.shape[1]
    d_acts = np.empty_like(acts)
    dh = np.array(d_h, acts.dtype)
    dc = np.array(d_c, acts.dtype)
    order = range(length - 1, -1, -1) if reverse else range(length)
    for step, t in enumerate(reversed(order)):
        prev = order[len(order) - step - 2] if step < length - 1 else None   # the step before t
        c_prev = c0 if prev is None else cs[prev]
        a, da = acts[t], d_acts[t]
        i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
        da_i, da_f, da_g, da_o = (da[:, k * hidden:(k + 1) * hidden] for k in range(4))
        tc = tanh_cs[t]
        dh_t = d_out[t] + dh
        np.multiply(dh_t, tc, out=da_o)
        da_o *= o
        da_o *= 1 - o                                # da_o = dh_t tanh(c') o (1 - o)
        tmp = tc * tc
        np.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh_t
        dc += tmp                                    # dc_t = dc + dh_t o (1 - tanh(c')^2)
        np.multiply(dc, g, out=da_i)
        da_i *= i
        da_i *= 1 - i                                # da_i = dc_t g i (1 - i)
        np.multiply(dc, c_prev, out=da_f)
        da_f *= f
        da_f *= 1 - f                                # da_f = dc_t c f (1 - f)
        np.multiply(g, g, out=da_g)
        np.subtract(1, da_g, out=da_g)
        da_g *= i
        da_g *= dc                                   # da_g = dc_t i (1 - g^2)
        dc *= f                                      # dc <- dc_t f
        dh = da @ w_hh                               # dh <- da W_hh
    # h_prev[t]: the state step t started from (h0 for the first step in the running order)
    if length == 0:
        h_prev = out
    elif reverse:
        h_prev = np.concatenate([out[1:], h0[None].astype(out.dtype, copy=False)])
    else:
        h_prev = np.concatenate([h0[None].astype(out.dtype, copy=False), out[:-1]])
    flat_da = d_acts.reshape(length * batch, 4 * hidden)
    d_w_hh = flat_da.T @ h_prev.reshape(length * batch, hidden)
    d_w_ih = flat_da.T @ x.reshape(length * batch, n_in)
    d_x = (flat_da @ w_ih).reshape(x.shape)
    d_b = flat_da.sum(axis=0)
    return (d_x, dh, dc, d_w_ih, d_w_hh, None if b_ih is None else d_b,
            None if b_hh is None else d_b.copy())


# --------------------------------------------------------------------------------------------
# The custom_vjp and the public entry point
# --------------------------------------------------------------------------------------------

@functools.partial(fgrad.custom_vjp, nondiff_argnums=(7,))
def _lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    arrays = (x, h0, c0, w_ih, w_hh) + tuple(b for b in (b_ih, b_hh) if b is not None)
    if _all_numpy(*arrays):
        return _forward_numpy(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)[0]
    return lstm_sequence_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)


def _lstm_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    primals = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if _all_numpy(*(p for p in primals if p is not None)):
        outs, saved = _forward_numpy(*primals, reverse)
        return outs, (primals, saved)
    return lstm_sequence_reference(*primals, reverse), (primals, None)


def _lstm_bwd(reverse, residuals, cts):
    primals, saved = residuals
    if saved is not None and _all_numpy(*cts):
        return _backward_numpy(primals, saved, reverse, *cts)
    # a traced primal or cotangent: the VJP of the reference (differentiable values only)
    positions = [k for k, p in enumerate(primals) if p is not None]

    def reference(*values):
        full = list(primals)
        for k, v in zip(positions, values):
            full[k] = v
        return lstm_sequence_reference(*full, reverse)
    _, pullback = fgrad.vjp(reference, *(primals[k] for k in positions))
    got = dict(zip(positions, pullback(tuple(cts))))
    return tuple(got.get(k) for k in range(len(primals)))


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """One LSTM layer over a whole sequence: ``(out, h_n, c_n)``.

    ``x`` ``(L, N, in)`` (or unbatched ``(L, in)``), ``h0``/``c0`` ``(N, H)`` (``(H,)``),
    torch's weights ``w_ih`` ``(4H, in)``, ``w_hh`` ``(4H, H)``, biases ``(4H,)`` or None;
    ``out`` ``(L, N, H)`` is every step's ``h`` in time order, also when ``reverse`` runs the
    recurrence backwards (the second direction of a bidirectional LSTM). Equal to
    :func:`lstm_sequence_reference`, fused where the arguments are NumPy arrays.
    """
    unbatched = len(shape_of(x)) == 2
    if unbatched:
        x, h0, c0 = fnp.expand_dims(x, 1), fnp.expand_dims(h0, 0), fnp.expand_dims(c0, 0)
    out, h, c = _lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, bool(reverse))
    if unbatched:
        out, h, c = out[:, 0], h[0], c[0]
    return out, h, c
