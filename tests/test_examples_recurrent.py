"""The recurrent examples: LSTM sentiment and the Neural Turing Machine.

Smoke tests run each example's ``main(argv)`` on tiny data in the real formats (a small
``vaderSentiment-3.3.2.tar.gz`` written here, with the nested ``hutto_ICWSM_2014.tar.gz``;
the copy task draws its own data), a few seconds each. The model tests check what the
examples claim: padding a batch never changes a sentence's logit, each direction of the
masked LSTM is ``fnn.LSTM`` run on the sentence alone, and the NTM's addressing gives a
distribution over the slots, moves by the shift it is told, and stays finite (values and
gradients) for extreme controller outputs.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fgrad
import fnn
from test_datasets import write_vader_sdist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, args, tmp_path, monkeypatch, files=("curves.png", "metrics.json")):
    """``examples.<name>.main(args + --out-dir)`` from an empty working directory; checks the
    run folder holds exactly ``files`` and the working directory nothing; returns the result."""
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    result = importlib.import_module(f"examples.{name}").main(list(args) + ["--out-dir", str(out)])
    assert os.listdir(work) == []
    assert sorted(os.listdir(out)) == sorted(files)
    for png in (f for f in files if f.endswith(".png")):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    for key, value in result.items():
        if key != "history":
            assert saved[key] == pytest.approx(value)
    return result


def losses_fell(result, steps=3):
    losses = result["history"]["train"]["loss"]
    assert np.all(np.isfinite(losses))
    return np.mean(losses[-steps:]) < np.mean(losses[:steps])


@pytest.mark.parametrize("name", ["lstm_sentiment", "ntm_copy"])
def test_help_runs_as_a_module(name):
    done = subprocess.run([sys.executable, "-m", f"examples.{name}", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m examples.{name}" in done.stdout
    for flag in ("--seed", "--batch-size", "--lr", "--out-dir", "--quick", "--jit"):
        assert flag in done.stdout


# --------------------------------------------------------------------------------------------
# LSTM sentiment
# --------------------------------------------------------------------------------------------

POSITIVE = ["good", "great", "fun", "moving", "warm", "wise"]
NEGATIVE = ["bad", "dull", "boring", "tepid", "flat", "tired"]


def sentiment_lines(n=120, seed=0):
    """Sentences of 2-9 words, positive ones built from positive words among neutral ones."""
    rng = np.random.default_rng(seed)
    neutral = ["the", "film", "a", "plot", "is", "and", "it", "story", "of", ",", "."]
    lines = []
    for i in range(1, n + 1):
        positive = i % 2 == 0
        words = list(rng.choice(neutral, rng.integers(1, 6)))
        words += list(rng.choice(POSITIVE if positive else NEGATIVE, rng.integers(1, 4)))
        rng.shuffle(words)
        lines.append((i, round(float(rng.uniform(0.5, 3.5)) * (1 if positive else -1), 3),
                      " ".join(words).capitalize()))
    return lines


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    sdist, _, _ = write_vader_sdist(tmp_path_factory.mktemp("vader") / "vaderSentiment-3.3.2.tar.gz",
                                    sentiment_lines())
    return sdist


TINY_LSTM = ["--embed", "8", "--hidden", "8", "--batch-size", "8", "--lr", "2e-2",
             "--min-count", "1", "--dropout", "0.1"]


def test_lstm_sentiment_learns_on_a_tiny_sdist(tmp_path, monkeypatch, reviews):
    result = run_example("lstm_sentiment", ["--data", reviews, "--epochs", "3"] + TINY_LSTM,
                         tmp_path, monkeypatch)
    assert losses_fell(result)
    assert 0 <= result["test_accuracy"] <= 1 and result["bow_test_accuracy"] >= 0.75
    assert set(result["history"]["eval"]) >= {"step", "val_accuracy", "test_accuracy"}


def test_lstm_sentiment_jit_bpe_last_state(tmp_path, monkeypatch, reviews):
    """The jitted step gives the eager step's losses; BPE tokens and --pool last run."""
    args = ["--data", reviews, "--epochs", "1", "--pool", "last", "--unidirectional"] + TINY_LSTM
    eager = run_example("lstm_sentiment", args, tmp_path / "eager", monkeypatch)
    jitted = run_example("lstm_sentiment", args + ["--jit"], tmp_path / "jit", monkeypatch)
    np.testing.assert_allclose(jitted["history"]["train"]["loss"],
                               eager["history"]["train"]["loss"], rtol=1e-5)
    bpe = run_example("lstm_sentiment", ["--data", reviews, "--epochs", "1", "--tokenizer", "bpe",
                                         "--bpe-vocab", "300"] + TINY_LSTM,
                      tmp_path / "bpe", monkeypatch)
    assert np.all(np.isfinite(bpe["history"]["train"]["loss"]))


def random_sentences(rng, lengths, vocab):
    return [list(rng.integers(2, vocab, n)) for n in lengths]


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pool", ["max", "mean", "last"])
def test_padding_never_changes_a_sentences_logit(bidirectional, pool):
    from examples import lstm_sentiment as ls
    rng = np.random.default_rng(0)
    model = ls.SentimentLSTM(50, 6, 5, bidirectional, pool, dropout=0.0, dtype=np.float64)
    params = model.init(fgrad.random.key(1))
    sentences = random_sentences(rng, [1, 7, 3, 12, 5], 50)
    ids, lengths = ls.pad(sentences)
    batch = model.apply(params, *ls.crop(ids, lengths))
    # longer padding, and junk (real word ids) where the padding is: nothing changes
    ids_long, _ = ls.pad(sentences, length=23)
    mask = np.arange(23)[None, :] < lengths[:, None]
    junk = np.where(mask, ids_long, rng.integers(2, 50, ids_long.shape))
    padded = model.apply(params, junk, mask)
    alone = [model.apply(params, np.array([s]), np.ones((1, len(s)), bool))[0] for s in sentences]
    np.testing.assert_allclose(padded, batch, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batch, alone, rtol=1e-12, atol=1e-12)


def test_each_direction_is_fnn_lstm_on_the_sentence_alone():
    """The backward direction starts at each sentence's own last token, not at the padding."""
    from examples import lstm_sentiment as ls
    rng = np.random.default_rng(2)
    lstm = fnn.LSTM(4, 3, bidirectional=True, batch_first=True, dtype=np.float64)
    params = lstm.init(fgrad.random.key(3))
    lengths = [2, 6, 4]
    x = rng.normal(size=(3, 6, 4))
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    (forward, backward), (h_fwd, h_bwd) = ls.masked_lstm(params, np.where(mask[..., None], x, 9.0),
                                                         mask)
    for i, n in enumerate(lengths):
        out, (h_n, _) = lstm.apply(params, x[i:i + 1, :n])
        np.testing.assert_allclose(forward[i, :n], out[0, :, :3], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(backward[i, :n], out[0, :, 3:], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h_fwd[i], h_n[0, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h_bwd[i], h_n[1, 0], rtol=1e-12, atol=1e-12)


def test_words_and_vocabulary():
    from examples import lstm_sentiment as ls
    assert ls.tokenize("It isn't ''great'', is it?") == ["it", "isn't", "'", "'", "great", "'",
                                                         "'", ",", "is", "it", "?"]
    vocab = ls.WordVocabulary(["a b b", "b c"], min_count=2)
    assert vocab.encode("b a zzz") == [2, ls.UNK, ls.UNK] and vocab.vocab_size == 3


# --------------------------------------------------------------------------------------------
# The Neural Turing Machine
# --------------------------------------------------------------------------------------------

TINY_NTM = ["--batch-size", "4", "--controller", "16", "--slots", "16", "--width", "6",
            "--max-length", "4", "--test-lengths", "4", "8", "--test-batch", "4", "--lr", "3e-3"]


def test_ntm_copy_runs_and_draws_its_heads(tmp_path, monkeypatch):
    result = run_example("ntm_copy", ["--steps", "16", "--eval-every", "8", "--no-jit"] + TINY_NTM,
                         tmp_path, monkeypatch, files=("curves.png", "heads.png", "metrics.json"))
    history = result["history"]
    assert len(history["train"]["loss"]) == 16 and history["eval"]["step"] == [8, 16]
    assert np.all(np.isfinite(history["train"]["grad_norm"]))
    assert 0 <= result["test_bit_errors_4"] <= 4 * 8 and 0 <= result["test_bit_errors_8"] <= 8 * 8


def test_ntm_copy_seed_repeats_and_jit_agrees(tmp_path, monkeypatch):
    args = TINY_NTM + ["--steps", "4", "--eval-every", "4", "--test-lengths", "3"]
    files = ("curves.png", "heads.png", "metrics.json")
    a = run_example("ntm_copy", args + ["--no-jit"], tmp_path / "a", monkeypatch, files=files)
    b = run_example("ntm_copy", args + ["--jit"], tmp_path / "b", monkeypatch, files=files)
    c = run_example("ntm_copy", args + ["--seed", "1", "--optimizer", "rmsprop", "--no-jit"],
                    tmp_path / "c", monkeypatch, files=files)
    np.testing.assert_allclose(b["history"]["train"]["loss"], a["history"]["train"]["loss"],
                               rtol=1e-5)
    assert a["history"]["train"]["loss"] != c["history"]["train"]["loss"]


def test_copy_task_batches():
    from examples import ntm_copy as nc
    x, targets = nc.copy_batch(fgrad.random.key(0), 3, 5)
    assert x.shape == (3, 11, 9) and targets.shape == (3, 5, 8)
    np.testing.assert_array_equal(x[:, :5, :8], targets)
    assert np.all(x[:, 5, 8] == 1) and np.all(x[:, 6:] == 0) and np.all(x[:, :5, 8] == 0)
    again, _ = nc.copy_batch(fgrad.random.key(0), 3, 5)
    np.testing.assert_array_equal(again, x)


def test_addressing_moves_by_the_shift_and_stays_a_distribution():
    from examples import ntm_copy as nc
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(2, 10, 4))
    w_prev = np.zeros((2, 10))
    w_prev[:, 3] = 1.0
    big = 30.0
    gate = np.full((2, 1), -big)                         # g = 0: keep the previous weighting
    shift = np.array([[-big, -big, big], [big, -big, -big]])   # +1 and -1
    w = nc.address(memory, w_prev, rng.normal(size=(2, 4)), np.zeros((2, 1)), gate, shift,
                   np.full((2, 1), big))
    assert np.argmax(w[0]) == 4 and np.argmax(w[1]) == 2
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e4])
def test_addressing_is_finite_for_extreme_outputs_and_a_blank_memory(scale):
    """A zero memory and key (the cosine's 0/0), huge or zero beta/gamma: no NaN, and the
    gradient through every input is finite too."""
    from examples import ntm_copy as nc
    rng = np.random.default_rng(1)
    memory = np.zeros((2, 8, 4), np.float32)
    w_prev = np.full((2, 8), 1 / 8, np.float32)
    head = [scale * rng.normal(size=s).astype(np.float32) for s in
            [(2, 4), (2, 1), (2, 1), (2, 3), (2, 1)]]
    head[0] *= 0                                                           # zero key

    def f(memory, w_prev, *head):
        return fgrad.numpy.sum(nc.address(memory, w_prev, *head) * np.arange(8))

    w = nc.address(memory, w_prev, *head)
    assert np.all(np.isfinite(w)) and np.allclose(w.sum(axis=1), 1, atol=1e-5)
    grads = fgrad.grad(f, argnums=tuple(range(7)))(memory, w_prev, *head)
    assert all(np.all(np.isfinite(g)) for g in grads)
