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
"""
from __future__ import annotations

import functools

from . import tree
import numpy as np

from .core import Primitive, dtype_of, instantiate_zeros, is_float, shape_of

__all__ = ["custom_vjp", "custom_jvp", "checkpoint", "remat"]


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


def _flat_fun(fun, in_tree, out_store):
    """``fun`` on flat leaves, returning flat leaves; records the output structure."""
    def flat(*leaves):
        out = fun(*tree.unflatten(in_tree, leaves))
        out_leaves, out_tree = tree.flatten(out)
        out_store["tree"] = out_tree
        return out_leaves
    return flat


# --------------------------------------------------------------------------------------------
# custom_vjp
# --------------------------------------------------------------------------------------------

custom_vjp_call_p = Primitive("custom_vjp_call", lambda *args, fun, fwd, bwd: fun(*args),
                              multiple_results=True)
custom_vjp_call_p.inline_when_staged = True


def _custom_vjp_fwd(primals, *, fun, fwd, bwd):
    outs, residuals = fwd(*primals)

    def backward(cts):
        return bwd(residuals, cts)
    return outs, backward


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
        nondiff = {i: args[i] for i in self.nondiff_argnums}
        diff_args = tuple(a for i, a in enumerate(args) if i not in nondiff)

        def full(dyn):
            it = iter(dyn)
            return [nondiff[i] if i in nondiff else next(it) for i in range(len(args))]

        leaves, in_tree = tree.flatten(diff_args)
        out_store = {}
        fun = _flat_fun(lambda *dyn: self.fun(*full(dyn)), in_tree, out_store)

        def fwd(*leaves_):
            out, res = self.fwd(*full(tree.unflatten(in_tree, leaves_)))
            out_leaves, out_tree = tree.flatten(out)
            out_store["tree"] = out_tree
            return out_leaves, res

        def bwd(res, cts):
            ct_tree = tree.unflatten(out_store["tree"], cts)
            nd = [nondiff[i] for i in self.nondiff_argnums]
            in_cts = self.bwd(*nd, res, ct_tree)
            if not isinstance(in_cts, (tuple, list)) or len(in_cts) != len(diff_args):
                raise TypeError(f"custom_vjp {self.__name__}: bwd must return a tuple with one "
                                f"cotangent per differentiable argument ({len(diff_args)}), got "
                                f"{type(in_cts).__name__}")
            flat = []
            for a, c in zip(diff_args, in_cts):
                a_leaves = tree.leaves(a)
                c_leaves = [None] * len(a_leaves) if c is None else tree.leaves(c)
                for x, cx in zip(a_leaves, c_leaves):
                    if cx is not None and shape_of(cx) != shape_of(x):
                        raise ValueError(f"custom_vjp {self.__name__}: bwd returned a cotangent "
                                         f"of shape {shape_of(cx)} for an argument of shape "
                                         f"{shape_of(x)}")
                    # None means "no cotangent"; an array of zeros (not the symbolic zero) keeps
                    # the list a pytree of arrays, which vmap needs when bwd is batched.
                    flat.append(np.zeros(shape_of(x), dtype_of(x)) if cx is None else cx)
            return flat

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

    def __call__(self, *args):
        if self.jvp_rule is None:
            raise TypeError(f"custom_jvp function {self.__name__} has no rule: decorate one with "
                            f"@{self.__name__}.defjvp")
        nondiff = {i: args[i] for i in self.nondiff_argnums}
        diff_args = tuple(a for i, a in enumerate(args) if i not in nondiff)

        def full(dyn):
            it = iter(dyn)
            return [nondiff[i] if i in nondiff else next(it) for i in range(len(args))]

        leaves, in_tree = tree.flatten(diff_args)
        out_store = {}
        fun = _flat_fun(lambda *dyn: self.fun(*full(dyn)), in_tree, out_store)

        def jvp(primal_leaves, tangent_leaves):
            primals = tree.unflatten(in_tree, primal_leaves)
            tangents = tree.unflatten(in_tree, tangent_leaves)
            nd = [nondiff[i] for i in self.nondiff_argnums]
            out, t_out = self.jvp_rule(*nd, tuple(primals), tuple(tangents)) if nd else \
                self.jvp_rule(tuple(primals), tuple(tangents))
            out_leaves, out_tree = tree.flatten(out)
            t_leaves = tree.leaves(t_out)
            out_store["tree"] = out_tree
            return out_leaves, [t if dtype_of(t) == dtype_of(o) else t.astype(dtype_of(o))
                                for t, o in zip(t_leaves, out_leaves)]

        outs = custom_jvp_call_p.bind(*leaves, fun=fun, jvp=jvp)
        return tree.unflatten(out_store["tree"], outs)


# --------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------

def checkpoint(f):
    """``f`` that stores only its inputs for the backward pass and recomputes the rest.

    Use it on blocks whose intermediates are large (a Transformer layer): ``grad`` then holds
    one block's activations at a time, at the cost of a second forward pass through each.
    """
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


remat = checkpoint
