"""The operator table: one row per fgrad.numpy operation, driving every test in ``test_ops.py``.

In the style of PyTorch's OpInfo and tinygrad's ``helper_test_op``, a row (:class:`OpSpec`)
says everything the tests need to know about one operation, and adding an operation is adding
one row:

* ``fn``: the fgrad call, ``fn(*operands, **kwargs)``;
* ``ref``: the NumPy reference with the same signature (written out here where NumPy has no
  such function: erf, logistic, logsumexp; SciPy is not a test dependency);
* ``torch_fn``: the PyTorch equivalent on tensors, for ``torch.func.jvp``/``vjp``/``grad``;
* ``samples``: a hypothesis strategy of :class:`Sample` (operands + static keyword arguments):
  shapes include broadcasting pairs, 0-d scalars and size-0/size-1 axes where the op allows
  them; values are kept in the op's domain and away from its kinks (no ties for max/sort
  unless the row is about ties, no integers for floor, ...), so finite differences apply;
* which checks apply (``grad``, ``fd``, ``grad2``, ``vmap``, ``python_scalar``).

Most rows are written once for both libraries with the ``xp`` trick: ``lambda xp, x: xp.sum(x)``
becomes ``fn`` with ``xp = fgrad.numpy`` and ``ref`` with ``xp = numpy``. Operands are the
arrays a transform may see (floats are differentiated; integer index arrays are batched by
vmap); everything static (axes, shapes, boolean masks, index templates) is a keyword argument.

Linear algebra and einsum have their own tests (``tests/test_linalg.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fgrad.numpy as fnp

__all__ = ["OpSpec", "Sample", "ROWS", "ARRAY"]


# ============================================================================================
# Samples
# ============================================================================================

class Sample:
    """One input of an op: operands made by ``build(rng)`` from a seeded generator, and kwargs.

    ``args`` are the operands for ``seed``; :meth:`redraw` makes fresh operands of the same
    shapes and dtypes from another generator (``vmap`` tests stack several of them).
    """

    def __init__(self, build: Callable[[np.random.Generator], tuple], kwargs: dict, seed: int):
        self.build, self.kwargs, self.seed = build, kwargs, seed
        self.args = self.redraw(np.random.default_rng(seed))

    def redraw(self, rng):
        return tuple(np.asarray(a) for a in self.build(rng))

    def __repr__(self):
        operands = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.args)
        return f"Sample(operands=({operands}), kwargs={self.kwargs!r}, seed={self.seed})"


def _seeds():
    return st.integers(0, 2**32 - 1)


def _sample(draw, operands, **kwargs):
    """A :class:`Sample` whose operands are ``[(domain, shape), ...]``."""
    def build(rng):
        return tuple(domain(rng, shape) for domain, shape in operands)
    return Sample(build, kwargs, draw(_seeds()))


# --- value domains: (rng, shape) -> array ------------------------------------------------------

def real(rng, shape):
    return np.asarray(rng.normal(size=shape))


def positive(rng, shape):
    return np.asarray(rng.uniform(0.5, 2.0, shape))


def unit_interval(rng, shape):            # inside (-1, 1): arcsin, arccos, arctanh
    return np.asarray(rng.uniform(-0.9, 0.9, shape))


def above_minus_one(rng, shape):          # log1p
    return np.asarray(rng.uniform(-0.6, 2.0, shape))


def away_from_zero(rng, shape):           # abs, sign, denominators
    return np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape))


def off_integers(rng, shape):             # floor/ceil/round are flat here: 0.1 from k and k + 1/2
    return np.asarray(rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.4, shape))


def grid(offset):
    """Values ``k + offset +- 0.1`` for integers k: two grids with offsets 1/2 apart never tie."""
    def domain(rng, shape):
        return np.asarray(rng.integers(-3, 3, shape) + offset + rng.uniform(-0.1, 0.1, shape))
    return domain


def distinct(rng, shape):                 # all entries at least 0.3 apart: no ties for max/sort
    n = int(np.prod(shape, dtype=np.int64))
    values = (rng.permutation(n) - n / 2) * 0.4 + rng.uniform(-0.05, 0.05, n)
    return values.reshape(shape)


def with_ties(rng, shape):                # few distinct values: ties everywhere
    return np.asarray(rng.integers(-1, 2, shape) * 0.5)


def with_zeros(rng, shape):               # exact zeros among normal values
    return np.asarray(np.where(rng.random(shape) < 0.3, 0.0, rng.normal(size=shape)))


def specials(rng, shape):                 # NaN and +-inf among normal values
    return np.asarray(rng.choice([np.nan, np.inf, -np.inf, 0.0, 1.5, -2.0], shape))


def booleans(rng, shape):
    return np.asarray(rng.random(shape) < 0.5)


def integers(low, high):
    def domain(rng, shape):
        return np.asarray(rng.integers(low, high, shape))
    return domain


# --- shapes ---------------------------------------------------------------------------------

def shapes(min_dims=0, max_dims=3, min_side=0, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcast_shapes(n, min_side=0, max_dims=3):
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=0, max_dims=max_dims,
                                             min_side=min_side, max_side=4).map(
        lambda r: r.input_shapes)


def axis_arg(ndim, allow_tuple=True, allow_empty=True):
    """An ``axis=`` argument for an array of ``ndim`` axes: None, an int, or a tuple of ints
    (``()`` only with ``allow_empty``)."""
    options = [st.none()]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
    if allow_tuple and ndim:
        options.append(st.lists(st.integers(-ndim, ndim - 1), min_size=0 if allow_empty else 1,
                                max_size=ndim, unique_by=lambda a: a % ndim).map(tuple))
    elif allow_tuple and allow_empty:
        options.append(st.just(()))
    return st.one_of(options)


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


# ============================================================================================
# Rows
# ============================================================================================

@dataclass(frozen=True)
class OpSpec:
    """One operation and the checks that apply to it (see the module docstring)."""

    name: str
    fn: Callable
    ref: Callable
    torch_fn: Callable | None
    samples: st.SearchStrategy
    grad: bool = True            # jvp/vjp vs torch.func and finite differences, adjoint identity
    fd: bool = True              # finite differences apply (False for rows that sit on kinks/ties)
    grad2: bool = False          # grad(grad) vs torch.func.grad(torch.func.grad)
    vmap: bool = True
    python_scalar: bool = False  # a binary op whose float32 operand a Python float must not upcast

    def __post_init__(self):
        if self.grad and self.torch_fn is None:
            raise ValueError(f"row {self.name}: a differentiable row needs a torch_fn")


ROWS: list[OpSpec] = []


def row(name, f, torch_fn, samples, *, ref=None, **checks):
    """Add a row; ``f(xp, *operands, **kwargs)`` serves both fgrad (``xp=fnp``) and NumPy
    (``xp=np``) unless ``ref`` gives the reference separately (then ``f`` is fgrad's own call)."""
    if ref is None:
        fn, ref = partial(f, fnp), partial(f, np)
    else:
        fn = f
    ROWS.append(OpSpec(name, fn, ref, torch_fn, samples, **checks))


# --- elementwise ------------------------------------------------------------------------------

@st.composite
def unary_samples(draw, domain, min_side=0):
    return _sample(draw, [(domain, draw(shapes(min_side=min_side)))])


@st.composite
def nary_samples(draw, *domains, min_side=0):
    """Operands of mutually broadcastable shapes (including 0-d ones), one domain each."""
    operand_shapes = draw(broadcast_shapes(len(domains), min_side=min_side))
    return _sample(draw, list(zip(domains, operand_shapes)))


def unary(name, domain, torch_fn, *, ref=None, grad2=True, **checks):
    fgrad_fn = getattr(fnp, name)
    row(name, lambda x: fgrad_fn(x), torch_fn, unary_samples(domain),
        ref=ref or getattr(np, name), grad2=grad2 and checks.get("grad", True), **checks)


def binary(name, domains, torch_fn, *, ref=None, grad2=True, **checks):
    fgrad_fn = getattr(fnp, name)
    grad = checks.get("grad", True)
    row(name, lambda x, y: fgrad_fn(x, y), torch_fn, nary_samples(*domains),
        ref=ref or getattr(np, name), grad2=grad2 and grad, python_scalar=grad, **checks)


def _np_erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _np_logistic(x):
    return np.exp(-np.logaddexp(0, -x))     # 1 / (1 + e^-x) without overflow


unary("negative", real, torch.neg)
unary("exp", real, torch.exp)
unary("log", positive, torch.log)
unary("expm1", real, torch.expm1)
unary("log1p", above_minus_one, torch.log1p)
unary("sqrt", positive, torch.sqrt)
unary("sin", real, torch.sin)
unary("cos", real, torch.cos)
unary("tan", unit_interval, torch.tan)
unary("tanh", real, torch.tanh)
unary("sinh", real, torch.sinh)
unary("cosh", real, torch.cosh)
unary("arcsin", unit_interval, torch.asin)
unary("arccos", unit_interval, torch.acos)
unary("arctan", real, torch.atan)
unary("arcsinh", real, torch.asinh)
unary("arctanh", unit_interval, torch.atanh)
unary("abs", away_from_zero, torch.abs)
unary("square", real, torch.square)
unary("reciprocal", away_from_zero, torch.reciprocal)
unary("log2", positive, torch.log2)
unary("log10", positive, torch.log10)
unary("exp2", real, torch.exp2)
unary("erf", real, torch.special.erf, ref=_np_erf)
unary("logistic", real, torch.sigmoid, ref=_np_logistic)
# special functions NumPy lacks (scipy.special's; torch.special is the reference)
def _torch_ref(fn):
    return lambda x, **kw: fn(torch.from_numpy(np.asarray(x)), **kw).numpy()


def wide_positive(rng, shape):            # lgamma/digamma: small arguments and the asymptotic range
    return np.asarray(rng.uniform(0.05, 15.0, shape))


def negative_off_integers(rng, shape):    # the reflection formula: -k - u for u in [0.2, 0.8]
    return np.asarray(-rng.integers(0, 4, shape) - rng.uniform(0.2, 0.8, shape))


unary("erfc", real, torch.special.erfc,
      ref=lambda x: np.vectorize(math.erfc, otypes=[x.dtype])(x))
unary("erfinv", unit_interval, torch.special.erfinv, ref=_torch_ref(torch.special.erfinv))
unary("lgamma", wide_positive, torch.lgamma, ref=_torch_ref(torch.lgamma))
unary("digamma", wide_positive, torch.digamma, ref=_torch_ref(torch.digamma))
row("lgamma_negative", lambda x: fnp.gammaln(x), torch.lgamma, unary_samples(negative_off_integers),
    ref=_torch_ref(torch.lgamma), grad2=True)
row("digamma_negative", lambda x: fnp.digamma(x), torch.digamma,
    unary_samples(negative_off_integers), ref=_torch_ref(torch.digamma))


@st.composite
def polygamma_samples(draw):
    return _sample(draw, [(wide_positive, draw(shapes()))], n=draw(st.sampled_from([1, 2])))


def _mp_polygamma(x, n):
    """mpmath's polygamma (torch's trigamma is good to about 1e-9 only; mpmath comes with torch)."""
    import mpmath
    return np.vectorize(lambda v: float(mpmath.polygamma(n, float(v))), otypes=[x.dtype])(x)


row("polygamma", lambda x, n: fnp.polygamma(n, x), lambda x, n: torch.polygamma(n, x),
    polygamma_samples(), ref=_mp_polygamma, grad2=True)
# zero derivative almost everywhere (sampled away from the jumps)
unary("sign", away_from_zero, torch.sign)
unary("floor", off_integers, torch.floor)
unary("ceil", off_integers, torch.ceil)
unary("round", off_integers, torch.round)
# at the kink: d|x| = sign(x) = 0 at 0, as torch (no finite differences there)
row("abs_at_zero", lambda x: fnp.abs(x), torch.abs, unary_samples(with_zeros), ref=np.abs,
    fd=False)
row("round_decimals", lambda xp, x: xp.round(x, decimals=1), lambda x: torch.round(x, decimals=1),
    unary_samples(lambda rng, s: off_integers(rng, s) / 10))
# no derivative: boolean/integer results (forward and batching only)
unary("isfinite", specials, None, grad=False)
unary("isnan", specials, None, grad=False)
unary("isinf", specials, None, grad=False)
unary("logical_not", booleans, None, grad=False)
unary("invert", integers(-8, 8), None, grad=False)

binary("add", (real, real), torch.add)
binary("subtract", (real, real), torch.sub)
binary("multiply", (real, real), torch.mul)
binary("divide", (real, away_from_zero), torch.div)
binary("power", (positive, real), torch.pow)
binary("maximum", (grid(0.0), grid(0.5)), torch.maximum)
binary("minimum", (grid(0.0), grid(0.5)), torch.minimum)
binary("arctan2", (real, away_from_zero), torch.atan2)
# ties: the derivative is split evenly between equal operands, as torch.maximum/minimum
row("maximum_ties", lambda x, y: fnp.maximum(x, y), torch.maximum,
    nary_samples(with_ties, with_ties), ref=np.maximum, fd=False)
row("minimum_ties", lambda x, y: fnp.minimum(x, y), torch.minimum,
    nary_samples(with_ties, with_ties), ref=np.minimum, fd=False)
for _name in ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal"):
    binary(_name, (with_ties, with_ties), None, grad=False)
for _name in ("logical_and", "logical_or", "logical_xor"):
    binary(_name, (booleans, booleans), None, grad=False)
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    binary(_name, (integers(-8, 8), integers(-8, 8)), None, grad=False)
for _name in ("left_shift", "right_shift"):
    binary(_name, (integers(0, 64), integers(0, 4)), None, grad=False)
binary("floor_divide", (real, away_from_zero), None, grad=False)


@st.composite
def remainder_samples(draw):
    """x mod y with x / y at least 0.1 away from an integer (where x mod y jumps)."""
    x_shape, y_shape = draw(broadcast_shapes(2))
    out_shape = np.broadcast_shapes(x_shape, y_shape)

    def build(rng):
        y = away_from_zero(rng, y_shape)
        quotient = rng.integers(-3, 3, out_shape) + rng.uniform(0.1, 0.9, out_shape)
        return quotient * y, y
    return Sample(build, {}, draw(_seeds()))


row("remainder", lambda x, y: fnp.remainder(x, y), torch.remainder, remainder_samples(),
    ref=np.remainder, grad2=True, python_scalar=True)


@st.composite
def power_scalar_samples(draw):
    return _sample(draw, [(away_from_zero, draw(shapes()))],
                   exponent=draw(st.sampled_from([2, 3, -1, -2, 0.5, 1.5])))


row("power_scalar_exponent", lambda xp, x, exponent: xp.power(xp.abs(x), exponent),
    lambda x, exponent: torch.pow(torch.abs(x), exponent), power_scalar_samples(), grad2=True)
row("power_int_exponent_negative_base", lambda xp, x: xp.power(x, 3),
    lambda x: torch.pow(x, 3), unary_samples(real), grad2=True)


# --- operators on tracers (``x + y`` ...), and a NumPy array on the left of one -------------------

def _operators(x, y):
    return (-x + y * x - x / (y * y + 1) + (x - 0.5) ** 2 - 2 ** y + abs(x) + 3.0 * (y @ y.T)
            + x[..., :1] % 1.5)


@st.composite
def square_pair_samples(draw):
    n = draw(st.integers(1, 4))
    return _sample(draw, [(real, (n, n)), (real, (n, n))])


row("operators", lambda xp, x, y: _operators(x, y), _operators, square_pair_samples(), grad2=True)


@st.composite
def numpy_left_samples(draw):
    shape = draw(shapes())
    const = np.random.default_rng(draw(_seeds())).uniform(0.5, 1.5, shape)
    return _sample(draw, [(real, shape)], const=const)


def _numpy_on_the_left(x, const):
    return const * x + const - x + const / (x * x + 1) + const ** x


row("operators_numpy_left", lambda xp, x, const: _numpy_on_the_left(x, const),
    lambda x, const: _numpy_on_the_left(x, torch.from_numpy(const)), numpy_left_samples())


# --- where, clip ----------------------------------------------------------------------------------

row("where", lambda xp, c, x, y: xp.where(c, x, y), torch.where,
    nary_samples(booleans, real, real), grad2=True)
row("where_scalar_branch", lambda xp, c, x: xp.where(c, x, 0.5),
    lambda c, x: torch.where(c, x, 0.5), nary_samples(booleans, real))


@st.composite
def clip_samples(draw):
    lo, hi = draw(st.sampled_from([(-0.5, 1.5), (None, 0.5), (-1.5, None)]))
    return _sample(draw, [(grid(0.0), draw(shapes()))], a_min=lo, a_max=hi)


row("clip", lambda xp, x, a_min, a_max: xp.clip(x, a_min, a_max),
    lambda x, a_min, a_max: torch.clamp(x, a_min, a_max), clip_samples(), grad2=True)
# JAX's keywords min=/max= (NumPy 2.1 accepts them too)
row("clip_jax_keywords", lambda xp, x, a_min, a_max: xp.clip(x, min=a_min, max=a_max),
    lambda x, a_min, a_max: torch.clamp(x, a_min, a_max), clip_samples())
# bounds as arrays: x on the integer grid, bounds on the half-integer grid (never tied with x);
# where lo > hi the result is hi, in NumPy, fgrad and torch alike
row("clip_array_bounds", lambda xp, x, lo, hi: xp.clip(x, lo, hi),
    lambda x, lo, hi: torch.clamp(x, lo, hi), nary_samples(grid(0.0), grid(0.5), grid(0.5)))


# --- stop_gradient ------------------------------------------------------------------------------

# finite differences see through stop_gradient; torch's detach does not
row("stop_gradient", lambda x: x * fgrad.stop_gradient(x), lambda x: x * x.detach(),
    unary_samples(real), ref=lambda x: x * x, fd=False, grad2=True)
row("stop_gradient_numpy_namespace", lambda x: fnp.sin(x) + fnp.stop_gradient(x) ** 2,
    lambda x: torch.sin(x) + x.detach() ** 2, unary_samples(real), ref=lambda x: np.sin(x) + x ** 2,
    fd=False)


# ============================================================================================
# Reductions
# ============================================================================================

@st.composite
def reduction_samples(draw, domain, min_side=0, keepdims=True, allow_tuple=True, ddof=False):
    shape = draw(shapes(min_side=min_side))
    kwargs = {"axis": draw(axis_arg(len(shape), allow_tuple=allow_tuple))}
    if keepdims:
        kwargs["keepdims"] = draw(st.booleans())
    if ddof:
        count = int(np.prod([shape[a] for a in _norm_axes(kwargs["axis"], len(shape))]))
        kwargs["ddof"] = draw(st.sampled_from([0, 1] if count >= 2 else [0]))
    return _sample(draw, [(domain, shape)], **kwargs)


def _reduced_count(sample):
    shape = sample.args[0].shape
    return int(np.prod([shape[a] for a in _norm_axes(sample.kwargs["axis"], len(shape))]))


def _t_reduce(op, x, axis, keepdims):
    dims = _norm_axes(axis, x.ndim)
    return op(x, dim=dims, keepdim=keepdims) if dims else x


def _t_prod(x, axis, keepdims):
    for d in reversed(_norm_axes(axis, x.ndim)):
        x = torch.prod(x, dim=d, keepdim=keepdims)
    return x


def _t_var(x, axis, keepdims, ddof, sqrt=False):
    dims = _norm_axes(axis, x.ndim)
    if not dims:   # NumPy's variance over no axes is (x - x)^2 / (1 - ddof)
        return torch.zeros_like(x)
    out = torch.var(x, dim=dims, correction=ddof, keepdim=keepdims)
    return torch.sqrt(out) if sqrt else out


def _np_logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.reshape(out, np.sum(x, axis=axis, keepdims=keepdims).shape)


def _t_cumsum(x, axis):
    return torch.cumsum(x.reshape(-1), 0) if axis is None else torch.cumsum(x, axis)


row("sum", lambda xp, x, **kw: xp.sum(x, **kw), partial(_t_reduce, torch.sum),
    reduction_samples(real))
row("mean", lambda xp, x, **kw: xp.mean(x, **kw), partial(_t_reduce, torch.mean),
    reduction_samples(real, min_side=1))
row("var", lambda xp, x, **kw: xp.var(x, **kw), _t_var,
    reduction_samples(real, min_side=1, ddof=True), grad2=True)
row("std", lambda xp, x, **kw: xp.std(x, **kw), partial(_t_var, sqrt=True),
    # sqrt is not differentiable at 0, the std of one value
    reduction_samples(real, min_side=2, ddof=True).filter(lambda s: _reduced_count(s) >= 2),
    grad2=True)
row("max", lambda xp, x, **kw: xp.max(x, **kw), partial(_t_reduce, torch.amax),
    reduction_samples(distinct, min_side=1))
row("min", lambda xp, x, **kw: xp.min(x, **kw), partial(_t_reduce, torch.amin),
    reduction_samples(distinct, min_side=1))
# ties: the derivative is shared evenly between the tied entries, as torch.amax/amin
row("max_ties", lambda xp, x, **kw: xp.max(x, **kw), partial(_t_reduce, torch.amax),
    reduction_samples(with_ties, min_side=1), fd=False)
row("min_ties", lambda xp, x, **kw: xp.min(x, **kw), partial(_t_reduce, torch.amin),
    reduction_samples(with_ties, min_side=1), fd=False)
row("prod", lambda xp, x, **kw: xp.prod(x, **kw), _t_prod, reduction_samples(away_from_zero),
    grad2=True)
row("prod_with_zeros", lambda xp, x, **kw: xp.prod(x, **kw), _t_prod,
    reduction_samples(with_zeros), grad2=True)
row("logsumexp", lambda x, **kw: fnp.logsumexp(x, **kw), partial(_t_reduce, torch.logsumexp),
    reduction_samples(real, min_side=1), ref=_np_logsumexp, grad2=True)
row("cumsum", lambda xp, x, **kw: xp.cumsum(x, **kw), _t_cumsum,
    reduction_samples(real, keepdims=False, allow_tuple=False))
for _name in ("argmax", "argmin"):
    row(_name, lambda xp, x, _name=_name, **kw: getattr(xp, _name)(x, **kw), None,
        reduction_samples(distinct, min_side=1, allow_tuple=False), grad=False)
for _name in ("any", "all"):
    row(f"{_name}_float", lambda xp, x, _name=_name, **kw: getattr(xp, _name)(x, **kw), None,
        reduction_samples(with_zeros), grad=False)
    row(f"{_name}_bool", lambda xp, x, _name=_name, **kw: getattr(xp, _name)(x, **kw), None,
        reduction_samples(booleans), grad=False)


# ============================================================================================
# Shape ops
# ============================================================================================

@st.composite
def reshape_samples(draw):
    shape = draw(shapes())
    size = int(np.prod(shape, dtype=np.int64))
    candidates = [(size,), tuple(reversed(shape)), shape + (1,), (1,) + shape]
    if size:
        candidates += [(-1,), (1, -1)]
        if shape:
            candidates.append((-1, shape[-1]))
    return _sample(draw, [(real, shape)], newshape=draw(st.sampled_from(candidates)))


@st.composite
def transpose_samples(draw):
    shape = draw(shapes())
    axes = draw(st.none() | st.permutations(range(len(shape))).map(tuple))
    return _sample(draw, [(real, shape)], axes=axes)


@st.composite
def moveaxis_samples(draw):
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    k = draw(st.integers(1, n))
    axes = st.lists(st.integers(-n, n - 1), min_size=k, max_size=k, unique_by=lambda a: a % n)
    source, dest = draw(axes), draw(axes)
    if k == 1 and draw(st.booleans()):
        source, dest = source[0], dest[0]
    return _sample(draw, [(real, shape)], source=source, destination=dest)


@st.composite
def swapaxes_samples(draw):
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    return _sample(draw, [(real, shape)], axis1=draw(st.integers(-n, n - 1)),
                   axis2=draw(st.integers(-n, n - 1)))


@st.composite
def expand_dims_samples(draw):
    shape = draw(shapes())
    out_ndim = len(shape) + draw(st.integers(1, 2))
    axes = draw(st.lists(st.integers(-out_ndim, out_ndim - 1), min_size=out_ndim - len(shape),
                         max_size=out_ndim - len(shape), unique_by=lambda a: a % out_ndim))
    axis = axes[0] if len(axes) == 1 and draw(st.booleans()) else tuple(axes)
    return _sample(draw, [(real, shape)], axis=axis)


@st.composite
def squeeze_samples(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
    ones = [i for i, n in enumerate(shape) if n == 1]
    axis = draw(st.none() | st.lists(st.sampled_from(ones), unique=True).map(tuple)
                if ones else st.none())
    return _sample(draw, [(real, shape)], axis=axis)


@st.composite
def broadcast_to_samples(draw):
    target = draw(shapes())
    kept = target[draw(st.integers(0, len(target))):]
    shape = tuple(draw(st.sampled_from([1, n])) for n in kept)
    return _sample(draw, [(real, shape)], shape=target)


@st.composite
def concatenate_samples(draw, stack=False):
    base = draw(shapes(min_dims=0 if stack else 1))
    k = draw(st.integers(1, 3))
    if stack:
        axis = draw(st.integers(-len(base) - 1, len(base)))
        return _sample(draw, [(real, base)] * k, axis=axis)
    axis = draw(st.integers(-len(base), len(base) - 1) | st.none())
    operand_shapes = []
    for _ in range(k):
        s = list(base)
        if axis is None:
            s = list(draw(shapes()))
        else:
            s[axis] = draw(st.integers(0, 3))
        operand_shapes.append(tuple(s))
    return _sample(draw, [(real, s) for s in operand_shapes], axis=axis)


def _t_cat(*xs, axis):
    if axis is None:
        return torch.cat([x.reshape(-1) for x in xs])
    return torch.cat(xs, dim=axis)


@st.composite
def split_samples(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    sections = [k for k in range(1, 5) if n % k == 0] if n else [1, 2]
    how = draw(st.sampled_from(sections) | st.lists(st.integers(0, n), max_size=3).map(sorted))
    return _sample(draw, [(real, shape)], indices_or_sections=how, axis=axis)


def _t_split(x, indices_or_sections, axis):
    return torch.tensor_split(x, indices_or_sections, dim=axis)


@st.composite
def tile_samples(draw):
    shape = draw(shapes())
    reps = draw(st.integers(0, 3) | st.lists(st.integers(0, 3), max_size=4).map(tuple))
    return _sample(draw, [(real, shape)], reps=reps)


def _t_tile(x, reps):
    reps = (reps,) if isinstance(reps, int) else reps
    if len(reps) < x.ndim:   # torch.tile pads reps on the left as well, but needs at least one
        reps = (1,) * (x.ndim - len(reps)) + reps
    return torch.tile(x, reps) if reps else x


@st.composite
def repeat_samples(draw):
    shape = draw(shapes())
    axis = draw(st.none() | (st.integers(-len(shape), len(shape) - 1) if shape else st.none()))
    n = int(np.prod(shape)) if axis is None else shape[axis]
    repeats = draw(st.integers(0, 3) | st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return _sample(draw, [(real, shape)], repeats=repeats, axis=axis)


def _t_repeat(x, repeats, axis):
    if isinstance(repeats, list):
        repeats = torch.tensor(repeats, dtype=torch.int64)
    return torch.repeat_interleave(x, repeats, dim=axis)


@st.composite
def pad_samples(draw, mode, traced_value=False):
    shape = draw(shapes(min_side=0 if mode == "constant" else 1))
    widths = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                           min_size=len(shape), max_size=len(shape)))
    pad_width = widths if shape else draw(st.sampled_from([0, 1]))   # 0-d: nothing to pad
    if mode != "constant":
        return _sample(draw, [(real, shape)], pad_width=pad_width, mode=mode)
    if traced_value:
        return _sample(draw, [(real, shape), (real, ())], pad_width=pad_width)
    return _sample(draw, [(real, shape)], pad_width=pad_width,
                   constant_values=draw(st.sampled_from([0, 1.5])))


def _pad_pairs(pad_width, ndim):
    return np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2)).tolist()


def _t_pad_constant(x, pad_width, constant_values=0.0):
    flat = [w for lo_hi in reversed(_pad_pairs(pad_width, x.ndim)) for w in lo_hi]
    return F.pad(x, flat, value=float(constant_values)) if flat else x


def _t_pad_traced(x, value, pad_width):
    mask = _t_pad_constant(torch.zeros_like(x), pad_width, 1.0)
    return _t_pad_constant(x, pad_width) + value * mask


def _t_pad_indexed(x, pad_width, mode):
    """edge/reflect/wrap/symmetric padding as a gather of NumPy's padded positions."""
    for axis, (lo, hi) in enumerate(_pad_pairs(pad_width, x.ndim)):
        idx = np.pad(np.arange(x.shape[axis]), (lo, hi), mode=mode)
        x = torch.index_select(x, axis, torch.from_numpy(idx))
    return x


@st.composite
def flip_samples(draw):
    shape = draw(shapes())
    return _sample(draw, [(real, shape)], axis=draw(axis_arg(len(shape))))


def _t_flip(x, axis):
    dims = _norm_axes(axis, x.ndim)
    return torch.flip(x, dims) if dims else x


@st.composite
def roll_samples(draw):
    shape = draw(shapes())
    axis = draw(axis_arg(len(shape), allow_empty=False))   # NumPy rejects roll(x, s, axis=())
    return _sample(draw, [(real, shape)], shift=draw(st.integers(-5, 5)), axis=axis)


def _t_roll(x, shift, axis):
    if axis is None:
        return torch.roll(x, shift)
    dims = axis if isinstance(axis, tuple) else (axis,)
    return torch.roll(x, (shift,) * len(dims), dims) if dims else x


@st.composite
def matrix_samples(draw, **kwargs_strategies):
    shape = draw(shapes(min_dims=2, max_dims=3))
    kwargs = {k: draw(v) for k, v in kwargs_strategies.items()}
    return _sample(draw, [(real, shape)], **kwargs)


@st.composite
def diagonal_samples(draw):
    shape = draw(shapes(min_dims=2, max_dims=3))
    n = len(shape)
    axis1, axis2 = draw(st.lists(st.integers(-n, n - 1), min_size=2, max_size=2,
                                 unique_by=lambda a: a % n))
    return _sample(draw, [(real, shape)], offset=draw(st.integers(-2, 2)), axis1=axis1,
                   axis2=axis2)


row("reshape", lambda xp, x, newshape: xp.reshape(x, newshape),
    lambda x, newshape: torch.reshape(x, newshape), reshape_samples())
row("ravel", lambda xp, x: xp.ravel(x), torch.ravel, unary_samples(real))
row("transpose", lambda xp, x, axes: xp.transpose(x, axes),
    lambda x, axes: x.permute(axes if axes is not None else tuple(reversed(range(x.ndim)))),
    transpose_samples())
row("moveaxis", lambda xp, x, source, destination: xp.moveaxis(x, source, destination),
    lambda x, source, destination: torch.movedim(x, source, destination), moveaxis_samples())
row("swapaxes", lambda xp, x, axis1, axis2: xp.swapaxes(x, axis1, axis2),
    lambda x, axis1, axis2: torch.swapaxes(x, axis1, axis2), swapaxes_samples())
row("expand_dims", lambda xp, x, axis: xp.expand_dims(x, axis),
    lambda x, axis: x.reshape(np.expand_dims(np.empty(tuple(x.shape)), axis).shape),
    expand_dims_samples())
row("squeeze", lambda xp, x, axis: xp.squeeze(x, axis),
    lambda x, axis: torch.squeeze(x) if axis is None else torch.squeeze(x, axis),
    squeeze_samples())
row("broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape),
    lambda x, shape: torch.broadcast_to(x, shape), broadcast_to_samples())
row("concatenate", lambda xp, *xs, axis: xp.concatenate(xs, axis=axis), _t_cat,
    concatenate_samples())
row("stack", lambda xp, *xs, axis: xp.stack(xs, axis=axis),
    lambda *xs, axis: torch.stack(xs, dim=axis), concatenate_samples(stack=True))
row("split", lambda xp, x, **kw: xp.split(x, **kw), _t_split, split_samples())
row("tile", lambda xp, x, reps: xp.tile(x, reps), _t_tile, tile_samples())
row("repeat", lambda xp, x, **kw: xp.repeat(x, **kw), _t_repeat, repeat_samples())
row("pad_constant", lambda xp, x, **kw: xp.pad(x, **kw), _t_pad_constant,
    pad_samples("constant"))
row("pad_constant_traced_value",
    lambda xp, x, value, pad_width: xp.pad(x, pad_width, constant_values=value),
    _t_pad_traced, pad_samples("constant", traced_value=True))
for _mode in ("edge", "reflect", "wrap", "symmetric"):
    row(f"pad_{_mode}", lambda xp, x, **kw: xp.pad(x, **kw), _t_pad_indexed, pad_samples(_mode))
row("flip", lambda xp, x, axis: xp.flip(x, axis), _t_flip, flip_samples())
row("roll", lambda xp, x, **kw: xp.roll(x, **kw), _t_roll, roll_samples())
row("tril", lambda xp, x, k: xp.tril(x, k), lambda x, k: torch.tril(x, k),
    matrix_samples(k=st.integers(-2, 2)))
row("triu", lambda xp, x, k: xp.triu(x, k), lambda x, k: torch.triu(x, k),
    matrix_samples(k=st.integers(-2, 2)))
row("diagonal", lambda xp, x, **kw: xp.diagonal(x, **kw),
    lambda x, offset, axis1, axis2: torch.diagonal(x, offset, axis1, axis2), diagonal_samples())
row("trace", lambda xp, x, **kw: xp.trace(x, **kw),
    lambda x, offset, axis1, axis2: torch.diagonal(x, offset, axis1, axis2).sum(-1),
    diagonal_samples())
# astype: a float32 result cannot be finite-differenced at float64 precision; torch checks it
row("astype_float32", lambda xp, x: xp.astype(x, np.float32), lambda x: x.to(torch.float32),
    unary_samples(real), fd=False)
row("astype_int", lambda xp, x: xp.astype(x, np.int32), None, unary_samples(real), grad=False)
row("astype_bool", lambda xp, x: xp.astype(x, bool), None, unary_samples(with_zeros), grad=False)


# ============================================================================================
# Indexing
# ============================================================================================

class _ArrayMarker:
    """Stands for an integer-array operand in an index template (filled by :func:`fill`)."""

    def __repr__(self):
        return "ARRAY"


ARRAY = _ArrayMarker()


def fill(template, arrays):
    """The index ``template`` with its :data:`ARRAY` slots replaced by ``arrays`` in order."""
    it = iter(arrays)
    return tuple(next(it) if t is ARRAY else t for t in template)


def _positions(shape):
    return np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)


def _t_gather(x, picked_positions):
    """``x`` at the flat positions NumPy's indexing picked (the gradient comes from torch)."""
    return x.reshape(-1)[torch.from_numpy(np.array(picked_positions, dtype=np.int64))]


def _t_scatter(x, y, picked_positions, mode):
    """``x.at[index].<mode>(y)`` in torch, given the flat positions the index picks."""
    pos = np.array(picked_positions, dtype=np.int64)   # a copy: torch takes no negative strides
    idx = torch.from_numpy(pos.reshape(-1))
    y = torch.broadcast_to(y, pos.shape).reshape(-1)
    flat = x.reshape(-1)
    if mode == "add":   # repeated positions accumulate
        out = flat.index_add(0, idx, y)
    elif mode == "set":
        out = flat.index_copy(0, idx, y)
    else:
        out = flat * torch.ones_like(flat).index_copy(0, idx, y)
    return out.reshape(x.shape)


def _np_scatter(x, y, index, mode):
    out = np.array(x, copy=True)
    if mode == "set":
        out[index] = y
    else:
        (np.add if mode == "add" else np.multiply).at(out, index, y)
    return out


_SLICES = st.builds(slice, st.none() | st.integers(-4, 4), st.none() | st.integers(-4, 4),
                    st.none() | st.sampled_from([1, 2, -1, -2]))


@st.composite
def advanced_template(draw, x_shape, unique):
    """An index mixing integer arrays with slices, ints and None (contiguous or split arrays).

    Returns ``(template, build_arrays)`` where ``build_arrays(rng)`` draws the integer arrays,
    negative entries included; with ``unique`` no position is picked twice (for ``.set``/``.mul``).
    """
    n = len(x_shape)
    kinds = draw(st.lists(st.sampled_from(["array", "slice", "int"]), min_size=n, max_size=n))
    if "array" not in kinds:
        kinds[draw(st.integers(0, n - 1))] = "array"
    template, array_axes = [], []
    for axis, kind in enumerate(kinds):
        if kind == "array":
            template.append(ARRAY)
            array_axes.append(axis)
        elif kind == "slice":
            template.append(draw(_SLICES))
        else:
            template.append(draw(st.integers(-x_shape[axis], x_shape[axis] - 1)))
    if draw(st.booleans()):
        template.insert(draw(st.integers(0, len(template))), None)
    sizes = [x_shape[a] for a in array_axes]
    if unique:
        k = draw(st.integers(1, min(int(np.prod(sizes)), 4)))

        def build_arrays(rng):
            flat = rng.choice(int(np.prod(sizes)), k, replace=False)
            return [i - rng.integers(0, 2, k) * n_i for i, n_i in
                    zip(np.unravel_index(flat, sizes), sizes)]
    else:
        index_shape = draw(shapes(max_dims=2, min_side=1, max_side=3))
        cuts = [draw(st.integers(0, len(index_shape))) for _ in array_axes]

        def build_arrays(rng):
            return [rng.integers(-n_i, n_i, index_shape[c:]) for n_i, c in zip(sizes, cuts)]
    return tuple(template), build_arrays


@st.composite
def gather_samples(draw):
    x_shape = draw(shapes(min_dims=1, min_side=1))
    template, build_arrays = draw(advanced_template(x_shape, unique=False))
    return Sample(lambda rng: (real(rng, x_shape), *build_arrays(rng)), {"template": template},
                  draw(_seeds()))


@st.composite
def basic_index_samples(draw):
    x_shape = draw(shapes())
    index = draw(hnp.basic_indices(x_shape, allow_newaxis=True, allow_ellipsis=True))
    return _sample(draw, [(real, x_shape)], index=index)


@st.composite
def mask_samples(draw):
    x_shape = draw(shapes(min_dims=1))
    lead = draw(st.integers(0, len(x_shape) - 1))
    width = draw(st.integers(1, len(x_shape) - lead))
    mask = np.random.default_rng(draw(_seeds())).random(x_shape[lead:lead + width]) < 0.5
    return _sample(draw, [(real, x_shape)], index=(slice(None),) * lead + (mask,))


@st.composite
def scatter_samples(draw, mode, basic=False):
    """``x``, an update ``y`` broadcastable to ``x[index]``, and the index arrays."""
    x_shape = draw(shapes(min_dims=1 if not basic else 0, min_side=0 if basic else 1))
    if basic:
        template = draw(hnp.basic_indices(x_shape, allow_newaxis=True, allow_ellipsis=True))
        template = template if isinstance(template, tuple) else (template,)

        def build_arrays(rng):
            return []
    else:
        template, build_arrays = draw(advanced_template(x_shape, unique=mode != "add"))
    dummy_arrays = build_arrays(np.random.default_rng(0))
    indexed = np.empty(x_shape)[fill(template, dummy_arrays)].shape
    kept = indexed[draw(st.integers(0, len(indexed))):]
    y_shape = tuple(draw(st.sampled_from([1, n])) for n in kept)
    y_domain = away_from_zero if mode == "mul" else real
    return Sample(lambda rng: (real(rng, x_shape), y_domain(rng, y_shape), *build_arrays(rng)),
                  {"template": template}, draw(_seeds()))


row("getitem_basic", lambda x, index: fnp.getitem(x, index),
    lambda x, index: _t_gather(x, _positions(tuple(x.shape))[index]), basic_index_samples(),
    ref=lambda x, index: x[index])
row("getitem_advanced", lambda x, *arrays, template: fnp.getitem(x, fill(template, arrays)),
    lambda x, *arrays, template: _t_gather(
        x, _positions(tuple(x.shape))[fill(template, arrays)]),
    gather_samples(), ref=lambda x, *arrays, template: x[fill(template, arrays)])
row("getitem_mask", lambda x, index: fnp.getitem(x, index),
    lambda x, index: _t_gather(x, _positions(tuple(x.shape))[index]), mask_samples(),
    ref=lambda x, index: x[index])
for _mode in ("set", "add", "mul"):
    row(f"at_{_mode}", lambda x, y, *arrays, template, _mode=_mode:
        getattr(fnp.at(x)[fill(template, arrays)], _mode)(y),
        lambda x, y, *arrays, template, _mode=_mode: _t_scatter(
            x, y, _positions(tuple(x.shape))[fill(template, arrays)], _mode),
        scatter_samples(_mode),
        ref=lambda x, y, *arrays, template, _mode=_mode:
        _np_scatter(x, y, fill(template, arrays), _mode), grad2=_mode == "mul")
    row(f"at_{_mode}_basic", lambda x, y, template, _mode=_mode:
        getattr(fnp.at(x)[template], _mode)(y),
        lambda x, y, template, _mode=_mode: _t_scatter(
            x, y, _positions(tuple(x.shape))[template], _mode),
        scatter_samples(_mode, basic=True),
        ref=lambda x, y, template, _mode=_mode: _np_scatter(x, y, template, _mode))


def _t_scatter_reduce(x, y, picked_positions, reduce):
    """``x.at[index].min/max(y)`` in torch (ties share the gradient evenly, as fgrad)."""
    pos = np.array(picked_positions, dtype=np.int64)
    idx = torch.from_numpy(pos.reshape(-1))
    y = torch.broadcast_to(y, pos.shape).reshape(-1)
    return x.reshape(-1).scatter_reduce(0, idx, y, reduce=reduce, include_self=True).reshape(x.shape)


def _np_scatter_reduce(x, y, index, ufunc):
    out = np.array(x, copy=True)
    ufunc.at(out, index, y)
    return out


for _mode, _ufunc in (("min", np.minimum), ("max", np.maximum)):
    row(f"at_{_mode}", lambda x, y, *arrays, template, _mode=_mode:
        getattr(fnp.at(x)[fill(template, arrays)], _mode)(y),
        lambda x, y, *arrays, template, _mode=_mode: _t_scatter_reduce(
            x, y, _positions(tuple(x.shape))[fill(template, arrays)], "a" + _mode),
        scatter_samples("add"),
        ref=lambda x, y, *arrays, template, _ufunc=_ufunc:
        _np_scatter_reduce(x, y, fill(template, arrays), _ufunc))
    row(f"at_{_mode}_basic", lambda x, y, template, _mode=_mode:
        getattr(fnp.at(x)[template], _mode)(y),
        lambda x, y, template, _mode=_mode: _t_scatter_reduce(
            x, y, _positions(tuple(x.shape))[template], "a" + _mode),
        scatter_samples("add", basic=True),
        ref=lambda x, y, template, _ufunc=_ufunc: _np_scatter_reduce(x, y, template, _ufunc))

row("at_apply", lambda x, *arrays, template: fnp.at(x)[fill(template, arrays)].apply(fnp.sin),
    lambda x, *arrays, template: _t_scatter(
        x, torch.sin(_t_gather(x, _positions(tuple(x.shape))[fill(template, arrays)])),
        _positions(tuple(x.shape))[fill(template, arrays)], "set"),
    scatter_samples("set").map(lambda s: Sample(lambda rng, b=s.build: _drop_update(b(rng)),
                                                s.kwargs, s.seed)),
    ref=lambda x, *arrays, template: _np_apply(x, fill(template, arrays), np.sin))


def _drop_update(operands):
    """``(x, *arrays)`` from scatter operands ``(x, y, *arrays)``."""
    return (operands[0],) + tuple(operands[2:])


def _np_apply(x, index, fn):
    out = np.array(x, copy=True)
    out[index] = fn(out[index])
    return out


# --- .at[] modes: indices out of range along axis 0 of an (n, k) array ------------------------

@st.composite
def out_of_range_samples(draw, with_update=False):
    n, k = draw(st.integers(1, 4)), draw(st.integers(0, 3))
    j = draw(st.integers(1, 5))

    def build(rng):
        idx = rng.integers(-2 * n, 2 * n, j)
        ops = (real(rng, (n, k)),) + ((real(rng, (j, k)),) if with_update else ())
        return ops + (idx,)
    return Sample(build, {}, draw(_seeds()))


def _normalized(idx, n):
    valid = (idx >= -n) & (idx < n)
    return np.where(idx < 0, idx + n, idx), valid


def _t_rows(x, pos):
    return x[torch.from_numpy(np.array(pos, dtype=np.int64))]


row("at_get_clip", lambda x, idx: fnp.at(x)[idx].get(mode="clip"),
    lambda x, idx: _t_rows(x, np.clip(_normalized(idx, x.shape[0])[0], 0, x.shape[0] - 1)),
    out_of_range_samples(),
    ref=lambda x, idx: x[np.clip(_normalized(idx, x.shape[0])[0], 0, x.shape[0] - 1)])


def _fill_rows(xp_where, x, idx, rows, fill_value):
    pos, valid = _normalized(idx, x.shape[0])
    picked = rows(x, np.where(valid, pos, 0))
    return xp_where(torch.from_numpy(valid[:, None]) if xp_where is torch.where else valid[:, None],
                    picked, fill_value)


row("at_get_fill", lambda x, idx: fnp.at(x)[idx].get(mode="fill", fill_value=0.5),
    lambda x, idx: _fill_rows(torch.where, x, idx, _t_rows, 0.5), out_of_range_samples(),
    ref=lambda x, idx: _fill_rows(np.where, x, idx, lambda a, p: a[p], 0.5))


def _np_add_drop(x, y, idx):
    pos, valid = _normalized(idx, x.shape[0])
    out = np.array(x, copy=True)
    np.add.at(out, pos[valid], y[valid])
    return out


def _t_add_drop(x, y, idx):
    pos, valid = _normalized(idx, x.shape[0])
    keep = torch.from_numpy(np.nonzero(valid)[0])
    return x.index_add(0, torch.from_numpy(pos[valid].astype(np.int64)), y[keep])


row("at_add_drop", lambda x, y, idx: fnp.at(x)[idx].add(y, mode="drop"), _t_add_drop,
    out_of_range_samples(with_update=True), ref=_np_add_drop)


# --- convolve, correlate ------------------------------------------------------------------------

@st.composite
def convolve_samples(draw):
    n, m = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return _sample(draw, [(real, (n,)), (real, (m,))],
                   mode=draw(st.sampled_from(["full", "same", "valid"])))


def _t_convolve(a, v, mode):
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    n, m = a.shape[0], v.shape[0]
    out = F.conv1d(a[None, None], v.flip(0)[None, None], padding=m - 1)[0, 0]
    start = {"full": 0, "same": (m - 1) // 2, "valid": m - 1}[mode]
    length = {"full": n + m - 1, "same": n, "valid": n - m + 1}[mode]
    return out[start:start + length]


def _t_correlate(a, v, mode):
    if v.shape[0] > a.shape[0]:
        return _t_correlate(v, a, mode).flip(0)
    return _t_convolve(a, v.flip(0), mode)


row("convolve", lambda xp, a, v, mode: xp.convolve(a, v, mode), _t_convolve, convolve_samples(),
    grad2=True)
row("correlate", lambda xp, a, v, mode: xp.correlate(a, v, mode), _t_correlate,
    convolve_samples())


@st.composite
def take_samples(draw):
    x_shape = draw(shapes(min_dims=1, min_side=1))
    axis = draw(st.none() | st.integers(-len(x_shape), len(x_shape) - 1))
    n = int(np.prod(x_shape)) if axis is None else x_shape[axis]
    return _sample(draw, [(real, x_shape), (integers(-n, n), draw(shapes(max_dims=2)))], axis=axis)


@st.composite
def take_along_axis_samples(draw):
    x_shape = draw(shapes(min_dims=1, min_side=1))
    axis = draw(st.integers(-len(x_shape), len(x_shape) - 1))
    n = x_shape[axis]
    idx_shape = tuple(draw(st.integers(0, 3)) if i == axis % len(x_shape)
                      else draw(st.sampled_from([1, s])) for i, s in enumerate(x_shape))
    return _sample(draw, [(real, x_shape), (integers(-n, n), idx_shape)], axis=axis)


row("take", lambda xp, x, idx, axis: xp.take(x, idx, axis=axis),
    lambda x, idx, axis: _t_gather(x, np.take(_positions(tuple(x.shape)), idx, axis=axis)),
    take_samples())
row("take_along_axis", lambda xp, x, idx, axis: xp.take_along_axis(x, idx, axis),
    lambda x, idx, axis: _t_gather(
        x, np.take_along_axis(_positions(tuple(x.shape)), idx, axis)),
    take_along_axis_samples())


@st.composite
def sort_samples(draw, domain):
    shape = draw(shapes())
    axis = draw(st.none() | (st.integers(-len(shape), len(shape) - 1) if shape else st.none()))
    return _sample(draw, [(domain, shape)], axis=axis)


def _t_sort(x, axis):
    if axis is None:
        x, axis = x.reshape(-1), 0
    return torch.sort(x, dim=axis, stable=True).values


row("sort", lambda xp, x, axis: xp.sort(x, axis=axis), _t_sort, sort_samples(distinct),
    grad2=True)
# ties: a stable sort sends each tied derivative to the same place as torch's stable sort
row("sort_ties", lambda xp, x, axis: xp.sort(x, axis=axis), _t_sort, sort_samples(with_ties),
    fd=False)
row("argsort", lambda x, axis: fnp.argsort(x, axis=axis), None, sort_samples(with_ties),
    ref=lambda x, axis: np.argsort(x, axis=axis, kind="stable"), grad=False)


# ============================================================================================
# Contractions
# ============================================================================================

@st.composite
def matmul_samples(draw):
    n, k, m = (draw(st.integers(0, 3)) for _ in range(3))
    batch_a, batch_b = draw(broadcast_shapes(2, min_side=1, max_dims=2))
    a_shape = (k,) if draw(st.booleans()) else batch_a + (n, k)
    b_shape = (k,) if draw(st.booleans()) else batch_b + (k, m)
    return _sample(draw, [(real, a_shape), (real, b_shape)])


@st.composite
def dot_samples(draw):
    a_shape = draw(shapes(max_dims=3, min_side=1))
    b_shape = list(draw(shapes(max_dims=3, min_side=1)))
    if a_shape and b_shape:
        b_shape[-2 if len(b_shape) >= 2 else 0] = a_shape[-1]
    return _sample(draw, [(real, a_shape), (real, tuple(b_shape))])


def _t_dot(a, b):
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return torch.tensordot(a, b, dims=([a.ndim - 1], [max(b.ndim - 2, 0)]))


@st.composite
def tensordot_samples(draw):
    a_shape = draw(shapes(max_dims=3))
    count = draw(st.integers(0, len(a_shape)))
    a_axes = draw(st.permutations(range(len(a_shape))))[:count]
    b_free = list(draw(shapes(max_dims=2)))
    b_shape = b_free[:]
    b_axes = []
    for ax in a_axes:   # put each contracted axis of b at a random place
        pos = draw(st.integers(0, len(b_shape)))
        b_shape.insert(pos, a_shape[ax])
        b_axes = [p + (p >= pos) for p in b_axes] + [pos]
    if draw(st.booleans()) and list(a_axes) == list(range(len(a_shape) - count, len(a_shape))) \
            and b_axes == list(range(count)):
        axes = count
    else:
        axes = (list(a_axes), b_axes)
    return _sample(draw, [(real, a_shape), (real, tuple(b_shape))], axes=axes)


def _t_tensordot(a, b, axes):
    return torch.tensordot(a, b, dims=axes)


@st.composite
def inner_samples(draw):
    a_shape = draw(shapes(max_dims=2))
    b_shape = list(draw(shapes(max_dims=2)))
    if a_shape and b_shape:
        b_shape[-1] = a_shape[-1]
    return _sample(draw, [(real, a_shape), (real, tuple(b_shape))])


def _t_inner(a, b):
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return torch.tensordot(a, b, dims=([a.ndim - 1], [b.ndim - 1]))


@st.composite
def outer_samples(draw):
    return _sample(draw, [(real, draw(shapes(max_dims=2))), (real, draw(shapes(max_dims=2)))])


@st.composite
def vdot_samples(draw):
    a_shape = draw(shapes(min_dims=1, max_dims=2))
    return _sample(draw, [(real, a_shape), (real, (int(np.prod(a_shape)),))])


# bilinear: the second-order check sees the cross terms d^2/da db
row("matmul", lambda xp, a, b: xp.matmul(a, b), torch.matmul, matmul_samples(), grad2=True)
row("dot", lambda xp, a, b: xp.dot(a, b), _t_dot, dot_samples(), grad2=True)
row("tensordot", lambda xp, a, b, axes: xp.tensordot(a, b, axes), _t_tensordot,
    tensordot_samples(), grad2=True)
row("inner", lambda xp, a, b: xp.inner(a, b), _t_inner, inner_samples(), grad2=True)
row("outer", lambda xp, a, b: xp.outer(a, b),
    lambda a, b: torch.outer(a.reshape(-1), b.reshape(-1)), outer_samples())
row("vdot", lambda xp, a, b: xp.vdot(a, b),
    lambda a, b: torch.dot(a.reshape(-1), b.reshape(-1)), vdot_samples())


# ============================================================================================
# NumPy coverage: the rest of HIPS autograd's list (issue 10)
# ============================================================================================

def above_one(rng, shape):                # arccosh
    return np.asarray(rng.uniform(1.2, 3.0, shape))


def near_zero(rng, shape):                # sinc's series branch: |pi x| < 0.1, and exact zeros
    return np.asarray(np.where(rng.random(shape) < 0.3, 0.0, rng.uniform(-0.03, 0.03, shape)))


def grid_or_nan(offset):                  # fmax/fmin: NaNs among values that never tie
    def domain(rng, shape):
        return np.asarray(np.where(rng.random(shape) < 0.3, np.nan, grid(offset)(rng, shape)))
    return domain


def real_or_special(rng, shape):          # nan_to_num: NaN and +-inf among normal values
    return np.asarray(np.where(rng.random(shape) < 0.4, specials(rng, shape), rng.normal(size=shape)))


unary("arccosh", above_one, torch.acosh)
unary("deg2rad", real, torch.deg2rad)
unary("rad2deg", real, torch.rad2deg)
unary("radians", real, torch.deg2rad)
unary("degrees", real, torch.rad2deg)
unary("fabs", away_from_zero, torch.abs)
unary("sinc", real, torch.sinc)
# the series near 0 (torch's sinc has no second derivative at exactly 0; test_numpy_coverage
# checks fgrad's there against -pi^2/3)
row("sinc_near_zero", lambda x: fnp.sinc(x), torch.sinc, unary_samples(near_zero), ref=np.sinc)
row("nan_to_num", lambda xp, x: xp.nan_to_num(x), torch.nan_to_num, unary_samples(real_or_special),
    fd=False)
row("nan_to_num_values", lambda xp, x: xp.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
    lambda x: torch.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
    unary_samples(real_or_special), fd=False)
binary("hypot", (real, away_from_zero), torch.hypot)
binary("logaddexp", (real, real), torch.logaddexp)
binary("logaddexp2", (real, real), torch.logaddexp2)
binary("fmax", (grid(0.0), grid(0.5)), torch.fmax)
binary("fmin", (grid(0.0), grid(0.5)), torch.fmin)
# NaN is ignored: the derivative goes to the other operand (finite differences see NaN)
row("fmax_nan", lambda x, y: fnp.fmax(x, y), torch.fmax,
    nary_samples(grid_or_nan(0.0), grid_or_nan(0.5)), ref=np.fmax, fd=False)
row("fmin_nan", lambda x, y: fnp.fmin(x, y), torch.fmin,
    nary_samples(grid_or_nan(0.0), grid_or_nan(0.5)), ref=np.fmin, fd=False)


# --- differences and numerical gradients --------------------------------------------------------

@st.composite
def diff_samples(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    ends = draw(st.sampled_from(["none", "prepend", "append", "both"]))
    operands = [(real, shape)]
    for end in ("prepend", "append"):
        if ends in (end, "both"):
            operands.append((real, tuple(draw(st.integers(0, 2)) if i == axis % len(shape) else n
                                         for i, n in enumerate(shape))))
    return _sample(draw, operands, n=draw(st.integers(0, 3)), axis=axis, ends=ends)


def _diff_call(diff, x, *extra, n, axis, ends):
    kw = dict(zip([e for e in ("prepend", "append") if ends in (e, "both")], extra))
    return diff(x, n=n, axis=axis, **kw)


def _t_diff(x, *extra, n, axis, ends):
    if n == 0:   # NumPy returns the input unchanged, prepend/append ignored
        return x
    return _diff_call(lambda x, **kw: torch.diff(x, **{"dim" if k == "axis" else k: v
                                                        for k, v in kw.items()}),
                      x, *extra, n=n, axis=axis, ends=ends)


row("diff", lambda xp, x, *extra, **kw: _diff_call(xp.diff, x, *extra, **kw), _t_diff,
    diff_samples())
def _t_diff_scalar_ends(x, axis):
    one = tuple(1 if d == axis % x.ndim else n for d, n in enumerate(x.shape))
    return torch.diff(x, 1, axis, prepend=torch.full(one, 0.5, dtype=x.dtype),
                      append=torch.full(one, -1.0, dtype=x.dtype))


# NumPy broadcasts scalar ends to one slice along the axis
row("diff_scalar_ends", lambda xp, x, axis: xp.diff(x, axis=axis, prepend=0.5, append=-1.0),
    _t_diff_scalar_ends,
    sort_samples(real).filter(lambda s: s.args[0].ndim and s.kwargs["axis"] is not None))


@st.composite
def gradient_samples(draw):
    edge_order = draw(st.sampled_from([1, 2]))
    shape = draw(shapes(min_dims=1, max_dims=3, min_side=edge_order + 1, max_side=5))
    nd = len(shape)
    axis = draw(st.none() | st.integers(-nd, nd - 1)
                | st.permutations(range(nd)).map(lambda p: tuple(p[:max(1, len(p) - 1)])))
    axes = list(range(nd)) if axis is None else [axis % nd] if isinstance(axis, int) else list(axis)
    how = draw(st.sampled_from(["none", "scalar", "per_axis"]))
    rng = np.random.default_rng(draw(_seeds()))
    if how == "none":
        spacing = ()
    elif how == "scalar":
        spacing = (float(rng.uniform(0.5, 2.0)),)
    else:   # per axis: a scalar, evenly spaced coordinates, or unevenly spaced ones
        spacing = tuple(draw(st.sampled_from([
            float(rng.uniform(0.5, 2.0)), np.arange(shape[a]) * 0.5,
            np.cumsum(rng.uniform(0.5, 1.5, shape[a]))])) for a in axes)
    return _sample(draw, [(real, shape)], spacing=spacing, axis=axis, edge_order=edge_order)


def _t_gradient(x, spacing, axis, edge_order):
    dims = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
    kw = {}
    if len(spacing) == 1 and np.ndim(spacing[0]) == 0:
        kw["spacing"] = spacing[0]
    elif spacing:
        kw["spacing"] = tuple(torch.from_numpy(np.asarray(s, np.float64)) if np.ndim(s) else s
                              for s in spacing)
        if not all(np.ndim(s) for s in spacing):   # torch takes all scalars or all coordinates
            kw["spacing"] = tuple(torch.arange(x.shape[d], dtype=torch.float64) * s
                                  if np.ndim(s) == 0 else c
                                  for d, s, c in zip(dims, spacing, kw["spacing"]))
    out = torch.gradient(x, dim=dims, edge_order=edge_order, **kw)
    return out[0] if len(out) == 1 else out


def _as_list(out):
    """Several outputs as a list (the tests' convention for multi-output ops, as split's)."""
    return list(out) if isinstance(out, tuple) else out


row("gradient", lambda xp, x, spacing, **kw: _as_list(xp.gradient(x, *spacing, **kw)),
    lambda *a, **kw: _as_list(_t_gradient(*a, **kw)), gradient_samples())


# --- building, splitting and rearranging arrays --------------------------------------------------

@st.composite
def diag_samples(draw, ndim):
    shape = draw(shapes(min_dims=ndim, max_dims=ndim))
    return _sample(draw, [(real, shape)], k=draw(st.integers(-3, 3)))


row("diag", lambda xp, v, k: xp.diag(v, k), lambda v, k: torch.diag(v, k), diag_samples(1))
row("diag_of_matrix", lambda xp, m, k: xp.diag(m, k), lambda m, k: torch.diag(m, k),
    diag_samples(2))


@st.composite
def append_samples(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    if axis is None:
        other = draw(shapes())
    else:
        other = tuple(draw(st.integers(0, 2)) if i == axis % len(shape) else n
                      for i, n in enumerate(shape))
    return _sample(draw, [(real, shape), (real, other)], axis=axis)


row("append", lambda xp, x, v, axis: xp.append(x, v, axis=axis),
    lambda x, v, axis: torch.cat([x.reshape(-1), v.reshape(-1)]) if axis is None
    else torch.cat([x, v], axis), append_samples())


@st.composite
def stack_family_samples(draw, min_dims, max_dims, axis):
    """Operands that join along ``axis`` after atleast_{1,2,3}d (sizes drawn along it)."""
    base = list(draw(shapes(min_dims=max(min_dims, 1), max_dims=max_dims)))
    k = draw(st.integers(1, 3))
    ops = []
    for _ in range(k):
        s = list(base)
        if axis < len(s):
            s[axis] = draw(st.integers(0, 3))
        ops.append((real, tuple(s)))
    return _sample(draw, ops)


@st.composite
def same_shape_samples(draw, count=None, min_dims=0, max_dims=3):
    """``count`` operands (1 to 3 when None) of one drawn shape."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    return _sample(draw, [(real, shape)] * (count or draw(st.integers(1, 3))))


row("column_stack", lambda xp, *xs: xp.column_stack(xs), lambda *xs: torch.column_stack(xs),
    stack_family_samples(1, 2, 1))
row("column_stack_vectors", lambda xp, *xs: xp.column_stack(xs), lambda *xs: torch.column_stack(xs),
    same_shape_samples(max_dims=1))
row("row_stack", lambda xp, *xs: xp.vstack(xs) if xp is np else xp.row_stack(xs),
    lambda *xs: torch.vstack(xs), stack_family_samples(2, 3, 0))
row("dstack", lambda xp, *xs: xp.dstack(xs), lambda *xs: torch.dstack(xs),
    stack_family_samples(3, 3, 2))
row("atleast_3d", lambda xp, x: xp.atleast_3d(x), torch.atleast_3d, unary_samples(real))
row("atleast_3d_several", lambda xp, x, y: _as_list(xp.atleast_3d(x, y)),
    lambda x, y: list(torch.atleast_3d(x, y)), nary_samples(real, real))


@st.composite
def split_family_samples(draw, min_dims, axis_of):
    shape = draw(shapes(min_dims=min_dims, max_dims=3))
    n = shape[axis_of(len(shape))]
    sections = [k for k in range(1, 5) if n % k == 0] if n else [1, 2]
    how = draw(st.sampled_from(sections) | st.lists(st.integers(0, n), max_size=3).map(sorted))
    return _sample(draw, [(real, shape)], indices_or_sections=how)


row("hsplit", lambda xp, x, **kw: xp.hsplit(x, **kw),
    lambda x, indices_or_sections: torch.hsplit(x, indices_or_sections),
    split_family_samples(1, lambda nd: 1 if nd > 1 else 0))
row("vsplit", lambda xp, x, **kw: xp.vsplit(x, **kw),
    lambda x, indices_or_sections: torch.vsplit(x, indices_or_sections),
    split_family_samples(2, lambda nd: 0))
row("dsplit", lambda xp, x, **kw: xp.dsplit(x, **kw),
    lambda x, indices_or_sections: torch.dsplit(x, indices_or_sections),
    split_family_samples(3, lambda nd: 2))


@st.composite
def array_split_samples(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    # any number of sections, or indices: unsorted and past the end included (pieces overlap)
    how = draw(st.integers(1, 5) | st.lists(st.integers(0, n + 2), max_size=3))
    return _sample(draw, [(real, shape)], indices_or_sections=how, axis=axis)


row("array_split", lambda xp, x, **kw: xp.array_split(x, **kw),
    lambda x, indices_or_sections, axis: torch.tensor_split(x, indices_or_sections, axis),
    array_split_samples())


@st.composite
def rot90_samples(draw):
    shape = draw(shapes(min_dims=2))
    n = len(shape)
    axes = draw(st.lists(st.integers(-n, n - 1), min_size=2, max_size=2, unique_by=lambda a: a % n))
    return _sample(draw, [(real, shape)], k=draw(st.integers(-5, 5)), axes=tuple(axes))


row("rot90", lambda xp, x, k, axes: xp.rot90(x, k, axes), lambda x, k, axes: torch.rot90(x, k, axes),
    rot90_samples())


@st.composite
def rollaxis_samples(draw):
    shape = draw(shapes(min_dims=1))
    n = len(shape)
    return _sample(draw, [(real, shape)], axis=draw(st.integers(-n, n - 1)),
                   start=draw(st.integers(-n, n)))


def _rollaxis_perm(n, axis, start):
    """The permutation rollaxis applies, read off NumPy's result on an array whose axis i has
    size i + 2."""
    return tuple(s - 2 for s in np.rollaxis(np.empty(tuple(range(2, n + 2))), axis, start).shape)


row("rollaxis", lambda xp, x, axis, start: xp.rollaxis(x, axis, start),
    lambda x, axis, start: x.permute(_rollaxis_perm(x.ndim, axis, start)), rollaxis_samples())


row("kron", lambda xp, a, b: xp.kron(a, b), torch.kron, nary_samples(real, real), grad2=True)


@st.composite
def cross_samples(draw):
    na, nb = draw(st.sampled_from([3, 2])), draw(st.sampled_from([3, 2]))
    batch_a, batch_b = draw(broadcast_shapes(2, max_dims=2))
    pos_a, pos_b = draw(st.integers(0, len(batch_a))), draw(st.integers(0, len(batch_b)))
    a_shape = batch_a[:pos_a] + (na,) + batch_a[pos_a:]
    b_shape = batch_b[:pos_b] + (nb,) + batch_b[pos_b:]
    out_nd = len(np.broadcast_shapes(batch_a, batch_b)) + (0 if na == nb == 2 else 1)
    kw = dict(axisa=pos_a - len(a_shape) if draw(st.booleans()) else pos_a, axisb=pos_b,
              axisc=draw(st.integers(-out_nd, out_nd - 1)) if out_nd else -1)
    return _sample(draw, [(real, a_shape), (real, b_shape)], **kw)


def _t_cross(a, b, axisa, axisb, axisc):
    """NumPy's cross (2-vectors have z = 0) in torch ops."""
    a, b = torch.movedim(a, axisa, -1), torch.movedim(b, axisb, -1)

    def comps(v):
        return [v[..., 0], v[..., 1], v[..., 2] if v.shape[-1] == 3 else None]
    (a0, a1, a2), (b0, b1, b2) = comps(a), comps(b)
    z = a0 * b1 - a1 * b0
    if a2 is None and b2 is None:
        return z
    a2 = torch.zeros_like(a0) if a2 is None else a2
    b2 = torch.zeros_like(b0) if b2 is None else b2
    out = torch.stack(torch.broadcast_tensors(a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, z), -1)
    return torch.movedim(out, -1, axisc)


def _np_cross(a, b, **kw):
    import warnings
    with warnings.catch_warnings():   # NumPy 2 deprecates 2-vectors but still computes them
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.cross(a, b, **kw)


row("cross", lambda a, b, **kw: fnp.cross(a, b, **kw), _t_cross, cross_samples(), ref=_np_cross,
    grad2=True)


@st.composite
def partition_samples(draw):
    shape = draw(shapes(min_dims=1, min_side=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    kth = draw(st.integers(-n, n - 1) | st.lists(st.integers(-n, n - 1), min_size=1, max_size=3))
    return _sample(draw, [(distinct, shape)], kth=kth, axis=axis)


# NumPy leaves the order inside the two parts unspecified; fgrad's is sorted (its docstring), so
# the reference is the sort (test_numpy_coverage checks NumPy's own partition's contract)
row("partition", lambda x, kth, axis: fnp.partition(x, kth, axis),
    lambda x, kth, axis: torch.sort(x, dim=axis).values, partition_samples(),
    ref=lambda x, kth, axis: np.sort(x, axis))


@st.composite
def select_samples(draw):
    k = draw(st.integers(1, 3))
    operand_shapes = draw(broadcast_shapes(2 * k + 1))
    return _sample(draw, [(booleans, s) for s in operand_shapes[:k]]
                   + [(real, s) for s in operand_shapes[k:]], k=k)


def _t_select(*ops, k):
    conds, choices, default = ops[:k], ops[k:2 * k], ops[2 * k]
    out = default
    for c, v in zip(conds[::-1], choices[::-1]):
        out = torch.where(c, v, out)
    return torch.broadcast_to(out, torch.broadcast_shapes(*(o.shape for o in ops)))


row("select", lambda xp, *ops, k: xp.select(list(ops[:k]), list(ops[k:2 * k]), ops[2 * k]),
    _t_select, select_samples())
row("select_scalar_default", lambda xp, c, x: xp.select([c, ~c], [x, 2 * x]),
    lambda c, x: torch.broadcast_to(torch.where(c, x, torch.where(~c, 2 * x, 0.0)),
                                    torch.broadcast_shapes(c.shape, x.shape)),
    nary_samples(booleans, real))


# --- r_ / c_ over traced values, linspace with traced ends, comparisons of whole arrays ----------

row("r_", lambda xp, x, y: xp.r_[x, 1.5, y, 0:2],
    lambda x, y: torch.cat([x.reshape(-1), torch.tensor([1.5], dtype=x.dtype), y.reshape(-1),
                            torch.arange(2, dtype=x.dtype)]),
    nary_samples(real, real).filter(lambda s: all(a.ndim <= 1 for a in s.args)))
row("r_directive", lambda xp, x, y: xp.r_["0,2", x, y],
    lambda x, y: torch.cat([torch.atleast_2d(x), torch.atleast_2d(y)], 0),
    same_shape_samples(2, min_dims=1, max_dims=1))
row("c_", lambda xp, x, y: xp.c_[x, y, x],
    lambda x, y: torch.cat([x[:, None], y[:, None], x[:, None]], 1),
    same_shape_samples(2, min_dims=1, max_dims=1))


@st.composite
def linspace_samples(draw):
    start_shape, stop_shape = draw(broadcast_shapes(2, max_dims=2))
    nd = len(np.broadcast_shapes(start_shape, stop_shape)) + 1
    return _sample(draw, [(real, start_shape), (real, stop_shape)], num=draw(st.integers(0, 6)),
                   endpoint=draw(st.booleans()), axis=draw(st.integers(-nd, nd - 1)))


def _t_linspace(start, stop, num, endpoint, axis):
    div = num - 1 if endpoint else num
    start, stop = torch.broadcast_tensors(start, stop)
    steps = torch.arange(num, dtype=start.dtype).reshape((-1,) + (1,) * start.ndim)
    y = steps * ((stop - start) / div) + start if div > 0 else steps * (stop - start) + start
    if endpoint and num > 1:
        y = torch.cat([y[:-1], stop[None]])
    return torch.movedim(y, 0, axis)


row("linspace", lambda xp, start, stop, **kw: xp.linspace(start, stop, **kw), _t_linspace,
    linspace_samples())
row("linspace_traced_stop_only", lambda xp, stop: xp.linspace(0.5, stop, 4),
    lambda stop: _t_linspace(torch.tensor(0.5, dtype=stop.dtype), stop, 4, True, 0),
    unary_samples(real))


@st.composite
def isclose_samples(draw):
    """``x`` and a ``y`` that broadcasts against it: mostly ``x``'s own values, equal, nudged
    within the tolerance (1e-9) or beyond it (1e-4), specials (NaN, inf) included."""
    shape = draw(shapes())
    y_shape = shape[draw(st.integers(0, len(shape))):]

    def build(rng):
        x = real_or_special(rng, shape)
        lead = len(shape) - len(y_shape)
        base = x[(0,) * lead] if all(shape[:lead]) else real_or_special(rng, y_shape)
        nudged = base * (1 + rng.choice([0.0, 1e-9, 1e-4], y_shape))
        return x, np.where(rng.random(y_shape) < 0.7, nudged, real_or_special(rng, y_shape))
    return Sample(build, {"equal_nan": draw(st.booleans())}, draw(_seeds()))


# allclose and array_equal return Python bools from NumPy: asarray makes both sides arrays
row("isclose", lambda xp, x, y, equal_nan: xp.isclose(x, y, equal_nan=equal_nan), None,
    isclose_samples(), grad=False)
row("allclose", lambda xp, x, y, equal_nan: xp.asarray(xp.allclose(x, y, equal_nan=equal_nan)),
    None, isclose_samples(), grad=False)
row("array_equal", lambda xp, x, y, equal_nan: (
    xp.asarray(xp.array_equal(x, y, equal_nan=equal_nan)),
    xp.asarray(xp.array_equal(x, x * 1.0, equal_nan=equal_nan))),
    None, isclose_samples().filter(lambda s: s.args[0].shape == s.args[1].shape), grad=False)


# --- Python lists of traced values as array-likes; std's gradient over one element -------------

row("mean_of_list", lambda xp, x, y: xp.mean([x, y, 2 * x], axis=0),
    lambda x, y: torch.mean(torch.stack([x, y, 2 * x]), 0), same_shape_samples(2))
row("sum_of_tuple", lambda xp, x, y: xp.sum((x, y)), lambda x, y: torch.sum(torch.stack([x, y])),
    same_shape_samples(2))
row("array_of_nested_list", lambda xp, x, y: xp.array([[x, 2 * x], (y, x * y)]),
    lambda x, y: torch.stack([torch.stack([x, 2 * x]), torch.stack([y, x * y])]),
    same_shape_samples(2))
row("array_of_scalars_and_numbers", lambda xp, x, y: xp.array([x, 1.0, y, 2]),
    lambda x, y: torch.stack([x, torch.ones_like(x), y, 2 * torch.ones_like(x)]),
    same_shape_samples(2, max_dims=0))


def _t_std(x, axis, keepdims, ddof):
    dims = _norm_axes(axis, x.ndim)
    return torch.std(x, dim=dims, correction=ddof, keepdim=keepdims) if dims else torch.zeros_like(x)


row("std_one_element", lambda xp, x, **kw: xp.std(x, **kw), _t_std,
    reduction_samples(real, min_side=1, ddof=True).filter(lambda s: _reduced_count(s) == 1),
    grad2=True)


# --- einsum's interleaved operand form (subscripts as integer sublists) --------------------------

@st.composite
def einsum_sublist_samples(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    form = draw(st.sampled_from(["matmul", "implicit", "ellipsis"]))
    if form == "ellipsis":
        return _sample(draw, [(real, (2, n, k)), (real, (k, m))], form=form)
    return _sample(draw, [(real, (n, k)), (real, (k, m))], form=form)


_SUBLISTS = {"matmul": ([0, 1], [1, 2], [0, 2]), "implicit": ([0, 1], [1, 2]),
             "ellipsis": ([Ellipsis, 0, 1], [1, 2], [Ellipsis, 0, 2])}


def _einsum_sublists(einsum, x, y, form):
    subs = _SUBLISTS[form]
    return einsum(x, subs[0], y, subs[1], *subs[2:])


row("einsum_sublists", lambda xp, x, y, form: _einsum_sublists(xp.einsum, x, y, form),
    lambda x, y, form: _einsum_sublists(torch.einsum, x, y, form), einsum_sublist_samples(),
    grad2=True)


ROW_NAMES = [r.name for r in ROWS]
assert len(set(ROW_NAMES)) == len(ROW_NAMES), "row names must be unique"
