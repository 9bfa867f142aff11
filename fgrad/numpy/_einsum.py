"""``einsum``: Einstein summation lowered onto ``dot_general`` and ordinary fgrad.numpy ops.

The lowering, for ``einsum("ij,jk->ik", a, b)`` or any number of operands:

1. **Parse** the subscripts. ``...`` stands for the operand's remaining leading axes; they get
   internal labels aligned from the right, so ellipsis axes broadcast as in NumPy. Without
   ``->`` (implicit mode) the output is the ellipsis axes followed by the labels that appear
   exactly once, in sorted order (uppercase before lowercase), as in NumPy.
2. **Broadcast**: an axis of size 1 whose label has a larger size elsewhere is squeezed out of
   that operand, which then simply does not depend on that label.
3. **Per operand**: a label repeated within one operand (``"ii->i"``) takes the diagonal
   (fancy indexing with ``arange``); a label no other operand and not the output uses is
   summed out at once (``"ij->i"``).
4. **Contract** left to right with ``dot_general``: labels two operands share become batch
   axes if the output or a later operand still needs them, else they are contracted.
5. **Transpose** the result into the output order.

Because every step is an existing primitive (``dot_general``, ``gather``, ``reduce_sum``,
``reshape``, ``transpose``), einsum needs no rules of its own: it is differentiable in any
combination of operands, to any order, and ``vmap`` batches it through those primitives'
batching rules, whichever operands carry the batch axis.
"""
from __future__ import annotations

import operator

import numpy as np

from ..core import shape_of
from ..primitives.dot import dot_general
from ._funcs import _arr, moveaxis, reshape, sum, transpose

__all__ = ["einsum"]


def _fail(subscripts, shapes, why):
    raise ValueError(f"fgrad.numpy.einsum({subscripts!r}) with operands of shapes {shapes}: {why}")


def _parse_term(term, ndim, n_ellipsis_total, subscripts, shapes):
    """The labels of one input term, with ``...`` replaced by internal ellipsis labels."""
    if term.count("...") > 1 or "." in term.replace("...", ""):
        _fail(subscripts, shapes, f"term {term!r} has a malformed ellipsis; use '...' at most once")
    letters = [c for c in term.replace("...", "") if c.isalpha()]
    if len(letters) != len(term.replace("...", "")):
        _fail(subscripts, shapes, f"term {term!r} may contain only letters and one '...'")
    if "..." not in term:
        if len(letters) != ndim:
            _fail(subscripts, shapes, f"term {term!r} names {len(letters)} axes but its operand "
                                      f"has {ndim}")
        return letters
    n_ell = ndim - len(letters)
    if n_ell < 0:
        _fail(subscripts, shapes, f"term {term!r} names more axes than its operand's {ndim}")
    head, tail = term.split("...")
    # ellipsis axes are aligned from the right: the last one is always ("...", n_total - 1)
    ell = [("...", i) for i in range(n_ellipsis_total - n_ell, n_ellipsis_total)]
    return list(head) + ell + list(tail)


def _parse(subscripts, shapes):
    """``(input_labels, output_labels)``; a label is a letter or ``("...", position)``."""
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        _fail(subscripts, shapes, f"{len(terms)} input term(s) for {len(shapes)} operand(s)")
    n_ell = max([len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t]
                + [0])
    labels = [_parse_term(t, len(s), n_ell, subscripts, shapes) for t, s in zip(terms, shapes)]
    ellipsis = [("...", i) for i in range(n_ell)]
    if not arrow:   # implicit mode: the ellipsis, then the labels used once, sorted
        counts = {}
        for term in labels:
            for lab in term:
                if isinstance(lab, str):
                    counts[lab] = counts.get(lab, 0) + 1
        return labels, ellipsis + sorted(lab for lab, c in counts.items() if c == 1)
    if "..." in output:
        if output.count("...") > 1:
            _fail(subscripts, shapes, "the output has more than one '...'")
        head, tail = output.split("...")
        out = list(head) + ellipsis + list(tail)
    else:
        if n_ell:
            _fail(subscripts, shapes, "the inputs' '...' axes must appear in the output: add '...'")
        out = list(output)
    letters = [lab for lab in out if isinstance(lab, str)]
    if any(not c.isalpha() for c in letters):
        _fail(subscripts, shapes, f"output {output!r} may contain only letters and one '...'")
    if len(set(letters)) != len(letters):
        _fail(subscripts, shapes, f"output {output!r} repeats a label")
    used = {lab for term in labels for lab in term}
    missing = [lab for lab in letters if lab not in used]
    if missing:
        _fail(subscripts, shapes, f"output label(s) {missing} appear in no input")
    return labels, out


def _label_sizes(labels, shapes, subscripts):
    """Each label's size; sizes of 1 broadcast against any other size."""
    sizes = {}
    for term, shape in zip(labels, shapes):
        for lab in set(term):
            own = {n for other, n in zip(term, shape) if other == lab}
            if len(own) > 1:   # a diagonal needs equal axes, with no broadcasting
                _fail(subscripts, shapes, f"label {lab!r} repeats in one operand with sizes "
                                          f"{sorted(own)}")
        for lab, n in zip(term, shape):
            old = sizes.get(lab, 1)
            if n != 1 and old != 1 and n != old:
                name = "'...'" if not isinstance(lab, str) else repr(lab)
                _fail(subscripts, shapes, f"label {name} has sizes {old} and {n}")
            sizes[lab] = max(old, n)
    return sizes


def _squeeze_broadcast(x, term, sizes):
    """Drop axes of size 1 whose label is larger elsewhere (the operand is constant along them)."""
    shape = shape_of(x)
    keep = [i for i, lab in enumerate(term) if not (shape[i] == 1 and sizes[lab] != 1)]
    if len(keep) == len(term):
        return x, term
    return reshape(x, tuple(shape[i] for i in keep)), [term[i] for i in keep]


def _take_diagonals(x, term):
    """For each label repeated in ``term``, keep only the entries where its axes agree."""
    while len(set(term)) != len(term):
        lab = next(lab for lab in term if term.count(lab) > 1)
        where = [i for i, other in enumerate(term) if other == lab]
        rest = [other for other in term if other != lab]
        x = moveaxis(x, where, list(range(-len(where), 0)))
        idx = np.arange(shape_of(x)[-1])
        x = x[(Ellipsis,) + (idx,) * len(where)]   # x[..., i, i, ..., i] for every i
        term = rest + [lab]
    return x, term


def _contract(x, x_term, y, y_term, needed):
    """dot_general of two operands: shared labels still ``needed`` are batch axes, the rest of the
    shared ones are summed; the result's labels are (batch, x's free, y's free)."""
    shared = [lab for lab in x_term if lab in y_term]
    batch = [lab for lab in shared if lab in needed]
    summed = [lab for lab in shared if lab not in needed]
    dims = (([x_term.index(lab) for lab in summed], [y_term.index(lab) for lab in summed]),
            ([x_term.index(lab) for lab in batch], [y_term.index(lab) for lab in batch]))
    out_term = (batch + [lab for lab in x_term if lab not in shared]
                + [lab for lab in y_term if lab not in shared])
    return dot_general(x, y, dims), out_term


# NumPy's interleaved form labels axes with integers: 0-25 are 'A'-'Z', 26-51 'a'-'z' (so the
# implicit output, sorted by letter, is sorted by integer, as NumPy's C parser makes it)
_SUBLIST_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _sublist_term(sublist, what):
    """One sublist (``[0, 1]``, ``[Ellipsis, 0]``) as a subscripts term (``"AB"``, ``"...A"``)."""
    term = []
    for label in sublist:
        if label is Ellipsis:
            term.append("...")
            continue
        try:
            i = operator.index(label)
        except TypeError:
            raise TypeError(f"fgrad.numpy.einsum: {what} may hold only integers and Ellipsis, got "
                            f"{label!r}") from None
        if not 0 <= i < len(_SUBLIST_LETTERS):
            raise ValueError(f"fgrad.numpy.einsum: label {i} in {what} is out of range; the "
                             f"interleaved form takes integers in [0, 52)")
        term.append(_SUBLIST_LETTERS[i])
    return "".join(term)


def _from_sublists(args):
    """``(subscripts, operands)`` for the interleaved form ``einsum(x, [0, 1], y, [1, 2], [0, 2])``
    (operand, its sublist, ..., and optionally the output's sublist last)."""
    args = list(args)
    output = args.pop() if len(args) % 2 else None
    operands, sublists = args[0::2], args[1::2]
    spec = ",".join(_sublist_term(sub, f"the sublist of operand {i}")
                    for i, sub in enumerate(sublists))
    if output is not None:
        spec += "->" + _sublist_term(output, "the output sublist")
    return spec, operands


def einsum(subscripts, *operands, optimize=False):
    """Einstein summation, as ``numpy.einsum``: ``einsum("bij,bjk->bik", a, b)`` is a batched
    matmul, ``einsum("ii", a)`` a trace, ``einsum("...ij,...jk", a, b)`` a broadcast matmul.
    NumPy's interleaved form works too: ``einsum(a, [0, 1], b, [1, 2], [0, 2])`` is
    ``einsum("AB,BC->AC", a, b)`` (integer labels, ``Ellipsis`` for ``...``).

    Contracts the operands pairwise from left to right (no path optimisation: ``optimize`` is
    accepted and ignored), each pair with one ``dot_general`` call (one BLAS matmul).

    >>> import numpy as np, fgrad, fgrad.numpy as fnp
    >>> bilinear = lambda x, w, y: fnp.einsum("i,ij,j", x, w, y)
    >>> fgrad.vmap(fgrad.grad(bilinear, argnums=1), in_axes=(0, None, 0))(
    ...     np.ones((5, 2)), np.ones((2, 3)), np.ones((5, 3))).shape
    (5, 2, 3)
    """
    if not isinstance(subscripts, str):
        if not operands or not isinstance(operands[0], (list, tuple)):
            raise TypeError(f"fgrad.numpy.einsum: the first argument must be a subscripts string "
                            f"such as 'ij,jk->ik', or an operand followed by its sublist of "
                            f"integer labels (einsum(x, [0, 1], y, [1, 2], [0, 2])); got "
                            f"{type(subscripts).__name__} then "
                            f"{type(operands[0]).__name__ if operands else 'nothing'}")
        subscripts, operands = _from_sublists((subscripts,) + operands)
    if not operands:
        raise ValueError("fgrad.numpy.einsum: at least one operand is needed")
    operands = [_arr(x) for x in operands]
    shapes = [shape_of(x) for x in operands]
    labels, out_labels = _parse(subscripts, shapes)
    sizes = _label_sizes(labels, shapes, subscripts)

    terms = []
    for x, term in zip(operands, labels):
        x, term = _squeeze_broadcast(x, term, sizes)
        terms.append(_take_diagonals(x, term))

    prepared = []
    for i, (x, term) in enumerate(terms):
        elsewhere = set(out_labels).union(*(t for j, (_, t) in enumerate(terms) if j != i))
        alone = [k for k, lab in enumerate(term) if lab not in elsewhere]
        if alone:   # a label only this operand has, and not in the output: sum it now
            x = sum(x, axis=tuple(alone))
            term = [lab for k, lab in enumerate(term) if k not in alone]
        prepared.append((x, term))

    acc, acc_term = prepared[0]
    for k in range(1, len(prepared)):
        y, y_term = prepared[k]
        needed = set(out_labels).union(*(t for _, t in prepared[k + 1:]))
        acc, acc_term = _contract(acc, acc_term, y, y_term, needed)
    return transpose(acc, [acc_term.index(lab) for lab in out_labels])
