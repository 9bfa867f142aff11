"""``fgrad.lax.scan`` against a Python loop (eager and jitted) and torch eager: an RNN.

The workload: a tanh RNN ``h_t = tanh(h_{t-1} W^T + x_t U^T + b)``, hidden 64, inputs 32,
batch 16, 50 steps, loss the mean of ``h_t^2`` over every step; one ``value_and_grad`` with
respect to ``(W, U, b)``, float64. Variants:

* fgrad eager, Python loop (each step's ops taped);
* fgrad eager, ``lax.scan`` (the body staged once per call, then run by its compiled code);
* ``jit(value_and_grad)`` of the scan: one traced program, a forward loop and a reverse loop
  over compiled bodies (first call timed separately: tracing, the passes, code generation);
* ``jit(value_and_grad)`` of the Python loop: the same program unrolled, 50 copies of the body;
* torch eager, a Python loop with ``backward()``.

Every variant is checked against the eager loop before timing. Timings on a shared machine are
noisy: compare ratios, run twice.

    python -m benchmarks.bench_lax [--steps 50] [--threads 1]
"""
import argparse
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import lax
from benchmarks._timing import best_time, print_table

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None


def cell(params, h, x):
    w, u, b = params
    return fnp.tanh(h @ w.T + x @ u.T + b)


def loss_scan(params, h0, xs):
    _, hs = lax.scan(lambda h, x: (cell(params, h, x),) * 2, h0, xs)
    return fnp.mean(hs ** 2)


def loss_loop(params, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = cell(params, h, x)
        total = total + fnp.sum(h ** 2)
    return total / (xs.shape[0] * h0.size)


def torch_step(params, h0, xs):
    params = [p.detach().requires_grad_() for p in params]
    w, u, b = params
    h, total = h0, 0.0
    for t in range(xs.shape[0]):
        h = torch.tanh(h @ w.T + xs[t] @ u.T + b)
        total = total + torch.sum(h ** 2)
    loss = total / (xs.shape[0] * h0.numel())
    loss.backward()
    return loss.detach(), [p.grad for p in params]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (0: leave)")
    args = ap.parse_args(argv)
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            pass
        if torch is not None:
            torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    H, D, B, T = args.hidden, args.inputs, args.batch, args.steps
    params = (rng.standard_normal((H, H)) / np.sqrt(H), rng.standard_normal((H, D)) / np.sqrt(D),
              np.zeros(H))
    h0, xs = np.zeros((B, H)), rng.standard_normal((T, B, D))

    eager_loop = fgrad.value_and_grad(loss_loop)
    eager_scan = fgrad.value_and_grad(loss_scan)
    jit_scan = fgrad.jit(fgrad.value_and_grad(loss_scan))
    jit_loop = fgrad.jit(fgrad.value_and_grad(loss_loop))

    want = eager_loop(params, h0, xs)
    t0 = time.perf_counter()
    got = jit_scan(params, h0, xs)
    first_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    got_loop = jit_loop(params, h0, xs)
    first_loop = time.perf_counter() - t0
    for name, out in [("eager scan", eager_scan(params, h0, xs)), ("jit scan", got),
                      ("jit loop", got_loop)]:
        err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                  for a, b in zip(fgrad.tree.leaves(out), fgrad.tree.leaves(want)))
        assert err < 1e-10, f"{name} differs from the eager loop by {err}"

    rows = []
    timings = [("fgrad eager, Python loop", lambda: eager_loop(params, h0, xs)),
               ("fgrad eager, lax.scan", lambda: eager_scan(params, h0, xs)),
               ("jit(value_and_grad), lax.scan", lambda: jit_scan(params, h0, xs)),
               ("jit(value_and_grad), Python loop (unrolled)", lambda: jit_loop(params, h0, xs))]
    if torch is not None:
        tp = [torch.tensor(p) for p in params]
        th0, txs = torch.tensor(h0), torch.tensor(xs)
        t_loss, t_grads = torch_step(tp, th0, txs)
        err = max(float(np.max(np.abs(g.numpy() - w))) for g, w in zip(t_grads, want[1]))
        assert err < 1e-10, f"torch differs by {err}"
        timings.append(("torch eager, Python loop + backward", lambda: torch_step(tp, th0, txs)))
    base = None
    for name, fn in timings:
        t = best_time(fn, number=3, repeat=5)
        base = base or t
        rows.append((name, f"{t * 1e3:.2f} ms", f"{base / t:.2f}x"))
    print_table(f"RNN value_and_grad: hidden {H}, inputs {D}, batch {B}, {T} steps, float64",
                ["variant", "time per call", "speed-up vs eager loop"], rows)
    src = jit_scan.lower(params, h0, xs)
    n_lines = len([line for line in src.source.splitlines() if not line.lstrip().startswith("#")])
    unrolled = jit_loop.lower(params, h0, xs)
    print(f"\nfirst call (trace + passes + codegen + compile): jit scan {first_scan * 1e3:.0f} ms, "
          f"jit unrolled loop {first_loop * 1e3:.0f} ms; program: scan {len(src.jaxpr.eqns)} "
          f"equations ({n_lines} generated lines besides listings), unrolled "
          f"{len(unrolled.jaxpr.eqns)} equations")


if __name__ == "__main__":
    main()
