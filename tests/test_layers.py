"""fnn layers against torch.nn: one table row per layer configuration.

For every row the same checks run (float64 throughout):

* ``init`` returns exactly the names and shapes of the torch module's ``state_dict`` (the
  params load into torch with ``strict=True``), and the shapes ``init`` promises are the shapes
  ``apply`` accepts: a params tree with any one leaf reshaped is refused, naming that leaf;
* ``apply`` equals the torch module's forward with the same state_dict;
* gradients of a random linear functional of the outputs with respect to the params and the
  float inputs (``fgrad.grad``) equal torch autograd's.

Separate tests cover what a table row cannot: BatchNorm's running statistics over several
steps, dropout's randomness, init distributions against torch's (a two-sample
Kolmogorov-Smirnov test per leaf), state_dict round trips, and error messages.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fnn
import fnn.functional as F
from fgrad import tree

F64 = np.float64
KEY = fgrad.random.key(0)


def to_torch(x):
    return x if not isinstance(x, np.ndarray) else torch.from_numpy(np.array(x, copy=True))


def torch_state_dict(params, state=None):
    return {k: torch.from_numpy(np.ascontiguousarray(v))
            for k, v in fnn.io.to_torch_state_dict(params, state).items()}


def torch_leaves(out):
    """Tensors of a (nested tuple) torch output, None dropped, as NumPy arrays."""
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in torch_leaves(o)]
    return [out.detach().numpy()]


def fnn_leaves(out):
    return [np.asarray(a) for a in tree.leaves(out)]


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """One layer configuration.

    ``inputs(rng)`` gives the positional inputs (NumPy); ``kwargs`` go to both calls (NumPy
    arrays become tensors for torch); ``fnn_kwargs`` / ``torch_kwargs`` to one side only.
    ``diff`` lists the positional inputs to differentiate (default: every float input).
    """

    id: str
    layer: Any
    module: Callable[[], torch.nn.Module]
    inputs: Callable[[np.random.Generator], tuple]
    kwargs: dict = dataclasses.field(default_factory=dict)
    fnn_kwargs: dict = dataclasses.field(default_factory=dict)
    torch_kwargs: dict = dataclasses.field(default_factory=dict)
    diff: tuple | None = None


def normal(*shape):
    return lambda rng: (rng.standard_normal(shape),)


def causal(n, m=None):
    return np.triu(np.ones((n, m or n), dtype=bool), k=1)


def padding_mask(n, s):
    mask = np.zeros((n, s), dtype=bool)
    mask[0, -2:] = True
    mask[-1, -1] = True
    return mask


nn = torch.nn
CASES = [
    # affine and shape layers
    Case("linear", fnn.Linear(3, 4, dtype=F64), lambda: nn.Linear(3, 4), normal(5, 3)),
    Case("linear-nobias-3d", fnn.Linear(3, 4, bias=False, dtype=F64),
         lambda: nn.Linear(3, 4, bias=False), normal(2, 5, 3)),
    Case("bilinear", fnn.Bilinear(3, 5, 4, dtype=F64), lambda: nn.Bilinear(3, 5, 4),
         lambda rng: (rng.standard_normal((6, 3)), rng.standard_normal((6, 5)))),
    Case("identity", fnn.Identity(), lambda: nn.Identity(), normal(2, 3)),
    Case("flatten", fnn.Flatten(), lambda: nn.Flatten(), normal(2, 3, 4, 5)),
    Case("flatten-0-1", fnn.Flatten(0, 1), lambda: nn.Flatten(0, 1), normal(2, 3, 4)),
    # convolutions
    Case("conv1d", fnn.Conv1d(3, 4, 3, stride=2, padding=1, dtype=F64),
         lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), normal(2, 3, 11)),
    Case("conv1d-groups-dilation-nobias", fnn.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False, dtype=F64),
         lambda: nn.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False), normal(2, 4, 12)),
    Case("conv1d-same-circular", fnn.Conv1d(3, 2, 4, padding="same", padding_mode="circular", dtype=F64),
         lambda: nn.Conv1d(3, 2, 4, padding="same", padding_mode="circular"), normal(2, 3, 9)),
    Case("conv2d", fnn.Conv2d(3, 5, 3, padding=1, dtype=F64),
         lambda: nn.Conv2d(3, 5, 3, padding=1), normal(2, 3, 7, 6)),
    Case("conv2d-stride-rect", fnn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dtype=F64),
         lambda: nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0)), normal(3, 2, 8, 7)),
    Case("conv2d-groups-same-dilation", fnn.Conv2d(4, 4, 3, padding="same", dilation=2, groups=4, dtype=F64),
         lambda: nn.Conv2d(4, 4, 3, padding="same", dilation=2, groups=4), normal(2, 4, 8, 8)),
    Case("conv2d-reflect", fnn.Conv2d(2, 3, 3, padding=2, padding_mode="reflect", dtype=F64),
         lambda: nn.Conv2d(2, 3, 3, padding=2, padding_mode="reflect"), normal(2, 2, 6, 5)),
    Case("conv2d-replicate-unbatched", fnn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate", dtype=F64),
         lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), normal(2, 6, 5)),
    Case("conv3d", fnn.Conv3d(2, 3, 2, dtype=F64), lambda: nn.Conv3d(2, 3, 2), normal(2, 2, 4, 3, 4)),
    Case("conv_transpose1d", fnn.ConvTranspose1d(3, 2, 3, stride=2, dtype=F64),
         lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), normal(2, 3, 5)),
    Case("conv_transpose2d", fnn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, dtype=F64),
         lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), normal(2, 3, 5, 4)),
    Case("conv_transpose2d-groups-dilation", fnn.ConvTranspose2d(4, 6, 2, groups=2, dilation=2, bias=False, dtype=F64),
         lambda: nn.ConvTranspose2d(4, 6, 2, groups=2, dilation=2, bias=False), normal(2, 4, 4, 4)),
    Case("conv_transpose2d-output_size", fnn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=F64),
         lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), normal(1, 2, 4, 4),
         kwargs={"output_size": (8, 8)}),
    # pooling
    Case("max_pool1d", fnn.MaxPool1d(3, stride=2, padding=1), lambda: nn.MaxPool1d(3, 2, 1), normal(2, 3, 10)),
    Case("max_pool2d", fnn.MaxPool2d(2), lambda: nn.MaxPool2d(2), normal(2, 3, 6, 7)),
    Case("max_pool2d-pad-ceil", fnn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
         lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), normal(2, 2, 8, 7)),
    Case("avg_pool1d", fnn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
         lambda: nn.AvgPool1d(3, 2, 1, count_include_pad=False), normal(2, 3, 9)),
    Case("avg_pool2d", fnn.AvgPool2d(2), lambda: nn.AvgPool2d(2), normal(2, 3, 6, 6)),
    Case("avg_pool2d-pad", fnn.AvgPool2d(3, stride=2, padding=1), lambda: nn.AvgPool2d(3, 2, 1),
         normal(2, 2, 7, 6)),
    Case("adaptive_avg_pool2d", fnn.AdaptiveAvgPool2d((3, 2)), lambda: nn.AdaptiveAvgPool2d((3, 2)),
         normal(2, 3, 7, 5)),
    # normalisation (BatchNorm has its own tests below)
    Case("layer_norm", fnn.LayerNorm(6, dtype=F64), lambda: nn.LayerNorm(6), normal(3, 4, 6)),
    Case("layer_norm-2d-nobias", fnn.LayerNorm((4, 6), bias=False, dtype=F64),
         lambda: nn.LayerNorm((4, 6), bias=False), normal(3, 4, 6)),
    Case("layer_norm-noaffine", fnn.LayerNorm(6, elementwise_affine=False, eps=1e-3, dtype=F64),
         lambda: nn.LayerNorm(6, elementwise_affine=False, eps=1e-3), normal(3, 6)),
    Case("group_norm", fnn.GroupNorm(2, 6, dtype=F64), lambda: nn.GroupNorm(2, 6), normal(3, 6, 4, 3)),
    Case("group_norm-noaffine", fnn.GroupNorm(3, 6, affine=False, dtype=F64),
         lambda: nn.GroupNorm(3, 6, affine=False), normal(3, 6, 5)),
    Case("rms_norm", fnn.RMSNorm(6, dtype=F64), lambda: nn.RMSNorm(6), normal(3, 4, 6)),
    Case("rms_norm-eps-2d", fnn.RMSNorm((4, 6), eps=1e-3, dtype=F64), lambda: nn.RMSNorm((4, 6), eps=1e-3),
         normal(3, 4, 6)),
    Case("rms_norm-noaffine", fnn.RMSNorm(6, elementwise_affine=False, dtype=F64),
         lambda: nn.RMSNorm(6, elementwise_affine=False), normal(3, 6)),
    # activations
    Case("relu", fnn.ReLU(), lambda: nn.ReLU(), normal(4, 5)),
    Case("leaky_relu", fnn.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2), normal(4, 5)),
    Case("gelu-tanh", fnn.GELU("tanh"), lambda: nn.GELU("tanh"), normal(4, 5)),
    Case("log_softmax", fnn.LogSoftmax(1), lambda: nn.LogSoftmax(1), normal(4, 5)),
    # recurrent
    Case("rnn", fnn.RNN(3, 5, dtype=F64), lambda: nn.RNN(3, 5), normal(4, 2, 3)),
    Case("rnn-relu-2layers-bidir-hx", fnn.RNN(3, 4, 2, "relu", bidirectional=True, dtype=F64),
         lambda: nn.RNN(3, 4, 2, "relu", bidirectional=True),
         lambda rng: (rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 4)))),
    Case("lstm", fnn.LSTM(3, 5, dtype=F64), lambda: nn.LSTM(3, 5), normal(4, 2, 3)),
    Case("lstm-2layers-bidir-batch_first-hx", fnn.LSTM(3, 4, 2, batch_first=True, bidirectional=True, dtype=F64),
         lambda: nn.LSTM(3, 4, 2, batch_first=True, bidirectional=True),
         lambda rng: (rng.standard_normal((2, 5, 3)),
                      (rng.standard_normal((4, 2, 4)), rng.standard_normal((4, 2, 4))))),
    Case("lstm-proj-nobias-unbatched", fnn.LSTM(3, 5, 2, bias=False, proj_size=2, dtype=F64),
         lambda: nn.LSTM(3, 5, 2, bias=False, proj_size=2), normal(4, 3)),
    Case("gru", fnn.GRU(3, 5, dtype=F64), lambda: nn.GRU(3, 5), normal(4, 2, 3)),
    Case("gru-2layers-bidir-batch_first-hx", fnn.GRU(3, 4, 2, batch_first=True, bidirectional=True, dtype=F64),
         lambda: nn.GRU(3, 4, 2, batch_first=True, bidirectional=True),
         lambda rng: (rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 2, 4)))),
    # attention
    Case("mha", fnn.MultiheadAttention(8, 2, dtype=F64), lambda: nn.MultiheadAttention(8, 2),
         lambda rng: tuple(rng.standard_normal((5, 3, 8)) for _ in range(3))),
    Case("mha-batch_first-cross-masks", fnn.MultiheadAttention(8, 4, batch_first=True, dtype=F64),
         lambda: nn.MultiheadAttention(8, 4, batch_first=True),
         lambda rng: (rng.standard_normal((3, 4, 8)),) + tuple(rng.standard_normal((3, 6, 8)) for _ in range(2)),
         kwargs={"key_padding_mask": padding_mask(3, 6), "attn_mask": causal(4, 6)}),
    Case("mha-float-mask-per-head-weights", fnn.MultiheadAttention(6, 3, dtype=F64),
         lambda: nn.MultiheadAttention(6, 3),
         lambda rng: tuple(rng.standard_normal((4, 2, 6)) for _ in range(3)),
         kwargs={"attn_mask": np.random.default_rng(1).standard_normal((6, 4, 4)),
                 "average_attn_weights": False}),
    Case("mha-kdim-vdim-bias_kv-zero_attn", fnn.MultiheadAttention(
             8, 2, kdim=5, vdim=3, add_bias_kv=True, add_zero_attn=True, dtype=F64),
         lambda: nn.MultiheadAttention(8, 2, kdim=5, vdim=3, add_bias_kv=True, add_zero_attn=True),
         lambda rng: (rng.standard_normal((4, 2, 8)), rng.standard_normal((6, 2, 5)),
                      rng.standard_normal((6, 2, 3))),
         kwargs={"key_padding_mask": padding_mask(2, 6), "attn_mask": causal(4, 6)}),
    Case("mha-causal-noweights-nobias", fnn.MultiheadAttention(8, 2, bias=False, batch_first=True, dtype=F64),
         lambda: nn.MultiheadAttention(8, 2, bias=False, batch_first=True),
         lambda rng: (rng.standard_normal((2, 5, 8)),) * 3,
         kwargs={"need_weights": False, "is_causal": True},
         torch_kwargs={"attn_mask": causal(5)}),
    Case("mha-unbatched", fnn.MultiheadAttention(4, 2, dtype=F64), lambda: nn.MultiheadAttention(4, 2),
         lambda rng: tuple(rng.standard_normal((3, 4)) for _ in range(3))),
    # transformer layers (dropout 0: torch runs in training mode, which also avoids its fast path)
    Case("encoder-post-norm", fnn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=F64),
         lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), normal(5, 3, 8)),
    Case("encoder-pre-norm-gelu-causal-padding", fnn.TransformerEncoderLayer(
             8, 4, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, dtype=F64),
         lambda: nn.TransformerEncoderLayer(8, 4, 16, dropout=0.0, activation="gelu", batch_first=True,
                                            norm_first=True),
         normal(3, 5, 8), kwargs={"src_key_padding_mask": padding_mask(3, 5), "is_causal": True},
         torch_kwargs={"src_mask": causal(5)}),
    Case("encoder-nobias-src_mask", fnn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, bias=False, dtype=F64),
         lambda: nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, bias=False), normal(4, 2, 8),
         kwargs={"src_mask": np.random.default_rng(2).standard_normal((4, 4))}),
    Case("decoder-post-norm-masks", fnn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, dtype=F64),
         lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0),
         lambda rng: (rng.standard_normal((4, 2, 8)), rng.standard_normal((6, 2, 8))),
         kwargs={"tgt_mask": causal(4), "memory_key_padding_mask": padding_mask(2, 6),
                 "tgt_is_causal": True}),
    Case("decoder-pre-norm-batch_first", fnn.TransformerDecoderLayer(
             8, 4, 16, dropout=0.0, batch_first=True, norm_first=True, dtype=F64),
         lambda: nn.TransformerDecoderLayer(8, 4, 16, dropout=0.0, batch_first=True, norm_first=True),
         lambda rng: (rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 5, 8))),
         kwargs={"tgt_key_padding_mask": padding_mask(2, 4), "memory_mask": causal(4, 5)}),
    # containers
    Case("sequential", fnn.Sequential(fnn.Linear(4, 6, dtype=F64), fnn.Tanh(), fnn.Linear(6, 2, dtype=F64)),
         lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), normal(3, 4)),
    Case("sequential-nested-cnn", fnn.Sequential(
             fnn.Conv2d(1, 3, 3, dtype=F64), fnn.ReLU(), fnn.MaxPool2d(2),
             fnn.Sequential(fnn.Flatten(), fnn.Linear(12, 2, dtype=F64))),
         lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Sequential(nn.Flatten(), nn.Linear(12, 2))),
         normal(2, 1, 6, 6)),
]


def _run_fnn(case, params, inputs):
    return case.layer.apply(params, *inputs, **case.kwargs, **case.fnn_kwargs)


def _torch_module(case, params):
    torch.manual_seed(0)
    module = case.module().double().train()
    module.load_state_dict(torch_state_dict(params), strict=True)
    return module


def _run_torch(case, module, inputs):
    kwargs = {**case.kwargs, **case.torch_kwargs}
    kwargs = {k: to_torch(v) for k, v in kwargs.items()}
    return module(*[tree.map(to_torch, x) for x in inputs], **kwargs)


def _diff_positions(case, inputs):
    if case.diff is not None:
        return case.diff
    return tuple(i for i, x in enumerate(inputs)
                 if all(np.asarray(a).dtype.kind == "f" for a in tree.leaves(x)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_init_matches_torch_state_dict(case):
    params = case.layer.init(KEY)
    torch.manual_seed(0)
    expected = {k: tuple(v.shape) for k, v in case.module().state_dict().items()}
    got = {k: v.shape for k, v in fnn.io.to_torch_state_dict(params).items()}
    assert got == expected
    assert tree.map(np.shape, params) == case.layer.param_shapes()
    assert all(a.dtype == F64 for a in tree.leaves(params))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_apply_rejects_params_of_other_shapes(case):
    """The shapes init promises are exactly the shapes apply accepts, leaf by leaf."""
    params = case.layer.init(KEY)
    inputs = case.inputs(np.random.default_rng(0))
    _run_fnn(case, params, inputs)
    names = fnn.utils.flatten_names(params)
    for name in names:
        broken = {n: (np.zeros(np.shape(v) + (1,)) if n == name else v) for n, v in names.items()}
        with pytest.raises(ValueError, match=f"{name!r} has shape"):
            _run_fnn(case, fnn.utils.unflatten_names(broken), inputs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward_and_gradients_match_torch(case, rng):
    params = case.layer.init(KEY)
    inputs = case.inputs(rng)
    module = _torch_module(case, params)
    got = fnn_leaves(_run_fnn(case, params, inputs))
    expected = torch_leaves(_run_torch(case, module, inputs))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-10)

    # gradients of sum_i <ct_i, out_i> with respect to the params and the float inputs
    cts = [rng.standard_normal(np.shape(e)) for e in expected]
    positions = _diff_positions(case, inputs)

    def loss(params, *moving):
        full = list(inputs)
        for i, m in zip(positions, moving):
            full[i] = m
        outs = tree.leaves(_run_fnn(case, params, full))
        return sum(fgrad.numpy.sum(o * c) for o, c in zip(outs, cts))

    grads = fgrad.grad(loss, argnums=tuple(range(1 + len(positions))))(
        params, *[inputs[i] for i in positions])

    t_inputs = [tree.map(to_torch, x) for x in inputs]
    for i in positions:
        for t in tree.leaves(t_inputs[i]):
            t.requires_grad_(True)
    kwargs = {k: to_torch(v) for k, v in {**case.kwargs, **case.torch_kwargs}.items()}
    outs = [o for o in _flat_tensors(module(*t_inputs, **kwargs))]
    sum((o * torch.from_numpy(c)).sum() for o, c in zip(outs, cts)).backward()
    torch_grads = {name: p.grad for name, p in module.named_parameters()}
    for name, g in fnn.utils.flatten_names(grads[0]).items():
        expected_grad = torch_grads[name]
        expected_grad = np.zeros(g.shape) if expected_grad is None else expected_grad.numpy()
        np.testing.assert_allclose(g, expected_grad, rtol=1e-8, atol=1e-10, err_msg=name)
    for i, g in zip(positions, grads[1:]):
        for gi, t in zip(tree.leaves(g), tree.leaves(t_inputs[i])):
            np.testing.assert_allclose(gi, t.grad.numpy(), rtol=1e-8, atol=1e-10)


def _flat_tensors(out):
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flat_tensors(o)]
    return [out]
