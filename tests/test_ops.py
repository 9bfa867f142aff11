"""Every row of the operator table (``tests/op_table.py``) checked every way that applies to it.

For each row, hypothesis draws samples (shapes, values, static arguments) and the tests check:

* the forward pass against NumPy, values and dtypes (float32 stays float32, also through
  ``jvp``/``vjp``; a Python float does not upcast a float32 operand);
* ``fgrad.jvp`` and ``fgrad.vjp`` against ``torch.func.jvp``/``vjp`` in float64 with random
  tangents/cotangents, and against central finite differences;
* the adjoint identity ``<u, J v> = <J^T u, v>`` between fgrad's own JVP and VJP rules (the
  reverse trace is a tape of VJP rules, so this ties the two sets of rules together);
* ``fgrad.vmap`` against a Python loop, for in_axes 0, 1, -1 and None per operand and out_axes
  0, 1, -1;
* second order, ``grad(grad)`` and forward-over-reverse, against ``torch.func.grad`` twice.

Two registry tests close the loop: every primitive has every rule it needs, and every primitive
is bound by at least one row (or is tested in the file the allow-list names).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import fgrad
import fgrad.numpy as fnp
from fgrad import core
from op_table import ROWS
from torch_utils import (output_list, torch_grad_of_grad, torch_jvp, torch_vjp)

# float64 comparisons: the forward pass recomputes composites (var, logsumexp, tile) differently
# from NumPy, torch differentiates its own kernels; finite differences use a central step EPS
FORWARD_TOL = dict(rtol=1e-10, atol=1e-12)
TORCH_TOL = dict(rtol=1e-8, atol=1e-10)
FLOAT32_TOL = dict(rtol=2e-5, atol=1e-5)
FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-5, atol=1e-6)
BATCH = 3


def rows(check=None):
    """The table's rows (those where ``check`` is set), as pytest params named after the row."""
    return [pytest.param(op, id=op.name) for op in ROWS if check is None or getattr(op, check)]


def draw_sample(data, op):
    return data.draw(op.samples, label=op.name)


def float_argnums(args):
    return [i for i, a in enumerate(args) if a.dtype.kind == "f"]


def restrict(op, args, kwargs, argnums):
    """``op`` as a function of ``args[argnums]``; the other operands and the kwargs are fixed."""
    def f(*moving):
        full = list(args)
        for i, m in zip(argnums, moving):
            full[i] = m
        return op.fn(*full, **kwargs)
    return f


def rng_for(sample, salt):
    """A generator for tangents/cotangents that hypothesis replays along with the sample."""
    return np.random.default_rng([sample.seed, salt])


def random_like(rng, arrays):
    return [rng.normal(size=np.shape(a)).astype(np.asarray(a).dtype) for a in arrays]


def inner(xs, ys):
    """``sum_i <xs[i], ys[i]>`` in float64, and a scale for comparing such sums."""
    terms = [np.asarray(x, np.float64) * np.asarray(y, np.float64) for x, y in zip(xs, ys)]
    return sum(float(t.sum()) for t in terms), sum(float(np.abs(t).sum()) for t in terms)


def assert_arrays_close(got, want, what, tol):
    got, want = output_list(got), output_list(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what} #{k}: shape {g.shape}, expected {w.shape}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, equal_nan=True, err_msg=f"{what} #{k}", **tol)
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{what} #{k}")


def central_difference(f, primals, tangents):
    """``(f(x + eps v) - f(x - eps v)) / (2 eps)`` per output: the directional derivative."""
    plus = output_list(f(*[p + FD_EPS * t for p, t in zip(primals, tangents)]))
    minus = output_list(f(*[p - FD_EPS * t for p, t in zip(primals, tangents)]))
    return [(np.asarray(a) - np.asarray(b)) / (2 * FD_EPS) for a, b in zip(plus, minus)]


# ============================================================================================
# Forward pass and dtypes
# ============================================================================================

@pytest.mark.parametrize("op", rows())
@given(data=st.data())
def test_forward_matches_numpy(op, data):
    sample = draw_sample(data, op)
    with np.errstate(all="ignore"):
        want = [np.asarray(w) for w in output_list(op.ref(*sample.args, **sample.kwargs))]
        got = output_list(op.fn(*sample.args, **sample.kwargs))
    for g, w in zip(got, want):
        assert isinstance(g, (np.ndarray, np.generic)), \
            f"outside transforms fgrad.numpy returns NumPy values, got {type(g).__name__}"
        assert np.asarray(g).dtype == w.dtype, f"dtype {np.asarray(g).dtype}, NumPy gives {w.dtype}"
    assert_arrays_close(got, want, "forward", FORWARD_TOL)


@pytest.mark.parametrize("op", rows())
@given(data=st.data())
def test_float32_stays_float32(op, data):
    """float32 operands give NumPy's result dtype, and jvp/vjp keep tangents in that dtype."""
    sample = draw_sample(data, op)
    args = tuple(a.astype(np.float32) if a.dtype.kind == "f" else a for a in sample.args)
    with np.errstate(all="ignore"):
        want = [np.asarray(w) for w in output_list(op.ref(*args, **sample.kwargs))]
        got = [np.asarray(g) for g in output_list(op.fn(*args, **sample.kwargs))]
    assert [g.dtype for g in got] == [w.dtype for w in want]
    assert_arrays_close(got, want, "float32 forward", FLOAT32_TOL)
    if not op.grad:
        return
    argnums = float_argnums(args)
    f32 = restrict(op, args, sample.kwargs, argnums)
    primals = [args[i] for i in argnums]
    out, out_dot = fgrad.jvp(f32, tuple(primals), tuple(random_like(rng_for(sample, 1), primals)))
    assert [np.asarray(o).dtype for o in output_list(out)] == [w.dtype for w in want]
    assert [np.asarray(t).dtype for t in output_list(out_dot)] == [w.dtype for w in want]
    out, pullback = fgrad.vjp(f32, *primals)
    cts = random_like(rng_for(sample, 2), output_list(out))
    in_cts = pullback(cts if isinstance(out, list) else cts[0])
    assert [c.dtype for c in in_cts] == [p.dtype for p in primals]


@pytest.mark.parametrize("op", rows("python_scalar"))
@given(data=st.data())
def test_python_scalar_does_not_upcast_float32(op, data):
    x = draw_sample(data, op).args[0].astype(np.float32)
    for f in (lambda v: op.fn(v, 0.75), lambda v: op.fn(0.75, v)):
        with np.errstate(all="ignore"):
            assert np.asarray(f(x)).dtype == np.float32
            out, out_dot = fgrad.jvp(f, (x,), (np.ones_like(x),))
            assert out.dtype == out_dot.dtype == np.float32
            assert fgrad.vmap(f)(np.stack([x, x])).dtype == np.float32


# ============================================================================================
# Derivatives
# ============================================================================================

def _derivative_setup(op, data):
    sample = draw_sample(data, op)
    argnums = float_argnums(sample.args)
    assert argnums, f"row {op.name} is marked differentiable but has no float operand"
    primals = [sample.args[i] for i in argnums]
    return sample, argnums, primals, restrict(op, sample.args, sample.kwargs, argnums)


@pytest.mark.parametrize("op", rows("grad"))
@given(data=st.data())
def test_jvp_matches_torch_and_finite_differences(op, data):
    sample, argnums, primals, f = _derivative_setup(op, data)
    tangents = random_like(rng_for(sample, 1), primals)
    out, out_dot = fgrad.jvp(f, tuple(primals), tuple(tangents))
    want_out, want_dot = torch_jvp(op.torch_fn, sample.args, argnums, tangents, sample.kwargs)
    assert_arrays_close(out, want_out, "jvp primal output vs torch", TORCH_TOL)
    assert_arrays_close(out_dot, want_dot, "jvp tangent vs torch.func.jvp", TORCH_TOL)
    if op.fd:
        assert_arrays_close(out_dot, central_difference(f, primals, tangents),
                            "jvp tangent vs central differences", FD_TOL)


@pytest.mark.parametrize("op", rows("grad"))
@given(data=st.data())
def test_vjp_matches_torch_and_finite_differences(op, data):
    sample, argnums, primals, f = _derivative_setup(op, data)
    out, pullback = fgrad.vjp(f, *primals)
    outs = output_list(out)
    cts = random_like(rng_for(sample, 2), outs)
    in_cts = pullback(cts if isinstance(out, list) else cts[0])
    want_out, want_cts = torch_vjp(op.torch_fn, sample.args, argnums, cts, sample.kwargs)
    assert_arrays_close(outs, want_out, "vjp primal output vs torch", TORCH_TOL)
    assert_arrays_close(list(in_cts), want_cts, "cotangents vs torch.func.vjp", TORCH_TOL)
    if op.fd:   # <J^T u, v> against <u, (f(x + eps v) - f(x - eps v)) / 2 eps>
        v = random_like(rng_for(sample, 3), primals)
        lhs, scale = inner(in_cts, v)
        rhs, _ = inner(cts, central_difference(f, primals, v))
        assert abs(lhs - rhs) <= FD_TOL["rtol"] * scale + FD_TOL["atol"], (lhs, rhs)


@pytest.mark.parametrize("op", rows("grad"))
@given(data=st.data())
def test_adjoint_identity(op, data):
    """``<u, J v> = <J^T u, v>``: fgrad's JVP rules and VJP rules describe the same derivative."""
    sample, argnums, primals, f = _derivative_setup(op, data)
    v = random_like(rng_for(sample, 1), primals)
    out, out_dot = fgrad.jvp(f, tuple(primals), tuple(v))
    u = random_like(rng_for(sample, 2), output_list(out))
    _, pullback = fgrad.vjp(f, *primals)
    u_jv, scale1 = inner(u, output_list(out_dot))
    jtu_v, scale2 = inner(pullback(u if isinstance(out, list) else u[0]), v)
    # exact up to rounding, in the outputs' precision (astype rows have float32 outputs)
    rtol = max([1e-10] + [100 * np.finfo(np.asarray(o).dtype).eps for o in output_list(out)])
    assert abs(u_jv - jtu_v) <= rtol * (scale1 + scale2) + 1e-12, (u_jv, jtu_v)


@pytest.mark.parametrize("op", rows("grad2"))
@given(data=st.data())
def test_second_order_matches_torch(op, data):
    """Hessian-vector products of ``sum(f)``: reverse-over-reverse and forward-over-reverse."""
    sample, argnums, primals, f = _derivative_setup(op, data)
    weights = random_like(rng_for(sample, 4), primals)
    positions = tuple(range(len(primals)))

    def total(*xs):
        return sum(fnp.sum(o) for o in output_list(f(*xs)))

    first = fgrad.grad(total, argnums=positions)

    def weighted(*xs):
        return sum(fnp.sum(g * w) for g, w in zip(first(*xs), weights))

    want = torch_grad_of_grad(op.torch_fn, sample.args, argnums, weights, sample.kwargs)
    got = fgrad.grad(weighted, argnums=positions)(*primals)
    assert_arrays_close(list(got), want, "grad(grad) vs torch.func.grad twice", TORCH_TOL)
    _, hvp = fgrad.jvp(first, tuple(primals), tuple(weights))
    assert_arrays_close(list(hvp), want, "jvp(grad) vs torch.func.grad twice", TORCH_TOL)


# ============================================================================================
# Batching
# ============================================================================================

@pytest.mark.parametrize("op", rows("vmap"))
@given(data=st.data())
def test_vmap_matches_loop(op, data):
    sample = draw_sample(data, op)
    examples = [sample.args] + [sample.redraw(rng_for(sample, 10 + b)) for b in range(1, BATCH)]
    in_axes = [data.draw(st.sampled_from([0, -1, None] + ([1] if a.ndim else [])), label="in_axis")
               for a in sample.args]
    if all(ax is None for ax in in_axes):
        in_axes[0] = 0
    batched = [sample.args[i] if ax is None else np.stack([ex[i] for ex in examples], axis=ax)
               for i, ax in enumerate(in_axes)]
    with np.errstate(all="ignore"):
        per_example = [output_list(op.fn(*[ex[i] if ax is not None else sample.args[i]
                                           for i, ax in enumerate(in_axes)], **sample.kwargs))
                       for ex in examples]
        min_ndim = min(np.ndim(o) for o in per_example[0]) if per_example[0] else 0
        out_axis = data.draw(st.sampled_from([0, -1] + ([1] if min_ndim else [])), label="out_axis")
        got = fgrad.vmap(lambda *a: op.fn(*a, **sample.kwargs), in_axes=tuple(in_axes),
                         out_axes=out_axis)(*batched)
    want = [np.stack([pe[k] for pe in per_example], axis=out_axis)
            for k in range(len(per_example[0]))]
    for g, w in zip(output_list(got), want):
        assert np.asarray(g).dtype == w.dtype
    assert_arrays_close(got, want, f"vmap(in_axes={tuple(in_axes)}, out_axes={out_axis})",
                        FORWARD_TOL)


# ============================================================================================
# The primitive registry
# ============================================================================================

TESTS = Path(__file__).parent

# Primitives whose rules are exercised by their own test files instead of this table, keyed by
# a prefix of the library module that defines them (holds them as a global, or defines their
# ``impl``). The coverage test accepts a primitive no row binds only if one of its modules is
# listed here and the named file exists.
OWNED_ELSEWHERE = {
    "fgrad.primitives.linalg": "test_linalg.py",         # inv, solve, cholesky, eigh, slogdet, ...
    "fgrad.primitives.conv": "test_functional_conv.py",  # conv/pool windows and their adjoint
    "fgrad.random": "test_random.py",                    # key-consuming random_* primitives
    "fgrad.custom": "test_custom.py",                    # custom_vjp_call / custom_jvp_call
    "fgrad.primitives.control": "test_lax.py",           # scan / cond / while (fgrad.lax)
    "fgrad.primitives.complex": "test_complex.py",       # real / imag / conj (complex operands)
    "fgrad.primitives.fft": "test_fft.py",               # the fft primitive (fgrad.numpy.fft)
}


LIBRARY = ("fgrad", "fnn", "foptim")


def library_modules():
    """Every module of the library, imported (importing is what registers primitives)."""
    modules = []
    for package in LIBRARY:
        pkg = importlib.import_module(package)
        modules.append(pkg)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            modules.append(importlib.import_module(info.name))
    return modules


def all_primitives():
    """The complete registry: ``{name: primitive}`` after importing every library module."""
    library_modules()
    return dict(core.PRIMITIVES)


def modules_holding(prim, modules):
    """Names of the ``modules`` that hold ``prim`` as a global, and the one defining its impl."""
    names = {m.__name__ for m in modules if any(v is prim for v in vars(m).values())}
    impl_module = getattr(prim.impl, "__module__", None) or ""
    if impl_module.split(".")[0] in LIBRARY:
        names.add(impl_module)
    return names


def test_every_primitive_has_its_rules():
    missing = []
    for name, prim in sorted(all_primitives().items()):
        if prim.batch is None:
            missing.append(f"{name}: no batch rule")
        if prim.differentiable and prim.jvp is None:
            missing.append(f"{name}: differentiable but no jvp rule")
        if prim.differentiable and prim.vjp is None and prim.vjp_fwd is None:
            missing.append(f"{name}: differentiable but no vjp (or vjp_fwd) rule")
    assert not missing, "\n".join(missing)


def bound_primitives(op, examples=12):
    """Names of the primitives ``op`` binds, read from ``make_jaxpr`` on a few fixed samples."""
    seen = set()

    @settings(max_examples=examples, derandomize=True, database=None, phases=[Phase.generate])
    @given(op.samples)
    def collect(sample):
        jaxpr = fgrad.make_jaxpr(lambda *a: op.fn(*a, **sample.kwargs))(*sample.args)
        seen.update(eqn.prim.name for eqn in jaxpr.eqns)

    collect()
    return seen


def test_every_primitive_is_exercised_by_a_row():
    registry, library = all_primitives(), library_modules()
    covered, idle_rows = set(), []
    for op in ROWS:
        names = bound_primitives(op)
        covered |= names
        if not names:
            idle_rows.append(op.name)
    assert not idle_rows, f"rows binding no primitive (NumPy tested against itself?): {idle_rows}"
    problems = []
    for name in sorted(set(registry) - covered):
        modules = modules_holding(registry[name], library)
        owners = {f for prefix, f in OWNED_ELSEWHERE.items()
                  for m in modules if m.startswith(prefix)}
        if not owners:
            problems.append(f"{name} (in {sorted(modules)}): no row of tests/op_table.py binds it; "
                            f"add one, or list its module in OWNED_ELSEWHERE")
        elif not any((TESTS / f).exists() for f in owners):
            problems.append(f"{name}: left to {sorted(owners)}, which do(es) not exist")
    assert not problems, "\n".join(problems)
