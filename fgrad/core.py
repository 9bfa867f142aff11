"""fgrad's engine: primitives, the trace stack, tracers and symbolic zeros.

How the pieces fit (the design of JAX's Autodidax, kept small):

* A :class:`Primitive` is a named operation with a NumPy implementation (``impl``) and one
  rule per transform: ``jvp`` (forward mode), ``vjp`` (reverse mode), ``batch`` (vmap) and
  optionally ``abstract_eval`` (shapes for staging). The rules live beside the primitive's
  implementation in ``fgrad/primitives/`` and are written in fgrad operations, so they are
  themselves traced: that is what makes ``grad(grad(f))`` or ``vmap(grad(f))`` work.
* Each active transform owns one :class:`Trace` on a stack; its ``level`` is its position.
  Values a transform is tracking are :class:`Tracer` objects that point at their trace.
* :func:`bind` applies a primitive. It finds the highest-level trace among the arguments and
  asks that trace to process the primitive; the trace unpacks its own tracers and binds again
  on the values inside them, which reaches the next trace down, and so on until no tracer is
  left and the NumPy implementation runs. Values of a lower level are constants to a higher
  trace, which is how nested transforms keep their perturbations apart.
* When a transform ends its trace is marked inactive; using one of its tracers afterwards is a
  tracer leak and raises :class:`UnexpectedTracerError`.

Everything here is transform-agnostic; the four traces live in ``jvp.py``, ``vjp.py``,
``vmap.py`` and ``staging.py``.
"""
from __future__ import annotations

import abc
import contextlib

import math

import numpy as np

from .errors import ConcretizationError, TracerArrayConversionError, UnexpectedTracerError

__all__ = ["Primitive", "bind", "Trace", "Tracer", "Zero", "zero", "new_trace", "PRIMITIVES",
           "is_float", "dtype_of", "shape_of", "instantiate_zeros", "numpy_alternative"]

#: Every primitive ever created, by name (the registry test checks each has all its rules).
PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    """A named operation: NumPy ``impl`` plus ``jvp``, ``vjp`` and ``batch`` rules.

    Rule signatures (``params`` are the primitive's keyword-only, static parameters):

    * ``impl(*arrays, **params) -> array`` (or a list when ``multiple_results``).
    * ``jvp(primals, tangents, **params) -> (primal_out, tangent_out)``; a tangent may be
      :data:`zero`, and ``tangent_out`` may be :data:`zero`.
    * ``vjp``: a tuple with one entry per positional operand, each
      ``lambda g, ans, *primals, **params: cotangent`` (``None`` for operands that are never
      differentiated, such as integer indices). The reverse trace calls only the entries of
      operands it is tracking. A primitive that must compute its forward pass itself
      (custom_vjp, checkpoint) sets ``vjp_fwd(primals, **params) -> (ans, backward)`` instead.
    * ``batch(vals, dims, **params) -> (out, out_dim)``; ``dims[i]`` is the mapped axis of
      ``vals[i]`` or ``None`` (not mapped).
    * ``abstract_eval(*avals, **params)`` (optional): ``ShapedArray`` outputs for staging;
      without it staging evaluates ``impl`` on zeros of the right shapes.

    ``differentiable=False`` marks primitives whose output carries no derivative (comparisons,
    argmax, integer ops): transforms evaluate them on primal values and skip all rules.
    """

    __slots__ = ("name", "impl", "jvp", "vjp", "vjp_fwd", "batch", "abstract_eval",
                 "multiple_results", "differentiable", "inline_when_staged", "__weakref__")

    def __init__(self, name, impl, *, multiple_results=False, differentiable=True):
        if name in PRIMITIVES:
            raise ValueError(f"a primitive named {name!r} already exists")
        self.name = name
        self.impl = impl
        self.jvp = None
        self.vjp = None
        self.vjp_fwd = None
        self.batch = None
        self.abstract_eval = None
        self.multiple_results = multiple_results
        self.differentiable = differentiable
        self.inline_when_staged = False
        PRIMITIVES[name] = self

    def bind(self, *args, **params):
        return bind(self, *args, **params)

    def __repr__(self):
        return self.name


def bind(prim, *args, **params):
    """Apply ``prim`` to ``args``: run it, or hand it to the highest trace among the arguments."""
    top = None
    for x in args:
        if isinstance(x, Tracer):
            trace = x._trace
            if not trace.active:
                raise UnexpectedTracerError(_leak_message(x, prim))
            if top is None or trace.level > top.level:
                top = trace
    if top is None:  # fast path: no transform is watching, run NumPy directly
        if _debug_hook is None:  # one global test: what fgrad.debug_nans costs when it is off
            return prim.impl(*args, **params)
        return _debug_hook.run_impl(prim, args, params)
    if _debug_hook is None:
        return top.process_primitive(prim, args, params)
    return _debug_hook.process(top, prim, args, params)


#: Set by :func:`fgrad.debug_nans` while it is on (an object with ``run_impl`` and ``process``):
#: ``run_impl`` checks every NumPy result for new NaNs and infs (forward ops, VJP and JVP rules
#: alike, since every rule's arithmetic reaches NumPy through the fast path above); ``process``
#: records where each traced operation was created, for the error message of a backward pass.
_debug_hook = None


#: Traces whose tracers carry derivatives, by ``transform_name``, as error messages name them.
_DIFFERENTIATING = {"vjp": "reverse-mode differentiation (grad, vjp, jacrev)",
                    "jvp": "forward-mode differentiation (jvp, jacfwd)"}


def numpy_alternative(name):
    """What to use instead of ``numpy.NAME`` on a traced value: ``fgrad.numpy.NAME`` when that
    exists, else a hint that does not name a function fgrad.numpy lacks."""
    from . import numpy as fnp
    target = fnp
    for part in name.split("."):
        target = getattr(target, part, None)
    if callable(target):
        return f"use fgrad.numpy.{name} instead of numpy.{name} inside transformed functions."
    return (f"fgrad.numpy has no {name}: write it with fgrad.numpy functions (import fgrad.numpy "
            f"as fnp), or apply numpy.{name} outside the transform to values returned from it.")


def _leak_message(tracer, prim):
    return (f"{prim.name}: received a {type(tracer).__name__} of shape {tracer.shape} from a "
            f"{tracer._trace.transform_name} transform that has already returned (a tracer leak). "
            f"A value computed inside a transformed function was stored outside it (in a "
            f"global, a closure or an attribute) and used later; return it from the function "
            f"instead.")


# --------------------------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------------------------

_trace_stack: list["Trace"] = []


class Trace(abc.ABC):
    """One active transform. Subclasses implement ``process_primitive``."""

    transform_name = "transform"

    def __init__(self, level):
        self.level = level
        self.active = True

    @abc.abstractmethod
    def process_primitive(self, prim, args, params):
        """Apply ``prim`` to ``args`` (some of them this trace's tracers) and return the result."""

    def __repr__(self):
        return f"{type(self).__name__}(level={self.level})"


@contextlib.contextmanager
def new_trace(trace_type, *args):
    """Push a new trace of ``trace_type`` on top of the stack for the duration of a transform."""
    trace = trace_type(len(_trace_stack), *args)
    _trace_stack.append(trace)
    try:
        yield trace
    finally:
        _trace_stack.pop()
        trace.active = False


# --------------------------------------------------------------------------------------------
# Tracers
# --------------------------------------------------------------------------------------------

class Tracer:
    """A value being tracked by a trace. Behaves like an array (operators, ``.shape``, methods).

    Subclasses define ``shape`` and ``dtype`` and may define ``concrete_value`` (the NumPy
    value, when the trace knows it) so Python control flow such as ``if x > 0`` works under
    ``grad`` and ``jvp`` as it does in JAX. Operators and methods are attached by
    ``fgrad.numpy`` (they are thin calls to its functions).
    """

    __slots__ = ("_trace",)
    __array_priority__ = 1000

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    def concrete_value(self):
        """The NumPy value behind this tracer, or ``None`` when the trace does not know it."""
        return None

    def _concrete(self, what):
        value = self.concrete_value()
        if value is None:
            raise ConcretizationError(
                f"{what} needs a concrete value, but got a {type(self).__name__} of shape "
                f"{self.shape} under {self._trace.transform_name}, whose value is not known "
                f"while tracing. Use fgrad.numpy.where instead of Python control flow on traced "
                f"values.")
        return value

    # Python conversions. bool(), int() and indexing give discrete results, which carry no
    # derivative, so they work wherever the value is known (``if x > 0`` under grad, as in
    # JAX). float() and complex() would turn a value being differentiated into a constant and
    # silently drop its derivative (``x * math.exp(x)`` differentiated as if exp(x) were
    # fixed), so they raise on such values, as JAX's ConcretizationTypeError does. Only values
    # whose derivative is zero by construction (stop_gradient, floor, sign, ...) convert.

    def __bool__(self):
        return bool(self._concrete("bool(x) (an `if`, `while`, `and` or `or` on a traced value)"))

    def __float__(self):
        return float(self._python_number("float"))

    def __complex__(self):
        return complex(self._python_number("complex"))

    def __int__(self):
        return int(self._concrete("int(x)"))

    def __index__(self):
        return int(self._concrete("using a traced value as an index"))

    def _python_number(self, kind):
        """The concrete value for ``float(x)``/``complex(x)``, unless that would drop a derivative."""
        mode = _DIFFERENTIATING.get(self._trace.transform_name)
        if mode is not None and not self._derivative_is_zero():
            raise ConcretizationError(
                f"{kind}(x) was called on a value that {mode} is differentiating (a "
                f"{type(self).__name__} of shape {self.shape} and dtype {np.dtype(self.dtype).name}); "
                f"the Python number would be a constant to the transform and its derivative would "
                f"be dropped, giving a wrong gradient. math.exp, math.log and other math functions "
                f"make this conversion: use fgrad.numpy's functions instead (fgrad.numpy.exp for "
                f"math.exp). To use the value as a constant on purpose, write "
                f"{kind}(fgrad.stop_gradient(x)); to log it, return it from the function (has_aux=True).")
        return self._concrete(f"{kind}(x)")

    def _derivative_is_zero(self):
        """True when this value's derivative is zero by construction: in reverse mode, the
        tape node that made it (``self.node``, duck-typed to keep core free of vjp.py) has no
        VJP rule for any operand (stop_gradient, floor, round, sign)."""
        node = getattr(self, "node", None)
        prim = getattr(node, "prim", None)
        if prim is None or getattr(node, "backward", None) is not None:
            return False       # an input of the transform, or a custom rule
        rules = prim.vjp
        return isinstance(rules, tuple) and all(rule is None for rule in rules)

    def __array__(self, dtype=None, copy=None):
        raise TracerArrayConversionError(
            f"a {type(self).__name__} of shape {self.shape} and dtype {self.dtype} was converted "
            f"to a NumPy array (numpy.asarray, a raw numpy function, a C extension, or indexing a "
            f"NumPy array with it). Inside a transformed function use fgrad.numpy (import "
            f"fgrad.numpy as fnp) instead of numpy, e.g. fnp.take(table, i) for table[i], or "
            f"return the value and convert it outside the transform.")

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", str(func))
        module = getattr(func, "__module__", None) or "numpy"
        if module.startswith("numpy.") and module.split(".")[1] in ("linalg", "fft", "random"):
            name = f"{module.split('.')[1]}.{name}"        # numpy.linalg.norm, numpy.fft.fft
        raise TracerArrayConversionError(
            f"numpy.{name} was called on a traced value ({type(self).__name__} of shape "
            f"{self.shape}); {numpy_alternative(name)}")

    def __repr__(self):
        value = self.concrete_value()
        dt = np.dtype(self.dtype).name
        head = f"{type(self).__name__}<{dt}{list(self.shape)}>"
        return head if value is None else f"{head}({np.array2string(np.asarray(value), threshold=10)})"

    __hash__ = object.__hash__


# --------------------------------------------------------------------------------------------
# Symbolic zeros
# --------------------------------------------------------------------------------------------

class Zero:
    """The symbolic zero tangent / cotangent: no array is made until one is needed.

    Rules never see arrays of zeros standing for "no derivative"; they see :data:`zero` and
    skip the work. :func:`instantiate_zeros` makes a real array where an API must return one.
    """

    __slots__ = ()

    def __repr__(self):
        return "zero"


zero = Zero()


def instantiate_zeros(t, like):
    """``t`` itself, or an array of zeros shaped like ``like`` if ``t`` is the symbolic zero."""
    if t is zero:
        return np.zeros(shape_of(like), dtype_of(like))
    return t


# --------------------------------------------------------------------------------------------
# Small helpers used by every trace
# --------------------------------------------------------------------------------------------

def shape_of(x):
    """Shape of an array, a tracer, or a Python scalar (``()``)."""
    shape = getattr(x, "shape", None)
    return () if shape is None else tuple(shape)


def dtype_of(x):
    """NumPy dtype of ``x`` (Python floats count as float64, ints as int64, bools as bool)."""
    dt = getattr(x, "dtype", None)
    if dt is not None:
        return np.dtype(dt)
    if isinstance(x, bool):
        return np.dtype(bool)
    if isinstance(x, int):
        return np.dtype(np.int64)
    if isinstance(x, float):
        return np.dtype(np.float64)
    if isinstance(x, complex):
        return np.dtype(np.complex128)
    return np.asarray(x).dtype


def is_float(x):
    """True when ``x`` has a differentiable dtype: real floating or complex."""
    # Fast path for arrays and tracers (their dtype is a np.dtype): read its kind instead of
    # normalising through dtype_of (0.6 -> 0.2 us; this runs on every traced op's output).
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    if kind is not None:
        return kind in "fc"
    return dtype_of(x).kind in "fc"

