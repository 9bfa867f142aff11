"""One training step of ``examples.seq2seq`` against the same model in torch eager.

The model is the example's default (vocabulary 2,000, embedding 128, a bidirectional GRU of 96
units per direction, a GRU decoder of 192 units, additive attention of size 64, the output
tied to the embedding, the copy switch; dropout off so that the two agree), a batch of 32
pairs with sources of 48 tokens (the example's longest; lengths 16..48) and targets of 16
(lengths 4..16); one step is the forward pass, the backward pass, global-norm clipping and
Adam. torch runs the encoder as ``nn.GRU`` on a
``pack_padded_sequence`` (its idiomatic variable-length path) and the decoder as a Python
loop of ``nn.GRUCell`` steps with the same attention, from the same parameters; the losses
are checked to agree before timing.

fgrad's step is timed four ways: eagerly with the example's ``lax.scan`` loops, eagerly with
the scans replaced by plain Python loops (what an RNN written without ``lax`` costs: the
"before"), ``fgrad.jit`` of the step with the scans (the example's default; first call =
trace, optimise, generate, timed once), and ``jit`` of the Python-loop version (unrolled).
One run, best of a few repeats, BLAS and torch on one thread; on a shared machine compare the
ratios, not the milliseconds. CPU time (``time.process_time``) is printed beside wall time.

    python -m benchmarks.bench_seq2seq [--threads 1] [--batch 32] [--source 48] [--target 16]
"""
import argparse
import time
import types

import numpy as np

import fgrad
import fgrad.numpy as fnp
import foptim
from benchmarks._timing import print_table
from examples import seq2seq as s2s
from examples.common import blas_threads

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None


def python_scan(f, init, xs, length=None, reverse=False, unroll=1):
    """``lax.scan``'s semantics as a Python loop (each step's ops traced one by one)."""
    leaves, treedef = fgrad.tree.flatten(xs)
    steps = leaves[0].shape[0]
    carry, ys = init, [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        carry, ys[t] = f(carry, fgrad.tree.unflatten(treedef, [x[t] for x in leaves]))
    y_leaves, y_tree = fgrad.tree.flatten(ys[0])
    stacked = [fnp.stack([fgrad.tree.flatten(y)[0][i] for y in ys]) for i in range(len(y_leaves))]
    return carry, fgrad.tree.unflatten(y_tree, stacked)


def best_times(fn, number=2, repeat=3):
    """(wall, cpu) seconds per call: the best of ``repeat`` runs of ``number`` calls."""
    fn()
    wall = cpu = float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        for _ in range(number):
            fn()
        wall = min(wall, (time.perf_counter() - w) / number)
        cpu = min(cpu, (time.process_time() - c) / number)
    return wall, cpu


def make_batch(rng, batch, source, target, vocab):
    source_lengths = rng.integers(16, source + 1, batch)
    source_lengths[0] = source
    target_lengths = rng.integers(4, target + 1, batch)
    target_lengths[0] = target
    sources = np.where(np.arange(source)[None, :] < source_lengths[:, None],
                       rng.integers(s2s.SPECIALS, vocab, (batch, source)), s2s.PAD)
    targets = np.where(np.arange(target)[None, :] < target_lengths[:, None],
                       rng.integers(s2s.SPECIALS, vocab, (batch, target)), s2s.PAD)
    return sources, targets


def fgrad_step(model, optimizer):
    loss_and_grad = fgrad.value_and_grad(s2s.make_loss(model), has_aux=True)

    def update(params, opt_state, batch, key):
        (value, _), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, value
    return update


class TorchSeq2Seq(torch.nn.Module if torch is not None else object):
    """The example's model in torch: the same equations, torch's layers where they exist."""

    def __init__(self, vocab, embed, hidden, decoder_hidden, attention, copy):
        super().__init__()
        self.copy = copy
        self.embedding = torch.nn.Embedding(vocab, embed, padding_idx=s2s.PAD)
        self.encoder = torch.nn.GRU(embed, hidden, bidirectional=True, batch_first=True)
        self.init = torch.nn.Linear(2 * hidden, decoder_hidden)
        self.keys = torch.nn.Linear(2 * hidden, attention, bias=False)
        self.query = torch.nn.Linear(decoder_hidden, attention)
        self.score = torch.nn.Linear(attention, 1, bias=False)
        self.decoder = torch.nn.GRUCell(embed + 2 * hidden, decoder_hidden)
        self.out = torch.nn.Linear(decoder_hidden + 2 * hidden + embed, embed)
        if copy:
            self.switch = torch.nn.Linear(decoder_hidden + 2 * hidden + embed, 1)
        self.out_bias = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, sources, lengths, targets):
        mask = sources != s2s.PAD
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.embedding(sources), lengths,
                                                         batch_first=True, enforce_sorted=False)
        states, h_n = self.encoder(packed)
        states, _ = torch.nn.utils.rnn.pad_packed_sequence(states, batch_first=True,
                                                           total_length=sources.shape[1])
        state = torch.tanh(self.init(torch.cat([h_n[0], h_n[1]], dim=-1)))
        keys = self.keys(states)
        previous = torch.cat([torch.full_like(targets[:, :1], s2s.BOS), targets[:, :-1]], dim=1)
        y = self.embedding(previous)
        outputs, gates, attention = [], [], []
        for t in range(targets.shape[1]):
            scores = self.score(torch.tanh(keys + self.query(state)[:, None, :]))[..., 0]
            weights = torch.softmax(scores.masked_fill(~mask, s2s.NEG), dim=-1)
            context = torch.einsum("bs,bsd->bd", weights, states)
            state = self.decoder(torch.cat([y[:, t], context], dim=-1), state)
            features = torch.cat([state, context, y[:, t]], dim=-1)
            outputs.append(torch.tanh(self.out(features)))
            if self.copy:
                gates.append(self.switch(features)[:, 0])
                attention.append(weights)
        logits = torch.stack(outputs, dim=1) @ self.embedding.weight.T + self.out_bias
        log_p = torch.log_softmax(logits, dim=-1)
        if self.copy:                       # the pointer-generator mixture, as mix_copy
            gate, weights = torch.stack(gates, dim=1), torch.stack(attention, dim=1)
            ids = sources[:, None, :].expand(-1, targets.shape[1], -1)
            p_copy = torch.zeros_like(log_p).scatter_add_(2, ids, weights)
            some = p_copy > 0
            log_copy = torch.where(some, torch.nn.functional.logsigmoid(-gate)[..., None]
                                   + torch.log(torch.where(some, p_copy, 1.0)), -torch.inf)
            log_p = torch.logaddexp(torch.nn.functional.logsigmoid(gate)[..., None] + log_p,
                                    log_copy)
        return torch.nn.functional.nll_loss(log_p.reshape(-1, log_p.shape[-1]),
                                            targets.reshape(-1), ignore_index=s2s.PAD)

    def load(self, params):
        """Copy the example's parameters (fnn's names follow torch's)."""
        with torch.no_grad():
            for name in params:
                if name == "out_bias":
                    continue
                module = getattr(self, name)
                for key, value in params[name].items():
                    getattr(module, key).copy_(torch.from_numpy(np.asarray(value)))
            self.out_bias.copy_(torch.from_numpy(np.asarray(params["out_bias"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--source", type=int, default=48, help="padded source length")
    ap.add_argument("--target", type=int, default=16, help="padded target length")
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (0: leave)")
    args = ap.parse_args(argv)
    if args.threads and torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sources, targets = make_batch(rng, args.batch, args.source, args.target, args.vocab)
    model = s2s.Seq2Seq(args.vocab, dropout=0.0)
    params = model.init(fgrad.random.key(0))
    optimizer = foptim.chain(foptim.clip_by_global_norm(1.0), foptim.adam(1e-3))
    opt_state = optimizer.init(params)
    step = fgrad_step(model, optimizer)
    batch = (sources, targets)
    rows, loop = [], types.SimpleNamespace(scan=python_scan)
    with blas_threads(args.threads):
        value = float(step(params, opt_state, batch, None)[2])
        variants = {}
        for name, use_loop in (("eager, lax.scan", False), ("eager, Python loops", True)):
            s2s.lax = loop if use_loop else fgrad.lax
            try:
                variants[name] = best_times(lambda: step(params, opt_state, batch, None))
                jitted = fgrad.jit(fgrad_step(model, optimizer))
                t0 = time.perf_counter()
                jit_value = float(jitted(params, opt_state, batch, None)[2])
                first = time.perf_counter() - t0
                assert abs(jit_value - value) < 1e-4 * abs(value), (jit_value, value)
                jit_name = f"jit, {'Python loops (unrolled)' if use_loop else 'lax.scan'}"
                variants[jit_name] = best_times(lambda: jitted(params, opt_state, batch, None))
                variants[jit_name + f" [first call {first:.1f} s]"] = variants.pop(jit_name)
            finally:
                s2s.lax = fgrad.lax
        reference = None
        if torch is not None:
            layers = model.layers
            net = TorchSeq2Seq(args.vocab, layers["embedding"].embedding_dim,
                               layers["encoder"].hidden_size, layers["decoder"].hidden_size,
                               layers["query"].out_features, model.copy)
            net.load(params)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            t_sources, t_targets = torch.from_numpy(sources), torch.from_numpy(targets)
            t_lengths = torch.from_numpy((sources != s2s.PAD).sum(axis=1))
            with torch.no_grad():
                torch_value = float(net(t_sources, t_lengths, t_targets))
            assert abs(torch_value - value) < 1e-4 * abs(value), (torch_value, value)

            def torch_step():
                opt.zero_grad()
                loss = net(t_sources, t_lengths, t_targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                return loss

            reference = best_times(torch_step)
            variants["torch eager (nn.GRU packed, GRUCell loop)"] = reference
    for name, (wall, cpu) in variants.items():
        ratio = f"{cpu / reference[1]:.2f}" if reference else "torch not installed"
        rows.append((name, f"{wall * 1e3:.0f}", f"{cpu * 1e3:.0f}", ratio))
    print_table(f"seq2seq training step: batch {args.batch}, source {args.source}, target "
                f"{args.target}, vocabulary {args.vocab}, float32, loss {value:.4f}",
                ["variant", "wall ms", "CPU ms", "CPU / torch"], rows)


if __name__ == "__main__":
    main()
