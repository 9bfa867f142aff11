"""Logistic regression and a small MLP classify breast tumours (scikit-learn's Wisconsin data).

    python -m examples.breast_cancer                 # both models
    python -m examples.breast_cancer --model mlp --hidden 64

569 tumours, 30 measurements each (radius, texture, ... of the cell nuclei), labelled
malignant (0) or benign (1); 80% train, 20% test, features standardised with the training
set's statistics. Two models output one logit ``s`` per tumour, ``p(benign) = sigmoid(s)``:

* logistic regression, ``s = x w + b``;
* an MLP, ``s = w2 relu(W1 x + b1) + b2`` with ``--hidden`` units.

Both minimise the binary cross-entropy ``-[y log sigmoid(s) + (1 - y) log sigmoid(-s)]``
(``fnn.functional.binary_cross_entropy_with_logits``, stable for any ``s``) by Adam, in a
pure step written out in :func:`run`. A tumour is called benign when ``s > 0``.
"""
from __future__ import annotations

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim
from fnn.data import standardize

from . import common
from .datasets import load_breast_cancer

NAME = "breast_cancer"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.breast_cancer reached test accuracy 99.12% (logistic) and "
            "97.37% (MLP) in 7 s (README)")


def build_model(kind, features=30, hidden=32):
    """``"logistic"``: one linear layer; ``"mlp"``: linear-ReLU-linear. Both output 1 logit."""
    if kind == "logistic":
        return fnn.Linear(features, 1, dtype=np.float64)
    return fnn.Sequential(fnn.Linear(features, hidden, dtype=np.float64), fnn.ReLU(),
                          fnn.Linear(hidden, 1, dtype=np.float64))


def make_loss(model):
    """``loss(params, batch, key) -> (binary cross-entropy, {"accuracy": ...})``."""
    def loss(params, batch, key=None):
        x, y = batch
        logits = model.apply(params, x)[:, 0]
        value = F.binary_cross_entropy_with_logits(logits, fnp.astype(y, logits.dtype))
        return value, {"accuracy": fnp.mean(fnp.astype((logits > 0) == (y == 1), np.float64))}
    return loss


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=50, batch_size=32, lr=1e-2)
    parser.add_argument("--model", choices=("logistic", "mlp", "both"), default="both")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the MLP")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(load_breast_cancer(), args)
    x_train, (mean, std) = standardize(data.x_train)
    x_test, _ = standardize(data.x_test, mean, std)
    key = fgrad.random.key(args.seed)

    kinds = ("logistic", "mlp") if args.model == "both" else (args.model,)
    histories, final = {}, {}
    for kind in kinds:
        model = build_model(kind, x_train.shape[1], args.hidden)
        key, init_key, train_key = fgrad.random.split(key, 3)
        params = model.init(init_key)
        optimizer = foptim.adam(args.lr)
        loss = make_loss(model)
        loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

        def step(params, opt_state, batch, key):
            """One Adam step on a batch: the loss's gradient, the update, the new params."""
            (value, aux), grads = loss_and_grad(params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}

        if args.jit:   # traced once, then replayed as generated NumPy code
            step = fgrad.jit(step)
        metrics = common.loss_metrics(loss)
        params, _, histories[kind] = common.train_loop(
            step, params, optimizer.init(params),
            (x_train, data.y_train), epochs=args.epochs, batch_size=args.batch_size,
            key=train_key, desc=kind, eval_every=max(1, args.epochs // 10),
            eval_fn=lambda p: metrics(p, (x_test, data.y_test)))
        final[f"{kind}_test_accuracy"] = histories[kind]["eval"]["accuracy"][-1]
    return common.finish(args, NAME, histories, final, title="breast cancer (benign vs malignant)",
                         full_run=FULL_RUN)


if __name__ == "__main__":
    main()
