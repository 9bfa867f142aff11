"""One training step of examples/transformer.py against the same model in torch eager.

The example's default model (vocabulary 2,000, 2 + 2 layers of width 128, 4 heads,
feed-forward 512, post-LN, shared embedding, tied output) on a batch of 32 docstring-shaped
pairs: sources padded to 64 tokens (lengths 24..64), targets to 16 (lengths 6..16); forward,
label-smoothed cross-entropy (0.1, padding ignored), backward and Adam (0.9, 0.98, 1e-9) on
the inverse-sqrt schedule. torch runs ``nn.Embedding`` + ``nn.Transformer`` (``batch_first``,
``norm_first=False``, the paper's stacks without final LayerNorms:
``nn.TransformerEncoder/Decoder(norm=None)``) + the tied projection,
``F.cross_entropy(label_smoothing=0.1, ignore_index=0)`` and ``torch.optim.Adam`` under
``LambdaLR``, from the same weights.

Dropout is 0 in the timed comparison, so that the two compute the same function: the losses
are checked to agree before timing. (With dropout, torch's layers also drop the attention
weights and the feed-forward hidden units, which the example does not: not the same step.)
The fgrad eager step with the example's dropout 0.1 is timed too, to show what its masks cost,
and the model with the example's copy switch (``--copy``, its default; torch has no
counterpart), eager and jitted, to show what the switch costs.

Columns: fgrad eager, ``fgrad.jit`` of the same step (the first call, trace + optimise +
generate, timed once), torch eager, and the ratios to torch. One run, best of a few repeats,
one BLAS thread each: on a shared machine compare the ratios, not the milliseconds.

    python -m benchmarks.bench_transformer [--layers 2] [--threads 1]
"""
import argparse
import dataclasses
import math
import time

import numpy as np

import fgrad
import fnn
import foptim
from benchmarks._timing import best_time, print_table
from examples import transformer as T
from examples.common import blas_threads

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None


def make_batch(rng, batch, src_len, tgt_len, vocab):
    """Right-padded ids: ``(src, tgt_in, tgt_out)`` as the example's batches."""
    def padded(length, shortest):
        lengths = rng.integers(shortest, length + 1, batch)
        lengths[0] = length
        ids = rng.integers(3, vocab, (batch, length))
        return np.where(np.arange(length)[None, :] < lengths[:, None], ids, T.PAD)
    targets = padded(tgt_len, tgt_len * 3 // 8)
    targets[np.arange(batch), (targets != T.PAD).sum(1) - 1] = T.EOS
    return (padded(src_len, src_len * 3 // 8), *T.teacher_forcing(targets))


def fgrad_step(model, args):
    optimizer, _ = T.make_optimizer(args)
    loss_and_grad = fgrad.value_and_grad(
        lambda params, batch, key: T.label_smoothed_loss(
            model.apply(params, batch[0], batch[1], key=key, train=key is not None),
            batch[2], T.PAD, 0.1))

    def step(params, opt_state, batch, key):
        value, grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, value
    return step, optimizer


class TorchModel(torch.nn.Module if torch else object):
    """``sqrt(d) E[ids] + PE`` into ``nn.Transformer`` (paper's stacks), logits ``y E^T``."""

    def __init__(self, vocab, d, heads, layers, ff):
        super().__init__()
        options = dict(d_model=d, nhead=heads, dim_feedforward=ff, dropout=0.0,
                       batch_first=True, norm_first=False)
        encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**options),
                                              layers, norm=None, enable_nested_tensor=False)
        decoder = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**options),
                                              layers, norm=None)
        self.embedding = torch.nn.Embedding(vocab, d)
        self.transformer = torch.nn.Transformer(custom_encoder=encoder, custom_decoder=decoder,
                                                **options)
        self.d = d
        self.register_buffer("pe", torch.from_numpy(np.array(T.sinusoidal_positions(512, d))))

    def forward(self, src, tgt_in):
        src_pad, tgt_pad = src == T.PAD, tgt_in == T.PAD
        x = self.embedding(src) * math.sqrt(self.d) + self.pe[:src.shape[1]]
        y = self.embedding(tgt_in) * math.sqrt(self.d) + self.pe[:tgt_in.shape[1]]
        causal = torch.triu(torch.ones(y.shape[1], y.shape[1], dtype=torch.bool), diagonal=1)
        out = self.transformer(x, y, tgt_mask=causal, tgt_is_causal=True,
                               src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                               memory_key_padding_mask=src_pad)
        return out @ self.embedding.weight.T


def torch_step(params, args, vocab):
    module = TorchModel(vocab, args.d_model, args.heads, args.layers, args.ff)
    module.load_state_dict({k: torch.from_numpy(np.array(v))
                            for k, v in fnn.utils.flatten_names(params).items()}, strict=False)
    optimizer = torch.optim.Adam(module.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    schedule = T.inverse_sqrt_schedule(args.d_model, args.warmup,
                                       args.lr * math.sqrt(args.d_model * args.warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda count: float(schedule(count)))

    def step(src, tgt_in, tgt_out):
        logits = module(src, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt_out.reshape(-1),
                                                 ignore_index=T.PAD, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder layers")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--src-len", type=int, default=64)
    parser.add_argument("--tgt-len", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.warmup, args.lr, args.clip = 400, 1e-3, 0.0
    if torch is None:
        raise SystemExit("bench_transformer: needs torch (pip install torch)")
    torch.set_num_threads(args.threads)
    batch = make_batch(np.random.default_rng(0), args.batch, args.src_len, args.tgt_len,
                       args.vocab)
    rows = []
    with blas_threads(args.threads):
        model = T.Transformer(args.vocab, args.d_model, args.heads, args.layers, args.layers,
                              args.ff, dropout=0.0)
        params = model.init(fgrad.random.key(0))
        step, optimizer = fgrad_step(model, args)
        opt_state = optimizer.init(params)
        torch_train = torch_step(params, args, args.vocab)
        torch_batch = [torch.from_numpy(a) for a in batch]
        ours, theirs = float(step(params, opt_state, batch, None)[2]), torch_train(*torch_batch)
        print(f"loss at the same weights: fgrad {ours:.6f}, torch {theirs:.6f}")
        assert abs(ours - theirs) < 1e-4 * abs(theirs), "the two models disagree"

        eager = best_time(lambda: step(params, opt_state, batch, None), number=2, repeat=3)
        jitted = fgrad.jit(step)
        t0 = time.perf_counter()
        jitted(params, opt_state, batch, None)
        first = time.perf_counter() - t0
        jit = best_time(lambda: jitted(params, opt_state, batch, None), number=2, repeat=3)
        torch_time = best_time(lambda: torch_train(*torch_batch), number=2, repeat=3)
        dropout_model = T.Transformer(args.vocab, args.d_model, args.heads, args.layers,
                                      args.layers, args.ff, dropout=0.1)
        dropout_step, _ = fgrad_step(dropout_model, args)
        key = fgrad.random.key(1)
        with_dropout = best_time(lambda: dropout_step(params, opt_state, batch, key), number=2,
                                 repeat=3)
        # the example's default model: the copy switch on top (no torch counterpart)
        copy_model = dataclasses.replace(model, copy=True)
        copy_params = copy_model.init(fgrad.random.key(0))
        copy_step, copy_optimizer = fgrad_step(copy_model, args)
        copy_state = copy_optimizer.init(copy_params)
        copy_eager = best_time(lambda: copy_step(copy_params, copy_state, batch, None), number=2,
                               repeat=3)
        copy_jitted = fgrad.jit(copy_step)
        copy_jitted(copy_params, copy_state, batch, None)
        copy_jit = best_time(lambda: copy_jitted(copy_params, copy_state, batch, None), number=2,
                             repeat=3)
    shape = (f"{args.layers}+{args.layers} layers, d {args.d_model}, batch {args.batch} x "
             f"{args.src_len} -> {args.tgt_len}, vocab {args.vocab}")
    rows.append([shape, f"{eager * 1e3:.0f}", f"{jit * 1e3:.0f} (first {first:.1f} s)",
                 f"{torch_time * 1e3:.0f}", f"{eager / torch_time:.2f}",
                 f"{jit / torch_time:.2f}"])
    print_table(f"Transformer training step, ms ({args.threads} thread)",
                ["model", "fgrad eager", "fgrad.jit", "torch eager", "eager/torch", "jit/torch"],
                rows)
    print(f"\nfgrad eager with the example's dropout 0.1 (embeddings, sub-layer outputs): "
          f"{with_dropout * 1e3:.0f} ms, {with_dropout / eager:.2f}x the step without")
    print(f"with the copy switch (--copy, the example's default): eager {copy_eager * 1e3:.0f} "
          f"ms, fgrad.jit {copy_jit * 1e3:.0f} ms ({copy_eager / eager:.2f}x and "
          f"{copy_jit / jit:.2f}x the model without)")


if __name__ == "__main__":
    main()
