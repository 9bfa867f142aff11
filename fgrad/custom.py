"""User-defined derivative rules: ``custom_vjp``, ``custom_jvp``, and ``checkpoint``.

Each decorated function is applied through a primitive whose parameters carry the user's
functions, so every transform meets it like any other primitive:

* ``custom_vjp_call``: evaluation runs ``fun``; the reverse trace runs ``fwd`` (saving its
  residuals) and calls ``bwd(residuals, ct)`` in the backward pass; vmap re-binds the primitive
  with vmapped ``fun``/``fwd``/``bwd``, so ``grad(vmap(f))`` still uses the rule. Forward mode
  differentiates ``fun`` itself (JAX raises an error here instead; we document the choice: the
  custom rule is a reverse-mode rule and ``fun`` is a correct, if slower, definition).
* ``custom_jvp_call``: the JVP trace calls the user's rule; reverse mode transposes it by taking
  the VJP of the tangent map ``t -> jvp_rule(primals, t)[1]``, which is linear in ``t``; vmap
  re-binds with vmapped functions.
* ``checkpoint(f)`` is a ``custom_vjp`` whose forward pass saves only the inputs and whose
  backward pass recomputes ``f`` under ``vjp``: memory for the intermediates is traded for one
  more forward pass.

What the user's rules return is checked, as JAX does, since a wrong structure or shape would
otherwise be zipped, broadcast or dropped into a silently wrong derivative: ``bwd`` returns one
cotangent per differentiable argument with that argument's tree structure (``None`` stands for
a zero cotangent of a leaf or a whole subtree), each leaf of its argument's shape and a real
float dtype; a ``custom_jvp`` rule returns ``(primal_out, tangent_out)`` with tangents of the
output's structure and shapes. Errors name the rule, the argument path and both shapes. Other
float precisions and Python scalars are converted (JAX raises for the former; fgrad's NumPy
promotion makes float64 results of correct float32 rules common, and the conversion loses
nothing a float32 derivative keeps).
"""
from __future__ import annotations

import functools

import numpy as np
import optree

from . import tree

from .core import Primitive, Trace, Tracer, dtype_of, instantiate_zeros, is_float, shape_of
from .staging import ShapedArray

__all__ = ["custom_vjp", "custom_jvp", "checkpoint", "remat", "checkpoint_policies"]


def _only_float_operands(fun, values):
    """``(fun_f, positions)``: ``fun`` as a function of the float entries of ``values`` alone
    (``positions`` says which), the others (integer labels, indices, masks) held fixed. The
    inner ``jvp``/``vjp`` calls of the rules below may differentiate only float values."""
    positions = [i for i, v in enumerate(values) if is_float(v)]

    def fun_f(*float_values):
        full = list(values)
        for i, v in zip(positions, float_values):
            full[i] = v
        return fun(*full)
    return fun_f, positions


def _fname(f):
    return getattr(f, "__name__", None) or type(f).__name__


def _describe(x):
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of length {len(x)}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"one array ({_aval(x)})"
    return f"a {type(x).__name__}"


def _nondiff(rule, nondiff_argnums, args):
    """``{position: argument}`` of the ``nondiff_argnums`` (negative ones count from the end),
    in the order given, or a clear error for positions the call does not have."""
    nondiff = {}
    for i in nondiff_argnums:
        if isinstance(i, bool) or not isinstance(i, int) or not -len(args) <= i < len(args):
            raise TypeError(f"{rule}: nondiff_argnums={tuple(nondiff_argnums)!r} but the function "
                            f"was called with {len(args)} positional argument(s)")
        if i % len(args) in nondiff:
            raise ValueError(f"{rule}: nondiff_argnums={tuple(nondiff_argnums)!r} names argument "
                             f"{i % len(args)} twice")
        nondiff[i % len(args)] = args[i]
    return nondiff


def _flat_fun(fun, in_tree, out_store):
    """``fun`` on flat leaves, returning flat leaves; records the output structure."""
    def flat(*leaves):
        out = fun(*tree.unflatten(in_tree, leaves))
        out_leaves, out_tree = tree.flatten(out)
        out_store["tree"] = out_tree
        return out_leaves
    return flat


# --------------------------------------------------------------------------------------------
# Checking what user rules return (as JAX does): structure, shapes and dtypes, by path
# --------------------------------------------------------------------------------------------

def _is_leaf(x):
    return optree.tree_is_leaf(x, none_is_leaf=False, namespace=tree.NAMESPACE)


def _path(head, keys):
    return head + "".join(f"[{k!r}]" for k in keys)


def _aval(x):
    return f"{dtype_of(x).name}{list(shape_of(x))}"


def _match_tree(rule, what, head, like, got, out, keys=()):
    """Append to ``out`` one entry of ``got`` per leaf of ``like`` (``None`` where ``got`` has
    ``None``, which stands for a zero derivative of that whole subtree), or raise naming the
    path where the two trees differ."""
    if got is None:
        out.extend([None] * tree.num_leaves(like))
        return
    where = _path(head, keys)
    if _is_leaf(like):
        if not _is_leaf(got):
            raise TypeError(f"{rule}: {what} must have the structure of {head}; at {where} it has "
                            f"a {type(got).__name__} where {head} has one array ({_aval(like)})")
        out.append(got)
        return
    if _is_leaf(got) or type(got) is not type(like):
        raise TypeError(f"{rule}: {what} must have the structure of {head}; at {where} it has "
                        f"a {type(got).__name__} where {head} has a {type(like).__name__}")
    like_one = optree.tree_flatten_one_level(like, none_is_leaf=False, namespace=tree.NAMESPACE)
    got_one = optree.tree_flatten_one_level(got, none_is_leaf=False, namespace=tree.NAMESPACE)
    if list(like_one.entries) != list(got_one.entries):
        missing = [k for k in like_one.entries if k not in got_one.entries]
        extra = [k for k in got_one.entries if k not in like_one.entries]
        detail = "; ".join(s for s in (
            f"missing {', '.join(map(repr, missing))}" if missing else "",
            f"unexpected {', '.join(map(repr, extra))}" if extra else "") if s) or "in another order"
        raise TypeError(f"{rule}: {what} must have the structure of {head}; at {where} its "
                        f"entries are {list(got_one.entries)} but {head} has "
                        f"{list(like_one.entries)} ({detail}). Give None for an entry with no "
                        f"derivative.")
    for key, like_child, got_child in zip(like_one.entries, like_one.children, got_one.children):
        _match_tree(rule, what, head, like_child, got_child, out, keys + (key,))


def _checked_leaf(rule, what, where, like, got):
    """``got`` as the derivative of a float ``like``: same shape, a real float dtype (Python
    scalars and other float precisions are converted; fgrad's rules convert precisions too)."""
    from . import numpy as fnp
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        got = np.asarray(got, dtype_of(like))
    if not hasattr(got, "shape") or not hasattr(got, "dtype"):
        raise TypeError(f"{rule}: {what} at {where} is a {type(got).__name__}, not an array")
    if shape_of(got) != shape_of(like):
        raise ValueError(f"{rule}: {what} at {where} has shape {shape_of(got)} ({_aval(got)}) but "
                         f"it must have the shape of the value it belongs to, {shape_of(like)} "
                         f"({_aval(like)}); derivatives are never broadcast")
    if dtype_of(got).kind != ("c" if dtype_of(like).kind == "c" else "f"):
        kind = "complex values are complex" if dtype_of(like).kind == "c" else \
            "real float values are real floats"
        raise TypeError(f"{rule}: {what} at {where} has dtype {dtype_of(got).name} for a value of "
                        f"dtype {dtype_of(like).name}; derivatives of {kind} of the same dtype")
    if dtype_of(got) != dtype_of(like):
        got = fnp.astype(got, dtype_of(like))
    return got


# --------------------------------------------------------------------------------------------
# custom_vjp
# --------------------------------------------------------------------------------------------

custom_vjp_call_p = Primitive("custom_vjp_call", lambda *args, fun, fwd, bwd: fun(*args),
                              multiple_results=True)
custom_vjp_call_p.inline_when_staged = True


def _custom_vjp_fwd(primals, *, fun, fwd, bwd):
    if _opaque_under_jit(primals, fwd):
        return _opaque_vjp_fwd(primals, fwd, bwd)
    outs, residuals = fwd(*primals)

    def backward(cts):
        return bwd(residuals, cts)
    return outs, backward


# --------------------------------------------------------------------------------------------
# custom_vjp under jit: the user's fwd and bwd as two opaque calls of the compiled program
# --------------------------------------------------------------------------------------------
#
# Under jit(grad(f)) the reverse trace runs the rule's fwd on the jit's staging tracers. Traced
# through, fwd and bwd would become ordinary equations -- of whatever fwd computes on tracers,
# which for a kernel with a NumPy fast path (fnn.models' fused LayerNorm, attention, ...) is
# its slower fgrad.numpy formula. Instead the program records one equation that calls fwd and
# one that calls bwd, on the NumPy values of the replay: the rule runs exactly as it does
# eagerly. (Only where every operand is the jit's own tracer and fwd closes over no tracer;
# under any other transform the rule is traced through as before.)

class _ResidualTree:
    """Where the fwd call leaves its residuals' tree structure for the bwd call to rebuild."""

    __slots__ = ("tree", "n_out")

    def __repr__(self):
        return "residuals"


def _opaque_under_jit(primals, fwd):
    traces = {x._trace for x in primals if isinstance(x, Tracer)}
    return (len(traces) == 1 and getattr(next(iter(traces)), "opaque_calls", False)
            and not getattr(fwd, "closes_over_tracers", True))


def _fwd_call_impl(*primals, fwd, residuals):
    outs, res = fwd(*primals)
    res_leaves, residuals.tree = tree.flatten(res)
    residuals.n_out = len(outs)
    return list(outs) + list(res_leaves)


def _bwd_call_impl(*operands, bwd, residuals, n_res, cts_avals):
    res = tree.unflatten(residuals.tree, operands[:n_res])
    return list(bwd(res, list(operands[n_res:])))


def _opaque_vjp_fwd(primals, fwd, bwd):
    residuals = _ResidualTree()
    flat = custom_vjp_fwd_call_p.bind(*primals, fwd=fwd, residuals=residuals)
    outs, res_leaves = flat[:residuals.n_out], flat[residuals.n_out:]
    cotangent_avals = tuple(ShapedArray(shape_of(x), dtype_of(x)) for x in primals)

    def backward(cts):
        return custom_vjp_bwd_call_p.bind(*res_leaves, *cts, bwd=bwd, residuals=residuals,
                                          n_res=len(res_leaves), cts_avals=cotangent_avals)
    return outs, backward


def _inline_rules(prim, impl):
    """Rules that trace ``impl`` itself, for a call that meets a transform other than jit's
    staging (it never does from ``_custom_vjp_fwd``; the rules keep the primitive complete)."""
    from .api import jvp, vjp, vmap
    from .vmap import batch_size, move_to_front

    def jvp_rule(primals, tangents, **params):
        f, positions = _only_float_operands(lambda *a: impl(*a, **params), primals)
        return jvp(f, tuple(primals[i] for i in positions),
                   tuple(instantiate_zeros(tangents[i], primals[i]) for i in positions))

    def vjp_fwd(primals, **params):
        f, positions = _only_float_operands(lambda *a: impl(*a, **params), primals)
        outs, pull = vjp(f, *(primals[i] for i in positions))

        def backward(cts):
            got = dict(zip(positions, pull([instantiate_zeros(c, o) for c, o in zip(cts, outs)])))
            return [got.get(i) for i in range(len(primals))]
        return outs, backward

    def batch(vals, dims, **params):
        size = batch_size(vals, dims)
        vals = [move_to_front(v, d, size) for v, d in zip(vals, dims)]
        outs = vmap(lambda *a: impl(*a, **params))(*vals)
        return outs, [0] * len(outs)

    prim.jvp, prim.vjp_fwd, prim.vjp, prim.batch = jvp_rule, vjp_fwd, (), batch


custom_vjp_fwd_call_p = Primitive("custom_vjp_fwd_call", _fwd_call_impl, multiple_results=True)
custom_vjp_bwd_call_p = Primitive("custom_vjp_bwd_call", _bwd_call_impl, multiple_results=True)
_inline_rules(custom_vjp_fwd_call_p, _fwd_call_impl)
_inline_rules(custom_vjp_bwd_call_p, _bwd_call_impl)
# The fwd call's output shapes are learnt by running it once on zeros (the residuals are
# whatever the rule's NumPy path keeps); the bwd call returns one cotangent per primal.
custom_vjp_bwd_call_p.abstract_eval = lambda *avals, cts_avals, **params: list(cts_avals)


def _custom_vjp_jvp(primals, tangents, *, fun, fwd, bwd):
    from .api import jvp
    fun_f, positions = _only_float_operands(fun, primals)
    return jvp(fun_f, tuple(primals[i] for i in positions),
               tuple(instantiate_zeros(tangents[i], primals[i]) for i in positions))


def _custom_vjp_batch(vals, dims, *, fun, fwd, bwd):
    from .api import vmap
    from .vmap import batch_size, move_to_front
    size = batch_size(vals, dims)
    vals = [move_to_front(v, d, size) for v, d in zip(vals, dims)]
    b_fun = vmap(fun)
    b_fwd = vmap(fwd)
    b_bwd = vmap(bwd)
    outs = custom_vjp_call_p.bind(*vals, fun=b_fun, fwd=b_fwd, bwd=b_bwd)
    return outs, [0] * len(outs)


custom_vjp_call_p.vjp_fwd = _custom_vjp_fwd
custom_vjp_call_p.vjp = ()   # the rule is vjp_fwd's backward; present so the registry is complete
custom_vjp_call_p.jvp = _custom_vjp_jvp
custom_vjp_call_p.batch = _custom_vjp_batch


class custom_vjp:
    """A function with a hand-written reverse-mode rule (``jax.custom_vjp``).

    >>> @fgrad.custom_vjp
    ... def clip_gradient(x): return x
    >>> def fwd(x): return x, None
    >>> def bwd(res, g): return (fnp.clip(g, -1.0, 1.0),)
    >>> clip_gradient.defvjp(fwd, bwd)

    ``fwd(*args) -> (out, residuals)``; ``bwd(residuals, out_ct) -> tuple`` with one cotangent
    per positional argument (``None`` for no cotangent). ``nondiff_argnums`` names arguments
    that are passed to ``bwd`` first and receive no cotangent (as in JAX).
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        if self.fwd is None:
            raise TypeError(f"custom_vjp function {self.__name__} has no rule: call "
                            f"{self.__name__}.defvjp(fwd, bwd) first")
        nondiff = _nondiff(f"custom_vjp {self.__name__}", self.nondiff_argnums, args)
        diff_args = tuple(a for i, a in enumerate(args) if i not in nondiff)

        def full(dyn):
            it = iter(dyn)
            return [nondiff[i] if i in nondiff else next(it) for i in range(len(args))]

        leaves, in_tree = tree.flatten(diff_args)
        out_store = {}
        fun = _flat_fun(lambda *dyn: self.fun(*full(dyn)), in_tree, out_store)

        rule = (f"custom_vjp {self.__name__} (bwd={_fname(self.bwd)})")
        diff_positions = [i for i in range(len(args)) if i not in nondiff]

        def fwd(*leaves_):
            result = self.fwd(*full(tree.unflatten(in_tree, leaves_)))
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise TypeError(f"custom_vjp {self.__name__} (fwd={_fname(self.fwd)}): fwd must "
                                f"return a pair (output, residuals), got {_describe(result)}")
            out, res = result
            out_leaves, out_tree = tree.flatten(out)
            out_store["tree"] = out_tree
            return out_leaves, res

        def bwd(res, cts):
            ct_tree = tree.unflatten(out_store["tree"], cts)
            nd = list(nondiff.values())
            in_cts = self.bwd(*nd, res, ct_tree)
            if not isinstance(in_cts, (tuple, list)) or len(in_cts) != len(diff_args):
                raise TypeError(f"{rule}: bwd must return a tuple with one cotangent per "
                                f"differentiable argument ({len(diff_args)}), got "
                                f"{_describe(in_cts)}")
            flat = []
            for position, a, c in zip(diff_positions, diff_args, in_cts):
                head = f"argument {position}"
                paths, a_leaves, _ = tree.flatten_split_paths(a)
                c_leaves = []
                _match_tree(rule, "the cotangent bwd returned", head, a, c, c_leaves)
                for path, x, cx in zip(paths, a_leaves, c_leaves):
                    if cx is None or not is_float(x):
                        # None means "no cotangent" (and integer arguments have none); an array
                        # of zeros (not the symbolic zero) keeps the list a pytree of arrays,
                        # which vmap needs when bwd is batched.
                        flat.append(np.zeros(shape_of(x), dtype_of(x)))
                        continue
                    flat.append(_checked_leaf(rule, "the cotangent bwd returned",
                                              _path(head, path), x, cx))
            return flat
        bwd.rule_name, bwd.user_rule = rule, self.bwd   # fgrad.debug_nans names the rule by them
        # jit may call fwd/bwd later on the replay's arrays, unless they hold traced values
        fwd.closes_over_tracers = any(isinstance(v, Tracer) for v in tree.leaves(list(nondiff.values())))

        outs = custom_vjp_call_p.bind(*leaves, fun=fun, fwd=fwd, bwd=bwd)
        return tree.unflatten(out_store["tree"], outs)


# --------------------------------------------------------------------------------------------
# custom_jvp
# --------------------------------------------------------------------------------------------

custom_jvp_call_p = Primitive("custom_jvp_call", lambda *args, fun, jvp: fun(*args),
                              multiple_results=True)
custom_jvp_call_p.inline_when_staged = True


def _custom_jvp_jvp(primals, tangents, *, fun, jvp):
    tangents = [instantiate_zeros(t, p) for t, p in zip(tangents, primals)]
    return jvp(primals, tangents)


def _custom_jvp_vjp_fwd(primals, *, fun, jvp):
    from .api import vjp
    from . import numpy as fnp
    outs = fun(*primals)

    def backward(cts):
        # t -> jvp(primals, t)[1] is linear, so its VJP at any t is the transpose we need;
        # integer operands keep a zero tangent and get no cotangent
        zeros = [fnp.zeros_like(p) for p in primals]
        tangent_map, positions = _only_float_operands(lambda *t: jvp(primals, list(t))[1], zeros)
        _, pullback = vjp(tangent_map, *(zeros[i] for i in positions))
        cts_f = dict(zip(positions, pullback(list(cts))))
        return [cts_f.get(i, zeros[i]) for i in range(len(primals))]
    return outs, backward


def _custom_jvp_batch(vals, dims, *, fun, jvp):
    from .api import vmap
    from .vmap import batch_size, move_to_front
    size = batch_size(vals, dims)
    vals = [move_to_front(v, d, size) for v, d in zip(vals, dims)]
    b_jvp = vmap(lambda p, t: jvp(p, t))
    outs = custom_jvp_call_p.bind(*vals, fun=vmap(fun), jvp=lambda p, t: b_jvp(list(p), list(t)))
    return outs, [0] * len(outs)


custom_jvp_call_p.jvp = _custom_jvp_jvp
custom_jvp_call_p.vjp_fwd = _custom_jvp_vjp_fwd
custom_jvp_call_p.vjp = ()
custom_jvp_call_p.batch = _custom_jvp_batch


class custom_jvp:
    """A function with a hand-written forward-mode rule (``jax.custom_jvp``).

    >>> @fgrad.custom_jvp
    ... def log1pexp(x): return fnp.log1p(fnp.exp(x))
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (x_dot,) = primals, tangents
    ...     return log1pexp(x), x_dot * fnp.logistic(x)

    Reverse mode (``grad``) uses the same rule, transposed automatically.
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp_rule = None

    def defjvp(self, jvp_rule):
        self.jvp_rule = jvp_rule
        return jvp_rule

    def defjvps(self, *jvps):
        """One rule per positional argument, as ``jax.custom_jvp.defjvps``:
        ``jvps[i](x_dot_i, primal_out, *primals) -> tangent contribution`` (``None`` for an
        argument with no derivative); the output tangent is the sum of the contributions.

        >>> @fgrad.custom_jvp
        ... def f(x, y): return fnp.sin(x) * y
        >>> f.defjvps(lambda x_dot, ans, x, y: fnp.cos(x) * x_dot * y,
        ...           lambda y_dot, ans, x, y: fnp.sin(x) * y_dot)
        """
        if self.nondiff_argnums:
            raise TypeError(f"custom_jvp {self.__name__}: defjvps cannot be used with "
                            f"nondiff_argnums; write one rule with defjvp")

        def jvp_rule(primals, tangents):
            if len(jvps) != len(primals):
                raise TypeError(f"custom_jvp {self.__name__}: defjvps got {len(jvps)} rule(s) "
                                f"for a call with {len(primals)} argument(s); give one per "
                                f"argument (None for no derivative)")
            out = self(*primals)
            contributions = [rule(t, out, *primals) for rule, t in zip(jvps, tangents)
                             if rule is not None]
            if not contributions:
                return out, tree.map(lambda o: np.zeros(shape_of(o), dtype_of(o)), out)
            total = contributions[0]
            for c in contributions[1:]:
                total = tree.map(lambda a, b: a + b, total, c)
            return out, total
        jvp_rule.__name__ = "defjvps"
        self.defjvp(jvp_rule)

    def __call__(self, *args):
        if self.jvp_rule is None:
            raise TypeError(f"custom_jvp function {self.__name__} has no rule: decorate one with "
                            f"@{self.__name__}.defjvp")
        nondiff = _nondiff(f"custom_jvp {self.__name__}", self.nondiff_argnums, args)
        diff_args = tuple(a for i, a in enumerate(args) if i not in nondiff)

        def full(dyn):
            it = iter(dyn)
            return [nondiff[i] if i in nondiff else next(it) for i in range(len(args))]

        leaves, in_tree = tree.flatten(diff_args)
        out_store = {}
        fun = _flat_fun(lambda *dyn: self.fun(*full(dyn)), in_tree, out_store)

        rule = f"custom_jvp {self.__name__} (jvp rule {_fname(self.jvp_rule)})"

        def jvp(primal_leaves, tangent_leaves):
            primals = tree.unflatten(in_tree, primal_leaves)
            tangents = tree.unflatten(in_tree, tangent_leaves)
            nd = list(nondiff.values())
            result = self.jvp_rule(*nd, tuple(primals), tuple(tangents)) if nd else \
                self.jvp_rule(tuple(primals), tuple(tangents))
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise TypeError(f"{rule}: the rule must return a pair (primal_out, tangent_out), "
                                f"got {_describe(result)}")
            out, t_out = result
            out_paths, out_leaves, out_tree = tree.flatten_split_paths(out)
            t_leaves = []
            _match_tree(rule, "the tangent it returned", "the output", out, t_out, t_leaves)
            out_store["tree"] = out_tree
            checked = []
            for path, o, t in zip(out_paths, out_leaves, t_leaves):
                if t is None or not is_float(o):
                    checked.append(np.zeros(shape_of(o), dtype_of(o)))   # no tangent
                else:
                    checked.append(_checked_leaf(rule, "the tangent it returned",
                                                 _path("the output", path), o, t))
            return out_leaves, checked
        jvp.rule_name, jvp.user_rule = rule, self.jvp_rule   # for fgrad.debug_nans

        outs = custom_jvp_call_p.bind(*leaves, fun=fun, jvp=jvp)
        return tree.unflatten(out_store["tree"], outs)


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------

class _Policies:
    """``fgrad.checkpoint_policies``: which intermediate results a checkpointed function keeps.

    fgrad's reverse mode is a tape: without ``checkpoint`` the forward pass keeps every
    intermediate that a VJP rule needs until the backward pass (that is
    ``everything_saveable``). ``checkpoint(f, policy=p)`` keeps only ``f``'s inputs plus the
    outputs of the primitives for which ``p(prim, *operands, **params)`` is true, and the
    backward pass runs ``f`` again under ``vjp`` with those saved results put in place of
    recomputing them (the cheap operations between them are recomputed):

    * ``nothing_saveable`` (the default): keep only the inputs, recompute everything;
    * ``everything_saveable``: keep everything, recompute nothing (``checkpoint`` is then a no-op);
    * ``dots_saveable`` (alias ``checkpoint_dots``): keep the results of matrix products
      (``dot_general``: matmul, einsum, tensordot, dense layers) and convolutions, recompute the
      elementwise work between them: the usual choice for Transformer blocks, where products
      cost the time and elementwise results cost the memory;
    * ``dots_with_no_batch_dims_saveable`` (alias ``checkpoint_dots_with_no_batch_dims``): keep
      only products with no batch dimensions (``x @ W`` for weights ``W``, not the batched
      ``q @ k^T`` of attention, whose results are ``T^2`` per head).

    A policy is any ``policy(prim, *operands, **params) -> bool``, as in JAX.
    """

    @staticmethod
    def everything_saveable(prim, *args, **params):
        return True

    @staticmethod
    def nothing_saveable(prim, *args, **params):
        return False

    @staticmethod
    def dots_saveable(prim, *args, **params):
        return prim.name in ("dot_general", "conv_windows")

    @staticmethod
    def dots_with_no_batch_dims_saveable(prim, *args, **params):
        if prim.name != "dot_general":
            return False
        (_, _), (lhs_batch, rhs_batch) = params["dimension_numbers"]
        return not lhs_batch and not rhs_batch

    checkpoint_dots = dots_saveable
    checkpoint_dots_with_no_batch_dims = dots_with_no_batch_dims_saveable

    def __repr__(self):
        return "fgrad.checkpoint_policies"


checkpoint_policies = _Policies()


class _SavingTracer(Tracer):
    """A value inside a checkpointed function while its policy records or replays results."""

    __slots__ = ("val",)

    def __init__(self, trace, val):
        self._trace = trace
        self.val = val

    @property
    def shape(self):
        return shape_of(self.val)

    @property
    def dtype(self):
        return dtype_of(self.val)

    def concrete_value(self):
        v = self.val
        return v.concrete_value() if isinstance(v, Tracer) else v


class _SavingTrace(Trace):
    """Records (``saved`` is a list to fill) or replays (``replay`` is a list to consume, in
    order) the results of the primitives the policy saves; every other primitive is bound on
    the unwrapped values. Replaying stops after the forward pass (``stop_replay``), so that the
    backward pass's own products are computed."""

    transform_name = "checkpoint"

    def __init__(self, level, policy, saved, replay):
        super().__init__(level)
        self.policy, self.saved, self.replay = policy, saved, replay

    def process_primitive(self, prim, args, params):
        vals = [x.val if isinstance(x, _SavingTracer) and x._trace is self else x for x in args]
        if self.replay is not None and self.replay and self.policy(prim, *vals, **params):
            out = self.replay.pop(0)
        else:
            out = prim.bind(*vals, **params)
            if self.saved is not None and self.policy(prim, *vals, **params):
                self.saved.append(out)
        if prim.multiple_results:
            return [_SavingTracer(self, o) for o in out]
        return _SavingTracer(self, out)


def _unwrap(trace, tree_):
    return tree.map(lambda x: x.val if isinstance(x, _SavingTracer) and x._trace is trace else x,
                    tree_)


def checkpoint(f=None, *, policy=None, prevent_cse=True, static_argnums=()):
    """``f`` that stores only its inputs (and what ``policy`` saves) for the backward pass and
    recomputes the rest (``jax.checkpoint`` / ``jax.remat``).

    Use it on blocks whose intermediates are large (a Transformer layer): ``grad`` then holds
    one block's activations at a time, at the cost of a second forward pass through each.
    ``policy`` is one of :data:`checkpoint_policies` (see there what each keeps);
    ``static_argnums`` are arguments passed through as Python values (not differentiated,
    never traced); ``prevent_cse`` is accepted for JAX's signature (fgrad's staged programs
    never merge the recomputation with the forward pass).
    """
    if f is None:
        return functools.partial(checkpoint, policy=policy, prevent_cse=prevent_cse,
                                 static_argnums=static_argnums)
    if policy is checkpoint_policies.everything_saveable:
        return f                          # the tape keeps everything: nothing to recompute
    static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    if static_argnums:
        @functools.wraps(f)
        def with_statics(*args):
            statics = {i % len(args): args[i] for i in static_argnums}
            dyn = [a for i, a in enumerate(args) if i not in statics]

            def g(*dyn_args):
                it = iter(dyn_args)
                return f(*[statics[i] if i in statics else next(it) for i in range(len(args))])
            return checkpoint(g, policy=policy)(*dyn)
        return with_statics
    if policy is None or policy is checkpoint_policies.nothing_saveable:
        return _checkpoint_inputs_only(f)
    return _checkpoint_with_policy(f, policy)


def _checkpoint_inputs_only(f):
    """checkpoint(f) with nothing_saveable: the residuals are the inputs alone."""
    from .api import vjp

    wrapped = custom_vjp(f)

    def fwd(*args):
        return f(*args), args

    def bwd(args, ct):
        # recompute f under vjp, differentiating its float leaves (integer labels or indices
        # are held fixed and get a zero cotangent)
        leaves, treedef = tree.flatten(args)
        f_leaves, positions = _only_float_operands(
            lambda *ls: f(*tree.unflatten(treedef, ls)), leaves)
        _, pullback = vjp(f_leaves, *(leaves[i] for i in positions))
        cts = dict(zip(positions, pullback(ct)))
        return tuple(tree.unflatten(treedef, [
            cts[i] if i in cts else np.zeros(shape_of(x), dtype_of(x)) for i, x in enumerate(leaves)]))

    wrapped.defvjp(fwd, bwd)
    return wrapped


def _checkpoint_with_policy(f, policy):
    """checkpoint(f) keeping the inputs and the results ``policy`` saves (see _SavingTrace).

    The forward pass runs ``f`` under ``vjp`` exactly as the backward pass will (and drops the
    tape), so both see the same primitives in the same order, nested custom rules included:
    the i-th saved result is replayed for the i-th saveable primitive.
    """
    from .core import new_trace

    wrapped = custom_vjp(f)

    def fwd(*args):
        saved = []
        leaves, treedef = tree.flatten(args)
        with new_trace(_SavingTrace, policy, saved, None) as trace:
            out, _, _ = _run_for_policy(f, leaves, treedef, trace)
            out = _unwrap(trace, out)
        return out, (args, saved)

    def bwd(res, ct):
        args, saved = res
        leaves, treedef = tree.flatten(args)
        with new_trace(_SavingTrace, policy, None, list(saved)) as trace:
            _, pullback, positions = _run_for_policy(f, leaves, treedef, trace)
            trace.replay = None           # the backward pass computes its own products
            cts = dict(zip(positions, _unwrap(trace, list(pullback(ct))))) if positions else {}
        return tuple(tree.unflatten(treedef, [
            cts[i] if i in cts else np.zeros(shape_of(x), dtype_of(x)) for i, x in enumerate(leaves)]))

    wrapped.defvjp(fwd, bwd)
    return wrapped


def _run_for_policy(f, leaves, treedef, trace):
    """``(out, pullback, positions)``: ``f`` on ``leaves`` seen by ``trace``, under ``vjp`` in
    its float leaves (``pullback`` is None when there are none)."""
    from .api import vjp
    wrapped_leaves = [_SavingTracer(trace, x) for x in leaves]
    f_leaves, positions = _only_float_operands(
        lambda *ls: f(*tree.unflatten(treedef, ls)), wrapped_leaves)
    if not positions:
        return f_leaves(), None, positions
    out, pullback = vjp(f_leaves, *(wrapped_leaves[i] for i in positions))
    return out, pullback, positions


remat = checkpoint
