"""Control-flow primitives: ``scan``, ``cond`` (``switch``) and ``while``, with staged bodies.

``fgrad.lax`` (the user-facing API: pytrees, checks, error messages) stages the user's
functions into closed programs (:func:`~fgrad.staging.stage_closed`) and binds one of the
three primitives below. Their parameters hold those programs (:class:`~fgrad.staging.Jaxpr`
objects, never Python callables), so an equation is printable, hashable for CSE, and
``fgrad.jit`` compiles each body with the same code generator as the program around it.
Values a body closes over are the primitive's leading operands (closure conversion), so an
outer transform (a ``grad`` whose parameters the body reads) sees them like any operand.

Operands and parameters::

    scan_p   consts..., init..., xs...        jaxpr(consts, carry, x) -> (carry, y)
             num_consts, num_carry, length, reverse        -> carry..., ys... (stacked on axis 0)
    cond_p   index, ops...                     branches: tuple of jaxpr(ops) -> outs
    while_p  cond_consts..., body_consts..., init...
             cond_jaxpr(cond_consts, carry) -> [bool[]], body_jaxpr(body_consts, carry) -> carry

Every rule builds its result by *transforming the body program* and binding the same
primitive again, so the results are themselves scans / conds / whiles that every other
transform (and jit) handles; that is what makes ``grad(grad(scan))``, ``vmap(grad(scan))``,
``jit(grad(scan))`` or a scan inside a cond inside a scan work with no special cases:

* **JVP** (all three): the body's JVP, staged (:func:`jvp_eval`), over (primal, tangent)
  pairs: the tangents of the float carries join the carry, those of consts the consts, those
  of xs the xs. Every float carry gets a tangent (zeros where the input has none), which avoids
  a fixpoint on which carries have non-zero tangents at the cost of some arithmetic on zeros.
* **VJP** of ``scan`` (a ``vjp_fwd`` rule, as the tape in ``vjp.py`` wants): one step's VJP,
  ``(consts, carry_i, x_i, ct_carry, ct_y_i) -> (ct_consts, ct_carry_in, ct_x_i)``, is staged
  once (:func:`vjp_eval` under staging) and split by partial evaluation
  (:func:`_scan_vjp_step`): equations that need no cotangent run in the *forward* scan, next
  to the body (CSE in the compiled body merges the two copies of the primal computation), and
  the values the rest reads are stacked per step as extra outputs (the residuals: ``1 - tanh^2``,
  the inputs of each matmul); the *backward* scan runs the rest in the opposite direction, with
  carry ``(ct of the consts, summed; ct of the carry)``, xs ``(residuals, ct of ys)`` and ys
  ``ct of xs``. Equations that read only consts (``w.T``) are put in both, so no loop-invariant
  value is stacked. Memory is that of the unrolled loop's tape (the residuals of every step),
  compute is one forward and one backward pass. Only the consts and xs the tape tracks get
  cotangents (the rule is told which, ``takes_tracked``): a loop over data computes none for it.
* **VJP** of ``cond``: the forward pass runs the chosen branch; the backward pass is a ``cond`` on
  the same index whose branches recompute their branch under reverse mode and pull back.
* **VJP** of ``while``: an error naming ``fori_loop`` and ``scan`` (the trip count is known only
  at run time, so nothing can be saved for a reverse pass; JAX refuses it too).
* **Batching** (vmap): the body batched (:func:`batch_eval`, a vmap of the body program) with the
  batch axis first in every batched operand (axis 1 for the stacked xs and ys of ``scan``). A
  carry whose input is unbatched but whose output depends on a batched value is batched from
  the start (a fixpoint over the carries, at most one round per carry). ``cond`` with a batched
  index runs every branch on the whole batch and selects per row (``select``); ``while`` with a
  batched predicate runs until every row's predicate is false, each finished row's carry frozen
  by a ``select``.

Two more primitives keep user rules alive inside bodies: ``custom_vjp_jaxpr`` and
``custom_jvp_jaxpr`` are what :class:`BodyTrace` records for a ``custom_vjp`` / ``custom_jvp``
(and so ``checkpoint``) call, with the function, ``fwd``/``bwd`` or the JVP rule staged as
closed programs; their rules are custom.py's, on programs. Other staging (jit, make_jaxpr)
traces through such calls, since its programs are run, not differentiated afterwards.

``impl`` runs a body through the code jit generates for it (compiled once per body program and
cached on it), or through :func:`~fgrad.staging.eval_jaxpr` while :func:`fgrad.debug_nans` is
on, so that every operation inside a loop is checked.
"""
from __future__ import annotations

import numpy as np

from .. import core
from .. import numpy as fnp
from ..core import Primitive, dtype_of, instantiate_zeros, is_float, new_trace, shape_of, zero
from ..errors import TransformError
from .. import tree
from ..staging import (Jaxpr, ShapedArray, StagingTrace, Var, atom_aval, aval_of, dce,
                       eval_jaxpr, stage_closed)
from ..vmap import batch_size, move_axis, move_to_front, not_mapped

__all__ = ["scan_p", "cond_p", "while_p", "jit_call_p", "split_vjp", "custom_vjp_jaxpr_p", "custom_jvp_jaxpr_p", "BodyTrace", "stage_body", "jvp_eval", "vjp_eval",
           "batch_eval", "join_branches", "WHILE_GRAD_MESSAGE"]


class BodyTrace(StagingTrace):
    """The staging trace of a control-flow body (errors say ``fgrad.lax.scan(body)``)."""

    transform_name = "fgrad.lax"

    def context(self):
        return "fgrad.lax" if self.fun_name is None else f"fgrad.lax.{self.fun_name}"

    def process_primitive(self, prim, args, params):
        # custom_vjp / custom_jvp calls inside a body stay calls (with their functions staged
        # too), so that transforms of the loop use the user's rule; other staging inlines them
        stage_custom = _CUSTOM_CALLS.get(prim.name)
        if stage_custom is not None:
            return stage_custom(args, params)
        return super().process_primitive(prim, args, params)


def stage_body(fun, avals, fun_name=None):
    """``(jaxpr, consts)``: ``fun(*flat) -> flat outputs`` staged as a closed program."""
    return stage_closed(fun, avals, trace_type=BodyTrace, fun_name=fun_name)


def _out_avals(jaxpr):
    return [atom_aval(v) for v in jaxpr.outvars]


def _in_avals(jaxpr):
    return [v.aval for v in jaxpr.invars]


def _split(seq, *sizes):
    out, start = [], 0
    for n in sizes:
        out.append(list(seq[start:start + n]))
        start += n
    out.append(list(seq[start:]))
    return out


def _expand(values, mask, fill=zero):
    """``values`` (one per True entry of ``mask``) spread back to ``len(mask)`` with ``fill``."""
    it = iter(values)
    return [next(it) if m else fill for m in mask]


def _zeros(aval):
    return np.zeros(aval.shape, aval.dtype)


def _is_float_aval(aval):
    return aval.dtype.kind in "fc"   # differentiable: real floating or complex


def _pick(values, mask):
    return [v for v, m in zip(values, mask) if m]


#: A body is compiled (jit's code generator, about a millisecond) once it is to evaluate more
#: equations than this; shorter runs go through ``eval_jaxpr`` (a few microseconds an equation).
COMPILE_AFTER_EQNS = 200


def _runner(jaxpr, steps=None):
    """The function that runs a body program ``steps`` times (``None``: many): jit's generated
    code (compiled once, cached on the program), or ``eval_jaxpr`` through ``bind`` for a short
    run and while fgrad.debug_nans is on (so that it checks every operation in a loop)."""
    compiled = getattr(jaxpr, "_compiled", None)
    if core._debug_hook is not None or (
            compiled is None and steps is not None and steps * len(jaxpr.eqns) < COMPILE_AFTER_EQNS):
        return lambda *args: eval_jaxpr(jaxpr, (), *args)
    if compiled is None:
        from ..jit import compile_program
        compiled = compile_program(jaxpr, "body")
    return compiled[0]


def _as_result(value, aval):
    """NumPy arrays out of ``impl`` (a body returning a literal gives a Python number)."""
    if isinstance(value, (bool, int, float, complex)):
        return np.asarray(value, aval.dtype)
    return value


# --------------------------------------------------------------------------------------------
# Transforming a body program (each evaluates it under one transform's trace; staged by callers)
# --------------------------------------------------------------------------------------------

def jvp_eval(jaxpr, primals, tangents):
    """``(outs, out_tangents)`` of the program; ``tangents[i]`` is an array or ``zero``."""
    from ..jvp import JVPTrace, JVPTracer
    with new_trace(JVPTrace) as trace:
        ins = [p if t is zero else JVPTracer(trace, p, t) for p, t in zip(primals, tangents)]
        outs = eval_jaxpr(jaxpr, (), *ins)
        po, to = [], []
        for o in outs:
            if isinstance(o, JVPTracer) and o._trace is trace:
                po.append(o.primal)
                to.append(o.tangent)
            else:
                po.append(o)
                to.append(zero)
    return po, to


def vjp_eval(jaxpr, primals, diff, out_cts):
    """Cotangents of the inputs marked in ``diff`` (``zero`` elsewhere) for cotangents
    ``out_cts`` of the outputs (``None`` for an output with none)."""
    from ..vjp import VJPTrace, VJPTracer, backward_pass
    with new_trace(VJPTrace) as trace:
        ins = [trace.new_input(p) if d else p for p, d in zip(primals, diff)]
        outs = eval_jaxpr(jaxpr, (), *ins)
    tracked, cts = [], []
    for o, ct in zip(outs, out_cts):
        if ct is not None and isinstance(o, VJPTracer) and o._trace is trace:
            tracked.append(o)
            cts.append(ct)
    leaf_cts = backward_pass(tracked, cts) if tracked else {}
    return [leaf_cts.get(t.node, zero) if d else zero for t, d in zip(ins, diff)]


def batch_eval(jaxpr, axis_size, vals, in_batched, force_out):
    """``(outs, out_batched)`` of the program vmapped over axis 0 of the ``in_batched`` inputs;
    outputs are batched at axis 0 where ``out_batched`` (always where ``force_out``)."""
    from ..vmap import BatchTrace, BatchTracer
    with new_trace(BatchTrace, axis_size) as trace:
        ins = [BatchTracer(trace, v, 0) if b else v for v, b in zip(vals, in_batched)]
        outs = eval_jaxpr(jaxpr, (), *ins)
        res, out_batched = [], []
        for o, force in zip(outs, force_out):
            if isinstance(o, BatchTracer) and o._trace is trace:
                res.append(move_axis(o.val, o.bdim, 0))
                out_batched.append(True)
            elif force:
                res.append(fnp.broadcast_to(o, (axis_size,) + shape_of(o)))
                out_batched.append(True)
            else:
                res.append(o)
                out_batched.append(False)
    return res, out_batched


def _batched_aval(aval, batched, size):
    return ShapedArray((size,) + aval.shape, aval.dtype) if batched else aval


def batch_jaxpr(jaxpr, axis_size, in_batched, force_out):
    """``(jaxpr, consts, out_batched)``: the program vmapped (see :func:`batch_eval`), staged."""
    box = []

    def fun(*vals):
        outs, ob = batch_eval(jaxpr, axis_size, vals, in_batched, force_out)
        box.append(ob)
        return outs
    avals = [_batched_aval(a, b, axis_size) for a, b in zip(_in_avals(jaxpr), in_batched)]
    new, consts = stage_body(fun, avals)
    return new, consts, box[-1]


def join_branches(staged):
    """Branches staged with their own consts -> ``(branches, consts)``, every branch taking
    all the consts (those of the others as unused inputs) followed by its own inputs."""
    consts = [c for _, cs in staged for c in cs]
    avals = [ShapedArray(shape_of(c), dtype_of(c)) for c in consts]
    branches, start = [], 0
    for jaxpr, cs in staged:
        k = len(cs)
        before = [Var(a, "_") for a in avals[:start]]
        after = [Var(a, "_") for a in avals[start + k:]]
        invars = before + jaxpr.invars[:k] + after + jaxpr.invars[k:]
        branches.append(Jaxpr(invars, [], [], jaxpr.eqns, jaxpr.outvars))
        start += k
    return tuple(branches), consts


# --------------------------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------------------------

def _scan_impl(*args, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(args, num_consts, num_carry)
    run = _runner(jaxpr, length)
    out_avals = _out_avals(jaxpr)
    ys = [np.empty((length,) + a.shape, a.dtype) for a in out_avals[num_carry:]]
    for i in (range(length - 1, -1, -1) if reverse else range(length)):
        outs = run(*consts, *carry, *[x[i] for x in xs])
        carry = outs[:num_carry]
        for y, o in zip(ys, outs[num_carry:]):
            y[i] = o
    return [_as_result(c, a) for c, a in zip(carry, out_avals)] + ys


def _scan_abstract_eval(*operands, jaxpr, num_consts, num_carry, length, reverse):
    outs = _out_avals(jaxpr)
    return outs[:num_carry] + [ShapedArray((length,) + a.shape, a.dtype) for a in outs[num_carry:]]


scan_p = Primitive("scan", _scan_impl, multiple_results=True)
scan_p.abstract_eval = _scan_abstract_eval


def _scan_jvp(primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse):
    # d scan = scan of the body's JVP over (primal, tangent) carries, consts and xs
    nc, ncar = num_consts, num_carry
    consts, init, xs = _split(primals, nc, ncar)
    k_dot, c_dot, x_dot = _split(tangents, nc, ncar)
    k_nz = [t is not zero and is_float(p) for p, t in zip(consts, k_dot)]
    c_nz = [is_float(p) for p in init]
    x_nz = [t is not zero and is_float(p) for p, t in zip(xs, x_dot)]
    k_av, c_av, x_av = _split(_in_avals(jaxpr), nc, ncar)
    y_f = [_is_float_aval(a) for a in _out_avals(jaxpr)[ncar:]]
    nk, nct, nx = sum(k_nz), sum(c_nz), len(xs)

    def body(*args):
        k, kt, c, ct, x, xt = _split(args, nc, nk, ncar, nct, nx)
        outs, outs_dot = jvp_eval(jaxpr, k + c + x,
                                  _expand(kt, k_nz) + _expand(ct, c_nz) + _expand(xt, x_nz))
        c_out, ys = outs[:ncar], outs[ncar:]
        c_out_dot = [instantiate_zeros(t, o) for t, o in zip(outs_dot[:ncar], c_out)]
        ys_dot = [instantiate_zeros(t, o) for t, o in zip(outs_dot[ncar:], ys)]
        return c_out + _pick(c_out_dot, c_nz) + ys + _pick(ys_dot, y_f)

    avals = k_av + _pick(k_av, k_nz) + c_av + _pick(c_av, c_nz) + x_av + _pick(x_av, x_nz)
    body_jvp, extra = stage_body(body, avals)
    operands = (extra + consts + _pick(k_dot, k_nz) + init
                + [instantiate_zeros(t, p) for t, p, m in zip(c_dot, init, c_nz) if m]
                + xs + _pick(x_dot, x_nz))
    outs = scan_p.bind(*operands, jaxpr=body_jvp, num_consts=len(extra) + nc + nk,
                       num_carry=ncar + nct, length=length, reverse=reverse)
    c_out, c_out_dot, ys, ys_dot = _split(outs, ncar, nct, len(y_f))[:4]
    return c_out + ys, _expand(c_out_dot, c_nz) + _expand(ys_dot, y_f)


def _scan_vjp_fwd(primals, *, tracked, jaxpr, num_consts, num_carry, length, reverse):
    # One step's VJP, (consts, carry_i, x_i, ct_carry_out, ct_y_i) -> (ct_consts, ct_carry_in,
    # ct_x_i), staged once and split by partial evaluation: what does not depend on cotangents
    # runs in the forward scan, which stacks the values the rest needs (the residuals); the
    # backward scan runs the rest in the opposite direction, ct_consts summed in its carry.
    nc, ncar = num_consts, num_carry
    consts, init, xs = _split(primals, nc, ncar)
    # cotangents for the consts and xs the tape tracks only (the data a loop reads get none)
    k_t, _, x_t = _split(tracked, nc, ncar)
    k_t, x_t = tuple(k_t), tuple(x_t)
    step, extra, res_avals = _derived(jaxpr, ("scan_vjp", nc, ncar, k_t, x_t),
                                      lambda: _scan_vjp_step(jaxpr, nc, ncar, len(xs), k_t, x_t))
    fwd, bwd, n_res = step
    outs = scan_p.bind(*extra, *primals, jaxpr=fwd, num_consts=len(extra) + nc, num_carry=ncar,
                       length=length, reverse=reverse)
    n_out = len(jaxpr.outvars)
    ans, residuals = outs[:n_out], outs[n_out:]

    def backward(cts):
        k_av, c_av, x_av = _split(_in_avals(jaxpr), nc, ncar)
        y_av = _out_avals(jaxpr)[ncar:]
        k_f = [t and _is_float_aval(a) for a, t in zip(k_av, k_t)]
        c_f = [_is_float_aval(a) for a in c_av]
        x_f = [t and _is_float_aval(a) for a, t in zip(x_av, x_t)]
        y_f = [_is_float_aval(a) for a in y_av]
        acc0 = [_zeros(a) for a in _pick(k_av, k_f)]
        operands = extra + consts + acc0 + _pick(cts[:ncar], c_f) + residuals + _pick(cts[ncar:], y_f)
        outs = scan_p.bind(*operands, jaxpr=bwd, num_consts=len(extra) + nc,
                           num_carry=sum(k_f) + sum(c_f), length=length, reverse=not reverse)
        k_ct, c_ct, x_ct = _split(outs, sum(k_f), sum(c_f))
        return _expand(k_ct, k_f) + _expand(c_ct, c_f) + _expand(x_ct, x_f)
    return ans, backward


_scan_vjp_fwd.takes_tracked = True

_INVARIANT, _FORWARD, _BACKWARD = 0, 1, 2


def _scan_vjp_step(jaxpr, nc, ncar, nx, k_tracked=None, x_tracked=None):
    """``((fwd, bwd, n_res), extra_consts, residual avals)`` for the VJP of a scan body.

    ``fwd(extra, consts, carry, x) -> (carry, y, *residuals)`` is the body followed by the
    cotangent-free part of one step's VJP (CSE in the compiled body merges the two copies of
    the primal computation); ``bwd(extra, consts, acc, ct_carry, *residuals, ct_y) -> (acc +
    ct_consts, ct_carry_in, ct_x)`` is the rest. Equations that read only consts (``w.T``) go to
    both, so that no loop-invariant value is stacked per step.
    """
    k_av, c_av, x_av = _split(_in_avals(jaxpr), nc, ncar)
    y_av = _out_avals(jaxpr)[ncar:]
    k_f = [t and _is_float_aval(a) for a, t in zip(k_av, k_tracked or [True] * nc)]
    c_f = [_is_float_aval(a) for a in c_av]
    x_f = [t and _is_float_aval(a) for a, t in zip(x_av, x_tracked or [True] * nx)]
    y_f = [_is_float_aval(a) for a in y_av]
    nkf, ncf = sum(k_f), sum(c_f)

    def step(*args):
        k, acc, ct_c, c, x, ct_y = _split(args, nc, nkf, ncf, ncar, nx)
        in_cts = vjp_eval(jaxpr, k + c + x, k_f + c_f + x_f,
                          _expand(ct_c, c_f, None) + _expand(ct_y, y_f, None))
        k_ct, c_ct, x_ct = _split(in_cts, nc, ncar)
        acc = [a if g is zero else a + g for a, g in zip(acc, _pick(k_ct, k_f))]
        return (acc + [_zeros(a) if g is zero else g for g, a in zip(_pick(c_ct, c_f), _pick(c_av, c_f))]
                + [_zeros(a) if g is zero else g for g, a in zip(_pick(x_ct, x_f), _pick(x_av, x_f))])

    avals = k_av + _pick(k_av, k_f) + _pick(c_av, c_f) + c_av + x_av + _pick(y_av, y_f)
    vjp_step, extra = stage_body(step, avals)
    ne = len(extra)
    e_v, k_v, acc_v, ctc_v, c_v, x_v, cty_v = _split(vjp_step.invars, ne, nc, nkf, ncf, ncar, nx)
    kind = {v: _INVARIANT for v in e_v + k_v}
    kind.update({v: _FORWARD for v in c_v + x_v})
    kind.update({v: _BACKWARD for v in acc_v + ctc_v + cty_v})
    eqn_kinds = []
    for e in vjp_step.eqns:
        k_e = max((kind[a] for a in e.inputs if isinstance(a, Var)), default=_INVARIANT)
        kind.update((o, k_e) for o in e.outs)
        eqn_kinds.append(k_e)
    residuals, seen = [], set()
    reads = [a for e, k_e in zip(vjp_step.eqns, eqn_kinds) if k_e == _BACKWARD for a in e.inputs]
    for a in reads + list(vjp_step.outvars):
        if isinstance(a, Var) and kind.get(a) == _FORWARD and a not in seen:
            seen.add(a)
            residuals.append(a)
    # the forward body: the scan body (its inputs renamed to the step's) + the primal part
    rename = dict(zip(jaxpr.invars, k_v + c_v + x_v))

    def renamed(a):
        return rename.get(a, a) if isinstance(a, Var) else a
    body_eqns = [e.replace(inputs=[renamed(a) for a in e.inputs]) for e in jaxpr.eqns]
    fwd = dce(Jaxpr(e_v + k_v + c_v + x_v, [], [],
                    body_eqns + [e for e, k_e in zip(vjp_step.eqns, eqn_kinds) if k_e != _BACKWARD],
                    [renamed(v) for v in jaxpr.outvars] + residuals))
    bwd = dce(Jaxpr(e_v + k_v + acc_v + ctc_v + residuals + cty_v, [], [],
                    [e for e, k_e in zip(vjp_step.eqns, eqn_kinds) if k_e != _FORWARD],
                    vjp_step.outvars))
    return (fwd, bwd, len(residuals)), extra, [v.aval for v in residuals]


def _scan_batch(vals, dims, *, jaxpr, num_consts, num_carry, length, reverse):
    nc, ncar = num_consts, num_carry
    size = batch_size(vals, dims)
    ny = len(jaxpr.outvars) - ncar
    k_b, c_b, x_b = _split([d is not not_mapped for d in dims], nc, ncar)
    # a carry is batched if its input is, or if the body makes it depend on a batched value
    for _ in range(ncar + 1):
        body, extra, out_b = batch_jaxpr(jaxpr, size, k_b + c_b + x_b, c_b + [False] * ny)
        grown = [a or b for a, b in zip(c_b, out_b[:ncar])]
        if grown == c_b:
            break
        c_b = grown
    consts, init, xs = _split(vals, nc, ncar)
    k_d, c_d, x_d = _split(dims, nc, ncar)
    consts = [v if d is not_mapped else move_axis(v, d, 0) for v, d in zip(consts, k_d)]
    init = [move_axis(v, d, 0) if d is not not_mapped
            else fnp.broadcast_to(v, (size,) + shape_of(v)) if b else v
            for v, d, b in zip(init, c_d, c_b)]
    xs = [v if d is not_mapped else move_axis(v, d, 1) for v, d in zip(xs, x_d)]
    outs = scan_p.bind(*extra, *consts, *init, *xs, jaxpr=body, num_consts=len(extra) + nc,
                       num_carry=ncar, length=length, reverse=reverse)
    out_dims = [0 if b else not_mapped for b in c_b] + [1 if b else not_mapped for b in out_b[ncar:]]
    return outs, out_dims


scan_p.jvp = _scan_jvp
scan_p.vjp_fwd = _scan_vjp_fwd
scan_p.batch = _scan_batch


# --------------------------------------------------------------------------------------------
# cond (switch): branches[index](*ops)
# --------------------------------------------------------------------------------------------

def _clamp(index, n):
    return min(max(int(index), 0), n - 1)


def _cond_impl(index, *ops, branches):
    jaxpr = branches[_clamp(index, len(branches))]
    return [_as_result(o, a) for o, a in zip(_runner(jaxpr, 1)(*ops), _out_avals(jaxpr))]


cond_p = Primitive("cond", _cond_impl, multiple_results=True)
cond_p.abstract_eval = lambda index, *ops, branches: _out_avals(branches[0])


def _cond_jvp(primals, tangents, *, branches):
    # d branches[i](ops) = the JVP of branch i, chosen by the same index
    index, ops = primals[0], list(primals[1:])
    ops_dot = list(tangents[1:])
    nz = [t is not zero and is_float(p) for p, t in zip(ops, ops_dot)]
    op_av = _in_avals(branches[0])
    out_f = [_is_float_aval(a) for a in _out_avals(branches[0])]
    n = len(ops)

    def make(branch):
        def f(*args):
            outs, outs_dot = jvp_eval(branch, args[:n], _expand(args[n:], nz))
            return outs + [instantiate_zeros(t, o) for t, o, m in zip(outs_dot, outs, out_f) if m]
        return stage_body(f, op_av + _pick(op_av, nz))
    new, consts = join_branches([make(b) for b in branches])
    outs = cond_p.bind(index, *consts, *ops, *_pick(ops_dot, nz), branches=new)
    return outs[:len(out_f)], _expand(outs[len(out_f):], out_f)


def _cond_vjp_fwd(primals, *, branches):
    index, ops = primals[0], list(primals[1:])
    ans = cond_p.bind(*primals, branches=branches)

    def backward(cts):
        # the cotangents of branch i, chosen by the same index (the branch is recomputed)
        op_av = _in_avals(branches[0])
        diff = [_is_float_aval(a) for a in op_av]
        out_f = [_is_float_aval(a) for a in _out_avals(branches[0])]
        n = len(ops)

        def make(branch):
            def f(*args):
                in_cts = vjp_eval(branch, args[:n], diff, _expand(args[n:], out_f, None))
                return [_zeros(a) if g is zero else g
                        for g, a in zip(_pick(in_cts, diff), _pick(op_av, diff))]
            return stage_body(f, op_av + _pick(_out_avals(branch), out_f))
        new, consts = join_branches([make(b) for b in branches])
        outs = cond_p.bind(index, *consts, *ops, *_pick(cts, out_f), branches=new)
        return [zero] + _expand(outs, diff)
    return ans, backward


def _cond_batch(vals, dims, *, branches):
    size = batch_size(vals, dims)
    (index, *ops), (i_dim, *op_dims) = vals, dims
    ops_b = [d is not not_mapped for d in op_dims]
    ops = [v if d is not_mapped else move_axis(v, d, 0) for v, d in zip(ops, op_dims)]
    n_out = len(branches[0].outvars)
    if i_dim is not_mapped:
        # one branch for the whole batch: each branch batched, outputs batched if any branch's is
        force = [False] * n_out
        while True:
            staged = [batch_jaxpr(b, size, ops_b, force) for b in branches]
            union = [any(s[2][i] for s in staged) for i in range(n_out)]
            if all(s[2] == union for s in staged):
                break
            force = union
        new, consts = join_branches([(j, c) for j, c, _ in staged])
        outs = cond_p.bind(index, *consts, *ops, branches=new)
        return outs, [0 if b else not_mapped for b in union]
    # a branch per row: every branch on the whole batch, then select row by row
    index = fnp.clip(move_axis(index, i_dim, 0), 0, len(branches) - 1)
    results = [batch_eval(b, size, ops, ops_b, [True] * n_out)[0] for b in branches]
    out = results[-1]
    for i in range(len(branches) - 2, -1, -1):
        out = [fnp.where(fnp.reshape(index == i, (size,) + (1,) * (len(shape_of(r)) - 1)), r, o)
               for r, o in zip(results[i], out)]
    return out, [0] * n_out


cond_p.jvp = _cond_jvp
cond_p.vjp_fwd = _cond_vjp_fwd
cond_p.batch = _cond_batch


# --------------------------------------------------------------------------------------------
# while
# --------------------------------------------------------------------------------------------

WHILE_GRAD_MESSAGE = (
    "fgrad.lax.while_loop: reverse-mode differentiation (grad, vjp, jacrev, hessian) does not "
    "work through a while_loop, because its number of steps is known only when it runs, so "
    "nothing can be saved for the backward pass (JAX refuses it too). If the trip count is "
    "known, use fgrad.lax.fori_loop with Python int bounds (it lowers to scan) or fgrad.lax.scan "
    "with a fixed length; forward mode (jvp, jacfwd) does work through while_loop.")


def _while_impl(*args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, carry = _split(args, cond_nconsts, body_nconsts)
    # interpreted for the first steps, compiled once the loop has run long enough to pay for it
    cond_run, body_run = _runner(cond_jaxpr, 1), _runner(body_jaxpr, 1)
    budget = COMPILE_AFTER_EQNS // max(1, len(cond_jaxpr.eqns) + len(body_jaxpr.eqns))
    steps = 0
    while cond_run(*cond_consts, *carry)[0]:
        carry = body_run(*body_consts, *carry)
        steps += 1
        if steps == budget:
            cond_run, body_run = _runner(cond_jaxpr), _runner(body_jaxpr)
    return [_as_result(c, a) for c, a in zip(carry, _out_avals(body_jaxpr))]


while_p = Primitive("while", _while_impl, multiple_results=True)
while_p.abstract_eval = lambda *operands, body_jaxpr, **params: _out_avals(body_jaxpr)


def _while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    # d while = a while over (primal, tangent) carries; the predicate reads the primals only
    cn, bn = cond_nconsts, body_nconsts
    cond_consts, body_consts, init = _split(primals, cn, bn)
    _, bk_dot, c_dot = _split(tangents, cn, bn)
    k_nz = [t is not zero and is_float(p) for p, t in zip(body_consts, bk_dot)]
    c_nz = [is_float(p) for p in init]
    k_av, c_av = _split(_in_avals(body_jaxpr), bn)[:2]
    nk, ncar = sum(k_nz), len(init)

    def body(*args):
        k, kt, c, ct = _split(args, bn, nk, ncar)
        outs, outs_dot = jvp_eval(body_jaxpr, k + c, _expand(kt, k_nz) + _expand(ct, c_nz))
        return outs + [instantiate_zeros(t, o) for t, o, m in zip(outs_dot, outs, c_nz) if m]
    body_jvp, extra = stage_body(body, k_av + _pick(k_av, k_nz) + c_av + _pick(c_av, c_nz))
    cond = Jaxpr(cond_jaxpr.invars + [Var(a, "_") for a in _pick(c_av, c_nz)], [], [],
                 cond_jaxpr.eqns, cond_jaxpr.outvars)
    outs = while_p.bind(*cond_consts, *extra, *body_consts, *_pick(bk_dot, k_nz), *init,
                        *[instantiate_zeros(t, p) for t, p, m in zip(c_dot, init, c_nz) if m],
                        cond_jaxpr=cond, body_jaxpr=body_jvp, cond_nconsts=cn,
                        body_nconsts=len(extra) + bn + nk)
    return outs[:ncar], _expand(outs[ncar:], c_nz)


def _while_vjp_fwd(primals, **params):
    ans = while_p.bind(*primals, **params)

    def backward(cts):
        raise TransformError(WHILE_GRAD_MESSAGE)
    return ans, backward


def _while_batch(vals, dims, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cn, bn = cond_nconsts, body_nconsts
    size = batch_size(vals, dims)
    ck_b, bk_b, c_b = _split([d is not not_mapped for d in dims], cn, bn)
    ncar = len(c_b)
    for _ in range(ncar + 2):
        _, _, pred_b = batch_jaxpr(cond_jaxpr, size, ck_b + c_b, [False])
        if pred_b[0]:
            grown = [True] * ncar     # rows stop at different steps: every carry is per row
        else:
            _, _, out_b = batch_jaxpr(body_jaxpr, size, bk_b + c_b, c_b)
            grown = [a or b for a, b in zip(c_b, out_b)]
        if grown == c_b:
            break
        c_b = grown
    (ck, bk, init), (ck_d, bk_d, c_d) = _split(vals, cn, bn)[:3], _split(dims, cn, bn)[:3]
    ck = [v if d is not_mapped else move_axis(v, d, 0) for v, d in zip(ck, ck_d)]
    bk = [v if d is not_mapped else move_axis(v, d, 0) for v, d in zip(bk, bk_d)]
    init = [move_axis(v, d, 0) if d is not not_mapped
            else fnp.broadcast_to(v, (size,) + shape_of(v)) if b else v
            for v, d, b in zip(init, c_d, c_b)]
    out_dims = [0 if b else not_mapped for b in c_b]
    if not pred_b[0]:
        cond, c_extra, _ = batch_jaxpr(cond_jaxpr, size, ck_b + c_b, [False])
        body, b_extra, _ = batch_jaxpr(body_jaxpr, size, bk_b + c_b, c_b)
        outs = while_p.bind(*c_extra, *ck, *b_extra, *bk, *init, cond_jaxpr=cond,
                            body_jaxpr=body, cond_nconsts=len(c_extra) + cn,
                            body_nconsts=len(b_extra) + bn)
        return outs, out_dims
    # batched predicate: loop while any row goes on; a finished row keeps its carry
    c_av = [ShapedArray((size,) + a.shape, a.dtype) for a in _in_avals(body_jaxpr)[bn:]]
    ck_av = [_batched_aval(a, b, size) for a, b in zip(_in_avals(cond_jaxpr)[:cn], ck_b)]
    bk_av = [_batched_aval(a, b, size) for a, b in zip(_in_avals(body_jaxpr)[:bn], bk_b)]

    def row_preds(k, c):
        return batch_eval(cond_jaxpr, size, k + c, ck_b + c_b, [True])[0][0]

    def cond_fun(*args):
        k, c = _split(args, cn)
        return [fnp.any(row_preds(k, c))]

    def body_fun(*args):
        k, b, c = _split(args, cn, bn)
        go = row_preds(k, c)
        new = batch_eval(body_jaxpr, size, b + c, bk_b + c_b, [True] * ncar)[0]
        return [fnp.where(fnp.reshape(go, (size,) + (1,) * (len(shape_of(o)) - 1)), n, o)
                for n, o in zip(new, c)]
    cond, c_extra = stage_body(cond_fun, ck_av + c_av)
    body, b_extra = stage_body(body_fun, ck_av + bk_av + c_av)
    outs = while_p.bind(*c_extra, *ck, *b_extra, *ck, *bk, *init, cond_jaxpr=cond,
                        body_jaxpr=body, cond_nconsts=len(c_extra) + cn,
                        body_nconsts=len(b_extra) + cn + bn)
    return outs, out_dims


while_p.jvp = _while_jvp
while_p.vjp_fwd = _while_vjp_fwd
while_p.batch = _while_batch


# --------------------------------------------------------------------------------------------
# custom_vjp / custom_jvp functions called inside a body
# --------------------------------------------------------------------------------------------
#
# Elsewhere staging traces through them (``inline_when_staged``): a jitted program is run, not
# differentiated. A body is differentiated after it is staged, so BodyTrace keeps each call as
# one equation whose parameters are the function and its rule, staged as closed programs (what
# they close over, operands like the rest). The rules below are those of custom.py, on programs.

class _RuleTrace(StagingTrace):
    """Stages the function and rule of a custom call met in a body; custom calls inside those
    are traced through (a rule that calls its own function, as custom_jvp rules do, would
    otherwise recurse), as everywhere outside a body."""

    transform_name = "fgrad.lax"


def _stage_rule(fun, avals):
    return stage_closed(fun, avals, trace_type=_RuleTrace)


def _all_true(jaxpr):
    return [True] * len(jaxpr.invars)


def _batch_all(jaxpr, size):
    """The program vmapped with every input and output batched at axis 0."""
    new, extra, _ = batch_jaxpr(jaxpr, size, _all_true(jaxpr), [True] * len(jaxpr.outvars))
    return new, extra


def _call(jaxpr, args):
    """``jaxpr(*args)`` as one equation (a cond with one branch is a call), so that the
    partial evaluation of a scan's VJP keeps a custom backward rule whole (a checkpointed
    block recomputes in the backward pass instead of having its recomputation hoisted)."""
    return cond_p.bind(np.int32(0), *args, branches=(jaxpr,))


def _stage_custom_vjp(args, params):
    fun, fwd, bwd = params["fun"], params["fwd"], params["bwd"]
    avals = [aval_of(a) for a in args]
    fun_j, fun_k = _stage_rule(lambda *a: list(fun(*a)), avals)
    store = {}

    def fwd_flat(*a):
        outs, res = fwd(*a)
        res_leaves, store["tree"] = tree.flatten(res)
        return list(outs) + list(res_leaves)
    fwd_j, fwd_k = _stage_rule(fwd_flat, avals)
    n_out = len(fun_j.outvars)
    res_avals = [atom_aval(v) for v in fwd_j.outvars[n_out:]]

    def bwd_flat(*a):
        return list(bwd(tree.unflatten(store["tree"], a[:len(res_avals)]), list(a[len(res_avals):])))
    bwd_j, bwd_k = _stage_rule(bwd_flat, res_avals + _out_avals(fun_j))
    return custom_vjp_jaxpr_p.bind(*fun_k, *fwd_k, *bwd_k, *args, fun_jaxpr=fun_j, fwd_jaxpr=fwd_j,
                                   bwd_jaxpr=bwd_j, num_consts=(len(fun_k), len(fwd_k), len(bwd_k)))


def _cvjp_impl(*ops, fun_jaxpr, fwd_jaxpr, bwd_jaxpr, num_consts):
    fun_k, _, _, args = _split(ops, *num_consts)
    return [_as_result(o, a) for o, a in zip(_runner(fun_jaxpr, 1)(*fun_k, *args), _out_avals(fun_jaxpr))]


custom_vjp_jaxpr_p = Primitive("custom_vjp_jaxpr", _cvjp_impl, multiple_results=True)
custom_vjp_jaxpr_p.abstract_eval = lambda *ops, fun_jaxpr, **params: _out_avals(fun_jaxpr)


def _cvjp_jvp(primals, tangents, *, fun_jaxpr, fwd_jaxpr, bwd_jaxpr, num_consts):
    # forward mode differentiates fun itself (as custom.py does outside bodies)
    nf, nw, nb = num_consts
    n_skip = nf + nw + nb
    ins = list(primals[:nf]) + list(primals[n_skip:])
    tans = list(tangents[:nf]) + list(tangents[n_skip:])
    tans = [t if is_float(p) else zero for t, p in zip(tans, ins)]
    return jvp_eval(fun_jaxpr, ins, tans)


def _cvjp_vjp_fwd(primals, *, fun_jaxpr, fwd_jaxpr, bwd_jaxpr, num_consts):
    _, fwd_k, bwd_k, args = _split(primals, *num_consts)
    outs = _call(fwd_jaxpr, fwd_k + args)
    n_out = len(fun_jaxpr.outvars)

    def backward(cts):
        # the user's bwd(residuals, cts): one cotangent per argument; none for what fun closes over
        in_cts = _call(bwd_jaxpr, bwd_k + outs[n_out:] + list(cts))
        return [zero] * sum(num_consts) + [c if is_float(a) else zero for c, a in zip(in_cts, args)]
    return outs[:n_out], backward


def _cvjp_batch(vals, dims, *, fun_jaxpr, fwd_jaxpr, bwd_jaxpr, num_consts):
    size = batch_size(vals, dims)
    fun_k, fwd_k, bwd_k, args = _split([move_to_front(v, d, size) for v, d in zip(vals, dims)],
                                       *num_consts)
    (fun_b, fe), (fwd_b, we), (bwd_b, be) = (_batch_all(j, size) for j in (fun_jaxpr, fwd_jaxpr, bwd_jaxpr))
    outs = custom_vjp_jaxpr_p.bind(*fe, *fun_k, *we, *fwd_k, *be, *bwd_k, *args, fun_jaxpr=fun_b,
                                   fwd_jaxpr=fwd_b, bwd_jaxpr=bwd_b,
                                   num_consts=(len(fe) + len(fun_k), len(we) + len(fwd_k),
                                               len(be) + len(bwd_k)))
    return outs, [0] * len(outs)


custom_vjp_jaxpr_p.jvp = _cvjp_jvp
custom_vjp_jaxpr_p.vjp_fwd = _cvjp_vjp_fwd
custom_vjp_jaxpr_p.batch = _cvjp_batch


def _stage_custom_jvp(args, params):
    fun, jvp = params["fun"], params["jvp"]
    avals = [aval_of(a) for a in args]
    fun_j, fun_k = _stage_rule(lambda *a: list(fun(*a)), avals)
    n = len(args)

    def jvp_flat(*a):
        outs, t_outs = jvp(list(a[:n]), list(a[n:]))
        return list(outs) + list(t_outs)
    jvp_j, jvp_k = _stage_rule(jvp_flat, avals + avals)
    return custom_jvp_jaxpr_p.bind(*fun_k, *jvp_k, *args, fun_jaxpr=fun_j, jvp_jaxpr=jvp_j,
                                   num_consts=(len(fun_k), len(jvp_k)))


def _cjvp_impl(*ops, fun_jaxpr, jvp_jaxpr, num_consts):
    fun_k, _, args = _split(ops, *num_consts)
    return [_as_result(o, a) for o, a in zip(_runner(fun_jaxpr, 1)(*fun_k, *args), _out_avals(fun_jaxpr))]


custom_jvp_jaxpr_p = Primitive("custom_jvp_jaxpr", _cjvp_impl, multiple_results=True)
custom_jvp_jaxpr_p.abstract_eval = lambda *ops, fun_jaxpr, **params: _out_avals(fun_jaxpr)


def _cjvp_jvp(primals, tangents, *, fun_jaxpr, jvp_jaxpr, num_consts):
    # the user's rule, with a tangent (zeros where none) for every argument
    nf, nj = num_consts
    _, jvp_k, args = _split(primals, nf, nj)
    t_args = [instantiate_zeros(t, p) for t, p in zip(tangents[nf + nj:], args)]
    outs = eval_jaxpr(jvp_jaxpr, (), *jvp_k, *args, *t_args)
    n_out = len(fun_jaxpr.outvars)
    return outs[:n_out], [t if is_float(o) else zero for t, o in zip(outs[n_out:], outs[:n_out])]


def _cjvp_vjp_fwd(primals, *, fun_jaxpr, jvp_jaxpr, num_consts):
    # reverse mode transposes the rule: t -> jvp(primals, t)[1] is linear, its VJP is the answer
    nf, nj = num_consts
    fun_k, jvp_k, args = _split(primals, nf, nj)
    outs = eval_jaxpr(fun_jaxpr, (), *fun_k, *args)
    n_out = len(outs)

    def backward(cts):
        zeros = [_zeros(a) for a in _in_avals(fun_jaxpr)[nf:]]
        diff = [False] * (nj + len(args)) + [is_float(a) for a in args]
        out_cts = [None] * n_out + [c if is_float(o) else None for c, o in zip(cts, outs)]
        in_cts = vjp_eval(jvp_jaxpr, list(jvp_k) + list(args) + zeros, diff, out_cts)
        return [zero] * (nf + nj) + in_cts[nj + len(args):]
    return outs, backward


def _cjvp_batch(vals, dims, *, fun_jaxpr, jvp_jaxpr, num_consts):
    size = batch_size(vals, dims)
    fun_k, jvp_k, args = _split([move_to_front(v, d, size) for v, d in zip(vals, dims)], *num_consts)
    (fun_b, fe), (jvp_b, je) = _batch_all(fun_jaxpr, size), _batch_all(jvp_jaxpr, size)
    outs = custom_jvp_jaxpr_p.bind(*fe, *fun_k, *je, *jvp_k, *args, fun_jaxpr=fun_b, jvp_jaxpr=jvp_b,
                                   num_consts=(len(fe) + len(fun_k), len(je) + len(jvp_k)))
    return outs, [0] * len(outs)


custom_jvp_jaxpr_p.jvp = _cjvp_jvp
custom_jvp_jaxpr_p.vjp_fwd = _cjvp_vjp_fwd
custom_jvp_jaxpr_p.batch = _cjvp_batch

_CUSTOM_CALLS = {"custom_vjp_call": _stage_custom_vjp, "custom_jvp_call": _stage_custom_jvp}


# --------------------------------------------------------------------------------------------
# jit_call: a jitted function called under another transform
# --------------------------------------------------------------------------------------------
#
# ``grad(jit(f))``, ``jvp(jit(f))``, ``vmap(jit(f))``: ``Jitted.__call__`` (jit.py) stages ``f``
# once per signature as a closed program and binds ``jit_call_p`` on it, so the transform sees
# one equation whose rules transform the *program*, each result compiled once and cached on the
# program it came from (a second ``grad(jit(f))(x)`` stages nothing):
#
# * JVP: the program's JVP over (primal, tangent) inputs, staged, called.
# * VJP: one VJP of the program, ``(ops, cts) -> ct_ops``, staged and split by partial
#   evaluation (:func:`split_vjp`): the forward call computes the outputs and the values the
#   backward part reads (the residuals), the backward call the rest: one forward and one
#   backward pass, both compiled.
# * Batching: the program vmapped (:func:`batch_jaxpr`), called.
#
# Staging (an outer ``jit``, ``make_jaxpr``, a ``fgrad.lax`` body) inlines the program instead
# of recording a call, so the outer program is optimised as a whole.

def _derived(jaxpr, key, build):
    """``build()``, cached on the program under ``key`` (the rules' programs are built once)."""
    cache = jaxpr.__dict__.setdefault("_derived", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _jit_call_impl(*ops, jaxpr, name):
    return [_as_result(o, a) for o, a in zip(_runner(jaxpr)(*ops), _out_avals(jaxpr))]


jit_call_p = Primitive("jit_call", _jit_call_impl, multiple_results=True)
jit_call_p.abstract_eval = lambda *ops, jaxpr, name: _out_avals(jaxpr)
jit_call_p.inline_when_staged = lambda *ops, jaxpr, name: eval_jaxpr(jaxpr, (), *ops)


def _jit_call_jvp(primals, tangents, *, jaxpr, name):
    # d jaxpr(ops) = the program's JVP, called on (ops, the non-zero tangents)
    nz = tuple(t is not zero and is_float(p) for p, t in zip(primals, tangents))
    in_av = _in_avals(jaxpr)
    out_f = [_is_float_aval(a) for a in _out_avals(jaxpr)]
    n = len(primals)

    def build():
        def f(*args):
            outs, outs_dot = jvp_eval(jaxpr, args[:n], _expand(args[n:], nz))
            return outs + [instantiate_zeros(t, o) for t, o, m in zip(outs_dot, outs, out_f) if m]
        return stage_body(f, in_av + _pick(in_av, nz))
    new, extra = _derived(jaxpr, ("jvp", nz), build)
    outs = jit_call_p.bind(*extra, *primals, *_pick(tangents, nz), jaxpr=new, name=f"jvp_{name}")
    return outs[:len(out_f)], _expand(outs[len(out_f):], out_f)


def split_vjp(jaxpr, diff=None):
    """``(fwd, bwd, extra)`` for the VJP of a closed program, by partial evaluation.

    One VJP, ``step(extra, ops, cts) -> ct_ops`` (the inputs marked in ``diff``, default every
    float one; every float output), is staged; an equation that reads a cotangent, or the
    result of one that does, is backward, the rest forward. ``fwd(extra, ops) -> (outs,
    residuals)`` is the program followed by the forward equations (CSE in the compiled program
    merges the two copies of the primal computation); ``bwd(extra, residuals, cts) -> ct_ops``
    is the rest, reading the residuals: the forward values the backward equations use
    (``1 - tanh^2``, the operands of each matmul).
    """
    in_av, out_av = _in_avals(jaxpr), _out_avals(jaxpr)
    if diff is None:
        diff = [_is_float_aval(a) for a in in_av]
    out_f = [_is_float_aval(a) for a in out_av]
    n = len(in_av)

    def step(*args):
        in_cts = vjp_eval(jaxpr, args[:n], diff, _expand(args[n:], out_f, None))
        return [_zeros(a) if g is zero else g for g, a in zip(_pick(in_cts, diff), _pick(in_av, diff))]
    vjp_step, extra = stage_body(step, in_av + _pick(out_av, out_f))
    e_v, op_v, ct_v = _split(vjp_step.invars, len(extra), n)
    backward = set(ct_v)
    bwd_eqns, fwd_eqns = [], []
    for e in vjp_step.eqns:
        if any(isinstance(a, Var) and a in backward for a in e.inputs):
            backward.update(e.outs)
            bwd_eqns.append(e)
        else:
            fwd_eqns.append(e)
    residuals, seen = [], set(e_v)
    for a in [a for e in bwd_eqns for a in e.inputs] + list(vjp_step.outvars):
        if isinstance(a, Var) and a not in backward and a not in seen:
            seen.add(a)
            residuals.append(a)
    rename = dict(zip(jaxpr.invars, op_v))

    def renamed(a):
        return rename.get(a, a) if isinstance(a, Var) else a
    body = [e.replace(inputs=[renamed(a) for a in e.inputs]) for e in jaxpr.eqns]
    fwd = dce(Jaxpr(e_v + op_v, [], [], body + fwd_eqns, [renamed(v) for v in jaxpr.outvars] + residuals))
    bwd = dce(Jaxpr(e_v + residuals + ct_v, [], [], bwd_eqns, vjp_step.outvars))
    return fwd, bwd, extra


def _jit_call_vjp_fwd(primals, *, tracked, jaxpr, name):
    # only the operands the tape tracks get cotangents (a step's data and labels get none)
    diff = tuple(t and _is_float_aval(a) for t, a in zip(tracked, _in_avals(jaxpr)))
    fwd, bwd, extra = _derived(jaxpr, ("vjp", diff), lambda: split_vjp(jaxpr, diff))
    outs = jit_call_p.bind(*extra, *primals, jaxpr=fwd, name=f"fwd_{name}")
    n_out = len(jaxpr.outvars)
    ans, residuals = outs[:n_out], outs[n_out:]

    def backward(cts):
        out_f = [_is_float_aval(a) for a in _out_avals(jaxpr)]
        in_cts = jit_call_p.bind(*extra, *residuals, *_pick(cts, out_f), jaxpr=bwd, name=f"bwd_{name}")
        return _expand(in_cts, diff)
    return ans, backward


_jit_call_vjp_fwd.takes_tracked = True


def _jit_call_batch(vals, dims, *, jaxpr, name):
    size = batch_size(vals, dims)
    in_b = tuple(d is not not_mapped for d in dims)
    new, extra, out_b = _derived(jaxpr, ("vmap", size, in_b),
                                 lambda: batch_jaxpr(jaxpr, size, in_b, [False] * len(jaxpr.outvars)))
    ops = [v if d is not_mapped else move_axis(v, d, 0) for v, d in zip(vals, dims)]
    outs = jit_call_p.bind(*extra, *ops, jaxpr=new, name=f"vmap_{name}")
    return outs, [0 if b else not_mapped for b in out_b]


jit_call_p.jvp = _jit_call_jvp
jit_call_p.vjp_fwd = _jit_call_vjp_fwd
jit_call_p.batch = _jit_call_batch
