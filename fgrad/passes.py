"""Program passes: small functions from a staged :class:`~fgrad.staging.Jaxpr` to a better one.

``fgrad.jit`` runs them in :data:`PIPELINE` order before generating NumPy code; each is also
usable (and tested) on its own, on programs from ``make_jaxpr``. Every primitive is pure, so
equations may be merged, evaluated early or dropped freely; what a pass may never change is
the value (shape, dtype, numbers) of an output.

* :func:`simplify`: algebraic identities that make an equation a no-op (``x * 1``, ``x + 0``,
  ``x - 0``, ``x / 1``, ``-(-x)``, a transpose of a transpose, a reshape / broadcast_to to the
  shape ``x`` already has, a reshape of a reshape, ``astype`` to the dtype ``x`` already has),
  and ``transpose(a . b) = b^T . a^T`` (the weight gradients of a backward pass come out of
  BLAS C-contiguous instead of as transposed views: W2 of the benchmark, 784x512 updates).
  An identity applies only when the result has exactly ``x``'s shape and dtype (``x * 1`` with
  ``x: i64`` and ``1.0`` is a float, so it stays). One caveat, as in XLA: ``x + 0`` with
  ``x = -0.0`` gives ``+0.0`` in NumPy, and the simplified program returns ``-0.0``.
* :func:`cse`: common-subexpression elimination (the same primitive, parameters and operands
  computed twice, as a backward pass often does with ``1 - tanh(x)^2``-style partials).
* :func:`fold_constants`: an equation whose operands are all constants is evaluated once, at
  compile time, and becomes a constant.
* :func:`~fgrad.staging.dce`: drops equations whose results nothing uses; jit runs it as
  :func:`prune_control_flow`, which also drops the unread outputs of ``scan`` and ``cond``
  (and the work in their bodies that only those needed).
* :func:`plan_buffer_reuse`: not a rewrite but a plan the code generator follows: an
  elementwise ufunc writes its result (``out=``) into an operand buffer of the same shape and
  dtype that is dead afterwards. See its docstring for the aliasing rules that keep it safe.
"""
from __future__ import annotations

import numpy as np

from .core import dtype_of, shape_of
from .staging import Eqn, Jaxpr, Literal, ShapedArray, Var, dce

__all__ = ["simplify", "cse", "fold_constants", "dce", "prune_control_flow", "plan_buffer_reuse",
           "optimize", "PIPELINE", "is_ufunc_eqn"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _substitute(a, subst):
    while isinstance(a, Var) and a in subst:
        a = subst[a]
    return a


def _rebuild(jaxpr, eqns, subst, constvars=None, consts=None):
    outvars = [_substitute(v, subst) for v in jaxpr.outvars]
    return Jaxpr(jaxpr.invars, jaxpr.constvars if constvars is None else constvars,
                 jaxpr.consts if consts is None else consts, eqns, outvars)


def _const_values(jaxpr):
    return dict(zip(jaxpr.constvars, jaxpr.consts))


def _value(a, const_of):
    """The concrete value of an atom (a Literal or a constvar), or ``None``."""
    if isinstance(a, Literal):
        return a.val
    return const_of.get(a)


def _aval(a):
    if isinstance(a, Var):
        return a.aval
    return ShapedArray(shape_of(a.val), dtype_of(a.val))


def _is_all(value, number):
    """``value`` is an array (or scalar) every entry of which equals ``number`` (no NaN)."""
    if value is None or _is_tracer(value):
        return False
    try:
        arr = np.asarray(value)
    except Exception:   # noqa: BLE001 - anything NumPy cannot read is not a constant we know
        return False
    if arr.dtype.kind not in "biufc" or arr.size > 4096:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(arr == number))


def _is_tracer(x):
    from .core import Tracer
    return isinstance(x, Tracer)


def is_ufunc_eqn(e):
    """An equation whose impl is a single-output NumPy ufunc (so it accepts ``out=``)."""
    impl = e.prim.impl
    return isinstance(impl, np.ufunc) and impl.nout == 1 and not e.prim.multiple_results


# --------------------------------------------------------------------------------------------
# algebraic simplification
# --------------------------------------------------------------------------------------------

def _use_counts(jaxpr):
    uses = {}
    for e in jaxpr.eqns:
        for a in e.inputs:
            if isinstance(a, Var):
                uses[a] = uses.get(a, 0) + 1
    for v in jaxpr.outvars:
        if isinstance(v, Var):
            uses[v] = uses.get(v, 0) + 1
    return uses


#: Primitives that only matter to transforms: in a program that is run, never transformed
#: again (jit's replay), they are the identity.
IDENTITY_WHEN_RUN = frozenset({"stop_gradient"})


def simplify(jaxpr, for_replay=False):
    """Replace no-op equations by their operand and fuse chains of shape ops (see module doc).

    ``for_replay=True`` (jit) also drops :data:`IDENTITY_WHEN_RUN` primitives: the program will
    be run as NumPy, not differentiated, so ``stop_gradient(x)`` is ``x``.
    """
    const_of = _const_values(jaxpr)
    producer = {}          # Var -> the (rewritten) equation that makes it
    subst = {}
    eqns = []
    uses = _use_counts(jaxpr)
    for e in jaxpr.eqns:
        e = _fuse_with_producer(e.replace(inputs=[_substitute(a, subst) for a in e.inputs]),
                                producer, uses)
        same = _identity_operand(e, const_of)
        if same is None and for_replay and e.prim.name in IDENTITY_WHEN_RUN \
                and _same_aval(e.inputs[0], e.outs[0]):
            same = e.inputs[0]
        if same is not None:
            subst[e.outs[0]] = same
            continue
        for o in e.outs:
            producer[o] = e
        eqns.append(e)
    return _rebuild(jaxpr, eqns, subst)


def _same_aval(x, out):
    return (isinstance(x, Var) and not x.aval.weak_type and x.aval.shape == out.aval.shape
            and x.aval.dtype == out.aval.dtype)


def _identity_operand(e, const_of):
    """The operand ``e`` returns unchanged, or ``None``."""
    name, ins = e.prim.name, e.inputs
    if e.prim.multiple_results:
        return None
    out = e.outs[0]
    if name in ("mul", "add") and len(ins) == 2:
        unit = 1 if name == "mul" else 0
        for k in (0, 1):
            x, c = ins[k], ins[1 - k]
            if _is_all(_value(c, const_of), unit) and _same_aval(x, out):
                return x
    if name in ("sub", "div") and len(ins) == 2:
        unit = 0 if name == "sub" else 1
        if _is_all(_value(ins[1], const_of), unit) and _same_aval(ins[0], out):
            return ins[0]
    if name in ("reshape", "broadcast_to") and _same_aval(ins[0], out):
        return ins[0]
    if name == "transpose" and tuple(e.params["perm"]) == tuple(range(len(e.params["perm"]))) \
            and _same_aval(ins[0], out):
        return ins[0]
    if name == "convert_element_type" and _same_aval(ins[0], out):
        return ins[0]
    return None


def _fuse_with_producer(e, producer, uses):
    """``transpose(transpose(x))``, ``reshape(reshape(x))``: one step; ``transpose(a . b)``:
    ``b^T . a^T`` (so the product comes out of BLAS in the layout wanted, instead of as a
    transposed view that every later elementwise op reads with strides)."""
    name = e.prim.name
    if name not in ("neg", "transpose", "reshape") or not isinstance(e.inputs[0], Var):
        return e
    prev = producer.get(e.inputs[0])
    if prev is None:
        return e
    if name == "transpose" and prev.prim.name == "dot_general" and uses.get(e.inputs[0]) == 1:
        swapped = _swapped_dot(prev, e.params["perm"])
        if swapped is not None:
            return swapped.replace(outs=e.outs, source=e.source or prev.source)
    if prev.prim is not e.prim:
        return e
    x = prev.inputs[0]
    if name == "reshape":
        return e.replace(inputs=[x])           # the last reshape decides the shape
    if name == "transpose":
        p1, p2 = prev.params["perm"], e.params["perm"]
        return e.replace(inputs=[x], params={"perm": tuple(p1[i] for i in p2)})
    return e   # neg(neg(x)) is x itself: _double_negations substitutes it


def _swapped_dot(dot, perm):
    """``dot_general(rhs, lhs)`` when ``transpose(dot_general(lhs, rhs), perm)`` equals it: no
    batch axes, and ``perm`` puts the rhs free axes first, in order, then the lhs free axes."""
    (lc, rc), (lb, rb) = dot.params["dimension_numbers"]
    if lb or rb:
        return None
    lhs, rhs = dot.inputs
    n_lhs_free = len(_aval(lhs).shape) - len(lc)
    n_rhs_free = len(_aval(rhs).shape) - len(rc)
    want = tuple(range(n_lhs_free, n_lhs_free + n_rhs_free)) + tuple(range(n_lhs_free))
    if tuple(perm) != want:
        return None
    return dot.replace(inputs=[rhs, lhs], params={"dimension_numbers": ((rc, lc), ((), ()))})


def _double_negations(jaxpr):
    producer = {}
    subst = {}
    eqns = []
    for e in jaxpr.eqns:
        e = e.replace(inputs=[_substitute(a, subst) for a in e.inputs])
        if e.prim.name == "neg" and isinstance(e.inputs[0], Var):
            prev = producer.get(e.inputs[0])
            if prev is not None and prev.prim is e.prim and _same_aval(prev.inputs[0], e.outs[0]):
                subst[e.outs[0]] = prev.inputs[0]
                continue
        for o in e.outs:
            producer[o] = e
        eqns.append(e)
    return _rebuild(jaxpr, eqns, subst)


def _simplify_all(jaxpr):
    return _double_negations(simplify(jaxpr, for_replay=True))


# --------------------------------------------------------------------------------------------
# common-subexpression elimination
# --------------------------------------------------------------------------------------------

def _freeze(v):
    """A hashable stand-in for a parameter value, or raise TypeError."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__,) + tuple(_freeze(x) for x in v)
    if isinstance(v, slice):
        return ("slice", _freeze(v.start), _freeze(v.stop), _freeze(v.step))
    if isinstance(v, dict):
        return ("dict",) + tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, np.ndarray):
        raise TypeError("arrays in parameters are not compared")
    hash(v)
    return (type(v), v)


def _atom_key(a):
    if isinstance(a, Var):
        return a
    val = a.val
    if isinstance(val, (np.ndarray, np.generic)):
        return ("lit", val.dtype, val.item())
    return ("lit", type(val), val)


def _eqn_key(e):
    try:
        return (e.prim, tuple(_atom_key(a) for a in e.inputs),
                tuple(sorted((k, _freeze(v)) for k, v in e.params.items())))
    except TypeError:
        return None


def cse(jaxpr):
    """Compute each (primitive, parameters, operands) once; later copies reuse the first result."""
    subst = {}
    seen = {}
    eqns = []
    for e in jaxpr.eqns:
        e = e.replace(inputs=[_substitute(a, subst) for a in e.inputs])
        key = _eqn_key(e)
        if key is not None:
            first = seen.get(key)
            if first is not None:
                for o, f in zip(e.outs, first):
                    subst[o] = f
                continue
            seen[key] = e.outs
        eqns.append(e)
    return _rebuild(jaxpr, eqns, subst)


# --------------------------------------------------------------------------------------------
# constant folding
# --------------------------------------------------------------------------------------------

#: Results larger than this (elements) are not folded: a constant that size costs memory for
#: as long as the compiled function lives, and reading it is no cheaper than making it.
FOLD_MAX_SIZE = 1 << 20


def fold_constants(jaxpr):
    """Evaluate equations whose operands are all constants; their results become constants."""
    const_of = _const_values(jaxpr)
    constvars, consts = list(jaxpr.constvars), list(jaxpr.consts)
    eqns = []
    for e in jaxpr.eqns:
        values = [_value(a, const_of) if (isinstance(a, Literal) or a in const_of) else None
                  for a in e.inputs]
        foldable = (all(isinstance(a, Literal) or a in const_of for a in e.inputs)
                    and not any(_is_tracer(v) for v in values)
                    and all(np.prod(o.aval.shape, dtype=np.int64) <= FOLD_MAX_SIZE for o in e.outs))
        if not foldable:
            eqns.append(e)
            continue
        with np.errstate(all="ignore"):
            out = e.prim.impl(*values, **e.params)
        outs = out if e.prim.multiple_results else [out]
        for v, val in zip(e.outs, outs):
            const_of[v] = val
            constvars.append(v)
            consts.append(val)
    return Jaxpr(jaxpr.invars, constvars, consts, eqns, jaxpr.outvars)


# --------------------------------------------------------------------------------------------
# buffer reuse
# --------------------------------------------------------------------------------------------

#: Primitives whose NumPy implementation always returns a new array that nothing else refers
#: to (ufuncs are recognised separately). Every other primitive may return a view of, or the
#: very object of, an operand (reshape, transpose, broadcast_to, basic indexing, astype with
#: copy=False, stop_gradient...), so its result is put in the same alias group as its operands.
FRESH_RESULTS = frozenset({"dot_general", "select"})


class _Groups:
    """Union-find over variables: values that may share memory end up in one group."""

    def __init__(self):
        self.parent = {}

    def find(self, v):
        parent = self.parent
        root = v
        while parent.get(root, root) is not root:
            root = parent[root]
        while v is not root:
            v, parent[v] = parent.get(v, v), root
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[ra] = rb
        return rb


def plan_buffer_reuse(jaxpr, donated=()):
    """``{equation index: operand position}``: where an elementwise ufunc may write its result.

    Equation ``i`` may write into operand ``b`` (``np.add(b, c, out=b)``) when

    * ``i`` is a single-output NumPy ufunc and its result is an array (ndim >= 1) with exactly
      ``b``'s shape and dtype (so ``out=`` changes neither the values nor the dtype);
    * ``b``'s memory belongs to the program: ``b`` was made by a ufunc, ``dot_general`` or
      ``select`` of this program (always a new array), or is an input listed in ``donated``.
      Never a constant and never a non-donated input;
    * no value that may alias ``b`` is read after ``i`` or returned. Aliasing is tracked
      conservatively: the result of any primitive not known to allocate (reshape, transpose,
      slices, broadcast_to, astype...) joins the alias group of all its operands, so ``b`` is
      dead only when its whole group is.

    Overlap between ``b`` and another operand of ``i`` (``b + b.T``) is safe: NumPy ufuncs
    detect overlapping operands and buffer them.
    """
    donated = set(donated)
    groups = _Groups()
    eqns = jaxpr.eqns
    fresh = set()
    for e in eqns:
        if is_ufunc_eqn(e) or e.prim.name in FRESH_RESULTS:
            fresh.update(e.outs)
            continue
        for o in e.outs:
            for a in e.inputs:
                if isinstance(a, Var):
                    groups.union(o, a)
    last_use = {}
    for i, e in enumerate(eqns):
        for a in e.inputs:
            if isinstance(a, Var):
                last_use[a] = i
    protected = set(jaxpr.constvars) | {v for v in jaxpr.invars if v not in donated}
    returned = {v for v in jaxpr.outvars if isinstance(v, Var)}

    # per group: the last equation reading any member, and whether it must survive
    group_last, group_kept = {}, {}
    for v in {*last_use, *protected, *returned, *fresh, *donated}:
        r = groups.find(v)
        group_last[r] = max(group_last.get(r, -1), last_use.get(v, -1))
        group_kept[r] = group_kept.get(r, False) or v in protected or v in returned

    owned = fresh | donated
    plan = {}
    for i, e in enumerate(eqns):
        if not is_ufunc_eqn(e):
            continue
        out = e.outs[0]
        if not out.aval.shape:
            continue
        for k, b in enumerate(e.inputs):
            if not (isinstance(b, Var) and b in owned) or b.aval.weak_type:
                continue
            if b.aval.shape != out.aval.shape or b.aval.dtype != out.aval.dtype:
                continue
            r = groups.find(b)
            if group_kept.get(r, False) or group_last.get(r, -1) != i:
                continue
            plan[i] = k
            # the result *is* b's memory from now on: one group, with the result's future
            ro = groups.find(out)
            last, kept = group_last.get(ro, -1), group_kept.get(ro, False)
            merged = groups.union(r, ro)
            group_last[merged], group_kept[merged] = last, kept
            break
    return plan


# --------------------------------------------------------------------------------------------
# control flow: outputs of scan / cond that nothing reads
# --------------------------------------------------------------------------------------------

def _reads(jaxpr):
    read = {a for e in jaxpr.eqns for a in e.inputs if isinstance(a, Var)}
    return read | {v for v in jaxpr.outvars if isinstance(v, Var)}


def _prune_scan(e, live):
    p = e.params
    nc, ncar, body = p["num_consts"], p["num_carry"], p["jaxpr"]
    keep_c = [o in live for o in e.outs[:ncar]]
    keep_y = [o in live for o in e.outs[ncar:]]
    while True:     # a carry stays while a kept output reads it (through later steps)
        pruned = dce(Jaxpr(body.invars, [], [], body.eqns,
                           [v for v, k in zip(body.outvars, keep_c + keep_y) if k]))
        read = _reads(pruned)
        grown = [k or body.invars[nc + j] in read for j, k in enumerate(keep_c)]
        if grown == keep_c:
            break
        keep_c = grown
    keep_in = [v in read for v in body.invars[:nc]] + keep_c + \
              [v in read for v in body.invars[nc + ncar:]]
    if all(keep_in) and all(keep_c) and all(keep_y):
        return e
    new_body = Jaxpr([v for v, k in zip(body.invars, keep_in) if k], [], [], pruned.eqns,
                     pruned.outvars)
    params = dict(p, jaxpr=new_body, num_consts=sum(keep_in[:nc]), num_carry=sum(keep_c))
    return e.replace(inputs=[a for a, k in zip(e.inputs, keep_in) if k], params=params,
                     outs=[o for o, k in zip(e.outs, keep_c + keep_y) if k])


def _prune_cond(e, live):
    branches = e.params["branches"]
    keep = [o in live for o in e.outs]
    pruned = [dce(Jaxpr(b.invars, [], [], b.eqns, [v for v, k in zip(b.outvars, keep) if k]))
              for b in branches]
    reads = [_reads(b) for b in pruned]
    keep_in = [any(b.invars[i] in r for b, r in zip(branches, reads))
               for i in range(len(branches[0].invars))]
    if all(keep) and all(keep_in):
        return e
    new = tuple(Jaxpr([v for v, k in zip(b.invars, keep_in) if k], [], [], b.eqns, b.outvars)
                for b in pruned)
    return e.replace(inputs=[e.inputs[0]] + [a for a, k in zip(e.inputs[1:], keep_in) if k],
                     params=dict(e.params, branches=new),
                     outs=[o for o, k in zip(e.outs, keep) if k])


_PRUNERS = {"scan": _prune_scan, "cond": _prune_cond}


def prune_control_flow(jaxpr):
    """Drop what a ``scan`` or ``cond`` computes for nobody, and the equations that were dead.

    An unread output of a ``cond`` leaves every branch; an unread ``y`` of a ``scan`` leaves its
    body (and with it the work only it needed: the forward ``ys`` of a jitted ``grad`` are
    usually dead), and an unread carry too unless the body reads it for a kept output. Operands
    nothing reads any more go with them. Otherwise this is :func:`~fgrad.staging.dce`.
    """
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for e in reversed(jaxpr.eqns):
        if not any(o in live for o in e.outs):
            continue
        prune = _PRUNERS.get(e.prim.name)
        if prune is not None and e.prim.multiple_results:
            e = prune(e, live)
        kept.append(e)
        live.update(a for a in e.inputs if isinstance(a, Var))
    used = [(v, c) for v, c in zip(jaxpr.constvars, jaxpr.consts) if v in live]
    return Jaxpr(jaxpr.invars, [v for v, _ in used], [c for _, c in used], kept[::-1],
                 jaxpr.outvars)


# --------------------------------------------------------------------------------------------
# the pipeline jit runs
# --------------------------------------------------------------------------------------------

PIPELINE = (("simplify", _simplify_all), ("cse", cse), ("fold_constants", fold_constants),
            ("dce", prune_control_flow))


def optimize(jaxpr, passes=PIPELINE, rounds=2):
    """Run ``passes`` (twice: folding and CSE expose more no-ops); ``(jaxpr, stats)``.

    ``stats`` lists ``(pass name, equations after it)``, starting with ``("staged", n)``.
    """
    stats = [("staged", len(jaxpr.eqns))]
    for _ in range(rounds):
        before = len(jaxpr.eqns)
        for name, run in passes:
            jaxpr = run(jaxpr)
            stats.append((name, len(jaxpr.eqns)))
        if len(jaxpr.eqns) == before and _ > 0:
            break
    return jaxpr, stats
