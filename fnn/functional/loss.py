"""Loss functions with torch's names, argument order, reductions and edge-case conventions.

Every loss takes ``reduction`` ('none' | 'mean' | 'sum'; ``kl_div`` also 'batchmean') and
torch's deprecated ``size_average``/``reduce`` flags in the same positions (they override
``reduction`` when given, as in torch). Class-index targets are integer arrays; a loss that
accepts class probabilities instead (``cross_entropy``) tells them apart by dtype, as torch does.

Shapes: an elementwise loss needs ``target`` of exactly the input's shape and raises
``ValueError`` otherwise. torch only warns for ``mse_loss``, ``l1_loss``, ``huber_loss`` and
``smooth_l1_loss`` (and broadcasts silently in ``kl_div`` and ``hinge_embedding_loss``) before
broadcasting, which turns a ``(N, 1)`` prediction and a ``(N,)`` target into an ``(N, N)`` loss;
that is never what was meant, so here it is an error. Values that can only be mistakes (class
indices out of range, probabilities outside [0, 1]) raise too, wherever the values are known:
outside transforms, under ``grad``/``jvp`` and under an eager ``vmap``. Under staging
(``make_jaxpr``, ``jit``) values are unknown and, as in JAX under ``jit``, not checked: a
negative class index is then read from the end of the class axis when the program runs.

Numerical stability: log-probabilities come from ``log_softmax`` (a log-sum-exp with the
maximum taken out), and the logistic losses use ``max(z, 0) + log1p(exp(-|z|))``, so logits of
``+-1e4`` give finite, exact losses and gradients. ``binary_cross_entropy`` on probabilities
clamps its logarithms at ``-100`` as torch does.

>>> import numpy as np, fgrad, fnn.functional as F
>>> logits, labels = np.random.randn(8, 5), np.arange(8) % 5
>>> fgrad.grad(lambda z: F.cross_entropy(z, labels, label_smoothing=0.1))(logits).shape
(8, 5)
"""
from __future__ import annotations

import math

import fgrad.numpy as fnp
from fgrad.core import dtype_of, shape_of

import numpy as np

from ._utils import check_reduction, check_same_shape, legacy_reduction, reduce_loss
from .activation import _softplus, log_softmax
from .sparse import _known_values

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "hinge_embedding_loss",
           "multi_margin_loss", "kl_div"]


def _weighted_reduce(name, loss, weight, reduction):
    """torch's elementwise ``weight``: 'mean' divides by ``sum(weight)``, not the count."""
    if weight is None:
        return reduce_loss(name, loss, reduction)
    check_same_shape(name, loss, weight, "weight")
    loss = loss * weight
    if reduction == "mean":
        return fnp.sum(loss) / fnp.sum(weight)
    return reduce_loss(name, loss, reduction)


# --------------------------------------------------------------------------------------------
# Classification: negative log-likelihood and cross-entropy
# --------------------------------------------------------------------------------------------

def _check_class_weight(fname, weight, n_classes):
    if weight is not None and shape_of(weight) != (n_classes,):
        raise ValueError(f"{fname}: weight must have shape ({n_classes},), one per class, got "
                         f"{shape_of(weight)}")


def _check_broadcasts_to(fname, what, x, shape):
    """An elementwise ``weight``/``pos_weight`` may broadcast up to the loss's shape (torch
    expands it), never the loss up to its own: a (N, 1) weight must not make an (N, N) loss."""
    try:
        ok = np.broadcast_shapes(shape_of(x), shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{fname}: {what} of shape {shape_of(x)} must broadcast to the input's "
                         f"shape {tuple(shape)}")


def _class_axis(fname, input):
    s = shape_of(input)
    if not s:
        raise ValueError(f"{fname}: expected an input (N, C, *) or an unbatched (C,), got a scalar")
    return 0 if len(s) == 1 else 1


def _check_index_target(fname, input, target, class_axis, ignore_index=None):
    """Class indices: an integer array shaped like the input without its class axis, with
    values in ``[0, C)`` or equal to ``ignore_index`` (values are checked when they are known)."""
    s, t = shape_of(input), shape_of(target)
    if dtype_of(target).kind not in "iu":
        raise TypeError(f"{fname}: class-index target must be an integer array, got dtype "
                        f"{dtype_of(target)}")
    expected = s[:class_axis] + s[class_axis + 1:]
    if t != expected:
        raise ValueError(f"{fname}: class-index target of shape {t} does not fit input of shape "
                         f"{s}; expected target shape {expected} (the input without its class "
                         f"axis {class_axis})")
    value = _known_values(target)       # also under an eager vmap: the whole batch's labels
    if value is None:
        return
    bad = (value < 0) | (value >= s[class_axis])
    if ignore_index is not None:
        bad = bad & (value != ignore_index)
    if bad.any():
        raise ValueError(f"{fname}: target values must be class indices in [0, {s[class_axis]})"
                         + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
                         + f", got {value[bad].ravel()[:5].tolist()}")


def _mean_over_kept(total, kept_weight):
    """``total / kept_weight``. When every target is ignored (a fully padded batch) torch's loss
    is ``0 / 0 = nan`` but its gradient is zero; so here: NaN value, zero gradient (not the NaN
    gradient of a plain division, which would poison the parameters)."""
    empty = kept_weight == 0
    return fnp.where(empty, np.nan, total / fnp.where(empty, 1.0, kept_weight))


def _nll(fname, logp, target, weight, ignore_index, reduction, class_axis):
    """``-weight[y] logp[y]`` per position, zero where ``y == ignore_index``; the mean divides by
    the total weight of the targets that are not ignored (the count when ``weight`` is None):
    NaN when there are none, as in torch, with a zero gradient."""
    valid = target != ignore_index
    safe_target = fnp.where(valid, target, 0)
    picked = fnp.squeeze(fnp.take_along_axis(logp, fnp.expand_dims(safe_target, class_axis),
                                             class_axis), class_axis)
    if weight is None:
        target_weight = fnp.astype(valid, dtype_of(logp))
    else:
        target_weight = fnp.where(valid, fnp.take(weight, safe_target), 0.0)
    loss = -picked * target_weight
    if reduction == "mean":
        return _mean_over_kept(fnp.sum(loss), fnp.sum(target_weight)), target_weight
    return reduce_loss(fname, loss, reduction), target_weight


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input``.

    input ``(N, C, *)`` or ``(C,)``; target ``(N, *)`` or ``()`` of integer class indices;
    ``weight`` ``(C,)`` rescales each class. Positions whose target is ``ignore_index``
    contribute nothing, also to the mean's denominator ``sum_i weight[y_i]``.
    """
    fname = "fnn.functional.nll_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(fname, reduction)
    class_axis = _class_axis(fname, input)
    _check_class_weight(fname, weight, shape_of(input)[class_axis])
    _check_index_target(fname, input, target, class_axis, ignore_index)
    return _nll(fname, input, target, weight, ignore_index, reduction, class_axis)[0]


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits ``input`` and class indices or class probabilities.

    input ``(N, C, *)`` or ``(C,)`` (unnormalised logits); target either integer class indices
    ``(N, *)`` / ``()``, or float probabilities of the input's shape. ``weight`` ``(C,)``
    rescales classes. ``label_smoothing = e`` mixes the target with the uniform distribution:
    ``(1 - e) nll + e / C * sum_c -weight[c] log p_c``, exactly as torch. With indices,
    ``ignore_index`` positions are dropped and 'mean' divides by the summed weight of the kept
    targets; with probabilities, 'mean' divides by the number of positions ``N * prod(*)``.
    When every target is ``ignore_index`` (a fully padded batch) 'mean' is NaN, as in torch,
    and the gradient is zero, as in torch (not NaN).
    """
    fname = "fnn.functional.cross_entropy"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(fname, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fname}: label_smoothing must be in [0, 1], got {label_smoothing}")
    class_axis = _class_axis(fname, input)
    s = shape_of(input)
    n_classes = s[class_axis]
    _check_class_weight(fname, weight, n_classes)
    logp = log_softmax(input, class_axis)
    class_weight = 1.0 if weight is None else fnp.reshape(weight, (-1,) + (1,) * (len(s) - 1 - class_axis))
    if dtype_of(target).kind == "f":
        check_same_shape(fname, input, target, "probability target")
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
        loss = -fnp.sum(logp * target * class_weight, axis=class_axis)
        if reduction == "mean":
            return fnp.sum(loss) / (math.prod(s) // n_classes)
        return reduce_loss(fname, loss, reduction)
    _check_index_target(fname, input, target, class_axis, ignore_index)
    nll, target_weight = _nll(fname, logp, target, weight, ignore_index, reduction, class_axis)
    if not label_smoothing:
        return nll
    smooth = -fnp.sum(logp * class_weight, axis=class_axis)
    smooth = fnp.where(target != ignore_index, smooth, 0.0)
    if reduction == "mean":
        smooth = _mean_over_kept(fnp.sum(smooth), fnp.sum(target_weight))
    else:
        smooth = reduce_loss(fname, smooth, reduction)
    return (1.0 - label_smoothing) * nll + (label_smoothing / n_classes) * smooth


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------

def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """``(x - y)^2``; an elementwise ``weight`` makes 'mean' divide by ``sum(weight)``."""
    fname = "fnn.functional.mse_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape(fname, input, target)
    diff = input - target
    return _weighted_reduce(fname, diff * diff, weight, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """``|x - y|`` (derivative 0 where ``x == y``); ``weight`` as in :func:`mse_loss`."""
    fname = "fnn.functional.l1_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape(fname, input, target)
    return _weighted_reduce(fname, fnp.abs(input - target), weight, reduction)


def _huber(diff, delta):
    """``0.5 d^2`` for ``|d| < delta``, else ``delta (|d| - 0.5 delta)``."""
    a = fnp.abs(diff)
    return fnp.where(a < delta, 0.5 * diff * diff, delta * (a - 0.5 * delta))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Quadratic within ``delta`` of the target, linear outside. With an elementwise ``weight``
    'mean' is the plain mean of the weighted losses (torch's convention for this loss)."""
    fname = "fnn.functional.huber_loss"
    check_reduction(fname, reduction)
    if not delta > 0:
        raise ValueError(f"{fname}: delta must be positive, got {delta}")
    check_same_shape(fname, input, target)
    loss = _huber(input - target, delta)
    if weight is not None:
        check_same_shape(fname, loss, weight, "weight")
        loss = loss * weight
    return reduce_loss(fname, loss, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``huber_loss / beta``: ``0.5 d^2 / beta`` for ``|d| < beta``, else ``|d| - 0.5 beta``
    (plain L1 when ``beta == 0``)."""
    fname = "fnn.functional.smooth_l1_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape(fname, input, target)
    if beta < 0:
        raise ValueError(f"{fname}: beta must be non-negative, got {beta}")
    diff = input - target
    loss = fnp.abs(diff) if beta == 0 else _huber(diff, beta) / beta
    return reduce_loss(fname, loss, reduction)


# --------------------------------------------------------------------------------------------
# Binary classification
# --------------------------------------------------------------------------------------------

_LOG_FLOOR = -100.0


def _clamped_log(p):
    """``max(log p, -100)`` with a zero derivative below the floor (no ``inf * 0`` at ``p = 0``)."""
    above = p > math.exp(_LOG_FLOOR)
    return fnp.where(above, fnp.log(fnp.where(above, p, 1.0)), _LOG_FLOOR)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """``-(y log p + (1 - y) log(1 - p))`` for probabilities ``p`` in [0, 1].

    The logarithms are clamped at -100 as in torch, so ``p`` of exactly 0 or 1 gives a finite
    loss; there the derivative of the clamped term is 0, while torch's hand-written backward
    divides by ``max(p (1 - p), 1e-12)``. Away from 0 and 1 the two agree. Prefer
    :func:`binary_cross_entropy_with_logits`, which needs no clamp. As in torch, an input or
    target outside [0, 1] (or NaN) raises ``ValueError`` (where the values are known).
    """
    fname = "fnn.functional.binary_cross_entropy"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape(fname, input, target)
    for what, x in (("input", input), ("target", target)):
        values = _known_values(x)
        if values is not None and values.size and not ((values >= 0) & (values <= 1)).all():
            bad = values[~((values >= 0) & (values <= 1))].ravel()[:5].tolist()
            hint = "; pass logits to binary_cross_entropy_with_logits" if what == "input" else ""
            raise ValueError(f"{fname}: every element of the {what} must be a probability in "
                             f"[0, 1] (as torch requires), got {bad}{hint}")
    loss = -(target * _clamped_log(input) + (1.0 - target) * _clamped_log(1.0 - input))
    if weight is not None:
        _check_broadcasts_to(fname, "weight", weight, shape_of(input))
        loss = loss * weight
    return reduce_loss(fname, loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """``binary_cross_entropy(sigmoid(x), y)`` computed from the logits ``x`` without overflow:
    ``(1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)``. ``pos_weight`` (broadcast along the
    last axis, one per class) weighs the positive term; ``weight`` each element."""
    fname = "fnn.functional.binary_cross_entropy_with_logits"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape(fname, input, target)
    if pos_weight is not None:
        _check_broadcasts_to(fname, "pos_weight", pos_weight, shape_of(input))
    log_weight = 1.0 if pos_weight is None else 1.0 + (pos_weight - 1.0) * target
    loss = (1.0 - target) * input + log_weight * _softplus(-input)
    if weight is not None:
        _check_broadcasts_to(fname, "weight", weight, shape_of(input))
        loss = loss * weight
    return reduce_loss(fname, loss, reduction)


# --------------------------------------------------------------------------------------------
# Margin losses
# --------------------------------------------------------------------------------------------

def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    """``x`` where ``y == 1``, ``max(0, margin - x)`` where ``y == -1`` (targets are +-1).

    As torch, a target that is neither gets both terms.
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_same_shape("fnn.functional.hinge_embedding_loss", input, target)
    gap = margin - input
    margin_term = fnp.where(gap >= 0, gap, 0.0)       # clamp_min: derivative 1 at the kink
    loss = fnp.where(target != 1, margin_term, 0.0) + fnp.where(target != -1, input, 0.0)
    return reduce_loss("fnn.functional.hinge_embedding_loss", loss, reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    """Multi-class hinge: ``sum_{j != y} max(0, margin - x_y + x_j)^p / C`` per sample.

    input ``(N, C)`` or ``(C,)``, target ``(N,)`` or ``()`` class indices, ``p`` 1 or 2,
    ``weight`` ``(C,)`` multiplies each sample's terms by ``weight[y]``.
    """
    fname = "fnn.functional.multi_margin_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(fname, reduction)
    if p not in (1, 2):
        raise ValueError(f"{fname}: only p == 1 and p == 2 are supported, got p={p}")
    s = shape_of(input)
    if len(s) not in (1, 2):
        raise ValueError(f"{fname}: expected an input (N, C) or (C,), got shape {s}")
    class_axis = len(s) - 1
    _check_class_weight(fname, weight, s[class_axis])
    _check_index_target(fname, input, target, class_axis)
    index = fnp.expand_dims(target, class_axis)
    own = fnp.take_along_axis(input, index, class_axis)                 # x_y, kept as (N, 1)
    z = margin - own + input
    hinge = fnp.where(z > 0, z, 0.0)
    if p == 2:
        hinge = hinge * hinge
    others = fnp.arange(s[class_axis]) != index                          # leave out j == y
    if weight is not None:
        hinge = hinge * fnp.expand_dims(fnp.take(weight, target), class_axis)
    loss = fnp.sum(fnp.where(others, hinge, 0.0), axis=class_axis) / s[class_axis]
    return reduce_loss(fname, loss, reduction)


# --------------------------------------------------------------------------------------------
# Divergences
# --------------------------------------------------------------------------------------------

def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """``KL(target || q)`` pointwise, with ``input = log q``: ``y (log y - x)``, taken as 0 where
    ``y == 0`` (``exp(y) (y - x)`` when ``log_target``).

    'mean' averages over every element (torch's default, which is not the KL divergence of
    the rows); 'batchmean' divides the sum by the batch size, which is.
    """
    fname = "fnn.functional.kl_div"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(fname, reduction, ("none", "batchmean", "sum", "mean"))
    check_same_shape(fname, input, target)
    if log_target:
        loss = fnp.exp(target) * (target - input)
    else:
        zero = target == 0
        loss = fnp.where(zero, 0.0, target * fnp.log(fnp.where(zero, 1.0, target))) - target * input
    if reduction == "batchmean":
        s = shape_of(input)
        return fnp.sum(loss) / (s[0] if s else 1)
    return reduce_loss(fname, loss, reduction)
