"""A tour of fgrad's transforms, ending with a small model trained by a pure training step.

Run ``python -m examples.tour`` (a few seconds). Every printed derivative is checked: against
its closed form, against central finite differences (``fgrad.testing.numerical_jvp``), or
against the other mode of differentiation (a VJP against a JVP by ``<u, J v> = <J^T u, v>``,
``vmap`` against a Python loop). Each check prints one line, ``ok`` or ``FAILED``, with the
error it measured and the tolerance; the tour ends with the number of checks and exits with
status 1, naming every failed check, if any failed. So it doubles as a sanity check of an
installation: a broken derivative rule fails it loudly (``tests/test_tour.py`` breaks rules on
purpose to see that it does).

The error of a check is ``max |got - expected| / max(1, max |expected|)``: the absolute error
for values up to 1, the relative error for larger ones.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad.staging import eval_jaxpr
from fgrad.testing import numerical_jvp

#: Tolerances. Two exact computations in float64 differ by rounding only; central finite
#: differences with step EPS are off by about EPS^2 |f'''| (truncation) + 1e-16 |f| / EPS.
EXACT, FINITE_DIFFERENCES, EPS = 1e-12, 1e-7, 1e-5


class Checks:
    """Compares results with what they should be; each comparison prints one line."""

    def __init__(self):
        self.count = 0
        self.failures = []            # (section title, "what: detail")
        self.section = ""

    def start(self, title):
        """Begin a section of the tour: print its title; later failures are filed under it."""
        self.section = title
        print(f"\n== {title}")

    def close(self, what, got, expected, tolerance):
        """Check that ``got`` is within ``tolerance`` of ``expected`` (see the module docstring)."""
        got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
        if got.shape != expected.shape:
            return self._report(what, False, f"shape {got.shape}, expected {expected.shape}")
        error = float(np.max(np.abs(got - expected), initial=0.0)) / max(
            1.0, float(np.max(np.abs(expected), initial=0.0)))
        passed = error <= tolerance            # False for NaN
        detail = (f"error {error:.1e} (tolerance {tolerance:g})" if passed else
                  f"error {error:.1e} > tolerance {tolerance:g}")
        return self._report(what, passed, detail)

    def holds(self, what, passed, detail):
        """Record a check that is not a comparison of numbers (``detail`` says what was seen)."""
        return self._report(what, bool(passed), detail)

    def _report(self, what, passed, detail):
        self.count += 1
        print(f"  {'ok' if passed else 'FAILED'}  {what}: {detail}")
        if not passed:
            self.failures.append((self.section, f"{what}: {detail}"))
        return passed


def show(array):
    """An array on one line, 4 decimals."""
    return np.array2string(np.asarray(array), precision=4, suppress_small=True,
                           max_line_width=200)


# --------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------

def derivatives(checks, rng, args):
    checks.start("grad, and grad of grad, of a function of one number")
    x = 0.7
    t = np.tanh(x)
    print(f"f = tanh at x = {x}. In closed form, with t = tanh(x):")
    print("f' = 1 - t^2, f'' = -2 t (1 - t^2), f''' = (1 - t^2)(6 t^2 - 2)")
    closed_forms = (("grad(tanh)", fgrad.grad(fnp.tanh), 1 - t * t),
                    ("grad(grad(tanh))", fgrad.grad(fgrad.grad(fnp.tanh)), -2 * t * (1 - t * t)),
                    ("grad(grad(grad(tanh)))", fgrad.grad(fgrad.grad(fgrad.grad(fnp.tanh))),
                     (1 - t * t) * (6 * t * t - 2)))
    for name, derivative, expected in closed_forms:
        value = derivative(x)
        print(f"{name + f'({x})':<27} = {float(value):9.6f}   (closed form {expected:9.6f})")
        checks.close(f"{name} against the closed form", value, expected, EXACT)


def f_vector(v):
    """``sin(v) * sum(v^2)``: elementwise sine times a scalar, from R^n to R^n."""
    return fnp.sin(v) * fnp.sum(v ** 2)


def jacobian_of_f_vector(v):
    """Closed form: ``J[i, j] = cos(v_i) sum(v^2) [i == j] + 2 sin(v_i) v_j``."""
    return np.diag(np.cos(v) * np.sum(v ** 2)) + 2 * np.outer(np.sin(v), v)


def jvp_and_vjp(checks, rng, args):
    checks.start("jvp pushes a tangent forward (J t), vjp pulls a cotangent back (J^T u)")
    v, t, u = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    print("f(v) = sin(v) * sum(v^2), from R^3 to R^3, at a random point v, with a random tangent t")
    print("and a random cotangent u (each standard normal):")
    print(f"  v = {show(v)}   t = {show(t)}   u = {show(u)}")
    out, jt = fgrad.jvp(f_vector, (v,), (t,))
    print(f"jvp(f, (v,), (t,)) = (f(v), J t), J t = {show(jt)}")
    checks.close(f"J t against finite differences (f(v + e t) - f(v - e t)) / 2e, e={EPS:g}",
                 jt, numerical_jvp(f_vector, (v,), (t,), EPS), FINITE_DIFFERENCES)
    _, pullback = fgrad.vjp(f_vector, v)
    (jtu,) = pullback(u)
    print(f"vjp(f, v)[1](u) = J^T u = {show(jtu)}")
    print(f"<u, J t> = {u @ jt:.12f} (from jvp), <J^T u, t> = {jtu @ t:.12f} (from vjp)")
    checks.close("vjp against jvp: <J^T u, t> = <u, J t>", jtu @ t, u @ jt, EXACT)


def jacobians(checks, rng, args):
    checks.start("Jacobians and Hessians")
    v = rng.normal(size=3)
    print(f"f(v) = sin(v) * sum(v^2) as above, at a new random point v = {show(v)}.")
    print("In closed form J[i, j] = df_i/dv_j = cos(v_i) sum(v^2) [i = j] + 2 sin(v_i) v_j")
    jac_fwd = fgrad.jacfwd(f_vector)(v)
    print("jacfwd(f)(v), one jvp per column:\n", np.round(jac_fwd, 4))
    checks.close("jacfwd against the closed form", jac_fwd, jacobian_of_f_vector(v), EXACT)
    checks.close("jacrev (one vjp per row) against jacfwd", fgrad.jacrev(f_vector)(v), jac_fwd,
                 EXACT)

    def rosenbrock(z):
        return fnp.sum(100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)

    print("rosenbrock(z) = sum_i 100 (z[i+1] - z[i]^2)^2 + (1 - z[i])^2, at its minimum "
          "z = [1, 1, 1]")
    hessian = fgrad.hessian(rosenbrock)(np.ones(3))
    print("hessian(rosenbrock)(z), jacfwd of jacrev:\n", hessian)
    checks.close("hessian at [1, 1, 1] against the closed form", hessian,
                 rosenbrock_hessian(np.ones(3)), EXACT)
    z = rng.normal(size=3)
    checks.close(f"hessian at a random z = {show(z)}, closed form",
                 fgrad.hessian(rosenbrock)(z), rosenbrock_hessian(z), EXACT)


def rosenbrock_hessian(z):
    """Closed form: ``d2/dz_i^2 = 1200 z_i^2 - 400 z_{i+1} + 2 (i < n-1) + 200 (i > 0)``,
    ``d2/dz_i dz_{i+1} = -400 z_i``."""
    n = len(z)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * z[i] ** 2 - 400 * z[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] = h[i + 1, i] = -400 * z[i]
    return h


def mlp_loss(params, x, y):
    """Mean squared error of a one-hidden-layer tanh network; x: (B, D), y: (B,)."""
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    pred = h @ params["w2"] + params["b2"]
    return fnp.mean((pred[:, 0] - y) ** 2)


def regression_problem(rng):
    """A tanh network 2 -> 16 -> 1 and 256 examples of ``y = sin(x0) cos(x1)``."""
    params = {"w1": rng.normal(size=(2, 16)) * 0.5, "b1": np.zeros(16),
              "w2": rng.normal(size=(16, 1)) * 0.25, "b2": np.zeros(1)}
    xs = rng.uniform(-2, 2, size=(256, 2))
    return params, xs, np.sin(xs[:, 0]) * np.cos(xs[:, 1])


def per_example_gradients(checks, rng, args):
    checks.start("per-example gradients: vmap(grad(loss_one), in_axes=(None, 0, 0))")
    params, xs, ys = regression_problem(np.random.default_rng(args.seed + 1))
    print("net(x) = tanh(x W1 + b1) W2 + b2, a tanh network 2 -> 16 -> 1 (random weights);")
    print("loss_one(params, x, y) = (net(x) - y)^2 for ONE example x in [-2, 2]^2, "
          "y = sin(x0) cos(x1)")
    x8, y8 = xs[:8], ys[:8]

    def loss_one(p, x, y):
        return mlp_loss(p, x[None], y[None])

    per_example = fgrad.vmap(fgrad.grad(loss_one), in_axes=(None, 0, 0))(params, x8, y8)
    norms = np.sqrt(sum(np.sum(g.reshape(8, -1) ** 2, axis=1)
                        for g in fgrad.tree.leaves(per_example)))
    print("gradient norm of each of the first 8 examples:\n ", show(norms))
    loop = [fgrad.grad(loss_one)(params, x8[i], y8[i]) for i in range(8)]
    stacked = fgrad.tree.map(lambda *g: np.stack(g), *loop)
    checks.close("vmap(grad) against a Python loop of grad, example by example",
                 flat(per_example), flat(stacked), EXACT)
    batch_grad = fgrad.grad(mlp_loss)(params, x8, y8)
    checks.close("mean of the per-example gradients against grad of the mean loss",
                 flat(fgrad.tree.map(lambda g: g.mean(axis=0), per_example)), flat(batch_grad),
                 EXACT)
    direction = fgrad.tree.map(lambda p: rng.normal(size=p.shape), params)
    along = sum(np.sum(g * d) for g, d in zip(fgrad.tree.leaves(batch_grad),
                                             fgrad.tree.leaves(direction)))
    numeric = numerical_jvp(lambda p: mlp_loss(p, x8, y8), (params,), (direction,), EPS)
    checks.close("<grad of the mean loss, d> for a random d, finite differences", along,
                 numeric, FINITE_DIFFERENCES)


def flat(tree):
    """Every leaf of a pytree, flattened and concatenated."""
    return np.concatenate([np.ravel(leaf) for leaf in fgrad.tree.leaves(tree)])


def staged_program(checks, rng, args):
    checks.start("the program grad runs (make_jaxpr)")
    print("g = grad(lambda z: sum(sin(z) ** 2)), staged for z of shape (3,):")
    g = fgrad.grad(lambda z: fnp.sum(fnp.sin(z) ** 2))
    jaxpr = fgrad.make_jaxpr(g)(np.ones(3))
    print(jaxpr)
    explain_constants(jaxpr)
    z = np.array([0.5, 1.0, 1.5])
    (result,) = eval_jaxpr(jaxpr, jaxpr.consts, z)
    print(f"the program run on z = {show(z)}: {show(result)}")
    checks.close("the staged program against the closed form sin 2z", result,
                 np.sin(2 * z), EXACT)
    checks.close("the staged program against running grad itself", result, g(z), EXACT)


def explain_constants(jaxpr):
    """Say what the constants of a printed program (the names before its ';') are."""
    header = str(jaxpr).splitlines()[0]              # "{ lambda a:f64[3] ; b:f64[3]. let"
    if not jaxpr.consts or ";" not in header:
        return
    consts, inputs = header.split("lambda", 1)[1].split(". let")[0].split(";")
    names = [name.split(":")[0] for name in consts.split()]
    print(f"{inputs.split()[0].split(':')[0]} is z. The names before the ';' are constants of "
          f"the program, not inputs: values\nthat do not depend on z, which staging computed "
          f"once while tracing instead of recording how.")
    values = ", ".join(f"{name} = {show(c)}" for name, c in zip(names, jaxpr.consts))
    if len(names) == 1 and np.all(np.asarray(jaxpr.consts[0]) == 1):
        print(f"Here {values}: the cotangent 1.0 that grad starts from (d sum / d sum), "
              f"broadcast to z's\nshape by sum's VJP; the equations multiply it by "
              f"2 sin(z) cos(z), the derivative of sin(z)^2.")
    else:
        print(f"Here {values}.")


def training(checks, rng, args):
    checks.start(f"training: {args.steps} steps of gradient descent with a pure step function")
    params, xs, ys = regression_problem(np.random.default_rng(args.seed + 1))
    print(f"the network above, its mean squared error on all {len(xs)} examples as the loss, and")
    print("step(params) = (params - 0.1 grad(loss)(params), loss)")
    loss_and_grad = fgrad.value_and_grad(mlp_loss)

    def step(params, lr=0.1):
        loss, grads = loss_and_grad(params, xs, ys)
        return fgrad.tree.map(lambda p, g: p - lr * g, params, grads), loss

    first = loss = None
    for i in range(args.steps):
        params, loss = step(params)
        first = loss if first is None else first
        if i % max(1, args.steps // 5) == 0 or i == args.steps - 1:
            print(f"step {i:4d}  loss {loss:.5f}")
    if first is None:
        return
    factor = 10 if args.steps >= 200 else 1
    fell = first / loss if loss > 0 else np.inf
    checks.holds("the loss fell" + (f" at least {factor}x" if factor > 1 else ""),
                 fell > factor, f"from {first:.4f} to {loss:.4f}, {fell:.1f}x")


SECTIONS = (derivatives, jvp_and_vjp, jacobians, per_example_gradients, staged_program, training)


def run_checks(argv=None):
    """Run every section and its checks; returns the :class:`Checks` (failures included)."""
    parser = argparse.ArgumentParser(prog="python -m examples.tour",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random points and data")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    checks = Checks()
    for run_section in SECTIONS:
        try:
            run_section(checks, rng, args)
        except Exception as error:        # a broken rule may raise instead of giving a number
            checks.holds(f"section {run_section.__name__}", False,
                         f"raised {type(error).__name__}: {error}")
    return checks


def main(argv=None):
    """Run the tour; returns the exit status (0: every check passed, 1: some failed)."""
    checks = run_checks(argv)
    if not checks.failures:
        print(f"\nall {checks.count} checks ok")
        return 0
    print(f"\nFAILED {len(checks.failures)} of {checks.count} checks:")
    shown = None
    for title, failure in checks.failures:
        if title != shown:
            print(f"  in '{title}':")
            shown = title
        print(f"    {failure}")
    print(f"examples.tour: {len(checks.failures)} check(s) failed: this fgrad computes wrong "
          f"derivatives (the FAILED lines say which)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
