"""Shared timing helper for the benchmark scripts: best-of-repeats wall time per call."""
import time


def best_time(fn, number=10, repeat=5):
    """Seconds per call of ``fn()``: the best of ``repeat`` runs of ``number`` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def print_table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def interleaved_best(fns, number=10, repeat=7, clock=time.perf_counter):
    """``{name: seconds per call}`` for ``fns`` (a dict of callables): the best of ``repeat``
    rounds, each round timing ``number`` calls of every function in turn (after one warm-up
    call each). Interleaving keeps ratios meaningful on a shared machine, whose load changes
    between rounds; pass ``clock=time.process_time`` for CPU time of single-threaded work."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (clock() - t0) / number)
    return best
