"""The transforms users call: grad, value_and_grad, vjp, jvp, linearize, vmap, jacfwd, jacrev,
hessian, make_jaxpr, stop_gradient.

This module owns everything user-facing about them: pytrees of arguments and results,
``argnums``, ``has_aux``, ``in_axes``/``out_axes``, and the errors that say what went wrong.
The machinery underneath is one trace per transform (``jvp.py``, ``vjp.py``, ``vmap.py``,
``staging.py``); the composite transforms (``jacfwd``, ``jacrev``, ``hessian``) are built from
the others exactly as in JAX:

>>> import fgrad, fgrad.numpy as fnp
>>> def loss(w, x, y): return fnp.mean((fnp.tanh(x @ w) - y) ** 2)
>>> per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))
"""
from __future__ import annotations

import functools

import math

import numpy as np

from . import numpy as fnp
from . import tree
from .core import Tracer, dtype_of, instantiate_zeros, new_trace, shape_of, zero
from .errors import TransformError
from .jvp import JVPTrace, JVPTracer
from .primitives.elementwise import piecewise_constant
from .staging import Jaxpr, ShapedArray, StagingTrace, dce, eval_jaxpr
from .vjp import VJPTrace, VJPTracer, backward_pass
from .vmap import BatchTrace, BatchTracer

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "vmap", "jacfwd", "jacrev",
           "hessian", "make_jaxpr", "stop_gradient"]


def _fname(f):
    return getattr(f, "__name__", None) or type(f).__name__


def _aval_str(x):
    return ShapedArray(shape_of(x), dtype_of(x)).str_short()


def _check_float_inputs(transform, f, leaves, paths=None, complex_ok=True, holomorphic=False):
    """Differentiated inputs must be real floats or complex, as JAX's checks: complex only
    with ``holomorphic=True`` where ``complex_ok`` is False (jacfwd), and complex always where
    ``holomorphic`` is True."""
    for i, x in enumerate(leaves):
        if isinstance(x, Tracer):
            kind = dtype_of(x).kind if holomorphic or not complex_ok else "f"
        elif not isinstance(x, (np.ndarray, np.generic, float, int, bool, complex)):
            raise TypeError(f"{transform}({_fname(f)}): argument {_path_str(paths, i)} is a "
                            f"{type(x).__name__}, not an array or number")
        else:
            kind = dtype_of(x).kind
        if holomorphic and kind != "c":
            raise TypeError(f"{transform}({_fname(f)}, holomorphic=True): argument "
                            f"{_path_str(paths, i)} is {_aval_str(x)}, but holomorphic=True needs "
                            f"complex inputs (as JAX); convert it (x.astype(complex)) or drop "
                            f"holomorphic=True")
        if kind == "c" and not complex_ok and not holomorphic:
            raise TypeError(f"{transform}({_fname(f)}): argument {_path_str(paths, i)} is complex "
                            f"({_aval_str(x)}); {transform} needs real float inputs unless the "
                            f"function is holomorphic (pass holomorphic=True). For a "
                            f"non-holomorphic function of complex inputs use jvp directly, or "
                            f"jacrev (as JAX).")
        if kind not in "fc":
            from .random import is_key_data_path
            if paths is not None and is_key_data_path(paths[i]):
                where = _path_str([paths[i][:-1]], 0)
                raise TypeError(f"{transform}({_fname(f)}): argument {where} is a random key "
                                f"(fgrad.random.key); keys are not differentiable: leave it out "
                                f"of argnums (pass it as another argument) or close over it")
            raise TypeError(f"{transform}({_fname(f)}): argument {_path_str(paths, i)} has dtype "
                            f"{dtype_of(x).name} ({_aval_str(x)}); derivatives are defined only "
                            f"for float (or complex) inputs. Convert it (x.astype(float)) or leave "
                            f"it out of argnums (or close over it with functools.partial).")


def _check_argnum_inputs(transform, f, dyn, nums, complex_ok=True, holomorphic=False):
    """Check the differentiated arguments, naming them by their position in the user's call;
    returns ``(leaves, treedef)`` of ``dyn``, so that the caller flattens them only once."""
    paths, leaves, treedef = tree.flatten_split_paths(dyn)
    _check_float_inputs(transform, f, leaves, _ArgnumPaths(paths, nums), complex_ok, holomorphic)
    return leaves, treedef


class _ArgnumPaths:
    """``paths[i]`` with its first entry (the position in ``dyn``) replaced by the argument's
    position in the user's call, computed only for the error message that names it."""

    __slots__ = ("paths", "nums")

    def __init__(self, paths, nums):
        self.paths, self.nums = paths, nums

    def __getitem__(self, i):
        path = self.paths[i]
        return (self.nums[path[0]],) + tuple(path[1:])


def _path_str(paths, i):
    if paths is None:
        return f"#{i}"
    head, rest = paths[i][0], paths[i][1:]
    return f"{head}" + "".join(f"[{k!r}]" for k in rest)


def _leaf_is_ours(x, trace, cls):
    return isinstance(x, cls) and x._trace is trace


def _split_aux(transform, f, out, has_aux):
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{transform}({_fname(f)}, has_aux=True): the function must return a pair "
                        f"(output, aux), got {_describe(out)}")
    return out[0], out[1]


def _describe(out):
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of length {len(out)}"
    if isinstance(out, (Tracer, np.ndarray, np.generic, float, int)):
        return f"one value {_aval_str(out)}"
    return f"a {type(out).__name__}"


# --------------------------------------------------------------------------------------------
# Reverse mode
# --------------------------------------------------------------------------------------------

def vjp(f, *primals, has_aux=False):
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(ct)`` pulls a cotangent of the output back to
    cotangents of ``primals`` (a tuple with one entry per primal)::

        y, pullback = fgrad.vjp(fnp.sin, x)
        (x_bar,) = pullback(fnp.ones_like(y))      # = cos(x)
    """
    paths, leaves, in_tree = tree.flatten_split_paths(primals)
    _check_float_inputs("vjp", f, leaves, paths)
    return _vjp(f, leaves, in_tree, has_aux)


def _vjp(f, leaves, in_tree, has_aux):
    """:func:`vjp` at the primals ``unflatten(in_tree, leaves)``, which the caller has checked
    (value_and_grad checks them once, naming them by argnums)."""
    with new_trace(VJPTrace) as trace:
        tracers = [trace.new_input(x) for x in leaves]
        out = f(*tree.unflatten(in_tree, tracers))
        out, aux = _split_aux("vjp", f, out, has_aux)
        out_leaves, out_tree = tree.flatten(out)
    out_primals = [o.primal if _leaf_is_ours(o, trace, VJPTracer) else o for o in out_leaves]
    if has_aux:
        aux = tree.map(lambda a: a.primal if _leaf_is_ours(a, trace, VJPTracer) else a, aux)

    def vjp_fn(ct):
        ct_leaves, ct_tree = tree.flatten(ct)
        if ct_tree != out_tree:
            raise TypeError(f"vjp({_fname(f)}): the cotangent must have the structure of the "
                            f"output, {out_tree}, got {ct_tree}")
        tracked, cts = [], []
        for o, p, c in zip(out_leaves, out_primals, ct_leaves):
            if shape_of(c) != shape_of(p):
                raise ValueError(f"vjp({_fname(f)}): cotangent of shape {shape_of(c)} for an "
                                 f"output of shape {shape_of(p)}; they must match")
            if dtype_of(p).kind == "f" and dtype_of(c).kind != "f":
                raise TypeError(f"vjp({_fname(f)}): cotangent of dtype {dtype_of(c).name} for an "
                                f"output {_aval_str(p)}; cotangents of real float outputs are "
                                f"real floats")
            if dtype_of(p).kind == "c" and dtype_of(c).kind != "c":
                raise TypeError(f"vjp({_fname(f)}): cotangent of dtype {dtype_of(c).name} for an "
                                f"output {_aval_str(p)}; cotangents of complex outputs are "
                                f"complex (as JAX): convert it (ct.astype({dtype_of(p).name}))")
            if _leaf_is_ours(o, trace, VJPTracer):
                tracked.append(o)
                cts.append(c)
        leaf_cts = backward_pass(tracked, cts)
        in_cts = [instantiate_zeros(leaf_cts.get(t.node, zero), x) for t, x in zip(tracers, leaves)]
        return tree.unflatten(in_tree, in_cts)

    out_tree_val = tree.unflatten(out_tree, out_primals)
    return (out_tree_val, vjp_fn, aux) if has_aux else (out_tree_val, vjp_fn)


def _argnums_tuple(transform, f, argnums, nargs):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise TransformError(f"{transform}({_fname(f)}): argnums={argnums!r} but the function "
                                 f"was called with {nargs} positional argument(s)")
    nums = tuple(n % nargs for n in nums)
    if len(set(nums)) != len(nums):
        # As torch.func: a repeated argument would be differentiated twice as two separate
        # inputs, and only one of the two copies would reach the function.
        raise TransformError(f"{transform}({_fname(f)}): argnums={argnums!r} names an argument "
                             f"more than once (positions {list(nums)}); give each argument once "
                             f"and reuse its gradient")
    return nums


def _partial_args(transform, f, args, kwargs, nums, has_aux):
    """``f`` as a function of ``args[nums]`` only. It checks the ``has_aux`` pair itself, so that
    the error names the user's transform and function rather than the inner vjp/jvp."""
    def f_dyn(*dyn):
        full = list(args)
        for i, a in zip(nums, dyn):
            full[i] = a
        out = f(*full, **kwargs)
        _split_aux(transform, f, out, has_aux)
        return out
    # the name is all the inner transform reports (functools.wraps on every call cost ~5 us)
    f_dyn.__name__ = f_dyn.__qualname__ = _fname(f)
    return f_dyn


def value_and_grad(f, argnums=0, has_aux=False, holomorphic=False):
    """``f`` and its gradient with respect to ``args[argnums]`` in one pass.

    ``f`` must return a real scalar (or ``(scalar, aux)`` with ``has_aux=True``). The gradient
    has the structure of the differentiated argument (a tuple of them for tuple ``argnums``).
    Complex inputs and ``holomorphic=True`` follow JAX: see :func:`grad`.
    """
    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        nums = _argnums_tuple("grad", f, argnums, len(args))
        dyn = tuple(args[i] for i in nums)
        f_dyn = _partial_args("grad", f, args, kwargs, nums, has_aux)
        leaves, in_tree = _check_argnum_inputs("grad", f, dyn, nums, holomorphic=holomorphic)
        if has_aux:   # (vjp itself would flatten and check the inputs a second time)
            out, pullback, aux = _vjp(f_dyn, leaves, in_tree, has_aux=True)
        else:
            out, pullback = _vjp(f_dyn, leaves, in_tree, has_aux=False)
        _check_scalar_output(f, out, holomorphic)
        g = pullback(np.ones((), dtype_of(out)))
        g = g[0] if isinstance(argnums, int) else g
        return ((out, aux), g) if has_aux else (out, g)
    return value_and_grad_f


def _check_scalar_output(f, out, holomorphic=False):
    if isinstance(out, (Tracer, np.ndarray, np.generic, float, int, complex)) and shape_of(out) == () \
            and dtype_of(out).kind == ("c" if holomorphic else "f"):
        return
    if isinstance(out, (Tracer, np.ndarray, np.generic, float, int, complex)):
        what = _aval_str(out)
        if holomorphic:
            hint = ("drop holomorphic=True for a real-valued function" if shape_of(out) == ()
                    else "reduce it (sum) or use jacrev(..., holomorphic=True) for non-scalar outputs")
            raise TypeError(f"grad({_fname(f)}, holomorphic=True): the function must return a "
                            f"complex scalar (as JAX), got {what}; {hint}.")
        if dtype_of(out).kind == "c":
            hint = ("pass holomorphic=True for a holomorphic function (as JAX), take its real "
                    "part, abs or norm, or use vjp for a non-holomorphic complex function")
        elif dtype_of(out).kind != "f":
            hint = "return a float (integer outputs have no gradient)"
        else:
            hint = "reduce it (sum/mean) or use jacrev or vjp for non-scalar outputs"
    else:
        what, hint = f"a {type(out).__name__}", "return one array (or use has_aux=True for a pair)"
    raise TypeError(f"grad({_fname(f)}): the function must return a real scalar, got {what}; {hint}.")


def grad(f, argnums=0, has_aux=False, holomorphic=False):
    """The gradient of a scalar function with respect to ``args[argnums]``.

    >>> df = fgrad.grad(lambda x: fnp.sum(fnp.sin(x)))      # df(x) == cos(x)
    >>> d2f = fgrad.grad(fgrad.grad(fnp.tanh))              # any depth composes

    Complex numbers follow JAX. For a real-valued ``f`` of complex ``z = x + iy`` the gradient
    is ``df/dx - i df/dy`` (twice the Wirtinger derivative ``df/dz``): what ``jax.grad``
    returns, and the complex conjugate of torch's ``z.grad``; step along ``-conj(grad)`` to
    descend. ``holomorphic=True`` promises a complex-differentiable ``f`` with complex inputs
    and a complex scalar output, and returns ``f'(z)``:

    >>> fgrad.grad(lambda z: fnp.abs(z) ** 2)(1.0 + 2.0j)            # (2-4j) = 2 conj(z)
    >>> fgrad.grad(lambda z: z ** 3, holomorphic=True)(1.0 + 2.0j)   # 3 z^2
    """
    vg = value_and_grad(f, argnums, has_aux, holomorphic)

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        if has_aux:
            (_, aux), g = vg(*args, **kwargs)
            return g, aux
        return vg(*args, **kwargs)[1]
    return grad_f


# --------------------------------------------------------------------------------------------
# Forward mode
# --------------------------------------------------------------------------------------------

def _tangent_kind(primal):
    """The dtype kind a tangent of ``primal`` must have: complex for complex, else real float."""
    return "c" if dtype_of(primal).kind == "c" else "f"


def _tangent_rule(primal):
    if _tangent_kind(primal) == "c":
        return "tangents of complex primals are complex (as JAX): convert it (t.astype(complex))"
    return "tangents of real float primals are real floats"


def jvp(f, primals, tangents, has_aux=False):
    """``(f(*primals), J(primals) @ tangents)``: the output and its directional derivative."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"jvp({_fname(f)}): primals and tangents must be tuples (one entry per "
                        f"argument), got {type(primals).__name__} and {type(tangents).__name__}")
    paths, p_leaves, p_tree = tree.flatten_split_paths(tuple(primals))
    t_leaves, t_tree = tree.flatten(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(f"jvp({_fname(f)}): primals and tangents must have the same structure, "
                        f"got {p_tree} and {t_tree}")
    _check_float_inputs("jvp", f, p_leaves, paths)
    for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        if shape_of(p) != shape_of(t):
            raise ValueError(f"jvp({_fname(f)}): tangent {_path_str(paths, i)} has shape "
                             f"{shape_of(t)} but its primal has shape {shape_of(p)}")
        if dtype_of(t).kind != _tangent_kind(p):
            raise TypeError(f"jvp({_fname(f)}): tangent {_path_str(paths, i)} has dtype "
                            f"{dtype_of(t).name} but its primal is {_aval_str(p)}; "
                            f"{_tangent_rule(p)}")
    with new_trace(JVPTrace) as trace:
        tracers = [JVPTracer(trace, p, t) for p, t in zip(p_leaves, t_leaves)]
        out = f(*tree.unflatten(p_tree, tracers))
        out, aux = _split_aux("jvp", f, out, has_aux)
        out_leaves, out_tree = tree.flatten(out)
    outs, tans = [], []
    for o in out_leaves:
        if _leaf_is_ours(o, trace, JVPTracer):
            outs.append(o.primal)
            tans.append(o.tangent)
        else:
            outs.append(o)
            tans.append(instantiate_zeros(zero, o))
    result = (tree.unflatten(out_tree, outs), tree.unflatten(out_tree, tans))
    if has_aux:
        aux = tree.map(lambda a: a.primal if _leaf_is_ours(a, trace, JVPTracer) else a, aux)
        return result + (aux,)
    return result


def _stage(fun, leaves_avals, in_tree):
    """Trace ``fun`` with staging tracers for its inputs: ``(jaxpr, out_tree)``."""
    with new_trace(StagingTrace) as trace:
        ins = [trace.new_input(a) for a in leaves_avals]
        out = fun(*tree.unflatten(in_tree, ins))
        out_leaves, out_tree = tree.flatten(out)
        outvars = [trace.atom(o) for o in out_leaves]
    constvars = [v for v, _ in trace.consts.values()]
    consts = [c for _, c in trace.consts.values()]
    jaxpr = Jaxpr([t.var for t in ins], constvars, consts, trace.eqns, outvars)
    return dce(jaxpr), out_tree


def linearize(f, *primals):
    """``(f(*primals), f_jvp)`` where ``f_jvp(*tangents)`` evaluates only the linear part.

    The JVP of ``f`` is staged with the tangents as the only unknowns: everything that depends
    on the primals alone is computed now, once, and ``f_jvp`` replays the recorded tangent
    program (which stays transformable: ``vmap(f_jvp)`` works).
    """
    p_leaves, p_tree = tree.flatten(tuple(primals))
    _check_float_inputs("linearize", f, p_leaves)
    box = []

    def tangent_map(*tangents):
        out, t_out = jvp(f, primals, tangents)
        box.append(out)
        return t_out

    avals = [ShapedArray(shape_of(p), dtype_of(p)) for p in p_leaves]
    jaxpr, out_tree = _stage(tangent_map, avals, p_tree)

    def f_jvp(*tangents):
        t_leaves, t_tree = tree.flatten(tuple(tangents))
        if t_tree != p_tree:
            raise TypeError(f"linearize({_fname(f)}): f_jvp expects tangents with the structure "
                            f"{p_tree}, got {t_tree}")
        for i, (t, a) in enumerate(zip(t_leaves, avals)):   # the program would broadcast them
            if shape_of(t) != a.shape:
                raise ValueError(f"linearize({_fname(f)}): f_jvp got a tangent of shape "
                                 f"{shape_of(t)} for primal #{i} of shape {a.shape}; tangents must "
                                 f"have their primals' shapes")
            if dtype_of(t).kind != _tangent_kind(a):
                raise TypeError(f"linearize({_fname(f)}): f_jvp got a tangent of dtype "
                                f"{dtype_of(t).name} for primal #{i} ({a.str_short()}); "
                                f"{_tangent_rule(a)}")
        return tree.unflatten(out_tree, eval_jaxpr(jaxpr, jaxpr.consts, *t_leaves))

    return box[0], f_jvp


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------

def vmap(f, in_axes=0, out_axes=0, axis_size=None):
    """Map ``f`` over an axis of its arguments: ``vmap(f)(xs)[i] == f(xs[i])``, without a loop.

    ``in_axes``: an int (every argument mapped along that axis), ``None`` (not mapped), or a
    tuple with one entry per positional argument, each itself a pytree prefix of that argument
    (``in_axes=(None, {"x": 0, "y": 1})``). Negative axes count from the end. ``out_axes``
    likewise places the mapped axis in each output. ``axis_size`` is needed only when no
    argument is mapped. Keyword arguments are mapped along axis 0.

    >>> per_example_grads = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)
    """
    name = _fname(f)

    @functools.wraps(f)
    def vmapped(*args, **kwargs):
        axes_spec = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        if isinstance(axes_spec, tuple) and len(axes_spec) != len(args):
            raise ValueError(f"vmap({name}): in_axes is a tuple of length {len(axes_spec)} but the "
                             f"function was called with {len(args)} positional argument(s); give "
                             f"one entry per argument")
        if not isinstance(axes_spec, (tuple, int, type(None))) and not isinstance(axes_spec, dict):
            raise TypeError(f"vmap({name}): in_axes must be an int, None or a tuple, got "
                            f"{type(in_axes).__name__}")
        if isinstance(axes_spec, dict):
            raise TypeError(f"vmap({name}): in_axes at the top level must be an int, None or a "
                            f"tuple (one entry per argument); wrap the dict: in_axes=({axes_spec!r},)")
        full = (args, kwargs)
        paths, leaves, in_tree = tree.flatten_split_paths(full)
        axes = _prefix(name, axes_spec, args, "in_axes") + [0] * tree.num_leaves(kwargs)
        norm_axes, sizes = [], []   # (labels such as args[0]['w'] are made only for an error)
        for x, ax, path in zip(leaves, axes, paths):
            if ax is None:
                norm_axes.append(None)
                continue
            if isinstance(ax, int) and ax < 0 and _is_key_data(path):
                ax -= 1   # a typed key's negative axes count its own axes, not the data axis
            if not isinstance(ax, int):
                raise TypeError(f"vmap({name}): in_axes for {_arg_label(path)} must be an int or "
                                f"None, got {ax!r}")
            s = shape_of(x)
            if not -len(s) <= ax < len(s):
                raise ValueError(f"vmap({name}): in_axes={ax} is out of range for "
                                 f"{_arg_label(path)} of shape {s} ({len(s)} dimension(s)); use an "
                                 f"axis in [{-len(s)}, {len(s) - 1}] or None to leave it unmapped")
            norm_axes.append(ax % len(s))
            sizes.append((path, s[ax % len(s)]))
        size = _batch_size(name, sizes, axis_size)
        with new_trace(BatchTrace, size) as trace:
            ins = [x if ax is None else BatchTracer(trace, x, ax) for x, ax in zip(leaves, norm_axes)]
            a, kw = tree.unflatten(in_tree, ins)
            out = f(*a, **kw)
            out_paths, out_leaves, out_tree = tree.flatten_split_paths(out)
        o_axes = _prefix(name, out_axes, out, "out_axes")
        results = []
        for o, oa, p in zip(out_leaves, o_axes, out_paths):
            if isinstance(oa, int) and oa < 0 and _is_key_data(p):
                oa -= 1
            val, bd = (o.val, o.bdim) if _leaf_is_ours(o, trace, BatchTracer) else (o, None)
            results.append(_place_out_axis(name, val, bd, oa, size, p))
        return tree.unflatten(out_tree, results)
    return vmapped


def _is_key_data(path):
    from .random import is_key_data_path   # (only reached for negative axes)
    return is_key_data_path(path)


def _prefix(name, prefix, full, what):
    try:
        return tree.broadcast_prefix(prefix, full, what=what,
                                     against="argument" if what == "in_axes" else "output")
    except ValueError as err:
        raise ValueError(f"vmap({name}): {err}") from None


def _arg_label(path):
    kind, rest = path[0], path[1:]
    if kind == 0:
        head, rest = f"args[{rest[0]}]", rest[1:]
    else:
        head, rest = f"kwargs[{rest[0]!r}]", rest[1:]
    return head + "".join(f"[{k!r}]" for k in rest)


def _batch_size(name, sizes, axis_size):
    distinct = {s for _, s in sizes}
    if axis_size is not None:
        distinct.add(axis_size)
    if len(distinct) > 1:
        listing = ", ".join(f"{_arg_label(path)} has size {s}" for path, s in sizes)
        extra = f" and axis_size={axis_size}" if axis_size is not None else ""
        raise ValueError(f"vmap({name}): mapped axes must all have the same size, but {listing}"
                         f"{extra}. Check in_axes, or pass None for arguments that should not be "
                         f"mapped.")
    if not distinct:
        raise ValueError(f"vmap({name}): no argument is mapped (every in_axes entry is None); pass "
                         f"axis_size to say how many times to map")
    return distinct.pop()


def _place_out_axis(name, val, bd, oa, size, path):
    if oa is None:
        if bd is not None:
            raise ValueError(f"vmap({name}): out_axes is None for output "
                             f"{''.join(f'[{k!r}]' for k in path) or '#0'}, but it depends on the "
                             f"mapped axis; give it an out axis")
        return val
    nd_out = len(shape_of(val)) + (bd is None)
    if not -nd_out <= oa < nd_out:
        label = "".join(f"[{k!r}]" for k in path) or "#0"
        raise ValueError(f"vmap({name}): out_axes={oa} is out of range for output {label}, which "
                         f"has {nd_out} dimension(s) with the mapped axis; use an axis in "
                         f"[{-nd_out}, {nd_out - 1}]")
    oa %= nd_out
    if bd is None:
        val = fnp.broadcast_to(val, (size,) + shape_of(val))
        bd = 0
    return fnp.moveaxis(val, bd, oa) if bd != oa else val


# --------------------------------------------------------------------------------------------
# Jacobians
# --------------------------------------------------------------------------------------------

def _std_basis(leaves):
    """Identity of size N = total size, split per leaf: leaf i gets shape (N, *leaf_shape)."""
    sizes = [math.prod(shape_of(x)) for x in leaves]
    n = sum(sizes)
    dt = np.result_type(*[dtype_of(x) for x in leaves]) if leaves else np.float64
    eye = np.eye(n, dtype=dt)
    out, start = [], 0
    for x, k in zip(leaves, sizes):
        piece = eye[:, start:start + k]
        if piece.dtype.kind == "c" and dtype_of(x).kind != "c":
            piece = piece.real            # a real leaf beside complex ones: real directions
        out.append(piece.reshape((n,) + shape_of(x)))
        start += k
    return out, sizes


def _jac_fun(transform, f, argnums, has_aux, make_rows, complex_ok=True, holomorphic=False):
    @functools.wraps(f)
    def jacfun(*args, **kwargs):
        nums = _argnums_tuple(transform, f, argnums, len(args))
        dyn = tuple(args[i] for i in nums)
        f_dyn = _partial_args(transform, f, args, kwargs, nums, has_aux)
        in_leaves, in_tree = tree.flatten(dyn)
        _check_argnum_inputs(transform, f, dyn, nums, complex_ok, holomorphic)
        def per_input(pieces):  # one output's Jacobian pieces -> the inputs' structure
            by_arg = tree.unflatten(in_tree, pieces)
            return by_arg[0] if isinstance(argnums, int) else tuple(by_arg)

        jac, aux = make_rows(f_dyn, dyn, in_leaves, in_tree, per_input)
        return (jac, aux) if has_aux else jac
    return jacfun


def _check_jac_outputs(transform, f, leaves, holomorphic):
    """jacrev needs real outputs, and holomorphic=True complex ones (JAX's output checks)."""
    for o in leaves:
        kind = dtype_of(o).kind
        if holomorphic and kind != "c":
            raise TypeError(f"{transform}({_fname(f)}, holomorphic=True): outputs must be complex "
                            f"(as JAX), got {_aval_str(o)}; drop holomorphic=True for real outputs")
        if not holomorphic and transform == "jacrev" and kind != "f":
            hint = ("pass holomorphic=True for a holomorphic function, or use vjp for a "
                    "non-holomorphic one (as JAX)" if kind == "c" else
                    "integer and boolean outputs have no derivative")
            raise TypeError(f"jacrev({_fname(f)}): outputs must be real float, got "
                            f"{_aval_str(o)}; {hint}")


def jacfwd(f, argnums=0, has_aux=False, holomorphic=False):
    """The Jacobian by forward mode: one JVP per input element, vectorised with ``vmap``.

    For ``f: R^n -> R^m`` the result has shape ``(m, n)`` (output axes first, then input axes);
    for pytrees, a tree of the output's structure whose leaves are trees of the inputs'.
    As in JAX, inputs must be real unless ``holomorphic=True``, which needs complex inputs
    and outputs and gives the complex Jacobian ``df_i/dz_j`` (outputs may be complex for real
    inputs: the columns are then ``df/dx_j``).
    """
    def rows(f_dyn, dyn, in_leaves, in_tree, per_input):
        basis, sizes = _std_basis(in_leaves)

        def push(*t_leaves):   # aux comes from the primal pass, so it is not mapped
            out = jvp(f_dyn, dyn, tree.unflatten(in_tree, t_leaves), has_aux=has_aux)
            return (out[1], out[2]) if has_aux else (out[1], None)

        tangents, aux = vmap(push, in_axes=0, out_axes=(-1, None))(*basis)
        _check_jac_outputs("jacfwd", f, tree.leaves(tangents), holomorphic)

        def per_output(t):
            out_shape = shape_of(t)[:-1]
            pieces, start = [], 0
            for x, k in zip(in_leaves, sizes):
                pieces.append(fnp.reshape(t[..., start:start + k], out_shape + shape_of(x)))
                start += k
            return per_input(pieces)
        return tree.map(per_output, tangents), aux
    return _jac_fun("jacfwd", f, argnums, has_aux, rows, complex_ok=False, holomorphic=holomorphic)


def jacrev(f, argnums=0, has_aux=False, holomorphic=False):
    """The Jacobian by reverse mode: one VJP per output element, vectorised with ``vmap``.

    Same layout as :func:`jacfwd`; cheaper when outputs are fewer than inputs. As in JAX,
    outputs must be real unless ``holomorphic=True`` (complex inputs and outputs); a real
    output of complex inputs gives rows ``df/dx - i df/dy``, the convention of :func:`grad`.
    """
    def rows(f_dyn, dyn, in_leaves, in_tree, per_input):
        if has_aux:
            out, pullback, aux = vjp(f_dyn, *dyn, has_aux=True)
        else:
            (out, pullback), aux = vjp(f_dyn, *dyn), None
        out_leaves, out_tree = tree.flatten(out)
        _check_jac_outputs("jacrev", f, out_leaves, holomorphic)
        basis, sizes = _std_basis(out_leaves)
        cts = vmap(lambda *b: pullback(tree.unflatten(out_tree, b)))(*basis)
        ct_leaves = tree.leaves(cts)   # each (N_out, *in_shape)
        per_out, start = [], 0
        for o, k in zip(out_leaves, sizes):
            pieces = [fnp.reshape(c[start:start + k], shape_of(o) + shape_of(x))
                      for c, x in zip(ct_leaves, in_leaves)]
            per_out.append(per_input(pieces))
            start += k
        return tree.unflatten(out_tree, per_out), aux
    return _jac_fun("jacrev", f, argnums, has_aux, rows, holomorphic=holomorphic)


def hessian(f, argnums=0, has_aux=False, holomorphic=False):
    """Second derivatives: ``jacfwd(jacrev(f))`` (forward-over-reverse, as in JAX)."""
    return jacfwd(jacrev(f, argnums, has_aux, holomorphic), argnums, has_aux, holomorphic)


# --------------------------------------------------------------------------------------------
# Staging and stop_gradient
# --------------------------------------------------------------------------------------------

def make_jaxpr(f):
    """``make_jaxpr(f)(*args)`` returns the program ``f`` runs on arguments of those shapes.

    >>> print(fgrad.make_jaxpr(fgrad.grad(lambda x: fnp.sum(fnp.sin(x))))(np.ones(3)))
    """
    @functools.wraps(f)
    def staged(*args, **kwargs):
        leaves, in_tree = tree.flatten(args)
        avals = [ShapedArray(shape_of(x), dtype_of(x)) for x in leaves]
        jaxpr, _ = _stage(lambda *a: f(*a, **kwargs), avals, in_tree)
        return jaxpr
    return staged


stop_gradient_p = piecewise_constant("stop_gradient", lambda x: x)


def stop_gradient(x):
    """``x``, treated as a constant by every transform that differentiates (a pytree is fine)."""
    return tree.map(lambda leaf: stop_gradient_p.bind(leaf) if dtype_of(leaf).kind in "fc" else leaf, x)

