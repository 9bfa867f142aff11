"""NaN provenance: ``fgrad.debug_nans`` stops at the first operation that creates a NaN or an inf.

A NaN in a loss usually appears far from where it is seen: one ``log(0)`` in the forward pass,
or a ``0 / 0`` inside a derivative rule (``sqrt`` at 0, whose derivative ``1 / (2 sqrt x)`` is
infinite), and then every value downstream is NaN. Inside ``with fgrad.debug_nans():`` (or for
a whole process with ``FGRAD_DEBUG_NANS=1`` in the environment) every primitive's NumPy result
is checked, and the first one holding a NaN that none of its inputs held, or an inf where its
inputs were all finite, raises ``FloatingPointError`` naming

* the primitive that produced it and the values it got (shape, dtype, min/max, how many are
  not finite);
* the pass it ran in: the forward pass, the backward pass of reverse mode (``grad``/``vjp``,
  naming the primitive whose VJP rule was running, or the ``custom_vjp`` rule), forward mode
  (the JVP rule of a primitive), and the transforms around it (``vmap`` ...);
* the line of the user's code that applied the operation: for the backward pass, the line
  recorded when the operation was traced in the forward pass.

>>> import numpy as np, fgrad, fgrad.numpy as fnp
>>> with fgrad.debug_nans():
...     fgrad.grad(lambda x: fnp.sum(fnp.sqrt(x)))(np.zeros(3))   # doctest: +SKIP
FloatingPointError: fgrad.debug_nans: div produced inf ... in the backward pass of reverse
mode (grad / vjp), in the VJP rule of sqrt; sqrt was applied at ...

How it works: :func:`fgrad.core.bind` hands every primitive to the hook installed here while
the check is on (``fgrad.core._debug_hook``; ``None`` when off, so the cost when off is one
global test per ``bind``: measured against the previous ``bind`` in one process, 300-op chains
of ``benchmarks/bench_overhead`` took 17.01 against 16.96 us/op under ``grad``, 1.50 against
1.49 us/op with no transform, within noise). When on, ``grad`` costs about five times as much
per operation (the line of each traced operation is read from the stack). Every rule's
arithmetic reaches NumPy through ``bind``'s fast path, so checking there covers forward ops,
VJP rules, JVP rules and batching rules alike; the pass is read from the Python stack only when
a check fails. Tracing an operation under reverse mode records the user's line for its tape
node, which the backward pass's message reports.

As in JAX, the check runs eagerly, operation by operation: a ``where`` that computes
``log(x)`` for every ``x`` and keeps only the positive ones raises on the discarded
``log(0)``; write ``fnp.log(fnp.where(x > 0, x, 1.0))`` inside the ``where`` instead (that
also keeps the gradient finite). A ``jit``-compiled function runs eagerly while the check is on
(as JAX re-runs a jitted function op by op), so that every operation is seen. Turn the check on
around the forward and the backward pass together: a tape recorded while it was off has no
recorded lines, and its rules' NumPy partials are not checked.
"""
from __future__ import annotations

import contextlib
import linecache
import os
import sys

import numpy as np

from . import core

__all__ = ["debug_nans"]


@contextlib.contextmanager
def debug_nans(enabled=True):
    """Raise ``FloatingPointError`` at the first operation that creates a NaN or an inf.

    A context manager (and, like every ``contextlib`` context manager, a decorator)::

        with fgrad.debug_nans():
            loss, grads = fgrad.value_and_grad(loss_fn)(params, batch)

    ``debug_nans(False)`` turns the check off inside an enclosing ``debug_nans()``. Setting
    ``FGRAD_DEBUG_NANS=1`` in the environment turns it on for the whole process. See the
    module docstring for what the error names, and the cost (none when off).
    """
    previous = core._debug_hook
    if enabled:
        core._debug_hook = previous if previous is not None else _NanChecker()
    else:
        core._debug_hook = None
    try:
        yield
    finally:
        core._debug_hook = previous


# --------------------------------------------------------------------------------------------
# The hook bind calls
# --------------------------------------------------------------------------------------------

class _NanChecker:
    """What ``bind`` calls while the check is on; ``sites`` maps a tape node (by id) to the
    primitive it applied and the user's line that traced it."""

    def __init__(self):
        self.sites = {}

    def run_impl(self, prim, args, params):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # reported below
            out = prim.impl(*args, **params)
        for o in (out if prim.multiple_results else (out,)):
            if _creates_nonfinite(o, args):
                raise FloatingPointError(_report(self, f"{prim.name} produced", args, o))
        return out

    def process(self, trace, prim, args, params):
        # NumPy's warnings are superseded by the report (rules may run NumPy directly)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = trace.process_primitive(prim, args, params)
        ours = [o for o in (out if prim.multiple_results else (out,))
                if isinstance(o, core.Tracer) and o._trace is trace]
        if not ours:
            return out
        node = getattr(ours[0], "node", None)
        if node is not None and getattr(node, "prim", None) is prim:        # reverse mode
            if len(self.sites) > 1_000_000:   # ids of dead nodes are reused; keep memory bounded
                self.sites.clear()
            self.sites[id(node)] = (prim, _user_frame(sys._getframe(1)))
            self._check_backward_of(node)
        elif hasattr(ours[0], "tangent"):                                    # forward mode
            self._check_tangents(trace, prim, args, params, ours)
        return out

    # Rules may compute a partial derivative with NumPy directly (``0.5 / ans`` for sqrt, when
    # the values are concrete), which no bind sees; so the cotangents and tangents a rule
    # returns are checked too.

    def _check_backward_of(self, node):
        """Make ``node``'s backward step check the cotangents its rule returns."""
        prim = node.prim
        if node.backward is not None:
            compute = node.backward                          # custom_vjp, checkpoint
        else:
            rules = prim.vjp
            if isinstance(rules, tuple) and all(rule is None for rule in rules):
                return                                       # piecewise constant: no cotangents
            from .vjp import _rule_cts
            view = _NodeView(node)                           # no reference cycle through node

            def compute(g):
                return _rule_cts(view, g)
        primals, ans, rule = node.primals, node.ans, _rule_name(node)

        def backward(g):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                cts = compute(g)
            inputs = [*(g if isinstance(g, list) else [g]),
                      *(ans if isinstance(ans, list) else [ans]), *primals]
            for i, ct in enumerate(cts):
                if ct is not None and ct is not core.zero and _creates_nonfinite(ct, inputs):
                    raise FloatingPointError(_report(
                        self, f"{rule} returned, for operand #{i},", inputs, ct,
                        labels=_rule_input_labels(g, ans, primals)))
            return cts
        node.backward = backward

    def _check_tangents(self, trace, prim, args, params, outs):
        inputs, labels = [], []
        for i, x in enumerate(args):
            if isinstance(x, core.Tracer) and x._trace is trace:
                inputs += [x.primal, x.tangent]
                labels += [f"operand #{i}", f"tangent of operand #{i}"]
            else:
                inputs.append(x)
                labels.append(f"operand #{i}")
        rule = getattr(params.get("jvp"), "rule_name", None) or f"the JVP rule of {prim.name}"
        for o in outs:
            if _creates_nonfinite(o.tangent, inputs):
                raise FloatingPointError(_report(
                    self, f"{rule} returned a tangent with", inputs, o.tangent, labels=labels,
                    where=f"forward mode (jvp / jacfwd), in {rule}",
                    rule_fn=getattr(params.get("jvp"), "user_rule", None)))


class _NodeView:
    """The fields of a tape node that ``vjp._rule_cts`` reads, held without the node."""

    __slots__ = ("prim", "params", "primals", "ans", "parents")

    def __init__(self, node):
        self.prim, self.params, self.primals = node.prim, node.params, node.primals
        self.ans, self.parents = node.ans, node.parents


def _rule_input_labels(g, ans, primals):
    n_g = len(g) if isinstance(g, list) else 1
    n_ans = len(ans) if isinstance(ans, list) else 1
    return ([f"cotangent of output #{i}" for i in range(n_g)]
            + [f"output #{i}" for i in range(n_ans)]
            + [f"operand #{i}" for i in range(len(primals))])


def _float_array(x):
    if isinstance(x, (np.ndarray, np.generic, float, complex)) and not isinstance(x, bool):
        a = np.asarray(x)
        if a.dtype.kind in "fc":
            return a
    return None


def _creates_nonfinite(out, inputs):
    a = _float_array(out)
    if a is None or np.isfinite(a).all():
        return False
    if np.isnan(a).any() and not any(_has(np.isnan, x) for x in inputs):
        return True
    return bool(np.isinf(a).any()) and not any(_has(lambda v: ~np.isfinite(v), x) for x in inputs)


def _has(test, x):
    a = _float_array(x)
    return a is not None and bool(test(a).any())


# --------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------

_FGRAD_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dirs():
    dirs = [_FGRAD_DIR]
    for name in ("fnn", "foptim"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(dirs)


def _user_frame(frame):
    """``(file, line, function)`` of the innermost frame outside fgrad/fnn/foptim and contextlib."""
    library = _library_dirs()
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(library) and not filename.startswith("<") \
                and os.path.basename(filename) not in ("contextlib.py", "functools.py"):
            return filename, frame.f_lineno, frame.f_code.co_name
        frame = frame.f_back
    return None


def _fmt_site(site):
    if site is None:
        return "an unknown line"
    filename, line, function = site
    text = linecache.getline(filename, line).strip()
    return f"{filename}:{line} in {function}" + (f": `{text}`" if text else "")


def _context(checker, frame):
    """Where the failing operation ran, read from the stack (innermost first): reverse-mode
    backward passes, JVP rules and batching rules around it. Returns the descriptions and the
    recorded ``(primitive, site)`` of the innermost backward pass's node, if any."""
    from .jvp import JVPTrace          # (fgrad.vjp etc. are the functions, not the modules)
    from .vjp import VJPTrace, backward_pass
    from .vmap import BatchTrace
    backward = backward_pass.__code__
    labels = {JVPTrace.process_primitive.__code__: "forward mode (jvp / jacfwd), in the JVP rule of {}",
              BatchTrace.process_primitive.__code__: "vmap, in the batching rule of {}",
              VJPTrace.process_primitive.__code__: "the forward pass of reverse mode (grad / vjp), "
                                                   "applying {}"}
    where, site = [], None
    while frame is not None:
        code = frame.f_code
        if code is backward:
            node = frame.f_locals.get("node")
            where.append(f"the backward pass of reverse mode (grad / vjp), in {_rule_name(node)}")
            recorded = checker.sites.get(id(node))
            if site is None and recorded is not None and recorded[0] is getattr(node, "prim", None):
                site = recorded + ((getattr(node, "params", None) or {}).get("bwd"),)
        elif code in labels:
            prim = frame.f_locals.get("prim")
            label = labels[code].format(getattr(prim, "name", "?"))
            if not (where and label == where[-1]):
                where.append(label)
        frame = frame.f_back
    return where, site


def _rule_name(node):
    prim = getattr(node, "prim", None)
    if prim is None:
        return "a rule"
    params = getattr(node, "params", None) or {}
    rule = getattr(params.get("bwd"), "rule_name", None)
    return rule or f"the VJP rule of {prim.name}"


def _summary(x):
    if isinstance(x, core.Tracer):
        return f"{type(x).__name__} {np.dtype(x.dtype).name}{list(x.shape)} (values not known here)"
    a = _float_array(x)
    if a is None:
        arr = np.asarray(x)
        return f"{arr.dtype.name}{list(arr.shape)}"
    finite = np.isfinite(a)
    bad = int(a.size - np.count_nonzero(finite))
    if finite.any():
        values = a[finite].real if a.dtype.kind == "c" else a[finite]
        span = f"min {values.min():.6g}, max {values.max():.6g}"
    else:
        span = "no finite values"
    extra = f" ({int(np.isnan(a).sum())} NaN, {int(np.isinf(a).sum())} inf)" if bad else ""
    return f"{a.dtype.name}{list(a.shape)}: {span}, {bad} not finite{extra}"


def _report(checker, what, inputs, out, labels=None, where=None, rule_fn=None):
    a = np.asarray(out)
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    found = " and ".join(s for s in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "") if s)
    known = [x for x in inputs if _float_array(x) is not None]
    if any(_has(np.isinf, x) for x in known):
        source = "from inputs that hold inf but no NaN"
    else:
        source = "from finite inputs"
    frame = sys._getframe(1)
    found_where, site = _context(checker, frame)
    where = ([where] if where else []) + found_where
    lines = [f"fgrad.debug_nans: {what} {found} (of {a.size} values, {a.dtype.name}"
             f"{list(a.shape)}), {source}",
             "  in " + ("\n  inside ".join(where) if where else "the forward pass (no transform)")]
    stack = [t.transform_name for t in core._trace_stack]
    if stack:
        lines.append(f"  transforms active (outermost first): {', '.join(stack)}")
    if site is not None:
        lines.append(f"  {site[0].name} was applied (traced) at {_fmt_site(site[1])}")
        rule_fn = rule_fn or getattr(site[2], "user_rule", None)
    code = getattr(rule_fn, "__code__", None)
    if code is not None:
        lines.append(f"  the rule is {code.co_name}, defined at {code.co_filename}:"
                     f"{code.co_firstlineno}")
    current = _user_frame(frame)
    if current is not None and (site is None or current != site[1]):
        label = "running from" if site is not None else "applied at"
        lines.append(f"  {label} {_fmt_site(current)}")
    lines.append("  inputs:")
    labels = labels or [f"#{i}" for i in range(len(inputs))]
    lines.extend(f"    {label}: {_summary(x)}" for label, x in zip(labels, inputs))
    return "\n".join(lines)


if os.environ.get("FGRAD_DEBUG_NANS", "").strip().lower() not in ("", "0", "false", "no", "off"):
    core._debug_hook = _NanChecker()
