"""One training step of the recurrent examples against the same model in torch eager.

* ``lstm_sentiment``: the default BiLSTM (vocabulary 8,888, embedding 128, 128 units per
  direction, max pooling, dropout off so that the two agree), a batch of 32 sentences padded to
  32 steps with lengths 8..32; forward, backward, global-norm clipping and Adam. torch runs
  ``nn.LSTM`` on a ``pack_padded_sequence`` (its idiomatic variable-length path) and the same
  masked max pooling.
* ``ntm_copy``: the default NTM (controller 100, memory 128 x 20), a batch of 16 copy sequences
  of length 10 (21 time steps); forward, backward, clipping and Adam. torch runs the same
  equations, written the same way.

Both models start from the same parameters, and the losses are checked to agree before
timing. Columns: fgrad eager, ``fgrad.jit`` of the same step (first call = trace + optimise +
generate, timed once), torch eager, and the ratios to torch. One run, best of a few repeats:
on a shared machine compare the ratios, not the milliseconds.

    python -m benchmarks.bench_recurrent [--threads 1]
"""
import argparse
import time

import numpy as np

import fgrad
import foptim
from benchmarks._timing import best_time, print_table
from examples import lstm_sentiment, ntm_copy
from examples.common import blas_threads

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None


def _adam_step(loss, params, optimizer):
    loss_and_grad = fgrad.value_and_grad(loss, has_aux=True)

    def step(params, opt_state, batch, key):
        (value, _), grads = loss_and_grad(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, value
    return step


def _time_fgrad(step, params, opt_state, batch):
    eager = best_time(lambda: step(params, opt_state, batch, None), number=2, repeat=3)
    jitted = fgrad.jit(step)
    t0 = time.perf_counter()
    _, _, value = jitted(params, opt_state, batch, None)
    first = time.perf_counter() - t0
    jit = best_time(lambda: jitted(params, opt_state, batch, None), number=3, repeat=3)
    return float(step(params, opt_state, batch, None)[2]), float(value), eager, jit, first


# --------------------------------------------------------------------------------------------
# LSTM sentiment
# --------------------------------------------------------------------------------------------

def bench_lstm(batch=32, steps=32, vocab=8888, embed=128, hidden=128):
    rng = np.random.default_rng(0)
    lengths = np.sort(rng.integers(8, steps + 1, batch))[::-1].copy()
    lengths[0] = steps
    ids = rng.integers(2, vocab, (batch, steps))
    mask = np.arange(steps)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, 0)
    y = rng.integers(0, 2, batch)
    model = lstm_sentiment.SentimentLSTM(vocab, embed, hidden, True, "max", dropout=0.0)
    params = model.init(fgrad.random.key(0))
    optimizer = foptim.chain(foptim.clip_by_global_norm(5.0), foptim.adam(1e-3))
    step = _adam_step(lstm_sentiment.make_loss(model), params, optimizer)
    value, jit_value, eager, jit, first = _time_fgrad(step, params, optimizer.init(params),
                                                     (ids, mask, y))
    assert abs(value - jit_value) < 1e-5, (value, jit_value)
    row = ["lstm_sentiment step", f"B={batch} T={steps}", f"{eager * 1e3:.1f}",
           f"{jit * 1e3:.1f} (first {first:.1f} s)"]
    if torch is None:
        return row + ["torch not installed", "", ""]

    class TorchModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, embed, padding_idx=0)
            self.lstm = torch.nn.LSTM(embed, hidden, bidirectional=True, batch_first=True)
            self.out = torch.nn.Linear(2 * hidden, 1)

        def forward(self, ids, lengths, mask):
            packed = torch.nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths,
                                                             batch_first=True)
            h, _ = self.lstm(packed)
            h, _ = torch.nn.utils.rnn.pad_packed_sequence(h, batch_first=True,
                                                          total_length=ids.shape[1])
            z = torch.where(mask[:, :, None], h, torch.tensor(-2.0)).amax(dim=1)
            return self.out(z)[:, 0]

    net = TorchModel()
    with torch.no_grad():
        net.embedding.weight.copy_(torch.from_numpy(np.asarray(params["embedding"]["weight"])))
        for name, weight in params["lstm"].items():
            getattr(net.lstm, name).copy_(torch.from_numpy(np.asarray(weight)))
        net.out.weight.copy_(torch.from_numpy(np.asarray(params["out"]["weight"])))
        net.out.bias.copy_(torch.from_numpy(np.asarray(params["out"]["bias"])))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t_ids, t_len = torch.from_numpy(ids), torch.from_numpy(lengths)
    t_mask, t_y = torch.from_numpy(mask), torch.from_numpy(y).float()

    def torch_step():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(t_ids, t_len, t_mask), t_y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        return loss

    with torch.no_grad():
        torch_value = float(torch.nn.functional.binary_cross_entropy_with_logits(
            net(t_ids, t_len, t_mask), t_y))
    assert abs(torch_value - value) < 1e-4, (torch_value, value)
    t_torch = best_time(torch_step, number=3, repeat=3)
    return row + [f"{t_torch * 1e3:.1f}", f"{eager / t_torch:.1f}", f"{jit / t_torch:.1f}"]


# --------------------------------------------------------------------------------------------
# NTM
# --------------------------------------------------------------------------------------------

def torch_ntm_loss(model, p, x, targets):
    """The NTM of ``examples.ntm_copy`` in torch, equation for equation, on the torch tensors
    ``p`` (the same nested names as the fgrad params); returns the loss."""
    F = torch.nn.functional
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in model.initial_state(x.shape[0]).items()}
    sizes, eps = list(model.head_sizes), ntm_copy.EPS

    def address(memory, w_prev, key, beta, gate, shift, gamma):
        dots = torch.einsum("bnm,bm->bn", memory, key)
        norms = (torch.sqrt((memory * memory).sum(-1) + eps)
                 * torch.sqrt((key * key).sum(-1, keepdim=True) + eps))
        w = torch.softmax(F.softplus(beta) * (dots / norms), dim=-1)
        g = torch.sigmoid(gate)
        w = g * w + (1 - g) * w_prev
        rolled = torch.stack([torch.roll(w, s, dims=1) for s in ntm_copy.SHIFTS], dim=-1)
        w = torch.einsum("bns,bs->bn", rolled, torch.softmax(shift, dim=-1))
        return torch.softmax((1 + F.softplus(gamma)) * torch.log(w + eps), dim=-1)

    c_p = p["controller"]
    h, c = state["h"], state["c"]
    memory, read, w_read, w_write = state["memory"], state["read"], state["w_read"], state["w_write"]
    logits, xt = [], torch.from_numpy(x)
    for t in range(x.shape[1]):
        gates = (F.linear(torch.cat([xt[:, t], read], -1), c_p["weight_ih"], c_p["bias_ih"])
                 + F.linear(h, c_p["weight_hh"], c_p["bias_hh"]))
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        pieces = torch.split(F.linear(h, p["heads"]["weight"], p["heads"]["bias"]), sizes, -1)
        w_write = address(memory, w_write, *pieces[:5])
        w = w_write[:, :, None]
        memory = (memory * (1 - w * torch.sigmoid(pieces[5])[:, None])
                  + w * torch.tanh(pieces[6])[:, None])
        w_read = address(memory, w_read, *pieces[7:])
        read = torch.einsum("bn,bnm->bm", w_read, memory)
        logits.append(F.linear(torch.cat([h, read], -1), p["out"]["weight"], p["out"]["bias"]))
    out = torch.stack(logits, 1)[:, -targets.shape[1]:]
    return F.binary_cross_entropy_with_logits(out, torch.from_numpy(targets))


def bench_ntm(batch=16, length=10):
    model = ntm_copy.NTM()
    params = model.init(fgrad.random.key(0))
    x, targets = ntm_copy.copy_batch(fgrad.random.key(1), batch, length)
    optimizer = foptim.chain(foptim.clip(10.0), foptim.adam(1e-3))
    step = _adam_step(ntm_copy.make_loss(model), params, optimizer)
    value, jit_value, eager, jit, first = _time_fgrad(step, params, optimizer.init(params),
                                                     (x, targets))
    assert abs(value - jit_value) < 1e-5, (value, jit_value)
    row = ["ntm_copy step", f"B={batch} L={length} (T={2 * length + 1})", f"{eager * 1e3:.1f}",
           f"{jit * 1e3:.1f} (first {first:.1f} s)"]
    if torch is None:
        return row + ["torch not installed", "", ""]
    p = {k: {n: torch.tensor(np.asarray(v), requires_grad=True) for n, v in layer.items()}
         for k, layer in params.items()}
    leaves = [t for layer in p.values() for t in layer.values()]
    with torch.no_grad():
        torch_value = float(torch_ntm_loss(model, p, x, targets))
    assert abs(torch_value - value) < 1e-4, (torch_value, value)
    opt = torch.optim.Adam(leaves, lr=1e-3)

    def torch_step():
        opt.zero_grad()
        loss = torch_ntm_loss(model, p, x, targets)
        loss.backward()
        torch.nn.utils.clip_grad_value_(leaves, 10.0)
        opt.step()

    t_torch = best_time(torch_step, number=2, repeat=3)
    return row + [f"{t_torch * 1e3:.1f}", f"{eager / t_torch:.1f}", f"{jit / t_torch:.1f}"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_recurrent",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS (and torch) threads")
    args = parser.parse_args(argv)
    if torch is not None and args.threads:
        torch.set_num_threads(args.threads)
    with blas_threads(args.threads):
        rows = [bench_lstm(), bench_ntm()]
    print_table("one training step (forward, backward, clipping, Adam), ms",
                ["step", "shape", "fgrad eager", "fgrad.jit", "torch eager", "eager/torch",
                 "jit/torch"], rows)


if __name__ == "__main__":
    main()
