"""Convolutions, transposed convolutions, unfold/fold and pooling against torch.

Hypothesis draws shapes and hyper-parameters (kernel sizes, stride, padding incl. 'same' and
'valid', dilation, groups, output_padding, ceil_mode, count_include_pad); each example checks
the forward output, the VJP for every float argument and the JVP against torch in float64.
The window primitives are checked on their own (adjoint identity, linearity, batching), and
``vmap`` of conv2d (batched inputs, per-example weights, per-example gradients) against a loop.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import fnn.functional as F
from fgrad.primitives.conv import col2im, conv_windows
from functional_torch import check_against_torch

# the example budget of the loaded hypothesis profile (tests/conftest.py; the variable
# FGRAD_HYPOTHESIS_EXAMPLES overrides it), scaled per test by how much each example covers
EXAMPLES = settings.default.max_examples
SETTINGS = settings(deadline=None, max_examples=2 * EXAMPLES)
# torch's own warnings: pooling and unfold call into TorchScript, which warns about its
# deprecation; padding='same' with an even kernel warns that torch copies the input
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")]


def _rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# The window primitives
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(1, 3), data=st.data(), seed=st.integers(0, 2 ** 16))
def test_conv_windows_and_col2im_are_adjoint(n, data, seed):
    rng = _rng(seed)
    window = tuple(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    strides = tuple(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    dilation = tuple(data.draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)))
    spatial = tuple(d * (k - 1) + 1 + data.draw(st.integers(0, 4)) for k, d in zip(window, dilation))
    x = rng.standard_normal((2,) + spatial)
    windows = conv_windows(x, window, strides, dilation)
    c = rng.standard_normal(windows.shape)
    # <windows(x), c> = <x, col2im(c)>
    np.testing.assert_allclose(np.sum(windows * c),
                               np.sum(x * col2im(c, spatial, strides, dilation)), rtol=1e-12)
    # an entry of the windows is the input at o * stride + k * dilation
    o = tuple(int(rng.integers(m)) for m in windows.shape[1:1 + n])
    k = tuple(int(rng.integers(m)) for m in window)
    index = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
    assert windows[(1,) + o + k] == x[(1,) + index]


def test_window_primitives_rules():
    rng = _rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    t = rng.standard_normal(x.shape)
    args = ((3, 2), (2, 1), (1, 2))
    c = rng.standard_normal(conv_windows(x, *args).shape)

    def f(x):
        return fnp.sum(conv_windows(x, *args) * c)
    # linear: the JVP applies the primitive to the tangent, the gradient is col2im
    _, f_dot = fgrad.jvp(f, (x,), (t,))
    np.testing.assert_allclose(f_dot, f(t), rtol=1e-12)
    np.testing.assert_allclose(fgrad.grad(f)(x), col2im(c, (7, 6), *args[1:]), rtol=1e-12)
    g = fgrad.grad(lambda c: fnp.sum(col2im(c, (7, 6), *args[1:]) * x))(c)
    np.testing.assert_allclose(g, conv_windows(x, *args), rtol=1e-12)
    # batching along a spatial axis moves it in front; along a leading axis it stays
    for axis in (0, 1, 3):
        out = fgrad.vmap(lambda v: conv_windows(v, (2,), (1,), (1,)), in_axes=axis)(x)
        expected = np.stack([conv_windows(np.take(x, i, axis), (2,), (1,), (1,))
                             for i in range(x.shape[axis])])
        np.testing.assert_array_equal(out, expected)
    out = fgrad.vmap(lambda cc: col2im(cc, (7, 6), *args[1:]), in_axes=2)(c)
    np.testing.assert_allclose(out, np.stack([col2im(c[:, :, i], (7, 6), *args[1:])
                                              for i in range(c.shape[2])]))


def test_window_errors():
    with pytest.raises(ValueError, match=r"conv_windows: windows of shape \(3, 3\).*\(2, 5\)"):
        conv_windows(np.zeros((1, 2, 5)), (3, 3))
    with pytest.raises(ValueError, match="col2im: windows of shape"):
        col2im(np.zeros((1, 3, 3, 2, 2)), (9, 9))


# --------------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw, n):
    """Shapes and hyper-parameters of a valid n-d convolution."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = (1,) * n if kind == "same" else tuple(
        draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    if kind == "int":
        padding = draw(st.integers(0, 2))
        pads = (padding,) * n
    elif kind == "tuple":
        pads = padding = tuple(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    else:
        padding, pads = kind, (0,) * n
    spatial = tuple(max(1, d * (k - 1) + 1 - 2 * p + draw(st.integers(0, 4)))
                    for k, d, p in zip(kernel, dilation, pads))
    batch = draw(st.sampled_from([(), (1,), (2,)]))   # () is torch's unbatched input
    return dict(x=batch + (c_in,) + spatial, w=(c_out, c_in // groups) + kernel,
                bias=draw(st.booleans()), stride=stride, padding=padding, dilation=dilation,
                groups=groups)


def _check_conv(n, case, seed):
    rng = _rng(seed)
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0]) if case["bias"] else None
    hyper = (case["stride"], case["padding"], case["dilation"], case["groups"])
    ours, theirs = getattr(F, f"conv{n}d"), getattr(TF, f"conv{n}d")
    if b is None:
        check_against_torch(lambda x, w: ours(x, w, None, *hyper),
                            lambda x, w: theirs(x, w, None, *hyper), [x, w], (0, 1), rng=rng)
    else:
        check_against_torch(lambda x, w, b: ours(x, w, b, *hyper),
                            lambda x, w, b: theirs(x, w, b, *hyper), [x, w, b], (0, 1, 2), rng=rng)


@SETTINGS
@given(case=conv_cases(2), seed=st.integers(0, 2 ** 16))
def test_conv2d_matches_torch(case, seed):
    _check_conv(2, case, seed)


@settings(deadline=None, max_examples=EXAMPLES)
@given(case=conv_cases(1), seed=st.integers(0, 2 ** 16))
def test_conv1d_matches_torch(case, seed):
    _check_conv(1, case, seed)


@settings(deadline=None, max_examples=max(1, EXAMPLES // 2))
@given(case=conv_cases(3), seed=st.integers(0, 2 ** 16))
def test_conv3d_matches_torch(case, seed):
    _check_conv(3, case, seed)


@st.composite
def conv_transpose_cases(draw, n):
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    stride = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)))
    # padding may not eat the whole output: (L - 1) s + d (k - 1) + 1 + op - 2 p >= 1
    padding = tuple(draw(st.integers(0, max(0, ((m - 1) * s + d * (k - 1) + op) // 2)))
                    for m, s, d, k, op in zip(spatial, stride, dilation, kernel, output_padding))
    batch = draw(st.sampled_from([(), (2,)]))
    return dict(x=batch + (c_in,) + spatial, w=(c_in, c_out // groups) + kernel,
                bias=draw(st.booleans()), stride=stride, padding=padding,
                output_padding=output_padding, groups=groups, dilation=dilation)


@SETTINGS
@given(n=st.sampled_from([1, 2, 2, 3]), data=st.data(), seed=st.integers(0, 2 ** 16))
def test_conv_transpose_matches_torch(n, data, seed):
    case = data.draw(conv_transpose_cases(n))
    rng = _rng(seed)
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][1] * case["groups"]) if case["bias"] else None
    hyper = (case["stride"], case["padding"], case["output_padding"], case["groups"],
             case["dilation"])
    ours, theirs = getattr(F, f"conv_transpose{n}d"), getattr(TF, f"conv_transpose{n}d")
    check_against_torch(lambda x, w: ours(x, w, b, *hyper),
                        lambda x, w: theirs(x, w, None if b is None else torch.from_numpy(b),
                                            *hyper),
                        [x, w], (0, 1), rng=rng)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    rng = _rng(2)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    hyper = dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2)
    y = F.conv2d(x, w, **hyper)
    u = rng.standard_normal(y.shape)
    back = F.conv_transpose2d(u, w, output_padding=(0, 2), **hyper)   # recovers x's shape
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(y * u), np.sum(x * back), rtol=1e-12)


@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2 ** 16))
def test_unfold_fold_match_torch(data, seed):
    rng = _rng(seed)
    kernel = tuple(data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    dilation = tuple(data.draw(st.lists(st.integers(1, 2), min_size=2, max_size=2)))
    stride = tuple(data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    padding = tuple(data.draw(st.lists(st.integers(0, 1), min_size=2, max_size=2)))
    size = tuple(d * (k - 1) + 1 + data.draw(st.integers(0, 4)) for k, d in zip(kernel, dilation))
    hyper = dict(dilation=dilation, padding=padding, stride=stride)
    x = rng.standard_normal((2, 3) + size)
    cols = check_against_torch(lambda x: F.unfold(x, kernel, **hyper),
                               lambda x: TF.unfold(x, kernel, **hyper), [x], (0,), rng=rng)
    blocks = rng.standard_normal(cols.shape)
    check_against_torch(lambda c: F.fold(c, size, kernel, **hyper),
                        lambda c: TF.fold(c, size, kernel, **hyper), [blocks], (0,), rng=rng)


def test_conv2d_second_derivatives_match_torch():
    rng = _rng(3)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    v = rng.standard_normal(w.shape)

    def loss(w, x):
        return fnp.sum(fnp.tanh(F.conv2d(x, w, stride=2, padding=1)) ** 2)
    # Hessian-vector product in weight space, forward-over-reverse
    _, hvp = fgrad.jvp(lambda w: fgrad.grad(loss)(w, x), (w,), (v,))
    wt = torch.from_numpy(w).requires_grad_(True)
    g, = torch.autograd.grad((torch.tanh(TF.conv2d(torch.from_numpy(x), wt, stride=2,
                                                   padding=1)) ** 2).sum(), wt, create_graph=True)
    expected, = torch.autograd.grad(g, wt, torch.from_numpy(v))
    np.testing.assert_allclose(hvp, expected.numpy(), rtol=1e-9, atol=1e-12)
    # reverse-over-reverse with respect to the input agrees too
    gx = fgrad.grad(lambda x: fnp.sum(fgrad.grad(loss)(w, x) * v))(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    g, = torch.autograd.grad((torch.tanh(TF.conv2d(xt, wt, stride=2, padding=1)) ** 2).sum(), wt,
                             create_graph=True)
    expected, = torch.autograd.grad((g * torch.from_numpy(v)).sum(), xt)
    np.testing.assert_allclose(gx, expected.numpy(), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------
# vmap over conv2d equals a loop
# --------------------------------------------------------------------------------------------

def test_vmap_conv2d_equals_loop():
    rng = _rng(4)
    xs = rng.standard_normal((3, 2, 4, 7, 6))       # 3 batches of (N, C, H, W)
    ws = rng.standard_normal((3, 6, 2, 3, 3))       # per-batch weights, groups=2
    b = rng.standard_normal(6)
    conv = lambda x, w: F.conv2d(x, w, b, stride=(1, 2), padding=1, groups=2)  # noqa: E731
    np.testing.assert_allclose(fgrad.vmap(conv, in_axes=(0, None))(xs, ws[0]),
                               np.stack([conv(x, ws[0]) for x in xs]), rtol=1e-12)
    np.testing.assert_allclose(fgrad.vmap(conv)(xs, ws), np.stack([conv(x, w) for x, w in zip(xs, ws)]),
                               rtol=1e-12)
    # a mapped axis that is not the first, on unbatched (C, H, W) examples
    moved = np.moveaxis(xs[0], 0, 2)                # (C, H, N, W)
    np.testing.assert_allclose(fgrad.vmap(lambda x: conv(x, ws[0]), in_axes=2)(moved),
                               conv(xs[0], ws[0]), rtol=1e-12)


def test_per_example_gradients_of_a_conv_net_equal_a_loop():
    rng = _rng(5)
    x = rng.standard_normal((5, 1, 8, 8))
    y = np.array([0, 2, 1, 2, 0])
    params = {"w": rng.standard_normal((3, 1, 3, 3)), "b": rng.standard_normal(3),
              "v": rng.standard_normal((3, 3 * 2 * 2))}

    def loss(params, x, y):   # one example: x (1, 8, 8), y ()
        h = F.relu(F.conv2d(x, params["w"], params["b"], padding="same"))
        h = F.max_pool2d(h, 3, stride=3)
        return F.cross_entropy(F.linear(fnp.reshape(h, (-1,)), params["v"]), y)
    per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(params, x, y)
    for i in range(5):
        single = fgrad.grad(loss)(params, x[i], y[i])
        for k in params:
            np.testing.assert_allclose(per_example[k][i], single[k], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Errors name the function, what it expected and what it got
# --------------------------------------------------------------------------------------------

def test_conv_errors():
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-d input \(N, C, H, W\) or an "
                                         r"unbatched 3-d input \(C, H, W\), got shape \(8, 8\)"):
        F.conv2d(np.zeros((8, 8)), w)
    with pytest.raises(ValueError, match=r"conv2d: input of shape \(2, 5, 8, 8\) has 5 channels, "
                                         r"but weight of shape \(4, 3, 3, 3\) with groups=1 expects 3"):
        F.conv2d(np.zeros((2, 5, 8, 8)), w)
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-d weight .* got shape \(4, 3, 3\)"):
        F.conv2d(x, np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="conv2d: groups \\(2\\) must be positive and divide"):
        F.conv2d(x, np.zeros((3, 3, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        F.conv2d(np.zeros((1, 3, 2, 2)), w)
    with pytest.raises(ValueError, match=r"conv1d: expected a 3-d input \(N, C, L\)"):
        F.conv1d(x, np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding"):
        F.conv_transpose2d(x, np.zeros((3, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: input of shape \(2, 3, 8, 8\) has 3 "
                                         r"channels, but weight of shape \(4, 2, 3, 3\) expects 4"):
        F.conv_transpose2d(x, np.zeros((4, 2, 3, 3)))


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------

@st.composite
def pool_cases(draw, n, dilated=True):
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    stride = draw(st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=n, max_size=n).map(tuple)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))) if dilated else (1,) * n
    spatial = tuple(max(1, d * (k - 1) + 1 - 2 * p + draw(st.integers(0, 4)))
                    for k, d, p in zip(kernel, dilation, padding))
    batch = draw(st.sampled_from([(), (2,)]))
    return dict(x=batch + (2,) + spatial, kernel=kernel, stride=stride, padding=padding,
                dilation=dilation, ceil_mode=draw(st.booleans()))


@SETTINGS
@given(n=st.sampled_from([1, 2]), data=st.data(), seed=st.integers(0, 2 ** 16))
def test_max_pool_matches_torch(n, data, seed):
    case = data.draw(pool_cases(n))
    rng = _rng(seed)
    x = rng.standard_normal(case["x"])    # continuous values: no ties within a window
    hyper = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
    ours, theirs = getattr(F, f"max_pool{n}d"), getattr(TF, f"max_pool{n}d")
    # a dilated window can fall entirely into the padding; torch's gradient (and forward-mode
    # derivative, which reads out of bounds) is undefined there, so such cases are left out
    assume(np.all(np.isfinite(ours(np.zeros(case["x"]), *hyper))))
    check_against_torch(lambda x: ours(x, *hyper), lambda x: theirs(x, *hyper), [x], (0,), rng=rng)
    values, indices = ours(x, *hyper, return_indices=True)
    t_values, t_indices = theirs(torch.from_numpy(x), *hyper, return_indices=True)
    np.testing.assert_array_equal(values, t_values.numpy())
    np.testing.assert_array_equal(indices, t_indices.numpy())


@SETTINGS
@given(n=st.sampled_from([1, 2]), data=st.data(), seed=st.integers(0, 2 ** 16))
def test_avg_pool_matches_torch(n, data, seed):
    case = data.draw(pool_cases(n, dilated=False))
    rng = _rng(seed)
    x = rng.standard_normal(case["x"])
    hyper = (case["kernel"], case["stride"], case["padding"], case["ceil_mode"],
             data.draw(st.booleans()))
    if n == 2:
        hyper += (data.draw(st.sampled_from([None, 3])),)   # divisor_override
    ours, theirs = getattr(F, f"avg_pool{n}d"), getattr(TF, f"avg_pool{n}d")
    check_against_torch(lambda x: ours(x, *hyper), lambda x: theirs(x, *hyper), [x], (0,), rng=rng)


@SETTINGS
@given(n=st.sampled_from([1, 2]), data=st.data(), seed=st.integers(0, 2 ** 16))
def test_adaptive_avg_pool_matches_torch(n, data, seed):
    rng = _rng(seed)
    spatial = tuple(data.draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    out = tuple(data.draw(st.one_of(st.none(), st.integers(1, 9))) if n == 2 else
                data.draw(st.integers(1, 9)) for _ in range(n))
    x = rng.standard_normal(data.draw(st.sampled_from([(), (2,)])) + (3,) + spatial)
    ours, theirs = getattr(F, f"adaptive_avg_pool{n}d"), getattr(TF, f"adaptive_avg_pool{n}d")
    size = out if n == 2 else out[0]
    check_against_torch(lambda x: ours(x, size), lambda x: theirs(x, size), [x], (0,), rng=rng)


def test_max_pool_ties_split_the_gradient():
    # torch gives a tied window's gradient to one element; fgrad's max splits it evenly
    x = np.ones((1, 1, 2, 2))
    g = fgrad.grad(lambda x: fnp.sum(F.max_pool2d(x, 2)))(x)
    np.testing.assert_allclose(g, np.full((1, 1, 2, 2), 0.25))


def test_pool_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: expected a 4-d input \(N, C, H, W\) or an "
                                         r"unbatched 3-d input \(C, H, W\), got shape \(5,\)"):
        F.max_pool2d(np.zeros(5), 2)
    with pytest.raises(ValueError, match="avg_pool2d: padding \\(2, 2\\) must be non-negative and "
                                         "at most half the kernel size \\(3, 3\\)"):
        F.avg_pool2d(np.zeros((1, 1, 8, 8)), 3, padding=2)
