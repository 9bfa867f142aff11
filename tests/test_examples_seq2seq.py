"""The seq2seq example: a BiGRU encoder, a GRU decoder with additive attention, on docstrings.

The smoke tests run ``examples.seq2seq.main(argv)`` on a small package tree written here (real
``.py`` files, read by ``load_docstring_pairs(roots=...)``), a few seconds each. The model tests
check what the example claims: padding a source batch (longer, and filled with real token ids)
never changes a sentence's decoder outputs or its attention; each encoder direction is
``fnn.GRU`` run on the sentence alone; beam search with beam 1 is greedy decoding, and a beam
wider than the whole search space finds the most likely sequence (found here by brute force,
scored by the teacher-forced model); the attention function's gradient matches ``torch.func``
and finite differences (float64).
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import fnn
from examples import seq2seq as s2s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOUNS = ["sum", "mean", "maximum", "minimum", "length", "name", "path", "size", "shape",
         "index", "count", "value", "key", "width", "height", "total"]
VERBS = [("Return", "Compute"), ("Set", "Store"), ("Print", "Write out"), ("Remove", "Delete")]


def write_package(root, modules=40, functions=6, seed=0):
    """A package ``pkg`` of ``modules`` modules, each with ``functions`` documented functions
    whose summary ("Return the size of the table.") can be read off the body ("Compute the
    size of the table from its rows. ...")."""
    rng = np.random.default_rng(seed)
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for m in range(modules):
        lines = []
        for f in range(functions):
            (verb, synonym), noun = VERBS[rng.integers(len(VERBS))], rng.choice(NOUNS)
            thing = rng.choice(["table", "array", "list", "file"])
            lines += [f"def f{f}(x):",
                      f'    """{verb} the {noun} of the {thing}.',
                      "",
                      f"    {synonym} the {noun} of the {thing} from its rows. The {thing} x",
                      f"    is not changed (module {m}).",
                      '    """', ""]
        (package / f"mod{m}.py").write_text("\n".join(lines))
    return str(package)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return write_package(tmp_path_factory.mktemp("docstrings"))


TINY = ["--embed", "16", "--hidden", "16", "--decoder-hidden", "16", "--attention", "8",
        "--bpe-vocab", "300", "--batch-size", "16", "--lr", "1e-2", "--dropout", "0.0",
        "--max-decode", "12", "--beam", "3"]


def run_example(args, tmp_path, monkeypatch):
    """``examples.seq2seq.main(args + --out-dir)`` from an empty working directory; checks the
    run folder's files and that metrics.json holds the returned results."""
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    result = s2s.main(list(args) + ["--out-dir", str(out)])
    assert os.listdir(work) == []
    assert sorted(os.listdir(out)) == ["attention.png", "curves.png", "metrics.json"]
    for png in ("attention.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    for key, value in result.items():
        if key != "history":
            assert saved[key] == pytest.approx(value)
    return result


def test_help_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "examples.seq2seq", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m examples.seq2seq" in done.stdout
    for flag in ("--seed", "--batch-size", "--lr", "--out-dir", "--quick", "--jit", "--beam",
                 "--roots", "--length-alpha", "--copy", "--no-repeat-ngram"):
        assert flag in done.stdout


def test_seq2seq_learns_on_a_tiny_package(tmp_path, monkeypatch, package):
    result = run_example(["--roots", package, "--epochs", "4", "--no-jit"] + TINY, tmp_path,
                         monkeypatch)
    history = result["history"]
    losses = history["train"]["loss"]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert len(history["eval"]["val_bleu"]) == 4
    for name in ("test_bleu_greedy", "test_bleu_beam3", "copy_test_bleu", "val_bleu_greedy"):
        assert 0.0 <= result[name] <= 100.0 + 1e-9
    assert 1 <= result["best_epoch"] <= 4


def test_jit_gives_the_eager_losses_and_the_seed_repeats(tmp_path, monkeypatch, package):
    args = ["--roots", package, "--epochs", "1", "--train-size", "64", "--test-size", "16"] + TINY
    eager = run_example(args + ["--no-jit"], tmp_path / "eager", monkeypatch)
    jitted = run_example(args + ["--jit"], tmp_path / "jit", monkeypatch)
    other = run_example(args + ["--no-jit", "--seed", "1", "--no-copy", "--no-repeat-ngram", "0"],
                        tmp_path / "other", monkeypatch)
    np.testing.assert_allclose(jitted["history"]["train"]["loss"],
                               eager["history"]["train"]["loss"], rtol=1e-4)
    assert jitted["test_bleu_greedy"] == pytest.approx(eager["test_bleu_greedy"], abs=1e-9)
    assert other["history"]["train"]["loss"] != eager["history"]["train"]["loss"]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

VOCAB = 23


def tiny_model(dtype=np.float64, vocab=VOCAB, seed=0, copy=False):
    model = s2s.Seq2Seq(vocab, embed=6, hidden=5, decoder_hidden=7, attention=4, dropout=0.0,
                        copy=copy, dtype=dtype)
    params = model.init(fgrad.random.key(seed))
    # a sharper output distribution than at initialisation, so decoding has real choices
    params["embedding"]["weight"] = params["embedding"]["weight"] * 20
    # and an end token likely enough that some decodings stop early and some do not
    params["out_bias"] = np.where(np.arange(vocab) == s2s.EOS, 3.0, 0.0).astype(dtype)
    return model, params


def pad_rows(rows, width=None):
    width = width or max(len(r) for r in rows)
    out = np.full((len(rows), width), s2s.PAD, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@pytest.mark.parametrize("copy", [False, True])
def test_padding_never_changes_a_sentences_decoder_outputs(copy):
    rng = np.random.default_rng(0)
    model, params = tiny_model(copy=copy)
    sources = [list(rng.integers(3, VOCAB, n)) for n in (1, 7, 3, 12, 5)]
    targets = pad_rows([list(rng.integers(3, VOCAB, n)) + [s2s.EOS] for n in (3, 1, 5, 2, 4)])
    batch = pad_rows(sources)
    log_p, attention = model.apply(params, batch, targets)
    assert np.all(attention[np.broadcast_to((batch == s2s.PAD)[:, None, :], attention.shape)] == 0)
    # longer padding: the same logits, and exactly zero attention on the extra positions
    long = pad_rows(sources, 20)
    padded_log_p, padded_attention = model.apply(params, long, targets)
    np.testing.assert_allclose(padded_log_p, log_p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(padded_attention[:, :, :batch.shape[1]], attention, rtol=1e-12,
                               atol=1e-12)
    assert np.all(padded_attention[:, :, batch.shape[1]:] == 0)
    # each sentence alone
    for i, source in enumerate(sources):
        alone_log_p, alone_attention = model.apply(params, np.array([source]), targets[i:i + 1])
        np.testing.assert_allclose(alone_log_p[0], log_p[i], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(alone_attention[0], attention[i, :, :len(source)],
                                   rtol=1e-12, atol=1e-12)
    # and greedy decoding of the batch, padded or not, is each sentence's own
    ids, _ = s2s.greedy_decode(model, params, batch, 8)
    ids_long, _ = s2s.greedy_decode(model, params, long, 8)
    np.testing.assert_array_equal(ids, ids_long)
    for i, source in enumerate(sources):
        alone, _ = s2s.greedy_decode(model, params, np.array([source]), 8)
        np.testing.assert_array_equal(alone[0], ids[i, :alone.shape[1]])
        assert np.all(ids[i, alone.shape[1]:] == s2s.PAD)


def test_each_encoder_direction_is_fnn_gru_on_the_sentence_alone():
    rng = np.random.default_rng(2)
    gru = fnn.GRU(4, 3, bidirectional=True, batch_first=True, dtype=np.float64)
    params = gru.init(fgrad.random.key(3))
    lengths = [2, 6, 4]
    x = rng.normal(size=(3, 6, 4))
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    junk = np.swapaxes(np.where(mask[..., None], x, 9.0), 0, 1)     # time-major, junk padding
    forward, h_fwd = (np.swapaxes(a, 0, 1) if a.ndim == 3 else a
                      for a in s2s.masked_gru(params, junk, mask.T, ""))
    backward, h_bwd = (np.swapaxes(a, 0, 1) if a.ndim == 3 else a
                       for a in s2s.masked_gru(params, junk, mask.T, "_reverse"))
    for i, n in enumerate(lengths):
        out, h_n = gru.apply(params, x[i:i + 1, :n])
        np.testing.assert_allclose(forward[i, :n], out[0, :, :3], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(backward[i, :n], out[0, :, 3:], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h_fwd[i], h_n[0, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h_bwd[i], h_n[1, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("copy", [False, True])
def test_beam_one_is_greedy(copy):
    rng = np.random.default_rng(4)
    model, params = tiny_model(np.float32, copy=copy)
    sources = pad_rows([list(rng.integers(3, VOCAB, n)) for n in (4, 9, 1, 6, 6, 2)])
    greedy, greedy_attention = s2s.greedy_decode(model, params, sources, 10)
    beamed, scores, attention = s2s.beam_search(model, params, sources, 10, beam=1)
    np.testing.assert_array_equal(beamed[:, 0], greedy)
    np.testing.assert_allclose(attention[:, 0], greedy_attention, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(scores))
    assert 0 < (greedy == s2s.EOS).any(axis=1).sum() < len(sources)   # some rows stop early
    # with repeated bigrams blocked: still equal, and no row repeats a bigram
    blocked, _ = s2s.greedy_decode(model, params, sources, 10, no_repeat=2)
    beamed, _, _ = s2s.beam_search(model, params, sources, 10, beam=1, no_repeat=2)
    np.testing.assert_array_equal(beamed[:, 0], blocked)
    assert not np.array_equal(blocked, greedy)
    for row in blocked:
        words = [int(t) for t in row if t != s2s.PAD]
        bigrams = list(zip(words, words[1:]))
        assert len(bigrams) == len(set(bigrams))


def test_repeat_bans():
    tokens = np.array([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    assert s2s.repeat_bans(tokens, 3) == [[7], []]        # 5 6 -> 7 was written
    assert s2s.repeat_bans(tokens, 2) == [[7], []]        # 6 -> 7 was written
    assert s2s.repeat_bans(tokens, 1) == [[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]]
    assert s2s.repeat_bans(tokens, 0) == [[], []] and s2s.repeat_bans(tokens[:, :2], 3) == [[], []]
    blocked = s2s.block(np.zeros((2, 8)), [[7], []])
    assert blocked[0, 7] == -np.inf and np.isfinite(blocked).sum() == 15


def sequence_log_prob(model, params, source, tokens):
    """log p(tokens | source) by teacher forcing."""
    log_p, _ = model.apply(params, np.array([source]), np.array([tokens]))
    return float(sum(log_p[0, t, token] for t, token in enumerate(tokens)))


@pytest.mark.parametrize("length_alpha, copy", [(0.0, False), (0.6, False), (0.6, True)])
def test_a_beam_wider_than_the_search_space_finds_the_best_sequence(length_alpha, copy):
    """Vocabulary of 5 (PAD, BOS, EOS and two words), at most 3 tokens: every sequence is in
    the beam, so its winner is the best by brute force, and its score is log p / lp."""
    vocab, max_length = 5, 3
    model, params = tiny_model(vocab=vocab, seed=5, copy=copy)
    for source in ([3, 4, 4], [4], [3, 3, 4, 3, 4]):
        candidates = []
        for n in range(1, max_length + 1):
            for words in itertools.product([3, 4], repeat=n - 1):
                candidates.append(list(words) + [s2s.EOS])          # finished in n tokens
        candidates += [list(w) for w in itertools.product([3, 4], repeat=max_length)]  # cut off
        scored = [(sequence_log_prob(model, params, source, c)
                   / ((5.0 + len(c)) / 6.0) ** length_alpha, c) for c in candidates]
        best_score, best = max(scored)
        ids, scores, _ = s2s.beam_search(model, params, np.array([source]), max_length,
                                         beam=64, length_alpha=length_alpha)
        found = [int(t) for t in ids[0, 0] if t != s2s.PAD]
        assert found == best, (found, best)
        assert scores[0, 0] == pytest.approx(best_score, rel=1e-10)
        assert np.all(np.diff(scores[0][np.isfinite(scores[0])]) <= 1e-12)   # best first


@pytest.mark.parametrize("copy", [False, True])
def test_the_decoding_step_gives_the_teacher_forced_probabilities(copy):
    """Feeding the decoder step the true previous tokens, one at a time, gives the log-probabilities
    of the whole-sequence (scanned) pass: the two code paths compute one model."""
    rng = np.random.default_rng(6)
    model, params = tiny_model(copy=copy)
    sources = pad_rows([list(rng.integers(3, VOCAB, n)) for n in (5, 2, 8)])
    targets = pad_rows([list(rng.integers(3, VOCAB, n)) + [s2s.EOS] for n in (4, 6, 1)])
    log_p, attention = model.apply(params, sources, targets)
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-12)
    step = s2s.make_decode_step(model)
    states, keys, mask, state = model.encode(params, sources)
    previous = np.full(3, s2s.BOS)
    for t in range(targets.shape[1]):
        state, step_log_p, weights = step(params, state, previous, (states, keys, mask, sources))
        np.testing.assert_allclose(step_log_p, log_p[:, t], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(weights, attention[:, t], rtol=1e-10, atol=1e-14)
        previous = targets[:, t]


def test_copying_puts_the_attention_on_source_tokens_and_stays_finite():
    """p_copy is the attention added up per token id; a target the source lacks (p_copy = 0
    there) keeps a finite loss and gradient; a huge switch logit gives pure copying."""
    weights = np.array([[0.5, 0.2, 0.3, 0.0]])
    p_copy = s2s.copy_distribution(weights, np.array([[4, 3, 4, 0]]), 6)
    np.testing.assert_allclose(p_copy, [[0.0, 0, 0, 0.2, 0.8, 0]])
    rng = np.random.default_rng(7)
    model, params = tiny_model(copy=True)
    sources = np.array([[3, 4, 5, 3]])
    targets = np.array([[10, 11, 3, s2s.EOS]])                      # 10, 11, EOS: not copyable
    loss = s2s.make_loss(model)
    value, grads = fgrad.value_and_grad(lambda p: loss(p, (sources, targets), train=False)[0])(params)
    assert np.isfinite(value)
    assert all(np.all(np.isfinite(g)) for g in fgrad.tree.leaves(grads))
    gate = np.full((1, 2), 50.0)
    mixed = np.exp(s2s.mix_copy(rng.normal(size=(1, 2, 6)), -gate, np.broadcast_to(p_copy, (1, 2, 6))))
    np.testing.assert_allclose(mixed, np.broadcast_to(p_copy, (1, 2, 6)), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(lead=st.sampled_from([(), (1,), (3,), (2, 3)]), vocab=st.integers(2, 9),
       positions=st.integers(1, 6), gate_scale=st.sampled_from([0.5, 3.0, 40.0]),
       seed=st.integers(0, 2 ** 16))
def test_the_fused_copy_mixture_is_the_formula_with_its_gradient(lead, vocab, positions,
                                                                  gate_scale, seed):
    """copy_mixture's NumPy path against mix_copy(copy_distribution(...)) in float64: values,
    the VJP (repeated ids, zero weights, saturated switches), finite differences, jit, vmap."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, lead + (vocab,))
    gate = rng.normal(0.0, gate_scale, lead)
    weights = rng.dirichlet(np.ones(positions), lead) if lead else rng.dirichlet(np.ones(positions))
    weights = np.where(rng.random(weights.shape) < 0.2, 0.0, weights)    # padding: weight 0
    sources = rng.integers(0, vocab, weights.shape[-1:] if rng.random() < 0.5 else weights.shape)

    def reference(z, g, a):
        return s2s.mix_copy(z, g, s2s.copy_distribution(a, sources, vocab))

    def fused(z, g, a):
        return s2s.copy_mixture(z, g, a, sources)

    expected = np.asarray(reference(logits, gate, weights))
    np.testing.assert_allclose(fused(logits, gate, weights), expected, rtol=1e-12, atol=1e-12)
    cotangent = rng.normal(size=expected.shape)
    out, pullback = fgrad.vjp(fused, logits, gate, weights)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    _, reference_pullback = fgrad.vjp(reference, logits, gate, weights)
    wanted = reference_pullback(cotangent)
    # at a weight of exactly 0 the formula's where(p_copy > 0, ...) cuts the derivative to 0;
    # the kernel gives p's own (1 - sigmoid(g)) / p(w), which a softmax's masked zeros ignore
    positive = weights > 0
    for i, (got, want) in enumerate(zip(pullback(cotangent), wanted)):
        if i == 2:
            got, want = got[positive], want[positive]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    if gate_scale < 40.0:     # away from weight 0 (a kink: p_copy > 0 or not) and saturation
        fgrad.testing.check_grads(fused, (logits, gate, np.abs(weights) + 0.05), modes=("rev",))
    np.testing.assert_allclose(fgrad.jit(fused)(logits, gate, weights), expected, rtol=1e-12,
                               atol=1e-12)
    jit_grads = fgrad.jit(fgrad.grad(lambda *a: fnp.sum(fused(*a) * cotangent),
                                     argnums=(0, 1, 2)))(logits, gate, weights)
    for got, want in zip(jit_grads, pullback(cotangent)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    if lead:                        # vmap over the first axis (traced: the formula)
        axes = (0, 0, 0, 0 if sources.ndim == weights.ndim else None)
        np.testing.assert_allclose(fgrad.vmap(s2s.copy_mixture, in_axes=axes)(
            logits, gate, weights, sources), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# The attention function's gradient
# --------------------------------------------------------------------------------------------

def torch_attention(query, keys, values, mask, w_query, b_query, v):
    scores = torch.tanh(keys + (query @ w_query.T + b_query)[:, None, :]) @ v
    weights = torch.softmax(torch.where(mask, scores, torch.tensor(s2s.NEG, dtype=scores.dtype)),
                            dim=-1)
    return torch.einsum("bs,bsd->bd", weights, values), weights


@pytest.mark.parametrize("batch, positions, hq, a, d", [(3, 5, 4, 2, 6), (1, 1, 2, 3, 1),
                                                       (2, 7, 3, 3, 2)])
def test_additive_attention_gradient_matches_torch_and_finite_differences(batch, positions, hq,
                                                                           a, d):
    rng = np.random.default_rng(batch * 100 + positions)
    args = [rng.normal(size=s) for s in [(batch, hq), (batch, positions, a), (batch, positions, d),
                                         (a, hq), (a,), (a,)]]
    mask = rng.random((batch, positions)) < 0.7
    mask[:, 0] = True                                   # every row attends somewhere
    r_context, r_weights = rng.normal(size=(batch, d)), rng.normal(size=(batch, positions))
    q, k, vals, w, b, v = args

    def ours(q, k, vals, w, b, v):
        context, weights = s2s.additive_attention(q, k, vals, mask, w, b, v)
        return fnp.sum(context * r_context) + fnp.sum(weights * r_weights)

    def theirs(q, k, vals, w, b, v):
        context, weights = torch_attention(q, k, vals, torch.from_numpy(mask), w, b, v)
        return (context * torch.from_numpy(r_context)).sum() + (weights * torch.from_numpy(r_weights)).sum()

    context, weights = s2s.additive_attention(q, k, vals, mask, w, b, v)
    t_context, t_weights = torch_attention(*map(torch.from_numpy, [q, k, vals]),
                                           torch.from_numpy(mask),
                                           *map(torch.from_numpy, [w, b, v]))
    np.testing.assert_allclose(context, t_context.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights, t_weights.numpy(), rtol=1e-12, atol=1e-12)
    assert np.all(weights[~mask] == 0) and np.allclose(weights.sum(-1), 1, rtol=1e-12)
    argnums = tuple(range(6))
    grads = fgrad.grad(ours, argnums=argnums)(*args)
    t_grads = torch.func.grad(theirs, argnums=argnums)(*map(torch.from_numpy, args))
    for g, t in zip(grads, t_grads):
        np.testing.assert_allclose(g, t.numpy(), rtol=1e-10, atol=1e-12)
    fgrad.testing.check_grads(ours, args, order=1, modes=("fwd", "rev"))


# --------------------------------------------------------------------------------------------
# Tokens and batches
# --------------------------------------------------------------------------------------------

def test_vocabulary_batches_and_crop():
    from examples.datasets import DocPair
    pairs = [DocPair("m", "f", "Compute the sum of the values.", "Return the sum."),
             DocPair("m", "g", "Compute the mean of the values.", "Return the mean value.")] * 3
    vocab = s2s.Vocabulary([p.body for p in pairs] + [p.summary for p in pairs], 300)
    sources, targets = s2s.encode_pairs(vocab, pairs, max_source=4, max_target=3)
    assert sources.shape == (6, 4) and targets.shape == (6, 4)
    assert np.all(sources >= s2s.SPECIALS)                       # cut to 4 tokens: no padding
    assert np.all(targets[np.arange(6), (targets != s2s.PAD).sum(1) - 1] == s2s.EOS)
    full, _ = s2s.encode_pairs(vocab, pairs, max_source=64, max_target=31)
    assert vocab.decode(full[0]) == pairs[0].body
    assert vocab.decode(vocab.encode("Return the sum.") + [s2s.EOS, 7, 8]) == "Return the sum."
    cropped_s, cropped_t = s2s.crop(full, s2s.encode_pairs(vocab, pairs, 64, 31)[1])
    assert cropped_s.shape[1] == 32 and cropped_t.shape[1] == 16
    lengths = np.random.default_rng(0).integers(1, 90, 200)
    batches = s2s.bucketed_batches(fgrad.random.key(0), lengths, 16, chunk=4)
    seen = np.concatenate(batches)
    assert len(set(seen.tolist())) == len(seen) == 16 * len(batches) >= 160
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[b]) for b in np.array_split(np.arange(192), 12)])
    again = s2s.bucketed_batches(fgrad.random.key(0), lengths, 16, chunk=4)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))


@pytest.mark.parametrize("sources, targets, error, message", [
    ([[5, 25, 0]], [[3, 4]], ValueError, "sources holds ids from 0 to 25, outside [0, vocab_size="),
    ([[5, 6, 0]], [[3, 4], [4, 3]], ValueError, "the batch sizes differ (sources 1, targets 2)"),
    ([5, 6], [3, 4], TypeError, "sources must be a (batch, length) array of integer token ids"),
    ([[5.0, 6.0]], [[3, 4]], TypeError, "dtype float64"),
])
def test_bad_token_ids_get_clear_errors(sources, targets, error, message):
    model, params = tiny_model(copy=True)
    with pytest.raises(error, match="^Seq2Seq.apply: ") as caught:
        model.apply(params, np.array(sources), np.array(targets))
    assert message in str(caught.value)
