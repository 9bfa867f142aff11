"""Per-example gradients with ``vmap(grad(...))`` on MNIST, and DP-SGD built on them.

    python -m examples.per_example_grads
    python -m examples.per_example_grads --noise 0 --clip 1e9     # plain SGD, for comparison

A gradient per example, rather than one for the whole batch, is one line with function
transforms: write the loss of ONE example, take its gradient, and map that over the batch::

    per_example_grads = fgrad.vmap(fgrad.grad(loss_one), in_axes=(None, 0, 0))
    grads = per_example_grads(params, x, y)          # every leaf gets a leading batch axis

This example first checks that line against the obvious Python loop (``grad`` of each example
in turn): the same numbers, and how much faster the vectorised version is. Then it trains an
MLP with DP-SGD (Abadi et al., "Deep learning with differential privacy", 2016), which needs
exactly these per-example gradients: each example's gradient is clipped to norm at most
``C`` (``--clip``), the clipped gradients are summed, Gaussian noise of standard deviation
``sigma C`` (``--noise`` is ``sigma``) is added, and the result is divided by the batch size::

    g_i <- g_i min(1, C / ||g_i||),     g = (sum_i g_i + N(0, sigma^2 C^2 I)) / B

No single example can move the update by more than ``C``, and the noise hides what is left.
The step is still ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``:
the ``key`` draws the noise. The curves show the loss, the accuracy, the mean per-example
gradient norm and the fraction of examples whose gradient was clipped.

What this example does not do: batches are shuffled fixed-size batches rather than the
Poisson subsampling the privacy analysis assumes, and no privacy accountant turns ``sigma``,
the sampling rate and the number of steps into an (epsilon, delta) guarantee.
"""
from __future__ import annotations

import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim
from fgrad import tree
from fnn.data import standardize

from . import common

NAME = "per_example_grads"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.per_example_grads reached DP-SGD test accuracy 90.63% in 86 s "
            "(README)")


def build_model(hidden=128, inputs=784, num_classes=10, dtype=np.float32):
    return fnn.Sequential(fnn.Linear(inputs, hidden, dtype=dtype), fnn.ReLU(),
                          fnn.Linear(hidden, num_classes, dtype=dtype))


def make_loss_one(model):
    """The loss of ONE example: ``x`` of shape ``(784,)``, ``y`` an integer label."""
    def loss_one(params, x, y):
        logits = model.apply(params, x[None])[0]
        return F.cross_entropy(logits, y), logits
    return loss_one


def global_norms(grads):
    """The norm of each example's whole gradient: ``sqrt(sum over leaves of sum(g_i^2))``, ``(B,)``."""
    squares = [fnp.sum(fnp.reshape(g, (g.shape[0], -1)) ** 2, axis=1) for g in tree.leaves(grads)]
    return fnp.sqrt(sum(squares))


def make_dp_step(model, optimizer, clip, noise):
    """The DP-SGD step: per-example gradients by ``vmap(value_and_grad(loss_one))``, each
    clipped to norm ``clip``, summed, plus ``N(0, (noise clip)^2)``, divided by the batch size."""
    per_example = fgrad.vmap(fgrad.value_and_grad(make_loss_one(model), has_aux=True),
                             in_axes=(None, 0, 0))

    def step(params, opt_state, batch, key):
        x, y = batch
        (losses, logits), grads = per_example(params, x, y)
        norms = global_norms(grads)
        scale = fnp.minimum(1.0, clip / (norms + 1e-12))          # min(1, C / ||g_i||)
        leaves, treedef = tree.flatten(grads)
        keys = fgrad.random.split(key, len(leaves))
        noisy = []
        for g, k in zip(leaves, keys):
            clipped_sum = fnp.tensordot(fnp.astype(scale, g.dtype), g, axes=1)     # sum_i s_i g_i
            draw = fgrad.random.normal(k, clipped_sum.shape, dtype=g.dtype)
            noisy.append((clipped_sum + noise * clip * draw) / len(x))
        updates, opt_state = optimizer.update(tree.unflatten(treedef, noisy), opt_state, params)
        metrics = {"loss": fnp.mean(losses), "accuracy": common.accuracy(logits, y),
                   "grad_norm": fnp.mean(norms),
                   "clipped": fnp.mean(fnp.astype(norms > clip, np.float64))}
        return foptim.apply_updates(params, updates), opt_state, metrics
    return step


def compare_with_loop(model, params, x, y):
    """``vmap(grad(loss_one))`` against a Python loop of ``grad(loss_one)``: max difference and
    the time of each (the best of three)."""
    grad_one = fgrad.grad(lambda p, xi, yi: make_loss_one(model)(p, xi, yi)[0])
    vectorised = fgrad.vmap(grad_one, in_axes=(None, 0, 0))     # the one line

    def loop(params, x, y):
        grads = [grad_one(params, x[i], y[i]) for i in range(len(x))]
        return tree.map(lambda *g: np.stack(g), *grads)

    timings, results = {}, {}
    for name, fn in (("vmap", vectorised), ("loop", loop)):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            results[name] = fn(params, x, y)
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    difference = max(float(np.max(np.abs(a - b))) for a, b in
                     zip(tree.leaves(results["vmap"]), tree.leaves(results["loop"])))
    return difference, timings


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=3, batch_size=128, lr=0.02)
    common.add_data_flags(parser, datasets=("mnist",))
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of the MLP")
    parser.add_argument("--clip", type=float, default=1.0, help="per-example gradient norm bound C")
    parser.add_argument("--noise", type=float, default=1.0,
                        help="noise multiplier sigma: the noise's standard deviation is sigma C")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0: none)")
    parser.add_argument("--compare-batch", type=int, default=64,
                        help="batch size of the vmap-versus-loop comparison")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(common.load_images("mnist", args.data), args)
    x_train, (mean, std) = standardize(data.x_train.reshape(len(data.x_train), -1), axis=None)
    x_test, _ = standardize(data.x_test.reshape(len(data.x_test), -1), mean, std)
    model = build_model(args.hidden, x_train.shape[1], len(data.classes))
    key, init_key = fgrad.random.split(fgrad.random.key(args.seed))
    params = model.init(init_key)

    n = min(args.compare_batch, len(x_train))
    difference, timings = compare_with_loop(model, params, x_train[:n], data.y_train[:n])
    print(f"per-example gradients of {n} examples: vmap(grad) {timings['vmap'] * 1e3:.1f} ms, "
          f"Python loop of grad {timings['loop'] * 1e3:.1f} ms "
          f"({timings['loop'] / timings['vmap']:.1f}x); "
          f"largest difference {difference:.2e}")

    optimizer = foptim.sgd(args.lr, momentum=args.momentum or None)

    def metrics(params, batch):
        x, y = batch
        logits = model.apply(params, x)
        return {"loss": F.cross_entropy(logits, y), "accuracy": common.accuracy(logits, y)}

    step = make_dp_step(model, optimizer, args.clip, args.noise)
    if args.jit:   # traced once, then replayed as generated NumPy code
        step = fgrad.jit(step)
    params, _, history = common.train_loop(
        step, params, optimizer.init(params),
        (x_train, data.y_train), epochs=args.epochs, batch_size=args.batch_size, key=key,
        eval_fn=lambda p: common.evaluate(metrics, p, (x_test, data.y_test), 2000))
    final = {"test_accuracy": history["eval"]["accuracy"][-1],
             "vmap_ms": timings["vmap"] * 1e3, "loop_ms": timings["loop"] * 1e3,
             "vmap_vs_loop_max_difference": difference}
    return common.finish(
        args, NAME, history, final,
        title=f"DP-SGD on MNIST (clip {args.clip:g}, noise multiplier {args.noise:g})",
        full_run=FULL_RUN, references={"grad_norm": [(f"clip norm C = {args.clip:g}", args.clip)]},
        log_scale=("loss", "grad_norm"), limits={"clipped": (0, 1.05)},
        titles={"grad_norm": "per-example gradient norm before clipping (batch mean)",
                "clipped": f"fraction of examples clipped (norm > C); 1: every gradient "
                           f"scaled to norm {args.clip:g}"})


if __name__ == "__main__":
    main()
