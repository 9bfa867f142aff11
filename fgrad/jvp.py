"""Forward mode: the JVP trace carries a tangent beside every primal value.

A :class:`JVPTracer` holds ``(primal, tangent)``. When a primitive sees one, the trace calls
the primitive's ``jvp`` rule on the primal and tangent values (the tangent of a constant is
the symbolic :data:`~fgrad.core.zero`), and wraps the results in new tracers. Outputs with a
zero tangent, or a non-float dtype, are returned unwrapped: they are constants to this trace.

Rules are written in fgrad operations, so a primal or tangent may itself be a tracer of a lower
trace; this is what lets ``jvp(grad(f))`` compute Hessian-vector products.
"""
from __future__ import annotations

from . import numpy as fnp   # partly initialised while fgrad.numpy imports the primitives (which
#                              import this module); used in functions only
from .core import Trace, Tracer, bind, dtype_of, is_float, shape_of, zero
from .errors import MissingRuleError

__all__ = ["JVPTrace", "JVPTracer", "defjvp", "defjvp_zero", "sum_tangents"]


class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, trace, primal, tangent):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent

    @property
    def shape(self):
        return shape_of(self.primal)

    @property
    def dtype(self):
        return dtype_of(self.primal)

    def concrete_value(self):
        p = self.primal
        return p.concrete_value() if isinstance(p, Tracer) else p


class JVPTrace(Trace):
    transform_name = "jvp"

    def process_primitive(self, prim, args, params):
        primals, tangents, nonzero = [], [], False
        for x in args:
            if type(x) is JVPTracer and x._trace is self:
                primals.append(x.primal)
                tangents.append(x.tangent)
                nonzero = nonzero or x.tangent is not zero
            else:
                primals.append(x)
                tangents.append(zero)
        if not nonzero or not prim.differentiable:
            return bind(prim, *primals, **params)
        if prim.jvp is None:
            raise MissingRuleError(f"primitive {prim.name} has no JVP rule, so forward mode "
                                   f"cannot handle it; define prim.jvp beside its impl")
        primal_out, tangent_out = prim.jvp(primals, tangents, **params)
        if prim.multiple_results:
            return [self.wrap(p, t) for p, t in zip(primal_out, tangent_out)]
        return self.wrap(primal_out, tangent_out)

    def wrap(self, primal, tangent):
        if tangent is zero or not is_float(primal):
            return primal
        try:   # fast path, most tangents: already the primal's shape and dtype
            if tangent.shape == primal.shape and tangent.dtype == primal.dtype:
                return JVPTracer(self, primal, tangent)
        except AttributeError:   # a Python scalar: the general path
            pass
        # Rules may return a tangent that is still broadcast-compatible (d(x + y) = x_dot when
        # only x varies) or promoted by a float64 constant; bring it to the primal's aval here,
        # once, instead of in every rule.
        if shape_of(tangent) != shape_of(primal):
            tangent = fnp.broadcast_to(tangent, shape_of(primal))
        if dtype_of(tangent) != dtype_of(primal):
            if dtype_of(tangent).kind == "c" and dtype_of(primal).kind != "c":
                tangent = fnp.real(tangent)   # a real output's tangent is real
            tangent = tangent.astype(dtype_of(primal))
        return JVPTracer(self, primal, tangent)


def sum_tangents(ts):
    """Add up tangent contributions, skipping symbolic zeros."""
    out = zero
    for t in ts:
        if t is not zero:
            out = t if out is zero else out + t
    return out


def defjvp(prim, *per_operand):
    """Give ``prim`` a JVP rule that is linear in each operand's tangent.

    ``per_operand[i](x_dot_i, ans, *primals, **params)`` is the contribution of operand ``i``'s
    tangent (``None`` for operands that carry none); the output tangent is their sum. This is
    the shape of almost every rule: ``d(x * y) = x_dot * y + x * y_dot``.
    """
    def jvp_rule(primals, tangents, **params):
        ans = bind(prim, *primals, **params)
        out = zero       # sum_tangents, inline: a loop instead of a generator (once per op)
        for f, t in zip(per_operand, tangents):
            if t is not zero and f is not None:
                t_out = f(t, ans, *primals, **params)
                if t_out is not zero:
                    out = t_out if out is zero else out + t_out
        return ans, out
    prim.jvp = jvp_rule
    return prim


def defjvp_zero(prim):
    """A primitive whose output is piecewise constant in its inputs (floor, sign, round)."""
    def jvp_rule(primals, tangents, **params):
        return prim.bind(*primals, **params), zero
    prim.jvp = jvp_rule
    return prim
