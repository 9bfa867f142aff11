"""One-vs-rest on MNIST: ten binary classifiers, trained together with ``vmap`` over the classes.

    python -m examples.mnist_one_vs_rest                  # BCE and hinge loss, linear classifiers
    python -m examples.mnist_one_vs_rest --loss hinge --hidden 64

Classifier ``c`` answers "is this digit a ``c``?" with a score ``s_c(x)``; the predicted digit
is the class whose classifier is most sure, ``argmax_c s_c(x)``. Each classifier is trained
on its own binary problem (targets ``t = [y == c]``), with one of two losses:

* binary cross-entropy on the logit ``s`` (logistic regression):
  ``-[t log sigmoid(s) + (1 - t) log sigmoid(-s)]``;
* the hinge loss of a linear SVM, with labels ``u = 2 t - 1`` in ``{-1, +1}``:
  ``max(0, 1 - u s)``, zero once an example is on the right side with margin 1.

How the ten are trained together: the code is written for ONE classifier,
``binary_loss(params, x, y, c)``, and ``fgrad.vmap`` maps it over a leading class axis of
the params and over the class index ``c`` while sharing the batch::

    losses = fgrad.vmap(binary_loss, in_axes=(0, None, None, 0))(params, x, y, classes)  # (10,)

The params are ten classifiers stacked (``fgrad.vmap(model.init)(keys)``: weight
``(10, 1, 784)``), and the total loss is ``losses.sum()``. Since classifier ``c``'s params
appear only in ``losses[c]``, the gradient of the sum holds each classifier's own gradient, so
one ``value_and_grad`` step (written out in :func:`run`) trains all ten at once, as ten
separate Python loops would, but as batched array operations. ``--hidden`` makes each
classifier a one-hidden-layer MLP instead of a linear model.
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

NAME = "mnist_one_vs_rest"
LOSSES = ("bce", "hinge")
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.mnist_one_vs_rest reached test accuracy 91.05% (BCE) and "
            "91.40% (hinge) in 21 s (README)")


def build_classifier(hidden=0, inputs=784, dtype=np.float32):
    """ONE binary classifier (one output score): linear, or an MLP with ``hidden`` units."""
    if not hidden:
        return fnn.Linear(inputs, 1, dtype=dtype)
    return fnn.Sequential(fnn.Linear(inputs, hidden, dtype=dtype), fnn.ReLU(),
                          fnn.Linear(hidden, 1, dtype=dtype))


def make_binary_loss(classifier, kind):
    """``binary_loss(params, x, y, c)``: classifier ``c``'s mean loss on "is it a ``c``?"."""
    def binary_loss(params, x, y, c):
        scores = classifier.apply(params, x)[:, 0]
        targets = fnp.astype(y == c, scores.dtype)                # t in {0, 1}
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(scores, targets)
        signs = 2 * targets - 1                                     # u in {-1, +1}
        return fnp.mean(fnp.maximum(0, 1 - signs * scores))
    return binary_loss


def all_scores(classifier, params, x):
    """Every classifier's score on every example: ``(batch, classes)``."""
    scores = fgrad.vmap(lambda p: classifier.apply(p, x)[:, 0])(params)     # (classes, batch)
    return fnp.transpose(scores)


def make_loss(classifier, kind, num_classes=10):
    """The sum over classes of each classifier's binary loss, by ``vmap``; the metrics are the
    ten-class accuracy of ``argmax_c s_c`` and the mean binary loss per classifier."""
    binary_loss = make_binary_loss(classifier, kind)
    classes = np.arange(num_classes)

    def loss(params, batch, key=None):
        x, y = batch
        losses = fgrad.vmap(binary_loss, in_axes=(0, None, None, 0))(params, x, y, classes)
        logits = all_scores(classifier, params, x)
        return fnp.sum(losses), {"accuracy": common.accuracy(logits, y),
                                 "binary_loss": fnp.mean(losses)}
    return loss


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=3, batch_size=128, lr=1e-3)
    common.add_data_flags(parser, datasets=("mnist",))
    parser.add_argument("--loss", choices=LOSSES + ("both",), default="both",
                        help="binary cross-entropy, hinge loss, or one run of each")
    parser.add_argument("--hidden", type=int, default=0,
                        help="hidden units of each classifier (0: linear classifiers)")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(common.load_images("mnist", args.data), args)
    x_train, (mean, std) = standardize(data.x_train.reshape(len(data.x_train), -1), axis=None)
    x_test, _ = standardize(data.x_test.reshape(len(data.x_test), -1), mean, std)
    num_classes = len(data.classes)
    classifier = build_classifier(args.hidden, x_train.shape[1])
    key = fgrad.random.key(args.seed)

    histories, final = {}, {}
    for kind in LOSSES if args.loss == "both" else (args.loss,):
        key, init_key, train_key = fgrad.random.split(key, 3)
        params = fgrad.vmap(classifier.init)(fgrad.random.split(init_key, num_classes))
        steps = args.epochs * (len(x_train) // args.batch_size)
        optimizer = foptim.adam(foptim.cosine_decay_schedule(args.lr, max(steps, 1)))
        loss = make_loss(classifier, kind, num_classes)
        loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

        def step(params, opt_state, batch, key):
            """One Adam step of all ten classifiers: one gradient of the summed losses."""
            (value, aux), grads = loss_and_grad(params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}

        if args.jit:   # traced once, then replayed as generated NumPy code
            step = fgrad.jit(step)
        metrics = common.loss_metrics(loss)
        params, _, histories[kind] = common.train_loop(
            step, params, optimizer.init(params),
            (x_train, data.y_train), epochs=args.epochs, batch_size=args.batch_size,
            key=train_key, desc=kind,
            eval_fn=lambda p: common.evaluate(metrics, p, (x_test, data.y_test), 2000))
        final[f"{kind}_test_accuracy"] = histories[kind]["eval"]["accuracy"][-1]
    kind_of_model = f"MLPs ({args.hidden} hidden)" if args.hidden else "linear classifiers"
    # "binary_loss" (the mean of the ten) is the loss divided by ten: the same curve, not drawn
    return common.finish(args, NAME, histories, final,
                         title=f"one-vs-rest on MNIST: 10 {kind_of_model}, vmapped over classes",
                         full_run=FULL_RUN, metrics=("loss", "accuracy"),
                         titles={"loss": f"loss: the sum of the {num_classes} classifiers' "
                                         f"binary losses",
                                 "accuracy": f"accuracy of argmax over the {num_classes} scores"})


if __name__ == "__main__":
    main()
