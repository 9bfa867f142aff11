"""Reverse mode: a tape of per-primitive VJP rules (as HIPS autograd and torch.func).

Why a tape and not JAX's JVP + partial evaluation + transposition: reverse mode from a tape
needs no linearity analysis and no transpose rules, costs one small :class:`Node` per operation
(the per-op overhead the benchmarks measure), and keeps every primitive's VJP written out as
math beside its JVP. The JVP rules stay independently checked: ``jvp``, ``jacfwd`` and
``hessian`` use them, and the test-suite compares both modes with ``torch.func`` and with each
other through the adjoint identity ``<u, J v> = <J^T u, v>``.

How it works. Under ``vjp`` every differentiable value is a :class:`VJPTracer` that remembers
the :class:`Node` (primitive application) that produced it. ``backward_pass`` walks the nodes
from the outputs to the inputs in reverse creation order, which is a reverse topological order
(a heap on ``Node.seq``; an iterative walk, no recursion limit), calling each primitive's VJP
rule on the cotangent of its output. The rules run through
:func:`~fgrad.core.bind` like any other code, so if the primal values are tracers of an outer
transform the backward pass is itself traced: ``grad(grad(f))`` and ``vmap(grad(f))`` need no
special cases.
"""
from __future__ import annotations

import heapq
import itertools

from . import core as _core
from . import numpy as fnp   # partly initialised while fgrad.numpy imports the primitives (which
#                              import this module); used in functions only, where an import
#                              statement would cost ~2 us a call (unbroadcast, _fit)
from .core import Trace, Tracer, bind, dtype_of, instantiate_zeros, is_float, shape_of, zero
from .errors import MissingRuleError

__all__ = ["VJPTrace", "VJPTracer", "Node", "backward_pass", "unbroadcast"]

#: Creation order of tape nodes. A node's operands always exist before it, so a parent's
#: ``seq`` is smaller than every consumer's: the backward pass visits nodes in decreasing
#: ``seq`` (torch's autograd orders its ready queue the same way) and needs no topological sort.
_next_seq = itertools.count().__next__
_new = object.__new__


class Node:
    """One primitive application on the tape.

    ``parents[i]`` is ``(node, output_index)`` for operands this trace tracks, else ``None``.
    ``backward`` is set by primitives with a ``vjp_fwd`` hook (custom_vjp, checkpoint).
    ``seq`` is the creation order (see ``_next_seq``).
    """

    __slots__ = ("prim", "params", "primals", "ans", "parents", "backward", "seq")

    def __init__(self, prim, params, primals, ans, parents, backward=None):
        self.prim = prim
        self.params = params
        self.primals = primals
        self.ans = ans
        self.parents = parents
        self.backward = backward
        self.seq = _next_seq()


class VJPTracer(Tracer):
    __slots__ = ("primal", "node", "index")

    def __init__(self, trace, primal, node, index=None):
        self._trace = trace
        self.primal = primal
        self.node = node
        self.index = index  # which output of a multiple-result primitive, else None

    @property
    def shape(self):
        return shape_of(self.primal)

    @property
    def dtype(self):
        return dtype_of(self.primal)

    def concrete_value(self):
        p = self.primal
        return p.concrete_value() if isinstance(p, Tracer) else p


class VJPTrace(Trace):
    transform_name = "vjp"

    def new_input(self, primal):
        """A leaf of the tape: one of the values we differentiate with respect to."""
        return VJPTracer(self, primal, Node(None, None, (), None, ()))

    def process_primitive(self, prim, args, params):
        # This runs once per traced op, so it is kept to one loop and direct calls: bind()
        # rather than prim.bind(), NumPy itself at the bottom trace, is_float's fast path.
        # Forward pass of bench_overhead's chain under grad: 9.3 -> 6.8 us per op.
        primals, parents = [], []
        for x in args:
            if type(x) is VJPTracer and x._trace is self:
                primals.append(x.primal)
                parents.append((x.node, x.index))
            else:
                primals.append(x)
                parents.append(None)
        if not prim.differentiable:
            return bind(prim, *primals, **params)
        if prim.vjp_fwd is not None:
            if getattr(prim.vjp_fwd, "takes_tracked", False):
                # the rule builds its backward pass for the operands the tape tracks only (a
                # jit_call's program: no cotangent of the data, only of the parameters)
                params = dict(params, tracked=tuple(p is not None for p in parents))
            ans, backward = prim.vjp_fwd(primals, **params)
        else:
            if prim.vjp is None:
                raise MissingRuleError(f"primitive {prim.name} has no VJP rule, so reverse mode "
                                       f"cannot handle it; define prim.vjp beside its impl")
            if self.level == 0 and _core._debug_hook is None:
                # The bottom trace: no operand can be a tracer of a lower one (bind already
                # rejected leaked ones), so run NumPy without a second bind (saves ~0.4 us/op).
                ans = prim.impl(*primals, **params)
            else:
                ans = bind(prim, *primals, **params)
            backward = None
        # Node(...) and VJPTracer(...) built inline: object.__new__ and the slot stores skip two
        # __init__ calls (~0.6 us of bench_overhead's ~16 us per op).
        node = _new(Node)
        node.prim, node.params, node.primals, node.ans = prim, params, primals, ans
        node.parents, node.backward, node.seq = parents, backward, _next_seq()
        if prim.multiple_results:
            return [VJPTracer(self, a, node, i) if is_float(a) else a for i, a in enumerate(ans)]
        try:
            tracked = ans.dtype.kind in "fc"     # is_float for arrays and tracers, inline
        except AttributeError:
            tracked = is_float(ans)
        if not tracked:
            return ans
        out = _new(VJPTracer)
        out._trace, out.primal, out.node, out.index = self, ans, node, None
        return out


def _add_ct(cts, node, index, ct):
    """Add ``ct`` to ``node``'s cotangent; True when it is the node's first."""
    if index is None:
        old = cts.get(node)
        cts[node] = ct if old is None else old + ct
        return old is None
    slots = cts.get(node)
    first = slots is None
    if first:
        slots = cts[node] = [zero] * len(node.ans)
    slots[index] = ct if slots[index] is zero else slots[index] + ct
    return first


def backward_pass(outputs, out_cts):
    """Propagate cotangents from ``outputs`` (VJPTracers) to the leaves; ``{leaf_node: ct}``.

    Nodes are visited in decreasing creation order (a max-heap on ``Node.seq``): every
    consumer of a node was created after it, so each node's cotangent is complete when it is
    popped. A node enters the heap when its first non-zero cotangent arrives, so nodes that
    only ever receive zeros are never visited.
    """
    cts = {}
    heap = []
    push, pop = heapq.heappush, heapq.heappop
    for out, ct in zip(outputs, out_cts):
        if ct is zero:
            continue
        if _add_ct(cts, out.node, out.index, ct):
            push(heap, (-out.node.seq, out.node))
    leaf_cts = {}
    while heap:
        node = pop(heap)[1]
        g = cts.pop(node)
        prim = node.prim
        if prim is None:
            leaf_cts[node] = g
            continue
        if type(g) is list:  # multiple results: rules see every output's cotangent
            g = [instantiate_zeros(c, a) for c, a in zip(g, node.ans)]
        if node.backward is not None:
            in_cts = node.backward(g)
        else:
            rules = prim.vjp
            if type(rules) is tuple:
                # Fast path: the per-operand rules called here rather than through _rule_cts,
                # with _fit's and _add_ct's common cases inline (a cotangent that already has
                # its primal's shape and dtype, a single-output parent). With the heap instead
                # of a topological sort, the backward pass of bench_overhead's chain went from
                # 13.4 to 6.7 us per op (7.5 before inlining).
                ans, primals, params = node.ans, node.primals, node.params
                for rule, parent, primal in zip(rules, node.parents, primals):
                    if parent is None or rule is None:
                        continue
                    ct = rule(g, ans, *primals, **params)
                    if ct is zero or ct is None:
                        continue
                    try:
                        if ct.shape != primal.shape or ct.dtype != primal.dtype:
                            ct = _fit(ct, primal)
                    except AttributeError:       # a Python scalar
                        ct = _fit(ct, primal)
                    p_node, index = parent
                    if index is None:
                        old = cts.get(p_node)
                        if old is None:
                            cts[p_node] = ct
                            push(heap, (-p_node.seq, p_node))
                        else:
                            cts[p_node] = old + ct
                    elif _add_ct(cts, p_node, index, ct):
                        push(heap, (-p_node.seq, p_node))
                continue
            in_cts = _rule_cts(node, g)
        for parent, primal, ct in zip(node.parents, node.primals, in_cts):
            if parent is None or ct is zero or ct is None:
                continue
            if _add_ct(cts, parent[0], parent[1], _fit(ct, primal)):
                push(heap, (-parent[0].seq, parent[0]))
    return leaf_cts


def _rule_cts(node, g):
    """The cotangent of each operand of ``node`` (``zero`` for untracked ones) from its rules."""
    rules = node.prim.vjp
    if callable(rules):  # variadic primitives (concatenate) give the rule for operand i
        rules = [rules(i) for i in range(len(node.parents))]
    return [rule(g, node.ans, *node.primals, **node.params)
            if parent is not None and rule is not None else zero
            for rule, parent in zip(rules, node.parents)]


def _fit(ct, primal):
    """Bring a cotangent to its primal's shape and dtype (undo broadcasting and promotion)."""
    # Fast path (most cotangents already fit): compare the attributes directly instead of
    # normalising both through shape_of/dtype_of (cProfile, 50-step LSTM grad: 18 -> 12.5 ms).
    try:
        if ct.shape == primal.shape and ct.dtype == primal.dtype:
            return ct
    except AttributeError:   # Python scalars: take the general path
        pass
    shape = shape_of(primal)
    if shape_of(ct) != shape:
        ct = unbroadcast(ct, shape)
    dt = dtype_of(primal)
    if dtype_of(ct) != dt:
        if dtype_of(ct).kind == "c" and dt.kind != "c":
            # a real operand of a complex op (x * z): the transpose of R -> C is the real part
            ct = fnp.real(ct)
        ct = ct.astype(dt)
    return ct


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added to an operand of ``shape``.

    The VJP of broadcasting is summation: if ``x`` of shape (3, 1) was broadcast to (2, 3, 4),
    its cotangent is ``g.sum(axis=(0, 2)).reshape(3, 1)``.
    """
    g_shape = shape_of(g)
    lead = len(g_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g_shape[lead + i] != 1)
    if axes:
        g = fnp.sum(g, axis=axes)
    if shape_of(g) != tuple(shape):
        g = fnp.reshape(g, shape)
    return g
