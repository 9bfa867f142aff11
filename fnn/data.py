"""fnn.data: what every training loop needs from its data — batches, splits and standardisation.

A data set here is a tuple of NumPy arrays that share their first axis (``(x, y)``, or
``(x,)``, or ``(x, y, sample_weight)``): example ``i`` is ``tuple(a[i] for a in arrays)``.
These helpers run on the host, outside any transform, and take their randomness from an
explicit :mod:`fgrad.random` key (there is no global generator), so an epoch's order is a pure
function of its key and a run is repeated exactly by repeating its seed::

    >>> import numpy as np, fgrad.random as fr
    >>> from fnn.data import batches, standardize, train_val_split
    >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    >>> key = fr.key(0)
    >>> (x_tr, y_tr), (x_val, y_val) = train_val_split((x, y), 0.2, key=fr.fold_in(key, 0))
    >>> x_tr, (mean, std) = standardize(x_tr)            # fit on the training part...
    >>> x_val, _ = standardize(x_val, mean, std)         # ...and apply it to the rest
    >>> for epoch in range(2):
    ...     for xb, yb in batches((x_tr, y_tr), 4, key=fr.fold_in(key, epoch + 1)):
    ...         pass                                      # step(params, opt_state, (xb, yb), k)

Loading the data sets themselves (scikit-learn's bundled sets, MNIST, Fashion-MNIST, CIFAR)
needs optional packages, files and downloads, so that lives with the examples
(``examples/datasets.py``); this module depends on fgrad and NumPy only. One-hot labels are
:func:`fnn.functional.one_hot`.
"""
from __future__ import annotations

import operator

import numpy as np

from fgrad import random as fr

__all__ = ["batches", "num_batches", "train_val_split", "standardize"]


def batches(arrays, batch_size, *, key=None, drop_last=False):
    """Iterate over ``arrays`` in batches: one tuple ``(a[idx] for a in arrays)`` per batch.

    Args:
      arrays: a tuple or list of arrays with the same first-axis length ``n``.
      batch_size: examples per batch (a positive int). The last batch is smaller when
        ``batch_size`` does not divide ``n``, unless ``drop_last``.
      key: an :mod:`fgrad.random` key. ``None`` keeps the stored order (batches are views,
        no copy); a key visits the examples in the order ``fgrad.random.permutation(key, n)``.
        Use a new key every epoch (``fgrad.random.fold_in(key, epoch)``) for a new order.
      drop_last: drop the final incomplete batch, so every batch has ``batch_size`` examples
        (useful when a step's shapes must not change).

    Returns an iterator over ``num_batches(n, batch_size, drop_last)`` tuples; every example
    appears exactly once per pass (at most once with ``drop_last``). The arguments are checked
    when it is called, not when iteration starts.

    >>> [xb.tolist() for (xb,) in batches((np.arange(5),), 2)]
    [[0, 1], [2, 3], [4]]
    """
    arrays, n = _check_arrays("batches", arrays)
    batch_size = _check_batch_size("batches", batch_size)
    order = None if key is None else np.asarray(fr.permutation(key, n))
    stop = n - n % batch_size if drop_last else n
    return _iterate(arrays, batch_size, order, stop)


def _iterate(arrays, batch_size, order, stop):
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        index = slice(start, end) if order is None else order[start:end]
        yield tuple(a[index] for a in arrays)


def num_batches(n, batch_size, drop_last=False):
    """How many batches :func:`batches` yields for ``n`` examples: ``ceil(n / batch_size)``,
    or ``floor(n / batch_size)`` with ``drop_last``."""
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"num_batches: n must be >= 0, got {n}")
    batch_size = _check_batch_size("num_batches", batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def train_val_split(arrays, val_fraction, *, key):
    """Split ``arrays`` at random into a training part and a validation part.

    Args:
      arrays: a tuple or list of arrays with the same first-axis length ``n``.
      val_fraction: the share of examples held out, ``0 < val_fraction < 1``; the validation
        part has ``round(val_fraction * n)`` examples, and both parts must be non-empty.
      key: an :mod:`fgrad.random` key choosing which examples go where.

    Returns ``(train, val)``, two tuples with one array per entry of ``arrays``. Examples are
    taken in the order of ``fgrad.random.permutation(key, n)`` (the validation part first),
    so both parts are shuffled.
    """
    arrays, n = _check_arrays("train_val_split", arrays)
    val_fraction = float(val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be strictly between 0 and 1, "
                         f"got {val_fraction}")
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"train_val_split: val_fraction={val_fraction} of {n} examples leaves "
                         f"{n_val} for validation and {n - n_val} for training; both parts "
                         f"need at least one example")
    order = np.asarray(fr.permutation(key, n))
    val_index, train_index = order[:n_val], order[n_val:]
    return (tuple(a[train_index] for a in arrays), tuple(a[val_index] for a in arrays))


def standardize(x, mean=None, std=None, axis=0, eps=1e-8):
    """Shift and scale ``x`` to zero mean and unit standard deviation along ``axis``.

    ``x_std = (x - mean) / (std + eps)``; ``eps`` keeps constant features finite (they map to
    0). Fit on the training set, then apply the same statistics to the test set::

        x_train, (mean, std) = standardize(x_train)
        x_test, _ = standardize(x_test, mean, std)

    Args:
      x: an array; integer inputs (uint8 pixels) are converted to float64, floating inputs
        keep their dtype.
      mean, std: statistics from an earlier call (both or neither); ``None`` computes them
        from ``x``.
      axis: the axis or axes the statistics are taken over: ``0`` gives per-feature statistics
        for ``(n, features)`` data; ``(0, 2, 3)`` gives per-channel statistics for
        ``(n, c, h, w)`` images; ``None``: one mean and std for the whole array.
      eps: added to ``std`` before dividing.

    Returns ``(x_std, (mean, std))``. The statistics keep the reduced axes as size-1 axes,
    except the example axis 0, which is dropped: ``(features,)`` for ``axis=0``, ``(c, 1, 1)``
    for ``axis=(0, 2, 3)``. They broadcast against any batch of the same layout.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    if (mean is None) != (std is None):
        raise ValueError("standardize: pass both mean and std (statistics from an earlier "
                         "call) or neither (compute them from x)")
    if mean is None:
        axes = tuple(range(x.ndim)) if axis is None else tuple(
            sorted(operator.index(a) % x.ndim for a in np.atleast_1d(axis)))
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True)
        if 0 in axes:
            mean, std = mean[0], std[0]
    mean = np.asarray(mean, dtype=x.dtype)
    std = np.asarray(std, dtype=x.dtype)
    return (x - mean) / (std + x.dtype.type(eps)), (mean, std)


def _check_arrays(fname, arrays):
    """``arrays`` as a tuple of NumPy arrays with a common first-axis length, and that length."""
    if not isinstance(arrays, (tuple, list)):
        raise TypeError(f"{fname}: arrays must be a tuple or list of arrays, such as (x, y), "
                        f"got {type(arrays).__name__}; for a single array pass (x,)")
    if not arrays:
        raise ValueError(f"{fname}: arrays is empty; pass at least one array, such as (x,)")
    arrays = tuple(np.asarray(a) for a in arrays)
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"{fname}: arrays[{i}] is a scalar; every array needs a first "
                             f"(example) axis")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(f"{fname}: arrays must share their first (example) axis, got shapes "
                         f"{shapes}")
    return arrays, lengths[0]


def _check_batch_size(fname, batch_size):
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"{fname}: batch_size must be an int, got "
                        f"{type(batch_size).__name__}") from None
    if batch_size < 1:
        raise ValueError(f"{fname}: batch_size must be >= 1, got {batch_size}")
    return batch_size
