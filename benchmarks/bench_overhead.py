"""Per-operation overhead of reverse mode on small arrays: fgrad vs HIPS autograd.

A chain of ``n`` elementwise ops on a 4-element vector does almost no arithmetic, so the time
per op is the cost of the machinery: tracing, taping and the backward walk. Both libraries run
the same function in the same process; the ratio is what matters (aim: fgrad within 2x).

    python -m benchmarks.bench_overhead          (pip install autograd for the comparison)
"""
import argparse

import numpy as np

import fgrad
import fgrad.numpy as fnp
from benchmarks._timing import best_time, print_table


def make_chain(np_, n_ops):
    def f(x):
        for _ in range(n_ops // 3):
            x = np_.sin(x) * 1.01 + x      # three ops per iteration
        return np_.sum(x)
    return f


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300, help="ops in the chain")
    parser.add_argument("--size", type=int, default=4, help="vector length")
    args = parser.parse_args(argv)
    x = np.ones(args.size)
    n = args.ops // 3 * 3
    rows = []
    t_np = best_time(lambda: make_chain(np, n)(x))
    rows.append(("numpy forward only", f"{t_np / n * 1e6:.2f}", "-"))
    t_fg = best_time(lambda: fgrad.grad(make_chain(fnp, n))(x))
    rows.append(("fgrad.grad", f"{t_fg / n * 1e6:.2f}", "1.00"))
    t_jvp = best_time(lambda: fgrad.jvp(make_chain(fnp, n), (x,), (x,)))
    rows.append(("fgrad.jvp", f"{t_jvp / n * 1e6:.2f}", f"{t_jvp / t_fg:.2f}"))
    t_vm = best_time(lambda: fgrad.vmap(make_chain(fnp, n))(np.ones((8, args.size))))
    rows.append(("fgrad.vmap (batch 8)", f"{t_vm / n * 1e6:.2f}", f"{t_vm / t_fg:.2f}"))
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        print("autograd is not installed (pip install autograd): no reference row")
    else:
        t_ag = best_time(lambda: autograd.grad(make_chain(anp, n))(x))
        rows.append(("HIPS autograd.grad", f"{t_ag / n * 1e6:.2f}", f"{t_ag / t_fg:.2f}"))
        print(f"fgrad.grad / autograd.grad per-op time: {t_fg / t_ag:.2f}x")
    print_table(f"per-op overhead, {n} ops on float64[{args.size}]",
                ("transform", "us / op", "time vs fgrad.grad"), rows)


if __name__ == "__main__":
    main()
