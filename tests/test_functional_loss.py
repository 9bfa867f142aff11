"""Losses against torch.nn.functional (float64): values, VJPs and JVPs for every reduction,
with hypothesis drawing shapes, class weights, ignore_index, label_smoothing and the
loss-specific hyper-parameters; vmap of cross_entropy against a loop; stability at logits of
+-1e4; torch's legacy size_average/reduce flags; and the errors.
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
SETTINGS = settings(deadline=None, max_examples=EXAMPLES + EXAMPLES // 2)
seeds = st.integers(0, 2 ** 16)
reductions = st.sampled_from(["none", "mean", "sum"])
# torch's first use of some losses goes through TorchScript, which warns about its deprecation
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


def _rng(seed):
    return np.random.default_rng(seed)


def _t(x):
    return None if x is None else torch.from_numpy(np.asarray(x))


# --------------------------------------------------------------------------------------------
# Cross-entropy and NLL
# --------------------------------------------------------------------------------------------

@st.composite
def classification_cases(draw):
    """Logits ``(N, C, *extra)`` or ``(C,)`` and everything the loss takes besides."""
    n_classes = draw(st.integers(2, 5))
    layout = draw(st.sampled_from(["unbatched", "batched", "spatial"]))
    batch = {"unbatched": (), "batched": (draw(st.integers(1, 4)),),
             "spatial": (draw(st.integers(1, 2)), draw(st.integers(1, 3)))}[layout]
    return dict(n_classes=n_classes, batch=batch, weighted=draw(st.booleans()),
                ignore_index=draw(st.sampled_from([-100, 0, 1])),
                label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.45])),
                reduction=draw(reductions), scale=draw(st.sampled_from([1.0, 30.0])))


def _logits_and_targets(case, rng):
    batch, c = case["batch"], case["n_classes"]
    shape = batch[:1] + (c,) + batch[1:]
    logits = case["scale"] * rng.standard_normal(shape)
    labels = rng.integers(0, c, batch[:1] + batch[1:])
    weight = rng.uniform(0.5, 2.0, c) if case["weighted"] else None
    return logits, labels, weight


@SETTINGS
@given(case=classification_cases(), seed=seeds)
def test_cross_entropy_with_class_indices_matches_torch(case, seed):
    rng = _rng(seed)
    logits, labels, weight = _logits_and_targets(case, rng)
    # keep one target that is not ignored: with none, 'mean' is 0/0 (NaN in torch and here)
    labels.flat[0] = (case["ignore_index"] + 1) % case["n_classes"]
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"],
                   label_smoothing=case["label_smoothing"])
    check_against_torch(lambda z: F.cross_entropy(z, labels, weight, **options),
                        lambda z: TF.cross_entropy(z, _t(labels), _t(weight), **options),
                        [logits], (0,), rng=rng)


@SETTINGS
@given(case=classification_cases(), seed=seeds)
def test_cross_entropy_with_probabilities_matches_torch(case, seed):
    rng = _rng(seed)
    logits, _, weight = _logits_and_targets(case, rng)
    probs = np.exp(rng.standard_normal(logits.shape))
    probs /= probs.sum(axis=0 if logits.ndim == 1 else 1, keepdims=True)
    options = dict(reduction=case["reduction"], label_smoothing=case["label_smoothing"])
    check_against_torch(lambda z, p: F.cross_entropy(z, p, weight, **options),
                        lambda z, p: TF.cross_entropy(z, p, _t(weight), **options),
                        [logits, probs], (0, 1), rng=rng)


@SETTINGS
@given(case=classification_cases(), seed=seeds)
def test_nll_loss_matches_torch(case, seed):
    rng = _rng(seed)
    logits, labels, weight = _logits_and_targets(case, rng)
    log_probs = F.log_softmax(logits, 0 if logits.ndim == 1 else 1)
    labels.flat[0] = (case["ignore_index"] + 1) % case["n_classes"]
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"])
    check_against_torch(lambda z: F.nll_loss(z, labels, weight, **options),
                        lambda z: TF.nll_loss(z, _t(labels), _t(weight), **options),
                        [log_probs], (0,), rng=rng)


def test_cross_entropy_mean_counts_only_targets_that_are_not_ignored():
    logits = _rng(1).standard_normal((4, 3))
    labels = np.array([0, -100, 2, -100])
    kept = -F.log_softmax(logits, 1)[[0, 2], [0, 2]]
    np.testing.assert_allclose(F.cross_entropy(logits, labels), kept.mean())
    weight = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(F.cross_entropy(logits, labels, weight),
                               (kept * weight[[0, 2]]).sum() / weight[[0, 2]].sum())


def test_vmap_cross_entropy_equals_loop():
    rng = _rng(2)
    logits = rng.standard_normal((6, 5, 4))          # 6 batches of (N=5, C=4)
    labels = rng.integers(0, 4, (6, 5))
    labels[1, 2] = -100
    loss = lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1)   # noqa: E731
    np.testing.assert_allclose(fgrad.vmap(loss)(logits, labels),
                               [loss(z, y) for z, y in zip(logits, labels)], rtol=1e-12)
    per_batch = fgrad.vmap(fgrad.grad(loss))(logits, labels)
    np.testing.assert_allclose(per_batch, np.stack([fgrad.grad(loss)(z, y) for z, y in zip(logits, labels)]),
                               rtol=1e-12)
    # one example at a time: unbatched (C,) logits with a scalar label
    flat_logits, flat_labels = logits[0], labels[0]
    np.testing.assert_allclose(fgrad.vmap(lambda z, y: F.cross_entropy(z, y))(flat_logits, flat_labels),
                               F.cross_entropy(flat_logits, flat_labels, reduction="none"), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Regression and binary losses
# --------------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@SETTINGS
@given(shape=shapes, reduction=reductions, weighted=st.booleans(), seed=seeds)
def test_mse_and_l1_match_torch(shape, reduction, weighted, seed):
    rng = _rng(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    weight = rng.uniform(0.5, 2.0, shape) if weighted else None
    for ours, theirs in [(F.mse_loss, TF.mse_loss), (F.l1_loss, TF.l1_loss)]:
        check_against_torch(lambda x, y: ours(x, y, reduction=reduction, weight=weight),
                            lambda x, y: theirs(x, y, reduction=reduction, weight=_t(weight)),
                            [x, y], (0, 1), rng=rng)


@SETTINGS
@given(shape=shapes, reduction=reductions, delta=st.sampled_from([0.5, 1.0, 2.0]),
       beta=st.sampled_from([0.0, 0.5, 1.0]), weighted=st.booleans(), seed=seeds)
def test_huber_and_smooth_l1_match_torch(shape, reduction, delta, beta, weighted, seed):
    rng = _rng(seed)
    x, y = 2.0 * rng.standard_normal(shape), rng.standard_normal(shape)
    weight = rng.uniform(0.5, 2.0, shape) if weighted else None
    check_against_torch(lambda x, y: F.huber_loss(x, y, reduction, delta, weight),
                        lambda x, y: TF.huber_loss(x, y, reduction, delta, _t(weight)),
                        [x, y], (0, 1), rng=rng)
    check_against_torch(lambda x, y: F.smooth_l1_loss(x, y, reduction=reduction, beta=beta),
                        lambda x, y: TF.smooth_l1_loss(x, y, reduction=reduction, beta=beta),
                        [x, y], (0, 1), rng=rng)


@SETTINGS
@given(shape=shapes, reduction=reductions, weighted=st.booleans(), seed=seeds)
def test_binary_cross_entropy_matches_torch(shape, reduction, weighted, seed):
    rng = _rng(seed)
    p, y = rng.uniform(0.02, 0.98, shape), rng.uniform(0.0, 1.0, shape)
    weight = rng.uniform(0.5, 2.0, shape) if weighted else None
    check_against_torch(lambda p, y: F.binary_cross_entropy(p, y, weight, reduction=reduction),
                        lambda p, y: TF.binary_cross_entropy(p, y, _t(weight), reduction=reduction),
                        [p, y], (0, 1), rng=rng)


def test_binary_cross_entropy_clamps_its_logarithms_like_torch():
    p, y = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0])
    out = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(out, TF.binary_cross_entropy(_t(p), _t(y), reduction="none").numpy())
    np.testing.assert_allclose(out, [0.0, 0.0, 100.0, 100.0])
    assert np.all(np.isfinite(fgrad.grad(lambda p: fnp.sum(F.binary_cross_entropy(p, y)))(p)))


@SETTINGS
@given(shape=shapes, reduction=reductions, weighted=st.booleans(), pos_weighted=st.booleans(),
       seed=seeds)
def test_binary_cross_entropy_with_logits_matches_torch(shape, reduction, weighted, pos_weighted,
                                                         seed):
    rng = _rng(seed)
    z, y = 3.0 * rng.standard_normal(shape), rng.uniform(0.0, 1.0, shape)
    weight = rng.uniform(0.5, 2.0, shape) if weighted else None
    pos_weight = rng.uniform(0.5, 2.0, shape[-1:]) if pos_weighted else None
    check_against_torch(
        lambda z, y: F.binary_cross_entropy_with_logits(z, y, weight, reduction=reduction,
                                                        pos_weight=pos_weight),
        lambda z, y: TF.binary_cross_entropy_with_logits(z, y, _t(weight), reduction=reduction,
                                                         pos_weight=_t(pos_weight)),
        [z, y], (0, 1), rng=rng)


# --------------------------------------------------------------------------------------------
# Margin losses and KL divergence
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(shape=shapes, reduction=reductions, margin=st.sampled_from([0.5, 1.0, 2.0]), seed=seeds)
def test_hinge_embedding_loss_matches_torch(shape, reduction, margin, seed):
    rng = _rng(seed)
    x = 2.0 * rng.standard_normal(shape)
    y = rng.choice([-1.0, 1.0], shape)
    check_against_torch(lambda x: F.hinge_embedding_loss(x, y, margin, reduction=reduction),
                        lambda x: TF.hinge_embedding_loss(x, _t(y), margin, reduction=reduction),
                        [x], (0,), rng=rng)


@SETTINGS
@given(batch=st.sampled_from([(), (1,), (4,)]), n_classes=st.integers(2, 5), p=st.sampled_from([1, 2]),
       margin=st.sampled_from([0.5, 1.0]), weighted=st.booleans(), reduction=reductions,
       seed=seeds)
def test_multi_margin_loss_matches_torch(batch, n_classes, p, margin, weighted, reduction, seed):
    rng = _rng(seed)
    x = rng.standard_normal(batch + (n_classes,))
    y = rng.integers(0, n_classes, batch)
    weight = rng.uniform(0.5, 2.0, n_classes) if weighted else None
    check_against_torch(
        lambda x: F.multi_margin_loss(x, y, p, margin, weight, reduction=reduction),
        lambda x: TF.multi_margin_loss(x, _t(y), p, margin, _t(weight), reduction=reduction),
        [x], (0,), rng=rng, jvp=False)   # torch has no forward mode for multi_margin_loss


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")   # torch's
@SETTINGS
@given(shape=shapes, reduction=st.sampled_from(["none", "mean", "sum", "batchmean"]),
       log_target=st.booleans(), seed=seeds)
def test_kl_div_matches_torch(shape, reduction, log_target, seed):
    rng = _rng(seed)
    log_q = rng.standard_normal(shape) - 1.0
    target = rng.standard_normal(shape) if log_target else rng.uniform(0.05, 1.0, shape)
    check_against_torch(
        lambda x, t: F.kl_div(x, t, reduction=reduction, log_target=log_target),
        lambda x, t: TF.kl_div(x, t, reduction=reduction, log_target=log_target),
        [log_q, target], (0, 1), rng=rng)


def test_kl_div_treats_zero_targets_as_zero():
    log_q, p = np.log(np.array([0.5, 0.5])), np.array([1.0, 0.0])
    np.testing.assert_allclose(F.kl_div(log_q, p, reduction="sum"), np.log(2.0))
    np.testing.assert_allclose(F.kl_div(log_q, p, reduction="sum"),
                               TF.kl_div(_t(log_q), _t(p), reduction="sum").numpy())


# --------------------------------------------------------------------------------------------
# Stability, legacy flags, errors
# --------------------------------------------------------------------------------------------

def test_losses_are_stable_for_logits_of_1e4():
    rng = _rng(3)
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]])
    labels = np.array([1, 2, 0])
    for options in (dict(), dict(label_smoothing=0.2), dict(reduction="none")):
        out = check_against_torch(lambda z: F.cross_entropy(z, labels, **options),
                                  lambda z: TF.cross_entropy(z, _t(labels), **options),
                                  [logits], (0,), rng=rng)
        assert np.all(np.isfinite(out))
    np.testing.assert_allclose(F.cross_entropy(logits, labels, reduction="none"), [2e4, 0.0, np.log(2.0)])
    z = np.array([-1e4, -30.0, 0.0, 30.0, 1e4])
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    out = check_against_torch(lambda z: F.binary_cross_entropy_with_logits(z, y, reduction="none"),
                              lambda z: TF.binary_cross_entropy_with_logits(z, _t(y), reduction="none"),
                              [z], (0,), rng=rng)
    np.testing.assert_allclose(out[[0, 4]], [1e4, 1e4])
    for fn in (lambda z: F.log_softmax(z, -1), F.softplus, F.logsigmoid, lambda z: F.softmax(z, -1)):
        assert np.all(np.isfinite(fn(logits)))
        assert np.all(np.isfinite(fgrad.grad(lambda z: fnp.sum(fn(z) * np.arange(3.0)))(logits)))
    np.testing.assert_allclose(F.log_softmax(logits, -1)[0], [0.0, -2e4, -1e4])


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
def test_legacy_size_average_and_reduce_flags_follow_torch():
    rng = _rng(4)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for size_average, reduce in [(None, False), (False, None), (True, True), (False, True)]:
        np.testing.assert_allclose(
            F.mse_loss(x, y, size_average, reduce),
            TF.mse_loss(_t(x), _t(y), size_average, reduce).numpy(), rtol=1e-12)


def test_loss_errors():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"cross_entropy: class-index target of shape \(3,\) does "
                                         r"not fit input of shape \(4, 3\); expected target shape \(4,\)"):
        F.cross_entropy(logits, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"cross_entropy: target values must be class indices in "
                                         r"\[0, 3\) or ignore_index=-100, got \[3\]"):
        F.cross_entropy(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be one of"):
        F.cross_entropy(logits, np.zeros(4, int), reduction="avg")
    with pytest.raises(ValueError, match=r"cross_entropy: probability target of shape \(4, 2\)"):
        F.cross_entropy(logits, np.zeros((4, 2)))
    with pytest.raises(TypeError, match="nll_loss: class-index target must be an integer array"):
        F.nll_loss(logits, np.zeros(4))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target of shape \(3,\) must have "
                                         r"the shape of the input, \(4,\)"):
        F.binary_cross_entropy(np.full(4, 0.5), np.ones(3))
    with pytest.raises(ValueError, match="multi_margin_loss: only p == 1 and p == 2"):
        F.multi_margin_loss(logits, np.zeros(4, int), p=3)
