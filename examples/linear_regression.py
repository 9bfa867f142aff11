"""Linear and polynomial regression on scikit-learn's diabetes data, checked against least squares.

    python -m examples.linear_regression             # degree 1 and degree 2
    python -m examples.linear_regression --degree 3

Two models predict a disease-progression score from 10 measurements (442 patients, 80% for
training): a linear model ``y = x w + b`` and a polynomial one, the same linear model on every
monomial of the inputs up to ``--degree`` (degree 2: the 10 inputs, their 10 squares and 45
pairwise products, 65 features). Features and target are standardised with the training set's
statistics; the reported MSE is in the target's own units.

Both are trained by minibatch Adam (a cosine-decayed learning rate; the pure step is written
out in :func:`fit`) and compared with the closed-form least-squares solution on the same
features, ``[X 1] beta = y`` solved by ``numpy.linalg.lstsq``, which minimises the same training
loss exactly. Gradient descent should land within a few percent of its test MSE.
"""
from __future__ import annotations

import itertools

import numpy as np

import fgrad
import fgrad.numpy as fnp
import foptim
from fnn.data import standardize

from . import common
from .datasets import load_diabetes

NAME = "linear_regression"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.linear_regression reached test MSE 3260.5 against 3259.9 by "
            "least squares (linear) and 4119 against 4194 (degree 2) in 11 s (README)")


def polynomial_features(x, degree):
    """Every monomial of the columns of ``x`` of degree 1 to ``degree``: ``(n, d) -> (n, m)``,
    ``m = C(d + degree, degree) - 1``; degree 1 is ``x`` itself."""
    columns = [np.prod(x[:, list(combo)], axis=1)
               for k in range(1, degree + 1)
               for combo in itertools.combinations_with_replacement(range(x.shape[1]), k)]
    return np.stack(columns, axis=1)


def predict(params, x):
    """The linear model ``x w + b`` for ``x`` of shape ``(n, m)``: predictions ``(n,)``."""
    return x @ params["w"] + params["b"]


def make_loss(y_scale):
    """Mean squared error on the standardised target, and ``mse`` in the target's units
    (the loss times the target's variance)."""
    def loss(params, batch, key=None):
        x, y = batch
        value = fnp.mean((predict(params, x) - y) ** 2)
        return value, {"mse": value * y_scale ** 2}
    return loss


def least_squares(x, y):
    """The exact minimiser of the training MSE: ``[x 1] beta = y`` by ``numpy.linalg.lstsq``."""
    beta, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    return {"w": beta[:-1], "b": beta[-1]}


def fit(x_train, y_train, x_test, y_test, y_scale, args, key, label):
    """Train the linear model on these features by Adam; return ``(params, history)``."""
    params = {"w": np.zeros(x_train.shape[1]), "b": np.zeros(())}
    steps = args.epochs * (len(x_train) // args.batch_size)
    optimizer = foptim.adam(foptim.cosine_decay_schedule(args.lr, steps))
    loss = make_loss(y_scale)
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def step(params, opt_state, batch, key):
        """One Adam step on a batch: the loss's gradient, the update, the new params."""
        (value, aux), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}

    if args.jit:   # traced once, then replayed as generated NumPy code
        step = fgrad.jit(step)
    metrics = common.loss_metrics(loss)
    params, _, history = common.train_loop(
        step, params, optimizer.init(params), (x_train, y_train),
        epochs=args.epochs, batch_size=args.batch_size, key=key, desc=label,
        eval_fn=lambda p: metrics(p, (x_test, y_test)), eval_every=max(1, args.epochs // 20))
    return params, history


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=200, batch_size=32, lr=0.05)
    parser.add_argument("--degree", type=int, default=2, help="degree of the polynomial model")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(load_diabetes(), args)
    y_train, (y_mean, y_std) = standardize(data.y_train)
    y_test, _ = standardize(data.y_test, y_mean, y_std)
    y_scale = float(y_std)
    key = fgrad.random.key(args.seed)

    histories, final, references = {}, {}, []
    for degree in sorted({1, args.degree}):
        label = "linear" if degree == 1 else f"degree {degree}"
        x_train, (mean, std) = standardize(polynomial_features(data.x_train, degree))
        x_test, _ = standardize(polynomial_features(data.x_test, degree), mean, std)
        key, fit_key = fgrad.random.split(key)
        params, histories[label] = fit(x_train, y_train, x_test, y_test, y_scale, args, fit_key, label)
        loss = make_loss(y_scale)
        gd_mse = float(loss(params, (x_test, y_test))[1]["mse"])
        exact_mse = float(loss(least_squares(x_train, y_train), (x_test, y_test))[1]["mse"])
        key_name = "linear" if degree == 1 else f"poly{degree}"
        final[f"{key_name}_test_mse"] = gd_mse
        final[f"{key_name}_lstsq_test_mse"] = exact_mse
        final[f"{key_name}_ratio"] = gd_mse / exact_mse
        references.append((f"least squares, {label}", exact_mse))
        print(f"{label} ({x_train.shape[1]} features): test MSE {gd_mse:.1f} by Adam, "
              f"{exact_mse:.1f} by least squares (ratio {gd_mse / exact_mse:.4f})")
    return common.finish(args, NAME, histories, final, title="diabetes regression",
                         references={"mse": references}, full_run=FULL_RUN,
                         titles={"loss": "loss: MSE of the standardised target",
                                 "mse": "MSE in the target's units "
                                        "(black: least squares' test MSE)"})


if __name__ == "__main__":
    main()
