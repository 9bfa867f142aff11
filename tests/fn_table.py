"""The shared table of test functions, each written twice: in fgrad.numpy and in torch.

One :class:`Case` is one row: a function in ``fgrad.numpy``, the same function in ``torch``,
and how to draw its (float64, possibly pytree) arguments from a seeded generator.
``tests/test_transforms.py`` runs every transform on every row and compares with
``torch.func``; adding a function to those tests is adding one row here (the OpInfo /
``helper_test_op`` pattern from STYLE.md).

The rows cover elementwise chains, broadcasting arithmetic, matmul chains, einsum (only when
``fgrad.numpy.einsum`` exists, see :data:`HAS_EINSUM`), reductions, indexing (slices, gathers,
``.at[].add`` scatters, ``take_along_axis``), softmax / log-softmax with large logits, a
two-layer MLP with a cross-entropy loss, functions of several arguments, functions of dicts
and lists, and a function whose output is a pytree.

The module also holds the small tree helpers the tests share: NumPy <-> torch conversion,
``assert_tree_close`` (compares containers by key, not by flattening order, since optree sorts
dict keys and torch keeps insertion order), random cotangents, and ``scalarize``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

import fgrad.numpy as fnp

#: True when ``fgrad.numpy.einsum`` exists; the einsum rows are in :data:`CASES` only then, and
#: ``test_transforms.py::test_einsum_rows_present`` fails (it does not skip) while it is missing.
HAS_EINSUM = hasattr(fnp, "einsum")


# --------------------------------------------------------------------------------------------
# Trees: conversion, comparison, random values
# --------------------------------------------------------------------------------------------

def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields")


def tree_map(fn, tree):
    """Map ``fn`` over the leaves of nested dicts / lists / tuples / namedtuples (None stays)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if _is_namedtuple(tree):
        return type(tree)(*(tree_map(fn, v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v) for v in tree)
    if tree is None:
        return None
    return fn(tree)


def tree_leaves(tree):
    """Leaves in a deterministic order (dicts by sorted key), for inner products."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in tree_leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in tree_leaves(v)]
    if tree is None:
        return []
    return [tree]


def to_torch(tree):
    """NumPy arrays (and Python floats) -> torch tensors with the same dtype and values."""
    return tree_map(lambda x: torch.from_numpy(np.array(x)), tree)


def to_numpy(tree):
    """torch tensors -> NumPy arrays (detached); NumPy leaves pass through."""
    return tree_map(lambda x: x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x),
                    tree)


def assert_tree_close(actual, expected, rtol=1e-9, atol=1e-10, path="out"):
    """``actual`` (fgrad) and ``expected`` (NumPy or torch) have the same containers and close
    leaves. Dicts compare by key; lists and tuples compare positionally (torch.func returns
    tuples where JAX-style APIs sometimes return lists, and vice versa); None matches None."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a dict, got {type(actual).__name__}"
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_tree_close(actual[k], expected[k], rtol, atol, f"{path}[{k!r}]")
        return
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), \
            f"{path}: expected a {type(expected).__name__}, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, rtol, atol, f"{path}[{i}]")
        return
    if expected is None:
        assert actual is None, f"{path}: expected None, got {type(actual).__name__}"
        return
    expected = to_numpy(expected)
    assert isinstance(actual, (np.ndarray, np.generic, float, int)), \
        f"{path}: expected an array, got {type(actual).__name__}"
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=path)


def random_like(tree, rng):
    """A tree of standard-normal arrays with the shapes and float dtypes of ``tree``."""
    return tree_map(lambda x: np.asarray(rng.standard_normal(np.shape(x)),
                                         dtype=np.result_type(x, np.float32)), tree)


def tree_vdot(a, b):
    """Sum over leaves of the elementwise product (NumPy arrays)."""
    return sum(float(np.sum(np.asarray(x) * np.asarray(y)))
               for x, y in zip(tree_leaves(a), tree_leaves(b)))


def stack_trees(trees):
    """Stack a list of same-shaped trees along a new axis 0, leaf by leaf."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: stack_trees([t[k] for t in trees]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack_trees([t[i] for t in trees]) for i in range(len(first)))
    return np.stack([np.asarray(t) for t in trees])


def index_tree(tree, i):
    """``tree`` with every leaf indexed by ``i`` along axis 0."""
    return tree_map(lambda x: np.asarray(x)[i], tree)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One function written in fgrad.numpy (``fn``) and in torch (``torch_fn``).

    ``shapes`` gives the arguments: a tuple with one entry per positional argument, each a
    shape tuple or a pytree (dict / list / tuple) of shape tuples; :meth:`draw` fills it with
    float64 values (``scale``/``shift`` make large logits). ``scalar`` marks rows whose
    output is a real scalar, so ``grad`` and ``hessian`` apply to them directly.
    """

    name: str
    fn: Callable
    torch_fn: Callable
    shapes: tuple
    scalar: bool = False
    scale: float = 1.0
    shift: float = 0.0

    def draw(self, seed=0, dtype=np.float64):
        rng = np.random.default_rng([seed, sum(map(ord, self.name))])
        return tuple(_fill(s, rng, self.scale, self.shift, dtype) for s in self.shapes)

    @property
    def nargs(self):
        return len(self.shapes)

    def __repr__(self):
        return self.name


def _is_shape(s):
    return isinstance(s, tuple) and all(isinstance(n, int) for n in s)


def _fill(spec, rng, scale, shift, dtype):
    if _is_shape(spec):
        return (rng.standard_normal(spec) * scale + shift).astype(dtype)
    if isinstance(spec, dict):
        return {k: _fill(v, rng, scale, shift, dtype) for k, v in spec.items()}
    return type(spec)(_fill(v, rng, scale, shift, dtype) for v in spec)


# Fixed integer indices (with repeats, so scatters accumulate) shared by both versions.
GATHER_ROWS = np.array([2, 0, 2, 1])
GATHER_COLS = np.array([4, 1, 1, 0])
SET_ROWS = np.array([3, 0])
ALONG = np.array([[0, 4], [3, 3], [1, 0]])
LABELS = np.array([0, 2, 1, 1, 0, 2, 2, 1, 0, 0, 1, 2, 1, 0, 2, 1])   # 16 examples, 3 classes
T = torch.from_numpy


def log_softmax(x, axis=-1):
    """Stable log-softmax: ``x - logsumexp(x)`` (no overflow for logits near 1e3)."""
    return x - fnp.logsumexp(x, axis=axis, keepdims=True)


def mlp_logits(params, x):
    """Two-layer MLP, torch weight layout: ``tanh(x W1^T + b1) W2^T + b2``."""
    h = fnp.tanh(x @ params["w1"].T + params["b1"])
    return h @ params["w2"].T + params["b2"]


def mlp_loss(params, x, labels):
    """Mean cross-entropy of the MLP on a batch ``x: (n, 5)`` or on one example ``x: (5,)``."""
    logp = log_softmax(mlp_logits(params, x))
    picked = fnp.take_along_axis(logp, fnp.expand_dims(labels, -1), axis=-1)
    return -fnp.mean(picked)


def torch_mlp_loss(params, x, labels):
    h = torch.tanh(x @ params["w1"].T + params["b1"])
    logits = h @ params["w2"].T + params["b2"]
    return torch.nn.functional.cross_entropy(logits, labels)


MLP_SHAPES = {"w1": (8, 5), "b1": (8,), "w2": (3, 8), "b2": (3,)}


def _rows():
    rows = [
        # ---- elementwise chains ----------------------------------------------------------
        Case("elementwise_chain",
             lambda x: fnp.sin(fnp.exp(fnp.tanh(x))) * fnp.log1p(x * x) + fnp.cos(x) / (2 + fnp.sinh(x) ** 2),
             lambda x: torch.sin(torch.exp(torch.tanh(x))) * torch.log1p(x * x) + torch.cos(x) / (2 + torch.sinh(x) ** 2),
             ((3, 4),)),
        Case("elementwise_more",
             lambda x: fnp.sqrt(x * x + 1) * fnp.arctan(x) + fnp.expm1(x / 3) - fnp.erf(x) * fnp.cosh(x / 2)
             + fnp.abs(x) * x + fnp.log(fnp.square(x) + 0.5),
             lambda x: torch.sqrt(x * x + 1) * torch.arctan(x) + torch.expm1(x / 3) - torch.erf(x) * torch.cosh(x / 2)
             + torch.abs(x) * x + torch.log(torch.square(x) + 0.5),
             ((5,),)),
        Case("power_division",
             lambda x, y: x / (1 + y ** 2) + (x * x + 1) ** fnp.tanh(y) - fnp.reciprocal(2 + fnp.cos(x)),
             lambda x, y: x / (1 + y ** 2) + (x * x + 1) ** torch.tanh(y) - torch.reciprocal(2 + torch.cos(x)),
             ((2, 3), (2, 3))),
        # ---- broadcasting ------------------------------------------------------------------
        Case("broadcast_arith",
             lambda x, y, z: x * y - x / (1 + y * y) + z * x - y,
             lambda x, y, z: x * y - x / (1 + y * y) + z * x - y,
             ((3, 1), (4,), ())),
        Case("broadcast_3d",
             lambda x, y: (x + y) * fnp.sin(x) - y ** 2 * fnp.maximum(x, y),
             lambda x, y: (x + y) * torch.sin(x) - y ** 2 * torch.maximum(x, y),
             ((2, 1, 4), (3, 1))),
        # ---- matmul chains -----------------------------------------------------------------
        Case("matmul_chain",
             lambda a, b, c: a @ fnp.tanh(b) @ c,
             lambda a, b, c: a @ torch.tanh(b) @ c,
             ((3, 4), (4, 5), (5, 2))),
        Case("matvec",
             lambda m, v: fnp.tanh(m @ v) @ m,
             lambda m, v: torch.tanh(m @ v) @ m,
             ((4, 3), (3,))),
        Case("batched_matmul",
             lambda a, b, c: fnp.sin(a @ b) @ c,
             lambda a, b, c: torch.sin(a @ b) @ c,
             ((2, 3, 4), (4, 5), (2, 5, 3))),
        Case("vector_dot",
             lambda v, m, w: fnp.dot(v @ m, w) + fnp.tensordot(m, m, axes=([0], [0]))[0, 1],
             lambda v, m, w: torch.dot(v @ m, w) + torch.tensordot(m, m, dims=([0], [0]))[0, 1],
             ((4,), (4, 3), (3,)), scalar=True),
        # ---- reductions --------------------------------------------------------------------
        Case("sum_mean_axis",
             lambda x: fnp.sum(x * x, axis=1) + fnp.mean(fnp.sin(x), axis=-1)
             - fnp.mean(x, axis=0, keepdims=True)[0, :3],
             lambda x: torch.sum(x * x, dim=1) + torch.mean(torch.sin(x), dim=-1)
             - torch.mean(x, dim=0, keepdim=True)[0, :3],
             ((3, 4),)),
        Case("max_axis",
             lambda x: fnp.max(x, axis=-1) * fnp.min(x, axis=-1) + fnp.max(x ** 2, axis=(0, 2)),
             lambda x: torch.amax(x, dim=-1) * torch.amin(x, dim=-1) + torch.amax(x ** 2, dim=(0, 2)),
             ((2, 3, 5),)),
        Case("logsumexp_var",
             lambda x: fnp.logsumexp(x, axis=1) + fnp.var(x, axis=1) + fnp.std(x, axis=1, ddof=1),
             lambda x: torch.logsumexp(x, dim=1) + torch.var(x, dim=1, unbiased=False) + torch.std(x, dim=1),
             ((3, 6),)),
        Case("prod_cumsum",
             lambda x: fnp.prod(x, axis=0) + fnp.cumsum(x, axis=1)[-1],
             lambda x: torch.prod(x, dim=0) + torch.cumsum(x, dim=1)[-1],
             ((3, 4),)),
        Case("reductions_scalar",
             lambda x: fnp.sum(fnp.sin(x)) + fnp.mean(x ** 2) + fnp.var(x) + fnp.max(x) + fnp.logsumexp(x),
             lambda x: torch.sum(torch.sin(x)) + torch.mean(x ** 2) + torch.var(x, unbiased=False)
             + torch.max(x) + torch.logsumexp(x.reshape(-1), dim=0),
             ((4, 3),), scalar=True),
        # ---- indexing ----------------------------------------------------------------------
        Case("slices",
             lambda x: x[1:, ::2] * x[:-1, 1::2] + x[-1, None, 1:4] - x[..., 2:5][0],
             lambda x: x[1:, ::2] * x[:-1, 1::2] + x[-1, None, 1:4] - x[..., 2:5][0],
             ((4, 6),)),
        Case("gather",
             lambda x: x[GATHER_ROWS] * 2 + fnp.sin(x[GATHER_ROWS, GATHER_COLS])[:, None]
             + fnp.take(x, GATHER_COLS, axis=1)[:, :1].T[:, :1],
             lambda x: x[T(GATHER_ROWS)] * 2 + torch.sin(x[T(GATHER_ROWS), T(GATHER_COLS)])[:, None]
             + torch.index_select(x, 1, T(GATHER_COLS))[:, :1].T[:, :1],
             ((3, 5),)),
        Case("scatter_add",
             lambda x, y: fnp.tanh(fnp.at(x)[GATHER_ROWS].add(y * y)),
             lambda x, y: torch.tanh(x.index_add(0, T(GATHER_ROWS), y * y)),
             ((3, 5), (4, 5))),
        Case("scatter_set",
             lambda x, y: fnp.sin(fnp.at(x)[SET_ROWS].set(y)) * x,
             lambda x, y: torch.sin(x.index_put((T(SET_ROWS),), y)) * x,
             ((4, 3), (2, 3))),
        Case("take_along_axis",
             lambda x: fnp.take_along_axis(x, ALONG, axis=1) ** 2 + fnp.sort(x, axis=1)[:, :2],
             lambda x: torch.take_along_dim(x, T(ALONG), dim=1) ** 2 + torch.sort(x, dim=1).values[:, :2],
             ((3, 5),)),
        # ---- softmax with large logits (values near 1000: naive exp overflows) ------------
        Case("log_softmax_large",
             lambda x: log_softmax(x),
             lambda x: torch.log_softmax(x, dim=-1),
             ((4, 6),), scale=30.0, shift=1000.0),
        Case("softmax_large",
             lambda x: fnp.exp(log_softmax(x, axis=0)) * fnp.arange(1.0, 5.0)[:, None],
             lambda x: torch.softmax(x, dim=0) * torch.arange(1.0, 5.0, dtype=torch.float64)[:, None],
             ((4, 6),), scale=3.0, shift=-800.0),
        # ---- a 2-layer MLP with cross-entropy ---------------------------------------------
        Case("mlp_cross_entropy",
             lambda params, x: mlp_loss(params, x, LABELS),
             lambda params, x: torch_mlp_loss(params, x, T(LABELS)),
             (MLP_SHAPES, (16, 5)), scalar=True),
        # ---- several arguments, pytree arguments, pytree outputs --------------------------
        Case("three_args",
             lambda x, y, z: fnp.tanh(x @ y) * z + fnp.sum(y * y, axis=0) / (1 + x @ x),
             lambda x, y, z: torch.tanh(x @ y) * z + torch.sum(y * y, dim=0) / (1 + x @ x),
             ((3,), (3, 4), ())),
        Case("dict_argument",
             lambda p: p["a"] * p["b"][0] + fnp.sin(p["b"][1]) * fnp.exp(-p["a"] ** 2),
             lambda p: p["a"] * p["b"][0] + torch.sin(p["b"][1]) * torch.exp(-p["a"] ** 2),
             ({"a": (3,), "b": [(3,), ()]},)),
        Case("dict_and_array",
             lambda p, x: fnp.sum(fnp.tanh(x @ p["w"] + p["b"]) ** 2),
             lambda p, x: torch.sum(torch.tanh(x @ p["w"] + p["b"]) ** 2),
             ({"w": (3, 2), "b": (2,)}, (4, 3)), scalar=True),
        Case("pytree_output",
             lambda x, y: {"dot": fnp.sum(x * y), "pair": (fnp.sin(x), x[:, None] * y)},
             lambda x, y: {"dot": torch.sum(x * y), "pair": (torch.sin(x), x[:, None] * y)},
             ((3,), (3,))),
    ]
    if HAS_EINSUM:
        rows += [
            Case("einsum_matmul",
                 lambda a, b: fnp.einsum("ij,jk->ik", a, fnp.tanh(b)),
                 lambda a, b: torch.einsum("ij,jk->ik", a, torch.tanh(b)),
                 ((3, 4), (4, 2))),
            Case("einsum_batched",
                 lambda a, b: fnp.einsum("bij,bjk->bik", a, b),
                 lambda a, b: torch.einsum("bij,bjk->bik", a, b),
                 ((2, 3, 4), (2, 4, 5))),
            Case("einsum_trace_outer",
                 lambda a, v: fnp.einsum("ii,j->j", a, v) + fnp.einsum("ij,ij->i", a, a)[:1],
                 lambda a, v: torch.einsum("ii,j->j", a, v) + torch.einsum("ij,ij->i", a, a)[:1],
                 ((3, 3), (4,))),
            Case("einsum_implicit_scalar",
                 lambda a, b: fnp.sum(fnp.einsum("ij,jk", a, b) ** 2) + fnp.einsum("i,i", a[0], a[1]),
                 lambda a, b: torch.sum(torch.einsum("ij,jk", a, b) ** 2) + torch.einsum("i,i", a[0], a[1]),
                 ((2, 3), (3, 4)), scalar=True),
        ]
    return rows


CASES = _rows()
SCALAR_CASES = [c for c in CASES if c.scalar]


def output_weights(case, args, seed=1):
    """A fixed random cotangent with the structure of ``case.fn(*args)``."""
    return random_like(case.fn(*args), np.random.default_rng(seed))


def scalarize(case, weights):
    """``(f, torch_f)``: ``<weights, case(*args)>``, a real scalar function of the same args."""
    w_leaves = tree_leaves(weights)
    t_leaves = [torch.from_numpy(w) for w in w_leaves]

    def f(*args):
        return sum(fnp.sum(o * w) for o, w in zip(tree_leaves(case.fn(*args)), w_leaves))

    def torch_f(*args):
        return sum(torch.sum(o * w) for o, w in zip(tree_leaves(case.torch_fn(*args)), t_leaves))

    return f, torch_f
