"""Argument handling shared by the ``fnn.functional`` modules: tuples, reductions, checks."""
from __future__ import annotations

import fgrad.numpy as fnp
from fgrad.core import shape_of

REDUCTIONS = ("none", "mean", "sum")


def ntuple(name, what, value, n):
    """``value`` as a tuple of ``n`` ints (an int is repeated), as torch's ``_pair``/``_triple``."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            value = tuple(value) * n
        if len(value) != n:
            raise ValueError(f"{name}: {what} must be an int or {n} ints, got {tuple(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def legacy_reduction(size_average, reduce, reduction):
    """torch's ``_Reduction.legacy_get_string``: the deprecated flags win when either is given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def reduce_loss(name, loss, reduction):
    """Apply ``reduction`` ('none' | 'mean' | 'sum') to an elementwise loss."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return fnp.mean(loss)
    if reduction == "sum":
        return fnp.sum(loss)
    raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_reduction(name, reduction, allowed=REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {allowed}, got {reduction!r}")


def check_same_shape(name, input, target, what="target"):
    if shape_of(input) != shape_of(target):
        raise ValueError(f"{name}: {what} of shape {shape_of(target)} must have the shape of the "
                         f"input, {shape_of(input)}")

