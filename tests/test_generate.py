"""fnn.models.generate and the KV cache, against Hugging Face's ``generate``.

Greedy decoding must give HF's tokens one for one (one prompt, and prompts of different
lengths that HF gets left-padded with an attention mask); the cached logits must equal a full
forward pass at every step; eos finishes a row as in HF; sampling is a function of the key,
and its top-k / top-p filters are HF's warpers.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import fgrad
import fnn.models as M
from fgrad import tree
from fnn.models import filter_logits

transformers.logging.set_verbosity_error()

VOCAB, N_POS = 40, 48
PROMPTS = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 14]]

KINDS = {
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel, M.GPT2),
    "gpt1": (transformers.OpenAIGPTConfig, transformers.OpenAIGPTLMHeadModel, M.GPT1),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``kind -> (hf_model, our_model, params)``: seeded tiny float64 models, loaded from the
    directory HF's save_pretrained wrote."""
    cache = {}

    def get(kind):
        if kind not in cache:
            config_cls, model_cls, cls = KINDS[kind]
            torch.manual_seed(1)
            hf = model_cls(config_cls(vocab_size=VOCAB, n_positions=N_POS, n_embd=16, n_layer=2,
                                      n_head=2, initializer_range=0.4)).eval().double()
            directory = tmp_path_factory.mktemp(kind)
            hf.save_pretrained(directory)
            model, params = cls.from_pretrained(directory, dtype=np.float64)
            cache[kind] = (hf, model, params)
        return cache[kind]
    return get


def left_pad(prompts, pad=0):
    width = max(map(len, prompts))
    ids = np.full((len(prompts), width), pad, np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    return ids, mask


def hf_greedy(hf, prompts, max_new_tokens, **kwargs):
    """HF's greedy continuation of each prompt (left padding stripped), as lists."""
    ids, mask = left_pad(prompts)
    kwargs.setdefault("pad_token_id", 0)
    with torch.no_grad():
        out = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask),
                          max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
    width = ids.shape[1]
    return [row[width - len(p):] for row, p in zip(out.tolist(), prompts)]


@pytest.mark.parametrize("kind", list(KINDS))
def test_greedy_matches_hf(models, kind):
    hf, model, params = models(kind)
    ours = M.generate(model, params, PROMPTS, 20, temperature=0)
    assert ours == hf_greedy(hf, PROMPTS, 20)
    assert len({t for row in ours for t in row[-20:]}) > 3        # not a trivial repetition
    single = M.generate(model, params, PROMPTS[0], 20, temperature=0)
    assert isinstance(single, np.ndarray) and single.shape == (26,)
    assert single.tolist() == hf_greedy(hf, PROMPTS[:1], 20)[0]


@pytest.mark.parametrize("kind", list(KINDS))
def test_cached_logits_equal_full_forward(models, kind):
    _, model, params = models(kind)
    ids, mask = left_pad(PROMPTS)
    cache = model.init_cache(3, np.float64)
    logits, cache = model.apply_cached(params, ids, cache, attention_mask=mask)
    real = mask.astype(bool)
    full = model.apply(params, ids, mask, position_ids=np.where(real, np.cumsum(mask, 1) - 1, 0))
    np.testing.assert_allclose(logits[real], full[real], rtol=0, atol=1e-12)
    seq, seq_mask = ids, mask
    for _ in range(8):
        token = np.argmax(logits[:, -1], axis=-1)[:, None]
        before = tree.map(np.copy, cache)
        logits, new_cache = model.apply_cached(params, token, cache)
        for a, b in zip(tree.leaves(cache), tree.leaves(before)):     # nothing mutated
            np.testing.assert_array_equal(a, b)
        cache = new_cache
        seq = np.concatenate([seq, token], axis=1)
        seq_mask = np.concatenate([seq_mask, np.ones_like(token)], axis=1)
        positions = np.where(seq_mask == 1, np.cumsum(seq_mask, 1) - 1, 0)
        full = model.apply(params, seq, seq_mask, position_ids=positions)
        np.testing.assert_allclose(logits[:, -1], full[:, -1], rtol=0, atol=1e-12)
    assert cache.length == seq.shape[1]
    assert cache.keys[0].shape == (3, 2, seq.shape[1], 8)
    np.testing.assert_array_equal(cache.next_position, real.sum(1) + 8)


@pytest.mark.parametrize("kind", list(KINDS))
def test_eos_finishes_a_row_as_hf(models, kind):
    hf, model, params = models(kind)
    free = M.generate(model, params, PROMPTS, 12, temperature=0, eos_token_id=())
    eos = free[0][len(PROMPTS[0]) + 3]        # the 4th new token of the first row
    ours = M.generate(model, params, PROMPTS, 12, temperature=0, eos_token_id=eos)
    assert ours == hf_greedy(hf, PROMPTS, 12, eos_token_id=eos, pad_token_id=eos)
    first = ours[0][len(PROMPTS[0]):]
    stop = first.index(eos)
    assert stop <= 3 and all(t == eos for t in first[stop:])
    # one prompt: generation stops at eos, so the output is shorter
    alone = M.generate(model, params, PROMPTS[0], 12, temperature=0, eos_token_id=eos)
    assert alone[-1] == eos and len(alone) == len(PROMPTS[0]) + stop + 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_sampling_is_a_function_of_the_key(models, kind):
    _, model, params = models(kind)
    key = fgrad.random.key(0)
    a = M.generate(model, params, PROMPTS, 15, key=key, temperature=1.5)
    assert a == M.generate(model, params, PROMPTS, 15, key=key, temperature=1.5)
    assert a != M.generate(model, params, PROMPTS, 15, key=fgrad.random.key(1), temperature=1.5)
    greedy = M.generate(model, params, PROMPTS, 15, temperature=0)
    assert greedy == M.generate(model, params, PROMPTS, 15, key=key, top_k=1)
    assert greedy == M.generate(model, params, PROMPTS, 15, key=key, temperature=2.0, top_p=1e-6)
    assert a != greedy


def test_sampled_frequencies_follow_the_filtered_distribution(models):
    _, model, params = models("gpt2")
    n = 4000
    prompt = np.tile(np.array([[3, 4, 5]]), (n, 1))
    temperature, top_k = 0.7, 6
    drawn = M.generate(model, params, prompt, 1, key=fgrad.random.key(2), temperature=temperature,
                       top_k=top_k, eos_token_id=())[:, -1]
    logits = model.apply(params, prompt[:1])[0, -1] / temperature
    kept = np.argsort(logits)[-top_k:]
    p = np.exp(logits[kept] - logits[kept].max())
    p /= p.sum()
    assert set(drawn) <= set(kept)
    freq = np.array([(drawn == k).mean() for k in kept])
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_filter_logits_by_hand_and_against_hf_warpers():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda **kw: np.flatnonzero(np.isfinite(filter_logits(logits, **kw)[0])).tolist()
    assert kept(top_p=0.4) == [0]              # 0.5 alone reaches 0.4
    assert kept(top_p=0.75) == [0, 1]          # 0.5 + 0.3 = 0.8 >= 0.75
    assert kept(top_p=0.9) == [0, 1, 2]
    assert kept(top_p=1.0) == [0, 1, 2, 3]
    assert kept(top_k=2) == [0, 1]
    assert kept(top_k=2, top_p=0.4) == [0]
    ties = np.array([[1.0, 2.0, 2.0, 0.0]])
    assert np.isfinite(filter_logits(ties, top_k=1)).sum() == 2       # ties at the k-th are kept
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.standard_normal((3, 30)) * 2
        top_k, top_p = int(rng.integers(1, 30)), float(rng.uniform(0.05, 1.0))
        expected = TopPLogitsWarper(top_p)(None, TopKLogitsWarper(top_k)(None, torch.tensor(scores)))
        np.testing.assert_array_equal(np.isfinite(filter_logits(scores, top_k, top_p)),
                                      np.isfinite(expected.numpy()))


def test_output_forms_and_errors(models):
    _, model, params = models("gpt2")
    ids, mask = left_pad(PROMPTS)
    as_array = M.generate(model, params, ids, 5, temperature=0, attention_mask=mask)
    assert isinstance(as_array, np.ndarray) and as_array.shape == (3, ids.shape[1] + 5)
    ragged = M.generate(model, params, PROMPTS, 5, temperature=0)
    for row, padded, p in zip(ragged, as_array, PROMPTS):
        assert row == padded[ids.shape[1] - len(p):].tolist()
    same_length = M.generate(model, params, [[1, 2], [3, 4]], 3, temperature=0)
    assert isinstance(same_length, np.ndarray) and same_length.shape == (2, 5)
    np.testing.assert_array_equal(M.generate(model, params, [1, 2, 3], 0, temperature=0), [1, 2, 3])
    with pytest.raises(ValueError, match="exceed n_positions=48"):
        M.generate(model, params, [1, 2, 3], 46, temperature=0)
    with pytest.raises(ValueError, match="needs key"):
        M.generate(model, params, [1, 2, 3], 2)
    with pytest.raises(ValueError, match="top_p"):
        M.generate(model, params, [1, 2, 3], 2, key=fgrad.random.key(0), top_p=0.0)
    with pytest.raises(IndexError, match="token ids"):
        M.generate(model, params, [1, 2, VOCAB], 2, temperature=0)
    with pytest.raises(ValueError, match="exceed n_positions"):
        cache = model.init_cache(1)
        _, cache = model.apply_cached(params, np.zeros((1, 40), np.int64), cache)
        model.apply_cached(params, np.zeros((1, 9), np.int64), cache)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_greedy_matches_hf_on_a_larger_model(tmp_path, kind):
    config_cls, model_cls, cls = KINDS[kind]
    torch.manual_seed(2)
    hf = model_cls(config_cls(vocab_size=500, n_positions=160, n_embd=64, n_layer=4, n_head=4,
                              initializer_range=0.1)).eval().double()
    hf.save_pretrained(tmp_path)
    model, params = cls.from_pretrained(tmp_path, dtype=np.float64)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 500, n).tolist() for n in (30, 7, 18, 1)]
    assert M.generate(model, params, prompts, 100, temperature=0) == hf_greedy(hf, prompts, 100)
