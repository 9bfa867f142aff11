"""Generation speed of fnn.models.GPT2 with and without the KV cache (and HF/torch for scale).

A small GPT-2 (4 layers, width 128, 4 heads, GPT-2's vocabulary of 50,257 tokens, float32)
decodes greedily. Without a cache every new token runs the whole sequence through the model
again (``model.apply`` on all the tokens so far, as one would without ``apply_cached``); with
the cache a step runs the one new token, attending to the cached keys and values.

Printed:

* tokens/s at context 256: one decoding step when 255 tokens came before, with and without
  the cache, and the end-to-end ``generate`` rate from a 128-token prompt to 256 tokens;
* the time of one step at several positions, and a straight line fitted to the cached times.
  With the cache a step costs a constant (the projections and the 50,257-way head for one
  token) plus a part linear in the position (the attention over, and the copy of, the cached
  keys and values). Without the cache a step is a full forward over all positions, whose
  cost grows with the position itself (and its attention with its square).

    python -m benchmarks.bench_generate [--threads N] [--vocab V]

On a shared machine, pin the threads (``OPENBLAS_NUM_THREADS=1 python -m
benchmarks.bench_generate --threads 1``): contended BLAS threads make the timings noise.

The torch rows (HF's ``GPT2LMHeadModel`` with the same weights, ``use_cache=True`` /
``False``) appear when transformers is installed; they are references, not a race: HF's
no-cache step also computes the logits of every position.
"""
import argparse
import os
import tempfile
import time

import numpy as np

import fgrad
import fnn.models as M
from benchmarks._timing import best_time, print_table

CONTEXT = 256
POSITIONS = (16, 64, 128, 256, 512, 1024)


def cached_steps(model, params, positions, number=5, rounds=7):
    """Seconds for one apply_cached step of 1 token after ``position - 1`` cached tokens, for
    each position: the best of ``rounds`` rounds that visit every position in turn (so that a
    burst of load on a shared machine hits all positions alike)."""
    rng = np.random.default_rng(0)
    token = np.array([[1]])
    caches = []
    for position in positions:
        ids = rng.integers(0, model.config.vocab_size, (1, position - 1))
        caches.append(model.apply_cached(params, ids, model.init_cache(1))[1])
    best = [float("inf")] * len(positions)
    for _ in range(rounds):
        for i, cache in enumerate(caches):
            t0 = time.perf_counter()
            for _ in range(number):
                model.apply_cached(params, token, cache)
            best[i] = min(best[i], (time.perf_counter() - t0) / number)
    return best


def full_step_time(model, params, position, number=2, repeat=3):
    """Seconds for one no-cache step at ``position``: a full forward of ``position`` tokens."""
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, position))
    return best_time(lambda: np.argmax(model.apply(params, ids)[0, -1]), number=number,
                     repeat=repeat)


def generate_rate(model, params, prompt_len, new_tokens):
    """Tokens/s of ``generate`` (greedy, KV cache) from ``prompt_len`` to ``prompt_len + new``."""
    prompt = np.random.default_rng(1).integers(0, model.config.vocab_size, prompt_len).tolist()
    M.generate(model, params, prompt[:8], 4, temperature=0, eos_token_id=())      # warm up
    t0 = time.perf_counter()
    M.generate(model, params, prompt, new_tokens, temperature=0, eos_token_id=())
    return new_tokens / (time.perf_counter() - t0)


def uncached_generate_rate(model, params, prompt_len, new_tokens):
    """The same without a cache: each new token re-runs the whole sequence."""
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (1, prompt_len))
    t0 = time.perf_counter()
    for _ in range(new_tokens):
        token = np.argmax(model.apply(params, ids)[0, -1])
        ids = np.concatenate([ids, [[token]]], axis=1)
    return new_tokens / (time.perf_counter() - t0)


def torch_reference(model, params, threads):
    """HF torch step times at CONTEXT with and without its cache, or None without transformers."""
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
    except ImportError:
        return None
    transformers.logging.set_verbosity_error()
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory, params)
        hf = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, CONTEXT))
    with torch.no_grad():
        past = hf(ids[:, :-1], use_cache=True).past_key_values
        cached = best_time(lambda: hf(ids[:, -1:], past_key_values=_copy_cache(past), use_cache=True),
                           number=5, repeat=5)
        full = best_time(lambda: hf(ids, use_cache=False), number=2, repeat=3)
    return cached, full, torch.__version__, torch.get_num_threads()


def _copy_cache(past):
    import copy
    return copy.deepcopy(past)     # HF's DynamicCache grows in place; time a step from the same one


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the reference rows (NumPy's BLAS threads "
                             "follow OPENBLAS_NUM_THREADS)")
    parser.add_argument("--vocab", type=int, default=50257, help="vocabulary size")
    args = parser.parse_args(argv)
    config = M.GPT2Config(vocab_size=args.vocab, n_positions=max(POSITIONS), n_embd=128,
                          n_layer=4, n_head=4)
    model = M.GPT2(config)
    params = model.init(fgrad.random.key(0))

    cached = cached_steps(model, params, [CONTEXT])[0]
    full = full_step_time(model, params, CONTEXT)
    rows = [("fnn, KV cache", f"{1e3 * cached:.2f}", f"{1 / cached:.0f}"),
            ("fnn, no cache (full forward)", f"{1e3 * full:.2f}", f"{1 / full:.1f}")]
    reference = torch_reference(model, params, args.threads)
    if reference is not None:
        t_cached, t_full, version, threads = reference
        rows += [(f"HF torch {version} ({threads} threads), cache", f"{1e3 * t_cached:.2f}",
                  f"{1 / t_cached:.0f}"),
                 (f"HF torch {version}, no cache", f"{1e3 * t_full:.2f}", f"{1 / t_full:.1f}")]
    print_table(f"one greedy step at context {CONTEXT}: GPT-2 4 layers x 128, vocab "
                f"{args.vocab}, float32, batch 1", ("", "ms / token", "tokens / s"), rows)

    half = CONTEXT // 2
    print_table(f"generate: prompt {half} -> {CONTEXT} tokens ({half} new), greedy",
                ("", "tokens / s"),
                [("fnn generate (KV cache)", f"{generate_rate(model, params, half, half):.0f}"),
                 ("fnn, no cache", f"{uncached_generate_rate(model, params, half, 16):.1f}")])

    cached_times = cached_steps(model, params, POSITIONS, number=10)
    rows = [(position, f"{1e3 * t:.2f}",
             f"{1e3 * full_step_time(model, params, position):.1f}" if position <= 512 else "-")
            for position, t in zip(POSITIONS, cached_times)]
    slope, intercept = np.polyfit(POSITIONS, 1e3 * np.array(cached_times), 1)
    residual = np.abs(np.polyval((slope, intercept), POSITIONS) - 1e3 * np.array(cached_times)).max()
    print_table("time of one step by position", ("position", "cached ms", "no-cache ms"), rows)
    print(f"cached step ~ {intercept:.2f} ms + {100 * slope:.3f} ms per 100 positions "
          f"(least squares over positions {POSITIONS[0]}..{POSITIONS[-1]}; largest residual "
          f"{residual:.2f} ms): linear in the position")

if __name__ == "__main__":
    main()
