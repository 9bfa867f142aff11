"""Docstring summaries by an RNN encoder-decoder with additive attention (Bahdanau et al., 2015).

    python -m examples.seq2seq                  # BiGRU encoder, GRU decoder, attention, copying
    python -m examples.seq2seq --no-copy        # Bahdanau's model alone: write from the softmax
    python -m examples.seq2seq --beam 8 --length-alpha 1.0 --no-repeat-ngram 0

The task: read the body of a Python docstring and write its first line. The pairs come from
the functions, classes and methods of CPython's standard library and of the installed numpy
and scikit-learn (``examples.datasets.load_docstring_pairs``: read with ``ast``, never
imported; split by module, so no module has pairs in two splits; deduplicated). The body is
cleaned (doctests, directives and numpydoc sections other than Parameters and Returns cut)
and cut to 64 words; the target is the summary line as written.

Tokens: byte-level BPE (``fnn.text.BPETokenizer``) trained on the training bodies and
summaries, one vocabulary for both sides; ids shifted by three so that 0, 1, 2 are padding,
``<s>`` and ``</s>``. Sources are cut to ``--max-source`` tokens, targets to ``--max-target``.

The model, for source tokens ``x_1 .. x_S`` and target tokens ``y_1 .. y_T`` (``E`` one
embedding matrix for source, target and output)::

    h_j = [GRU_fwd(E x_j, h_{j-1}) ; GRU_bwd(E x_j, h_{j+1})]        encoder states, (S, 2H)
    s_0 = tanh(W_init [h_S^fwd ; h_1^bwd])                            decoder start
    e_tj = v . tanh(W_q s_{t-1} + U_k h_j)                            additive attention scores
    a_t = softmax_j(e_t) over the real source tokens,  c_t = sum_j a_tj h_j
    s_t = GRU_dec([E y_{t-1} ; c_t], s_{t-1})                         teacher forcing: the true y
    o_t = tanh(W_o [s_t ; c_t ; E y_{t-1}] + b_o)                     (d,) with d the embedding size
    p(y_t | y_<t, x) = softmax(E o_t + b)                             output tied to the embedding

and, by default (``--copy``), a pointer-generator switch (See et al., 2017) that lets the
decoder copy a source token by attending to it, since a summary mostly reuses the body's
words (rare names above all)::

    g_t = w_g . [s_t ; c_t ; E y_{t-1}] + b_g
    p(y_t = w) = sigmoid(g_t) softmax(E o_t + b)_w + sigmoid(-g_t) sum_{j: x_j = w} a_tj

computed in log space (``mix_copy``: a ``logaddexp`` of the two terms, the copy term's log
taken only where it is positive, so no log 0 and no NaN gradient; ``copy_mixture`` is the same
function fused into one kernel, which the model runs). The model is
trained on the cross-entropy of every real target token (padding masked) by Adam with
global-norm clipping and a cosine-decayed learning rate, dropout on the embeddings and on
``o_t``. Both recurrences are ``fgrad.lax.scan`` loops (one staged body each, which ``jit``
compiles once), and the whole training step is ``fgrad.jit``-compiled (``--no-jit`` runs it
eagerly). Batches hold sources of similar length (``bucketed_batches``), padded on the right to
one of a few lengths so that the jitted step sees a few shapes; at a padded source step the
encoder's state does not move and attention gives it weight exactly 0, so padding never
changes a sentence's decoder outputs (``tests/test_examples_seq2seq.py`` checks it).

Decoding: greedy (the most likely token at each step) and beam search (``--beam`` hypotheses;
a finished hypothesis keeps its score; the winner maximises ``log p / lp`` with GNMT's length
penalty ``lp = ((5 + length) / 6) ** alpha``, Wu et al. 2016); beam 1 is greedy exactly.
Both never write the same two tokens twice (``--no-repeat-ngram 2``, as Paulus et al. 2017 do
with three): a small model left alone loops ("Return the feature feature feature"); the test
BLEU of greedy decoding without the block is reported too. The decoding defaults (blocking
bigrams, ``alpha = 2``, which lengthens the beam's otherwise short summaries) were chosen on
the validation split with the parameters of an 8-epoch run, never on the test split.
Scores: corpus BLEU (``fnn.text.corpus_bleu``, sacrebleu's 13a BLEU) of the decoded summaries
on the test split, beside a baseline that copies the first sentence of the body. The epoch
with the best validation BLEU (greedy) gives the reported test scores. ``attention.png`` in
the run folder shows the attention weights of one test example.
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
from fgrad import lax
from fgrad.core import shape_of

from . import common
from .datasets import DOCSTRING_SOURCES, first_sentence, load_docstring_pairs

NAME = "seq2seq"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.seq2seq reached test BLEU 3.13 with beam 4 (greedy 2.08; copying "
            "the body's first sentence 2.48) in 9 min 42 s (README)")
PAD, BOS, EOS = 0, 1, 2
SPECIALS = 3
NEG = -1e9            # the score of a padded source position: exp underflows to exactly 0


# --------------------------------------------------------------------------------------------
# Tokens and batches
# --------------------------------------------------------------------------------------------

class Vocabulary:
    """Byte-level BPE trained on ``texts``, one vocabulary for sources and targets; ids shifted
    by ``SPECIALS`` so that ``PAD``, ``BOS`` and ``EOS`` are 0, 1, 2."""

    def __init__(self, texts, vocab_size):
        self.tokenizer = fnn.text.BPETokenizer.train(texts, vocab_size - SPECIALS,
                                                     special_tokens=())
        self.vocab_size = self.tokenizer.vocab_size + SPECIALS

    def encode(self, text):
        return [i + SPECIALS for i in self.tokenizer.encode(text)]

    def decode(self, ids):
        """The text of ``ids`` up to the first ``EOS``, special ids dropped."""
        ids = list(ids)
        if EOS in ids:
            ids = ids[:ids.index(EOS)]
        return self.tokenizer.decode([i - SPECIALS for i in ids if i >= SPECIALS])


def encode_pairs(vocab, pairs, max_source, max_target):
    """``(source ids (N, max_source), target ids (N, max_target + 1))``, right-padded with
    ``PAD``: the body cut to ``max_source`` tokens; the summary cut to ``max_target`` tokens
    then ``EOS``. An empty body becomes one ``EOS``."""
    sources = np.full((len(pairs), max_source), PAD, np.int64)
    targets = np.full((len(pairs), max_target + 1), PAD, np.int64)
    for i, pair in enumerate(pairs):
        body = vocab.encode(pair.body)[:max_source] or [EOS]
        summary = vocab.encode(pair.summary)[:max_target] + [EOS]
        sources[i, :len(body)] = body
        targets[i, :len(summary)] = summary
    return sources, targets


def padded_length(length, multiple):
    """``length`` rounded up to a multiple of ``multiple`` (so a jitted step sees few shapes)."""
    return max(multiple, -(-int(length) // multiple) * multiple)


def crop(sources, targets, source_multiple=32, target_multiple=16):
    """A batch cut to its longest source and target, rounded up to the multiples."""
    s = padded_length((sources != PAD).sum(axis=1).max(), source_multiple)
    t = padded_length((targets != PAD).sum(axis=1).max(), target_multiple)
    return sources[:, :min(s, sources.shape[1])], targets[:, :min(t, targets.shape[1])]


def bucketed_batches(key, lengths, batch_size, chunk=50):
    """One epoch of batches (index arrays) of sources of similar length: the examples in a
    random order (by ``key``), cut into chunks of ``chunk`` batches, each chunk sorted by
    length and cut into batches, and the batches shuffled. The last incomplete batch of each
    chunk is dropped (each batch has ``batch_size`` examples)."""
    order_key, batch_key = fgrad.random.split(key)
    order = np.asarray(fgrad.random.permutation(order_key, len(lengths)))
    batches = []
    for start in range(0, len(order), chunk * batch_size):
        part = order[start:start + chunk * batch_size]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
    return [batches[i] for i in np.asarray(fgrad.random.permutation(batch_key, len(batches)))]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def check_token_ids(where, vocab_size, **arrays):
    """The arrays (lists made arrays), or raise unless each is a ``(batch, length)`` array of
    integer token ids in ``[0, vocab_size)`` (the values are checked when they are concrete,
    not under ``jit``), one batch size for all: a source batch of 1 would otherwise broadcast
    against the targets. ``where`` names the caller in the message."""
    batches, checked = {}, []
    for name, ids in arrays.items():
        if not hasattr(ids, "dtype"):
            ids = np.asarray(ids)
        shape, dtype = shape_of(ids), np.dtype(ids.dtype)
        if len(shape) != 2 or dtype.kind not in "iu":
            raise TypeError(f"{where}: {name} must be a (batch, length) array of integer token "
                            f"ids, got shape {shape} and dtype {dtype}")
        if type(ids) is np.ndarray and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"{where}: {name} holds ids from {ids.min()} to {ids.max()}, "
                             f"outside [0, vocab_size={vocab_size})")
        batches[name] = shape[0]
        checked.append(ids)
    if len(set(batches.values())) > 1:
        raise ValueError(f"{where}: the batch sizes differ ("
                         + ", ".join(f"{n} {b}" for n, b in batches.items())
                         + "); pass one target row per source row")
    return tuple(checked)


class Seq2Seq:
    """A bidirectional GRU encoder and a GRU decoder with additive attention; one embedding
    for source, target and output."""

    def __init__(self, vocab_size, embed=128, hidden=96, decoder_hidden=192, attention=64,
                 dropout=0.3, copy=True, dtype=np.float32):
        self.dropout, self.copy = dropout, copy
        encoded = 2 * hidden
        self.layers = {
            "embedding": fnn.Embedding(vocab_size, embed, padding_idx=PAD, dtype=dtype),
            "encoder": fnn.GRU(embed, hidden, bidirectional=True, dtype=dtype),
            "init": fnn.Linear(encoded, decoder_hidden, dtype=dtype),
            "keys": fnn.Linear(encoded, attention, bias=False, dtype=dtype),      # U_k
            "query": fnn.Linear(decoder_hidden, attention, dtype=dtype),          # W_q
            "score": fnn.Linear(attention, 1, bias=False, dtype=dtype),           # v
            "decoder": fnn.GRUCell(embed + encoded, decoder_hidden, dtype=dtype),
            "out": fnn.Linear(decoder_hidden + encoded + embed, embed, dtype=dtype),  # W_o
        }
        if copy:                                   # the switch g_t between writing and copying
            self.layers["switch"] = fnn.Linear(decoder_hidden + encoded + embed, 1, dtype=dtype)
        self.vocab_size, self.dtype = vocab_size, dtype

    def init(self, key, embed_std=0.1):
        params = fnn.init_params(self.layers, key)
        # N(0, 0.1^2) rather than torch's N(0, 1): the same matrix gives the output logits
        params["embedding"]["weight"] = params["embedding"]["weight"] * embed_std
        params["out_bias"] = np.zeros(self.vocab_size, self.dtype)
        return params

    def encode(self, params, sources, *, key=None, train=False):
        """``(states (B, S, 2H), keys (B, S, A), mask (B, S), s_0 (B, H_dec))`` for sources."""
        sources, = check_token_ids("Seq2Seq.encode", self.vocab_size, sources=sources)
        mask = sources != PAD
        # time-major (S, B, d) from the start: the scans step along axis 0 with no transposes
        x = self.layers["embedding"].apply(params["embedding"], sources.T)
        x = F.dropout(x, self.dropout, training=train, key=key)
        (forward, h_fwd), (backward, h_bwd) = (
            masked_gru(params["encoder"], x, mask.T, suffix) for suffix in ("", "_reverse"))
        states = fnp.swapaxes(fnp.concatenate([forward, backward], axis=-1), 0, 1)
        s0 = fnp.tanh(self.layers["init"].apply(params["init"],
                                                fnp.concatenate([h_fwd, h_bwd], axis=-1)))
        keys = self.layers["keys"].apply(params["keys"], states)
        return states, keys, mask, s0

    def input_gates(self, params, y):
        """The embedded previous tokens' share of the decoder GRU's input gates, ``W_y y +
        b_ih`` (``W_ih = [W_y, W_c]``), and ``W_c``, which multiplies the context step by step."""
        w_y, w_context = fnp.split(params["decoder"]["weight_ih"], [y.shape[-1]], axis=1)
        return F.linear(y, w_y, params["decoder"]["bias_ih"]), w_context

    def decoder_step(self, params, state, gates_y, w_context, memory):
        """One decoder step: attention from ``s_{t-1}``, then the GRU on ``[E y_{t-1} ; c_t]``
        (``gates_y`` and ``w_context`` from :meth:`input_gates`). Returns ``(s_t, c_t,
        attention weights (B, S))``; ``memory`` is ``(states, keys, mask, sources)``."""
        states, keys, mask, _ = memory
        context, weights = additive_attention(
            state, keys, states, mask, params["query"]["weight"], params["query"]["bias"],
            params["score"]["weight"][0])
        w = params["decoder"]
        state = gru_update(gates_y + context @ w_context.T, state, w["weight_hh"], w["bias_hh"])
        return state, context, weights

    def output(self, params, state, context, y):
        """``o_t = tanh(W_o [s_t ; c_t ; E y_{t-1}] + b_o)`` and, with ``copy``, the switch's
        logit ``g_t = w_g . [s_t ; c_t ; E y_{t-1}] + b_g`` (else ``None``), any leading axes."""
        features = fnp.concatenate([state, context, y], axis=-1)
        o = fnp.tanh(self.layers["out"].apply(params["out"], features))
        gate = self.layers["switch"].apply(params["switch"], features)[..., 0] if self.copy else None
        return o, gate

    def logits(self, params, o):
        """Output logits ``E o + b`` (the embedding matrix as the output layer)."""
        return o @ params["embedding"]["weight"].T + params["out_bias"]

    def log_probs(self, params, o, gate, weights, sources):
        """``log p(y_t = w)`` for every token ``w`` ``(..., V)``: the softmax of the logits, or
        with ``copy`` the mixture ``sigmoid(g) softmax + sigmoid(-g) p_copy`` (See et al.,
        2017), ``p_copy(w)`` the attention on the source positions holding ``w``."""
        logits = self.logits(params, o)
        if gate is None:
            return F.log_softmax(logits, dim=-1)
        return copy_mixture(logits, gate, weights, sources)

    def apply(self, params, sources, targets, *, key=None, train=False):
        """Teacher-forced log-probabilities ``(B, T, V)`` and attention weights ``(B, T, S)``:
        step ``t`` reads the true previous token (``BOS`` first). Only the recurrence runs step
        by step (``lax.scan``); what needs no state (the tokens' input gates, the output layer,
        the logits) is one product over all steps."""
        sources, targets = check_token_ids("Seq2Seq.apply", self.vocab_size, sources=sources,
                                           targets=targets)
        keys = fgrad.random.split(key, 3) if train and self.dropout else (None,) * 3
        memory_states, memory_keys, mask, s0 = self.encode(params, sources, key=keys[0],
                                                           train=train)
        previous = fnp.concatenate([fnp.full((targets.shape[0], 1), BOS, targets.dtype),
                                    targets[:, :-1]], axis=1)
        y = self.layers["embedding"].apply(params["embedding"], previous.T)     # (T, B, d)
        y = F.dropout(y, self.dropout, training=train, key=keys[1])
        gates_y, w_context = self.input_gates(params, y)
        memory = (memory_states, memory_keys, mask, sources)

        def step(state, gates_y_t):
            state, context, weights = self.decoder_step(params, state, gates_y_t, w_context,
                                                        memory)
            return state, (state, context, weights)

        _, (states, contexts, weights) = lax.scan(step, s0, gates_y)          # over time
        o, gate = self.output(params, states, contexts, y)                    # (T, B, d)
        o = F.dropout(fnp.swapaxes(o, 0, 1), self.dropout, training=train, key=keys[2])
        gate = None if gate is None else fnp.swapaxes(gate, 0, 1)
        weights = fnp.swapaxes(weights, 0, 1)
        return self.log_probs(params, o, gate, weights, sources[:, None, :]), weights


def additive_attention(query, keys, values, mask, w_query, b_query, v):
    """Bahdanau's attention for queries ``(B, Hq)`` over ``S`` positions: scores
    ``e_j = v . tanh(W_q q + b_q + k_j)`` with precomputed keys ``k_j = U_k h_j`` ``(B, S, A)``,
    weights ``a = softmax(e)`` over the positions where ``mask (B, S)`` is True (the others get
    exactly 0), and the context ``sum_j a_j values_j`` ``(B, D)``. Returns ``(context, a)``."""
    projected = query @ w_query.T + b_query                               # (B, A)
    scores = fnp.tanh(keys + projected[:, None, :]) @ v                   # (B, S)
    weights = F.softmax(fnp.where(mask, scores, NEG), dim=-1)
    return fnp.einsum("bs,bsd->bd", weights, values), weights


def copy_distribution(weights, sources, vocab_size):
    """``p_copy(w) = sum_j a_j [x_j = w]``: attention weights ``(..., S)`` added onto the
    vocabulary ``(..., V)`` at the source ids ``sources`` (broadcast against ``weights``)."""
    ids = fnp.broadcast_to(sources, weights.shape)
    rows = np.arange(math.prod(weights.shape[:-1]))[:, None]
    flat = fnp.zeros((rows.shape[0], vocab_size), weights.dtype)
    flat = fnp.at(flat)[rows, fnp.reshape(ids, (rows.shape[0], -1))].add(
        fnp.reshape(weights, (rows.shape[0], -1)))
    return fnp.reshape(flat, weights.shape[:-1] + (vocab_size,))


def mix_copy(logits, gate, p_copy):
    """``log(sigmoid(g) softmax(logits) + sigmoid(-g) p_copy)``, computed as the ``logaddexp``
    of the two terms' logs; the copy term's log is taken only where ``p_copy > 0`` (elsewhere
    it is ``-inf``, with a zero gradient), so nothing overflows or divides by zero."""
    write = F.logsigmoid(gate)[..., None] + F.log_softmax(logits, dim=-1)
    some = p_copy > 0
    copy = fnp.where(some, F.logsigmoid(-gate)[..., None] + fnp.log(fnp.where(some, p_copy, 1.0)),
                     -np.inf)
    return fnp.logaddexp(write, copy)


def copy_mixture(logits, gate, weights, sources):
    """``mix_copy(logits, gate, copy_distribution(weights, sources, V))``: the log-probabilities
    ``(..., V)`` of ``sigmoid(g) softmax(logits) + sigmoid(-g) p_copy``, for ``logits (..., V)``,
    the switch's logit ``gate (...)``, the copy attention ``weights (..., S)`` and the source ids
    ``sources`` (broadcast against ``weights``).

    Fused (a ``custom_vjp`` with a NumPy fast path, as ``fnn.models``' kernels): ``p_copy`` is
    positive at the ``S`` source ids of a row at most, so the output is the write term ``log
    sigmoid(g) + log_softmax(logits)`` everywhere, and the ``logaddexp`` with the copy term is
    taken at those ids only. The backward pass, with ``r_w = sigmoid(g) softmax_w / p(w)`` the
    write term's share of ``p(w)`` (1 away from the source ids) and ``G`` the cotangent::

        d logits_u = G_u r_u - softmax_u sum_w G_w r_w
        d gate     = sum_w G_w r_w - sigmoid(g) sum_w G_w
        d a_j      = G_{x_j} sigmoid(-g) / p(x_j)

    About 6 passes over the ``(..., V)`` array each way, against some 25 for the same formula
    in fgrad.numpy (one training step of the transformer example: 70 -> 20 ms, measured). Traced
    values (``vmap``, ``jvp``, higher derivatives, a traced cotangent) take the formula itself.
    """
    if all(type(a) is np.ndarray for a in (logits, gate, weights, sources)):
        return _copy_mixture_numpy(logits, gate, weights, sources)[0]
    return _copy_mixture(logits, gate, weights, sources)


def _copy_mixture_reference(logits, gate, weights, sources):
    return mix_copy(logits, gate, copy_distribution(weights, sources, shape_of(logits)[-1]))


def _copy_mixture_numpy(logits, gate, weights, sources):
    """``(log p, residuals)`` by the sparse form of :func:`copy_mixture`."""
    vocab = logits.shape[-1]
    z = logits.reshape(-1, vocab)
    n = z.shape[0]
    a = weights.reshape(n, -1)
    ids = np.broadcast_to(sources, weights.shape).reshape(n, -1)
    g = np.asarray(gate, z.dtype).reshape(n, 1)
    log_write = -np.logaddexp(0.0, -g)                     # log sigmoid(g)
    log_copy = -np.logaddexp(0.0, g)                       # log sigmoid(-g)
    out = z - z.max(axis=1, keepdims=True)
    probs = np.exp(out)
    total = probs.sum(axis=1, keepdims=True)
    probs /= total
    out += log_write - np.log(total)                       # the write term, everywhere
    rows = np.arange(n)[:, None]
    flat = rows * vocab + ids
    p_copy = np.bincount(flat.ravel(), weights=a.ravel(), minlength=n * vocab)[flat]
    write_at = out[rows, ids]
    with np.errstate(divide="ignore"):
        mixed = np.logaddexp(write_at, log_copy + np.log(p_copy)).astype(z.dtype)
    out[rows, ids] = mixed                                 # a repeated id: the same value
    return out.reshape(logits.shape), (probs, log_write, log_copy, rows, ids, write_at, mixed)


def _copy_mixture_fun(logits, gate, weights, sources):
    if all(type(a) is np.ndarray for a in (logits, gate, weights, sources)):
        return _copy_mixture_numpy(logits, gate, weights, sources)[0]
    return _copy_mixture_reference(logits, gate, weights, sources)


def _copy_mixture_fwd(logits, gate, weights, sources):
    primals = (logits, gate, weights, sources)
    if all(type(a) is np.ndarray for a in primals):
        out, res = _copy_mixture_numpy(*primals)
        return out, (primals, res)
    return _copy_mixture_reference(*primals), (primals, None)


def _copy_mixture_bwd(saved, g):
    primals, res = saved
    logits, gate, weights, sources = primals
    if res is None or type(g) is not np.ndarray:
        _, pullback = fgrad.vjp(lambda z, gt, a: _copy_mixture_reference(z, gt, a, sources),
                                logits, gate, weights)
        return (*pullback(g), None)
    probs, log_write, log_copy, rows, ids, write_at, mixed = res
    vocab = logits.shape[-1]
    big_g = g.reshape(-1, vocab)
    g_at = big_g[rows, ids]
    scaled = big_g.copy()                                  # G_w r_w
    scaled[rows, ids] = g_at * np.exp(write_at - mixed)
    scaled_sum = scaled.sum(axis=1, keepdims=True)
    d_logits = probs * -scaled_sum
    d_logits += scaled
    d_gate = scaled_sum - np.exp(log_write) * big_g.sum(axis=1, keepdims=True)
    d_weights = g_at * np.exp(log_copy - mixed)
    return (d_logits.reshape(logits.shape), d_gate.reshape(np.shape(gate)).astype(gate.dtype),
            d_weights.reshape(weights.shape).astype(weights.dtype), None)


# The sources are an operand (under jit they are traced; the replayed program hands the kernel
# their NumPy values), integers without a cotangent.
_copy_mixture = fgrad.custom_vjp(_copy_mixture_fun)
_copy_mixture.defvjp(_copy_mixture_fwd, _copy_mixture_bwd)


def gru_update(gates_x, h, w_hh, b_hh):
    """torch's GRU step from the input's gates ``gates_x = W_ih x + b_ih`` ``(B, 3H)``:
    ``r, z = sigmoid(.)``, ``n = tanh(x_n + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``."""
    x_r, x_z, x_n = fnp.split(gates_x, 3, axis=-1)
    h_r, h_z, h_n = fnp.split(F.linear(h, w_hh, b_hh), 3, axis=-1)
    r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
    return (1.0 - z) * F.tanh(x_n + r * h_n) + z * h


def masked_gru(params, xs, mask, suffix=""):
    """One direction of ``fnn.GRU``'s layer 0 (params named ``weight_ih_l0{suffix}`` ...) over
    right-padded, time-major ``xs (S, B, d)``, as one ``lax.scan``: the forward direction
    (``suffix ""``) from the first step, the backward one (``"_reverse"``) from the last; where
    ``mask (S, B)`` is False the state is carried unchanged, so the backward direction starts
    from zeros at each sentence's own last token. Returns ``(states (S, B, H), final state
    (B, H))``."""
    w_hh, b_hh = params[f"weight_hh_l0{suffix}"], params[f"bias_hh_l0{suffix}"]
    gates_x = F.linear(xs, params[f"weight_ih_l0{suffix}"], params[f"bias_ih_l0{suffix}"])

    def step(h, inputs):
        gates_x_t, keep_t = inputs
        h = fnp.where(keep_t, gru_update(gates_x_t, h, w_hh, b_hh), h)    # padding: hold
        return h, h

    h0 = fnp.zeros((xs.shape[1], w_hh.shape[1]), xs.dtype)
    final, states = lax.scan(step, h0, (gates_x, mask[:, :, None]), reverse=bool(suffix))
    return states, final


def make_loss(model):
    """``loss(params, (sources, targets), key) -> (mean cross-entropy per real target token,
    {"accuracy": next-token accuracy})``."""
    def loss(params, batch, key=None, train=True):
        sources, targets = batch
        log_p, _ = model.apply(params, sources, targets, key=key, train=train)
        flat_log_p = fnp.reshape(log_p, (-1, log_p.shape[-1]))
        flat_targets = fnp.reshape(targets, (-1,))
        value = F.nll_loss(flat_log_p, flat_targets, ignore_index=PAD)
        real = flat_targets != PAD
        hits = fnp.sum(fnp.where(real, fnp.argmax(flat_log_p, axis=-1) == flat_targets, False))
        return value, {"accuracy": fnp.astype(hits, np.float64) / fnp.sum(real)}
    return loss


# --------------------------------------------------------------------------------------------
# Decoding: greedy and beam search
# --------------------------------------------------------------------------------------------

def repeat_bans(tokens, n):
    """For each row of ``tokens (N, t)``, the ids that, written next, would repeat an ``n``-gram
    the row already holds (``n`` = 0: none). Blocking them (Paulus et al., 2017; fairseq's
    ``--no-repeat-ngram-size``) stops the "feature feature feature" loops of a weak model."""
    if n <= 0 or tokens.shape[1] < n:
        return [[] for _ in range(len(tokens))]
    bans = []
    for row in tokens.tolist():
        last = row[len(row) - n + 1:] if n > 1 else []
        bans.append([row[i + n - 1] for i in range(len(row) - n + 1) if row[i:i + n - 1] == last])
    return bans


def block(logp, bans):
    """``logp (N, V)`` with ``-inf`` at each row's banned ids (a copy)."""
    logp = np.array(logp)
    for row, banned in enumerate(bans):
        logp[row, banned] = -np.inf
    return logp


def greedy_decode(model, params, sources, max_length, step_fn=None, no_repeat=0):
    """The most likely token at every step, for a batch of sources: ``(ids (B, L), attention
    (B, L, S))``; a row that has produced ``EOS`` continues with ``PAD``. Stops when every row
    has finished, or after ``max_length`` tokens. ``no_repeat = n > 0`` never writes an
    ``n``-gram twice (:func:`repeat_bans`)."""
    step_fn = step_fn or make_decode_step(model)
    states, keys, mask, state = (np.asarray(a) for a in model.encode(params, sources))
    previous = np.full(sources.shape[0], BOS, np.int64)
    finished = np.zeros(sources.shape[0], bool)
    tokens, weights = [], []
    for _ in range(max_length):
        state, logp, attention = (np.asarray(a) for a in
                                  step_fn(params, state, previous, (states, keys, mask, sources)))
        if no_repeat and tokens:
            logp = block(logp, repeat_bans(np.stack(tokens, axis=1), no_repeat))
        previous = np.where(finished, PAD, np.argmax(logp, axis=-1))
        finished |= previous == EOS
        tokens.append(previous)
        weights.append(attention)
        if finished.all():
            break
    return np.stack(tokens, axis=1), np.stack(weights, axis=1)


def beam_search(model, params, sources, max_length, beam=4, length_alpha=0.6, step_fn=None,
                no_repeat=0):
    """Beam search over a batch: ``(ids (B, beam, L), scores (B, beam), attention (B, beam, L,
    S))``, hypotheses best first by ``log p / lp(length)``, ``lp = ((5 + length) / 6) **
    length_alpha`` (GNMT's penalty; the length counts the ``EOS``).

    Every step extends each live hypothesis by every token and keeps the ``beam`` best by
    total log-probability; a hypothesis that has produced ``EOS`` is finished: it is carried
    on with ``PAD`` and its score unchanged. With ``beam=1`` this is greedy decoding
    (:func:`greedy_decode`); ``no_repeat`` bans repeated n-grams as there. ``step_fn`` is
    :func:`make_decode_step`'s function (jitted by
    the caller, or built here).
    """
    step_fn = step_fn or make_decode_step(model)
    batch = sources.shape[0]
    states, keys, mask, state = (np.asarray(a) for a in model.encode(params, sources))
    rows = np.repeat(np.arange(batch), beam)                       # hypothesis -> its source
    memory = (states[rows], keys[rows], mask[rows], sources[rows])
    state = state[rows]
    scores = np.full((batch, beam), -np.inf)
    scores[:, 0] = 0.0                                             # one live start per source
    finished = np.zeros((batch, beam), bool)
    lengths = np.zeros((batch, beam), np.int64)
    tokens = np.zeros((batch, beam, 0), np.int64)
    weights = np.zeros((batch, beam, 0, sources.shape[1]))
    previous = np.full(batch * beam, BOS, np.int64)
    vocab = model.vocab_size
    for _ in range(max_length):
        state, logp, attention = (np.asarray(a) for a in step_fn(params, state, previous, memory))
        if no_repeat and tokens.shape[2]:
            logp = block(logp, repeat_bans(tokens.reshape(batch * beam, -1), no_repeat))
        logp = logp.reshape(batch, beam, vocab).astype(np.float64)
        # a finished hypothesis continues with PAD at no cost
        logp = np.where(finished[:, :, None], -np.inf, logp)
        logp[:, :, PAD] = np.where(finished, 0.0, -np.inf)
        candidates = (scores[:, :, None] + logp).reshape(batch, beam * vocab)
        best = top_k(candidates, beam)                                        # (B, beam)
        parent, token = best // vocab, best % vocab
        scores = np.take_along_axis(candidates, best, axis=1)
        flat_parent = (np.arange(batch)[:, None] * beam + parent).reshape(-1)
        was_finished = np.take_along_axis(finished, parent, axis=1)
        finished = was_finished | (token == EOS)
        lengths = np.take_along_axis(lengths, parent, axis=1) + ~was_finished
        tokens = np.concatenate([np.take_along_axis(tokens, parent[:, :, None], axis=1),
                                 token[:, :, None]], axis=2)
        weights = np.concatenate([weights.reshape(batch * beam, -1, weights.shape[-1])[flat_parent]
                                  .reshape(batch, beam, -1, weights.shape[-1]),
                                  attention[flat_parent].reshape(batch, beam, 1, -1)], axis=2)
        state, previous = state[flat_parent], token.reshape(-1)
        if finished.all():
            break
    penalty = ((5.0 + np.maximum(lengths, 1)) / 6.0) ** length_alpha
    normalised = np.where(np.isfinite(scores), scores / penalty, -np.inf)
    order = np.argsort(-normalised, axis=1, kind="stable")
    return (np.take_along_axis(tokens, order[:, :, None], axis=1),
            np.take_along_axis(normalised, order, axis=1),
            np.take_along_axis(weights, order[:, :, None, None], axis=1))


def top_k(values, k):
    """The indices of the ``k`` largest entries of each row of ``values (B, N)``, largest
    first (``argpartition``, then a sort of the ``k``; equal values in index order)."""
    part = np.argpartition(-values, k - 1, axis=1)[:, :k] if k < values.shape[1] else \
        np.broadcast_to(np.arange(values.shape[1]), values.shape)
    chosen = np.take_along_axis(values, part, axis=1)
    order = np.lexsort((part, -chosen), axis=1)
    return np.take_along_axis(part, order, axis=1)


def make_decode_step(model):
    """``step(params, state, previous ids, memory) -> (state, log p (B, V), attention)``."""
    def step(params, state, previous, memory):
        y = model.layers["embedding"].apply(params["embedding"], previous)
        gates_y, w_context = model.input_gates(params, y)
        state, context, weights = model.decoder_step(params, state, gates_y, w_context, memory)
        o, gate = model.output(params, state, context, y)
        return state, model.log_probs(params, o, gate, weights, memory[3]), weights
    return step


def decode_split(model, params, vocab, sources, max_length, beam=1, length_alpha=0.6,
                 batch_size=64, step_fn=None, no_repeat=0):
    """Decoded texts of every source (greedy when ``beam == 1``), in batches of sources of
    similar length; also the attention of each (a list of ``(L, S)`` arrays). A short last
    batch is filled up with copies of its first source (so a jitted ``step_fn`` sees one batch
    size)."""
    lengths = (sources != PAD).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    texts, attention = [None] * len(sources), [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        rows = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        batch = sources[rows, :padded_length(lengths[idx].max(), 16)]
        if beam == 1:
            ids, weights = greedy_decode(model, params, batch, max_length, step_fn=step_fn,
                                         no_repeat=no_repeat)
        else:
            ids, _, weights = beam_search(model, params, batch, max_length, beam, length_alpha,
                                          step_fn=step_fn, no_repeat=no_repeat)
            ids, weights = ids[:, 0], weights[:, 0]
        for row, i in enumerate(idx):
            texts[i] = vocab.decode(ids[row])
            attention[i] = weights[row]
    return texts, attention


# --------------------------------------------------------------------------------------------
# The attention heatmap
# --------------------------------------------------------------------------------------------

def save_attention(path, source_tokens, output_tokens, weights, title):
    """The attention weights of one example: a row per output token, a column per source token."""
    common.require("matplotlib", "plotting the attention weights")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(max(6.0, 0.22 * len(source_tokens) + 2), max(3.0, 0.25 * len(output_tokens) + 1.5)),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=90, fontsize="small")
    ax.set_yticks(range(len(output_tokens)), output_tokens, fontsize="small")
    ax.set_xlabel("source (docstring body) tokens")
    ax.set_ylabel("output (summary) tokens")
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_title(title, fontsize="medium")
    fig.savefig(path, dpi=100)
    return path


def token_strings(vocab, ids):
    """Each id as readable text (BPE pieces; a leading space shown as ``_``)."""
    return [vocab.tokenizer.decode([i - SPECIALS]).replace(" ", "_") if i >= SPECIALS
            else ("</s>" if i == EOS else "<pad>" if i == PAD else "<s>") for i in ids]


# --------------------------------------------------------------------------------------------
# Command line and run
# --------------------------------------------------------------------------------------------

def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=6, batch_size=32, lr=3e-3)
    for action in parser._actions:
        if action.dest == "quick":
            action.help = ("a sanity run, seconds long and far from the stated result: 1 eager "
                           "epoch on at most 512 training pairs, 64 validation and test pairs, a "
                           "500-token vocabulary, beam 2")
        elif action.dest == "out_dir":
            action.help = "where curves.png, attention.png and metrics.json go"
        elif action.dest == "jit":
            action.help = ("fgrad.jit the training step and the decoder step (traced once per "
                           "padded shape); --no-jit runs them eagerly")
    parser.add_argument("--sources", nargs="+", default=list(DOCSTRING_SOURCES),
                        help="where the docstrings come from: stdlib and installed packages")
    parser.add_argument("--roots", nargs="+", default=None, metavar="DIR",
                        help="read the .py files under these folders instead of --sources "
                             "(a folder with __init__.py is a package of that name)")
    parser.add_argument("--max-body-words", type=int, default=64,
                        help="bodies are cut to this many words")
    parser.add_argument("--bpe-vocab", type=int, default=2000,
                        help="BPE vocabulary size (with the 3 special ids)")
    parser.add_argument("--max-source", type=int, default=48, help="source tokens kept")
    parser.add_argument("--max-target", type=int, default=31, help="target tokens kept (+ EOS)")
    parser.add_argument("--embed", type=int, default=128, help="embedding size d")
    parser.add_argument("--hidden", type=int, default=96, help="encoder GRU units per direction")
    parser.add_argument("--decoder-hidden", type=int, default=192, help="decoder GRU units")
    parser.add_argument("--attention", type=int, default=64, help="attention size A")
    parser.add_argument("--copy", action=argparse.BooleanOptionalAction, default=True,
                        help="mix the output softmax with copying source tokens by attention "
                             "(a pointer-generator switch, See et al. 2017)")
    parser.add_argument("--dropout", type=float, default=0.3,
                        help="dropout on the embeddings and on the decoder's output o_t")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient clipping (global norm)")
    parser.add_argument("--beam", type=int, default=4, help="beam size for the test decoding")
    parser.add_argument("--length-alpha", type=float, default=2.0,
                        help="GNMT length-penalty exponent of beam search (0: raw log p)")
    parser.add_argument("--max-decode", type=int, default=40, help="longest decoded summary")
    parser.add_argument("--no-repeat-ngram", type=int, default=2, metavar="N",
                        help="decoding never writes the same N tokens twice (0: no blocking; "
                             "the test BLEU without it is reported too)")
    parser.add_argument("--val-decode", type=int, default=400, metavar="N",
                        help="the validation BLEU of each epoch decodes the first N validation "
                             "pairs (the loss uses all)")
    parser.add_argument("--save-params", default=None, metavar="PATH",
                        help="also save the best validation epoch's params to PATH (.npz)")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def prepare_pairs(args, name, start):
    """The docstring pairs of ``--sources`` (or ``--roots``), the splits cut to
    ``--train-size``/``--test-size`` (``--quick``: at most 512 training and 64 validation and
    test pairs, a 500-token vocabulary), the BPE vocabulary trained on the training pairs, their
    arrays, the reference summaries and the copy baseline's BLEU (the body's first sentence as
    the summary); shared with examples.transformer, so the two examples' scores are comparable."""
    pairs = load_docstring_pairs(args.sources, roots=args.roots, seed=args.seed,
                                 max_body_words=args.max_body_words)
    if args.quick:
        args.train_size = min(args.train_size or 512, 512)
        args.test_size = min(args.test_size or 64, 64)
        args.bpe_vocab = min(args.bpe_vocab, 500)
    train = pairs["train"][:args.train_size]
    valid = pairs["valid"][:args.test_size]
    test = pairs["test"][:args.test_size]
    if not train or not valid or not test:
        raise ValueError(f"{name}: a split is empty (train {len(train)}, valid {len(valid)}, "
                         f"test {len(test)} pairs); read more modules (--sources, --roots)")
    vocab = Vocabulary([p.body for p in train] + [p.summary for p in train], args.bpe_vocab)
    arrays = {name: encode_pairs(vocab, split, args.max_source, args.max_target)
              for name, split in (("train", train), ("valid", valid), ("test", test))}
    print(f"{len(train)} training, {len(valid)} validation, {len(test)} test pairs; BPE "
          f"vocabulary of {vocab.vocab_size} ids; median source "
          f"{int(np.median((arrays['train'][0] != PAD).sum(1)))} tokens, target "
          f"{int(np.median((arrays['train'][1] != PAD).sum(1)))} ({time.perf_counter() - start:.1f} s)")

    # the baseline: the first sentence of the body, as the summary
    references = {name: [p.summary for p in split] for name, split in
                  (("valid", valid), ("test", test))}
    baseline = {f"copy_{name}_bleu": fnn.text.corpus_bleu(
        [first_sentence(p.body) for p in split], references[name]).score
        for name, split in (("valid", valid), ("test", test))}
    baseline["copy_val_decode_bleu"] = fnn.text.corpus_bleu(    # on what val_bleu decodes
        [first_sentence(p.body) for p in valid[:args.val_decode]],
        references["valid"][:args.val_decode]).score
    print(f"baseline (the body's first sentence): validation BLEU "
          f"{baseline['copy_valid_bleu']:.2f}, test BLEU {baseline['copy_test_bleu']:.2f}")
    return train, valid, test, vocab, arrays, references, baseline


def run(args):
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.quick:
        args.beam, args.jit = min(args.beam, 2), False      # tracing would outlast 16 steps
    train, valid, test, vocab, arrays, references, baseline = prepare_pairs(args, NAME, start)

    model = Seq2Seq(vocab.vocab_size, args.embed, args.hidden, args.decoder_hidden,
                    args.attention, args.dropout, args.copy)
    key, init_key, data_key = fgrad.random.split(fgrad.random.key(args.seed), 3)
    params = model.init(init_key)
    steps_per_epoch = len(train) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"seq2seq: {len(train)} training pairs make no batch of "
                         f"{args.batch_size}; lower --batch-size")
    total_steps = args.epochs * steps_per_epoch
    optimizer = foptim.chain(
        foptim.clip_by_global_norm(args.clip),
        foptim.adam(foptim.cosine_decay_schedule(args.lr, total_steps, alpha=0.1)))
    loss = make_loss(model)
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def update(params, opt_state, batch, key):
        """One step: the loss and its gradient (dropout by ``key``), clipping and Adam."""
        (value, aux), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value, **aux}

    decode_step = make_decode_step(model)
    if args.jit:
        update = fgrad.jit(update)             # one trace per (source, target) padded shape
        decode_step = fgrad.jit(decode_step)   # one trace per (batch, source) shape

    source_lengths = (arrays["train"][0] != PAD).sum(axis=1)
    epoch = {"batches": []}

    def make_batch(key):
        """The next batch of the epoch (a new bucketed epoch when one ends), cropped."""
        if not epoch["batches"]:
            epoch["batches"] = bucketed_batches(key, source_lengths, args.batch_size)
        idx = epoch["batches"].pop()
        return crop(arrays["train"][0][idx], arrays["train"][1][idx])

    def metrics(params, batch):
        value, aux = loss(params, crop(*batch), train=False)
        return {"loss": value, **aux}

    best = {"val_bleu": -1.0}
    tqdm = common.require("tqdm", "progress bars").tqdm

    def evaluate(params):
        """Validation loss and greedy BLEU; the params of the best validation BLEU are kept."""
        val = common.evaluate(metrics, params, arrays["valid"], 128)
        texts, _ = decode_split(model, params, vocab, arrays["valid"][0][:args.val_decode],
                                args.max_decode, step_fn=decode_step,
                                no_repeat=args.no_repeat_ngram)
        results = {"val_loss": val["loss"], "val_accuracy": val["accuracy"],
                   "val_bleu": fnn.text.corpus_bleu(
                       texts, references["valid"][:args.val_decode]).score}
        for pair, text in list(zip(valid, texts))[:2]:          # what the model writes so far
            tqdm.write(f"  {pair.summary!r} -> {text!r}")
        if results["val_bleu"] > best["val_bleu"]:
            best.update(results, params=params, epoch=len(best.get("epochs", [])) + 1)
        best.setdefault("epochs", []).append(results["val_bleu"])
        return results

    params, _, history = common.train_stream(
        update, params, optimizer.init(params), make_batch, steps=total_steps, key=data_key,
        eval_fn=evaluate, eval_every=steps_per_epoch,
        described=f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} of "
                  f"{steps_per_epoch} batches of {args.batch_size} pairs")

    # the test split, decoded by the best validation epoch's params
    params = best["params"]
    if args.save_params:
        fnn.io.save(args.save_params, params)
    decode_start = time.perf_counter()
    greedy, _ = decode_split(model, params, vocab, arrays["test"][0], args.max_decode,
                             step_fn=decode_step, no_repeat=args.no_repeat_ngram)
    unblocked, _ = decode_split(model, params, vocab, arrays["test"][0], args.max_decode,
                                step_fn=decode_step)
    beamed, attention = decode_split(model, params, vocab, arrays["test"][0], args.max_decode,
                                     beam=args.beam, length_alpha=args.length_alpha,
                                     step_fn=decode_step, no_repeat=args.no_repeat_ngram)
    decode_seconds = time.perf_counter() - decode_start
    final = {"test_bleu_greedy": fnn.text.corpus_bleu(greedy, references["test"]).score,
             "test_bleu_greedy_repeats_allowed": fnn.text.corpus_bleu(
                 unblocked, references["test"]).score,
             f"test_bleu_beam{args.beam}": fnn.text.corpus_bleu(beamed, references["test"]).score,
             **baseline, "val_bleu_greedy": best["val_bleu"], "best_epoch": best["epoch"],
             "vocab_size": vocab.vocab_size, "train_pairs": len(train),
             "decode_seconds": round(decode_seconds, 1),
             "cpu_seconds": round(time.process_time() - cpu_start, 1)}
    print(f"test BLEU: greedy {final['test_bleu_greedy']:.2f}, beam {args.beam} "
          f"{final[f'test_bleu_beam{args.beam}']:.2f}; copying the body's first sentence "
          f"{baseline['copy_test_bleu']:.2f}")
    for pair, text in list(zip(test, beamed))[:5]:
        print(f"  {pair.module}.{pair.name}\n    reference: {pair.summary}\n    model:     {text}")

    # one test example's attention weights
    example = int(np.argmin([abs(len(p.body.split()) - 20) for p in test]))
    source = [int(i) for i in arrays["test"][0][example] if i != PAD]
    ids, _, weights = beam_search(model, params, np.array([source]), args.max_decode,
                                  args.beam, args.length_alpha, step_fn=decode_step,
                                  no_repeat=args.no_repeat_ngram)
    output = [int(i) for i in ids[0, 0] if i != PAD]
    os.makedirs(args.out_dir, exist_ok=True)
    heatmap = save_attention(os.path.join(args.out_dir, "attention.png"),
                             token_strings(vocab, source), token_strings(vocab, output),
                             weights[0, 0, :len(output), :len(source)],
                             f"{test[example].module}.{test[example].name}: "
                             f"{vocab.decode(output)!r}\n(reference: {test[example].summary!r})")
    print(f"attention weights in {heatmap}")
    return common.finish(
        args, NAME, history, final,
        title=f"GRU encoder-decoder with attention on docstring summaries ({len(train)} pairs)",
        full_run=FULL_RUN,
        references={"val_bleu": [("copy the body's first sentence",
                                  baseline["copy_val_decode_bleu"])]},
        metrics=("loss", "accuracy", "val_loss", "val_bleu"),
        titles={"loss": "cross-entropy per target token", "accuracy": "next-token accuracy "
                "(teacher forcing, dropout on)", "val_loss": "validation cross-entropy",
                "val_bleu": "validation BLEU, greedy (black: copy baseline)"})


if __name__ == "__main__":
    main()
