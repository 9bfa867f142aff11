"""``fgrad.jit``: stage a function once per input signature, replay it as generated NumPy code.

How a call runs::

    jitted(*args)
      -> signature: the pytree structure of the dynamic arguments, each leaf's shape and dtype
         (a Python scalar: its type only), the values of the static arguments
      -> cache miss: stage f on abstract values (staging.stage), optimise the program
         (passes.optimize), plan buffer reuse (passes.plan_buffer_reuse), generate the source
         of one Python function of plain NumPy calls (one line per equation), compile it
      -> replay the compiled function on the leaves: no tracers, no bind, no pytree work
         beyond flattening the arguments and unflattening the results

Choices, as JAX makes them unless said otherwise:

* **Python scalars are dynamic and weakly typed.** ``jit(f)(x, 0.1)`` and ``jit(f)(x, 0.2)``
  share one trace; the scalar is handed to the generated code as the Python number it is, so
  NumPy promotes it exactly as in eager code (``f32[3] * 0.1`` stays float32). Code that needs
  the number itself (``if lr > 0``, ``range(n)``) must mark it static.
* **Static arguments** (``static_argnums``, ``static_argnames``) must be hashable; each new
  value traces again. Retracing is reported with a :class:`RetraceWarning` once a function
  has been traced :data:`RETRACE_WARNING_AFTER` times.
* **Under a transform the jitted function is one call.** When ``grad``, ``jvp`` or ``vmap`` is
  tracing, ``jitted(*args)`` stages ``f`` once per signature as a closed program (what it closes
  over becomes operands) and binds one ``jit_call`` equation on it, whose rules transform the
  program (``fgrad/primitives/control.py``): ``grad(jit(f))`` runs a compiled forward pass that
  saves what the backward pass needs and a compiled backward pass (both cached on the program),
  so it costs about what ``jit(grad(f))`` does; custom_vjp / custom_jvp rules inside ``f`` stay
  rules. Python control flow on a traced value is then an error, as under ``jit(f)`` alone.
  Under staging (an outer ``jit``, ``make_jaxpr``, a ``fgrad.lax`` body) ``f`` is inlined, so the
  outer program is optimised as a whole; under ``fgrad.debug_nans`` it runs eagerly.
* **Results** are NumPy arrays (or the NumPy scalars NumPy's own functions return), in the
  output's pytree structure. Like any NumPy function, a result may be a view of an input
  (``jit(lambda x: x.T)``), or the input itself when the optimised program is the identity.
* **Control flow** (``fgrad.lax``): a ``scan`` or ``while`` equation becomes a Python loop in
  the generated function, calling its body compiled by this same generator (its source is
  listed, commented, under the function's), and a ``cond`` an indexed call of compiled
  branches; ``passes.prune_control_flow`` first drops the outputs nothing reads.
* **Donation** (``donate_argnums``): the listed arguments' buffers may be overwritten by the
  program (an elementwise result written into them with ``out=``), so do not use them after
  the call. A donated array that is read-only, not an ``ndarray``, or may share memory with
  another argument is silently not donated. Other inputs and constants are never written.

>>> import numpy as np, fgrad, fgrad.numpy as fnp
>>> loss = lambda w, x: fnp.mean(fnp.tanh(x @ w) ** 2)
>>> step = fgrad.jit(fgrad.value_and_grad(loss))
>>> value, g = step(np.ones((3, 2)), np.ones((5, 3)))      # traces once, then replays
>>> print(step.lower(np.ones((3, 2)), np.ones((5, 3))).source)   # the generated NumPy
"""
from __future__ import annotations

import collections
import functools
import inspect
import itertools
import keyword
import linecache
import math
import warnings

import numpy as np

from . import config, core, tree
from .core import Tracer, dtype_of, shape_of
from .errors import UnexpectedTracerError
from .passes import is_ufunc_eqn, optimize, plan_buffer_reuse
from .primitives.control import BodyTrace, jit_call_p
from .staging import (Literal, ShapedArray, StagingTrace, Var, aval_of, format_params, stage,
                      stage_closed)

__all__ = ["jit", "eval_shape", "ShapeDtypeStruct", "Jitted", "Lowered", "RetraceWarning",
           "RETRACE_WARNING_AFTER"]

#: After this many traces of one jitted function, warn that it keeps retracing.
RETRACE_WARNING_AFTER = 8


class RetraceWarning(UserWarning):
    """A jitted function was traced again and again (new shapes, dtypes or static values)."""


class ShapeDtypeStruct:
    """The shape and dtype of an array, without its data (what :func:`eval_shape` returns)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def __eq__(self, other):
        return (isinstance(other, ShapeDtypeStruct) and self.shape == other.shape
                and self.dtype == other.dtype)

    def __hash__(self):
        return hash((self.shape, self.dtype))

    def __repr__(self):
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype.name})"


class JitTrace(StagingTrace):
    """The staging trace of ``jit``: the same recording, errors that say ``jit(f)``."""

    transform_name = "jit"
    #: custom_vjp rules become calls of the user's fwd and bwd (fgrad/custom.py)
    opaque_calls = True


class JitCallTrace(BodyTrace):
    """Stages a jitted function called under grad / jvp / vmap (errors say ``jit(f)``):
    custom_vjp / custom_jvp calls stay calls, so the outer transform uses their rules."""

    transform_name = "jit"
    context = StagingTrace.context


class EvalShapeTrace(StagingTrace):
    transform_name = "eval_shape"


def _fname(f):
    return getattr(f, "__name__", None) or type(f).__name__


# --------------------------------------------------------------------------------------------
# jit
# --------------------------------------------------------------------------------------------

def jit(fun=None, static_argnums=(), static_argnames=(), donate_argnums=()):
    """``fun`` compiled: traced once per input signature, replayed as generated NumPy code.

    Args:
      fun: a pure function of arrays, Python scalars and pytrees of them.
      static_argnums: positions of arguments that are settings, not data (hashable values:
        ints, strings, tuples, callables); each new value traces again.
      static_argnames: the same, by keyword name (also when such an argument is passed by
        position).
      donate_argnums: positions of arguments whose buffers the program may overwrite.

    Returns a :class:`Jitted` callable with ``.lower(*args)`` (the optimised program and its
    generated source) and ``.trace_count``. Usable as a decorator, with or without arguments::

        @fgrad.jit
        def step(params, x, y): ...

        train_step = fgrad.jit(step, static_argnames="train", donate_argnums=(0,))
        per_example = fgrad.jit(fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0)))
    """
    if fun is None:
        return functools.partial(jit, static_argnums=static_argnums,
                                 static_argnames=static_argnames, donate_argnums=donate_argnums)
    return Jitted(fun, static_argnums, static_argnames, donate_argnums)


def _int_tuple(what, value):
    if isinstance(value, int):
        return (value,)
    value = tuple(value)
    if not all(isinstance(v, int) for v in value):
        raise TypeError(f"jit: {what} must be an int or a tuple of ints, got {value!r}")
    return value


class _Compiled:
    """One cache entry: the compiled function, its program and what it needs to run."""

    __slots__ = ("run", "out_tree", "jaxpr", "source", "stats", "reuse", "donated")

    def __init__(self, run, out_tree, jaxpr, source, stats, reuse, donated):
        self.run, self.out_tree, self.jaxpr = run, out_tree, jaxpr
        self.source, self.stats, self.reuse, self.donated = source, stats, reuse, donated


class Jitted:
    """A jitted function (see :func:`jit`). ``trace_count`` counts the traces so far."""

    def __init__(self, fun, static_argnums=(), static_argnames=(), donate_argnums=()):
        if not callable(fun):
            raise TypeError(f"jit: expected a function, got a {type(fun).__name__}")
        self._fun = fun
        self._name = _fname(fun)
        self._static_argnums = _int_tuple("static_argnums", static_argnums)
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        self._static_argnames = frozenset(names)
        self._donate_argnums = _int_tuple("donate_argnums", donate_argnums)
        # static_argnames given by position count as static too (as in JAX)
        self._name_positions = {}
        try:
            params = list(inspect.signature(fun).parameters.values())
        except (TypeError, ValueError):
            params = []
        for i, p in enumerate(params):
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name in self._static_argnames:
                self._name_positions[i] = p.name
        overlap = set(self._static_argnums) & set(self._donate_argnums)
        if overlap:
            raise ValueError(f"jit({self._name}): argument(s) {sorted(overlap)} are both static "
                             f"and donated; a static argument has no buffer to donate")
        self._cache = {}
        self._call_cache = {}   # signature -> (program, consts, out_tree) under transforms
        self._last_key = None
        self.trace_count = 0
        self._warned = False
        # name and docstring only: copying fun.__dict__ (updated=) would overwrite this object's
        # own state with a wrapped jit's (_fun, _cache) when fun is grad(jit(g))
        functools.update_wrapper(self, fun, updated=())

    def __repr__(self):
        return f"<jit({self._name}): {len(self._cache)} compiled signature(s)>"

    def __get__(self, obj, objtype=None):   # jit as a method decorator
        return self if obj is None else functools.partial(self, obj)

    # -- the call -------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if core._trace_stack or getattr(core, "_debug_hook", None) is not None:
            if core._debug_hook is not None or all(isinstance(t, StagingTrace) for t in core._trace_stack):
                # Staging (an outer jit, make_jaxpr, a lax body) inlines f: the outer program
                # is optimised as a whole. Under fgrad.debug_nans, run eagerly, so that the NaN
                # check sees every operation.
                return self._fun(*args, **kwargs)
            return self._call_traced(args, kwargs)
        key, leaves, donated = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile(key, args, kwargs, leaves, donated)
        return tree.unflatten(entry.out_tree, entry.run(*leaves))

    def _call_traced(self, args, kwargs):
        """Under grad / jvp / vmap: one ``jit_call`` equation on f's program (staged once per
        signature), whose rules transform the program (fgrad/primitives/control.py)."""
        dyn_args, dyn_kwargs, static_key, static_pos = self._split(args, kwargs)
        leaves, in_tree = tree.flatten((tuple(dyn_args), dyn_kwargs))
        avals = []
        for i, x in enumerate(leaves):
            if not isinstance(x, (Tracer, np.ndarray, np.generic, bool, int, float, complex)):
                raise TypeError(f"jit({self._name}): argument leaf #{i} is a "
                                f"{type(x).__name__}, not an array or number; pass it through "
                                f"static_argnums / static_argnames if it is a setting")
            avals.append(aval_of(x, weak_scalars=True))
        key = (in_tree, tuple((a, a.weak_type) for a in avals), static_key, config.trace_context())
        entry = self._call_cache.get(key)
        if entry is None:
            box = []

            def flat_fun(*ins):
                dyn_args_t, dyn_kwargs_t = tree.unflatten(in_tree, ins)
                full = [args[i] if i in static_pos else a for i, a in enumerate(dyn_args_t)]
                kw = {k: v for k, v in kwargs.items() if k in self._static_argnames}
                kw.update(dyn_kwargs_t)
                out_leaves, out_tree = tree.flatten(self._fun(*full, **kw))
                box.append(out_tree)
                return out_leaves
            jaxpr, consts = stage_closed(flat_fun, avals, trace_type=JitCallTrace, fun_name=self._name)
            self.trace_count += 1
            jaxpr, _ = optimize(jaxpr)
            entry = (jaxpr, consts, box[-1])
            # a program that closes over another transform's tracers is this call's only
            if not any(isinstance(c, Tracer) for c in consts):
                self._call_cache[key] = entry
        jaxpr, consts, out_tree = entry
        outs = jit_call_p.bind(*consts, *leaves, jaxpr=jaxpr, name=_identifier(self._name)[:-4])
        return tree.unflatten(out_tree, outs)

    def lower(self, *args, **kwargs):
        """The optimised program and generated source for arguments like these (a
        :class:`Lowered`); compiles (and caches) it if this signature is new."""
        key, leaves, donated = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile(key, args, kwargs, leaves, donated)
        return Lowered(self._name, entry)

    def _split(self, args, kwargs):
        """``(dynamic args with None at static positions, dynamic kwargs, static key)``."""
        n = len(args)
        static_pos = {i % n for i in self._static_argnums if -n <= i < n}
        static_pos |= {i for i in self._name_positions if i < n}
        statics = []
        dyn_args = []
        for i, a in enumerate(args):
            if i in static_pos:
                statics.append((i, type(a), a))
                dyn_args.append(None)
            else:
                dyn_args.append(a)
        dyn_kwargs = {}
        for k, v in kwargs.items():
            if k in self._static_argnames:
                statics.append((k, type(v), v))
            else:
                dyn_kwargs[k] = v
        try:
            static_key = tuple(statics)
            hash(static_key)
        except TypeError:
            bad = next(s for s in statics if not _hashable(s[2]))
            raise TypeError(f"jit({self._name}): static argument {bad[0]!r} must be hashable "
                            f"(it is part of the cache key), got a {type(bad[2]).__name__}; pass "
                            f"a tuple instead of a list, or make it a dynamic argument") from None
        return dyn_args, dyn_kwargs, static_key, static_pos

    def _signature(self, args, kwargs):
        dyn_args, dyn_kwargs, static_key, static_pos = self._split(args, kwargs)
        leaves, in_tree = tree.flatten((tuple(dyn_args), dyn_kwargs))
        sig = []
        for i, x in enumerate(leaves):
            if isinstance(x, np.ndarray):
                sig.append((x.shape, x.dtype))
            elif isinstance(x, (bool, int, float, complex)):
                sig.append(type(x))
            elif isinstance(x, np.generic):   # same as a 0-d array (NumPy returns either)
                sig.append(((), x.dtype))
            elif isinstance(x, Tracer):
                raise UnexpectedTracerError(
                    f"jit({self._name}): argument leaf #{i} is a {type(x).__name__} from a "
                    f"transform that has already returned (a tracer leak); return values from "
                    f"transformed functions instead of storing them")
            else:
                raise TypeError(f"jit({self._name}): argument leaf #{i} is a "
                                f"{type(x).__name__}, not an array or number; pass it through "
                                f"static_argnums / static_argnames if it is a setting")
        donated = self._donated_leaves(dyn_args, leaves, static_pos) if self._donate_argnums else ()
        # the settings a trace reads (fgrad.config: the Threefry scheme) are part of the key
        return (in_tree, tuple(sig), static_key, donated, config.trace_context()), leaves, donated

    def _donated_leaves(self, dyn_args, leaves, static_pos):
        n = len(dyn_args)
        wanted = {i % n for i in self._donate_argnums if -n <= i < n} - static_pos
        donated, start = [], 0
        for i, a in enumerate(dyn_args):
            count = tree.num_leaves(a) if a is not None else 0
            if i in wanted:
                donated.extend(range(start, start + count))
            start += count
        ok = []
        for j in donated:
            x = leaves[j]
            if not (isinstance(x, np.ndarray) and x.flags.writeable and x.ndim >= 1):
                continue
            if any(k != j and isinstance(y, np.ndarray) and np.may_share_memory(x, y)
                   for k, y in enumerate(leaves)):
                continue
            ok.append(j)
        return tuple(ok)

    # -- tracing and compiling ----------------------------------------------------------

    def _compile(self, key, args, kwargs, leaves, donated):
        dyn_args, dyn_kwargs, _, static_pos = self._split(args, kwargs)
        in_tree = key[0]
        fun = self._fun

        def flat_fun(dyn_args_t, dyn_kwargs_t):
            full = [args[i] if i in static_pos else a for i, a in enumerate(dyn_args_t)]
            kw = {k: v for k, v in kwargs.items() if k in self._static_argnames}
            kw.update(dyn_kwargs_t)
            return fun(*full, **kw)

        avals = [aval_of(x, weak_scalars=True) for x in leaves]
        jaxpr, out_tree = stage(flat_fun, avals, in_tree, trace_type=JitTrace, fun_name=self._name)
        self.trace_count += 1
        self._warn_retrace(key)
        entry = _build(self._name, jaxpr, out_tree, [jaxpr.invars[j] for j in donated],
                       len(self._cache))
        self._cache[key] = entry
        self._last_key = key
        return entry

    def _warn_retrace(self, key):
        if self.trace_count < RETRACE_WARNING_AFTER or self._warned:
            return
        self._warned = True
        change = _describe_change(self._last_key, key) if self._last_key else ""
        warnings.warn(
            f"jit({self._name}) has been traced {self.trace_count} times{change}. Each new "
            f"argument shape, dtype, pytree structure or static value traces and compiles "
            f"again, which is slower than running eagerly. Keep shapes fixed (pad batches), "
            f"pass changing numbers as arrays or Python scalars rather than static arguments.",
            RetraceWarning, stacklevel=4)

    def _cache_size(self):
        return len(self._cache)


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _describe_change(old, new):
    (t0, s0, k0, _, c0), (t1, s1, k1, _, c1) = old, new
    if c0 != c1:
        return " (the last time because an fgrad.config setting changed)"
    if t0 != t1:
        return " (the last time because the argument structure changed)"
    if k0 != k1:
        return f" (the last time because a static argument changed: {k0} -> {k1})"
    for i, (a, b) in enumerate(zip(s0, s1)):
        if a != b:
            return f" (the last time because argument leaf #{i} changed from {a} to {b})"
    return ""


# --------------------------------------------------------------------------------------------
# lowering: the optimised program and its source
# --------------------------------------------------------------------------------------------

class Lowered:
    """What ``jit(f).lower(*args)`` returns: the optimised program and its NumPy source.

    ``as_text()`` is the program, jaxpr-style (one equation per line); ``source`` is the
    generated Python (one line per equation, each commented with its primitive and, where a
    derivative or batching rule produced it, that rule); ``stats`` lists the equation count
    after each pass; ``buffer_reuse`` the number of equations that write into a dead buffer.
    """

    def __init__(self, name, entry):
        self.name = name
        self.jaxpr = entry.jaxpr
        self.source = entry.source
        self.stats = entry.stats
        self.buffer_reuse = len(entry.reuse)
        self._run = entry.run

    def as_text(self):
        return str(self.jaxpr)

    def compile(self):
        """The compiled flat function: NumPy leaves in, a list of NumPy leaves out."""
        return self._run

    def __repr__(self):
        return f"<Lowered jit({self.name}): {len(self.jaxpr.eqns)} equations>"


def _build(name, jaxpr, out_tree, donated_vars, serial):
    if any(isinstance(c, Tracer) for c in jaxpr.consts):   # cannot happen at top level
        raise AssertionError("jit: a tracer of another transform reached the compiled program")
    jaxpr, stats = optimize(jaxpr)
    reuse = plan_buffer_reuse(jaxpr, donated_vars)
    source, env = generate_source(jaxpr, reuse, name)
    run = _exec(source, env, f"<fgrad.jit {name} #{serial}>")
    return _Compiled(run, out_tree, jaxpr, source, stats, reuse, donated_vars)


def _exec(source, env, filename):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {}
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - our own generated code
    return namespace["_make"](**env)


_BODY_SERIAL = itertools.count()

#: Eager ``fgrad.lax`` calls stage (and compile) their bodies on every call; only the sources of
#: the most recent bodies stay in ``linecache`` for tracebacks, so a long loop of eager calls
#: does not keep every source it ever generated.
BODY_SOURCES_KEPT = 256
_body_files = collections.deque()


def compile_program(jaxpr, name="body"):
    """``(run, source)`` for a closed program (no constvars): the body of a control-flow
    primitive, optimised and generated as jit does a whole function, compiled once and cached
    on the program object (eager ``fgrad.lax`` calls and every jit that contains the program
    share it). ``run(*inputs)`` returns the list of outputs."""
    compiled = getattr(jaxpr, "_compiled", None)
    if compiled is None:
        program, _ = optimize(jaxpr)
        source, env = generate_source(program, plan_buffer_reuse(program), name)
        filename = f"<fgrad.jit {name} #{next(_BODY_SERIAL)}>"
        run = _exec(source, env, filename)
        _body_files.append(filename)
        while len(_body_files) > BODY_SOURCES_KEPT:
            linecache.cache.pop(_body_files.popleft(), None)
        compiled = jaxpr._compiled = (run, source)
    return compiled


# --------------------------------------------------------------------------------------------
# code generation
# --------------------------------------------------------------------------------------------

_RESERVED = {"np", "_make"}


class _Emitter:
    """Names values and binds the Python objects the generated lines need."""

    def __init__(self, jaxpr):
        self.env = {"np": np}
        self.subprograms = []   # (bound name, source) of the compiled bodies of control flow
        self.names = {}
        for v, n in jaxpr.names().items():
            self.names[v] = n + "_" if (keyword.iskeyword(n) or n in _RESERVED) else n
        self._bound = {}

    def bind(self, obj, hint):
        """A name in the generated module for ``obj`` (constants, functions, parameters)."""
        key = id(obj)
        if key in self._bound:
            return self._bound[key][0]
        name = f"_{hint}{len(self._bound)}"
        self._bound[key] = (name, obj)
        self.env[name] = obj
        return name

    def atom(self, a):
        if isinstance(a, Var):
            return self.names[a]
        return self.value(a.val, "lit")

    def value(self, v, hint="k"):
        """Python source for a parameter or literal value."""
        if v is None or isinstance(v, (bool, str)):
            return repr(v)
        if isinstance(v, int):
            return repr(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else self.bind(v, hint)
        if isinstance(v, tuple) and all(_plain(x) for x in v):
            return repr(v)
        if isinstance(v, np.dtype):
            return f"np.{v.name}" if getattr(np, v.name, None) is v.type else self.bind(v, "dtype")
        if isinstance(v, type) and issubclass(v, np.generic):
            return self.value(np.dtype(v), hint)
        return self.bind(v, hint)


def _plain(x):
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, tuple):
        return all(_plain(y) for y in x)
    return x is None or isinstance(x, (bool, int, str))


def _index_text(template, arrays, em):
    from .primitives.indexing import ARRAY
    it = iter(arrays)
    parts = []
    for t in template:
        if t is ARRAY:
            parts.append(next(it))
        elif t is None:
            parts.append("None")
        elif t is Ellipsis:
            parts.append("...")
        elif isinstance(t, slice) and all(_plain(p) for p in (t.start, t.stop, t.step)):
            lo = "" if t.start is None else repr(t.start)
            hi = "" if t.stop is None else repr(t.stop)
            parts.append(f"{lo}:{hi}" + ("" if t.step is None else f":{t.step!r}"))
        elif isinstance(t, int):
            parts.append(repr(t))
        else:
            return None
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def _expr(e, ins, em, out_into):
    """The right-hand side of one equation's line."""
    prim, name, params = e.prim, e.prim.name, e.params
    impl = prim.impl
    if is_ufunc_eqn(e):
        fn = f"np.{impl.__name__}" if getattr(np, impl.__name__, None) is impl else em.bind(impl, name)
        out = f", out={out_into}" if out_into is not None else ""
        return f"{fn}({', '.join(ins)}{out})"
    avals = [a.aval if isinstance(a, Var) else None for a in e.inputs]
    real = [a is not None and not a.weak_type for a in avals]
    if name == "select":
        return f"np.where({', '.join(ins)})"
    if name == "reduce_sum" and avals[0] is not None and avals[0].dtype.kind == "f":
        return f"np.add.reduce({ins[0]}, axis={em.value(params['axes'])})"
    if name == "reshape":
        return f"np.reshape({ins[0]}, {em.value(tuple(params['shape']))})"
    if name == "transpose":
        return f"np.transpose({ins[0]}, {em.value(tuple(params['perm']))})"
    if name == "broadcast_to":
        return f"np.broadcast_to({ins[0]}, {em.value(tuple(params['shape']))})"
    if name == "gather" and real[0] and avals[0].ndim >= 1:
        text = _index_text(params["template"], ins[1:], em)
        if text is not None:
            return f"{ins[0]}[{text}]"
    if name == "dot_general" and all(real):
        (lc, rc), (lb, rb) = params["dimension_numbers"]
        nl, nr = avals[0].ndim, avals[1].ndim
        if not lb and nl in (1, 2) and nr in (1, 2):
            x, y = ins
            if lc == (nl - 1,) and rc == (0,) and not (nl == 1 and nr == 1):
                return f"{x} @ {y}"
            if nl == 2 and nr == 2 and lc == (1,) and rc == (1,):
                return f"{x} @ {y}.T"
            if nl == 2 and nr == 2 and lc == (0,) and rc == (0,):
                return f"{x}.T @ {y}"
    fn = em.bind(impl, name)
    kw = "".join(f", {k}={em.value(v)}" for k, v in params.items())
    return f"{fn}({', '.join(ins)}{kw})"


def _comment(e):
    parts = [e.prim.name + _short_params(e.params)]
    if e.source:
        parts.append(e.source)
    return "# " + "; ".join(parts)


def _short_params(params):
    text = format_params(params)
    return text if len(text) <= 60 else text[:57] + "...]"


def generate_source(jaxpr, reuse, name="f"):
    """Python source of the program as one function of plain NumPy calls, and its globals.

    ``reuse`` is :func:`~fgrad.passes.plan_buffer_reuse`'s plan. The source defines
    ``_make(**globals)`` returning the function, so constants and functions are closure
    variables (fast to read) rather than module globals.
    """
    em = _Emitter(jaxpr)
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        em.env[em.names[v]] = c
    const_names = [em.names[v] for v in jaxpr.constvars]
    dead_after = _dead_after(jaxpr)
    body = []
    for i, e in enumerate(jaxpr.eqns):
        if i:
            _free(body, dead_after.get(i - 1), em)
        ins = [em.atom(a) for a in e.inputs]
        outs = [em.names[o] for o in e.outs]
        control = _CONTROL_FLOW.get(e.prim.name)
        if control is not None and e.prim.multiple_results:
            body.extend("        " + line for line in control(e, ins, outs, em, i))
            continue
        out_into = ins[reuse[i]] if i in reuse else None
        lhs = ", ".join(outs) + ("," if e.prim.multiple_results and len(outs) == 1 else "")
        if e.prim.multiple_results and not outs:
            lhs = "_"
        line = f"{lhs} = {_expr(e, ins, em, out_into)}"
        comment = _comment(e) + (f"; writes into {out_into}" if out_into is not None else "")
        body.append(f"        {line}  {comment}")
    if jaxpr.eqns:
        _free(body, dead_after.get(len(jaxpr.eqns) - 1), em)
    rets = [em.atom(v) if isinstance(v, (Var, Literal)) else em.bind(v, "out") for v in jaxpr.outvars]
    params = ", ".join(em.names[v] for v in jaxpr.invars)
    fn_name = _identifier(name)
    header = [f"def _make({', '.join(sorted(k for k in em.env))}):",
              f"    def {fn_name}({params}):"]
    if const_names:
        header.append(f"        # constants: {', '.join(const_names)}")
    ret = f"        return [{', '.join(rets)}]"
    listing = []
    for bound, sub in em.subprograms:
        listing.append(f"# {bound}: compiled separately from its own staged program:")
        listing.extend(("#   " + line).rstrip() for line in sub.rstrip().splitlines())
    source = "\n".join(header + body + [ret, f"    return {fn_name}", ""] + listing
                       + ([""] if listing else []))
    return source, dict(em.env)


def _dead_after(jaxpr):
    """``{i: [vars]}``: the variables whose last reader is equation ``i`` (or, never read, that
    it wrote), outputs and constants excepted."""
    last = {}
    for i, e in enumerate(jaxpr.eqns):
        for o in e.outs:
            last[o] = i
        for a in e.inputs:
            if isinstance(a, Var):
                last[a] = i
    keep = {v for v in jaxpr.outvars if isinstance(v, Var)} | set(jaxpr.constvars)
    dead = {}
    for v, i in last.items():
        if v not in keep:
            dead.setdefault(i, []).append(v)
    return dead


def _free(body, dead, em):
    """``del`` the variables no later line reads. A generated function's locals would otherwise
    keep every intermediate of a backward pass alive until it returns (eager mode frees them
    as the tape unwinds). Measured on the GPT example's step (vocab 2048, context 128, one
    thread): peak memory 378 -> 233 MB, and 576-608 -> 522-528 ms, level with eager's 525-531."""
    names = [em.names[v] for v in dead or () if v in em.names]
    if names:
        body.append(f"        del {', '.join(names)}")


# --------------------------------------------------------------------------------------------
# control flow (fgrad.lax): Python loops over a compiled body
# --------------------------------------------------------------------------------------------
#
# Each body program is compiled on its own (compile_program: the same passes and generator) and
# called from a loop written into the enclosing function; its source is listed, commented, at
# the end of the enclosing source. Loop variables are named ``__c<eqn>_<k>`` and alike: program
# variables are lower-case letters and bound objects ``_<hint><n>``, so they never collide.

def _subprogram(em, jaxpr, hint):
    run, source = compile_program(jaxpr, hint)
    bound = em.bind(run, hint)
    if all(b != bound for b, _ in em.subprograms):
        em.subprograms.append((bound, source))
    return bound


def _targets(names):
    """The left-hand side of an assignment of a list of ``len(names)`` values."""
    return "_" if not names else ", ".join(names) + ","


def _scan_lines(e, ins, outs, em, i):
    p = e.params
    nc, ncar, n = p["num_consts"], p["num_carry"], p["length"]
    body = _subprogram(em, p["jaxpr"], "scan_body")
    consts, init, xs = ins[:nc], ins[nc:nc + ncar], ins[nc + ncar:]
    carry = [f"__c{i}_{k}" for k in range(ncar)]
    ys = [f"__y{i}_{k}" for k in range(len(outs) - ncar)]
    step_ys = [f"__t{i}_{k}" for k in range(len(ys))]
    it = f"__i{i}"
    lines = [f"# scan[length={n} reverse={p['reverse']}]: a loop over {body} (listed below)"]
    if carry:
        lines.append(f"{_targets(carry)} = {_targets(init)}")
    for y, o in zip(ys, e.outs[ncar:]):
        lines.append(f"{y} = np.empty({em.value(o.aval.shape)}, {em.value(o.aval.dtype)})")
    steps = f"range({n - 1}, -1, -1)" if p["reverse"] else f"range({n})"
    args = consts + carry + [f"{x}[{it}]" for x in xs]
    lines.append(f"for {it} in {steps}:")
    lines.append(f"    {_targets(carry + step_ys)} = {body}({', '.join(args)})")
    lines.extend(f"    {y}[{it}] = {t}" for y, t in zip(ys, step_ys))
    if outs:
        lines.append(f"{_targets(outs)} = {_targets(carry + ys)}")
    return lines


def _while_lines(e, ins, outs, em, i):
    p = e.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cond = _subprogram(em, p["cond_jaxpr"], "while_cond")
    body = _subprogram(em, p["body_jaxpr"], "while_body")
    cond_consts, body_consts, init = ins[:cn], ins[cn:cn + bn], ins[cn + bn:]
    carry = [f"__c{i}_{k}" for k in range(len(init))]
    lines = [f"# while: a loop over {body} while {cond} (listed below)"]
    if carry:
        lines.append(f"{_targets(carry)} = {_targets(init)}")
    lines.append(f"while {cond}({', '.join(cond_consts + carry)})[0]:")
    lines.append(f"    {_targets(carry)} = {body}({', '.join(body_consts + carry)})")
    if outs:
        lines.append(f"{_targets(outs)} = {_targets(carry)}")
    return lines


def _cond_lines(e, ins, outs, em, i):
    branches = e.params["branches"]
    bound = [_subprogram(em, b, f"branch{k}_") for k, b in enumerate(branches)]
    table = em.bind(tuple(compile_program(b)[0] for b in branches), "branches")
    index, ops = ins[0], ins[1:]
    pick = f"{table}[min(max(int({index}), 0), {len(branches) - 1})]"
    return [f"# cond: one of {', '.join(bound)} (listed below), by index {index} clamped",
            f"{_targets(outs)} = {pick}({', '.join(ops)})"]


def _custom_call_lines(e, ins, outs, em, i):
    # a custom_vjp / custom_jvp call recorded in a lax body: run, it is its function
    fun = e.params["fun_jaxpr"]
    body = _subprogram(em, fun, "custom_fun")
    n_consts = e.params["num_consts"]
    args = ins[:n_consts[0]] + ins[sum(n_consts):]
    return [f"# {e.prim.name}: its function, {body} (listed below)",
            f"{_targets(outs)} = {body}({', '.join(args)})"]


_CONTROL_FLOW = {"scan": _scan_lines, "while": _while_lines, "cond": _cond_lines,
                 "custom_vjp_jaxpr": _custom_call_lines, "custom_jvp_jaxpr": _custom_call_lines}


def _identifier(name):
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "f"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = "_" + ident
    return ident + "_jit"


# --------------------------------------------------------------------------------------------
# eval_shape
# --------------------------------------------------------------------------------------------

def eval_shape(fun, *args, **kwargs):
    """The shapes and dtypes ``fun(*args, **kwargs)`` would return, without computing it.

    Arguments may be arrays, Python scalars, or anything with ``.shape`` and ``.dtype``
    (:class:`ShapeDtypeStruct`); the result has the output's pytree structure with a
    :class:`ShapeDtypeStruct` per leaf. ``fun`` is staged on abstract values: its array work
    is not done (values that do not depend on the arguments are still computed, as in
    ``make_jaxpr``).

    >>> fgrad.eval_shape(lambda x: x @ x.T, fgrad.ShapeDtypeStruct((3, 4), np.float32))
    ShapeDtypeStruct(shape=(3, 3), dtype=float32)
    """
    leaves, in_tree = tree.flatten((args, kwargs))
    avals = []
    for x in leaves:
        if isinstance(x, (np.ndarray, np.generic, bool, int, float, complex, Tracer)):
            avals.append(aval_of(x, weak_scalars=True))
        elif hasattr(x, "shape") and hasattr(x, "dtype"):
            avals.append(ShapedArray(x.shape, x.dtype))
        else:
            raise TypeError(f"eval_shape({_fname(fun)}): argument leaf {type(x).__name__} is not "
                            f"an array, a number or a ShapeDtypeStruct")
    jaxpr, out_tree = stage(lambda a, k: fun(*a, **k), avals, in_tree, trace_type=EvalShapeTrace,
                            fun_name=_fname(fun))

    def struct(v):
        if isinstance(v, Var):
            return ShapeDtypeStruct(v.aval.shape, v.aval.dtype)
        val = v.val if isinstance(v, Literal) else v
        return ShapeDtypeStruct(shape_of(val), dtype_of(val))
    return tree.unflatten(out_tree, [struct(v) for v in jaxpr.outvars])
