"""Sentiment of movie-review sentences: embedding -> bidirectional LSTM -> masked pooling -> logit.

    python -m examples.lstm_sentiment                       # word vocabulary, BiLSTM, max pooling
    python -m examples.lstm_sentiment --pool last --unidirectional
    python -m examples.lstm_sentiment --tokenizer bpe --bpe-vocab 4000

The data are the 10,605 Rotten Tomatoes sentences that Hutto and Gilbert had rated by about 20
people each (``examples.datasets.load_movie_reviews``: the file inside the
``vaderSentiment==3.3.2`` source distribution, fetched by ``pip download``); a sentence is
positive when its mean score is above 0. A fixed split by ``fgrad.random.key(0)``: 8,484
sentences to train on, 1,060 to choose the epoch by, 1,061 to report.

The model, for a sentence of ``T`` tokens (ids ``w_1 .. w_T``)::

    e_t = E[w_t]                                   embedding, (T, d); dropout in training
    h_t^fwd = LSTM_fwd(e_t, h_{t-1}^fwd)           t = 1 .. T
    h_t^bwd = LSTM_bwd(e_t, h_{t+1}^bwd)           t = T .. 1, from zeros at the LAST real token
    h_t = [h_t^fwd ; h_t^bwd]                      (T, 2H)
    z = max_t h_t   (or the mean, or [h_T^fwd ; h_1^bwd] with --pool last)
    logit = w . dropout(z) + b,      p(positive) = sigmoid(logit)

trained on the binary cross-entropy by Adam (gradient clipping at norm 5, a cosine-decayed
learning rate), the word vectors starting at N(0, 0.1^2) with ten times the learning rate
(``--embed-lr-scale``; with torch's N(0, 1) start and one rate the test accuracy was 74.9%
instead of 79.6%). The epoch with the best validation accuracy gives the reported test accuracy. The LSTM is ``fnn.LSTM``'s parameters (torch's names and gate order), run by
a loop written here, because a batch holds sentences of different lengths: they are padded on
the right to the longest one, and a mask ``m_t`` (1 at a real token) says where each ends. At
a padded step the state does not move, ``h_t = m_t h_t' + (1 - m_t) h_{t-1}`` (``fnp.where``),
so the forward direction ends with the state of the last real token, and the backward
direction, which runs from the end of the padded batch, keeps its zero state through the
padding and starts at each sentence's own last token. Pooling skips the padded steps. So
padding never changes a sentence's logit (``tests/test_examples_recurrent.py`` checks it,
and checks each direction against ``fnn.LSTM`` on the sentence alone).

Tokens: lower-cased words and punctuation (``tokenize``), with a vocabulary of the words seen
at least ``--min-count`` times in the training split (the rest map to ``<unk>``), or the
byte-level BPE of ``fnn.text.BPETokenizer`` trained on the training sentences
(``--tokenizer bpe``). The baseline printed beside the LSTM is a bag-of-words logistic
regression on the same split and the same vocabulary (one weight per word present in the
sentence, L2 strength chosen on the validation split).
"""
from __future__ import annotations

import collections
import re
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim

from . import common
from .datasets import load_movie_reviews

NAME = "lstm_sentiment"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.lstm_sentiment reached test accuracy 79.64% (bag of words: "
            "78.13%) in 8 min 47 s (README)")
PAD, UNK = 0, 1


# --------------------------------------------------------------------------------------------
# Tokens and batches
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text):
    """Lower-cased words (``"isn't"`` stays one) and single punctuation marks."""
    return _TOKEN.findall(text.lower())


class WordVocabulary:
    """Words seen at least ``min_count`` times in ``texts`` get ids from 2 (by frequency);
    id 0 is padding, id 1 every other word."""

    def __init__(self, texts, min_count=2):
        counts = collections.Counter(t for text in texts for t in tokenize(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        self.ids = {w: i for i, w in enumerate(kept, 2)}
        self.vocab_size = len(self.ids) + 2

    def encode(self, text):
        return [self.ids.get(t, UNK) for t in tokenize(text)]


class BPEVocabulary:
    """``fnn.text.BPETokenizer`` trained on the training sentences; ids shifted by one so that
    0 stays the padding id."""

    def __init__(self, texts, vocab_size):
        self.tokenizer = fnn.text.BPETokenizer.train(texts, vocab_size, special_tokens=())
        self.vocab_size = self.tokenizer.vocab_size + 1

    def encode(self, text):
        return [i + 1 for i in self.tokenizer.encode(text)]


def pad(sequences, length=None):
    """Right-pad lists of ids with ``PAD``: ``(ids (N, length) int64, lengths (N,) int64)``;
    ``length`` defaults to the longest sequence; empty sentences get one ``UNK``."""
    sequences = [s or [UNK] for s in sequences]
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    ids = np.full((len(sequences), length or int(lengths.max())), PAD, dtype=np.int64)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = s
    return ids, lengths


def crop(ids, lengths, multiple=8):
    """A batch's ids cut to its longest sentence, rounded up to ``multiple`` steps (so that a
    jitted step sees a few shapes rather than one per length), and its mask ``(B, T)``."""
    steps = min(ids.shape[1], -(-int(lengths.max()) // multiple) * multiple)
    return ids[:, :steps], np.arange(steps)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class SentimentLSTM:
    """Embedding, a masked (bi-directional) LSTM, pooling over the real tokens, one logit."""

    def __init__(self, vocab_size, embed=128, hidden=128, bidirectional=True, pool="max",
                 dropout=0.5, dtype=np.float32):
        self.pool, self.dropout = pool, dropout
        self.layers = {"embedding": fnn.Embedding(vocab_size, embed, padding_idx=PAD, dtype=dtype),
                       "lstm": fnn.LSTM(embed, hidden, bidirectional=bidirectional, dtype=dtype),
                       "out": fnn.Linear(2 * hidden if bidirectional else hidden, 1, dtype=dtype)}
        self.directions = ("", "_reverse") if bidirectional else ("",)

    def init(self, key, embed_std=0.1):
        params = fnn.init_params(self.layers, key)
        # word vectors start at N(0, embed_std^2) rather than torch's N(0, 1): Adam moves each
        # row by about the learning rate per update, so a word seen a dozen times could never
        # leave a unit-scale random start (see --embed-lr-scale)
        params["embedding"]["weight"] = params["embedding"]["weight"] * embed_std
        # forget-gate bias 1 (Jozefowicz et al. 2015): remember by default at the start
        hidden = self.layers["lstm"].hidden_size
        for suffix in self.directions:
            bias = np.array(params["lstm"][f"bias_ih_l0{suffix}"])
            bias[hidden:2 * hidden] = 1.0
            params["lstm"][f"bias_ih_l0{suffix}"] = bias
        return params

    def apply(self, params, ids, mask, *, key=None, train=False):
        """Logits ``(B,)`` for right-padded ``ids (B, T)`` with ``mask (B, T)`` (True at real
        tokens); ``key`` draws the dropout masks when ``train``."""
        keys = fgrad.random.split(key, 2) if train and self.dropout else (None, None)
        e = self.layers["embedding"].apply(params["embedding"], ids)          # (B, T, d)
        e = F.dropout(e, self.dropout, training=train, key=keys[0])
        outputs, finals = masked_lstm(params["lstm"], e, mask, self.directions)
        if self.pool == "last":
            z = fnp.concatenate(finals, axis=-1)         # [h_T fwd ; h_1 bwd]
        else:
            h = fnp.concatenate(outputs, axis=-1)        # (B, T, D H)
            m = mask[:, :, None]
            if self.pool == "max":
                z = fnp.max(fnp.where(m, h, -2.0), axis=1)                 # h in (-1, 1)
            else:
                z = fnp.sum(fnp.where(m, h, 0.0), axis=1) / fnp.sum(m, axis=1)
        z = F.dropout(z, self.dropout, training=train, key=keys[1])
        return self.layers["out"].apply(params["out"], z)[:, 0]


def masked_lstm(params, x, mask, directions=("", "_reverse")):
    """One LSTM layer over right-padded ``x (B, T, d)``, each direction with its own weights
    (``fnn.LSTM``'s names, suffix ``""`` or ``"_reverse"``); where ``mask (B, T)`` is False the
    state is carried unchanged. Returns ``(outputs, finals)``: per direction the states ``(B, T,
    H)`` and the state after the sentence's last (forward) or first (backward) token ``(B, H)``.
    """
    batch, steps = mask.shape
    keep = [m[:, 0, None] for m in fnp.split(mask, steps, axis=1)]            # T of (B, 1)
    outputs, finals = [], []
    for suffix in directions:
        w_ih, w_hh = params[f"weight_ih_l0{suffix}"], params[f"weight_hh_l0{suffix}"]
        bias = params[f"bias_ih_l0{suffix}"] + params[f"bias_hh_l0{suffix}"]
        # the input half of every gate for every step in one product; split (not indexing)
        # along time, so the backward pass joins the per-step gradients in one concatenate
        gates_x = fnp.split(F.linear(x, w_ih, bias), steps, axis=1)            # T of (B, 1, 4H)
        hidden = w_hh.shape[1]
        h = c = fnp.zeros((batch, hidden), x.dtype)
        out = [None] * steps
        for t in (range(steps - 1, -1, -1) if suffix else range(steps)):
            i, f, g, o = fnp.split(gates_x[t][:, 0] + h @ w_hh.T, 4, axis=-1)
            c_new = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
            h_new = F.sigmoid(o) * F.tanh(c_new)
            h, c = fnp.where(keep[t], h_new, h), fnp.where(keep[t], c_new, c)   # padding: hold
            out[t] = h
        outputs.append(fnp.stack(out, axis=1))
        finals.append(h)
    return outputs, finals


def make_loss(model):
    """``loss(params, (ids, mask, y), key) -> (binary cross-entropy, {"accuracy": ...})``."""
    def loss(params, batch, key=None, train=True):
        ids, mask, y = batch
        logits = model.apply(params, ids, mask, key=key, train=train)
        value = F.binary_cross_entropy_with_logits(logits, fnp.astype(y, logits.dtype))
        return value, {"accuracy": fnp.mean(fnp.astype((logits > 0) == (y == 1), np.float64))}
    return loss


# --------------------------------------------------------------------------------------------
# The baseline: bag-of-words logistic regression
# --------------------------------------------------------------------------------------------

def bag_of_words(sequences):
    """Each sentence's set of distinct word ids, padded: ``(ids (N, K), lengths)``."""
    return pad([sorted(set(s) - {UNK}) or [UNK] for s in sequences])


def bow_logits(params, ids, lengths):
    """``sum over the words present of w[word] + b`` (``w[PAD]`` is never counted)."""
    present = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    return fnp.sum(fnp.where(present, params["w"][ids], 0.0), axis=1) + params["b"]


def fit_bag_of_words(train, val, vocab_size, l2, steps=300, lr=0.05):
    """Full-batch Adam on the mean BCE plus ``l2 |w|^2 / 2``; returns the params."""
    x, lengths, y = train

    def loss(params):
        logits = bow_logits(params, x, lengths)
        return (F.binary_cross_entropy_with_logits(logits, y.astype(np.float64))
                + 0.5 * l2 * fnp.sum(params["w"] ** 2))

    loss_and_grad = fgrad.value_and_grad(loss)
    optimizer = foptim.adam(lr)
    params = {"w": np.zeros(vocab_size), "b": np.zeros(())}
    opt_state = optimizer.init(params)
    for _ in range(steps):
        _, grads = loss_and_grad(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = foptim.apply_updates(params, updates)
    return params


def bow_accuracy(params, data):
    ids, lengths, y = data
    return float(np.mean((bow_logits(params, ids, lengths) > 0) == (y == 1)))


# --------------------------------------------------------------------------------------------
# Command line and run
# --------------------------------------------------------------------------------------------

def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=4, batch_size=32, lr=2e-3)
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the vaderSentiment-3.3.2 sdist (.tar.gz), the hutto_ICWSM_2014.tar.gz "
                             "inside it, or movieReviewSnippets_GroundTruth.txt; None: the "
                             "download cache, fetched with pip download when missing")
    parser.add_argument("--tokenizer", choices=("word", "bpe"), default="word")
    parser.add_argument("--min-count", type=int, default=2,
                        help="word vocabulary: words seen fewer times in training are <unk>")
    parser.add_argument("--bpe-vocab", type=int, default=4000, help="BPE vocabulary size")
    parser.add_argument("--embed", type=int, default=128, help="embedding size d")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM units H per direction")
    parser.add_argument("--unidirectional", action="store_true", help="forward direction only")
    parser.add_argument("--pool", choices=("max", "mean", "last"), default="max",
                        help="how the states become one vector: max or mean over the real "
                             "tokens, or the last state of each direction")
    parser.add_argument("--dropout", type=float, default=0.5,
                        help="dropout on the embeddings and on the pooled vector")
    parser.add_argument("--clip", type=float, default=5.0, help="gradient clipping (global norm)")
    parser.add_argument("--embed-lr-scale", type=float, default=10.0,
                        help="the word vectors' learning rate, as a multiple of --lr (each row "
                             "is updated only by the sentences holding its word)")
    # --jit (common's flag, on by default) traces the step once per padded length (a multiple of
    # 8, about ten shapes): the same run as eager in 3 min 37 s instead of 8 min 47 s
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    data = load_movie_reviews(args.data)
    data = common.subset(data, args)
    x_val, y_val = data.x_val[:args.test_size], data.y_val[:args.test_size]

    start = time.perf_counter()
    vocab = (BPEVocabulary(data.x_train, args.bpe_vocab) if args.tokenizer == "bpe"
             else WordVocabulary(data.x_train, args.min_count))
    encoded = {name: [vocab.encode(t) for t in texts] for name, texts in
               (("train", data.x_train), ("val", x_val), ("test", data.x_test))}
    labels = {"train": data.y_train, "val": y_val, "test": data.y_test}
    arrays = {name: (*pad(seqs), labels[name]) for name, seqs in encoded.items()}
    print(f"{args.tokenizer} vocabulary of {vocab.vocab_size} ids from {len(data.x_train)} "
          f"training sentences ({time.perf_counter() - start:.1f} s); median length "
          f"{int(np.median(arrays['train'][1]))} tokens, longest {arrays['train'][1].max()}")

    # the baseline: bag-of-words logistic regression, L2 strength chosen on validation
    bow = {name: (*bag_of_words(seqs), labels[name]) for name, seqs in encoded.items()}
    fits = {l2: fit_bag_of_words(bow["train"], bow["val"], vocab.vocab_size, l2)
            for l2 in (1e-4, 3e-4, 1e-3, 3e-3)}
    best_l2 = max(fits, key=lambda l2: bow_accuracy(fits[l2], bow["val"]))
    baseline = {"bow_val_accuracy": bow_accuracy(fits[best_l2], bow["val"]),
                "bow_test_accuracy": bow_accuracy(fits[best_l2], bow["test"]), "bow_l2": best_l2}
    print(f"bag-of-words logistic regression (L2 {best_l2:g}): validation "
          f"{baseline['bow_val_accuracy']:.2%}, test {baseline['bow_test_accuracy']:.2%}")

    model = SentimentLSTM(vocab.vocab_size, args.embed, args.hidden, not args.unidirectional,
                          args.pool, args.dropout)
    key, init_key = fgrad.random.split(fgrad.random.key(args.seed))
    params = model.init(init_key)
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    optimizer = foptim.chain(
        foptim.clip_by_global_norm(args.clip),
        foptim.adam(foptim.cosine_decay_schedule(args.lr, max(steps, 1))),
        foptim.masked(foptim.scale(args.embed_lr_scale),       # the embedding's step, scaled
                      {"embedding": True, "lstm": False, "out": False}))
    loss = make_loss(model)
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def update(params, opt_state, batch, key):
        """One step: the loss and its gradient (dropout by ``key``), clipping and Adam."""
        (value, aux), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}

    if args.jit:
        update = fgrad.jit(update)          # one trace per padded length (a multiple of 8)

    def step(params, opt_state, batch, key):
        ids, lengths, y = batch
        return update(params, opt_state, (*crop(ids, lengths), y), key)

    def metrics(params, batch):
        ids, lengths, y = batch
        value, aux = loss(params, (*crop(ids, lengths), y), train=False)
        return {"loss": value, **aux}
    best = {"val_accuracy": -1.0}

    def evaluate(params):
        """Validation and test metrics; the params of the best validation epoch are kept."""
        val = common.evaluate(metrics, params, arrays["val"], 256)
        test = common.evaluate(metrics, params, arrays["test"], 256)
        results = {"val_loss": val["loss"], "val_accuracy": val["accuracy"],
                   "test_accuracy": test["accuracy"]}
        if results["val_accuracy"] > best["val_accuracy"]:
            best.update(results, params=params)
        return results

    params, _, history = common.train_loop(
        step, params, optimizer.init(params), arrays["train"], epochs=args.epochs,
        batch_size=args.batch_size, key=key, eval_fn=evaluate)
    final = {"test_accuracy": best["test_accuracy"], "val_accuracy": best["val_accuracy"],
             "best_epoch": 1 + history["eval"]["val_accuracy"].index(best["val_accuracy"]),
             "last_test_accuracy": history["eval"]["test_accuracy"][-1], **baseline,
             "vocab_size": vocab.vocab_size}
    print(f"LSTM: test accuracy {final['test_accuracy']:.2%} at the best validation epoch "
          f"({final['best_epoch']}), bag of words {baseline['bow_test_accuracy']:.2%}")
    kind = f"{'Bi' if not args.unidirectional else ''}LSTM ({args.pool} pooling)"
    return common.finish(
        args, NAME, history, final, title=f"{kind} on Rotten Tomatoes sentences",
        full_run=FULL_RUN,
        references={"test_accuracy": [("bag-of-words logistic regression",
                                       baseline["bow_test_accuracy"])]},
        metrics=("loss", "accuracy", "val_accuracy", "test_accuracy"),
        titles={"accuracy": "training accuracy (dropout on)",
                "val_accuracy": "validation accuracy (chooses the epoch)",
                "test_accuracy": "test accuracy (black: bag-of-words baseline)"})


if __name__ == "__main__":
    main()
