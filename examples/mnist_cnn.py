"""A small convolutional network on MNIST (or Fashion-MNIST, or CIFAR-10 where it exists).

    python -m examples.mnist_cnn                            # MNIST, the stated result
    python -m examples.mnist_cnn --dataset fashion_mnist    # the same network on Fashion-MNIST
    python -m examples.mnist_cnn --dataset cifar10 --data PATH/cifar-10-batches-py

The network is the classic shape: two blocks of 3x3 convolution, ReLU and 2x2 max pooling,
then a hidden fully connected layer and the classifier::

    (N, C, 28, 28) -> conv 3x3, C->16 -> relu -> maxpool 2 -> (N, 16, 14, 14)
                   -> conv 3x3, 16->32 -> relu -> maxpool 2 -> (N, 32, 7, 7)
                   -> flatten -> linear 1568->128 -> relu -> linear 128->10

It is an ``fnn.Sequential``: its params are the ``state_dict`` of the same ``torch.nn.Sequential``
(``tests/test_mnist_cnn_vs_torch.py`` checks a whole training step against torch). Training is
Adam on the mean cross-entropy with a cosine-decayed learning rate, by the pure step of
:func:`make_step`: ``fgrad.value_and_grad`` of the loss, then ``optimizer.update``. Inputs are standardised with the training set's mean and
standard deviation per channel.

One file serves the three image sets (``--dataset``) because only the loader differs: the
network reads its input channels and image size from the data. CIFAR-10 has no offline
source, so it runs only with ``--data`` pointing at the unpacked python batches.
"""
from __future__ import annotations

import numpy as np

import fgrad
import fnn
import fnn.functional as F
import foptim
from fnn.data import standardize

from . import common

NAME = "mnist_cnn"
#: The measured default runs (README, "Examples"), quoted at the end of a --quick run.
FULL_RUNS = {"mnist": "python -m examples.mnist_cnn reached test accuracy 98.91% in 4 min 7 s "
                      "(README)",
             "fashion_mnist": "python -m examples.mnist_cnn --dataset fashion_mnist reached "
                              "test accuracy 90.09% in 4 min (README)",
             "cifar10": "python -m examples.mnist_cnn --dataset cifar10 (never measured here: "
                        "no offline copy of CIFAR-10)"}


def build_model(in_channels=1, image_size=28, channels=(16, 32), hidden=128, num_classes=10,
                dtype=np.float32):
    """Conv-ReLU-MaxPool blocks with ``channels[i]`` filters each, then ``hidden`` units (none
    if 0) and ``num_classes`` logits; ``image_size`` must stay divisible by 2 per block."""
    layers, c, size = [], in_channels, image_size
    for out in channels:
        layers += [fnn.Conv2d(c, out, 3, padding=1, dtype=dtype), fnn.ReLU(), fnn.MaxPool2d(2)]
        c, size = out, size // 2
    layers.append(fnn.Flatten())
    features = c * size * size
    if hidden:
        layers += [fnn.Linear(features, hidden, dtype=dtype), fnn.ReLU()]
        features = hidden
    layers.append(fnn.Linear(features, num_classes, dtype=dtype))
    return fnn.Sequential(*layers)


def make_loss(model):
    """``loss(params, batch, key=None) -> (mean cross-entropy, {"accuracy": ...})``; the network
    is deterministic (no state, no dropout), so ``key`` is unused."""
    def loss(params, batch, key=None):
        x, y = batch
        logits = model.apply(params, x)
        return F.cross_entropy(logits, y), {"accuracy": common.accuracy(logits, y)}
    return loss


def make_step(loss, optimizer):
    """The pure training step ``step(params, opt_state, batch, key) -> (params, opt_state,
    metrics)``: the loss and its gradient in one pass, the optimizer's update, the new params."""
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def step(params, opt_state, batch, key):
        (value, aux), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}
    return step


def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=3, batch_size=128, lr=2e-3)
    common.add_data_flags(parser)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32],
                        help="filters of each conv block")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (0: none)")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = common.subset(common.load_images(args.dataset, args.data), args)
    x_train, (mean, std) = standardize(data.x_train, axis=(0, 2, 3))
    x_test, _ = standardize(data.x_test, mean, std)
    _, channels, size, _ = x_train.shape

    model = build_model(channels, size, tuple(args.channels), args.hidden, len(data.classes))
    key, init_key = fgrad.random.split(fgrad.random.key(args.seed))
    params = model.init(init_key)
    steps = args.epochs * (len(x_train) // args.batch_size)
    optimizer = foptim.adam(foptim.cosine_decay_schedule(args.lr, max(steps, 1)))
    loss = make_loss(model)
    metrics = common.loss_metrics(loss)

    step = make_step(loss, optimizer)
    if args.jit:   # traced once, then replayed as generated NumPy code
        step = fgrad.jit(step)
    params, _, history = common.train_loop(
        step, params, optimizer.init(params),
        (x_train, data.y_train), epochs=args.epochs, batch_size=args.batch_size, key=key,
        eval_fn=lambda p: common.evaluate(metrics, p, (x_test, data.y_test), 1000))
    final = {"test_accuracy": history["eval"]["accuracy"][-1], "test_loss": history["eval"]["loss"][-1]}
    return common.finish(args, NAME, history, final, title=f"CNN on {data.name}",
                         full_run=FULL_RUNS[args.dataset])


if __name__ == "__main__":
    main()
