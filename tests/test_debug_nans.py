"""``fgrad.debug_nans``: the first operation that creates a NaN or an inf raises, naming it.

Each case puts the first NaN in a different place (a forward op, only a backward rule, forward
mode, inside vmap, inside a custom rule, second order) and checks that the message names the
primitive, the pass, the user's line that applied the operation (marked in this file with a
``# <-`` comment) and a summary of the inputs. Then: values that already held a NaN do not
raise, nothing is flagged in ordinary training steps, the switch nests and is off afterwards,
and ``FGRAD_DEBUG_NANS=1`` turns it on for a process.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fgrad
import fgrad.core
import fgrad.numpy as fnp
import fnn
import fnn.functional as F
import foptim

HERE = os.path.abspath(__file__)


def line_of(marker):
    """``file:line`` of the line of this file that carries ``# <- marker``."""
    with open(HERE, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# <- {marker}"):
                return f"{HERE}:{number}"
    raise AssertionError(marker)


def nan_error(call):
    with fgrad.debug_nans():
        with pytest.raises(FloatingPointError) as info:
            call()
    assert fgrad.core._debug_hook is None
    return str(info.value)


def assert_pieces(message, *pieces):
    for piece in pieces:
        assert piece in message, f"{piece!r} not in:\n{message}"


# ---- where the first NaN appears -----------------------------------------------------------

def log_loss(x):
    return fnp.sum(fnp.log(x) * 2.0)                     # <- log


def sqrt_loss(x):
    y = fnp.sqrt(x)                                      # <- sqrt
    return fnp.sum(y * 3.0)


def test_nan_first_appearing_in_a_forward_op():
    message = nan_error(lambda: fgrad.grad(log_loss)(np.array([1.0, -1.0, 2.0])))
    assert_pieces(message, "log produced 1 NaN", "from finite inputs", "forward pass of reverse mode",
                  line_of("log"),
                  "fnp.log(x)", "#0: float64[3]: min -1, max 2, 0 not finite")
    # without a transform too (and -inf from log(0) is an inf "not in its inputs")
    message = nan_error(lambda: log_loss(np.array([0.0, 1.0])))
    assert_pieces(message, "log produced 1 inf", "forward pass (no transform)", line_of("log"))


def test_nan_only_in_a_backward_rule():
    """sqrt(0) = 0 is fine; its derivative 1 / (2 sqrt 0) is not: the backward pass raises,
    naming sqrt's VJP rule and the line that applied sqrt in the forward pass."""
    x = np.array([4.0, 0.0])
    assert np.isfinite(sqrt_loss(x))
    message = nan_error(lambda: fgrad.grad(sqrt_loss)(x))
    assert_pieces(message, "the VJP rule of sqrt", "1 inf", "backward pass of reverse mode",
                  "sqrt was applied (traced) at " + line_of("sqrt"), "y = fnp.sqrt(x)",
                  "cotangent of output #0", "operand #0: float64[2]: min 0, max 4")


def test_nan_in_forward_mode():
    message = nan_error(lambda: fgrad.jvp(sqrt_loss, (np.array([4.0, 0.0]),), (np.ones(2),)))
    assert_pieces(message, "JVP rule of sqrt", "tangent", "forward mode", line_of("sqrt"),
                  "tangent of operand #0")
    message = nan_error(lambda: fgrad.jacfwd(sqrt_loss)(np.array([4.0, 0.0])))
    assert_pieces(message, "JVP rule of sqrt", "vmap")


def test_nan_inside_vmap():
    message = nan_error(lambda: fgrad.vmap(log_loss)(np.array([[1.0, 2.0], [1.0, -3.0]])))
    assert_pieces(message, "log produced 1 NaN", "vmap", "batching rule of log", line_of("log"),
                  "float64[2, 2]")
    # per-example gradients: the backward pass runs batched
    message = nan_error(lambda: fgrad.vmap(fgrad.grad(sqrt_loss))(np.array([[1.0, 4.0], [0.0, 1.0]])))
    assert_pieces(message, "backward pass of reverse mode", "the VJP rule of sqrt", "vmap",
                  line_of("sqrt"))


@fgrad.custom_vjp
def safe_norm(x):
    return fnp.sqrt(fnp.sum(x * x))


def _safe_norm_fwd(x):
    n = fnp.sqrt(fnp.sum(x * x))
    return n, (x, n)


def _safe_norm_bwd(res, g):                              # <- bwd
    x, n = res
    return (g * x / n,)


safe_norm.defvjp(_safe_norm_fwd, _safe_norm_bwd)


def test_nan_inside_a_custom_vjp_rule():
    message = nan_error(lambda: fgrad.grad(safe_norm)(np.zeros(3)))
    assert_pieces(message, "NaN", "backward pass of reverse mode", "custom_vjp safe_norm",
                  "bwd=_safe_norm_bwd", "the rule is _safe_norm_bwd, defined at " + line_of("bwd"),
                  "output #0: float64[]: min 0, max 0")
    # under vmap(grad) as well
    message = nan_error(lambda: fgrad.vmap(fgrad.grad(safe_norm))(np.stack([np.ones(3), np.zeros(3)])))
    assert_pieces(message, "NaN", "custom_vjp safe_norm")


def test_a_custom_rule_returning_a_nan_constant_is_caught():
    @fgrad.custom_vjp
    def f(x):
        return x * 2.0
    f.defvjp(lambda x: (x * 2.0, None), lambda _, g: (np.full(g.shape, np.nan),))
    message = nan_error(lambda: fgrad.grad(lambda x: fnp.sum(f(x)))(np.ones(2)))
    assert_pieces(message, "custom_vjp f", "returned", "2 NaN", "the rule is <lambda>")

    @fgrad.custom_jvp
    def h(x):
        return fnp.sin(x)
    h.defjvp(lambda p, t: (h(p[0]), t[0] * np.inf))
    message = nan_error(lambda: fgrad.jvp(h, (np.ones(2),), (np.ones(2),)))
    assert_pieces(message, "custom_jvp h", "tangent", "inf")


def test_second_order_and_checkpoint():
    """The first derivative of sqrt at 0 is already infinite; under grad(grad) the failing
    division is traced by the outer transform, and the message names both passes."""
    message = nan_error(lambda: fgrad.grad(fgrad.grad(sqrt_loss))(0.0))
    assert_pieces(message, "div produced 1 inf", "backward pass of reverse mode",
                  "the VJP rule of sqrt", "sqrt was applied (traced) at " + line_of("sqrt"))
    message = nan_error(lambda: fgrad.hessian(sqrt_loss)(np.array([4.0, 0.0])))
    assert_pieces(message, "NaN", "from inputs that hold inf but no NaN", "JVP rule of sqrt", "vmap")
    checkpointed = fgrad.checkpoint(sqrt_loss)
    message = nan_error(lambda: fgrad.grad(checkpointed)(np.array([0.0, 1.0])))
    assert_pieces(message, "the VJP rule of sqrt", line_of("sqrt"))


# ---- what must not raise -------------------------------------------------------------------

NOT_NEW = [
    ("nan-input", lambda: fnp.sin(np.array([np.nan, 1.0]))),
    ("inf-input", lambda: fnp.exp(np.array([np.inf, 1.0]))),
    ("masked-with-inf", lambda: fnp.where(np.array([True, False]), np.ones(2), -np.inf)),
    ("grad-of-nan-input", lambda: fgrad.grad(lambda x: fnp.sum(x * 2.0))(np.array([np.nan]))),
    ("finite", lambda: fgrad.grad(sqrt_loss)(np.array([1.0, 4.0]))),
    ("double-where", lambda: fgrad.grad(lambda x: fnp.sum(fnp.where(
        x > 0, fnp.log(fnp.where(x > 0, x, 1.0)), 0.0)))(np.array([0.0, 2.0]))),
    ("integers", lambda: fnp.floor_divide(np.arange(3), np.array([1, 1, 1]))),
]


@pytest.mark.parametrize("call", [row[1] for row in NOT_NEW], ids=[row[0] for row in NOT_NEW])
def test_nans_and_infs_already_in_the_inputs_do_not_raise(call):
    with fgrad.debug_nans():
        call()


def test_a_fully_ignored_batch_gives_nan_with_zero_gradients():
    """cross_entropy's NaN mean (as torch) comes from a NaN constant, not from the arithmetic."""
    logits, target = np.random.default_rng(0).standard_normal((3, 4)), np.full(3, -100)
    with fgrad.debug_nans():
        loss, g = fgrad.value_and_grad(lambda z: F.cross_entropy(z, target))(logits)
    assert np.isnan(loss) and (g == 0).all()


def test_training_steps_raise_nothing_and_compute_the_same():
    """No false positives in ordinary code: an MLP with layer norm and dropout, a causal
    attention block, cross-entropy, AdamW with clipping, and per-example gradients."""
    key = fgrad.random.key(0)
    model = fnn.Sequential(fnn.Linear(8, 16), fnn.LayerNorm(16), fnn.GELU(), fnn.Linear(16, 5))
    attention = fnn.MultiheadAttention(8, 2, batch_first=True)
    params = {"mlp": model.init(key), "attn": attention.init(fgrad.random.fold_in(key, 1))}
    x = np.asarray(fgrad.random.normal(fgrad.random.fold_in(key, 2), (4, 6, 8)), np.float32)
    y = np.array([[0, 1, 2, 3, 4, 0]] * 4)
    mask = np.triu(np.ones((6, 6), bool), 1)

    def loss(p, x, y):
        h, _ = attention.apply(p["attn"], x, x, x, attn_mask=mask)
        logits = model.apply(p["mlp"], h + x)
        return F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))

    opt = foptim.chain(foptim.clip_by_global_norm(1.0), foptim.adamw(1e-2))

    def step(p, s):
        value, g = fgrad.value_and_grad(loss)(p, x, y)
        u, s = opt.update(g, s, p)
        return foptim.apply_updates(p, u), s, value

    p_off, s_off = params, opt.init(params)
    p_on, s_on = params, opt.init(params)
    for _ in range(2):
        p_off, s_off, v_off = step(p_off, s_off)
        with fgrad.debug_nans():
            p_on, s_on, v_on = step(p_on, s_on)
    assert v_on == v_off
    fgrad.tree.map(np.testing.assert_array_equal, p_on, p_off)
    with fgrad.debug_nans():
        per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(params, x[:, None], y[:, None])
    assert all(np.isfinite(leaf).all() for leaf in fgrad.tree.leaves(per_example))


# ---- the switch ------------------------------------------------------------------------------

def test_the_switch_nests_decorates_and_is_off_afterwards():
    assert fgrad.core._debug_hook is None
    with fgrad.debug_nans():
        hook = fgrad.core._debug_hook
        assert hook is not None
        with fgrad.debug_nans():
            assert fgrad.core._debug_hook is hook            # nested: the same check
        with fgrad.debug_nans(False):
            assert fgrad.core._debug_hook is None
            with np.errstate(divide="ignore"):
                fnp.log(np.zeros(1))                         # off here: no error
        assert fgrad.core._debug_hook is hook
    assert fgrad.core._debug_hook is None
    with pytest.raises(FloatingPointError):
        with fgrad.debug_nans():
            fnp.log(np.zeros(1))
    assert fgrad.core._debug_hook is None                    # restored after an error too

    @fgrad.debug_nans()
    def checked(x):
        return fnp.log(x)
    with pytest.raises(FloatingPointError):
        checked(np.zeros(1))
    assert fgrad.core._debug_hook is None
    # off: the same computations run silently, as NumPy does
    with np.errstate(divide="ignore"):
        assert np.isneginf(fnp.log(np.zeros(1))).all()


def test_environment_variable_turns_it_on_for_a_process():
    code = ("import numpy as np, fgrad, fgrad.numpy as fnp\n"
            "try:\n    fgrad.grad(lambda x: fnp.sum(fnp.sqrt(x)))(np.zeros(2))\n"
            "except FloatingPointError as e:\n    print('raised', 'sqrt' in str(e))\n")
    env = {**os.environ, "FGRAD_DEBUG_NANS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert out.stdout.strip() == "raised True", out.stderr
    env["FGRAD_DEBUG_NANS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert out.stdout.strip() == "", out.stdout


def test_a_jitted_function_is_checked_op_by_op():
    compiled = fgrad.jit(log_loss)
    assert compiled(np.ones(2)) == 0.0                   # compiled and cached while off
    message = nan_error(lambda: compiled(np.array([1.0, -1.0])))
    assert_pieces(message, "log produced 1 NaN", line_of("log"))
    message = nan_error(lambda: fgrad.jit(fgrad.grad(sqrt_loss))(np.array([1.0, 0.0])))
    assert_pieces(message, "the VJP rule of sqrt", line_of("sqrt"))
