"""Per-example gradients of an MLP: ``vmap(grad(loss))`` vs the same gradients hand-written in NumPy.

A 784-128-10 tanh MLP with a softmax cross-entropy loss, batch 64 (the issue's benchmark).
The NumPy version is what one writes by hand: forward, then backward with per-example outer
products. Both are timed in the same process and checked to agree to 1e-12.

    python -m benchmarks.bench_per_example
"""
import argparse

import numpy as np

import fgrad
import fgrad.numpy as fnp
from benchmarks._timing import best_time, print_table


def init(rng, d_in, hidden, classes):
    return {"w1": rng.normal(size=(d_in, hidden)) * d_in ** -0.5, "b1": np.zeros(hidden),
            "w2": rng.normal(size=(hidden, classes)) * hidden ** -0.5, "b2": np.zeros(classes)}


def loss(params, x, y):
    """Cross-entropy of one example (x: (784,), y: int)."""
    h = fnp.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    return fnp.logsumexp(logits) - logits[y]


def numpy_per_example_grads(params, x, y):
    h = np.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    d_logits = e / e.sum(1, keepdims=True)
    d_logits[np.arange(len(y)), y] -= 1
    d_h = d_logits @ params["w2"].T * (1 - h * h)
    return {"w1": x[:, :, None] * d_h[:, None, :], "b1": d_h,
            "w2": h[:, :, None] * d_logits[:, None, :], "b2": d_logits}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    params = init(rng, 784, args.hidden, 10)
    x = rng.normal(size=(args.batch, 784))
    y = rng.integers(0, 10, size=args.batch)
    per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))
    got, want = per_example(params, x, y), numpy_per_example_grads(params, x, y)
    err = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    assert err < 1e-12, f"vmap(grad) disagrees with the hand-written gradients by {err}"
    t_numpy = best_time(lambda: numpy_per_example_grads(params, x, y))
    t_fgrad = best_time(lambda: per_example(params, x, y))
    t_loop = best_time(lambda: [fgrad.grad(loss)(params, x[i], y[i]) for i in range(args.batch)],
                       number=2, repeat=3)
    print_table(f"per-example gradients, MLP 784-{args.hidden}-10, batch {args.batch} "
                f"(max |difference| {err:.1e})",
                ("method", "ms / batch", "ratio vs NumPy"),
                [("hand-written NumPy", f"{t_numpy * 1e3:.2f}", "1.00"),
                 ("fgrad vmap(grad(loss))", f"{t_fgrad * 1e3:.2f}", f"{t_fgrad / t_numpy:.2f}"),
                 ("fgrad Python loop of grad", f"{t_loop * 1e3:.2f}", f"{t_loop / t_numpy:.2f}")])


if __name__ == "__main__":
    main()
