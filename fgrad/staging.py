"""Staging: record a function as a small program (a "jaxpr") instead of running it.

Under the staging trace every value the function computes from its inputs is a
:class:`StagingTracer` that knows only its shape and dtype. Each primitive applied to one adds
an :class:`Eqn` (``outs = prim[params] ins``) to the :class:`Jaxpr`. Values that do not depend
on the inputs are computed eagerly and enter the program as constants: this is partial
evaluation for free, and ``linearize`` uses it to keep only the tangent computation.

``make_jaxpr(f)(*args)`` prints one equation per line with typed shapes; :func:`eval_jaxpr`
replays a program through :func:`~fgrad.core.bind`, so a staged program can itself be
transformed. (``jit`` will cache programs per input signature and replay them.)
"""
from __future__ import annotations

import itertools

import numpy as np

from .core import Trace, Tracer, bind, dtype_of, shape_of

__all__ = ["ShapedArray", "StagingTrace", "StagingTracer", "Jaxpr", "Eqn", "Var", "eval_jaxpr", "dce"]


class ShapedArray:
    """An abstract value: a shape and a dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def str_short(self):
        short = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64",
                 "int32": "i32", "int8": "i8", "uint32": "u32", "uint8": "u8", "bool": "bool",
                 "complex128": "c128", "uint64": "u64"}.get(self.dtype.name, self.dtype.name)
        return f"{short}[{','.join(map(str, self.shape))}]"

    def __eq__(self, other):
        return isinstance(other, ShapedArray) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self):
        return hash((self.shape, self.dtype))

    def __repr__(self):
        return f"ShapedArray({self.str_short()})"


class Var:
    __slots__ = ("aval", "name")

    def __init__(self, aval, name):
        self.aval = aval
        self.name = name

    def __repr__(self):
        return self.name


class Eqn:
    __slots__ = ("prim", "inputs", "params", "outs")

    def __init__(self, prim, inputs, params, outs):
        self.prim, self.inputs, self.params, self.outs = prim, inputs, params, outs


class Literal:
    """A constant operand printed inline (Python scalars and 0-d arrays)."""

    __slots__ = ("val",)

    def __init__(self, val):
        self.val = val

    def __repr__(self):
        return repr(self.val.item() if isinstance(self.val, (np.ndarray, np.generic)) else self.val)


class Jaxpr:
    """A staged program: ``invars``, ``constvars`` (with ``consts``), ``eqns`` and ``outvars``."""

    def __init__(self, invars, constvars, consts, eqns, outvars):
        self.invars, self.constvars, self.consts = invars, constvars, consts
        self.eqns, self.outvars = eqns, outvars

    def __repr__(self):
        # Name variables in reading order (constants, inputs, then each equation's outputs),
        # whatever order tracing created them in.
        names = {}
        for v in [*self.constvars, *self.invars, *(o for e in self.eqns for o in e.outs)]:
            names[v] = _name(len(names) + 1)

        def name(a):
            return names.get(a, repr(a)) if isinstance(a, Var) else repr(a)

        def typed(v):
            return f"{name(v)}:{v.aval.str_short()}"

        def fmt_params(params):
            if not params:
                return ""
            items = []
            for k, v in params.items():
                v = getattr(v, "__name__", v)
                if isinstance(v, np.dtype):
                    v = v.name
                items.append(f"{k}={v}")
            return "[" + " ".join(items) + "]"

        consts = " ".join(typed(v) for v in self.constvars)
        ins = " ".join(typed(v) for v in self.invars)
        lines = [f"{{ lambda {consts + ' ; ' if consts else ''}{ins}. let"]
        for e in self.eqns:
            outs = " ".join(typed(v) for v in e.outs)
            args = " ".join(name(a) for a in e.inputs)
            lines.append(f"    {outs} = {e.prim.name}{fmt_params(e.params)} {args}")
        lines.append(f"  in ({', '.join(name(v) for v in self.outvars)}) }}")
        return "\n".join(lines)

    def pretty(self):
        return repr(self)


class StagingTracer(Tracer):
    __slots__ = ("aval", "var")

    def __init__(self, trace, aval, var):
        self._trace = trace
        self.aval = aval
        self.var = var

    @property
    def shape(self):
        return self.aval.shape

    @property
    def dtype(self):
        return self.aval.dtype


class StagingTrace(Trace):
    transform_name = "make_jaxpr"

    def __init__(self, level):
        super().__init__(level)
        self.eqns = []
        self.consts = {}   # id(array) -> (Var, array)
        self._names = _names()

    def new_var(self, aval):
        return Var(aval, next(self._names))

    def new_input(self, aval):
        return StagingTracer(self, aval, self.new_var(aval))

    def atom(self, x):
        if isinstance(x, StagingTracer) and x._trace is self:
            return x.var
        if np.ndim(x) == 0 and not isinstance(x, Tracer):
            return Literal(x)
        key = id(x)
        if key not in self.consts:
            self.consts[key] = (self.new_var(ShapedArray(shape_of(x), dtype_of(x))), x)
        return self.consts[key][0]

    def process_primitive(self, prim, args, params):
        if prim.inline_when_staged:  # custom_vjp / custom_jvp calls: trace through the function
            return prim.impl(*args, **params)
        in_atoms = [self.atom(x) for x in args]
        out_avals = abstract_eval(prim, args, params)
        outs = [StagingTracer(self, a, self.new_var(a)) for a in out_avals]
        self.eqns.append(Eqn(prim, in_atoms, params, [t.var for t in outs]))
        return outs if prim.multiple_results else outs[0]


def _name(n):
    """1 -> a, 26 -> z, 27 -> aa, ..."""
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def _names():
    return (_name(n) for n in itertools.count(1))


def abstract_eval(prim, args, params):
    """Output avals of ``prim``: its own shape rule, or its impl run on zeros of the right shape."""
    avals = [ShapedArray(shape_of(x), dtype_of(x)) if isinstance(x, Tracer) else x for x in args]
    if prim.abstract_eval is not None:
        out = prim.abstract_eval(*avals, **params)
        return list(out) if prim.multiple_results else [out]
    dummies = [np.zeros(a.shape, a.dtype) if isinstance(a, ShapedArray) else a for a in avals]
    with np.errstate(all="ignore"):
        out = prim.impl(*dummies, **params)
    outs = out if prim.multiple_results else [out]
    return [ShapedArray(shape_of(o), dtype_of(o)) for o in outs]


def eval_jaxpr(jaxpr, consts, *args):
    """Run a staged program on ``args`` (through ``bind``, so it can be transformed again)."""
    env = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a

    def read(a):
        return a.val if isinstance(a, Literal) else env[a]

    for e in jaxpr.eqns:
        out = bind(e.prim, *map(read, e.inputs), **e.params)
        if e.prim.multiple_results:
            for v, o in zip(e.outs, out):
                env[v] = o
        else:
            env[e.outs[0]] = out
    return [read(v) if isinstance(v, (Var, Literal)) else v for v in jaxpr.outvars]


def dce(jaxpr):
    """Drop equations whose outputs nothing uses (every primitive is pure, so this is safe)."""
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for e in reversed(jaxpr.eqns):
        if any(o in live for o in e.outs):
            kept.append(e)
            live.update(a for a in e.inputs if isinstance(a, Var))
    used = [(v, c) for v, c in zip(jaxpr.constvars, jaxpr.consts) if v in live]
    return Jaxpr(jaxpr.invars, [v for v, _ in used], [c for _, c in used], kept[::-1], jaxpr.outvars)
