"""Lookups with integer indices: ``embedding`` (rows of a table) and ``one_hot``.

``embedding(ids, weight)`` is ``weight[ids]``, a gather whose derivative adds the output
cotangent back into the looked-up rows (repeated ids accumulate). torch's options are kept:
``padding_idx`` (that row gets no gradient), ``max_norm`` (rows are rescaled to norm at most
``max_norm``; torch does this to ``weight`` in place, here only the output is rescaled and the
gradient is the one torch computes, as if the table had been rescaled beforehand), and
``scale_grad_by_freq`` (each row's gradient is divided by how often its id occurs).

>>> import numpy as np, fnn.functional as F
>>> F.embedding(np.array([[0, 2], [1, 1]]), np.random.rand(5, 3)).shape
(2, 2, 3)
>>> F.one_hot(np.array([0, 2]), 3)
array([[1, 0, 0],
       [0, 0, 1]])
"""
from __future__ import annotations

import numpy as np

import fgrad.numpy as fnp
from fgrad.core import Tracer, dtype_of, shape_of

__all__ = ["embedding", "one_hot"]


def _known(x):
    """The NumPy value of ``x`` when it is known (not a value being traced by vmap or staging)."""
    return x.concrete_value() if isinstance(x, Tracer) else np.asarray(x)


def _known_values(x):
    """Every value ``x`` takes, as a NumPy array, for checks of ids, labels and probabilities.

    Outside transforms and under ``grad``/``jvp`` that is ``x``'s own value; under an eager
    ``vmap`` it is the whole batch (``BatchTracer.val``), whose values are each example's, so
    a check that raises outside ``vmap`` raises inside it too. Under staging (``make_jaxpr``,
    ``jit``) values are not known and this is ``None``: the checks are skipped, as JAX skips
    them under ``jit``, and a bad id then behaves as NumPy's gather does when the program
    runs (an id past the end raises ``IndexError``; a negative one counts from the end, where
    JAX would clamp it to 0).
    """
    while isinstance(x, Tracer):
        value = x.concrete_value()
        if value is not None:
            return np.asarray(value)
        # descend one transform: a vmap tracer holds the batch, a JVP/VJP tracer its primal
        inner = getattr(x, "val", None)
        if inner is None:
            inner = getattr(x, "primal", None)
        if inner is None:
            return None
        x = inner
    return np.asarray(x)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` ``(num_embeddings, dim)`` at integer ``input`` ``(*)``: ``(*, dim)``.

    ``padding_idx`` (may be negative, counted from the end): its row gets zero gradient.
    ``max_norm``: looked-up rows with ``norm_type``-norm above it are scaled down to it (the
    table itself is not modified). ``scale_grad_by_freq``: gradients are divided by each id's
    frequency in ``input`` (needs ``input`` known, not traced). ``sparse`` is accepted for
    torch's signature; gradients are always dense arrays.

    ``padding_idx`` and ``scale_grad_by_freq`` act on forward-mode derivatives too, so that
    ``jvp`` and ``vjp`` differentiate the same function; torch's forward mode ignores them.

    Out-of-range ids raise ``IndexError`` outside transforms, under ``grad`` and under an eager
    ``vmap`` alike (negative ids are never counted from the end); under staging
    (``make_jaxpr``, ``jit``) the ids are not known and are not checked: running the staged
    program, an id past the end raises NumPy's ``IndexError`` and a negative one counts from
    the end (JAX's jitted gather clamps instead).
    """
    fname = "fnn.functional.embedding"
    w_shape = shape_of(weight)
    if len(w_shape) != 2:
        raise ValueError(f"{fname}: weight must be (num_embeddings, embedding_dim), got shape "
                         f"{w_shape}")
    if dtype_of(input).kind not in "iu":
        raise TypeError(f"{fname}: input must hold integer ids, got dtype {dtype_of(input)}")
    all_ids = _known_values(input)
    if all_ids is not None and all_ids.size and (all_ids.min() < 0 or all_ids.max() >= w_shape[0]):
        raise IndexError(f"{fname}: ids must be in [0, {w_shape[0]}), got values in "
                         f"[{all_ids.min()}, {all_ids.max()}]")
    ids = _known(input)
    rows = fnp.take(weight, input, axis=0)
    if max_norm is not None:
        norms = fnp.sum(fnp.abs(rows) ** norm_type, axis=-1, keepdims=True) ** (1.0 / norm_type)
        scale = fnp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        # the value of rows * scale with the gradient of rows, as torch's in-place renorm gives
        rows = rows + fnp.stop_gradient(rows * scale - rows)
    if scale_grad_by_freq:
        if ids is None:
            raise ValueError(f"{fname}: scale_grad_by_freq needs the ids' values, but input is "
                             f"being traced (e.g. under vmap); count frequencies outside")
        _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        inv_freq = (1.0 / counts[inverse]).reshape(ids.shape + (1,))
        # value rows, gradient rows / count(id)
        rows = rows * inv_freq + fnp.stop_gradient(rows * (1.0 - inv_freq))
    if padding_idx is not None:
        if not -w_shape[0] <= padding_idx < w_shape[0]:
            raise ValueError(f"{fname}: padding_idx must be within num_embeddings "
                             f"({w_shape[0]}), got {padding_idx}")
        padding_idx %= w_shape[0]
        is_padding = fnp.expand_dims(input == padding_idx, -1)
        rows = fnp.where(is_padding, fnp.stop_gradient(rows), rows)
    return rows


def one_hot(tensor, num_classes=-1):
    """``(*, num_classes)`` int64 array with a 1 at each index of ``tensor`` ``(*)``.

    ``num_classes=-1`` uses ``max(tensor) + 1`` (which needs ``tensor`` known, not traced).
    """
    fname = "fnn.functional.one_hot"
    if dtype_of(tensor).kind not in "iu":
        raise TypeError(f"{fname}: expected an integer array of class indices, got dtype "
                        f"{dtype_of(tensor)}")
    values = _known(tensor)
    if num_classes == -1:
        if values is None:
            raise ValueError(f"{fname}: num_classes=-1 needs the values of tensor, which is being "
                             f"traced; pass num_classes explicitly")
        num_classes = int(values.max()) + 1 if values.size else 0
    values = _known_values(tensor)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(f"{fname}: class values must be in [0, {num_classes}), got values in "
                         f"[{values.min()}, {values.max()}]")
    hits = fnp.expand_dims(tensor, -1) == fnp.arange(num_classes)
    return fnp.astype(hits, np.int64)
