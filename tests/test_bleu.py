"""fnn.text.corpus_bleu / sentence_bleu against sacrebleu (a test-only reference).

Hypothesis draws corpora from a vocabulary chosen to exercise the 13a tokenizer (punctuation
glued to words, numbers with points and commas, dashes after digits, HTML entities, case) and
BLEU's corner cases (empty hypotheses, no match at all, segments shorter than four words,
several references with gaps); every statistic is compared with sacrebleu's.
"""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sacrebleu
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

import fnn.text
from fnn.text import bleu

MANY = settings(max_examples=10 * settings.default.max_examples)

WORDS = ["the", "The", "cat", "sat", "on", "mat", "a", "A", "dog", "3.14", "1,000", "x-1", "7-8",
         "end.", "end", "(", ")", "&amp;", "&quot;hi&quot;", "it's", "e.g.", "U.S.A.", "foo,bar",
         "$5", "100%", "-", "--", "a/b", "!", "?", "naïve", "Ünïcode", "{x}", "[1]", "@home", "<p>"]
sentences = st.lists(st.sampled_from(WORDS), max_size=9).map(" ".join)
texts = st.text(alphabet=st.sampled_from(list("ab1. ,-&;quotlgmp!?()'\"/\\{}[]@#$%^*+=:<>~`|_\n"
                                              "Éé·€")), max_size=30)


def reference_score(hypotheses, streams, **options):
    """sacrebleu's BLEU with the same options."""
    effective = options.pop("use_effective_order", False)
    return BLEU(effective_order=effective, **options).corpus_score(hypotheses, streams)


def assert_same(ours, theirs, counts=True):
    assert ours.score == pytest.approx(theirs.score, rel=1e-12, abs=1e-12)
    assert list(ours.precisions) == pytest.approx(theirs.precisions, rel=1e-12, abs=1e-12)
    assert ours.bp == pytest.approx(theirs.bp, rel=1e-12)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    if counts:
        assert list(ours.counts) == list(theirs.counts)
        assert list(ours.totals) == list(theirs.totals)


@MANY
@given(texts)
def test_13a_tokenizer_is_sacrebleus(text):
    assert bleu.tokenize_13a(text) == Tokenizer13a()(text)


def test_13a_tokenizer_examples():
    assert bleu.tokenize_13a("Hello, world! It costs $3.14 (or 1,000).") == \
        "Hello , world ! It costs $ 3.14 ( or 1,000 ) ."
    assert bleu.tokenize_13a("pages 7-8 &amp; x-y &quot;q&quot;") == 'pages 7 - 8 & x-y " q "'


@MANY
@given(data=st.data(), size=st.integers(1, 6),
       smooth_method=st.sampled_from(["exp", "floor", "add-k", "none"]),
       tokenize=st.sampled_from(["13a", "none", "char"]), lowercase=st.booleans(),
       order=st.integers(1, 5), effective=st.booleans())
def test_corpus_bleu_is_sacrebleus(data, size, smooth_method, tokenize, lowercase, order,
                                   effective):
    hypotheses = data.draw(st.lists(sentences, min_size=size, max_size=size))
    references = data.draw(st.lists(sentences, min_size=size, max_size=size))
    options = dict(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method,
                   max_ngram_order=order)
    ours = fnn.text.corpus_bleu(hypotheses, references, use_effective_order=effective, **options)
    theirs = reference_score(hypotheses, [references], use_effective_order=effective, **options)
    assert_same(ours, theirs, counts=smooth_method != "add-k")    # sacrebleu adds k to its counts
    assert 0.0 <= ours.score <= 100.0 + 1e-9          # exp(log(100)) is 100.00000000000004


@MANY
@given(data=st.data(), size=st.integers(1, 5), streams=st.integers(1, 3),
       smooth_method=st.sampled_from(["exp", "floor", "none"]))
def test_several_reference_streams_with_gaps(data, size, streams, smooth_method):
    hypotheses = data.draw(st.lists(sentences, min_size=size, max_size=size))
    first = data.draw(st.lists(sentences, min_size=size, max_size=size))
    others = data.draw(st.lists(st.lists(st.one_of(st.none(), sentences), min_size=size,
                                         max_size=size), min_size=streams - 1,
                                max_size=streams - 1))
    refs = [first] + others
    ours = fnn.text.corpus_bleu(hypotheses, refs, smooth_method=smooth_method)
    assert_same(ours, sacrebleu.corpus_bleu(hypotheses, refs, smooth_method=smooth_method))


@MANY
@given(hypothesis=sentences, references=st.lists(sentences, min_size=1, max_size=3),
       smooth_method=st.sampled_from(["exp", "floor", "add-k", "none"]))
def test_sentence_bleu_is_sacrebleus(hypothesis, references, smooth_method):
    ours = fnn.text.sentence_bleu(hypothesis, references, smooth_method=smooth_method)
    theirs = sacrebleu.sentence_bleu(hypothesis, references, smooth_method=smooth_method)
    assert_same(ours, theirs, counts=smooth_method != "add-k")


@pytest.mark.parametrize("hypotheses, references", [
    ([""], ["the cat"]),                                    # an empty hypothesis
    (["", ""], ["", "a"]),                                  # empty hypotheses and an empty ref
    (["x y z w v"], ["a b c d e"]),                         # no match at all
    (["the cat sat"], ["the cat sat"]),                     # every hypothesis under 4 words
    (["the cat sat on the mat ."], ["the cat sat on the mat."]),   # punctuation split off
    (["A B C D"], ["a b c d"]),                             # case matters unless lowercase
])
@pytest.mark.parametrize("smooth_method", ["exp", "floor", "add-k", "none"])
def test_corner_cases_are_sacrebleus(hypotheses, references, smooth_method):
    for lowercase in (False, True):
        ours = fnn.text.corpus_bleu(hypotheses, references, smooth_method=smooth_method,
                                    lowercase=lowercase)
        theirs = sacrebleu.corpus_bleu(hypotheses, [references], smooth_method=smooth_method,
                                       lowercase=lowercase)
        assert_same(ours, theirs, counts=smooth_method != "add-k")


def test_known_values():
    """By hand: identical corpora score 100. "the cat sat on the mat" against "the cat is on
    the mat" matches 5 of 6 unigrams, 3 of 5 bigrams, 1 of 4 trigrams and none of 3 four-grams,
    which exp smoothing counts as 1/(2 * 3)."""
    same = fnn.text.corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same.score == pytest.approx(100, rel=1e-14) and same.precisions == (100.0,) * 4
    score = fnn.text.corpus_bleu(["the cat sat on the mat"], ["the cat is on the mat"])
    assert score.counts == (5, 3, 1, 0) and score.totals == (6, 5, 4, 3)
    expected = math.exp((math.log(500 / 6) + math.log(60) + math.log(25) + math.log(100 / 6)) / 4)
    assert score.score == pytest.approx(expected, rel=1e-12)
    # a short hypothesis: BP = exp(1 - 6/3)
    short = fnn.text.corpus_bleu(["the cat sat"], ["the cat sat on the mat"], max_ngram_order=3)
    assert short.bp == pytest.approx(math.exp(-1)) and short.score == pytest.approx(100 * math.exp(-1))
    assert fnn.text.corpus_bleu([], []).score == 0.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="corpus_bleu: reference stream 0 has 1 references for 2"):
        fnn.text.corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="hypothesis 0 has no reference"):
        fnn.text.corpus_bleu(["a"], [[None]])
    with pytest.raises(TypeError, match=r"corpus_bleu: hypotheses\[1\] must be a str, got int"):
        fnn.text.corpus_bleu(["a", 3], ["a", "b"])
    with pytest.raises(TypeError, match="corpus_bleu: hypotheses must be a list of strings"):
        fnn.text.corpus_bleu("a b", ["a b"])
    with pytest.raises(TypeError, match="not a mixture"):
        fnn.text.corpus_bleu(["a", "b"], ["a", ["b"]])
    with pytest.raises(ValueError, match="tokenize must be one of"):
        fnn.text.corpus_bleu(["a"], ["a"], tokenize="intl")
    with pytest.raises(ValueError, match="smooth_method must be one of"):
        fnn.text.corpus_bleu(["a"], ["a"], smooth_method="add-one")
    with pytest.raises(TypeError, match="sentence_bleu: hypothesis must be a str"):
        fnn.text.sentence_bleu(["a"], ["a"])
