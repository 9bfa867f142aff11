"""Per-operation overhead of reverse mode on small arrays: fgrad against torch eager and HIPS autograd.

The workload of issue 10: the gradient of a chain of 200 elementwise ops on a float64 vector
of 16 (``x = sin(x) * 1.01 + x`` repeated, then a sum), so small that the time per op is the
cost of the machinery (tracing, taping, the backward walk), not of the arithmetic. In one
process and interleaved round by round (each round times every variant once, the best round
counts), so that the ratios hold on a shared machine:

* fgrad.grad, fgrad.jvp and fgrad.vmap (batch 8) of the chain;
* torch eager: the same chain on a tensor with ``requires_grad``, then ``backward()``
  (one thread: the arrays are far too small for more);
* HIPS autograd's ``grad`` (``pip install autograd``, the ``bench`` extra), when installed;
* NumPy, forward only: the floor of the arithmetic itself.

Every gradient is checked against the hand-written derivative before anything is timed.
Times are CPU time (``time.process_time``) by default: the work is single-threaded, and CPU
time does not count the time other processes hold the cores.

    python -m benchmarks.bench_overhead [--ops 200] [--size 16] [--clock wall]
"""
import argparse
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
from benchmarks._timing import interleaved_best, print_table

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None
try:
    import autograd
    import autograd.numpy as anp
except ImportError:
    autograd = None


def chain(np_, n_ops):
    """``f(x) = sum(...)`` of ``n_ops`` elementwise ops (``sin``, ``* 1.01``, ``+ x`` in turn)
    written with ``np_`` (fgrad.numpy, numpy, autograd.numpy or torch)."""
    n_iter, rest = divmod(n_ops, 3)

    def f(x):
        for _ in range(n_iter):
            x = np_.sin(x) * 1.01 + x      # three ops per iteration
        if rest:
            x = np_.sin(x)
        if rest == 2:
            x = x * 1.01
        return np_.sum(x)
    return f


def chain_grad(x, n_ops):
    """The derivative by hand: d/dx (sin(x) 1.01 + x) = cos(x) 1.01 + 1, chained."""
    n_iter, rest = divmod(n_ops, 3)
    d = np.ones_like(x)
    for _ in range(n_iter):
        d = d * (np.cos(x) * 1.01 + 1)
        x = np.sin(x) * 1.01 + x
    if rest:
        d = d * np.cos(x)
    if rest == 2:
        d = d * 1.01
    return d


def workloads(n_ops, size):
    """``{name: callable}`` of the variants, each checked against :func:`chain_grad` first."""
    x = np.linspace(-1.0, 1.0, size)
    expected = chain_grad(x, n_ops)
    f = chain(fnp, n_ops)
    fns = {"numpy forward only": lambda: chain(np, n_ops)(x),
           "fgrad.grad": lambda: fgrad.grad(f)(x)}
    if torch is not None:
        f_torch, xt = chain(torch, n_ops), torch.from_numpy(x)

        def torch_grad():
            v = xt.detach().requires_grad_(True)
            f_torch(v).backward()
            return v.grad
        fns["torch eager (requires_grad + backward)"] = torch_grad
    if autograd is not None:
        f_ag = chain(anp, n_ops)
        fns["HIPS autograd.grad"] = lambda: autograd.grad(f_ag)(x)
    for name, fn in fns.items():
        if name != "numpy forward only":
            got = fn()
            got = got.numpy() if hasattr(got, "numpy") else got
            np.testing.assert_allclose(got, expected, rtol=1e-10, err_msg=name)
    tangent = np.ones(size)
    fns["fgrad.jvp"] = lambda: fgrad.jvp(f, (x,), (tangent,))
    batch = np.tile(x, (8, 1))
    fns["fgrad.vmap (batch 8)"] = lambda: fgrad.vmap(f)(batch)
    return fns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200, help="elementwise ops in the chain")
    parser.add_argument("--size", type=int, default=16, help="vector length")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds (best counts)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="process CPU time (default) or wall-clock time")
    args = parser.parse_args(argv)
    if torch is not None:
        torch.set_num_threads(1)
    else:
        print("torch is not installed: no torch row")
    if autograd is None:
        print("autograd is not installed (pip install autograd): no HIPS autograd row")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = interleaved_best(workloads(args.ops, args.size), number=10, repeat=args.repeat,
                             clock=clock)
    torch_name = next((n for n in times if n.startswith("torch")), None)
    per_op = {name: t / args.ops * 1e6 for name, t in times.items()}
    rows = [(name, f"{us:.2f}", f"{us / per_op[torch_name]:.2f}" if torch_name else "-")
            for name, us in per_op.items()]
    print_table(f"per-op overhead: grad of {args.ops} elementwise ops on float64[{args.size}] "
                f"({args.clock} time, best of {args.repeat} interleaved rounds)",
                ("transform", "us / op", "vs torch eager"), rows)
    if torch_name:
        print(f"\nfgrad.grad / torch eager per-op time: {per_op['fgrad.grad'] / per_op[torch_name]:.2f}x")
    if "HIPS autograd.grad" in per_op:
        print(f"fgrad.grad / HIPS autograd.grad per-op time: "
              f"{per_op['fgrad.grad'] / per_op['HIPS autograd.grad']:.2f}x")


if __name__ == "__main__":
    main()
