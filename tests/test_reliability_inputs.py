"""Bad or edge inputs give a clear error or the right value, never a silent wrong answer.

One table per family of mistakes a new (or adversarial) user makes:

* losses broadcasting a ``(N, 1)`` prediction against a ``(N,)`` target (torch warns; here an
  error, since the result is never what was meant);
* checks of labels, ids and probabilities that must not vanish under an eager ``vmap``;
* semantics that must match torch or JAX: a fully ignored batch in ``cross_entropy``,
  probabilities outside [0, 1], repeated ``argnums``, ``linearize``'s tangent shapes;
* small ones: layer sizes, ``fgrad.random`` arguments, hints that name functions that exist.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
from fgrad import TracerArrayConversionError, TransformError

RNG = np.random.default_rng(0)


def raises(exc, fn, *pieces):
    with pytest.raises(exc) as info:
        fn()
    for piece in pieces:
        assert piece in str(info.value), f"{piece!r} not in {info.value}"


# --------------------------------------------------------------------------------------------
# 1. Losses: the target has the input's shape
# --------------------------------------------------------------------------------------------

ELEMENTWISE_LOSSES = {
    "mse_loss": lambda x, y: F.mse_loss(x, y),
    "l1_loss": lambda x, y: F.l1_loss(x, y),
    "huber_loss": lambda x, y: F.huber_loss(x, y),
    "smooth_l1_loss": lambda x, y: F.smooth_l1_loss(x, y),
    "kl_div": lambda x, y: F.kl_div(x, y, reduction="batchmean"),
    "hinge_embedding_loss": lambda x, y: F.hinge_embedding_loss(x, fnp.sign(y) + (y == 0)),
    "binary_cross_entropy": lambda x, y: F.binary_cross_entropy(1 / (1 + fnp.exp(-x)), (y > 0) * 1.0),
    "binary_cross_entropy_with_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, (y > 0) * 1.0),
}

SHAPE_PAIRS = [((4, 1), (4,)), ((4,), (4, 1)), ((1,), (4,)), ((2, 3), (3,)), ((3,), ())]


@pytest.mark.parametrize("name", ELEMENTWISE_LOSSES)
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=[f"{a}-{b}" for a, b in SHAPE_PAIRS])
def test_elementwise_losses_refuse_targets_of_another_shape(name, shapes):
    loss = ELEMENTWISE_LOSSES[name]
    x, y = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    raises(ValueError, lambda: loss(x, y), name, str(shapes[1]), str(shapes[0]))
    # also where the shapes are those of one example under vmap
    raises(ValueError, lambda: fgrad.vmap(loss)(np.stack([x, x]), np.stack([y, y])), name)


WEIGHTS = [
    ("nll-class-weight", lambda: F.nll_loss(LOGP, LABELS, weight=np.ones(5)), "weight must have shape (3,)"),
    ("cross-entropy-class-weight", lambda: F.cross_entropy(LOGP, LABELS, weight=np.ones((3, 1))),
     "weight must have shape (3,)"),
    ("multi-margin-class-weight", lambda: F.multi_margin_loss(LOGP, LABELS, weight=np.ones(2)),
     "weight must have shape (3,)"),
    ("bce-weight-grows-the-loss", lambda: F.binary_cross_entropy(np.full(4, 0.5), np.ones(4),
                                                                 weight=np.ones((4, 1))),
     "weight of shape (4, 1) must broadcast"),
    ("bce-logits-pos-weight", lambda: F.binary_cross_entropy_with_logits(
        np.zeros((2, 3)), np.ones((2, 3)), pos_weight=np.ones((2, 2, 3))), "pos_weight"),
    ("mse-weight", lambda: F.mse_loss(np.ones(4), np.ones(4), weight=np.ones((4, 1))), "weight"),
    ("huber-delta", lambda: F.huber_loss(np.ones(2), np.ones(2), delta=0.0), "delta must be positive"),
    ("smooth-l1-beta", lambda: F.smooth_l1_loss(np.ones(2), np.ones(2), beta=-1.0), "beta"),
]
LOGP = np.log(np.full((2, 3), 1 / 3))
LABELS = np.array([0, 2])


@pytest.mark.parametrize("call, piece", [row[1:] for row in WEIGHTS], ids=[row[0] for row in WEIGHTS])
def test_loss_weights_and_parameters_of_the_wrong_shape_or_value(call, piece):
    raises(ValueError, call, piece)


def test_weights_that_broadcast_to_the_input_still_work():
    got = F.binary_cross_entropy(np.full((2, 3), 0.5), np.ones((2, 3)), weight=np.array([1.0, 2.0, 3.0]))
    want = TF.binary_cross_entropy(torch.full((2, 3), 0.5, dtype=torch.float64),
                                   torch.ones(2, 3, dtype=torch.float64),
                                   weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    np.testing.assert_allclose(got, want.item())


def test_a_perfect_prediction_of_shape_n1_is_no_longer_scored_25():
    pred, target = np.arange(4.0).reshape(4, 1), np.arange(4.0)
    with pytest.raises(ValueError, match="mse_loss"):
        F.mse_loss(pred, target)          # used to be 2.5 (a (4, 4) broadcast)
    assert F.mse_loss(pred[:, 0], target) == 0.0


# --------------------------------------------------------------------------------------------
# 5. Checks that must not vanish under vmap (and work under grad/jvp)
# --------------------------------------------------------------------------------------------

LOGITS = RNG.standard_normal((2, 3))

VALUE_CHECKS = [
    # (id, function of (batched) values, bad batch, exception, piece)
    ("cross_entropy-negative", lambda z, y: F.cross_entropy(z, y), (LOGITS, np.array([1, -2])),
     ValueError, "[-2]"),
    ("cross_entropy-too-large", lambda z, y: F.cross_entropy(z, y), (LOGITS, np.array([3, 0])),
     ValueError, "[3]"),
    ("nll_loss", lambda z, y: F.nll_loss(z, y), (LOGITS, np.array([0, 7])), ValueError, "[7]"),
    ("multi_margin_loss", lambda z, y: F.multi_margin_loss(z, y), (LOGITS, np.array([0, -1])),
     ValueError, "[-1]"),
    ("embedding-negative", lambda i, w: F.embedding(i, w),
     (np.array([1, -1]), np.stack([np.ones((3, 2))] * 2)), IndexError, "[-1, 1]"),
    ("embedding-too-large", lambda i, w: F.embedding(i, w),
     (np.array([1, 3]), np.stack([np.ones((3, 2))] * 2)), IndexError, "[1, 3]"),
    ("one_hot", lambda i, _: F.one_hot(i, 3), (np.array([0, 5]), np.zeros(2)), ValueError, "5"),
    ("bce-input", lambda p, y: F.binary_cross_entropy(p, y),
     (np.array([[0.5], [1.5]]), np.ones((2, 1))), ValueError, "[1.5]"),
    ("bce-target", lambda p, y: F.binary_cross_entropy(p, y),
     (np.full((2, 1), 0.5), np.array([[0.0], [-0.5]])), ValueError, "[-0.5]"),
    ("bce-nan", lambda p, y: F.binary_cross_entropy(p, y),
     (np.array([[0.5], [np.nan]]), np.ones((2, 1))), ValueError, "nan"),
]


@pytest.mark.parametrize("f, batch, exc, piece", [row[1:] for row in VALUE_CHECKS],
                         ids=[row[0] for row in VALUE_CHECKS])
def test_value_checks_hold_outside_and_inside_vmap(f, batch, exc, piece):
    first_bad = [i for i in range(2) if _raises(f, [b[i] for b in batch])]
    assert first_bad, "the bad example must fail on its own"
    with pytest.raises(exc) as info:               # eager vmap sees every example's values
        fgrad.vmap(f)(*batch)
    assert piece in str(info.value)
    # nested: vmap of vmap
    with pytest.raises(exc):
        fgrad.vmap(fgrad.vmap(f))(*[np.stack([b, b]) for b in batch])


def _raises(f, args):
    try:
        f(*args)
    except (ValueError, IndexError):
        return True
    return False


def test_value_checks_under_grad_and_vmap_of_grad():
    y = np.array([1, -2])
    raises(ValueError, lambda: fgrad.grad(lambda z: F.cross_entropy(z, y))(LOGITS), "[-2]")
    raises(ValueError, lambda: fgrad.vmap(fgrad.grad(lambda z, t: F.cross_entropy(z, t)))(LOGITS, y),
           "[-2]")
    raises(ValueError, lambda: fgrad.vmap(fgrad.grad(lambda p: F.binary_cross_entropy(p, np.ones(1))))(
        np.array([[0.5], [1.5]])), "[1.5]")
    raises(ValueError, lambda: fgrad.jvp(lambda p: F.binary_cross_entropy(p, np.ones(1)),
                                         (np.array([1.5]),), (np.ones(1),)), "[1.5]")
    # good values still work under vmap, and agree with a loop
    good = np.array([1, 2])
    batched = fgrad.vmap(lambda z, t: F.cross_entropy(z, t))(LOGITS, good)
    np.testing.assert_allclose(batched, [F.cross_entropy(z, t) for z, t in zip(LOGITS, good)])


def test_under_staging_values_are_not_known_and_not_checked():
    """As JAX under jit: make_jaxpr traces without values, so an out-of-range label cannot be
    seen; the program is still built (the docstrings say so)."""
    jaxpr = fgrad.make_jaxpr(lambda z, t: F.cross_entropy(z, t))(LOGITS, np.array([1, 2]))
    assert "take_along_axis" in str(jaxpr) or len(jaxpr.eqns) > 3


# --------------------------------------------------------------------------------------------
# 6. Semantics against torch and JAX
# --------------------------------------------------------------------------------------------

IGNORED = [
    ("plain", {}), ("weight", {"weight": np.array([0.5, 1.0, 2.0])}),
    ("label_smoothing", {"label_smoothing": 0.2}), ("sum", {"reduction": "sum"}),
    ("none", {"reduction": "none"}), ("custom-index", {"ignore_index": 1}),
]


@pytest.mark.parametrize("kwargs", [row[1] for row in IGNORED], ids=[row[0] for row in IGNORED])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_of_a_fully_ignored_batch_matches_torch(kwargs, dtype):
    """torch: the mean is 0/0 = NaN but the gradient is zero; the gradient must not be NaN
    (a fully padded batch would poison the parameters)."""
    ignore = kwargs.get("ignore_index", -100)
    logits = RNG.standard_normal((4, 3)).astype(dtype)
    target = np.full(4, ignore)
    t_kwargs = {k: (torch.tensor(v, dtype=getattr(torch, np.dtype(dtype).name)) if k == "weight"
                    else v) for k, v in kwargs.items()}
    kwargs = {k: (v.astype(dtype) if k == "weight" else v) for k, v in kwargs.items()}
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = TF.cross_entropy(t_logits, torch.tensor(target), **t_kwargs)
    t_loss.sum().backward()

    loss, grad = fgrad.value_and_grad(lambda z: fnp.sum(F.cross_entropy(z, target, **kwargs)))(logits)
    np.testing.assert_allclose(loss, t_loss.detach().sum().numpy())    # NaN for 'mean', as torch
    np.testing.assert_array_equal(grad, t_logits.grad.numpy())         # zeros, as torch
    assert grad.dtype == dtype and not np.isnan(grad).any()
    # nll_loss is the same division
    if kwargs.get("label_smoothing") is None:
        g = fgrad.grad(lambda z: fnp.sum(F.nll_loss(z, target, **kwargs)))(logits)
        assert not np.isnan(g).any()


def test_cross_entropy_with_some_targets_ignored_is_unchanged():
    logits, target = RNG.standard_normal((4, 3)), np.array([0, -100, 2, -100])
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = TF.cross_entropy(t_logits, torch.tensor(target))
    t_loss.backward()
    loss, grad = fgrad.value_and_grad(lambda z: F.cross_entropy(z, target))(logits)
    np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("p, y", [(1.5, 1.0), (-0.1, 0.0), (0.5, 1.5), (0.5, -0.5), (np.nan, 1.0)],
                         ids=["p>1", "p<0", "y>1", "y<0", "p-nan"])
def test_binary_cross_entropy_refuses_what_torch_refuses(p, y):
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        TF.binary_cross_entropy(torch.tensor([p]), torch.tensor([y]))
    raises(ValueError, lambda: F.binary_cross_entropy(np.array([p]), np.array([y])),
           "binary_cross_entropy", "[0, 1]")
    # the ends of the interval are fine, with torch's value
    np.testing.assert_allclose(F.binary_cross_entropy(np.array([0.0, 1.0]), np.array([1.0, 1.0])),
                               TF.binary_cross_entropy(torch.tensor([0.0, 1.0], dtype=torch.float64),
                                                       torch.tensor([1.0, 1.0], dtype=torch.float64)).item())


ARGNUMS = [(0, 0), (1, -1), (0, 1, 0)]


@pytest.mark.parametrize("argnums", ARGNUMS, ids=map(str, ARGNUMS))
@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jacrev", "jacfwd", "hessian"])
def test_repeated_argnums_are_an_error(argnums, transform):
    def f(x, y):
        return x * y
    with pytest.raises(RuntimeError, match="unique"):      # torch.func refuses them too
        torch.func.grad(lambda x, y: x * y, argnums=(0, 0))(torch.tensor(2.0), torch.tensor(3.0))
    named = {"value_and_grad": "grad", "hessian": "jacfwd"}.get(transform, transform)
    raises(TransformError, lambda: getattr(fgrad, transform)(f, argnums=argnums)(2.0, 3.0),
           f"{named}(f)", "more than once")
    assert fgrad.grad(f, argnums=(0, 1))(2.0, 3.0) == (3.0, 2.0)


LINEARIZE_TANGENTS = [
    ("broadcastable-(1,)", np.ones(1), ValueError, ["(1,)", "(3,)"]),
    ("too-long", np.ones(4), ValueError, ["(4,)", "(3,)"]),
    ("matrix", np.ones((1, 3)), ValueError, ["(1, 3)"]),
    ("scalar", np.float64(1.0), ValueError, ["()"]),
    ("complex", np.ones(3) * 1j, TypeError, ["complex128"]),
    ("integer", np.ones(3, int), TypeError, ["int64"]),
]


@pytest.mark.parametrize("tangent, exc, pieces", [row[1:] for row in LINEARIZE_TANGENTS],
                         ids=[row[0] for row in LINEARIZE_TANGENTS])
def test_linearize_checks_the_tangents_its_function_gets(tangent, exc, pieces):
    x = np.array([0.1, 0.2, 0.3])
    _, f_jvp = fgrad.linearize(fnp.sin, x)
    raises(exc, lambda: f_jvp(tangent), "linearize(sin)", *pieces)
    np.testing.assert_allclose(f_jvp(np.ones(3)), np.cos(x))
    np.testing.assert_allclose(fgrad.vmap(f_jvp)(np.eye(3)), np.diag(np.cos(x)))


# Complex or integer tangents and cotangents of real functions are errors (they were cast to
# real with only a NumPy ComplexWarning).
@pytest.mark.parametrize("call", [
    lambda: fgrad.jvp(fnp.sin, (np.ones(3),), (np.ones(3) * 1j,)),
    lambda: fgrad.vjp(fnp.sin, np.ones(3))[1](np.ones(3) * 1j),
    lambda: fgrad.jvp(fnp.sin, (np.ones(3),), (np.ones(3, int),)),
], ids=["complex-tangent", "complex-cotangent", "int-tangent"])
def test_complex_tangents_and_cotangents_of_real_functions_are_errors(call):
    with pytest.raises(TypeError, match="complex|int"):
        call()


# --------------------------------------------------------------------------------------------
# 8. Small ones: layer sizes, random arguments, hints
# --------------------------------------------------------------------------------------------

BAD_LAYERS = [
    ("kernel-0", lambda: fnn.Conv2d(3, 8, 0), ValueError, "kernel_size must be positive"),
    ("kernel-negative", lambda: fnn.Conv1d(3, 8, -1), ValueError, "kernel_size"),
    ("stride-0", lambda: fnn.Conv2d(3, 8, 3, stride=0), ValueError, "stride must be positive"),
    ("dilation-0", lambda: fnn.Conv2d(3, 8, 3, dilation=(1, 0)), ValueError, "dilation"),
    ("padding-negative", lambda: fnn.Conv2d(3, 8, 3, padding=-1), ValueError, "padding"),
    ("in-channels-0", lambda: fnn.Conv2d(0, 8, 3), ValueError, "in_channels must be positive"),
    ("out-channels-0", lambda: fnn.ConvTranspose2d(3, 0, 3), ValueError, "out_channels"),
    ("float-kernel", lambda: fnn.Conv2d(3, 8, 2.5), TypeError, "kernel_size must be an int"),
    ("bool-stride", lambda: fnn.Conv2d(3, 8, 3, stride=True), TypeError, "stride"),
    ("float-channels", lambda: fnn.Conv2d(3.0, 8, 3), TypeError, "in_channels must be an int"),
    ("output-padding", lambda: fnn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2),
     ValueError, "output_padding"),
    ("groups-0", lambda: fnn.Conv2d(4, 8, 3, groups=0), ValueError, "groups"),
]


@pytest.mark.parametrize("make, exc, piece", [row[1:] for row in BAD_LAYERS],
                         ids=[row[0] for row in BAD_LAYERS])
def test_convolution_sizes_are_checked_at_construction(make, exc, piece):
    raises(exc, make, piece)


def test_good_convolution_sizes_still_build():
    assert fnn.Conv2d(3, 8, 1).init(fgrad.random.key(0))["weight"].shape == (8, 3, 1, 1)
    assert fnn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=1).init(
        fgrad.random.key(0))["weight"].shape == (3, 8, 3, 3)
    assert fnn.Conv2d(np.int64(3), 8, (3, 1), padding=0).weight_shape() == (8, 3, 3, 1)


KEY = fgrad.random.key(0)
BAD_RANDOM = [
    ("permutation-negative", lambda: fgrad.random.permutation(KEY, -3), ValueError,
     "n must be non-negative"),
    ("permutation-float-axis", lambda: fgrad.random.permutation(KEY, np.ones((2, 3)), axis=0.5),
     TypeError, "axis must be an int"),
    ("permutation-axis-range", lambda: fgrad.random.permutation(KEY, np.ones((2, 3)), axis=2),
     ValueError, "out of range"),
    ("choice-negative", lambda: fgrad.random.choice(KEY, -3, (2,)), ValueError, "non-negative"),
    ("choice-negative-p", lambda: fgrad.random.choice(KEY, 3, (2,), p=np.array([-0.5, 1.0, 0.5])),
     ValueError, "p must be non-negative"),
    ("choice-float-axis", lambda: fgrad.random.choice(KEY, np.ones(3), (2,), axis=1.0),
     TypeError, "axis"),
    ("bernoulli-p", lambda: fgrad.random.bernoulli(KEY, 1.5, (3,)), ValueError, "[0, 1]"),
    ("bernoulli-nan", lambda: fgrad.random.bernoulli(KEY, np.nan, (3,)), ValueError, "nan"),
    ("truncated-normal-order", lambda: fgrad.random.truncated_normal(KEY, 1.0, -1.0, (3,)),
     ValueError, "lower must not exceed upper"),
]


@pytest.mark.parametrize("call, exc, piece", [row[1:] for row in BAD_RANDOM],
                         ids=[row[0] for row in BAD_RANDOM])
def test_random_arguments_are_checked(call, exc, piece):
    raises(exc, call, "fgrad.random.", piece)


def test_random_edge_values_that_are_fine():
    assert fgrad.random.permutation(KEY, 0).shape == (0,)
    assert sorted(fgrad.random.permutation(KEY, 5)) == list(range(5))
    assert fgrad.random.bernoulli(KEY, 1.0, (4,)).all()
    # a traced p is not checked (its values are unknown under staging)
    fgrad.make_jaxpr(lambda p: fgrad.random.bernoulli(KEY, p, (3,)))(0.5)


@pytest.mark.parametrize("raw, name, exists", [
    (np.sum, "sum", True), (np.median, "median", False), (np.linalg.norm, "linalg.norm", True),
    (np.fft.fft, "fft.fft", True), (np.nanmean, "nanmean", False)],
    ids=["sum", "median", "linalg.norm", "fft.fft", "nanmean"])
def test_raw_numpy_hints_name_only_functions_fgrad_numpy_has(raw, name, exists):
    target = fnp
    for part in name.split("."):
        target = getattr(target, part, None)
    assert callable(target) == exists
    with pytest.raises(TracerArrayConversionError) as info:
        fgrad.vmap(lambda a: raw(a))(np.ones((2, 3)))
    message = str(info.value)
    assert f"numpy.{name}" in message
    if exists:
        assert f"use fgrad.numpy.{name}" in message
    else:
        assert f"fgrad.numpy has no {name}" in message and f"fgrad.numpy.{name} " not in message
