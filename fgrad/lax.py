"""``fgrad.lax``: structured control flow that every transform and ``jit`` can see through.

Python's ``for``, ``while`` and ``if`` run while a function is traced: under ``grad``/``vmap``
that is fine (the loop is unrolled into the trace), but a branch on a traced value cannot be
staged, a staged loop of 1,000 steps is 1,000 copies of its body, and ``vmap`` cannot give
each row its own branch or trip count. These functions take the body as a function instead,
with JAX's signatures and semantics (``jax.lax``)::

    scan(f, init, xs=None, length=None, reverse=False, unroll=1) -> (carry, ys)
    cond(pred, true_fun, false_fun, *operands)
    switch(index, branches, *operands)
    fori_loop(lower, upper, body_fun, init_val)
    while_loop(cond_fun, body_fun, init_val)
    map(f, xs)
    stop_gradient(x)                                   # fgrad.stop_gradient

Carries, ``xs``, ``ys`` and operands are pytrees of arrays (Python scalars become 0-d arrays).
Each function stages its bodies once per call into small programs (``fgrad.make_jaxpr``
style) and binds one primitive of ``fgrad/primitives/control.py`` (``scan``, ``cond``,
``while``), whose docstring explains how each transform treats it. In short: ``jvp`` and
``vmap`` work for all of them; reverse mode (``grad``, ``vjp``) works for ``scan``, ``map``,
``cond``/``switch`` and ``fori_loop`` with concrete bounds, and is a clear error for
``while_loop`` (as in JAX); under ``jit`` each becomes a Python loop (or a branch) calling the
body compiled by the same code generator, which ``jit(f).lower(...).source`` shows.

>>> import numpy as np, fgrad, fgrad.numpy as fnp
>>> from fgrad import lax
>>> def rnn(w, xs):                                   # h_t = tanh(w h_{t-1} + x_t)
...     h, hs = lax.scan(lambda h, x: (fnp.tanh(w @ h + x),) * 2, np.zeros(3), xs)
...     return fnp.sum(hs ** 2)
>>> g = fgrad.jit(fgrad.grad(rnn))(np.eye(3) * 0.5, np.ones((50, 3)))   # one loop each way
>>> per_seq = fgrad.vmap(fgrad.grad(rnn), in_axes=(None, 0))(np.eye(3), np.ones((8, 50, 3)))

Choices, where JAX leaves room or fgrad differs:

* A carry that starts as a Python scalar is weakly typed, as in JAX: ``scan(f, 0.0, xs_f32)``
  gives a float32 carry if the body makes it one. Any other change of a carry's structure,
  shape or dtype is an error that names the leaf, its type going in and coming out.
* ``cond`` accepts a boolean or integer scalar predicate (an integer means ``pred != 0``, as in
  JAX); a float or non-scalar predicate is an error (use ``fgrad.numpy.where`` to choose
  elementwise). ``switch`` clamps its index into ``[0, len(branches) - 1]``, as JAX does.
* ``fori_loop`` lowers to ``scan`` (so ``grad`` works) when both bounds are concrete (Python or
  NumPy ints, not traced: under ``jit`` an int *argument* is traced unless static) and to
  ``while_loop`` otherwise. The loop index has the bounds' dtype (int64 for Python ints).
* ``unroll`` is accepted (an int >= 1 or a bool) and does not change the program: the
  generated loop calls the compiled body once per step.
* The reverse pass of ``scan`` stacks, per step, the values its backward step needs (as the
  tape of the unrolled loop would hold them) and runs no part of the forward pass again.
* A ``custom_vjp`` / ``custom_jvp`` / ``checkpoint`` function called inside a body keeps its
  rule: the body records it as one call (``custom_vjp_jaxpr`` / ``custom_jvp_jaxpr``) instead
  of tracing through it, and a checkpointed block inside a ``scan`` recomputes in the backward
  loop (its residuals are the block's inputs only).
"""
from __future__ import annotations

import builtins

import numpy as np

from . import numpy as fnp
from . import tree
from .api import stop_gradient
from .core import Tracer, dtype_of, shape_of
from .primitives.control import cond_p, scan_p, stage_body, while_p, join_branches
from .staging import ShapedArray, Var, atom_aval

__all__ = ["scan", "cond", "switch", "fori_loop", "while_loop", "map", "stop_gradient"]


def _fname(f):
    return getattr(f, "__name__", None) or type(f).__name__


def _aval(x):
    return ShapedArray(shape_of(x), dtype_of(x))


def _leaf_array(x, what):
    """A leaf of a carry / operand tree as an array (Python and NumPy scalars -> 0-d arrays)."""
    if isinstance(x, Tracer):
        return x
    if isinstance(x, (np.ndarray, np.generic, bool, int, float, complex)):
        return np.asarray(x)
    raise TypeError(f"{what}: leaf of type {type(x).__name__} is not an array or a number; "
                    f"carries, xs and operands must be pytrees of arrays")


def _path_str(head, path):
    return head + "".join(f"[{k!r}]" for k in path)


def _is_weak(x):
    return type(x) in (bool, int, float, complex)   # not np.float64, a subclass of float


def _check_carry(what, paths, init_leaves, weak, out_avals, head):
    """Raise naming the leaf whose shape/dtype changed; the init leaves, where a weakly typed
    one (a Python scalar) adopts the dtype its body gives it."""
    promoted = list(init_leaves)
    for k, (path, x, w, out) in enumerate(zip(paths, init_leaves, weak, out_avals)):
        a = _aval(x)
        if a == out:
            continue
        if w and a.shape == out.shape:
            promoted[k] = np.asarray(x, out.dtype)
            continue
        raise TypeError(
            f"{what}: the body must return a carry of the same structure, shapes and dtypes as "
            f"its input, but {_path_str(head, path)} is {a.str_short()} going in and "
            f"{out.str_short()} coming out. Give the initial value the type the body returns "
            f"(e.g. init.astype(...) or an array of the final shape), or convert inside the body.")
    return promoted


def _carry_avals(leaves, weak):
    """Avals to stage a body with: a carry that starts as a Python scalar is weakly typed (it
    promotes like the Python number, so ``0.0 + x_f32`` is float32, as in JAX)."""
    return [ShapedArray(shape_of(x), dtype_of(x), weak_type=w) for x, w in zip(leaves, weak)]


def _strict_as_staged(jaxpr, leaves, weak):
    """True (and the program's weak input types made strict) when staging with weakly typed
    carries gave the program strict staging would give: no carry changed dtype, and no
    equation reading a weak input has a result of another dtype (``c_weak * x_f32``) or is a
    nested construct. Saves staging the body a second time for ``scan(f, 0.0, xs)``."""
    weak_invars = [v for v in jaxpr.invars if v.aval.weak_type]   # the weak carries, in order
    if any(dtype_of(x) != v.aval.dtype
           for x, v in zip([x for x, w in zip(leaves, weak) if w], weak_invars)):
        return False
    weak_vars = set(weak_invars)
    for e in jaxpr.eqns:
        read = [a for a in e.inputs if isinstance(a, Var) and a in weak_vars]
        if read and (e.prim.multiple_results or
                     any(o.aval.dtype != a.aval.dtype for o in e.outs for a in read)):
            return False
    for v in weak_vars:
        v.aval = ShapedArray(v.aval.shape, v.aval.dtype)
    return True


def _check_tree(what, head, want, got, detail):
    if want != got:
        raise TypeError(f"{what}: the body must return a carry with the structure of its input; "
                        f"{head} is {want} going in but {got} coming out{detail}")


# --------------------------------------------------------------------------------------------
# scan, map
# --------------------------------------------------------------------------------------------

def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """Loop ``f`` over the leading axis of ``xs``, carrying state: ``(carry, ys)``.

    The semantics are those of this Python loop, run as one primitive::

        def scan(f, init, xs, length=None):
            carry, ys = init, []
            for x in xs:                  # xs[i] is a pytree: every leaf's i-th row
                carry, y = f(carry, x)
                ys.append(y)
            return carry, stack(ys)       # every leaf of y stacked on a new leading axis

    Args:
      f: ``f(carry, x) -> (carry, y)``; the carry keeps its structure, shapes and dtypes.
      init: the initial carry (a pytree of arrays).
      xs: a pytree of arrays with the same leading length, or ``None`` (then ``x`` is None).
      length: the number of steps; required when ``xs`` is None, else checked against it.
      reverse: run from the last row to the first (``ys`` keep the rows' order).
      unroll: accepted for JAX compatibility; it does not change the program.

    >>> cumsum = lambda xs: lax.scan(lambda c, x: (c + x, c + x), 0.0, xs)[1]
    >>> fgrad.grad(lambda xs: fnp.sum(cumsum(xs) ** 2))(np.arange(4.0))
    """
    what = f"fgrad.lax.scan({_fname(f)})"
    _check_unroll(what, unroll)
    x_paths, x_leaves, x_tree = tree.flatten_split_paths(xs)
    x_leaves = [_leaf_array(x, what) for x in x_leaves]
    length = _scan_length(what, length, x_paths, x_leaves)
    c_paths, c_leaves, c_tree = tree.flatten_split_paths(init)
    weak = [_is_weak(x) for x in c_leaves]
    c_leaves = [_leaf_array(x, what) for x in c_leaves]
    x_avals = [ShapedArray(shape_of(x)[1:], dtype_of(x)) for x in x_leaves]
    ncar = len(c_leaves)
    for _ in range(2):     # weakly typed carries: once to find their dtypes, once strictly
        store = {}

        def body(*args):
            out = f(tree.unflatten(c_tree, args[:ncar]), tree.unflatten(x_tree, args[ncar:]))
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(f"{what}: the body must return a pair (carry, y), got "
                                f"{_describe(out)}")
            c_out, y = out
            c_out_leaves, c_out_tree = tree.flatten(c_out)
            _check_tree(what, "the carry", c_tree, c_out_tree, "")
            y_leaves, store["y_tree"] = tree.flatten(y)
            return list(c_out_leaves) + list(y_leaves)

        jaxpr, consts = stage_body(body, _carry_avals(c_leaves, weak) + x_avals, f"scan({_fname(f)})")
        out_avals = [atom_aval(v) for v in jaxpr.outvars]
        c_leaves = _check_carry(what, c_paths, c_leaves, weak, out_avals[:ncar], "carry")
        if not any(weak) or _strict_as_staged(jaxpr, c_leaves, weak):
            break
        weak = [False] * ncar     # again, strictly typed: the program's avals are the run's
    outs = scan_p.bind(*consts, *c_leaves, *x_leaves, jaxpr=jaxpr, num_consts=len(consts),
                       num_carry=ncar, length=length, reverse=bool(reverse))
    return tree.unflatten(c_tree, outs[:ncar]), tree.unflatten(store["y_tree"], outs[ncar:])


def _describe(out):
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of length {len(out)}"
    if hasattr(out, "shape") and hasattr(out, "dtype"):
        return f"one array ({_aval(out).str_short()})"
    return f"a {type(out).__name__}"


def _check_unroll(what, unroll):
    if isinstance(unroll, bool) or (isinstance(unroll, (int, np.integer)) and unroll >= 1):
        return
    raise TypeError(f"{what}: unroll must be a positive int or a bool, got {unroll!r}")


def _scan_length(what, length, x_paths, x_leaves):
    if length is not None:
        if isinstance(length, Tracer) or isinstance(length, bool) or \
                not isinstance(length, (int, np.integer)) or length < 0:
            raise TypeError(f"{what}: length must be a non-negative Python int (a static number "
                            f"of steps), got {length!r}")
        length = int(length)
    sizes = []
    for path, x in zip(x_paths, x_leaves):
        if not shape_of(x):
            raise TypeError(f"{what}: every leaf of xs needs a leading axis to scan over, but "
                            f"{_path_str('xs', path)} is a scalar ({_aval(x).str_short()})")
        sizes.append((_path_str("xs", path), shape_of(x)[0]))
    distinct = {n for _, n in sizes}
    if len(distinct) > 1:
        listing = ", ".join(f"{p} has {n}" for p, n in sizes)
        raise ValueError(f"{what}: every leaf of xs must have the same leading axis length, but "
                         f"{listing}")
    if not sizes:
        if length is None:
            raise ValueError(f"{what}: with no xs (xs=None or a tree without arrays), pass "
                             f"length= to say how many steps to run")
        return length
    n = distinct.pop()
    if length is not None and length != n:
        raise ValueError(f"{what}: length={length} but the leading axis of xs has length {n} "
                         f"({sizes[0][0]}); leave length out or make them agree")
    return n


def map(f, xs, *, batch_size=None):  # noqa: A001 - mirrors jax.lax.map
    """``f`` applied to each row of ``xs`` (a pytree), results stacked: a scan with no carry.

    Unlike ``vmap`` the rows run one after another (the memory of one row at a time). With
    ``batch_size``, ``f`` is vmapped over blocks of that many rows and the blocks are scanned
    (the remainder, if the length does not divide, is one more vmapped call), as in JAX.
    """
    if batch_size is None:
        return scan(lambda carry, x: (carry, f(x)), (), xs)[1]
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise TypeError(f"fgrad.lax.map({_fname(f)}): batch_size must be a positive int, got "
                        f"{batch_size!r}")
    from .api import vmap
    leaves = tree.leaves(xs)
    n = _scan_length(f"fgrad.lax.map({_fname(f)})", None, *tree.flatten_split_paths(xs)[:2])
    blocks, rest = divmod(n, int(batch_size))
    parts = []
    if blocks:
        main = tree.map(lambda x: fnp.reshape(x[:blocks * batch_size],
                                              (blocks, batch_size) + shape_of(x)[1:]), xs)
        ys = scan(lambda carry, x: (carry, vmap(f)(x)), (), main)[1]
        parts.append(tree.map(lambda y: fnp.reshape(y, (blocks * batch_size,) + shape_of(y)[2:]), ys))
    if rest or not leaves:
        parts.append(vmap(f)(tree.map(lambda x: x[blocks * batch_size:], xs)))
    if len(parts) == 1:
        return parts[0]
    return tree.map(lambda a, b: fnp.concatenate([a, b]), parts[0], parts[1])


# --------------------------------------------------------------------------------------------
# cond, switch
# --------------------------------------------------------------------------------------------

def cond(pred, true_fun, false_fun, *operands):
    """``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``, as one primitive.

    ``pred`` is a boolean (or integer: non-zero is true) scalar, possibly traced; both
    functions must return the same structure, shapes and dtypes. Under ``vmap`` with a batched
    ``pred`` both branches run and each row selects its result (as in JAX).

    >>> safe_log = lambda x: lax.cond(x > 0, fnp.log, lambda x: fnp.zeros_like(x), x)
    """
    what = f"fgrad.lax.cond({_fname(true_fun)}, {_fname(false_fun)})"
    shape, dt = shape_of(pred), dtype_of(pred)
    if shape != ():
        raise TypeError(f"{what}: the predicate must be a scalar, got {_aval(pred).str_short()}; "
                        f"to choose elementwise use fgrad.numpy.where(pred, x, y), or vmap the "
                        f"cond over the leading axis")
    if dt.kind not in "biu":
        raise TypeError(f"{what}: the predicate must be a boolean (or integer) scalar, got "
                        f"dtype {dt.name}; compare it first (e.g. x > 0)")
    if isinstance(pred, Tracer):
        index = fnp.astype(pred != 0 if dt.kind != "b" else pred, np.int32)
    else:
        index = np.asarray(bool(pred), np.int32)
    return _switch(what, index, [false_fun, true_fun], operands, ["false_fun", "true_fun"], ref=1)


def switch(index, branches, *operands):
    """``branches[index](*operands)``, the index clamped into ``[0, len(branches) - 1]``.

    ``index`` is an integer scalar (possibly traced); every branch must return the same
    structure, shapes and dtypes.
    """
    branches = list(branches)
    what = f"fgrad.lax.switch({', '.join(_fname(b) for b in branches)})"
    if not branches or not all(callable(b) for b in branches):
        raise TypeError(f"{what}: branches must be a non-empty sequence of functions")
    shape, dt = shape_of(index), dtype_of(index)
    if shape != () or dt.kind not in "iu":
        raise TypeError(f"{what}: the index must be an integer scalar, got "
                        f"{_aval(index).str_short()}")
    if isinstance(index, Tracer):
        index = fnp.clip(index, 0, len(branches) - 1)
    else:
        index = np.asarray(min(max(int(index), 0), len(branches) - 1), dt)
    return _switch(what, index, branches, operands,
                   [f"branches[{i}] ({_fname(b)})" for i, b in enumerate(branches)])


def _switch(what, index, branches, operands, labels, ref=0):
    op_leaves, op_tree = tree.flatten(operands)
    op_leaves = [_leaf_array(x, what) for x in op_leaves]
    avals = [_aval(x) for x in op_leaves]
    staged, trees = [], []
    for branch in branches:
        store = {}

        def fun(*args, branch=branch, store=store):
            out_leaves, store["tree"] = tree.flatten(branch(*tree.unflatten(op_tree, args)))
            return list(out_leaves)
        staged.append(stage_body(fun, avals, f"{what.split('(')[0][10:]}({_fname(branch)})"))
        trees.append(store["tree"])
    first = [atom_aval(v) for v in staged[ref][0].outvars]
    for i, (label, (jaxpr, _), t) in enumerate(zip(labels, staged, trees)):
        if i == ref:
            continue
        if t != trees[ref]:
            raise TypeError(f"{what}: the branches must return the same structure, but "
                            f"{labels[ref]} returns {trees[ref]} and {label} returns {t}")
        other = [atom_aval(v) for v in jaxpr.outvars]
        paths = tree.flatten_split_paths(tree.unflatten(trees[ref], first))[0]
        for path, a, b in zip(paths, first, other):
            if a != b:
                where = "".join(f"[{k!r}]" for k in path)
                raise TypeError(f"{what}: the branches must return the same shapes and dtypes, "
                                f"but {labels[ref]} returns {a.str_short()} and {label} returns "
                                f"{b.str_short()}" + (f" at output{where}" if where else ""))
    programs, consts = join_branches(staged)
    outs = cond_p.bind(index, *consts, *op_leaves, branches=programs)
    return tree.unflatten(trees[0], outs)


# --------------------------------------------------------------------------------------------
# while_loop, fori_loop
# --------------------------------------------------------------------------------------------

def while_loop(cond_fun, body_fun, init_val):
    """``val = init_val; while cond_fun(val): val = body_fun(val); return val``, as one primitive.

    ``cond_fun`` returns a boolean scalar; ``body_fun`` keeps the structure, shapes and dtypes
    of ``val``. Forward mode and vmap work (under vmap with a per-row predicate the loop runs
    until every row is done, finished rows unchanged); reverse mode does not (use
    :func:`fori_loop` with static bounds, or :func:`scan`).
    """
    what = f"fgrad.lax.while_loop({_fname(cond_fun)}, {_fname(body_fun)})"
    c_paths, c_leaves, c_tree = tree.flatten_split_paths(init_val)
    weak = [_is_weak(x) for x in c_leaves]
    c_leaves = [_leaf_array(x, what) for x in c_leaves]
    for _ in range(2):
        def body(*args):
            out_leaves, out_tree = tree.flatten(body_fun(tree.unflatten(c_tree, args)))
            _check_tree(what, "the loop value", c_tree, out_tree, "")
            return list(out_leaves)
        body_jaxpr, body_consts = stage_body(body, _carry_avals(c_leaves, weak),
                                              f"while_loop(body_fun={_fname(body_fun)})")
        c_leaves = _check_carry(what, c_paths, c_leaves, weak,
                                [atom_aval(v) for v in body_jaxpr.outvars], "init_val")
        if not any(weak) or _strict_as_staged(body_jaxpr, c_leaves, weak):
            break
        weak = [False] * len(c_leaves)

    def pred(*args):
        out = cond_fun(tree.unflatten(c_tree, args))
        leaves = tree.leaves(out)
        if len(leaves) != 1 or shape_of(leaves[0]) != () or dtype_of(leaves[0]).kind != "b":
            got = (_aval(leaves[0]).str_short() if len(leaves) == 1 else _describe(out))
            raise TypeError(f"{what}: cond_fun must return a boolean scalar, got {got}; compare "
                            f"(e.g. i < n) and reduce arrays (fgrad.numpy.any / all)")
        return leaves
    cond_jaxpr, cond_consts = stage_body(pred, [_aval(c) for c in c_leaves],
                                    f"while_loop(cond_fun={_fname(cond_fun)})")
    outs = while_p.bind(*cond_consts, *body_consts, *c_leaves, cond_jaxpr=cond_jaxpr,
                        body_jaxpr=body_jaxpr, cond_nconsts=len(cond_consts),
                        body_nconsts=len(body_consts))
    return tree.unflatten(c_tree, outs)


def fori_loop(lower, upper, body_fun, init_val, *, unroll=None):
    """``val = init_val; for i in range(lower, upper): val = body_fun(i, val); return val``.

    With concrete bounds (Python or NumPy ints) this is a :func:`scan` of ``upper - lower``
    steps (reverse-mode differentiable); with a traced bound it is a :func:`while_loop`.
    """
    what = f"fgrad.lax.fori_loop({_fname(body_fun)})"
    for name, b in (("lower", lower), ("upper", upper)):
        if shape_of(b) != () or dtype_of(b).kind not in "iu":
            raise TypeError(f"{what}: {name} must be an integer scalar, got "
                            f"{_aval(b).str_short() if hasattr(b, 'shape') or _is_weak(b) else type(b).__name__}")
    if unroll is not None:
        _check_unroll(what, unroll)
    dt = np.result_type(*(dtype_of(b) for b in (lower, upper) if not _is_weak(b))) \
        if not (_is_weak(lower) and _is_weak(upper)) else np.dtype(np.int64)
    if not isinstance(lower, Tracer) and not isinstance(upper, Tracer):
        lo, hi = int(lower), int(upper)

        def step(carry, _):
            i, val = carry
            return (i + np.asarray(1, dt), body_fun(i, val)), None
        (_, val), _ = scan(step, (np.asarray(lo, dt), init_val), None, length=builtins.max(hi - lo, 0))
        return val

    def keep_going(carry):
        i, hi, _ = carry
        return i < hi

    def body(carry):
        i, hi, val = carry
        return i + np.asarray(1, dt), hi, body_fun(i, val)
    lo = fnp.astype(lower, dt) if isinstance(lower, Tracer) else np.asarray(lower, dt)
    hi = fnp.astype(upper, dt) if isinstance(upper, Tracer) else np.asarray(upper, dt)
    return while_loop(keep_going, body, (lo, hi, init_val))[2]

