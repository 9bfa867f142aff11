"""A tour of fgrad's transforms, ending with a small model trained by a pure training step.

Run ``python -m examples.tour``. Every printed derivative is checked against the closed form
or against finite differences, so the tour doubles as a sanity check of an installation.
"""
import argparse

import numpy as np

import fgrad
import fgrad.numpy as fnp


def section(title):
    print(f"\n== {title}")


def mlp_loss(params, x, y):
    """Mean squared error of a one-hidden-layer tanh network; x: (B, D), y: (B,)."""
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    pred = h @ params["w2"] + params["b2"]
    return fnp.mean((pred[:, 0] - y) ** 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    section("grad, and grad of grad")
    x = 0.7
    d1 = fgrad.grad(fnp.tanh)(x)
    d2 = fgrad.grad(fgrad.grad(fnp.tanh))(x)
    t = np.tanh(x)
    print(f"d/dx tanh({x}) = {d1:.6f}   (1 - tanh^2 = {1 - t * t:.6f})")
    print(f"d2/dx2 tanh({x}) = {d2:.6f}   (-2 tanh (1 - tanh^2) = {-2 * t * (1 - t * t):.6f})")

    section("jvp and vjp agree: <u, J v> = <J^T u, v>")
    f = lambda v: fnp.sin(v) * fnp.sum(v ** 2)   # noqa: E731
    v, tangent, u = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    _, jv = fgrad.jvp(f, (v,), (tangent,))
    _, pullback = fgrad.vjp(f, v)
    (jtu,) = pullback(u)
    print(f"<u, J v> = {u @ jv:.12f}\n<J^T u, v> = {jtu @ tangent:.12f}")

    section("Jacobians and Hessians")
    print("jacfwd(f)(v) =\n", np.round(fgrad.jacfwd(f)(v), 4))
    print("max |jacfwd - jacrev| =", np.abs(fgrad.jacfwd(f)(v) - fgrad.jacrev(f)(v)).max())
    rosen = lambda z: fnp.sum(100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)   # noqa: E731
    print("hessian(rosenbrock)([1, 1, 1]) =\n", fgrad.hessian(rosen)(np.ones(3)))

    section("per-example gradients: vmap(grad(loss), in_axes=(None, 0, 0))")
    params = {"w1": rng.normal(size=(2, 16)) * 0.5, "b1": np.zeros(16),
              "w2": rng.normal(size=(16, 1)) * 0.25, "b2": np.zeros(1)}
    xs = rng.uniform(-2, 2, size=(256, 2))
    ys = np.sin(xs[:, 0]) * np.cos(xs[:, 1])
    per_example = fgrad.vmap(fgrad.grad(lambda p, x, y: mlp_loss(p, x[None], y[None])),
                             in_axes=(None, 0, 0))(params, xs[:8], ys[:8])
    norms = np.sqrt(sum(np.sum(g.reshape(8, -1) ** 2, axis=1) for g in fgrad.tree.leaves(per_example)))
    print("gradient norm of each of the first 8 examples:", np.round(norms, 4))

    section("the program grad(loss) runs (make_jaxpr)")
    print(fgrad.make_jaxpr(fgrad.grad(lambda z: fnp.sum(fnp.sin(z) ** 2)))(np.ones(3)))

    section(f"training: {args.steps} steps of gradient descent with a pure step function")
    loss_and_grad = fgrad.value_and_grad(mlp_loss)

    def step(params, lr=0.1):
        loss, grads = loss_and_grad(params, xs, ys)
        return fgrad.tree.map(lambda p, g: p - lr * g, params, grads), loss

    first = None
    for i in range(args.steps):
        params, loss = step(params)
        first = loss if first is None else first
        if i % max(1, args.steps // 5) == 0 or i == args.steps - 1:
            print(f"step {i:4d}  loss {loss:.5f}")
    print(f"loss went from {first:.4f} to {loss:.4f}")


if __name__ == "__main__":
    main()
