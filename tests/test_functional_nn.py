"""Activations, linear maps, normalisation, embedding, one_hot, pad, dropout and attention
against torch.nn.functional (float64): forward values, VJPs and JVPs, with hypothesis drawing
shapes and hyper-parameters. Each activation is one row of :data:`ACTIVATIONS`.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import fnn.functional as F
from functional_torch import check_against_torch

# the example budget of the loaded hypothesis profile (tests/conftest.py; the variable
# FGRAD_HYPOTHESIS_EXAMPLES overrides it), scaled per test by how much each example covers
EXAMPLES = settings.default.max_examples
SETTINGS = settings(deadline=None, max_examples=EXAMPLES)
# torch's embedding and pad call into TorchScript, which warns about its own deprecation
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2 ** 16)


def _rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# Activations: one row each (name, fgrad function, torch function)
# --------------------------------------------------------------------------------------------

ACTIVATIONS = [
    ("relu", F.relu, TF.relu),
    ("relu6", F.relu6, TF.relu6),
    ("hardtanh", lambda x: F.hardtanh(x, -0.5, 2.0), lambda x: TF.hardtanh(x, -0.5, 2.0)),
    ("leaky_relu", F.leaky_relu, TF.leaky_relu),
    ("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    ("elu", F.elu, TF.elu),
    ("elu_alpha", lambda x: F.elu(x, 0.5), lambda x: TF.elu(x, 0.5)),
    ("selu", F.selu, TF.selu),
    ("gelu", F.gelu, TF.gelu),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
     lambda x: TF.gelu(x, approximate="tanh")),
    ("silu", F.silu, TF.silu),
    ("mish", F.mish, TF.mish),
    ("sigmoid", F.sigmoid, torch.sigmoid),
    ("tanh", F.tanh, torch.tanh),
    ("softplus", F.softplus, TF.softplus),
    ("softplus_beta", lambda x: F.softplus(x, 2.0, 3.0), lambda x: TF.softplus(x, 2.0, 3.0)),
    ("logsigmoid", F.logsigmoid, TF.logsigmoid),
    ("softsign", F.softsign, TF.softsign),
    ("softmax_last", lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1)),
    ("softmax_first", lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0)),
    ("log_softmax", lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1)),
    ("softmin", lambda x: F.softmin(x, -1), lambda x: TF.softmin(x, -1)),
]


@pytest.mark.parametrize("name,fn,torch_fn", ACTIVATIONS, ids=[row[0] for row in ACTIVATIONS])
@settings(deadline=None, max_examples=max(1, EXAMPLES // 2))   # 22 rows
@given(shape=shapes, seed=seeds)
def test_activation_matches_torch(name, fn, torch_fn, shape, seed):
    rng = _rng(seed)
    x = 3.0 * rng.standard_normal(shape)     # spans both sides of every kink and threshold
    check_against_torch(fn, torch_fn, [x], (0,), rng=rng)


@pytest.mark.parametrize("name,fn,torch_fn", ACTIVATIONS, ids=[row[0] for row in ACTIVATIONS])
def test_activation_is_stable_for_huge_inputs(name, fn, torch_fn):
    rng = _rng(0)
    x = np.array([-1e4, -50.0, -1.0, 0.5, 50.0, 1e4])
    out = check_against_torch(fn, torch_fn, [x], (0,), rng=rng)
    assert np.all(np.isfinite(out)) or name == "log_softmax"   # log_softmax(-1e4) is -2e4, finite
    grads = fgrad.grad(lambda x: fnp.sum(fn(x)))(x)
    assert np.all(np.isfinite(grads))


def test_derivatives_at_kinks_follow_torch():
    x = np.array([0.0, -0.5, 2.0, 6.0])
    for fn, torch_fn in [(F.relu, TF.relu), (F.leaky_relu, TF.leaky_relu), (F.elu, TF.elu),
                         (F.relu6, TF.relu6), (lambda x: F.hardtanh(x, -0.5, 2.0),
                                               lambda x: TF.hardtanh(x, -0.5, 2.0)),
                         (F.softplus, TF.softplus)]:
        check_against_torch(fn, torch_fn, [x], (0,), rng=_rng(1))


def test_softmax_default_dim_and_dtype_follow_torch():
    x = _rng(2).standard_normal((2, 3, 4))
    np.testing.assert_allclose(F.softmax(x), TF.softmax(torch.from_numpy(x), dim=0).numpy())
    np.testing.assert_allclose(F.log_softmax(x[0]), TF.log_softmax(torch.from_numpy(x[0]), dim=1))
    assert F.softmax(x, -1, dtype=np.float32).dtype == np.float32


def test_activation_errors():
    with pytest.raises(ValueError, match=r"relu: inplace=True is not supported"):
        F.relu(np.ones(3), inplace=True)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        F.gelu(np.ones(3), approximate="erf")


# --------------------------------------------------------------------------------------------
# Linear maps
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), n_in=st.integers(1, 4),
       n_out=st.integers(1, 4), bias=st.booleans(), seed=seeds)
def test_linear_matches_torch(lead, n_in, n_out, bias, seed):
    rng = _rng(seed)
    x, w = rng.standard_normal(lead + (n_in,)), rng.standard_normal((n_out, n_in))
    args = [x, w] + ([rng.standard_normal(n_out)] if bias else [])
    check_against_torch(F.linear, TF.linear, args, tuple(range(len(args))), rng=rng)


@SETTINGS
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), n1=st.integers(1, 3),
       n2=st.integers(1, 3), n_out=st.integers(1, 3), seed=seeds)
def test_bilinear_matches_torch(lead, n1, n2, n_out, seed):
    rng = _rng(seed)
    args = [rng.standard_normal(lead + (n1,)), rng.standard_normal(lead + (n2,)),
            rng.standard_normal((n_out, n1, n2)), rng.standard_normal(n_out)]
    check_against_torch(F.bilinear, TF.bilinear, args, (0, 1, 2, 3), rng=rng)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"linear: .* got input \(2, 3\) and weight \(4, 5\)"):
        F.linear(np.ones((2, 3)), np.ones((4, 5)))


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(2, 3), c=st.integers(1, 3), spatial=st.lists(st.integers(1, 3), max_size=2),
       training=st.booleans(), affine=st.booleans(), seed=seeds)
def test_batch_norm_matches_torch(n, c, spatial, training, affine, seed):
    rng = _rng(seed)
    x = rng.standard_normal((n, c) + tuple(spatial))
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    args = [x] + ([rng.standard_normal(c), rng.standard_normal(c)] if affine else [])

    def ours(x, w=None, b=None):
        return F.batch_norm(x, mean, var, w, b, training, 0.1, 1e-3)

    def theirs(x, w=None, b=None):   # torch updates its running stats in place: give it copies
        return TF.batch_norm(x, torch.from_numpy(mean.copy()), torch.from_numpy(var.copy()),
                             w, b, training, 0.1, 1e-3)
    check_against_torch(ours, theirs, args, tuple(range(len(args))), rng=rng)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data(),
       seed=seeds)
def test_layer_norm_and_rms_norm_match_torch(shape, data, seed):
    rng = _rng(seed)
    k = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    eps = data.draw(st.sampled_from([None, 1e-5, 0.1]))
    x, w, b = (rng.standard_normal(shape), rng.standard_normal(normalized),
               rng.standard_normal(normalized))
    check_against_torch(lambda x, w, b: F.layer_norm(x, normalized, w, b, eps or 1e-5),
                        lambda x, w, b: TF.layer_norm(x, normalized, w, b, eps or 1e-5),
                        [x, w, b], (0, 1, 2), rng=rng)
    check_against_torch(lambda x, w: F.rms_norm(x, normalized, w, eps),
                        lambda x, w: TF.rms_norm(x, normalized, w, eps), [x, w], (0, 1), rng=rng)
    check_against_torch(lambda x: F.layer_norm(x, normalized), lambda x: TF.layer_norm(x, normalized),
                        [x], (0,), rng=rng)


@SETTINGS
@given(n=st.integers(1, 3), groups=st.integers(1, 3), per_group=st.integers(1, 2),
       spatial=st.lists(st.integers(1, 3), max_size=2), affine=st.booleans(), seed=seeds)
def test_group_norm_matches_torch(n, groups, per_group, spatial, affine, seed):
    rng = _rng(seed)
    c = groups * per_group
    x = rng.standard_normal((n, c) + tuple(spatial))
    if x.size // (n * groups) == 1:
        x = np.concatenate([x, x + 1.0], axis=0)   # a group of one value has zero variance
    args = [x] + ([rng.standard_normal(c), rng.standard_normal(c)] if affine else [])
    check_against_torch(lambda x, *wb: F.group_norm(x, groups, *wb, eps=1e-3),
                        lambda x, *wb: TF.group_norm(x, groups, *wb, eps=1e-3),
                        args, tuple(range(len(args))), rng=rng)


def test_normalization_errors():
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel"):
        F.batch_norm(np.ones((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(3,\) must match the "
                                         r"trailing dimensions of the input, got input of shape \(2, 4\)"):
        F.layer_norm(np.ones((2, 4)), (3,))
    with pytest.raises(ValueError, match="group_norm: expected an input .* divisible by num_groups=2"):
        F.group_norm(np.ones((2, 3, 4)), 2)


# --------------------------------------------------------------------------------------------
# Embedding, one_hot, pad
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(ids_shape=st.lists(st.integers(1, 4), max_size=2).map(tuple), vocab=st.integers(2, 6),
       dim=st.integers(1, 3), data=st.data(), seed=seeds)
def test_embedding_matches_torch(ids_shape, vocab, dim, data, seed):
    rng = _rng(seed)
    ids = rng.integers(0, vocab, ids_shape)
    w = rng.standard_normal((vocab, dim))
    options = dict(padding_idx=data.draw(st.one_of(st.none(), st.integers(-vocab, vocab - 1))),
                   max_norm=data.draw(st.sampled_from([None, 0.5, 1.5])),
                   norm_type=data.draw(st.sampled_from([1.0, 2.0])),
                   scale_grad_by_freq=data.draw(st.booleans()))
    # torch's forward mode ignores padding_idx and scale_grad_by_freq, which only change its
    # backward pass; here both modes differentiate the same function (jacfwd equals jacrev).
    # torch's max_norm renormalises the table in place, which its forward mode cannot follow.
    # So the JVP is compared without these options.
    plain = (options["max_norm"] is None and options["padding_idx"] is None
             and not options["scale_grad_by_freq"])
    check_against_torch(lambda w: F.embedding(ids, w, **options),
                        lambda w: TF.embedding(torch.from_numpy(ids), w, **options),
                        [w], (0,), rng=rng, jvp=plain)


def test_one_hot_matches_torch():
    ids = np.array([[0, 3], [2, 1]])
    for n in (-1, 5):
        out = F.one_hot(ids, n)
        expected = TF.one_hot(torch.from_numpy(ids), n).numpy()
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, expected)
    batched = fgrad.vmap(lambda i: F.one_hot(i, 4))(ids)
    np.testing.assert_array_equal(batched, TF.one_hot(torch.from_numpy(ids), 4).numpy())
    with pytest.raises(ValueError, match=r"one_hot: class values must be in \[0, 3\)"):
        F.one_hot(ids, 3)


@SETTINGS
@given(shape=st.lists(st.integers(2, 4), min_size=1, max_size=3).map(tuple),
       mode=st.sampled_from(["constant", "reflect", "replicate", "circular"]), data=st.data(),
       seed=seeds)
def test_pad_matches_torch(shape, mode, data, seed):
    rng = _rng(seed)
    n_axes = data.draw(st.integers(1, len(shape)))
    low = -1 if mode == "constant" else 0
    widths = tuple(data.draw(st.integers(low, 2 if mode != "reflect" else 1)) for _ in range(2 * n_axes))
    value = data.draw(st.sampled_from([None, 1.5])) if mode == "constant" else None
    if mode != "constant":   # torch pads only the spatial axes of (N, C, *spatial) this way
        shape = (1, 2) + shape[:n_axes]
    x = rng.standard_normal(shape)
    check_against_torch(lambda x: F.pad(x, widths, mode, value),
                        lambda x: TF.pad(x, widths, mode, value), [x], (0,), rng=rng)


def test_pad_errors():
    with pytest.raises(ValueError, match=r"pad: pad must hold an even number of sizes"):
        F.pad(np.ones((2, 2)), (1, 1, 1))
    with pytest.raises(ValueError, match="pad: mode must be one of"):
        F.pad(np.ones((2, 2)), (1, 1), mode="symmetric")


# --------------------------------------------------------------------------------------------
# Dropout (explicit keys)
# --------------------------------------------------------------------------------------------

def test_dropout_masks_and_scales():
    key = fgrad.random.key(0)
    x = np.arange(1.0, 2001.0)
    y = F.dropout(x, 0.25, key=key)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_array_equal(F.dropout(x, 0.25, key=key), y)          # same key, same mask
    assert not np.array_equal(F.dropout(x, 0.25, key=fgrad.random.key(1)) != 0, kept)
    # the derivative is the mask divided by the keep probability
    np.testing.assert_allclose(fgrad.grad(lambda x: fnp.sum(F.dropout(x, 0.25, key=key)))(x),
                               kept / 0.75)
    assert F.dropout(x, 0.25, training=False) is x
    assert F.dropout(x, 0.0, key=key) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0, key=key), np.zeros_like(x))


def test_dropout_under_vmap_uses_each_examples_key():
    keys = fgrad.random.split(fgrad.random.key(3), 4)
    x = np.ones((4, 50))
    out = fgrad.vmap(lambda k, x: F.dropout(x, 0.5, key=k))(keys, x)
    for i in range(4):
        np.testing.assert_array_equal(out[i], F.dropout(x[i], 0.5, key=keys[i]))
    assert len({tuple(row != 0) for row in out}) == 4


def test_dropout_errors():
    with pytest.raises(ValueError, match="dropout: training with p=0.5 needs a random key"):
        F.dropout(np.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"dropout: dropout probability must be in \[0, 1\]"):
        F.dropout(np.ones(3), 1.5, key=fgrad.random.key(0))


# --------------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(batch=st.lists(st.integers(1, 2), max_size=2).map(tuple), length=st.integers(1, 4),
       source=st.integers(1, 4), e=st.integers(1, 3), ev=st.integers(1, 3),
       mask=st.sampled_from(["none", "bool", "float", "causal"]),
       scale=st.sampled_from([None, 0.3]), seed=seeds)
def test_attention_matches_torch(batch, length, source, e, ev, mask, scale, seed):
    rng = _rng(seed)
    q, k, v = (rng.standard_normal(batch + (length, e)), rng.standard_normal(batch + (source, e)),
               rng.standard_normal(batch + (source, ev)))
    attn_mask = None
    if mask == "bool":
        attn_mask = rng.random((length, source)) < 0.7
        attn_mask[:, 0] = True          # torch's CPU kernels differ on rows with nothing to see
    elif mask == "float":
        attn_mask = rng.standard_normal(batch + (length, source))
    options = dict(is_causal=mask == "causal", scale=scale)
    torch_mask = None if attn_mask is None else torch.from_numpy(attn_mask)
    check_against_torch(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask, **options),
        lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, torch_mask, **options),
        [q, k, v], (0, 1, 2), rng=rng, jvp=False)


def test_attention_grouped_query_heads_match_torch():
    rng = _rng(4)
    q, k, v = (rng.standard_normal((2, 6, 5, 4)), rng.standard_normal((2, 2, 7, 4)),
               rng.standard_normal((2, 2, 7, 3)))
    check_against_torch(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        [q, k, v], (0, 1, 2), rng=rng, jvp=False)


def test_attention_row_with_nothing_to_attend_is_zero():
    rng = _rng(5)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    mask = np.ones((3, 5), bool)
    mask[1] = False
    out = check_against_torch(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask),
        lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, torch.from_numpy(mask)),
        [q, k, v], (0, 1, 2), rng=rng, jvp=False)
    np.testing.assert_array_equal(out[1], 0.0)


def test_attention_dropout_uses_the_key():
    rng = _rng(6)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    key = fgrad.random.key(7)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, dropout_key=key)
    weights = F.softmax(q @ np.swapaxes(k, -1, -2) / 2.0, -1)
    np.testing.assert_allclose(out, F.dropout(weights, 0.3, key=key) @ v, rtol=1e-12)
    with pytest.raises(ValueError, match="needs a random key"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, k, v, np.ones((3, 5), bool), is_causal=True)


# --------------------------------------------------------------------------------------------
# dtypes: float32 in, float32 out (constants never promote)
# --------------------------------------------------------------------------------------------

def test_float32_inputs_give_float32_outputs_and_gradients():
    rng = _rng(8)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 6, 6))
    outputs = {
        "conv2d": F.conv2d(x, w, padding=1),
        "conv_transpose2d": F.conv_transpose2d(x, w.transpose(1, 0, 2, 3), stride=2),
        "max_pool2d": F.max_pool2d(x, 2, padding=1),
        "avg_pool2d": F.avg_pool2d(x, 3, padding=1, ceil_mode=True, count_include_pad=False),
        "adaptive_avg_pool2d": F.adaptive_avg_pool2d(x, 4),
        "gelu": F.gelu(x), "elu": F.elu(x), "softplus": F.softplus(x), "softmax": F.softmax(x, 1),
        "layer_norm": F.layer_norm(x, (6,)), "group_norm": F.group_norm(x, 3),
        "batch_norm": F.batch_norm(x, None, None, training=True), "rms_norm": F.rms_norm(x, (6,)),
        "cross_entropy": F.cross_entropy(x, labels, label_smoothing=0.1),
        "bce_with_logits": F.binary_cross_entropy_with_logits(x, (x > 0).astype(np.float32)),
        "attention": F.scaled_dot_product_attention(x, x, x, is_causal=True),
        "dropout": F.dropout(x, 0.3, key=fgrad.random.key(0)),
    }
    promoted = {name: np.asarray(out).dtype for name, out in outputs.items()
                if np.asarray(out).dtype != np.float32}
    assert not promoted, promoted
    assert fgrad.grad(lambda w: fnp.sum(F.conv2d(x, w, padding=1)))(w).dtype == np.float32


# --------------------------------------------------------------------------------------------
# vmap equals a loop, for the values and the per-example gradients
# --------------------------------------------------------------------------------------------

_W = _rng(9).standard_normal((3, 4, 3, 3))
VMAP_ROWS = [
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (4, None))),
    ("conv_transpose2d", lambda x: F.conv_transpose2d(x, _W, stride=2, output_padding=1)),
    ("unfold", lambda x: F.unfold(x, 2, padding=1)),
    ("batch_norm", lambda x: F.batch_norm(x, None, None, training=True)),
    ("group_norm", lambda x: F.group_norm(x, 3)),
    ("layer_norm", lambda x: F.layer_norm(x, (6, 6))),
    ("pad_reflect", lambda x: F.pad(x, (1, 2, 0, 1), "reflect")),
    ("attention", lambda x: F.scaled_dot_product_attention(x, x, x, is_causal=True)),
    ("softmax", lambda x: F.softmax(x, 1)),
]


@pytest.mark.parametrize("name,fn", VMAP_ROWS, ids=[row[0] for row in VMAP_ROWS])
def test_vmap_equals_a_loop(name, fn):
    xs = _rng(10).standard_normal((3, 2, 3, 6, 6))
    np.testing.assert_allclose(fgrad.vmap(fn)(xs), np.stack([fn(x) for x in xs]), rtol=1e-12)
    loss = lambda x: fnp.sum(fn(x) ** 2)   # noqa: E731
    np.testing.assert_allclose(fgrad.vmap(fgrad.grad(loss))(xs),
                               np.stack([fgrad.grad(loss)(x) for x in xs]), rtol=1e-10, atol=1e-12)


def test_vmap_over_integer_inputs_equals_a_loop():
    rng = _rng(11)
    ids, table = rng.integers(0, 5, (3, 4)), rng.standard_normal((5, 2))
    lookup = lambda i: F.embedding(i, table, padding_idx=0, max_norm=1.0)   # noqa: E731
    np.testing.assert_allclose(fgrad.vmap(lookup)(ids), np.stack([lookup(i) for i in ids]))
    x = rng.standard_normal((3, 2, 3, 5, 5))
    indices = lambda x: F.max_pool2d(x, 2, return_indices=True)[1]   # noqa: E731
    np.testing.assert_array_equal(fgrad.vmap(indices)(x), np.stack([indices(v) for v in x]))
