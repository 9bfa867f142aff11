"""The fused LSTM layer (``fnn/layers/_recurrent_kernels.py``): its NumPy fast path and
hand-written backward pass agree with the fgrad.numpy reference under every transform.

``tests/test_layers.py`` checks ``fnn.LSTM`` (which runs through the kernel) against
``torch.nn.LSTM``; here the kernel is compared with its reference directly, on drawn shapes,
both directions, with and without biases, in float64 (the reference is differentiated by
fgrad's own reverse mode, which the op tables check against torch.func and finite differences).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import fnn
from fnn.layers import _recurrent_kernels as K
from fnn.layers._recurrent_kernels import lstm_sequence, lstm_sequence_reference

TOL = dict(rtol=1e-9, atol=1e-12)


def draw_args(rng, length, batch, n_in, hidden, bias=True, dtype=np.float64):
    shapes = [(length, batch, n_in), (batch, hidden), (batch, hidden), (4 * hidden, n_in),
              (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]
    args = [rng.standard_normal(s).astype(dtype) for s in shapes]
    if not bias:
        args[5] = args[6] = None
    return args


def loss_of(fn, cts, reverse):
    """``sum_k <out_k, ct_k>`` over the three outputs, as a function of the seven arguments."""
    def loss(*args):
        outs = fn(*args, reverse=reverse)
        return sum(fnp.sum(o * c) for o, c in zip(outs, cts))
    return loss


def assert_all_close(got, expected, **tol):
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, **(tol or TOL))


@settings(max_examples=30, deadline=None)
@given(length=st.integers(0, 5), batch=st.integers(1, 3), n_in=st.integers(1, 4),
       hidden=st.integers(1, 4), reverse=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_fast_path_and_its_backward_match_the_reference(length, batch, n_in, hidden, reverse,
                                                        bias, seed):
    rng = np.random.default_rng(seed)
    args = draw_args(rng, length, batch, n_in, hidden, bias)
    outs = lstm_sequence(*args, reverse=reverse)
    assert_all_close(outs, lstm_sequence_reference(*args, reverse=reverse))
    cts = [rng.standard_normal(np.shape(o)) for o in outs]
    argnums = tuple(i for i, a in enumerate(args) if a is not None)
    got = fgrad.grad(loss_of(lstm_sequence, cts, reverse), argnums=argnums)(*args)
    expected = fgrad.grad(loss_of(lstm_sequence_reference, cts, reverse), argnums=argnums)(*args)
    assert_all_close(got, expected)


def test_the_fast_path_runs_under_grad(monkeypatch, rng):
    """Under grad of NumPy inputs the forward and backward passes are the NumPy kernels (and
    the reference never runs); the recorded tape has one node for the whole sequence."""
    args = draw_args(rng, 6, 2, 3, 4)
    calls = []
    real_fwd, real_bwd = K._forward_numpy, K._backward_numpy
    monkeypatch.setattr(K, "_forward_numpy", lambda *a: calls.append("fwd") or real_fwd(*a))
    monkeypatch.setattr(K, "_backward_numpy", lambda *a: calls.append("bwd") or real_bwd(*a))
    monkeypatch.setattr(K, "lstm_sequence_reference", lambda *a, **k: pytest.fail("reference ran"))
    fgrad.grad(lambda x, w: fnp.sum(lstm_sequence(x, *args[1:3], w, *args[4:])[0]),
               argnums=(0, 1))(args[0], args[3])
    assert calls == ["fwd", "bwd"]


def test_gates_match_sigmoid_and_tanh_at_extremes():
    a = np.array([[-1e4, -100.0, -1e-8, 0.0, 1e-8, 3.0, 100.0, 1e4]], np.float32)
    block = np.concatenate([a, a, a, a], axis=1)        # hidden = 8: i, f, g, o
    K._gates_(block, 8)
    sig = torch.sigmoid(torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(block[:, :8], sig, atol=2e-7)
    np.testing.assert_allclose(block[:, 8:16], sig, atol=2e-7)
    np.testing.assert_allclose(block[:, 16:24], np.tanh(a), atol=2e-7)
    np.testing.assert_allclose(block[:, 24:], sig, atol=2e-7)
    assert np.isfinite(block).all()


@pytest.mark.parametrize("reverse", [False, True])
def test_other_transforms_use_the_reference(reverse, rng):
    args = draw_args(rng, 4, 2, 3, 3)
    ref = lambda *a: lstm_sequence_reference(*a, reverse=reverse)   # noqa: E731
    fused = lambda *a: lstm_sequence(*a, reverse=reverse)            # noqa: E731
    # vmap over a batch of sequences (the kernel sees BatchTracers: the reference path)
    xs = rng.standard_normal((2,) + args[0].shape)
    assert_all_close(fgrad.vmap(lambda x: fused(x, *args[1:]))(xs),
                     fgrad.vmap(lambda x: ref(x, *args[1:]))(xs))
    # forward mode
    tangents = tuple(rng.standard_normal(a.shape) for a in args)
    assert_all_close(fgrad.jvp(fused, tuple(args), tangents)[1],
                     fgrad.jvp(ref, tuple(args), tangents)[1])
    # jacrev: the pullback runs under vmap, so the cotangents are traced (the fallback rule)
    j_fused = fgrad.jacrev(lambda w: fused(args[0], *args[1:4], w, *args[5:])[1])(args[4])
    j_ref = fgrad.jacrev(lambda w: ref(args[0], *args[1:4], w, *args[5:])[1])(args[4])
    np.testing.assert_allclose(j_fused, j_ref, **TOL)
    # per-example gradients and second order
    per_example = fgrad.vmap(fgrad.grad(lambda x, w: fnp.sum(fused(x, *args[1:3], w, *args[4:])[0] ** 2),
                                        argnums=1), in_axes=(0, None))(xs, args[3])
    looped = [fgrad.grad(lambda w: fnp.sum(ref(x, *args[1:3], w, *args[4:])[0] ** 2))(args[3])
              for x in xs]
    np.testing.assert_allclose(per_example, np.stack(looped), **TOL)
    hvp = fgrad.grad(lambda x: fnp.sum(fgrad.grad(lambda y: fnp.sum(fused(y, *args[1:])[2] ** 2))(x) ** 2))
    hvp_ref = fgrad.grad(lambda x: fnp.sum(fgrad.grad(lambda y: fnp.sum(ref(y, *args[1:])[2] ** 2))(x) ** 2))
    np.testing.assert_allclose(hvp(args[0]), hvp_ref(args[0]), **TOL)


def test_jit_of_grad_matches_eager(rng):
    args = draw_args(rng, 5, 2, 3, 4)
    loss = lambda x, w: fnp.sum(lstm_sequence(x, *args[1:3], w, *args[4:])[0] ** 2)   # noqa: E731
    step = fgrad.value_and_grad(loss, argnums=(0, 1))
    got, expected = fgrad.jit(step)(args[0], args[3]), step(args[0], args[3])
    np.testing.assert_allclose(got[0], expected[0], **TOL)
    assert_all_close(got[1], expected[1])


def test_unbatched_and_float32(rng):
    args = draw_args(rng, 4, 1, 3, 5, dtype=np.float32)
    out, h, c = lstm_sequence(args[0][:, 0], args[1][0], args[2][0], *args[3:])
    batched = lstm_sequence(*args)
    assert out.shape == (4, 5) and h.shape == c.shape == (5,) and out.dtype == np.float32
    np.testing.assert_allclose(out, batched[0][:, 0], rtol=1e-6)
    ref = lstm_sequence_reference(*args)
    np.testing.assert_allclose(batched[0], ref[0], atol=1e-6)


def test_layer_with_dropout_or_projection_runs_the_cell_loop(rng):
    """Dropout between layers (per-step keys) and proj_size keep the per-step loop; both still
    match the fused layer's results where they coincide (train=False, no projection)."""
    lstm = fnn.LSTM(3, 4, 2, dropout=0.5, dtype=np.float64)
    params = lstm.init(fgrad.random.key(0))
    x = rng.standard_normal((5, 2, 3))
    fused = lstm.apply(params, x)
    loop = fnn.LSTM(3, 4, 2, dtype=np.float64)._cell_loop
    steps = list(x)
    for layer in range(2):
        w = {n: params.get(f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
        steps, _ = loop(w, steps, (np.zeros((2, 4)), np.zeros((2, 4))), reverse=False)
    np.testing.assert_allclose(fused[0], np.stack(steps), **TOL)
    out, _ = lstm.apply(params, x, key=fgrad.random.key(1), train=True)
    assert out.shape == (5, 2, 4)
