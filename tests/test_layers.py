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
    # embedding (integer inputs: only the table is differentiated)
    Case("embedding", fnn.Embedding(7, 3, dtype=F64), lambda: nn.Embedding(7, 3),
         lambda rng: (rng.integers(0, 7, (4, 5)),)),
    Case("embedding-padding_idx-max_norm", fnn.Embedding(7, 3, padding_idx=-1, max_norm=1.0, dtype=F64),
         lambda: nn.Embedding(7, 3, padding_idx=-1, max_norm=1.0),
         lambda rng: (np.array([[0, 6, 2, 2], [6, 1, 0, 3]]),)),
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
    Case("rnn_cell-relu", fnn.RNNCell(3, 4, nonlinearity="relu", dtype=F64),
         lambda: nn.RNNCell(3, 4, nonlinearity="relu"),
         lambda rng: (rng.standard_normal((2, 3)), rng.standard_normal((2, 4)))),
    Case("lstm_cell", fnn.LSTMCell(3, 4, dtype=F64), lambda: nn.LSTMCell(3, 4),
         lambda rng: (rng.standard_normal((2, 3)), (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))))),
    Case("lstm_cell-nobias-unbatched-zero-state", fnn.LSTMCell(3, 4, bias=False, dtype=F64),
         lambda: nn.LSTMCell(3, 4, bias=False), normal(3)),
    Case("gru_cell", fnn.GRUCell(3, 4, dtype=F64), lambda: nn.GRUCell(3, 4), normal(5, 3)),
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


# --------------------------------------------------------------------------------------------
# BatchNorm: running statistics as state
# --------------------------------------------------------------------------------------------

BATCH_NORMS = [
    (fnn.BatchNorm1d, nn.BatchNorm1d, (8, 4)),
    (fnn.BatchNorm1d, nn.BatchNorm1d, (6, 4, 5)),
    (fnn.BatchNorm2d, nn.BatchNorm2d, (5, 4, 3, 3)),
    (fnn.BatchNorm3d, nn.BatchNorm3d, (3, 4, 2, 3, 2)),
]


@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("fnn_cls, torch_cls, shape", BATCH_NORMS, ids=["1d", "1d-3d", "2d", "3d"])
def test_batch_norm_train_and_eval_match_torch(fnn_cls, torch_cls, shape, momentum, rng):
    layer = fnn_cls(4, momentum=momentum, eps=1e-3, dtype=F64)
    params = {"weight": rng.uniform(0.5, 2, 4), "bias": rng.standard_normal(4)}
    state = layer.init_state()
    module = torch_cls(4, momentum=momentum, eps=1e-3).double()
    module.load_state_dict(torch_state_dict(params, state), strict=True)
    module.train()
    for _ in range(4):   # several steps: the running statistics must follow torch's step by step
        x = 3.0 + 2.0 * rng.standard_normal(shape)
        y, state = layer.apply(params, x, state=state, train=True)
        np.testing.assert_allclose(y, module(to_torch(x)).detach().numpy(), rtol=1e-10, atol=1e-10)
        buffers = {k: v.numpy() for k, v in module.state_dict().items() if k not in params}
        assert sorted(buffers) == sorted(state)
        for name, value in buffers.items():
            np.testing.assert_allclose(state[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
    assert state["num_batches_tracked"].dtype == np.int64

    module.eval()
    x = rng.standard_normal(shape)
    y, same_state = layer.apply(params, x, state=state)
    assert same_state is state
    np.testing.assert_allclose(y, module(to_torch(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_gradients_match_torch(train, rng):
    layer = fnn.BatchNorm2d(3, dtype=F64)
    params = {"weight": rng.uniform(0.5, 2, 3), "bias": rng.standard_normal(3)}
    state = {"running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2, 3),
             "num_batches_tracked": np.array(3)}
    x, ct = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal((4, 3, 3, 2))

    def loss(params, x):
        y, new_state = layer.apply(params, x, state=state, train=train)
        return fgrad.numpy.sum(y * ct), new_state

    (g_params, g_x), new_state = fgrad.grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    module = nn.BatchNorm2d(3).double()
    module.load_state_dict(torch_state_dict(params, state))
    module.train(train)
    xt = to_torch(x).requires_grad_(True)
    (module(xt) * to_torch(ct)).sum().backward()
    np.testing.assert_allclose(g_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name in params:
        np.testing.assert_allclose(g_params[name], getattr(module, name).grad.numpy(), rtol=1e-9)
    for name, value in new_state.items():   # the returned statistics are plain values
        np.testing.assert_allclose(value, module.state_dict()[name].numpy(), rtol=1e-12)


def test_batch_norm_without_running_stats_always_uses_the_batch(rng):
    layer = fnn.BatchNorm1d(4, track_running_stats=False, affine=False, dtype=F64)
    assert not layer.has_state and layer.init_state() == {} and layer.init(KEY) == {}
    module = nn.BatchNorm1d(4, track_running_stats=False, affine=False).double().eval()
    x = rng.standard_normal((6, 4))
    np.testing.assert_allclose(layer.apply({}, x), module(to_torch(x)).numpy(), rtol=1e-10)


def test_sequential_threads_state_key_and_train(rng):
    model = fnn.Sequential(fnn.Linear(3, 4, dtype=F64), fnn.BatchNorm1d(4, dtype=F64), fnn.ReLU(),
                           fnn.Dropout(0.5), fnn.Linear(4, 2, dtype=F64))
    assert model.has_state and model.takes_key
    params, state = model.init(KEY), model.init_state()
    assert sorted(state) == ["1"]
    x = rng.standard_normal((5, 3))
    y1, s1 = model.apply(params, x, state=state, key=fgrad.random.key(1), train=True)
    y2, _ = model.apply(params, x, state=state, key=fgrad.random.key(1), train=True)
    y3, _ = model.apply(params, x, state=state, key=fgrad.random.key(2), train=True)
    np.testing.assert_array_equal(y1, y2)          # same key, same dropout mask
    assert not np.array_equal(y1, y3)
    assert int(s1["1"]["num_batches_tracked"]) == 1
    # evaluation: no key needed; equals torch's eval forward with the updated running stats
    y_eval, s_eval = model.apply(params, x, state=s1)
    assert s_eval == s1
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5),
                           nn.Linear(4, 2)).double().eval()
    module.load_state_dict(torch_state_dict(params, s1), strict=True)
    np.testing.assert_allclose(y_eval, module(to_torch(x)).detach().numpy(), rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------

def test_dropout_is_inverted_bernoulli_and_keyed():
    x = np.ones((200, 500))
    drop = fnn.Dropout(0.3)
    y = drop.apply({}, x, key=fgrad.random.key(3), train=True)
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.005      # 100k draws: std of the fraction ~0.0015
    np.testing.assert_array_equal(y, drop.apply({}, x, key=fgrad.random.key(3), train=True))
    assert not np.array_equal(y, drop.apply({}, x, key=fgrad.random.key(4), train=True))
    assert drop.apply({}, x) is x                  # evaluation: the identity, no key needed
    # the gradient is the mask scaled by 1 / (1 - p)
    g = fgrad.grad(lambda v: fgrad.numpy.sum(drop.apply({}, v, key=fgrad.random.key(3), train=True)))(x)
    np.testing.assert_array_equal(g, y)


@pytest.mark.parametrize("layer, call", [
    (fnn.LSTM(3, 4, 2, dropout=0.5), lambda l, p, x, k: l.apply(p, x, key=k, train=True)[0]),
    (fnn.TransformerEncoderLayer(8, 2, 16, dropout=0.5),
     lambda l, p, x, k: l.apply(p, x, key=k, train=True)),
    (fnn.MultiheadAttention(8, 2, dropout=0.5),
     lambda l, p, x, k: l.apply(p, x, x, x, dropout_key=k, train=True)[0]),
], ids=["lstm", "encoder", "mha"])
def test_layers_with_dropout_are_random_only_when_training(layer, call, rng):
    params = layer.init(KEY)
    x = rng.standard_normal((5, 2, layer.input_size if isinstance(layer, fnn.LSTM) else 8)).astype(np.float32)
    a, b = call(layer, params, x, fgrad.random.key(0)), call(layer, params, x, fgrad.random.key(1))
    np.testing.assert_array_equal(a, call(layer, params, x, fgrad.random.key(0)))
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="key"):
        call(layer, params, x, None)


# --------------------------------------------------------------------------------------------
# Initial distributions: the same as torch's defaults
# --------------------------------------------------------------------------------------------

def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    points = np.concatenate([a, b])
    return np.abs(np.searchsorted(a, points, side="right") / a.size
                  - np.searchsorted(b, points, side="right") / b.size).max()


INIT_CASES = [
    (fnn.Linear(300, 200), lambda: nn.Linear(300, 200)),
    (fnn.Bilinear(20, 30, 40), lambda: nn.Bilinear(20, 30, 40)),
    (fnn.Conv2d(16, 32, 3), lambda: nn.Conv2d(16, 32, 3)),
    (fnn.Conv1d(8, 16, 5, groups=4), lambda: nn.Conv1d(8, 16, 5, groups=4)),
    (fnn.ConvTranspose2d(16, 8, 3, groups=2), lambda: nn.ConvTranspose2d(16, 8, 3, groups=2)),
    (fnn.Embedding(500, 40, padding_idx=3), lambda: nn.Embedding(500, 40, padding_idx=3)),
    (fnn.LSTM(40, 64, 2, bidirectional=True, proj_size=16),
     lambda: nn.LSTM(40, 64, 2, bidirectional=True, proj_size=16)),
    (fnn.GRU(40, 64), lambda: nn.GRU(40, 64)),
    (fnn.MultiheadAttention(64, 4, add_bias_kv=True), lambda: nn.MultiheadAttention(64, 4, add_bias_kv=True)),
    (fnn.MultiheadAttention(64, 4, kdim=32, vdim=48), lambda: nn.MultiheadAttention(64, 4, kdim=32, vdim=48)),
    (fnn.TransformerDecoderLayer(32, 4, 64), lambda: nn.TransformerDecoderLayer(32, 4, 64)),
    (fnn.GroupNorm(4, 16), lambda: nn.GroupNorm(4, 16)),
    (fnn.RMSNorm(16), lambda: nn.RMSNorm(16)),
]


@pytest.mark.parametrize("layer, module", INIT_CASES, ids=[type(c[0]).__name__ for c in INIT_CASES])
def test_init_distributions_match_torch(layer, module):
    """Per leaf: constant leaves are equal; random ones pass a two-sample KS test at the 0.1%
    level against torch's draws, with close standard deviations and means. (The exact bounds
    and scales of each initialiser are checked in test_init_io.py.)"""
    params = fnn.io.to_torch_state_dict(layer.init(fgrad.random.key(1)))
    torch.manual_seed(1)
    reference = {k: v.detach().numpy() for k, v in module().state_dict().items()}
    assert sorted(params) == sorted(reference)
    for name, ours in params.items():
        theirs = reference[name]
        assert ours.dtype == theirs.dtype == np.float32, name
        if np.all(theirs == theirs.flat[0]):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
            continue
        n, m = ours.size, theirs.size
        assert ks_statistic(ours, theirs) < 1.95 * math.sqrt((n + m) / (n * m)), name
        if n >= 100:
            np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.1, err_msg=name)
            np.testing.assert_allclose(ours.mean(), theirs.mean(), atol=0.2 * theirs.std(), err_msg=name)


def test_embedding_padding_row_starts_at_zero():
    weight = fnn.Embedding(5, 3, padding_idx=-2).init(KEY)["weight"]
    np.testing.assert_array_equal(weight[3], 0.0)
    assert np.all(weight[[0, 1, 2, 4]] != 0)


def test_init_is_deterministic_and_vmappable():
    layer = fnn.Linear(4, 3)
    keys = fgrad.random.split(KEY, 5)
    ensemble = fgrad.vmap(layer.init)(keys)
    assert ensemble["weight"].shape == (5, 3, 4) and ensemble["bias"].shape == (5, 3)
    for i in range(5):
        single = layer.init(keys[i])
        np.testing.assert_array_equal(ensemble["weight"][i], single["weight"])
    assert not np.array_equal(ensemble["weight"][0], ensemble["weight"][1])


# --------------------------------------------------------------------------------------------
# torch state_dict round trips
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES[::4], ids=[c.id for c in CASES[::4]])
def test_state_dict_round_trip_through_torch(case):
    params = case.layer.init(KEY)
    module = _torch_module(case, params)
    back = fnn.io.from_torch_state_dict(module.state_dict(), params)
    assert tree.structure(back) == tree.structure(params)
    for a, b in zip(tree.leaves(back), tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_torch_initialised_module_loads_with_buffers_and_dtype_cast(rng):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())   # float32
    module.train()
    module(torch.randn(4, 2, 5, 5))                                           # move the statistics
    model = fnn.Sequential(fnn.Conv2d(2, 3, 3, dtype=F64), fnn.BatchNorm2d(3, dtype=F64), fnn.ReLU())
    params, state = fnn.io.from_torch_state_dict(module.state_dict(), model.init(KEY), model.init_state())
    assert params["0"]["weight"].dtype == F64 and state["1"]["num_batches_tracked"] == 1
    module.double().eval()
    x = rng.standard_normal((2, 2, 5, 5))
    y, _ = model.apply(params, x, state=state)
    np.testing.assert_allclose(y, module(to_torch(x)).detach().numpy(), rtol=1e-6)


def test_from_torch_state_dict_lists_every_difference():
    like = fnn.Sequential(fnn.Linear(3, 4), fnn.Linear(4, 2)).init(KEY)
    sd = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2, bias=False), nn.Linear(2, 2)).state_dict()
    with pytest.raises(ValueError) as err:
        fnn.io.from_torch_state_dict(sd, like)
    message = str(err.value)
    assert "missing from the state_dict: '1.bias'" in message
    assert "in the state_dict but not in the template: '2.weight', '2.bias'" in message
    assert "shape of '0.weight': the state_dict (5, 3), the template (4, 3)" in message
    assert "shape of '1.weight'" in message


# --------------------------------------------------------------------------------------------
# Errors name the layer, what it expected and what it got
# --------------------------------------------------------------------------------------------

ERRORS = [
    ("conv2d rank", lambda: fnn.Conv2d(3, 4, 3).apply(fnn.Conv2d(3, 4, 3).init(KEY), np.zeros((8, 8))),
     r"Conv2d\(in_channels=3.*expected input of shape \(C, H, W\) or \(N, C, H, W\), got shape \(8, 8\)"),
    ("conv2d channels", lambda: fnn.Conv2d(3, 4, 3).apply(fnn.Conv2d(3, 4, 3).init(KEY), np.zeros((2, 4, 8, 8))),
     r"Conv2d.*size 4 at axis -3 \(shape \(2, 4, 8, 8\)\), expected in_channels=3"),
    ("linear features", lambda: fnn.Linear(3, 2).apply(fnn.Linear(3, 2).init(KEY), np.zeros((5, 4))),
     r"Linear\(in_features=3.*size 4 at axis -1 .*expected in_features=3"),
    ("missing param", lambda: fnn.Linear(3, 2).apply({"weight": np.zeros((2, 3))}, np.zeros(3)),
     r"Linear.*params do not match the layer: missing 'bias'"),
    ("extra param", lambda: fnn.Linear(3, 2, bias=False).apply(
        {"weight": np.zeros((2, 3)), "bias": np.zeros(2)}, np.zeros(3)), r"unexpected 'bias'"),
    ("nested param", lambda: fnn.Sequential(fnn.Linear(3, 2), fnn.Linear(2, 1)).apply(
        {"0": {"weight": np.zeros((2, 3)), "bias": np.zeros(2)}, "1": {"weight": np.zeros((1, 3)),
                                                                      "bias": np.zeros(1)}},
        np.zeros(3)), r"Sequential\(Linear, Linear\).*'1.weight' has shape \(1, 3\), expected \(1, 2\)"),
    ("params not a dict", lambda: fnn.Linear(3, 2).apply(np.zeros((2, 3)), np.zeros(3)),
     r"params must be the dict returned by init\(key\), got ndarray"),
    ("lstm hx", lambda: fnn.LSTM(3, 4).apply(fnn.LSTM(3, 4).init(KEY), np.zeros((5, 2, 3)), np.zeros((1, 2, 4))),
     r"LSTM.*hx must have shape \(\(1, 2, 4\), \(1, 2, 4\)\)"),
    ("lstm input", lambda: fnn.LSTM(3, 4).apply(fnn.LSTM(3, 4).init(KEY), np.zeros((5, 2, 2))),
     r"expected input_size=3"),
    ("mha mask", lambda: fnn.MultiheadAttention(4, 2).apply(
        fnn.MultiheadAttention(4, 2).init(KEY), *(np.zeros((3, 2, 4)),) * 3, attn_mask=np.zeros((2, 3))),
     r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\), got \(2, 3\)"),
    ("mha padding", lambda: fnn.MultiheadAttention(4, 2).apply(
        fnn.MultiheadAttention(4, 2).init(KEY), *(np.zeros((3, 2, 4)),) * 3,
        key_padding_mask=np.zeros((3, 2), bool)), r"key_padding_mask must have shape \(2, 3\)"),
    ("batchnorm state", lambda: fnn.BatchNorm2d(3).apply(fnn.BatchNorm2d(3).init(KEY), np.zeros((2, 3, 4, 4))),
     r"BatchNorm2d.*needs state=.*init_state\(\)"),
    ("batchnorm rank", lambda: fnn.BatchNorm2d(3).apply(fnn.BatchNorm2d(3).init(KEY), np.zeros((2, 3)),
                                                        state=fnn.BatchNorm2d(3).init_state()),
     r"expected input of shape \(N, C, H, W\), got shape \(2, 3\)"),
    ("dropout key", lambda: fnn.Dropout(0.1).apply({}, np.zeros(3), train=True), r"Dropout.*needs key="),
    ("embedding dtype", lambda: fnn.Embedding(4, 2).apply(fnn.Embedding(4, 2).init(KEY), np.zeros(3)),
     r"Embedding.*ids must be integers, got dtype float64"),
    ("layernorm shape", lambda: fnn.LayerNorm(4).apply(fnn.LayerNorm(4).init(KEY), np.zeros((2, 3))),
     r"LayerNorm.*expected input of shape \(\*, 4\)"),
    ("conv_transpose output_size", lambda: fnn.ConvTranspose2d(2, 3, 3, stride=2).apply(
        fnn.ConvTranspose2d(2, 3, 3, stride=2).init(KEY), np.zeros((1, 2, 4, 4)), output_size=(12, 9)),
     r"ConvTranspose2d.*output_size \(12, 9\) must be between \(9, 9\) and \(10, 10\)"),
    ("conv groups", lambda: fnn.Conv2d(3, 4, 3, groups=2), r"Conv2d: groups=2 must divide in_channels=3"),
    ("conv padding", lambda: fnn.Conv1d(3, 4, 3, padding="full"), r"padding must be an int, a tuple"),
    ("mha heads", lambda: fnn.MultiheadAttention(6, 4), r"embed_dim=6 must be divisible by num_heads=4"),
    ("sequential item", lambda: fnn.Sequential(fnn.Linear(2, 2), np.tanh),
     r"Sequential: layer 1 must be an fnn layer, got ufunc; wrap plain functions in fnn.Lambda"),
    ("dtype", lambda: fnn.Linear(2, 2, dtype=np.int32), r"Linear: dtype must be a floating dtype, got int32"),
]


@pytest.mark.parametrize("make, pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_are_clear(make, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        make()


def test_layers_are_immutable_hashable_values():
    layer = fnn.Conv2d(3, 4, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.in_channels = 5
    assert layer == fnn.Conv2d(3, 4, (3, 3)) and hash(layer) == hash(fnn.Conv2d(3, 4, (3, 3)))
    assert layer.kernel_size == (3, 3) and layer.padding == (0, 0)
    assert fnn.Linear(2, 2, dtype="float64").dtype == np.dtype(np.float64)


# --------------------------------------------------------------------------------------------
# Hypothesis: drawn hyper-parameters and shapes
# --------------------------------------------------------------------------------------------

def _check_against_torch(layer, module, inputs, kwargs=None):
    case = Case("drawn", layer, module, lambda rng: inputs, kwargs or {})
    params = layer.init(KEY)
    module = _torch_module(case, params)
    got, expected = fnn_leaves(_run_fnn(case, params, inputs)), torch_leaves(_run_torch(case, module, inputs))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-10)


@settings(max_examples=settings.default.max_examples)
@given(batch=st.integers(1, 3), c_in=st.sampled_from([2, 4]), c_out=st.sampled_from([2, 4]),
       kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1),
       dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]), size=st.integers(6, 9),
       transposed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_drawn_convolutions_match_torch(batch, c_in, c_out, kernel, stride, padding, dilation, groups,
                                        size, transposed, seed):
    x = np.random.default_rng(seed).standard_normal((batch, c_in, size, size - 1))
    if transposed:
        layer = fnn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, groups=groups, dilation=dilation,
                                    dtype=F64)
        module = lambda: nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, groups=groups,  # noqa: E731
                                            dilation=dilation)
    else:
        layer = fnn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, dtype=F64)
        module = lambda: nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)  # noqa: E731
    _check_against_torch(layer, module, (x,))


@settings(max_examples=settings.default.max_examples)
@given(kind=st.sampled_from(["RNN", "LSTM", "GRU"]), length=st.integers(1, 4), batch=st.integers(1, 3),
       layers=st.integers(1, 2), bidirectional=st.booleans(), batch_first=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_drawn_recurrent_layers_match_torch(kind, length, batch, layers, bidirectional, batch_first, seed):
    shape = (batch, length, 3) if batch_first else (length, batch, 3)
    x = np.random.default_rng(seed).standard_normal(shape)
    layer = getattr(fnn, kind)(3, 4, layers, batch_first=batch_first, bidirectional=bidirectional, dtype=F64)
    _check_against_torch(layer, lambda: getattr(nn, kind)(3, 4, layers, batch_first=batch_first,
                                                          bidirectional=bidirectional), (x,))


@settings(max_examples=settings.default.max_examples)
@given(target=st.integers(1, 4), source=st.integers(1, 5), batch=st.integers(1, 3),
       heads=st.sampled_from([1, 2, 4]), pad=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_drawn_attention_matches_torch(target, source, batch, heads, pad, masked, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((target, batch, 8)), rng.standard_normal((source, batch, 8)), \
        rng.standard_normal((source, batch, 8))
    kwargs = {}
    if pad:    # hide the last key of the first example (at least one key stays visible)
        hidden = np.zeros((batch, source), bool)
        hidden[0, -1] = source > 1
        kwargs["key_padding_mask"] = np.where(hidden, -np.inf, 0.0)     # a float padding mask
    if masked:
        kwargs["attn_mask"] = rng.standard_normal((target, source))
    _check_against_torch(fnn.MultiheadAttention(8, heads, dtype=F64), lambda: nn.MultiheadAttention(8, heads),
                         (q, k, v), kwargs)


# --------------------------------------------------------------------------------------------
# Models written as functions over a params dict; transforms through layers
# --------------------------------------------------------------------------------------------

class TorchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


NET = {"conv": fnn.Conv2d(1, 4, 3, dtype=F64), "bn": fnn.BatchNorm2d(4, dtype=F64),
       "fc": fnn.Linear(4, 3, dtype=F64)}


def net(params, state, x, train=False):
    h = NET["conv"].apply(params["conv"], x)
    h, bn_state = NET["bn"].apply(params["bn"], h, state=state["bn"], train=train)
    return NET["fc"].apply(params["fc"], F.relu(h).mean(axis=(2, 3))), {"bn": bn_state}


def test_a_model_written_as_a_function_matches_the_torch_module(rng):
    params, state = fnn.init_params(NET, KEY), fnn.init_states(NET)
    assert sorted(state) == ["bn"]
    module = TorchNet().double()
    module.load_state_dict(torch_state_dict(params, state), strict=True)   # same names as torch
    x = rng.standard_normal((5, 1, 6, 6))
    y, new_state = net(params, state, x, train=True)
    module.train()
    np.testing.assert_allclose(y, module(to_torch(x)).detach().numpy(), rtol=1e-10)
    module.eval()
    np.testing.assert_allclose(net(params, new_state, x)[0], module(to_torch(x)).detach().numpy(), rtol=1e-10)
    # the layers' subkeys are independent: no two layers start from the same draws
    assert not np.allclose(params["conv"]["bias"][:3], params["fc"]["bias"])


def test_per_example_gradients_through_layers_with_vmap(rng):
    """vmap(grad) over examples: each example is an unbatched input to the layers."""
    params, state = fnn.init_params(NET, KEY), fnn.init_states(NET)
    x, labels = rng.standard_normal((4, 1, 6, 6)), rng.integers(0, 3, 4)
    model = fnn.Sequential(NET["conv"], fnn.ReLU(), fnn.Flatten(0), fnn.Linear(64, 3, dtype=F64))
    seq_params = model.init(KEY)

    def loss(params, x, label):
        return F.cross_entropy(model.apply(params, x), label)

    per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(seq_params, x, labels)
    for i in range(4):
        single = fgrad.grad(loss)(seq_params, x[i], labels[i])
        for a, b in zip(tree.leaves(per_example), tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-12)
    # and vmap over a batch of inputs equals the batched call, for a layer with state
    y_vmapped = fgrad.vmap(lambda xi: net(params, state, xi[None])[0][0])(x)
    np.testing.assert_allclose(y_vmapped, net(params, state, x)[0], rtol=1e-10)


def test_lambda_and_identity_layers_in_sequential(rng):
    model = fnn.Sequential(fnn.Lambda(lambda x: 2 * x), fnn.Identity(), fnn.Linear(3, 1, dtype=F64))
    params = model.init(KEY)
    assert params["0"] == {} and params["1"] == {}
    x = rng.standard_normal((2, 3))
    np.testing.assert_allclose(model.apply(params, x), 2 * x @ params["2"]["weight"].T + params["2"]["bias"])
    assert len(model) == 3 and isinstance(model[2], fnn.Linear)
