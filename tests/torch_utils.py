"""Run ``torch.func`` transforms on NumPy inputs, so tests can compare fgrad with PyTorch.

Every helper takes a torch function ``fn(*operands, **kwargs)`` and NumPy operands, converts
float and boolean operands to tensors of the same dtype (the tests draw float64 operands; a
float32 output gets a float32 cotangent) and passes integer operands, which are index arrays,
through as NumPy arrays (references compute NumPy positions from them, and inside a
``torch.func`` transform a tensor cannot be turned back into NumPy). It applies the
``torch.func`` transform to the operands listed in ``argnums`` (the others are held fixed), and
returns NumPy arrays. Outputs may be one tensor or a tuple/list of tensors; results come back as
a list with one array per output, so callers never special-case multi-output ops such as
``split``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.func

__all__ = ["to_torch", "to_numpy", "output_list", "torch_jvp", "torch_vjp", "torch_grad_of_grad"]


def to_torch(x):
    """A NumPy array (or scalar) as a tensor of the same dtype (a copy: torch may write to it)."""
    return torch.from_numpy(np.array(x, copy=True))


def to_numpy(t):
    """A tensor (or a Python number) as a NumPy array."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy(force=True)   # force: a ZeroTensor (a known-zero gradient)
    return np.asarray(t)


def output_list(out):
    """The outputs of an op as a list: ``[out]`` for one array, the items for a tuple/list."""
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _operand(a):
    """A float/bool operand as a tensor; an integer (index) operand stays a NumPy array."""
    return np.asarray(a) if np.asarray(a).dtype.kind in "iu" else to_torch(a)


def _partial(fn, args, argnums, kwargs):
    """``fn`` as a function of the operands in ``argnums`` only, the others held fixed."""
    tensors = [_operand(a) for a in args]

    def f(*moving):
        full = list(tensors)
        for i, m in zip(argnums, moving):
            full[i] = m
        out = fn(*full, **kwargs)
        return tuple(out) if isinstance(out, (tuple, list)) else out
    return f, tuple(tensors[i] for i in argnums)


def torch_jvp(fn, args, argnums, tangents, kwargs):
    """``torch.func.jvp``: ``(outputs, output_tangents)`` for tangents of ``args[argnums]``."""
    f, primals = _partial(fn, args, argnums, kwargs)
    out, out_dot = torch.func.jvp(f, primals, tuple(to_torch(t) for t in tangents))
    return [to_numpy(o) for o in output_list(out)], [to_numpy(t) for t in output_list(out_dot)]


def torch_vjp(fn, args, argnums, cotangents, kwargs):
    """``torch.func.vjp``: ``(outputs, cotangents of args[argnums])`` for output ``cotangents``."""
    f, primals = _partial(fn, args, argnums, kwargs)
    out, pullback = torch.func.vjp(f, *primals)
    cts = [to_torch(c) for c in cotangents]
    in_cts = pullback(tuple(cts) if isinstance(out, tuple) else cts[0])
    return [to_numpy(o) for o in output_list(out)], [to_numpy(c) for c in in_cts]


def torch_grad_of_grad(fn, args, argnums, weights, kwargs):
    """Second derivatives through ``torch.func.grad`` twice.

    With ``s(x) = sum(fn(x))`` and ``g = grad(s)`` (one array per operand in ``argnums``),
    returns ``grad(x -> sum_i <weights[i], g_i(x)>)``: a Hessian-vector product of ``s`` with
    ``weights``, one array per operand.
    """
    f, primals = _partial(fn, args, argnums, kwargs)
    positions = tuple(range(len(primals)))
    w = [to_torch(v) for v in weights]

    def total(*xs):
        return sum(o.sum() for o in output_list(f(*xs)))

    first = torch.func.grad(total, argnums=positions)

    def weighted(*xs):
        return sum((g * wi).sum() for g, wi in zip(first(*xs), w))

    return [to_numpy(g) for g in torch.func.grad(weighted, argnums=positions)(*primals)]
