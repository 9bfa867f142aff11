"""Compare an ``fnn.functional`` function with its ``torch.nn.functional`` twin.

:func:`check_against_torch` is the one assertion the ``tests/test_functional_*.py`` files
share: on the same float64 inputs it checks the forward output, the reverse-mode derivative
(``fgrad.vjp`` against ``torch.autograd.grad`` with the same random cotangent) and, unless
torch lacks forward mode for the op, the forward-mode derivative (``fgrad.jvp`` against
``torch.func.jvp`` with the same random tangents).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.func

import fgrad


def to_torch(x):
    """NumPy arrays and scalars become tensors of the same dtype; anything else is kept."""
    if isinstance(x, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(x, copy=True))
    return x


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _close(actual, expected, rtol, atol, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def check_against_torch(fn, torch_fn, args, argnums, *, rng, rtol=1e-8, atol=1e-10, jvp=True):
    """``fn(*args)`` equals ``torch_fn(*args)``, and so do their VJPs (and JVPs) w.r.t. the
    float arguments ``args[i]`` for ``i`` in ``argnums``. Non-array arguments pass unchanged.
    Returns fgrad's output."""
    args = list(args)

    def partial(f, convert):
        def g(*moving):
            full = [convert(a) for a in args]
            for i, m in zip(argnums, moving):
                full[i] = m
            return f(*full)
        return g

    out = fn(*args)
    expected = torch_fn(*[to_torch(a) for a in args])
    outs, expected_outs = _outputs(out), _outputs(expected)
    assert len(outs) == len(expected_outs)
    for i, (o, e) in enumerate(zip(outs, expected_outs)):
        _close(o, e, rtol, atol, f"output {i}")
    float_outs = [i for i, o in enumerate(outs) if np.asarray(o).dtype.kind == "f"]
    if not argnums:
        return out

    # reverse mode: the same cotangent through both
    primals = [args[i] for i in argnums]
    cts = [rng.standard_normal(np.shape(outs[i])) for i in float_outs]
    _, pullback = fgrad.vjp(lambda *m: [_outputs(partial(fn, lambda a: a)(*m))[i] for i in float_outs],
                            *primals)
    grads = pullback(cts)
    t_primals = [to_torch(np.asarray(p)).requires_grad_(True) for p in primals]
    t_outs = _outputs(partial(torch_fn, to_torch)(*t_primals))
    t_grads = torch.autograd.grad([t_outs[i] for i in float_outs], t_primals,
                                  [to_torch(c) for c in cts], allow_unused=True)
    for k, (g, tg) in enumerate(zip(grads, t_grads)):
        tg = torch.zeros_like(t_primals[k]) if tg is None else tg
        _close(g, tg, rtol, atol, f"VJP w.r.t. argument {argnums[k]}")

    if jvp:   # forward mode: the same tangents through both
        tangents = [rng.standard_normal(np.shape(p)) for p in primals]
        _, out_dot = fgrad.jvp(lambda *m: [_outputs(partial(fn, lambda a: a)(*m))[i] for i in float_outs],
                               tuple(np.asarray(p, dtype=float) for p in primals), tuple(tangents))
        _, t_out_dot = torch.func.jvp(
            lambda *m: tuple(_outputs(partial(torch_fn, to_torch)(*m))[i] for i in float_outs),
            tuple(to_torch(np.asarray(p, dtype=float)) for p in primals),
            tuple(to_torch(t) for t in tangents))
        for i, (d, td) in enumerate(zip(out_dot, t_out_dot)):
            _close(d, td, rtol, atol, f"JVP of output {float_outs[i]}")
    return out
