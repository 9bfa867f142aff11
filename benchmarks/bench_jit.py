"""``fgrad.jit`` against eager fgrad, hand-written NumPy (the floor) and torch eager.

Five workloads (issue 8; W4 was never defined):

* W1: ``grad`` of a chain of 200 elementwise ops on float64[16], in microseconds per op: pure
  overhead, where tracing and taping dominate eager fgrad and a replay of NumPy calls is all
  that jit leaves. Aim: jit within 1.5x of the NumPy floor per op.
* W2: one SGD step of a 784-512-512-10 tanh MLP, batch 128, float32 (value_and_grad + update),
  in steps per second. Aim: jit at or above the NumPy floor.
* W3: per-example gradients, ``vmap(grad(loss))`` of a 784-128-10 MLP, batch 64, float64, in
  ms. Aim: jit within 1.1x of the floor.
* W5: one AdamW step of a GPT-2 of 4 layers, width 128, 4 heads, context 128, vocabulary 2,048,
  batch 8, float32 (``fnn.models.GPT2``), in tokens per second, against Hugging Face's
  ``GPT2LMHeadModel`` with the same weights and ``torch.optim.AdamW``. Aim: jit at or above
  jax.jit (stretch: torch eager); first call under a second.
* W6: one SGD step of a CNN (3x3 conv 3->32, ReLU, 2x2 max pool, 3x3 conv 32->64, ReLU, pool,
  linear 4096->10), batch 32 of 3x32x32, float32, in steps per second; the floor is a
  hand-written im2col forward and backward pass. Aim: jit at or above the floor.

The first call of each jitted function (trace + optimise + generate + compile) is timed once
and printed. Every variant is checked against the others before timing. jax is not a
dependency; when it is installed (the ``bench`` extra) the ``jax.jit`` column runs the same
workloads written in ``jax.numpy`` (``benchmarks/jax_reference.py``), checked against fgrad's
results first. Timings on a shared machine are noisy: compare ratios, run twice.

    python -m benchmarks.bench_jit [--threads 1]
"""
import argparse
import time

import numpy as np

import fgrad
import fgrad.numpy as fnp
from benchmarks import jax_reference
from benchmarks._timing import best_time, print_table
from benchmarks.bench_per_example import init as init_small, loss as example_loss
from benchmarks.bench_per_example import numpy_per_example_grads

try:
    import torch
except ImportError:   # torch is a test dependency only
    torch = None


def _first_call(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _check(a, b, what, tol):
    la, lb = fgrad.tree.leaves(a), fgrad.tree.leaves(b)
    err = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
              for x, y in zip(la, lb))
    assert err <= tol, f"{what}: results differ by {err}"
    return err


# --------------------------------------------------------------------------------------------
# W1: overhead of a chain of small elementwise ops
# --------------------------------------------------------------------------------------------

def chain(np_, n_iter):
    def f(x):
        for _ in range(n_iter):
            x = np_.sin(x) * 1.01 + x      # three ops per iteration
        return np_.sum(x)
    return f


def numpy_chain_grad(x, n_iter):
    """Forward, keeping what the backward pass needs, then the chain rule by hand."""
    saved = []
    for _ in range(n_iter):
        saved.append(x)
        x = np.sin(x) * 1.01 + x
    g = np.ones_like(x)
    for x in reversed(saved):   # d/dx (sin(x) 1.01 + x) = cos(x) 1.01 + 1
        g = g * np.cos(x) * 1.01 + g
    return g


def w1(rows, compile_rows, n_ops=200, size=16):
    n_iter = n_ops // 3
    n = 3 * n_iter + 1
    x = np.linspace(-1, 1, size)
    f = chain(fnp, n_iter)
    eager = fgrad.grad(f)
    jitted = fgrad.jit(fgrad.grad(f))
    got, t_compile = _first_call(lambda: jitted(x))
    _check(got, eager(x), "W1 jit vs eager", 1e-12)
    _check(got, numpy_chain_grad(x, n_iter), "W1 jit vs numpy", 1e-10)
    t_np = best_time(lambda: numpy_chain_grad(x, n_iter), number=50)
    t_eager = best_time(lambda: eager(x), number=5)
    t_jit = best_time(lambda: jitted(x), number=50)
    row = ["W1 grad, 200 elementwise ops on f64[16] (us / op)", f"{t_eager / n * 1e6:.2f}",
           f"{t_jit / n * 1e6:.2f}", f"{t_np / n * 1e6:.2f}"]
    if torch is not None:
        xt = torch.from_numpy(x)

        def torch_grad():
            v = xt.clone().requires_grad_(True)
            y = v
            for _ in range(n_iter):
                y = torch.sin(y) * 1.01 + y
            y.sum().backward()
            return v.grad
        _check(torch_grad().numpy(), got, "W1 torch vs jit", 1e-10)
        row.append(f"{best_time(torch_grad, number=20) / n * 1e6:.2f}")
    else:
        row.append("-")
    t_jax = _jax_time(lambda: jax_reference.w1(x, n_iter), got, "W1", 1e-10, number=50)
    row.append(_cell(t_jax, lambda t: f"{t / n * 1e6:.2f}"))
    row.append(f"{t_jit / t_np:.2f}")
    rows.append(row)
    lowered = jitted.lower(x)
    compile_rows.append(("W1", f"{t_compile * 1e3:.1f}", _passes(lowered), lowered.buffer_reuse))


def _jax_time(build, expected, what, tol, **timing):
    """Seconds per call of the jax.jit variant (checked against fgrad's result), or None."""
    if not jax_reference.available():
        return None
    run, _ = build()
    got = jax_reference.ready(run)()
    _check(fgrad.tree.leaves(jax_reference.jax.device_get(got)), fgrad.tree.leaves(expected),
           f"{what} jax vs fgrad", tol)
    return best_time(jax_reference.ready(run), **timing)


def _cell(t, fmt):
    return "-" if t is None else fmt(t)


def _passes(lowered):
    stats = dict(lowered.stats[:5])
    return (f"{stats['staged']} staged -> {len(lowered.jaxpr.eqns)} "
            f"(simplify {stats['staged'] - stats['simplify']}, cse {stats['simplify'] - stats['cse']}, "
            f"fold {stats['cse'] - stats['fold_constants']}, dce {stats['fold_constants'] - stats['dce']} "
            f"in the first round)")


# --------------------------------------------------------------------------------------------
# W2: an SGD step of a 784-512-512-10 MLP
# --------------------------------------------------------------------------------------------

def mlp_init(rng, sizes, dtype):
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"w{i}"] = (rng.standard_normal((a, b)) * a ** -0.5).astype(dtype)
        params[f"b{i}"] = np.zeros(b, dtype)
    return params


def mlp_loss(params, x, onehot):
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = fnp.tanh(h)
    logp = h - fnp.logsumexp(h, axis=1, keepdims=True)
    return -fnp.sum(logp * onehot) / x.shape[0]


LR = 0.01


def sgd_step(params, x, onehot):
    value, g = fgrad.value_and_grad(mlp_loss)(params, x, onehot)
    return {k: params[k] - LR * g[k] for k in params}, value


def numpy_sgd_step(params, x, onehot):
    n = len(params) // 2
    hs = [x]
    h = x
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = np.tanh(h)
        hs.append(h)
    m = h.max(axis=1, keepdims=True)
    e = np.exp(h - m)
    s = e.sum(axis=1, keepdims=True)
    logp = h - m - np.log(s)
    value = -np.sum(logp * onehot) / x.shape[0]
    d = (e / s * onehot.sum(axis=1, keepdims=True) - onehot) / x.shape[0]
    new = {}
    for i in reversed(range(n)):
        new[f"w{i}"] = params[f"w{i}"] - LR * (hs[i].T @ d)
        new[f"b{i}"] = params[f"b{i}"] - LR * d.sum(axis=0)
        if i:
            d = (d @ params[f"w{i}"].T) * (1 - hs[i] * hs[i])
    return new, value


def w2(rows, compile_rows, batch=128, dtype=np.float32):
    rng = np.random.default_rng(0)
    params = mlp_init(rng, (784, 512, 512, 10), dtype)
    x = rng.standard_normal((batch, 784)).astype(dtype)
    onehot = np.eye(10, dtype=dtype)[rng.integers(0, 10, batch)]
    jitted = fgrad.jit(sgd_step)
    donating = fgrad.jit(sgd_step, donate_argnums=0)
    got, t_compile = _first_call(lambda: jitted(params, x, onehot))
    _check(got, sgd_step(params, x, onehot), "W2 jit vs eager", 1e-5)
    _check(got, numpy_sgd_step(params, x, onehot), "W2 jit vs numpy", 1e-5)
    t_np = best_time(lambda: numpy_sgd_step(params, x, onehot))
    t_eager = best_time(lambda: sgd_step(params, x, onehot))
    t_jit = best_time(lambda: jitted(params, x, onehot))
    state = {"p": {k: v.copy() for k, v in params.items()}}

    def donated_step():   # a training loop: each step's params are donated to the next
        state["p"], _ = donating(state["p"], x, onehot)
    t_don = best_time(donated_step)
    row = ["W2 SGD step MLP 784-512-512-10 f32 b128 (steps / s)", f"{1 / t_eager:.0f}",
           f"{1 / t_jit:.0f} ({1 / t_don:.0f} donated)", f"{1 / t_np:.0f}"]
    if torch is not None:
        tp = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
        xt, ot = torch.from_numpy(x), torch.from_numpy(onehot)

        def torch_step():
            ps = {k: v.requires_grad_(True) for k, v in tp.items()}
            h = xt
            for i in range(3):
                h = h @ ps[f"w{i}"] + ps[f"b{i}"]
                if i < 2:
                    h = torch.tanh(h)
            loss = -(torch.log_softmax(h, 1) * ot).sum() / batch
            grads = torch.autograd.grad(loss, list(ps.values()))
            with torch.no_grad():
                return {k: v - LR * g for (k, v), g in zip(ps.items(), grads)}, loss
        _check({k: v.detach().numpy() for k, v in torch_step()[0].items()}, got[0],
               "W2 torch vs jit", 1e-5)
        row.append(f"{1 / best_time(torch_step):.0f}")
    else:
        row.append("-")
    t_jax = _jax_time(lambda: jax_reference.w2(params, x, onehot, LR), got, "W2", 1e-4)
    row.append(_cell(t_jax, lambda t: f"{1 / t:.0f}"))
    row.append(f"{t_np / t_jit:.2f} of floor's rate")
    rows.append(row)
    lowered = jitted.lower(params, x, onehot)
    compile_rows.append(("W2", f"{t_compile * 1e3:.1f}", _passes(lowered), lowered.buffer_reuse))


# --------------------------------------------------------------------------------------------
# W3: per-example gradients
# --------------------------------------------------------------------------------------------

def w3(rows, compile_rows, batch=64, hidden=128):
    rng = np.random.default_rng(0)
    params = init_small(rng, 784, hidden, 10)
    x = rng.normal(size=(batch, 784))
    y = rng.integers(0, 10, size=batch)
    per_example = fgrad.vmap(fgrad.grad(example_loss), in_axes=(None, 0, 0))
    jitted = fgrad.jit(per_example)
    got, t_compile = _first_call(lambda: jitted(params, x, y))
    _check(got, numpy_per_example_grads(params, x, y), "W3 jit vs numpy", 1e-12)
    t_np = best_time(lambda: numpy_per_example_grads(params, x, y))
    t_eager = best_time(lambda: per_example(params, x, y))
    t_jit = best_time(lambda: jitted(params, x, y))
    row = [f"W3 per-example grads MLP 784-{hidden}-10 f64 b{batch} (ms)", f"{t_eager * 1e3:.2f}",
           f"{t_jit * 1e3:.2f}", f"{t_np * 1e3:.2f}"]
    if torch is not None:
        import torch.func as tf
        tp = {k: torch.from_numpy(v) for k, v in params.items()}
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def tloss(p, xi, yi):
            h = torch.tanh(xi @ p["w1"] + p["b1"])
            logits = h @ p["w2"] + p["b2"]
            return torch.logsumexp(logits, 0) - torch.gather(logits, 0, yi[None])[0]
        tgrad = tf.vmap(tf.grad(tloss), in_dims=(None, 0, 0))
        _check({k: v.numpy() for k, v in tgrad(tp, xt, yt).items()}, got, "W3 torch vs jit", 1e-10)
        row.append(f"{best_time(lambda: tgrad(tp, xt, yt)) * 1e3:.2f}")
    else:
        row.append("-")
    t_jax = _jax_time(lambda: jax_reference.w3(params, x, y), got, "W3", 1e-10)
    row.append(_cell(t_jax, lambda t: f"{t * 1e3:.2f}"))
    row.append(f"{t_jit / t_np:.2f}")
    rows.append(row)
    lowered = jitted.lower(params, x, y)
    compile_rows.append(("W3", f"{t_compile * 1e3:.1f}", _passes(lowered), lowered.buffer_reuse))


# --------------------------------------------------------------------------------------------
# W5: an AdamW step of a small GPT-2 (fnn.models.GPT2 against Hugging Face's, same weights)
# --------------------------------------------------------------------------------------------

W5 = dict(vocab_size=2048, n_positions=128, n_embd=128, n_layer=4, n_head=4, batch=8)


def w5(rows, compile_rows):
    import foptim
    import fnn.models as fm
    c = W5
    config = fm.GPT2Config(vocab_size=c["vocab_size"], n_positions=c["n_positions"],
                           n_embd=c["n_embd"], n_layer=c["n_layer"], n_head=c["n_head"],
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=None, eos_token_id=None)
    model = fm.GPT2(config)
    params = model.init(fgrad.random.key(0))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, c["vocab_size"], (c["batch"], c["n_positions"]))
    optimizer = foptim.adamw(3e-4, weight_decay=0.1)

    def step(params, opt_state, ids):
        loss, grads = fgrad.value_and_grad(lambda p: fm.lm_loss(model.apply(p, ids), ids))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return foptim.apply_updates(params, updates), opt_state, loss

    state = optimizer.init(params)
    jitted = fgrad.jit(step)
    got, t_compile = _first_call(lambda: jitted(params, state, ids))
    _check(got, step(params, state, ids), "W5 jit vs eager", 1e-4)
    tokens = ids.size
    t_eager = best_time(lambda: step(params, state, ids), number=2, repeat=3)
    t_jit = best_time(lambda: jitted(params, state, ids), number=2, repeat=3)
    row = [f"W5 GPT-2 {c['n_layer']}x{c['n_embd']} ctx {c['n_positions']} b{c['batch']} vocab "
           f"{c['vocab_size']} AdamW step (tokens / s)", f"{tokens / t_eager:,.0f}",
           f"{tokens / t_jit:,.0f}", "-"]
    try:
        import transformers
    except ImportError:
        transformers = None
    if torch is not None and transformers is not None:
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            **dict(config.to_dict(), bos_token_id=None, eos_token_id=None)))
        weights = {k: torch.from_numpy(np.array(v)) for k, v in _dotted(params).items()}
        unexpected = hf.load_state_dict(weights, strict=False).unexpected_keys
        assert not unexpected, f"W5: parameters HF's GPT-2 does not have: {unexpected}"
        hf.train()
        opt = torch.optim.AdamW(hf.parameters(), lr=3e-4, weight_decay=0.1)
        ids_t = torch.from_numpy(ids)

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss = hf(ids_t, labels=ids_t).loss
            loss.backward()
            opt.step()
            return loss
        with torch.no_grad():
            want = float(hf(ids_t, labels=ids_t).loss)
        _check(np.asarray(got[2]), np.asarray(want), "W5 torch vs jit loss", 1e-4)
        row.append(f"{tokens / best_time(torch_step, number=2, repeat=3):,.0f}")
    else:
        row.append("-")
    t_jax = _jax_time(lambda: jax_reference.w5(params, ids, c["n_head"], 3e-4, 0.1), got, "W5",
                      1e-3, number=2, repeat=3)
    row.append(_cell(t_jax, lambda t: f"{tokens / t:,.0f}"))
    row.append(f"{t_eager / t_jit:.2f}x eager")
    rows.append(row)
    lowered = jitted.lower(params, state, ids)
    compile_rows.append(("W5", f"{t_compile * 1e3:.1f}", _passes(lowered), lowered.buffer_reuse))


def _dotted(tree_):
    paths, leaves, _ = fgrad.tree.flatten_split_paths(tree_)
    return {".".join(map(str, p)): leaf for p, leaf in zip(paths, leaves)}


# --------------------------------------------------------------------------------------------
# W6: an SGD step of a small CNN (two 3x3 convolutions, max pooling, a linear layer)
# --------------------------------------------------------------------------------------------

def cnn_init(rng, dtype=np.float32):
    def he(shape, fan_in):
        return (rng.standard_normal(shape) * (2 / fan_in) ** 0.5).astype(dtype)
    return {"c1.weight": he((32, 3, 3, 3), 27), "c1.bias": np.zeros(32, dtype),
            "c2.weight": he((64, 32, 3, 3), 288), "c2.bias": np.zeros(64, dtype),
            "fc.weight": he((10, 64 * 8 * 8), 4096), "fc.bias": np.zeros(10, dtype)}


def cnn_loss(params, x, onehot):
    import fnn.functional as F
    h = F.max_pool2d(F.relu(F.conv2d(x, params["c1.weight"], params["c1.bias"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, params["c2.weight"], params["c2.bias"], padding=1)), 2)
    logits = F.linear(fnp.reshape(h, (h.shape[0], -1)), params["fc.weight"], params["fc.bias"])
    logp = logits - fnp.logsumexp(logits, axis=1, keepdims=True)
    return -fnp.sum(logp * onehot) / x.shape[0]


def cnn_sgd_step(params, x, onehot):
    value, g = fgrad.value_and_grad(cnn_loss)(params, x, onehot)
    return {k: params[k] - LR * g[k] for k in params}, value


def _im2col(x):
    """``(N, H, W, C*9)`` patches of a zero-padded 3x3 window, NHWC-major for one matmul."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))   # N C H W 3 3
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, h, w, c * 9)


def _col2im(cols, shape):
    """The adjoint of :func:`_im2col`: patch gradients summed back into the image."""
    n, c, h, w = shape
    g = cols.reshape(n, h, w, c, 3, 3)
    out = np.zeros((n, c, h + 2, w + 2), cols.dtype)
    for i in range(3):
        for j in range(3):
            out[:, :, i:i + h, j:j + w] += g[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return out[:, :, 1:-1, 1:-1]


def _np_conv_relu_pool(x, w, b):
    n, _, h, wd = x.shape
    cols = _im2col(x)
    y = cols @ w.reshape(w.shape[0], -1).T + b                     # N H W O
    r = np.maximum(y, 0)
    blocks = r.reshape(n, h // 2, 2, wd // 2, 2, -1)
    p = blocks.max(axis=(2, 4))                                    # N h w O
    return cols, y, blocks, p


def numpy_cnn_sgd_step(params, x, onehot):
    w1, b1, w2, b2 = (params[k] for k in ("c1.weight", "c1.bias", "c2.weight", "c2.bias"))
    cols1, y1, blk1, p1 = _np_conv_relu_pool(x, w1, b1)
    h1 = p1.transpose(0, 3, 1, 2)
    cols2, y2, blk2, p2 = _np_conv_relu_pool(h1, w2, b2)
    flat = p2.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
    logits = flat @ params["fc.weight"].T + params["fc.bias"]
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    value = -np.sum((logits - m - np.log(s)) * onehot) / x.shape[0]
    d = (e / s * onehot.sum(axis=1, keepdims=True) - onehot) / x.shape[0]
    grads = {"fc.weight": d.T @ flat, "fc.bias": d.sum(axis=0)}
    dflat = (d @ params["fc.weight"]).reshape(p2.shape[0], p2.shape[3], *p2.shape[1:3])
    dp = dflat.transpose(0, 2, 3, 1)
    for k, (cols, y, blk, p, w, x_in) in (("c2", (cols2, y2, blk2, p2, w2, h1)),
                                        ("c1", (cols1, y1, blk1, p1, w1, x))):
        mask = blk == p[:, :, None, :, None, :]                    # the max of each window
        dy = (mask * dp[:, :, None, :, None, :]).reshape(y.shape) * (y > 0)
        flat_dy = dy.reshape(-1, dy.shape[-1])
        grads[f"{k}.weight"] = (flat_dy.T @ cols.reshape(-1, cols.shape[-1])).reshape(w.shape)
        grads[f"{k}.bias"] = flat_dy.sum(axis=0)
        if k == "c2":
            dcols = dy @ w.reshape(w.shape[0], -1)
            dp = _col2im(dcols, x_in.shape).transpose(0, 2, 3, 1)
    return {k: params[k] - LR * grads[k] for k in params}, value


def w6(rows, compile_rows, batch=32, dtype=np.float32):
    rng = np.random.default_rng(0)
    params = cnn_init(rng, dtype)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(dtype)
    onehot = np.eye(10, dtype=dtype)[rng.integers(0, 10, batch)]
    jitted = fgrad.jit(cnn_sgd_step)
    got, t_compile = _first_call(lambda: jitted(params, x, onehot))
    _check(got, cnn_sgd_step(params, x, onehot), "W6 jit vs eager", 1e-4)
    _check(got, numpy_cnn_sgd_step(params, x, onehot), "W6 jit vs numpy", 1e-4)
    t_np = best_time(lambda: numpy_cnn_sgd_step(params, x, onehot), number=3, repeat=3)
    t_eager = best_time(lambda: cnn_sgd_step(params, x, onehot), number=3, repeat=3)
    t_jit = best_time(lambda: jitted(params, x, onehot), number=3, repeat=3)
    row = [f"W6 SGD step CNN 2 conv + fc f32 b{batch} 3x32x32 (steps / s)", f"{1 / t_eager:.1f}",
           f"{1 / t_jit:.1f}", f"{1 / t_np:.1f} (im2col)"]
    if torch is not None:
        tp = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
        xt, ot = torch.from_numpy(x), torch.from_numpy(onehot)
        F = torch.nn.functional

        def torch_step():
            ps = {k: v.requires_grad_(True) for k, v in tp.items()}
            h = F.max_pool2d(F.relu(F.conv2d(xt, ps["c1.weight"], ps["c1.bias"], padding=1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, ps["c2.weight"], ps["c2.bias"], padding=1)), 2)
            logits = F.linear(h.flatten(1), ps["fc.weight"], ps["fc.bias"])
            loss = -(torch.log_softmax(logits, 1) * ot).sum() / batch
            grads = torch.autograd.grad(loss, list(ps.values()))
            with torch.no_grad():
                return {k: v - LR * g for (k, v), g in zip(ps.items(), grads)}, loss
        _check({k: v.detach().numpy() for k, v in torch_step()[0].items()}, got[0],
               "W6 torch vs jit", 1e-4)
        row.append(f"{1 / best_time(torch_step, number=3, repeat=3):.1f}")
    else:
        row.append("-")
    t_jax = _jax_time(lambda: jax_reference.w6(params, x, onehot, LR), got, "W6", 1e-4,
                      number=3, repeat=3)
    row.append(_cell(t_jax, lambda t: f"{1 / t:.1f}"))
    row.append(f"{t_np / t_jit:.2f} of floor's rate")
    rows.append(row)
    lowered = jitted.lower(params, x, onehot)
    compile_rows.append(("W6", f"{t_compile * 1e3:.1f}", _passes(lowered), lowered.buffer_reuse))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS / torch threads (0: leave the libraries' default)")
    parser.add_argument("--only", choices=("w1", "w2", "w3", "w5", "w6"), default=None)
    args = parser.parse_args(argv)
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is not installed: BLAS uses its default thread count")
        if torch is not None:
            torch.set_num_threads(args.threads)
    if not jax_reference.available():
        print("jax is not installed (pip install -e '.[bench]'): the jax.jit column is skipped")
    if torch is None:
        print("torch is not installed: the torch column is skipped")
    rows, compile_rows = [], []
    for name, run in (("w1", w1), ("w2", w2), ("w3", w3), ("w5", w5), ("w6", w6)):
        if args.only in (None, name):
            run(rows, compile_rows)
    print_table("fgrad.jit (best of 5; noisy on a shared machine)",
                ("workload", "fgrad eager", "fgrad.jit", "NumPy floor", "torch eager",
                 "jax.jit", "jit vs floor"), rows)
    print_table("first call of the jitted function (trace + passes + codegen + compile)",
                ("workload", "first call ms", "equations", "buffers reused"), compile_rows)


if __name__ == "__main__":
    main()
