"""BLEU (Papineni et al., 2002), computed as sacrebleu computes it, for the seq2seq examples.

Corpus BLEU compares each hypothesis with its references by clipped n-gram counts, summed over
the whole corpus before any division::

    p_n   = sum over segments of sum_g min(count_hyp(g), max_ref count_ref(g))
            / sum over segments of (number of n-grams in the hypothesis)      n = 1 .. 4
    BP    = 1 if c >= r else exp(1 - r / c)      c: hypothesis words, r: the closest reference
                                                 length per segment (ties: the shorter), summed
    BLEU  = 100 * BP * exp(mean_n log p_n)

Everything a score depends on follows sacrebleu 2.x (``sacrebleu.corpus_bleu``,
``sacrebleu.sentence_bleu``) so that scores are comparable with published ones; the tests
check equality with sacrebleu on hypothesis-drawn corpora (sacrebleu is a test-only reference):

* the ``"13a"`` tokenizer (mteval-v13a.pl, WMT's standard): punctuation and symbols become
  words, a full stop or comma splits off unless it sits between digits, a dash splits off after
  a digit; ``&quot; &amp; &lt; &gt;`` are unescaped first. ``"none"`` splits on whitespace only,
  ``"char"`` scores characters;
* smoothing for an n-gram order with no match (Chen and Cherry, 2014): ``"exp"`` (the default;
  the k-th such order gets ``1 / (2^k * total_n)``), ``"floor"`` (``smooth_value / total_n``,
  default 0.1), ``"add-k"`` (adds ``smooth_value``, default 1, to the matches and totals of
  orders 2 and up), ``"none"`` (the score is 0);
* a corpus without a single matching unigram scores 0 whatever the smoothing; an order with no
  n-grams at all in the hypotheses (every hypothesis shorter than n words) scores 0, unless
  ``use_effective_order`` stops the mean at the last order that has some (the default of
  :func:`sentence_bleu`, as in sacrebleu);
* lower-casing (``lowercase=True``) happens before tokenizing; trailing whitespace is dropped.

Two deliberate differences: references of the wrong length raise a ``ValueError`` (sacrebleu's
``zip`` silently truncates to the shorter), and ``counts`` / ``totals`` are the raw counts
(sacrebleu's add-k smoothing adds ``k`` to the lists it returns).

>>> from fnn.text import corpus_bleu
>>> round(corpus_bleu(["the cat sat on the mat"], ["the cat is on the mat"]).score, 2)
37.99
>>> corpus_bleu(["a b"], [["a b"], ["a c"]]).precisions[:2]     # two reference streams
(100.0, 100.0)
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import NamedTuple

__all__ = ["BLEUScore", "corpus_bleu", "sentence_bleu", "tokenize_13a", "SMOOTH_DEFAULTS"]

#: The smoothing methods and their default ``smooth_value`` (sacrebleu's).
SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


class BLEUScore(NamedTuple):
    """A BLEU score and its sufficient statistics.

    ``score`` is in ``[0, 100]``; ``precisions`` the (smoothed) n-gram precisions in percent;
    ``bp`` the brevity penalty; ``sys_len`` / ``ref_len`` the hypothesis words and the closest
    reference words, summed over segments; ``counts`` / ``totals`` the matched and the
    hypothesis n-grams of each order."""

    score: float
    precisions: tuple
    bp: float
    sys_len: int
    ref_len: int
    counts: tuple
    totals: tuple


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------

_13A_RULES = (
    # symbols and punctuation except ' , - . become words: { | } ~ [ \ ] ^ _ ` ! " # $ % & ( ) * +
    # : ; < = > ? @ /
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),      # . and , split off unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),      # ... or unless before one
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),           # a dash after a digit splits off
)


def tokenize_13a(line):
    """mteval-v13a's tokenization (sacrebleu's ``"13a"``): ``"Hello, world!"`` -> ``"Hello ,
    world !"``; ``"3.14"`` and ``"1,000"`` stay whole."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                .replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


_TOKENIZERS = {"13a": tokenize_13a, "none": lambda line: line,
               "char": lambda line: " ".join(line)}


# --------------------------------------------------------------------------------------------
# BLEU
# --------------------------------------------------------------------------------------------

def corpus_bleu(hypotheses, references, *, tokenize="13a", lowercase=False, smooth_method="exp",
                smooth_value=None, max_ngram_order=4, use_effective_order=False):
    """Corpus BLEU of ``hypotheses`` (a list of strings) against ``references``.

    ``references`` is either a list of strings, one reference per hypothesis, or (as sacrebleu
    takes it) a list of reference streams, each a list with one string per hypothesis; a
    ``None`` in a stream means that hypothesis has fewer references. Returns a
    :class:`BLEUScore`; ``.score`` equals ``sacrebleu.corpus_bleu(hypotheses, streams,
    ...).score``. See the module docstring for the tokenizers and the smoothing methods.
    """
    hypotheses = _check_strings("corpus_bleu", "hypotheses", hypotheses)
    references = _references_per_hypothesis("corpus_bleu", references, len(hypotheses))
    prepare = _preprocessor("corpus_bleu", tokenize, lowercase)
    _check_smoothing("corpus_bleu", smooth_method, max_ngram_order)
    stats = [_segment_statistics(prepare(hyp), [prepare(r) for r in refs], max_ngram_order)
             for hyp, refs in zip(hypotheses, references)]
    return _score(stats, smooth_method, smooth_value, max_ngram_order, use_effective_order)


def sentence_bleu(hypothesis, references, *, tokenize="13a", lowercase=False, smooth_method="exp",
                  smooth_value=None, max_ngram_order=4, use_effective_order=True):
    """BLEU of one hypothesis against one reference string or a list of them, with the
    effective order on by default (``sacrebleu.sentence_bleu``'s defaults): an order with no
    n-grams in the hypothesis is left out of the mean."""
    if not isinstance(hypothesis, str):
        raise TypeError(f"sentence_bleu: hypothesis must be a str, got {type(hypothesis).__name__}")
    references = [references] if isinstance(references, str) else references
    references = _check_strings("sentence_bleu", "references", references)
    return corpus_bleu([hypothesis], [[r] for r in references], tokenize=tokenize,
                       lowercase=lowercase, smooth_method=smooth_method,
                       smooth_value=smooth_value, max_ngram_order=max_ngram_order,
                       use_effective_order=use_effective_order)


def _segment_statistics(hypothesis, references, order):
    """``(hyp_len, closest ref_len, matches per order, hypothesis n-grams per order)`` of one
    tokenized segment; a reference's n-gram count is the largest over the references."""
    hyp_ngrams, hyp_len = _ngrams(hypothesis, order)
    ref_ngrams, ref_lens = Counter(), []
    for reference in references:
        ngrams, length = _ngrams(reference, order)
        ref_lens.append(length)
        for ngram, count in ngrams.items():
            ref_ngrams[ngram] = max(ref_ngrams[ngram], count)
    ref_len = min(ref_lens, key=lambda length: (abs(hyp_len - length), length))
    correct, total = [0] * order, [0] * order
    for ngram, count in hyp_ngrams.items():
        total[len(ngram) - 1] += count
        correct[len(ngram) - 1] += min(count, ref_ngrams.get(ngram, 0))
    return hyp_len, ref_len, correct, total


def _ngrams(line, order):
    """The counts of every 1- to ``order``-gram of the words of ``line``, and its length."""
    words = line.split()
    return Counter(tuple(words[i:i + n]) for n in range(1, order + 1)
                   for i in range(len(words) - n + 1)), len(words)


def _score(stats, smooth_method, smooth_value, order, effective_order):
    """BLEU from the segments' statistics (sacrebleu's ``BLEU.compute_bleu``)."""
    sys_len = sum(s[0] for s in stats)
    ref_len = sum(s[1] for s in stats)
    counts = tuple(sum(s[2][n] for s in stats) for n in range(order))
    totals = tuple(sum(s[3][n] for s in stats) for n in range(order))
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    precisions = [0.0] * order
    if not any(counts):                                # no match at all: 0 whatever smoothing
        return BLEUScore(0.0, tuple(precisions), bp, sys_len, ref_len, counts, totals)
    correct, total = list(counts), list(totals)
    halvings, used = 1.0, order
    for n in range(order):
        if smooth_method == "add-k" and n > 0:         # add k to orders 2 and up
            correct[n] += smooth_value
            total[n] += smooth_value
        if total[n] == 0:                              # no hypothesis has n + 1 words
            break
        if effective_order:
            used = n + 1
        if correct[n]:
            precisions[n] = 100.0 * correct[n] / total[n]
        elif smooth_method == "exp":                   # 1 / (2^k total) for the k-th zero order
            halvings *= 2
            precisions[n] = 100.0 / (halvings * total[n])
        elif smooth_method == "floor":
            precisions[n] = 100.0 * smooth_value / total[n]
    if any(p == 0.0 for p in precisions[:used]):       # log 0: the geometric mean is 0
        score = 0.0
    else:
        score = bp * math.exp(sum([math.log(p) for p in precisions[:used]]) / used)
    return BLEUScore(score, tuple(precisions), bp, sys_len, ref_len, counts, totals)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

def _check_strings(fname, what, values):
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise TypeError(f"{fname}: {what} must be a list of strings, got "
                        f"{type(values).__name__}")
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{fname}: {what}[{i}] must be a str, got {type(value).__name__}")
    return values


def _references_per_hypothesis(fname, references, count):
    """``references`` (strings, or streams of ``count`` strings or ``None``) as one list of
    reference strings per hypothesis."""
    if isinstance(references, str) or not hasattr(references, "__len__"):
        raise TypeError(f"{fname}: references must be a list of strings (one per hypothesis) "
                        f"or a list of reference streams, got {type(references).__name__}")
    references = list(references)
    if all(isinstance(r, str) for r in references):
        streams = [references]
    elif all(isinstance(r, (list, tuple)) for r in references):
        streams = [list(stream) for stream in references]
    else:
        raise TypeError(f"{fname}: references must be a list of strings (one per hypothesis) "
                        f"or a list of reference streams (lists of strings), not a mixture")
    for k, stream in enumerate(streams):
        if len(stream) != count:
            raise ValueError(f"{fname}: reference stream {k} has {len(stream)} references for "
                             f"{count} hypotheses; each stream needs one per hypothesis (None "
                             f"where a hypothesis has fewer references)")
        for i, ref in enumerate(stream):
            if ref is not None and not isinstance(ref, str):
                raise TypeError(f"{fname}: reference {i} of stream {k} must be a str or None, "
                                f"got {type(ref).__name__}")
    per_hypothesis = [[r for r in refs if r is not None] for refs in zip(*streams)]
    if len(per_hypothesis) != count:           # no stream at all
        raise ValueError(f"{fname}: {count} hypotheses and no reference stream")
    for i, refs in enumerate(per_hypothesis):
        if not refs:
            raise ValueError(f"{fname}: hypothesis {i} has no reference (None in every stream)")
    return per_hypothesis


def _preprocessor(fname, tokenize, lowercase):
    if tokenize not in _TOKENIZERS:
        raise ValueError(f"{fname}: tokenize must be one of {sorted(_TOKENIZERS)}, got "
                         f"{tokenize!r}")
    tokenizer = _TOKENIZERS[tokenize]
    return lambda line: tokenizer((line.lower() if lowercase else line).rstrip())


def _check_smoothing(fname, smooth_method, order):
    if smooth_method not in SMOOTH_DEFAULTS:
        raise ValueError(f"{fname}: smooth_method must be one of {sorted(SMOOTH_DEFAULTS)}, got "
                         f"{smooth_method!r}")
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"{fname}: max_ngram_order must be a positive int, got {order!r}")
