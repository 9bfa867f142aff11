"""A multilayer perceptron on MNIST, with or without BatchNorm.

    python -m examples.mnist_mlp
    python -m examples.mnist_mlp --batchnorm

The 28x28 images are flattened to 784 inputs and go through fully connected layers::

    784 -> 256 -> relu -> 128 -> relu -> 10 logits              (default)
    784 -> 256 -> BN -> relu -> 128 -> BN -> relu -> 10 logits  (--batchnorm)

trained by Adam on the mean cross-entropy with a cosine-decayed learning rate. With
``--batchnorm`` the model has state, BatchNorm's running means and variances: the training
step carries the pair ``(weights, state)`` (:func:`make_step`: only ``weights`` are
differentiated and given to the optimizer), the statistics of each batch normalise it during training, and the
running statistics normalise the test set.
"""
from __future__ import annotations

import numpy as np

import fgrad
import fnn
import fnn.functional as F
import foptim
from fnn.data import standardize

from . import common

NAME = "mnist_mlp"
#: The measured default runs (README, "Examples"), quoted at the end of a --quick run.
FULL_RUNS = {False: "python -m examples.mnist_mlp reached test accuracy 98.46% in 38 s (README)",
             True: "python -m examples.mnist_mlp --batchnorm reached test accuracy 98.36% in "
                   "78 s (README)"}


def build_model(hidden=(256, 128), batchnorm=False, inputs=784, num_classes=10, dtype=np.float32):
    """Flatten, then ``Linear [BatchNorm1d] ReLU`` per entry of ``hidden``, then the classifier."""
    layers, width = [fnn.Flatten()], inputs
    for units in hidden:
        layers.append(fnn.Linear(width, units, dtype=dtype))
        if batchnorm:
            layers.append(fnn.BatchNorm1d(units, dtype=dtype))
        layers.append(fnn.ReLU())
        width = units
    layers.append(fnn.Linear(width, num_classes, dtype=dtype))
    return fnn.Sequential(*layers)


def make_loss(model):
    """The mean cross-entropy and the accuracy: ``loss(params, batch, key) -> (loss, metrics)``
    for a model without state, ``loss(weights, state, batch, key) -> (loss, (metrics,
    new_state))`` for one with (BatchNorm in training mode: the batch's statistics normalise,
    the running ones are updated)."""
    if model.has_state:
        def loss_with_state(weights, state, batch, key=None):
            x, y = batch
            logits, new_state = model.apply(weights, x, state=state, train=True)
            return F.cross_entropy(logits, y), ({"accuracy": common.accuracy(logits, y)}, new_state)
        return loss_with_state

    def loss(params, batch, key=None):
        x, y = batch
        logits = model.apply(params, x)
        return F.cross_entropy(logits, y), {"accuracy": common.accuracy(logits, y)}
    return loss


def make_step(model, optimizer):
    """The pure training step ``step(params, opt_state, batch, key) -> (params, opt_state,
    metrics)``: ``value_and_grad`` of :func:`make_loss`, then the optimizer's update.

    With BatchNorm, ``params`` is the pair ``(weights, state)``: the gradient is taken with
    respect to ``weights`` only, the optimizer sees only ``weights``, and the new running
    statistics come back beside the new weights.
    """
    loss_and_grad = fgrad.value_and_grad(make_loss(model), has_aux=True)

    if not model.has_state:
        def step(params, opt_state, batch, key):
            (loss, aux), grads = loss_and_grad(params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return foptim.apply_updates(params, updates), opt_state, {"loss": loss, **aux}
        return step

    def step_with_state(params, opt_state, batch, key):
        weights, state = params
        (loss, (aux, state)), grads = loss_and_grad(weights, state, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, weights)
        return (foptim.apply_updates(weights, updates), state), opt_state, {"loss": loss, **aux}
    return step_with_state


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=5, batch_size=128, lr=2e-3)
    common.add_data_flags(parser, datasets=("mnist",))
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128],
                        help="units of each hidden layer")
    parser.add_argument("--batchnorm", action="store_true",
                        help="BatchNorm1d after each hidden linear layer")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(common.load_images("mnist", args.data), args)
    x_train, (mean, std) = standardize(data.x_train, axis=None)
    x_test, _ = standardize(data.x_test, mean, std)

    model = build_model(tuple(args.hidden), args.batchnorm, num_classes=len(data.classes))
    key, init_key = fgrad.random.split(fgrad.random.key(args.seed))
    weights = model.init(init_key)
    params = (weights, model.init_state()) if model.has_state else weights
    steps = args.epochs * (len(x_train) // args.batch_size)
    optimizer = foptim.adam(foptim.cosine_decay_schedule(args.lr, max(steps, 1)))

    def metrics(params, batch):
        x, y = batch
        if model.has_state:
            weights, state = params
            logits, _ = model.apply(weights, x, state=state)      # running statistics
        else:
            logits = model.apply(params, x)
        return {"loss": F.cross_entropy(logits, y), "accuracy": common.accuracy(logits, y)}

    step = make_step(model, optimizer)
    if args.jit:   # traced once, then replayed as generated NumPy code
        step = fgrad.jit(step)
    params, _, history = common.train_loop(
        step, params,
        optimizer.init(weights), (x_train, data.y_train), epochs=args.epochs,
        batch_size=args.batch_size, key=key,
        eval_fn=lambda p: common.evaluate(metrics, p, (x_test, data.y_test), 2000))
    final = {"test_accuracy": history["eval"]["accuracy"][-1], "test_loss": history["eval"]["loss"][-1]}
    sizes = "-".join(map(str, [784, *args.hidden, 10]))
    title = f"MLP {sizes}{' + BatchNorm' if args.batchnorm else ''} on MNIST"
    return common.finish(args, NAME, history, final, title=title,
                         full_run=FULL_RUNS[args.batchnorm])


if __name__ == "__main__":
    main()
