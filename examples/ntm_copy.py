"""A Neural Turing Machine (Graves, Wayne and Danihelka, 2014) learns to copy sequences.

    python -m examples.ntm_copy                     # lengths 1-20, tested on 20 and on 40
    python -m examples.ntm_copy --steps 12000 --optimizer rmsprop --lr 1e-4

The copy task: the machine sees ``L`` random 8-bit vectors (``L`` uniform in 1..20, drawn with
``fgrad.random`` keys), then a delimiter (a ninth input channel), then ``L`` blank steps in
which it must output the vectors again. It cannot keep 20 x 8 bits in its controller's state:
it has to write them to memory and read them back, in order.

The machine, at each time step ``t`` (``B`` sequences at once)::

    h_t, c_t = LSTMCell([x_t ; r_{t-1}], (h_{t-1}, c_{t-1}))        the controller (100 units)
    for the write head, then the read head, from h_t:
        k = key, beta = softplus(.), g = sigmoid(.), s = softmax(3 shifts), gamma = 1 + softplus(.)
        w_c = softmax(beta cos(k, M_i))                               content addressing
        w_g = g w_c + (1 - g) w_{t-1}                                 interpolation
        w_s[i] = sum_j w_g[i - j] s[j],  j in {-1, 0, +1} mod N       circular shift
        w_t = w_s^gamma / sum(w_s^gamma)                               sharpening
    write:  M <- M (1 - w e^T) + w a^T     (erase e = sigmoid(.), add a = tanh(.))
    read:   r_t = sum_i w_t[i] M_i
    y_t = W [h_t ; r_t] + b                                           8 output logits

with memory ``N = 128`` slots of ``M = 20`` numbers, trained on the binary cross-entropy of the
output phase by Adam with every gradient component clipped to [-10, 10] (the paper used
RMSprop and the same clipping). Written stably: the cosine divides by ``sqrt(|k|^2 + eps)
sqrt(|M_i|^2 + eps)`` (never by zero, no infinite gradient of a square root at 0); both
softmaxes subtract their maximum; the sharpening ``w^gamma / sum w^gamma`` is the softmax of
``gamma log(w + eps)``, so it neither overflows nor divides by zero, and a weighting is always a
distribution over the slots. A run checks every step's loss and gradient norm for NaN.

The result is the number of wrong bits per sequence (output > 0.5 against the target) on fresh
sequences of length 20 and of length 40, twice the longest seen in training: a machine that
learnt the algorithm (write at consecutive slots, go back to the start, read them in order)
copies both, one that memorised does not. ``heads.png`` in the run folder shows the write and
read weightings over time for one sequence: two diagonals, the read one a copy of the write
one shifted by the sequence's length.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim
from fgrad import tree

from . import common

NAME = "ntm_copy"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.ntm_copy copied every test sequence of length 20 and of length "
            "40 without a wrong bit after 5,500 of its 6,000 steps, in about 15 min (README)")
BITS = 8
EPS = 1e-6
SHIFTS = (-1, 0, 1)


# --------------------------------------------------------------------------------------------
# The copy task
# --------------------------------------------------------------------------------------------

def copy_batch(key, batch, length, bits=BITS):
    """``(x (B, 2L+1, bits+1), targets (B, L, bits))``: ``L`` random bit vectors, then the
    delimiter on channel ``bits``, then ``L`` blank steps (the output phase)."""
    seq = np.asarray(fgrad.random.bernoulli(key, 0.5, (batch, length, bits))).astype(np.float32)
    x = np.zeros((batch, 2 * length + 1, bits + 1), np.float32)
    x[:, :length, :bits] = seq
    x[:, length, bits] = 1.0
    return x, seq


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------

class NTM:
    """An LSTM controller with one read and one write head on an ``N x M`` memory."""

    def __init__(self, inputs=BITS + 1, outputs=BITS, controller=100, slots=128, width=20,
                 dtype=np.float32):
        self.slots, self.width, self.dtype = slots, width, dtype
        # what the controller emits for the heads, in one product, then split:
        # write head key (M), beta, g, shifts (3), gamma, erase (M), add (M); read head the same
        # without erase and add
        head = (width, 1, 1, len(SHIFTS), 1)
        self.head_sizes = head + (width, width) + head
        self.layers = {"controller": fnn.LSTMCell(inputs + width, controller, dtype=dtype),
                       "heads": fnn.Linear(controller, sum(self.head_sizes), dtype=dtype),
                       "out": fnn.Linear(controller + width, outputs, dtype=dtype)}

    def init(self, key):
        return fnn.init_params(self.layers, key)

    def initial_state(self, batch):
        """Memory at a small constant (Collier and Beel, 2018: better than random), both heads
        on slot 0, a blank read vector, the controller at zero."""
        hidden = self.layers["controller"].hidden_size
        at_zero = np.zeros((batch, self.slots), self.dtype)
        at_zero[:, 0] = 1.0
        return {"memory": np.full((batch, self.slots, self.width), EPS, self.dtype),
                "read": np.zeros((batch, self.width), self.dtype), "w_read": at_zero,
                "w_write": at_zero, "h": np.zeros((batch, hidden), self.dtype),
                "c": np.zeros((batch, hidden), self.dtype)}

    def step(self, params, state, x):
        """One time step: ``(new_state, logits (B, outputs))``."""
        h, c = self.layers["controller"].apply(params["controller"],
                                               fnp.concatenate([x, state["read"]], axis=-1),
                                               (state["h"], state["c"]))
        pieces = fnp.split(self.layers["heads"].apply(params["heads"], h),
                           np.cumsum(self.head_sizes)[:-1].tolist(), axis=-1)
        write, (erase, add), read = pieces[:5], pieces[5:7], pieces[7:]
        # the write head: address, erase, add
        w_write = address(state["memory"], state["w_write"], *write)
        w = w_write[:, :, None]
        memory = state["memory"] * (1.0 - w * F.sigmoid(erase)[:, None, :]) + w * fnp.tanh(add)[:, None, :]
        # the read head: address, read
        w_read = address(memory, state["w_read"], *read)
        read = fnp.einsum("bn,bnm->bm", w_read, memory)
        logits = self.layers["out"].apply(params["out"], fnp.concatenate([h, read], axis=-1))
        return {"memory": memory, "read": read, "w_read": w_read, "w_write": w_write,
                "h": h, "c": c}, logits

    def apply(self, params, x):
        """Run the sequences ``x (B, T, inputs)``: ``(logits (B, T, outputs), weightings)``
        where ``weightings = (w_write, w_read)``, each ``(B, T, N)``."""
        steps = x.shape[1]
        state = self.initial_state(x.shape[0])
        logits, writes, reads = [], [], []
        for x_t in fnp.split(x, steps, axis=1):                # split: one concatenate back
            state, y = self.step(params, state, x_t[:, 0])
            logits.append(y)
            writes.append(state["w_write"])
            reads.append(state["w_read"])
        return fnp.stack(logits, axis=1), (fnp.stack(writes, axis=1), fnp.stack(reads, axis=1))


def address(memory, w_prev, key, beta, gate, shift, gamma):
    """A head's new weighting ``(B, N)`` from the controller's raw outputs for it (``key (B,
    M)``, then ``(B, 1)``, ``(B, 1)``, ``(B, 3)``, ``(B, 1)``): content addressing with key
    strength, interpolation with the previous weighting ``w_prev``, circular shift, sharpening
    (see the module docstring), each written so that no step makes a NaN."""
    # cos(k, M_i), never dividing by zero
    dots = fnp.einsum("bnm,bm->bn", memory, key)
    norms = (fnp.sqrt(fnp.sum(memory * memory, axis=-1) + EPS)
             * fnp.sqrt(fnp.sum(key * key, axis=-1, keepdims=True) + EPS))
    w = F.softmax(F.softplus(beta) * (dots / norms), dim=-1)            # content, beta >= 0
    gate = F.sigmoid(gate)
    w = gate * w + (1.0 - gate) * w_prev                                 # interpolation
    rolled = fnp.stack([fnp.roll(w, s, axis=1) for s in SHIFTS], axis=-1)   # w[i - s]
    w = fnp.einsum("bns,bs->bn", rolled, F.softmax(shift, dim=-1))      # circular shift
    return F.softmax((1.0 + F.softplus(gamma)) * fnp.log(w + EPS), dim=-1)   # sharpening


def output_phase(logits, length):
    """The logits of the output phase, the last ``length`` steps: ``(B, L, bits)``."""
    return logits[:, -length:]


def make_loss(model):
    """``loss(params, (x, targets), key) -> (mean BCE of the output phase, metrics)``;
    ``bit_errors`` is the number of wrong bits per sequence."""
    def loss(params, batch, key=None):
        x, targets = batch
        logits, _ = model.apply(params, x)
        logits = output_phase(logits, targets.shape[1])
        value = F.binary_cross_entropy_with_logits(logits, targets)
        errors = fnp.sum(fnp.astype((logits > 0) != (targets > 0.5), np.float64)) / targets.shape[0]
        return value, {"bit_errors": errors}
    return loss


# --------------------------------------------------------------------------------------------
# The heatmap
# --------------------------------------------------------------------------------------------

def save_heads(path, x, targets, logits, w_write, w_read, title):
    """One sequence: the input, the target and the output, and the write and read weightings
    over time (slots used only), as heatmaps side by side."""
    common.require("matplotlib", "plotting the heads' weightings")
    from matplotlib.figure import Figure
    # the slots the heads used, in order around the circle: cut the circle at the least used
    # slot, keep the used stretch (plus two on each side)
    usage = w_write.sum(axis=0) + w_read.sum(axis=0)
    order = np.roll(np.arange(len(usage)), -(int(np.argmin(usage)) + 1))
    used = np.nonzero(usage[order] > 1e-2 * usage.max())[0]
    order = order[max(used.min() - 2, 0):used.max() + 3]
    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 3, height_ratios=(1, 2.2))
    panels = [(x.T, "input (8 bits + delimiter)"), (targets.T, "target"),
              (1 / (1 + np.exp(-logits.T)), "output (sigmoid)")]
    for ax, (image, name) in zip(axes[0], panels):
        ax.imshow(image, aspect="auto", cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("time step")
    for ax, (w, name) in zip(axes[1], ((w_write, "write weighting"), (w_read, "read weighting"))):
        ax.imshow(w[:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                  origin="lower", interpolation="nearest")
        ticks = np.arange(0, len(order), max(1, len(order) // 8))
        ax.set_yticks(ticks, [str(order[i]) for i in ticks])
        ax.set_title(f"{name} over time", fontsize="medium")
        ax.set_xlabel("time step")
        ax.set_ylabel("memory slot (the used ones, around the circle)")
    axes[1, 2].set_visible(False)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------------------
# Command line and run
# --------------------------------------------------------------------------------------------

def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=1, batch_size=16, lr=1e-3)
    for action in parser._actions:          # the copy task has no data set: no epochs, no sizes
        if action.dest in ("epochs", "train_size", "test_size"):
            action.help = argparse.SUPPRESS
        elif action.dest == "quick":
            action.help = ("a sanity run, seconds long and far from the stated result: 60 eager "
                           "steps on lengths up to 5, tested on lengths 5 and 10")
        elif action.dest == "out_dir":
            action.help = "where curves.png, heads.png and metrics.json go"
    parser.add_argument("--steps", type=int, default=6000, help="training steps (batches)")
    parser.add_argument("--min-length", type=int, default=1, help="shortest training sequence")
    parser.add_argument("--max-length", type=int, default=20, help="longest training sequence")
    parser.add_argument("--test-lengths", type=int, nargs="+", default=[20, 40],
                        help="lengths of the test sequences (40: twice the training length)")
    parser.add_argument("--test-batch", type=int, default=64, help="test sequences per length")
    parser.add_argument("--controller", type=int, default=100, help="LSTM controller units")
    parser.add_argument("--slots", type=int, default=128, help="memory slots N")
    parser.add_argument("--width", type=int, default=20, help="numbers per slot M")
    parser.add_argument("--clip", type=float, default=10.0,
                        help="clip every gradient component to [-clip, clip]")
    parser.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    parser.add_argument("--curriculum", action="store_true",
                        help="start with lengths up to min-length + 1 and allow one more each "
                             "time the last 50 steps average under half a wrong bit per "
                             "sequence, up to --max-length (Tan, 2014: short sequences first)")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between tests")
    # --jit (common's flag, on by default) traces the step once per sequence length: about 3x
    # faster than eager here
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    if args.quick:                         # --quick: 60 eager steps on lengths up to 5
        args.steps, args.jit = min(args.steps, 60), False
        args.max_length = min(args.max_length, 5)
        args.test_lengths = [args.max_length, 2 * args.max_length]
        args.eval_every = min(args.eval_every, 30)
        args.test_batch = min(args.test_batch, 16)
    model = NTM(BITS + 1, BITS, args.controller, args.slots, args.width)
    key = fgrad.random.key(args.seed)
    init_key, data_key, test_key = fgrad.random.split(key, 3)
    params = model.init(init_key)
    if args.optimizer == "adam":
        inner = foptim.adam(args.lr)
    else:
        inner = foptim.rmsprop(args.lr, decay=0.95, momentum=0.9)
    optimizer = foptim.chain(foptim.clip(args.clip), inner)
    loss = make_loss(model)
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def update(params, opt_state, batch, key):
        """One step: the loss of the output phase, its gradient, clipping and the update."""
        (value, aux), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        norm = fnp.sqrt(sum(fnp.sum(g * g) for g in tree.leaves(grads)))
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux,
                                                                  "grad_norm": norm}

    if args.jit:
        update = fgrad.jit(update)             # one trace per sequence length

    longest = {"now": args.min_length + 1 if args.curriculum else args.max_length, "errors": []}

    def step(params, opt_state, batch, key):
        params, opt_state, metrics = update(params, opt_state, batch, key)
        if not all(math.isfinite(float(v)) for v in metrics.values()):
            raise FloatingPointError(f"ntm_copy: a non-finite loss or gradient: {metrics}")
        longest["errors"] = (longest["errors"] + [float(metrics["bit_errors"])])[-50:]
        if (longest["now"] < args.max_length and len(longest["errors"]) == 50
                and np.mean(longest["errors"]) < 0.5):
            longest.update(now=longest["now"] + 1, errors=[])
        return params, opt_state, {**metrics, "longest": longest["now"]}

    def make_batch(key):
        length_key, bits_key = fgrad.random.split(key)
        length = int(fgrad.random.randint(length_key, (), args.min_length, longest["now"] + 1))
        return copy_batch(bits_key, args.batch_size, length)

    tests = {length: copy_batch(fgrad.random.fold_in(test_key, length), args.test_batch, length)
             for length in args.test_lengths}

    def evaluate(params):
        return {f"bit_errors_{length}": float(loss(params, batch)[1]["bit_errors"])
                for length, batch in tests.items()}

    params, _, history = common.train_stream(
        step, params, optimizer.init(params), make_batch, steps=args.steps, key=data_key,
        eval_fn=evaluate, eval_every=args.eval_every,
        described=f"{args.steps} steps of {args.batch_size} sequences")
    final = {f"test_bit_errors_{length}": history["eval"][f"bit_errors_{length}"][-1]
             for length in args.test_lengths}
    final["sequences_seen"] = args.steps * args.batch_size

    # one sequence of the first test length, drawn as heatmaps
    length = args.test_lengths[0]
    x, targets = (a[:1] for a in tests[length])
    logits, (w_write, w_read) = model.apply(params, x)
    os.makedirs(args.out_dir, exist_ok=True)
    heads = save_heads(os.path.join(args.out_dir, "heads.png"), x[0], targets[0],
                       np.asarray(output_phase(logits, length)[0]), np.asarray(w_write[0]),
                       np.asarray(w_read[0]), f"NTM copy, length {length}: "
                       f"{final[f'test_bit_errors_{length}']:.2f} wrong bits per sequence")
    print(f"heads' weightings in {heads}")
    references = {f"bit_errors_{n}": [("target 1 bit" if n <= args.max_length else "target 2 bits",
                                       1.0 if n <= args.max_length else 2.0)]
                  for n in args.test_lengths}
    return common.finish(
        args, NAME, history, final, title=f"NTM on the copy task (lengths {args.min_length}-"
                                          f"{args.max_length}, batch {args.batch_size})",
        references=references, full_run=FULL_RUN,
        log_scale=("loss", "bit_errors") + tuple(f"bit_errors_{n}" for n in args.test_lengths),
        metrics=("loss", "bit_errors", *(f"bit_errors_{n}" for n in args.test_lengths),
                 "grad_norm") + (("longest",) if args.curriculum else ()),
        titles={"bit_errors": "wrong bits per training sequence",
                "longest": "longest training sequence (curriculum)",
                "grad_norm": "gradient norm before clipping",
                **{f"bit_errors_{n}": f"wrong bits per test sequence of length {n}"
                   for n in args.test_lengths}})


if __name__ == "__main__":
    main()
