"""Autoregressive generation with a KV cache: greedy decoding and sampling, as HF's ``generate``.

:func:`generate` runs the prompt once through ``model.apply_cached`` (filling a fresh
:class:`~fnn.models.KVCache`), then one new token per step, each step attending to the cached
keys and values instead of recomputing the whole sequence. It follows HF's ``generate`` choice
for choice:

* prompts of different lengths are left-padded, with the attention mask hiding the padding and
  position ids counting only real tokens (``cumsum(mask) - 1``), so every row continues exactly
  as it would alone;
* ``temperature=0`` is greedy decoding (HF's ``do_sample=False``); otherwise the logits are
  divided by ``temperature``, filtered by ``top_k`` then ``top_p`` (HF's warpers, in that
  order, with their tie and boundary rules) and sampled;
* a row that produces ``eos_token_id`` is finished: later tokens of that row are the padding
  token (``pad_token_id``, or the eos id when the config has none), and generation stops when
  every row is finished.

Randomness comes only from ``key``: the token of step ``i`` is drawn with
``fgrad.random.fold_in(key, i)``, so the same key gives the same text.

>>> import numpy as np, fgrad, fnn.models
>>> model = fnn.models.GPT2(fnn.models.GPT2Config(vocab_size=50, n_positions=32, n_embd=8,
...                                                 n_layer=1, n_head=2))
>>> params = model.init(fgrad.random.key(0))
>>> fnn.models.generate(model, params, [[1, 2, 3], [4]], 5, key=None, temperature=0)[1][:1]
[4]
"""
from __future__ import annotations

import numbers

import numpy as np

from fgrad import random

__all__ = ["generate", "filter_logits"]


def _as_rows(prompt_ids, attention_mask, name):
    """``(ids (B, T), mask (B, T) bool, kind)``; kind is "1d", "2d" or "ragged"."""
    if isinstance(prompt_ids, np.ndarray) or not isinstance(prompt_ids, (list, tuple)):
        ids = np.asarray(prompt_ids)
        if ids.ndim not in (1, 2):
            raise ValueError(f"{name}: prompt_ids must be a list of ids, a list of such lists, or a "
                             f"(B, T) array, got shape {ids.shape}")
        kind = "1d" if ids.ndim == 1 else "2d"
        ids = ids.reshape(1, -1) if kind == "1d" else ids
        mask = (np.ones(ids.shape, bool) if attention_mask is None
                else np.asarray(attention_mask).reshape(ids.shape) != 0)
    else:
        if all(isinstance(t, numbers.Integral) for t in prompt_ids):
            return _as_rows(np.asarray(prompt_ids, dtype=np.int64), attention_mask, name)
        rows = [np.asarray(r) for r in prompt_ids]
        if any(r.ndim != 1 for r in rows):
            raise ValueError(f"{name}: prompt_ids must be a list of ids, a list of such lists, or a "
                             f"(B, T) array")
        lengths = [len(r) for r in rows]
        if attention_mask is not None:
            raise ValueError(f"{name}: attention_mask goes with a (B, T) array of padded prompts; "
                             f"a list of prompts is padded here")
        if len(set(lengths)) == 1:
            return _as_rows(np.stack(rows), None, name)
        width = max(lengths)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), bool)
        for i, r in enumerate(rows):
            if len(r):
                ids[i, width - len(r):] = r
            mask[i, width - len(r):] = True
        kind = "ragged"
    if ids.size and ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: token ids must be integers, got dtype {ids.dtype}")
    if ids.shape[1] == 0:
        raise ValueError(f"{name}: the prompt is empty; give at least one token (e.g. the bos id)")
    if not mask.any(axis=1).all():
        raise ValueError(f"{name}: every prompt needs at least one token")
    return ids.astype(np.int64, copy=False), mask, kind


def filter_logits(logits, top_k=None, top_p=None):
    """``logits`` ``(B, V)`` with the tokens outside ``top_k`` / ``top_p`` set to ``-inf``.

    HF's warpers: ``top_k`` keeps every token whose logit is at least the ``k``-th largest (ties
    at the boundary are kept); ``top_p`` sorts ascending, and drops the tokens whose cumulative
    probability is at most ``1 - top_p`` (so it keeps the smallest set of most likely tokens
    reaching ``top_p``, the token crossing the threshold included), never the most likely one.
    """
    logits = np.array(logits, copy=True)
    vocab = logits.shape[-1]
    if top_k is not None and top_k < vocab:
        kth = np.partition(logits, vocab - top_k, axis=-1)[..., vocab - top_k, None]
        logits[logits < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(logits, axis=-1, kind="stable")               # ascending
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        shifted = np.exp(sorted_logits - sorted_logits[..., -1:])
        cumulative = np.cumsum(shifted / shifted.sum(axis=-1, keepdims=True), axis=-1)
        remove = cumulative <= 1.0 - top_p
        remove[..., -1] = False                                          # keep at least one
        drop = np.zeros_like(remove)
        np.put_along_axis(drop, order, remove, axis=-1)
        logits[drop] = -np.inf
    return logits


def _eos_ids(model, eos_token_id):
    if eos_token_id is None:
        eos_token_id = model.config.eos_token_id
    if eos_token_id is None:
        return ()
    if isinstance(eos_token_id, numbers.Integral):
        return (int(eos_token_id),)
    return tuple(int(e) for e in eos_token_id)


def generate(model, params, prompt_ids, max_new_tokens, *, key=None, temperature=1.0, top_k=None,
             top_p=None, eos_token_id=None, attention_mask=None):
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens with ``model`` (GPT1 or GPT2).

    ``prompt_ids``: one prompt (a list or 1-D array of ids), a ``(B, T)`` array (with an
    optional ``attention_mask`` ``(B, T)`` marking left padding with 0), or a list of prompts
    of any lengths (left-padded here).

    Returns, like what came in: a 1-D array ``prompt + new`` for one prompt; a ``(B, T +
    new)`` int64 array for an array (or a list of equal-length prompts), padding kept; a list of
    lists ``prompt_i + new_i`` for prompts of different lengths (the padding removed; every
    ``new_i`` has the same length). ``new`` is ``max_new_tokens`` unless every row finished
    earlier (then shorter, as HF).

    ``temperature=0``: greedy (argmax, HF's ``do_sample=False``). Otherwise tokens are sampled
    from ``softmax(filter(logits / temperature))`` with ``top_k`` / ``top_p`` (see
    :func:`filter_logits`) using ``key`` (required); ``top_k=None`` filters nothing (HF's
    ``generate`` samples with ``top_k=50`` unless told otherwise). ``eos_token_id`` (an id or a list of
    ids; None: the config's, as HF) finishes a row; its later tokens are the pad id
    (``config.pad_token_id`` or the first eos id). Pass ``eos_token_id=()`` to never stop.
    """
    name = "fnn.models.generate"
    if not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"{name}: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if temperature is None or temperature < 0:
        raise ValueError(f"{name}: temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"{name}: top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"{name}: top_p must be in (0, 1] or None, got {top_p!r}")
    sample = temperature > 0
    if sample and key is None:
        raise ValueError(f"{name}: sampling (temperature > 0) needs key=<a fgrad.random key>; "
                         f"temperature=0 decodes greedily without one")
    ids, mask, kind = _as_rows(prompt_ids, attention_mask, name)
    batch, prompt_len = ids.shape
    cfg = model.config
    if prompt_len + max_new_tokens > cfg.n_positions:
        raise ValueError(f"{name}: the prompt ({prompt_len} tokens, padding included) plus "
                         f"max_new_tokens={max_new_tokens} exceed n_positions={cfg.n_positions}")
    eos = _eos_ids(model, eos_token_id)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else 0)
    ids = np.where(mask, ids, pad if 0 <= pad < cfg.vocab_size else 0)

    tokens = [ids]
    if max_new_tokens:
        dtype = np.asarray(params["transformer"][model.token_embedding]["weight"]).dtype
        cache = model.init_cache(batch, dtype)
        logits, cache = model.apply_cached(params, ids, cache, attention_mask=mask)
        finished = np.zeros(batch, bool)
        for step in range(max_new_tokens):
            scores = np.asarray(logits)[:, -1]
            if sample:
                scores = filter_logits(scores / temperature, top_k, top_p)
                token = np.asarray(random.categorical(random.fold_in(key, step), scores))
            else:
                token = np.argmax(scores, axis=-1)
            token = np.where(finished, pad, token).astype(np.int64)
            tokens.append(token[:, None])
            if eos:
                finished |= np.isin(token, eos)
                if finished.all():
                    break
            if step + 1 < max_new_tokens:
                logits, cache = model.apply_cached(params, token[:, None], cache)
    out = np.concatenate(tokens, axis=1)
    if kind == "1d":
        return out[0]
    if kind == "ragged":
        return [row[width:].tolist() for row, width in zip(out, (~mask).sum(axis=1))]
    return out
