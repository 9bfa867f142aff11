"""The Transformer of Vaswani et al. (2017) writes the summary line of a Python docstring.

    python -m examples.transformer                      # the default run (README, "Examples")
    python -m examples.transformer --no-copy            # the paper's model alone
    python -m examples.transformer --beam 1             # greedy decoding only
    python -m examples.transformer --final-norm         # torch.nn.Transformer's extra LayerNorms

MODEL (section 3 of the paper, "base" shapes scaled down to a 2-core CPU)::

    x_0 = sqrt(d) E[src] + PE                         shared embedding E (vocab, d), sinusoids
    x_l = LN(x' + FFN(x')),  x' = LN(x_{l-1} + SelfAttn(x_{l-1}; src padding))     encoder
    y_0 = sqrt(d) E[tgt_in] + PE                      tgt_in = <s> summary (teacher forcing)
    y_l = LN(y'' + FFN(y'')),  y'' = LN(y' + CrossAttn(y', x_N; src padding)),
          y' = LN(y_{l-1} + SelfAttn(y_{l-1}; causal))                              decoder
    logits = y_N E^T                                  the same E as the output projection

with ``Attn(q, kv) = concat_h softmax(q W_q^h (kv W_k^h)^T / sqrt(d/h) + mask) kv W_v^h W_o``
(``-inf`` at masked keys), ``FFN(x) = W_2 relu(W_1 x + b_1) + b_2``, ``LN`` a LayerNorm after
each residual sum ("post-LN"), and dropout where the paper puts it (section 5.4): on each
sub-layer's output before its residual sum and on the embedding sums (``--dropout``). torch's
layers also drop the attention weights and the FFN's hidden units, at the same rate; here those
two are fairseq's separate ``--attention-dropout`` and ``--activation-dropout``, 0 by default
(drawing their masks took about a third of a training step, measured).

COPYING (``--copy``, the default; the paper has none): a switch on top of the model that
copies source tokens, since a summary mostly reuses the body's words and on 5,715 training
pairs the paper's model alone stays below copying the body's first sentence (README). It is
seq2seq's pointer-generator (See et al., 2017) with a copy attention of its own, one head from
``y_N`` to the encoder output ``x_N`` (``copy_switch``; Gehrmann et al. (2018) reuse a
cross-attention head instead); its parameters are the ``"copy"`` entry, outside the torch names::

    a = softmax(y_N W_c x_N^T / sqrt(d)),  g = w [y_N ; a x_N] + b
    p(w) = sigmoid(g) softmax(logits)_w + sigmoid(-g) sum_j a_j [src_j = w]

The paper's stacks end at their last layer's LayerNorm; ``torch.nn.Transformer`` adds one more
LayerNorm after each stack (``encoder.norm``, ``decoder.norm``), which ``--final-norm`` adds
here too. The parameters are a nested dict whose dotted names under ``"transformer"`` are
exactly the keys of ``torch.nn.Transformer(batch_first=True).state_dict()``
(``encoder.layers.0.self_attn.in_proj_weight``, ...), so weights move between the two with
``fnn.io.to_torch_state_dict``; ``tests/test_transformer.py`` checks every layer and the whole
stack against torch with the same weights (float64, outputs and the gradients of every
parameter and input). Initialisation as ``nn.Transformer``: Glorot-uniform matrices, the biases
and LayerNorms as torch's layers start them, and the embedding ``N(0, 1/d)`` so that
``sqrt(d) E`` has unit scale (fairseq's choice).

The attention, LayerNorm and tied output projection are ``fnn.models``' fused kernels (one tape
node each, a NumPy fast path; ``fnn/models/_kernels.py``), the projections ``fnn.functional.linear``.

TRAINING: label-smoothed cross-entropy (``e = 0.1``: the target distribution is ``1 - e`` on the
right token plus ``e / V`` everywhere, torch's ``label_smoothing``) averaged over the real target
tokens (padding ignored), differentiated by ``fgrad.value_and_grad``; Adam with ``b1 = 0.9, b2 =
0.98, eps = 1e-9`` and the paper's learning rate ``lr = factor d^-0.5 min(step^-0.5, step
warmup^-1.5)`` (a linear warm-up, then the inverse square root of the step). The step is
``fgrad.jit``-compiled (``--no-jit``: eager; one trace per padded shape). As the paper (section
6.1), the model that decodes the test split is the average of the last 5 checkpoints, here one
every half epoch (``--average-last``, ``--checkpoint-every``): the validation BLEU of single
checkpoints jumps by a factor of two from one epoch to the next on this small data set.

DECODING: the encoder runs once per batch; the decoder runs one token at a time with its
self-attention keys and values cached (and the cross-attention's, computed once from the
encoder output), by greedy search or by beam search scored with GNMT's length penalty (Wu et
al. 2016) ``log P(Y) / lp(Y)``, ``lp(Y) = ((5 + |Y|) / 6)^alpha``, ``|Y|`` counting the
end-of-sequence token. A source is finished when ``beam`` hypotheses have ended (as fairseq's
``SequenceGenerator``: an end-of-sequence candidate counts when it ranks among the top
``beam``), so a beam of 1 is greedy search exactly (tested, as is that padding a batch of sources
changes no output).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import math
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim
from fgrad.core import shape_of
from fnn.layers.base import Module, ParamSpec, dtype_field
from fnn.models import _kernels as K

from . import common
from .datasets import DOCSTRING_SOURCES
from .seq2seq import (BOS, EOS, PAD, bucketed_batches, check_token_ids, copy_mixture, crop,
                      padded_length, prepare_pairs, repeat_bans)

NAME = "transformer"
#: The measured default run (README, "Examples"), quoted at the end of a --quick run.
FULL_RUN = ("python -m examples.transformer reached test BLEU 2.38 greedy, 1.51 with beam 4 "
            "(copying the body's first sentence: 2.48) in 12 min 12 s (README)")
EPOCHS = 7


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def sinusoidal_positions(length, d_model, dtype=np.float32):
    """``(length, d_model)``: ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(p /
    10000^(2i/d))`` (section 3.5). Cached and read-only."""
    position = np.arange(length, dtype=np.float64)[:, None]
    frequency = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((length, d_model))
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[:d_model // 2])
    table = table.astype(dtype)
    table.flags.writeable = False
    return table


class Dropout:
    """``drop(x, rate)``: inverted dropout with a fresh subkey per call (``fold_in(key, i)`` for
    the ``i``-th call, so the same ``key`` draws the same masks), or the identity when not
    training or at rate 0. The rates travel with it: ``drop.residual`` (sub-layer outputs and
    embeddings), ``drop.attention`` (attention weights: ``drop.key_for(drop.attention)`` hands
    the attention kernel its subkey) and ``drop.activation`` (the FFN's hidden units)."""

    def __init__(self, key=None, train=False, residual=0.0, attention=0.0, activation=0.0):
        self.train, self._key, self._calls = train, key, 0
        self.residual, self.attention, self.activation = residual, attention, activation
        if train and key is None and max(residual, attention, activation) > 0:
            raise ValueError(f"Transformer.apply: train=True with dropout (rates {residual}, "
                             f"{attention}, {activation}) needs key=<a fgrad.random key> (or "
                             f"all rates 0)")

    def key_for(self, rate):
        if not self.train or rate == 0:
            return None
        self._calls += 1
        return fgrad.random.fold_in(self._key, self._calls)

    def __call__(self, x, rate):
        key = self.key_for(rate)
        return x if key is None else F.dropout(x, rate, training=True, key=key)


def split_heads(x, heads):
    """``(B, T, E)`` -> ``(B, heads, T, E / heads)``."""
    b, t, e = shape_of(x)
    return fnp.transpose(fnp.reshape(x, (b, t, heads, e // heads)), (0, 2, 1, 3))


def merge_heads(x):
    """``(B, heads, T, E / heads)`` -> ``(B, T, E)``."""
    b, h, t, hd = shape_of(x)
    return fnp.reshape(fnp.transpose(x, (0, 2, 1, 3)), (b, t, h * hd))


def keys_values(p, source, heads):
    """An attention's keys and values of ``source (B, S, E)``, each ``(B, heads, S, E/heads)``:
    ``source W_k^T + b_k`` and ``source W_v^T + b_v`` with torch's packed ``in_proj_weight``
    ``[W_q; W_k; W_v]`` (3E, E)."""
    e = shape_of(source)[-1]
    _, w_kv = fnp.split(p["in_proj_weight"], [e])
    _, b_kv = fnp.split(p["in_proj_bias"], [e])
    k, v = fnp.split(F.linear(source, w_kv, b_kv), 2, axis=-1)
    return split_heads(k, heads), split_heads(v, heads)


def attention(p, query, kv, bias, heads, drop):
    """Multi-head attention of ``query (B, T, E)`` to the keys and values ``kv`` (from
    :func:`keys_values`): ``softmax(q k^T / sqrt(E/heads) + bias) v``, heads merged, then the
    output projection. ``bias`` is 0 or ``-inf``, broadcast to ``(B, heads, T, S)``."""
    e = shape_of(query)[-1]
    w_q, _ = fnp.split(p["in_proj_weight"], [e])
    b_q, _ = fnp.split(p["in_proj_bias"], [e])
    q = split_heads(F.linear(query, w_q, b_q), heads)
    k, v = kv
    key = drop.key_for(drop.attention)
    out = K.attention(q, k, v, 1.0 / math.sqrt(e // heads), bias, dropout_key=key,
                      p=0.0 if key is None else drop.attention)
    return F.linear(merge_heads(out), p["out_proj"]["weight"], p["out_proj"]["bias"])


def layer_norm(p, x, eps):
    return K.layer_norm(x, p["weight"], p["bias"], eps)


def feed_forward(p, x, drop):
    """``W_2 drop(relu(W_1 x + b_1)) + b_2``."""
    h = drop(F.relu(F.linear(x, p["linear1"]["weight"], p["linear1"]["bias"])), drop.activation)
    return F.linear(h, p["linear2"]["weight"], p["linear2"]["bias"])


def encoder_layer(p, x, src_bias, heads, eps, drop):
    """One post-LN encoder layer (``nn.TransformerEncoderLayer``, ``norm_first=False``) on
    ``x (B, S, E)``; ``src_bias (B, 1, 1, S)`` is ``-inf`` at padded source tokens."""
    kv = keys_values(p["self_attn"], x, heads)
    x = layer_norm(p["norm1"], x + drop(attention(p["self_attn"], x, kv, src_bias, heads, drop),
                                        drop.residual), eps)
    return layer_norm(p["norm2"], x + drop(feed_forward(p, x, drop), drop.residual), eps)


def decoder_layer(p, y, memory_kv, self_bias, cross_bias, heads, eps, drop, past=None):
    """One post-LN decoder layer (``nn.TransformerDecoderLayer``) on ``y (B, T, E)``.

    ``memory_kv``: the cross-attention's keys and values of the encoder output (see
    :func:`keys_values`); ``self_bias`` masks the self-attention (causal, and padding),
    ``cross_bias`` the source padding. ``past``: the self-attention's keys and values of earlier
    positions (decoding with a cache), which the new positions attend to as well. Returns ``(y,
    (k, v))``, ``(k, v)`` this layer's self-attention keys and values, ``past`` included.
    """
    k, v = keys_values(p["self_attn"], y, heads)
    if past is not None:
        k, v = fnp.concatenate([past[0], k], axis=2), fnp.concatenate([past[1], v], axis=2)
    a = attention(p["self_attn"], y, (k, v), self_bias, heads, drop)
    y = layer_norm(p["norm1"], y + drop(a, drop.residual), eps)
    a = attention(p["multihead_attn"], y, memory_kv, cross_bias, heads, drop)
    y = layer_norm(p["norm2"], y + drop(a, drop.residual), eps)
    return layer_norm(p["norm3"], y + drop(feed_forward(p, y, drop), drop.residual), eps), (k, v)


def padding_bias(pad, dtype):
    """``(B, 1, 1, S)``: ``-inf`` where ``pad (B, S)`` is True (a key to ignore), else 0."""
    return fnp.astype(fnp.where(pad, -np.inf, 0.0), dtype)[:, None, None, :]


def causal_bias(length, dtype):
    """``(length, length)``: ``-inf`` above the diagonal (position ``i`` sees ``j <= i``)."""
    return np.triu(np.full((length, length), -np.inf, dtype), k=1)


def copy_switch(p, y, logits, memory, src, pad_id):
    """See et al.'s (2017) pointer-generator switch on the decoder output ``y (B, T, d)``: the
    log-probabilities ``(B, T, V)`` of the mixture of writing from the softmax of ``logits`` and
    copying a source token by a single-head attention of its own to the encoder output
    ``memory (B, S, d)`` (Gehrmann et al. 2018 put the same switch on a Transformer)::

        a = softmax((y W_q) memory^T / sqrt(d), padded sources masked)       (B, T, S)
        c = a memory,   g = w [y ; c] + b                                     the switch
        p(w) = sigmoid(g) softmax(logits)_w + sigmoid(-g) sum_j a_j [src_j = w]

    (``examples.seq2seq.copy_mixture``, fused, in log space.)
    ``src (B, S)``: the source ids, ``pad_id`` at padding.
    """
    d = shape_of(y)[-1]
    scores = fnp.einsum("btd,bsd->bts", F.linear(y, p["query"]["weight"]), memory) / math.sqrt(d)
    weights = F.softmax(scores + padding_bias(src == pad_id, scores.dtype)[:, 0], dim=-1)
    context = fnp.einsum("bts,bsd->btd", weights, memory)
    gate = F.linear(fnp.concatenate([y, context], axis=-1), p["switch"]["weight"],
                    p["switch"]["bias"])[..., 0]
    return copy_mixture(logits, gate, weights, src[:, None, :])


def encode_stack(p, x, src_pad, heads, eps, drop):
    """``p["encoder"]`` on embedded sources ``x (B, S, E)``: the memory ``(B, S, E)``."""
    bias = padding_bias(src_pad, x.dtype)
    for i in range(len(p["encoder"]["layers"])):
        x = encoder_layer(p["encoder"]["layers"][str(i)], x, bias, heads, eps, drop)
    if "norm" in p["encoder"]:
        x = layer_norm(p["encoder"]["norm"], x, eps)
    return x


def decode_stack(p, y, memory, src_pad, tgt_pad, heads, eps, drop, cache=None):
    """``p["decoder"]`` on embedded targets ``y (B, T, E)`` after ``memory`` (or, with a
    ``cache`` from :meth:`Transformer.start_decoding`, after the cached positions, with the
    cached cross-attention keys and values): ``(out (B, T, E), self-attention keys and values
    per layer)``. ``tgt_pad (B, T)`` marks padded targets (None: none)."""
    layers = p["decoder"]["layers"]
    t = shape_of(y)[1]
    cross_bias = padding_bias(src_pad, y.dtype)
    if cache is None:              # teacher forcing: every position at once, causally masked
        self_bias = causal_bias(t, y.dtype)
        if tgt_pad is not None:
            self_bias = self_bias + padding_bias(tgt_pad, y.dtype)
        memory_kv = [keys_values(layers[str(i)]["multihead_attn"], memory, heads)
                     for i in range(len(layers))]
        past = [None] * len(layers)
    else:                          # the new positions see every cached one, and causally each other
        self_bias = np.concatenate([np.zeros((t, cache["length"]), y.dtype),
                                    causal_bias(t, y.dtype)], axis=1)
        memory_kv, past = cache["memory_kv"], cache["self_kv"]
    self_kv = []
    for i in range(len(layers)):
        y, kv = decoder_layer(layers[str(i)], y, memory_kv[i], self_bias, cross_bias, heads, eps,
                              drop, past[i])
        self_kv.append(kv)
    if "norm" in p["decoder"]:
        y = layer_norm(p["decoder"]["norm"], y, eps)
    return y, self_kv


@dataclasses.dataclass(frozen=True)
class Transformer(Module):
    """The encoder-decoder Transformer with one embedding for source, target and output.

    ``Transformer(vocab_size, d_model=256, nhead=4, num_encoder_layers=3,
    num_decoder_layers=3, dim_feedforward=1024, dropout=0.1, attention_dropout=0.0,
    activation_dropout=0.0, final_norm=False, copy=False, pad_id=0)``;
    ``init(key)`` returns ``{"embedding": {"weight": (vocab, d)}, "transformer": <the names and
    shapes of nn.Transformer(batch_first=True).state_dict()>}`` (``encoder.norm`` and
    ``decoder.norm`` only with ``final_norm``), and with ``copy`` also ``"copy": {"query":
    {"weight": (d, d)}, "switch": {"weight": (1, 2 d), "bias": (1,)}}`` (:func:`copy_switch`).
    ``apply(params, src, tgt_in, key=None, train=False)`` gives the logits ``(B, T, vocab)``
    of the next target token at every position of ``tgt_in`` (with ``copy``, the log-probabilities
    of the mixture: logits whose softmax is the same distribution); ``src (B, S)`` and
    ``tgt_in (B, T)`` are right-padded with ``pad_id``.

    >>> import numpy as np, fgrad
    >>> model = Transformer(20, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
    ...                     dim_feedforward=16)
    >>> params = model.init(fgrad.random.key(0))
    >>> src, tgt_in = np.array([[5, 6, 7, 0]]), np.array([[1, 9, 4]])
    >>> model.apply(params, src, tgt_in).shape
    (1, 3, 20)
    """

    takes_key = True

    vocab_size: int
    d_model: int = 256
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    final_norm: bool = False
    copy: bool = False
    layer_norm_eps: float = 1e-5
    pad_id: int = 0
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.d_model % self.nhead or self.d_model % 2:
            raise ValueError(f"Transformer: d_model={self.d_model} must be even and divisible by "
                             f"nhead={self.nhead}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"Transformer: {name} must be in [0, 1), got "
                                 f"{getattr(self, name)}")

    def param_specs(self):
        layer_options = dict(dim_feedforward=self.dim_feedforward, batch_first=True,
                             dtype=self.dtype)
        encoder = fnn.TransformerEncoderLayer(self.d_model, self.nhead, **layer_options)
        decoder = fnn.TransformerDecoderLayer(self.d_model, self.nhead, **layer_options)
        norm = fnn.LayerNorm(self.d_model, eps=self.layer_norm_eps, dtype=self.dtype)

        def glorot(spec):      # nn.Transformer._reset_parameters: xavier_uniform_ if dim > 1
            if len(spec.shape) < 2:
                return spec
            return ParamSpec(spec.shape, spec.dtype, fnn.init.xavier_uniform)

        def stack(layer, n):
            specs = {"layers": {str(i): fgrad.tree.map(glorot, layer.param_specs(),
                                                       is_leaf=lambda s: isinstance(s, ParamSpec))
                                for i in range(n)}}
            if self.final_norm:
                specs["norm"] = norm.param_specs()
            return specs

        embedding = functools.partial(fnn.init.normal, std=self.d_model ** -0.5)
        specs = {"embedding": {"weight": ParamSpec((self.vocab_size, self.d_model), self.dtype,
                                                   embedding)},
                 "transformer": {"encoder": stack(encoder, self.num_encoder_layers),
                                 "decoder": stack(decoder, self.num_decoder_layers)}}
        if self.copy:
            d = self.d_model
            specs["copy"] = {
                "query": {"weight": ParamSpec((d, d), self.dtype, fnn.init.xavier_uniform)},
                "switch": {"weight": ParamSpec((1, 2 * d), self.dtype, fnn.init.xavier_uniform),
                           "bias": ParamSpec((1,), self.dtype, fnn.init.zeros)}}
        return specs

    # ---- the pieces -------------------------------------------------------------------------

    def dropper(self, key, train):
        return Dropout(key, train, self.dropout, self.attention_dropout, self.activation_dropout)

    def embed(self, params, ids, start=0):
        """``sqrt(d) E[ids] + PE[start : start + T]`` for ``ids (B, T)``: ``(B, T, d)``."""
        table = params["embedding"]["weight"]
        t = shape_of(ids)[1]
        positions = sinusoidal_positions(start + t, self.d_model, np.dtype(table.dtype))[start:]
        return fnp.take(table, ids, axis=0) * math.sqrt(self.d_model) + positions

    def encode(self, params, src, *, key=None, train=False):
        """The encoder output ``(B, S, d)`` of ``src (B, S)`` (the memory)."""
        drop = self.dropper(key, train)
        x = drop(self.embed(params, src), drop.residual)
        return encode_stack(params["transformer"], x, src == self.pad_id, self.nhead,
                            self.layer_norm_eps, drop)

    def output_logits(self, params, y, memory=None, src=None):
        """``y E^T``: ``(B, T, d)`` -> ``(B, T, vocab)`` (the shared embedding); with ``copy``,
        :func:`copy_switch`'s log-probabilities, which need the encoder output ``memory (B, S,
        d)`` and the sources ``src (B, S)``."""
        b, t, d = shape_of(y)
        logits = K.tied_head(fnp.reshape(y, (b * t, d)), params["embedding"]["weight"])
        logits = fnp.reshape(logits, (b, t, self.vocab_size))
        if not self.copy:
            return logits
        return copy_switch(params["copy"], y, logits, memory, src, self.pad_id)

    def apply(self, params, src, tgt_in, *, key=None, train=False):
        """Teacher forcing: logits ``(B, T, vocab)``, ``[b, t]`` predicting ``tgt_in[b, t+1]``
        (the target after ``tgt_in[b, :t+1]``), for sources ``src (B, S)``."""
        self.check_params(params)
        src, tgt_in = self.check_ids("apply", src=src, tgt_in=tgt_in)
        enc_key, dec_key = (None, None) if key is None else fgrad.random.split(key)
        memory = self.encode(params, src, key=enc_key, train=train)
        drop = self.dropper(dec_key, train)
        y = drop(self.embed(params, tgt_in), drop.residual)
        y, _ = decode_stack(params["transformer"], y, memory, src == self.pad_id,
                            tgt_in == self.pad_id, self.nhead, self.layer_norm_eps, drop)
        return self.output_logits(params, y, memory, src)

    def check_ids(self, method, **arrays):
        """``examples.seq2seq.check_token_ids`` for this model's vocabulary."""
        return check_token_ids(f"Transformer.{method}", self.vocab_size, **arrays)

    # ---- decoding with a cache ----------------------------------------------------------------

    def start_decoding(self, params, src):
        """Encode ``src (B, S)`` once: the decoding cache, a dict with the cross-attention keys
        and values of every decoder layer (``memory_kv``), no self-attention keys yet
        (``self_kv``), ``length`` 0, the source padding ``src_pad`` and, for the copy switch,
        ``copy``: the encoder output and the sources (else None)."""
        src, = self.check_ids("start_decoding", src=src)
        memory = self.encode(params, src)
        layers = params["transformer"]["decoder"]["layers"]
        empty = np.zeros((shape_of(src)[0], self.nhead, 0, self.d_model // self.nhead),
                         memory.dtype)
        return {"memory_kv": [keys_values(layers[str(i)]["multihead_attn"], memory, self.nhead)
                              for i in range(self.num_decoder_layers)],
                "self_kv": [(empty, empty)] * self.num_decoder_layers,
                "length": 0, "src_pad": src == self.pad_id,
                "copy": (memory, src) if self.copy else None}

    def decode_step(self, params, tokens, cache):
        """The logits ``(B, T, vocab)`` of the ``tokens (B, T)`` that follow the cached ones,
        and the cache with them appended. The same logits as :meth:`apply` on all tokens so far
        (no target padding, no dropout)."""
        y = self.embed(params, tokens, start=cache["length"])
        y, self_kv = decode_stack(params["transformer"], y, None, cache["src_pad"], None,
                                  self.nhead, self.layer_norm_eps, Dropout(), cache)
        memory, src = cache["copy"] or (None, None)
        return self.output_logits(params, y, memory, src), {**cache, "self_kv": self_kv,
                                               "length": cache["length"] + shape_of(tokens)[1]}


def repeat_cache(cache, rows):
    """The cache of the decoder rows ``rows``, every part of it: beam search starts with each
    source's row repeated ``beam`` times."""
    return {**cache, "src_pad": cache["src_pad"][rows],
            "memory_kv": [(k[rows], v[rows]) for k, v in cache["memory_kv"]],
            "self_kv": [(k[rows], v[rows]) for k, v in cache["self_kv"]],
            "copy": None if cache["copy"] is None else tuple(part[rows] for part in cache["copy"])}


def reorder_cache(cache, rows):
    """The cache of the decoder rows ``rows``: beam search keeps some hypotheses (twice, or not
    at all). ``rows`` never leave their source's block of rows, so the encoder's part stays."""
    return {**cache, "self_kv": [(k[rows], v[rows]) for k, v in cache["self_kv"]]}


# --------------------------------------------------------------------------------------------
# Loss, learning rate, optimizer
# --------------------------------------------------------------------------------------------

def label_smoothed_loss(logits, targets, pad_id, smoothing=0.1):
    """Mean over the real target tokens (``targets != pad_id``) of the cross-entropy against
    the smoothed target ``(1 - e) onehot(y) + e / V`` (section 5.4; torch's
    ``cross_entropy(label_smoothing=e, ignore_index=pad_id)``); ``logits (B, T, V)``,
    ``targets (B, T)``. Per token it is ``logsumexp(z) - (1 - e) z_y - e mean_c z_c``.

    Fused: on NumPy values (eager training) one pass for the maximum, one for the exponentials
    and their sum, one for the mean logit, and a backward pass ``w (softmax(z) - (1 - e)
    onehot(y) - e / V)`` (``w`` = 1 / number of real tokens, 0 at padding) that writes the
    gradient in place, where ``fnn.functional.cross_entropy`` makes a dozen passes over the
    ``(B T, V)`` logits each way (value and gradient of 512 x 4000 float32 logits, measured back
    to back at load 7: 162 -> 62 ms, 2.6x), also inside a ``fgrad.jit``-compiled step. Traced
    values (``vmap``, ``jvp``, higher derivatives) take ``F.cross_entropy`` itself.
    """
    v = shape_of(logits)[-1]
    z, y = fnp.reshape(logits, (-1, v)), fnp.reshape(targets, (-1,))
    if type(z) is np.ndarray and type(y) is np.ndarray:
        return _smoothed_loss_numpy(z, y, pad_id, smoothing)[0]
    return _smoothed_loss(z, y, pad_id, smoothing)


def _smoothed_loss_reference(z, y, pad_id, smoothing):
    return F.cross_entropy(z, y, ignore_index=pad_id, label_smoothing=smoothing)


def _smoothed_loss_numpy(z, y, pad_id, smoothing):
    """``(loss, softmax(z), safe targets, weights (N, 1))``; every target padding: NaN, as
    torch (and a zero gradient)."""
    kept = y != pad_id
    safe = np.where(kept, y, 0)[:, None]
    top = z.max(axis=1, keepdims=True)
    probs = np.subtract(z, top)
    np.exp(probs, out=probs)
    total = probs.sum(axis=1, keepdims=True)
    per_token = (np.log(total) + top - (1.0 - smoothing) * np.take_along_axis(z, safe, axis=1)
                 - smoothing * z.mean(axis=1, keepdims=True))
    count = int(kept.sum())
    weight = (kept / max(count, 1)).astype(z.dtype)[:, None]
    loss = np.sum(per_token * weight, dtype=z.dtype) if count else np.nan
    probs /= total
    return np.asarray(loss, z.dtype), probs, safe, weight


def _smoothed_loss_fwd(z, y, pad_id, smoothing):
    if type(z) is np.ndarray and type(y) is np.ndarray:
        loss, probs, safe, weight = _smoothed_loss_numpy(z, y, pad_id, smoothing)
        return loss, (z, y, probs, safe, weight)
    return _smoothed_loss_reference(z, y, pad_id, smoothing), (z, y, None, None, None)


def _smoothed_loss_bwd(pad_id, smoothing, res, g):
    z, y, probs, safe, weight = res
    if probs is None or type(g) is not np.ndarray:
        _, pullback = fgrad.vjp(lambda z: _smoothed_loss_reference(z, y, pad_id, smoothing), z)
        return (*pullback(g), None)
    # d/dz [logsumexp(z) - (1 - e) z_y - e mean(z)] = softmax(z) - (1 - e) onehot(y) - e / V
    scale = weight * g
    grad = probs * scale                       # a new array: the residual stays as it was
    grad -= scale * (smoothing / z.shape[1])
    np.put_along_axis(grad, safe, np.take_along_axis(grad, safe, axis=1)
                      - (1.0 - smoothing) * scale, axis=1)
    return grad, None                          # the targets are integers: no cotangent


def _smoothed_loss_fun(z, y, pad_id, smoothing):
    if type(z) is np.ndarray and type(y) is np.ndarray:
        return _smoothed_loss_numpy(z, y, pad_id, smoothing)[0]
    return _smoothed_loss_reference(z, y, pad_id, smoothing)


# The targets are an operand, not a nondiff argument (which must be a concrete value): under
# jit they are traced, and the replayed program hands the kernel their NumPy values.
_smoothed_loss = fgrad.custom_vjp(_smoothed_loss_fun, nondiff_argnums=(2, 3))
_smoothed_loss.defvjp(_smoothed_loss_fwd, _smoothed_loss_bwd)


def inverse_sqrt_schedule(d_model, warmup_steps, factor=1.0):
    """The paper's learning rate (eq. 3), ``factor d^-0.5 min(s^-0.5, s warmup^-1.5)`` at step
    ``s = count + 1``: linear warm-up to ``factor (d warmup)^-0.5`` at ``s = warmup``, then
    ``1 / sqrt(s)``. A ``foptim`` schedule (``count`` = updates done before this one)."""
    if warmup_steps < 1:
        raise ValueError(f"inverse_sqrt_schedule: warmup_steps must be a positive number of "
                         f"steps, got {warmup_steps}")

    def schedule(count):
        step = count + 1.0
        return factor * d_model ** -0.5 * fnp.minimum(step ** -0.5, step * warmup_steps ** -1.5)

    return schedule


def make_optimizer(args):
    """Adam, ``b1 = 0.9, b2 = 0.98, eps = 1e-9`` (section 5.3), on :func:`inverse_sqrt_schedule`
    scaled so that its peak (at step ``--warmup``) is ``--lr`` (the paper's factor 1 peaks at
    ``(d warmup)^-0.5``: 7.0e-4 for its base model); global-norm clipping first when ``--clip``
    is set (the paper has none). Returns ``(optimizer, schedule)``."""
    factor = args.lr * math.sqrt(args.d_model * args.warmup)
    schedule = inverse_sqrt_schedule(args.d_model, args.warmup, factor)
    adam = foptim.adam(schedule, b1=0.9, b2=0.98, eps=1e-9)
    if args.clip:
        return foptim.chain(foptim.clip_by_global_norm(args.clip), adam), schedule
    return adam, schedule


# --------------------------------------------------------------------------------------------
# Decoding: greedy and beam search, with the encoder run once and the decoder's keys cached
# --------------------------------------------------------------------------------------------

def _next_log_probs(model, params, written, cache, banned, no_repeat):
    """``log p(next token)`` ``(rows, V)`` after the tokens ``written (rows, t)`` (the last one
    is new to the cache), and the cache. ``banned`` tokens (padding, ``<s>``) get ``-inf``, and
    with ``no_repeat = n > 0`` so does every token that would write an ``n``-gram a row already
    holds (fairseq's ``--no-repeat-ngram-size``; ``examples.seq2seq.repeat_bans``)."""
    logits, cache = model.decode_step(params, written[:, -1:], cache)
    logits = np.asarray(logits[:, -1], np.float64)
    logits[:, list(banned)] = -np.inf
    if no_repeat:
        for row, tokens in enumerate(repeat_bans(written[:, 1:], no_repeat)):
            logits[row, tokens] = -np.inf
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True)), cache


def greedy_search(model, params, src, max_len, bos_id, eos_id, banned=(), no_repeat=0):
    """The most likely next token, step after step, until ``eos_id`` or ``max_len`` tokens:
    one list of token ids per source (``</s>`` not included). ``src (B, S)``, right-padded;
    ``no_repeat = n > 0`` never writes the same ``n`` tokens twice."""
    cache = model.start_decoding(params, src)
    batch = shape_of(src)[0]
    written, done = np.full((batch, 1), bos_id), np.zeros(batch, bool)
    out = [[] for _ in range(batch)]
    for _ in range(max_len):
        log_probs, cache = _next_log_probs(model, params, written, cache, banned, no_repeat)
        last = log_probs.argmax(axis=1)
        written = np.concatenate([written, last[:, None]], axis=1)
        for i in np.flatnonzero(~done & (last != eos_id)):
            out[i].append(int(last[i]))
        done |= last == eos_id
        if done.all():
            break
    return out


def length_penalty(length, alpha):
    """GNMT's ``lp(Y) = ((5 + |Y|) / 6)^alpha`` (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model, params, src, max_len, bos_id, eos_id, beam=4, alpha=0.6, banned=(),
                no_repeat=0):
    """Beam search scored by ``log P(Y) / lp(Y)``: ``(tokens, scores)``, the best hypothesis of
    each source (``</s>`` not included) and its score.

    ``beam`` hypotheses per source; each step extends all of them by every token and ranks
    the ``2 beam`` best extensions by ``log P``; an extension by ``eos_id`` ranked among the
    first ``beam`` ends a hypothesis (scored ``log P / lp(|Y|)``, ``|Y|`` counting ``</s>``), the
    best ``beam`` others go on. A source is done when ``beam`` hypotheses have ended (fairseq's
    rule); at ``max_len`` tokens the unfinished ones end too (scored without ``</s>``). With
    ``beam=1`` this is :func:`greedy_search`, for any ``alpha`` (and the same ``no_repeat``).
    """
    batch, k = shape_of(src)[0], beam
    cache = model.start_decoding(params, src)
    rows = np.repeat(np.arange(batch), k)          # row b k + j: hypothesis j of source b
    cache = repeat_cache(cache, rows)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0                             # one live hypothesis (<s>) to start from
    hypotheses = np.full((batch, k, 1), bos_id)   # each starts with <s>
    finished = [[] for _ in range(batch)]          # (score / lp, tokens) per source
    done = np.zeros(batch, bool)
    for step in range(max_len):
        log_probs, cache = _next_log_probs(model, params, hypotheses.reshape(batch * k, -1),
                                           cache, banned, no_repeat)
        vocab = log_probs.shape[1]
        total = (scores[:, :, None] + log_probs.reshape(batch, k, vocab)).reshape(batch, -1)
        best = np.argpartition(-total, 2 * k - 1, axis=1)[:, :2 * k]
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(total, best, axis=1),
                                                   axis=1, kind="stable"), axis=1)
        cand_scores = np.take_along_axis(total, best, axis=1)          # (B, 2k), best first
        cand_beam, cand_token = best // vocab, best % vocab
        ends = (cand_token == eos_id) & np.isfinite(cand_scores)
        penalty = length_penalty(step + 1, alpha)
        for i, r in zip(*np.nonzero(ends[:, :k] & ~done[:, None])):
            finished[i].append((cand_scores[i, r] / penalty, hypotheses[i, cand_beam[i, r]]))
        go_on = np.argsort(cand_token == eos_id, axis=1, kind="stable")[:, :k]   # non-</s> first
        beams = np.take_along_axis(cand_beam, go_on, axis=1)
        tokens = np.take_along_axis(cand_token, go_on, axis=1)
        scores = np.take_along_axis(cand_scores, go_on, axis=1)
        hypotheses = np.concatenate([np.take_along_axis(hypotheses, beams[:, :, None], axis=1),
                                     tokens[:, :, None]], axis=2)
        cache = reorder_cache(cache, (np.arange(batch)[:, None] * k + beams).ravel())
        done |= np.array([len(f) >= k for f in finished])
        if done.all():
            break
    penalty = length_penalty(hypotheses.shape[2] - 1, alpha)
    for i in np.flatnonzero(~done):                # out of steps: the live hypotheses end here
        finished[i] += [(scores[i, j] / penalty, hypotheses[i, j]) for j in range(k)
                        if np.isfinite(scores[i, j])]
    best = [max(f, key=lambda pair: pair[0]) for f in finished]
    return [[int(t) for t in tokens[1:]] for _, tokens in best], np.array([s for s, _ in best])


# --------------------------------------------------------------------------------------------
# Data (examples.seq2seq's tokens and batches, so that the two BLEU scores are comparable)
# --------------------------------------------------------------------------------------------

def teacher_forcing(targets):
    """``(tgt_in, tgt_out)`` from right-padded targets ``summary </s>``: the decoder reads
    ``<s> summary`` (the ``</s>`` that ends it never needs reading) and predicts ``summary </s>``."""
    tgt_in = np.concatenate([np.full((len(targets), 1), BOS), targets[:, :-1]], axis=1)
    return np.where(tgt_in == EOS, PAD, tgt_in), targets


def decode_split(model, params, vocab, sources, max_len, beam=1, alpha=0.6, no_repeat=0,
                 batch_size=64):
    """The decoded text of every source, greedy (``beam=1``) or by beam search, in batches of
    sources of similar length (each cut to its longest, rounded up to 16 tokens)."""
    lengths = (sources != PAD).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    texts = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = sources[idx, :padded_length(lengths[idx].max(), 16)]
        if beam == 1:
            out = greedy_search(model, params, batch, max_len, BOS, EOS, (PAD, BOS), no_repeat)
        else:
            out, _ = beam_search(model, params, batch, max_len, BOS, EOS, beam, alpha,
                                 (PAD, BOS), no_repeat)
        for row, i in enumerate(idx):
            texts[i] = vocab.decode(out[row])
    return texts


# --------------------------------------------------------------------------------------------
# Command line and run
# --------------------------------------------------------------------------------------------

def make_parser():
    parser = common.make_parser(NAME, __doc__.splitlines()[0], epochs=EPOCHS, batch_size=32,
                                lr=2e-3)
    for action in parser._actions:
        if action.dest == "lr":
            action.help = ("the peak learning rate, reached at step --warmup (the paper's "
                           "schedule with factor 1 peaks at (d_model warmup)^-0.5)")
        elif action.dest == "quick":
            action.help = ("a sanity run, seconds long and far from the stated result: 1 epoch "
                           "on at most 512 training pairs, 64 validation and test pairs, a "
                           "500-token vocabulary, a 2-layer model of width 64")
    add = parser.add_argument
    add("--sources", nargs="+", default=list(DOCSTRING_SOURCES),
        help="where the docstrings come from: stdlib and installed packages")
    add("--roots", nargs="+", default=None, metavar="DIR",
        help="read the .py files under these folders instead of --sources (a folder with "
             "__init__.py is a package of that name)")
    add("--max-body-words", type=int, default=64, help="bodies are cut to this many words")
    add("--bpe-vocab", type=int, default=2000, help="BPE vocabulary size (with the 3 special ids)")
    add("--max-source", type=int, default=48, help="source tokens kept")
    add("--max-target", type=int, default=31, help="target tokens kept (+ </s>)")
    add("--d-model", type=int, default=128, help="width of the model (the paper's base: 512)")
    add("--heads", type=int, default=4, help="attention heads (base: 8)")
    add("--layers", type=int, default=2, help="encoder layers, and decoder layers (base: 6)")
    add("--ff", type=int, default=512, help="hidden units of the feed-forward blocks (base: 2048)")
    add("--dropout", type=float, default=0.1,
        help="dropout on sub-layer outputs and embedding sums (the paper's P_drop)")
    add("--attention-dropout", type=float, default=0.0, help="dropout on attention weights")
    add("--activation-dropout", type=float, default=0.0,
        help="dropout on the feed-forward blocks' hidden units")
    add("--label-smoothing", type=float, default=0.1, help="e of the smoothed targets")
    add("--warmup", type=int, default=400, help="warm-up steps of the learning rate (base: 4000)")
    add("--clip", type=float, default=0.0, help="clip the gradient's global norm (0: never)")
    add("--copy", action=argparse.BooleanOptionalAction, default=True,
        help="mix the output softmax with copying source tokens by a copy attention (a "
             "pointer-generator switch, See et al. 2017; --no-copy: the paper's model alone)")
    add("--final-norm", action="store_true",
        help="a LayerNorm after each stack, as torch.nn.Transformer (not in the paper)")
    add("--beam", type=int, default=4, help="beam size for the test decoding")
    add("--length-alpha", type=float, default=0.6,
        help="GNMT length-penalty exponent of beam search (0: raw log p; 0.6 is the paper's, "
             "and the best of 0.6, 1 and 2 on the validation split)")
    add("--max-decode", type=int, default=40, help="longest decoded summary")
    add("--no-repeat-ngram", type=int, default=2, metavar="N",
        help="decoding never writes the same N tokens twice (0: no blocking; the test BLEU "
             "without it is reported too)")
    add("--val-decode", type=int, default=400, metavar="N",
        help="the validation BLEU of each evaluation decodes the first N validation pairs (the "
             "loss uses all)")
    add("--eval-every", type=int, default=1, help="epochs between validation BLEU scores")
    add("--average-last", type=int, default=5, metavar="K",
        help="decode the test split with the average of the last K checkpoints (the paper "
             "averages the last 5; 1: the final params)")
    add("--checkpoint-every", type=float, default=0.5, metavar="EPOCHS",
        help="epochs between the checkpoints that --average-last averages")
    add("--save-params", default=None, metavar="PATH",
        help="also save the params that decode the test split to PATH (.npz, fnn.io.save)")
    return parser


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics and history."""
    return common.run_main(make_parser, run, argv)


def run(args):
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.quick:
        args.d_model, args.ff, args.layers = min(args.d_model, 64), min(args.ff, 128), 2
        args.beam, args.warmup = min(args.beam, 2), min(args.warmup, 20)
    train, valid, test, vocab, arrays, references, baseline = prepare_pairs(args, NAME, start)

    model = Transformer(vocab.vocab_size, args.d_model, args.heads, args.layers, args.layers,
                        args.ff, args.dropout, args.attention_dropout, args.activation_dropout,
                        args.final_norm, args.copy, pad_id=PAD)
    key, init_key, data_key = fgrad.random.split(fgrad.random.key(args.seed), 3)
    params = model.init(init_key)
    print(f"Transformer: {fnn.utils.count_params(params):,} parameters, {args.layers} + "
          f"{args.layers} layers of width {args.d_model}, {args.heads} heads, feed-forward "
          f"{args.ff}")
    steps_per_epoch = len(train) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"transformer: {len(train)} training pairs make no batch of "
                         f"{args.batch_size}; lower --batch-size")
    optimizer, schedule = make_optimizer(args)

    def loss(params, batch, key=None, train=True):
        """Label-smoothed cross-entropy of the next target token (teacher forcing)."""
        src, tgt_in, tgt_out = batch
        logits = model.apply(params, src, tgt_in, key=key, train=train)
        return label_smoothed_loss(logits, tgt_out, PAD, args.label_smoothing)

    loss_and_grad = fgrad.value_and_grad(loss)

    def update(params, opt_state, batch, key):
        """One step: the loss and its gradient (dropout by ``key``), then Adam."""
        value, grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, {"loss": value}

    if args.jit:
        update = fgrad.jit(update)         # one trace per (source, target) padded shape

    source_lengths = (arrays["train"][0] != PAD).sum(axis=1)
    epoch = {"batches": [], "step": 0}

    def make_batch(key):
        """The next batch of the epoch (a new bucketed epoch when one ends), cropped."""
        if not epoch["batches"]:
            epoch["batches"] = bucketed_batches(key, source_lengths, args.batch_size)
        idx = epoch["batches"].pop()
        src, targets = crop(arrays["train"][0][idx], arrays["train"][1][idx])
        return (src, *teacher_forcing(targets))

    if args.average_last < 1 or args.checkpoint_every <= 0:
        raise ValueError(f"transformer: --average-last must be at least 1 and --checkpoint-every "
                         f"positive, got {args.average_last} and {args.checkpoint_every}")
    total_steps = args.epochs * steps_per_epoch
    every = max(1, round(args.checkpoint_every * steps_per_epoch))
    checkpoints = collections.deque(maxlen=args.average_last)

    def step(params, opt_state, batch, key):
        params, opt_state, metrics = update(params, opt_state, batch, key)
        metrics["lr"] = float(schedule(epoch["step"]))
        epoch["step"] += 1
        if (total_steps - epoch["step"]) % every == 0:   # a checkpoint, the last at the end
            checkpoints.append(params)
        return params, opt_state, metrics

    def valid_loss(params):
        """The plain cross-entropy per validation target token (no smoothing: seq2seq's)."""
        total, count = 0.0, 0
        sources, targets = arrays["valid"]
        for i in range(0, len(sources), 128):
            src, tgt = crop(sources[i:i + 128], targets[i:i + 128])
            tgt_in, tgt_out = teacher_forcing(tgt)
            logits = model.apply(params, src, tgt_in)
            tokens = int((tgt_out != PAD).sum())
            total += float(label_smoothed_loss(logits, tgt_out, PAD, 0.0)) * tokens
            count += tokens
        return total / count

    def evaluate(params):
        """Validation loss and greedy BLEU on the first ``--val-decode`` pairs."""
        texts = decode_split(model, params, vocab, arrays["valid"][0][:args.val_decode],
                             args.max_decode, no_repeat=args.no_repeat_ngram)
        return {"val_loss": valid_loss(params), "val_bleu": fnn.text.corpus_bleu(
            texts, references["valid"][:args.val_decode]).score}

    params, _, history = common.train_stream(
        step, params, optimizer.init(params), make_batch, steps=total_steps,
        key=data_key, eval_fn=evaluate, eval_every=args.eval_every * steps_per_epoch,
        described=f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} of "
                  f"{steps_per_epoch} batches of {args.batch_size} pairs")

    # the test split, decoded by the average of the last checkpoints (section 6.1 of the paper)
    last = {"val_loss_last": history["eval"]["val_loss"][-1],
            "val_bleu_last": history["eval"]["val_bleu"][-1]}
    if len(checkpoints) > 1:
        params = fgrad.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]) / len(leaves),
                                *checkpoints)
        averaged = evaluate(params)
        print(f"the average of the last {len(checkpoints)} checkpoints: val_loss "
              f"{averaged['val_loss']:.4g} (last {last['val_loss_last']:.4g}), val_bleu "
              f"{averaged['val_bleu']:.4g} (last {last['val_bleu_last']:.4g})")
    else:
        averaged = {"val_loss": last["val_loss_last"], "val_bleu": last["val_bleu_last"]}
    if args.save_params:
        fnn.io.save(args.save_params, params)
    decode_start = time.perf_counter()
    test_sources = arrays["test"][0]
    unblocked = decode_split(model, params, vocab, test_sources, args.max_decode)
    greedy = decode_split(model, params, vocab, test_sources, args.max_decode,
                          no_repeat=args.no_repeat_ngram)
    beamed = decode_split(model, params, vocab, test_sources, args.max_decode, args.beam,
                          args.length_alpha, args.no_repeat_ngram)
    decode_seconds = time.perf_counter() - decode_start
    final = {"test_bleu_greedy": fnn.text.corpus_bleu(greedy, references["test"]).score,
             f"test_bleu_beam{args.beam}": fnn.text.corpus_bleu(beamed, references["test"]).score,
             "test_bleu_greedy_unblocked": fnn.text.corpus_bleu(unblocked,
                                                                references["test"]).score,
             **baseline, "val_bleu_greedy": averaged["val_bleu"],
             "val_loss": averaged["val_loss"], **last, "checkpoints_averaged": len(checkpoints),
             "vocab_size": vocab.vocab_size, "train_pairs": len(train),
             "parameters": fnn.utils.count_params(params),
             "decode_seconds": round(decode_seconds, 1),
             "cpu_seconds": round(time.process_time() - cpu_start, 1),
             "wall_seconds": round(time.perf_counter() - start, 1)}
    print(f"test BLEU: greedy {final['test_bleu_greedy']:.2f} (without n-gram blocking "
          f"{final['test_bleu_greedy_unblocked']:.2f}), beam {args.beam} "
          f"{final[f'test_bleu_beam{args.beam}']:.2f}; copying the body's first sentence "
          f"{baseline['copy_test_bleu']:.2f}")
    for pair, text in list(zip(test, beamed))[:5]:
        print(f"  {pair.module}.{pair.name}\n    reference: {pair.summary}\n    model:     {text}")
    return common.finish(
        args, NAME, history, final,
        title=f"Transformer (post-LN, {args.layers}+{args.layers} layers of {args.d_model}) on "
              f"docstring summaries ({len(train)} pairs)",
        full_run=FULL_RUN,
        references={"val_bleu": [("copy the body's first sentence",
                                  baseline["copy_val_decode_bleu"])]},
        metrics=("loss", "lr", "val_loss", "val_bleu"),
        titles={"loss": f"label-smoothed cross-entropy (e = {args.label_smoothing}, dropout on)",
                "lr": "learning rate (warm-up, then 1/sqrt(step))",
                "val_loss": "validation cross-entropy (no smoothing)",
                "val_bleu": "validation BLEU, greedy (black: copy baseline)"})


if __name__ == "__main__":
    main()
