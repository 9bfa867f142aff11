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
  compute is one forward and one backward pass. The cotangents of the consts are accumulated
  for every float const, tracked or not (the rule is not told which operands the tape tracks).
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
from ..staging import (Jaxpr, ShapedArray, StagingTrace, Var, atom_aval, dce, eval_jaxpr,
                       stage_closed)
from ..vmap import batch_size, move_axis, not_mapped

__all__ = ["scan_p", "cond_p", "while_p", "BodyTrace", "stage_body", "jvp_eval", "vjp_eval",
           "batch_eval", "join_branches", "WHILE_GRAD_MESSAGE"]


class BodyTrace(StagingTrace):
    """The staging trace of a control-flow body (errors say ``fgrad.lax.scan(body)``)."""

    transform_name = "fgrad.lax"

    def context(self):
        return "fgrad.lax" if self.fun_name is None else f"fgrad.lax.{self.fun_name}"


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
    return aval.dtype.kind == "f"


def _pick(values, mask):
    return [v for v, m in zip(values, mask) if m]


def _runner(jaxpr):
    """The function that runs a body program: jit's generated code (cached on the program),
    or ``eval_jaxpr`` through ``bind`` while fgrad.debug_nans is on."""
    if core._debug_hook is not None:
        return lambda *args: eval_jaxpr(jaxpr, (), *args)
    compiled = getattr(jaxpr, "_compiled", None)
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
    run = _runner(jaxpr)
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


def _scan_vjp_fwd(primals, *, jaxpr, num_consts, num_carry, length, reverse):
    # One step's VJP, (consts, carry_i, x_i, ct_carry_out, ct_y_i) -> (ct_consts, ct_carry_in,
    # ct_x_i), staged once and split by partial evaluation: what does not depend on cotangents
    # runs in the forward scan, which stacks the values the rest needs (the residuals); the
    # backward scan runs the rest in the opposite direction, ct_consts summed in its carry.
    nc, ncar = num_consts, num_carry
    consts, init, xs = _split(primals, nc, ncar)
    step, extra, res_avals = _scan_vjp_step(jaxpr, nc, ncar, len(xs))
    fwd, bwd, n_res = step
    outs = scan_p.bind(*extra, *primals, jaxpr=fwd, num_consts=len(extra) + nc, num_carry=ncar,
                       length=length, reverse=reverse)
    n_out = len(jaxpr.outvars)
    ans, residuals = outs[:n_out], outs[n_out:]

    def backward(cts):
        k_av, c_av, x_av = _split(_in_avals(jaxpr), nc, ncar)
        y_av = _out_avals(jaxpr)[ncar:]
        k_f, c_f = [_is_float_aval(a) for a in k_av], [_is_float_aval(a) for a in c_av]
        x_f, y_f = [_is_float_aval(a) for a in x_av], [_is_float_aval(a) for a in y_av]
        acc0 = [_zeros(a) for a in _pick(k_av, k_f)]
        operands = extra + consts + acc0 + _pick(cts[:ncar], c_f) + residuals + _pick(cts[ncar:], y_f)
        outs = scan_p.bind(*operands, jaxpr=bwd, num_consts=len(extra) + nc,
                           num_carry=sum(k_f) + sum(c_f), length=length, reverse=not reverse)
        k_ct, c_ct, x_ct = _split(outs, sum(k_f), sum(c_f))
        return _expand(k_ct, k_f) + _expand(c_ct, c_f) + _expand(x_ct, x_f)
    return ans, backward


_INVARIANT, _FORWARD, _BACKWARD = 0, 1, 2


def _scan_vjp_step(jaxpr, nc, ncar, nx):
    """``((fwd, bwd, n_res), extra_consts, residual avals)`` for the VJP of a scan body.

    ``fwd(extra, consts, carry, x) -> (carry, y, *residuals)`` is the body followed by the
    cotangent-free part of one step's VJP (CSE in the compiled body merges the two copies of
    the primal computation); ``bwd(extra, consts, acc, ct_carry, *residuals, ct_y) -> (acc +
    ct_consts, ct_carry_in, ct_x)`` is the rest. Equations that read only consts (``w.T``) go to
    both, so that no loop-invariant value is stacked per step.
    """
    k_av, c_av, x_av = _split(_in_avals(jaxpr), nc, ncar)
    y_av = _out_avals(jaxpr)[ncar:]
    k_f, c_f = [_is_float_aval(a) for a in k_av], [_is_float_aval(a) for a in c_av]
    x_f, y_f = [_is_float_aval(a) for a in x_av], [_is_float_aval(a) for a in y_av]
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
    return [_as_result(o, a) for o, a in zip(_runner(jaxpr)(*ops), _out_avals(jaxpr))]


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
    cond_run, body_run = _runner(cond_jaxpr), _runner(body_jaxpr)
    while cond_run(*cond_consts, *carry)[0]:
        carry = body_run(*body_consts, *carry)
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
