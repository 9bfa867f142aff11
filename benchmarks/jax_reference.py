"""The ``bench_jit`` workloads written for ``jax.jit`` (the optional ``bench`` extra).

Each function returns a jitted step and its arguments as JAX arrays, built from the same NumPy
parameters and data as the fgrad variant, so ``bench_jit`` can check the results against
fgrad's before timing. jax runs on the CPU here, with 64-bit floats enabled (W1 and W3 are
float64 workloads), on one thread unless ``XLA_FLAGS`` says otherwise; every call is timed with
``block_until_ready``.

The GPT-2 of W5 is written out in ``jax.numpy`` from Hugging Face's layout (``Conv1D`` weights
``(in, out)``, tied output head, tanh GELU, causal mask), and AdamW by hand (optax's
``adamw`` with its defaults: bias-corrected moments, decoupled decay on every parameter).
"""
import os

import numpy as np

# One thread, as bench_jit gives BLAS and torch by default (XLA's CPU backend otherwise runs an
# Eigen thread pool the size of the machine); set XLA_FLAGS yourself to change it.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
except ImportError:   # the bench extra is optional
    jax = jnp = None


def available():
    return jax is not None


def ready(fn):
    """``fn`` made synchronous: JAX dispatches asynchronously, so a timing must wait."""
    def run():
        return jax.block_until_ready(fn())
    return run


def _tree(params):
    return jax.tree_util.tree_map(jnp.asarray, params)


def _sgd_step(loss, params, x, onehot, lr):
    """``(run, step)``: the jitted SGD step of ``loss(params, x, onehot)`` (W2 and W6)."""
    @jax.jit
    def step(params, x, onehot):
        value, g = jax.value_and_grad(loss)(params, x, onehot)
        return {k: params[k] - lr * g[k] for k in params}, value
    args = (_tree(params), jnp.asarray(x), jnp.asarray(onehot))
    return (lambda: step(*args)), step


# --- W1: a chain of elementwise ops --------------------------------------------------------

def w1(x, n_iter):
    def f(x):
        for _ in range(n_iter):
            x = jnp.sin(x) * 1.01 + x
        return jnp.sum(x)
    step = jax.jit(jax.grad(f))
    xj = jnp.asarray(x)
    return (lambda: step(xj)), step


# --- W2: an SGD step of a tanh MLP -----------------------------------------------------------

def w2(params, x, onehot, lr):
    n = len(params) // 2

    def loss(params, x, onehot):
        h = x
        for i in range(n):
            h = h @ params[f"w{i}"] + params[f"b{i}"]
            if i < n - 1:
                h = jnp.tanh(h)
        logp = h - jax.scipy.special.logsumexp(h, axis=1, keepdims=True)
        return -jnp.sum(logp * onehot) / x.shape[0]

    return _sgd_step(loss, params, x, onehot, lr)


# --- W3: per-example gradients ----------------------------------------------------------------

def w3(params, x, y):
    def loss(params, x, y):
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        logits = h @ params["w2"] + params["b2"]
        return jax.scipy.special.logsumexp(logits) - logits[y]
    step = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))
    args = (_tree(params), jnp.asarray(x), jnp.asarray(y))
    return (lambda: step(*args)), step


# --- W5: an AdamW step of a small GPT-2 -------------------------------------------------------

def _layer_norm(p, x, eps=1e-5):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, -1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p["weight"] + p["bias"]


def _conv1d(p, x):
    return x @ p["weight"] + p["bias"]


def gpt2_loss(params, ids, n_head):
    body = params["transformer"]
    b, t = ids.shape
    x = body["wte"]["weight"][ids] + body["wpe"]["weight"][:t]
    c = x.shape[-1]
    hd = c // n_head
    causal = jnp.tril(jnp.ones((t, t), bool))
    for i in range(len(body["h"])):
        p = body["h"][str(i)]
        qkv = _conv1d(p["attn"]["c_attn"], _layer_norm(p["ln_1"], x))
        q, k, v = jnp.split(qkv.reshape(b, t, 3 * n_head, hd).transpose(0, 2, 1, 3), 3, axis=1)
        scores = jnp.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd), -jnp.inf)
        a = jax.nn.softmax(scores, -1) @ v
        x = x + _conv1d(p["attn"]["c_proj"], a.transpose(0, 2, 1, 3).reshape(b, t, c))
        h = jax.nn.gelu(_conv1d(p["mlp"]["c_fc"], _layer_norm(p["ln_2"], x)), approximate=True)
        x = x + _conv1d(p["mlp"]["c_proj"], h)
    logits = _layer_norm(body["ln_f"], x) @ body["wte"]["weight"].T
    logp = jax.nn.log_softmax(logits[:, :-1], -1)
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))


def w5(params, ids, n_head, lr, weight_decay, b1=0.9, b2=0.999, eps=1e-8):
    def adamw(grads, state, params):
        count, mu, nu = state
        count = count + 1
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)

        def update(p, m, v):
            m_hat, v_hat = m / (1 - b1 ** count), v / (1 - b2 ** count)
            return p - lr * (m_hat / (jnp.sqrt(v_hat) + eps) + weight_decay * p)
        return jax.tree_util.tree_map(update, params, mu, nu), (count, mu, nu)

    @jax.jit
    def step(params, state, ids):
        loss, grads = jax.value_and_grad(gpt2_loss)(params, ids, n_head)
        params, state = adamw(grads, state, params)
        return params, state, loss
    p = _tree(params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    args = (p, (jnp.asarray(0, jnp.int32), zeros, zeros), jnp.asarray(ids))
    return (lambda: step(*args)), step


# --- W6: an SGD step of a small CNN -----------------------------------------------------------

def w6(params, x, onehot, lr):
    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss(params, x, onehot):
        h = pool(jax.nn.relu(conv(x, params["c1.weight"], params["c1.bias"])))
        h = pool(jax.nn.relu(conv(h, params["c2.weight"], params["c2.bias"])))
        logits = h.reshape(h.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"]
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.sum(logp * onehot) / x.shape[0]

    return _sgd_step(loss, params, x, onehot, lr)
