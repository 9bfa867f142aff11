"""examples/transformer.py's model, loss, schedule and decoding against torch and first principles.

* The layers and stacks against ``torch.nn.TransformerEncoderLayer``,
  ``nn.TransformerDecoderLayer`` and ``nn.Transformer`` (post-LN, ReLU, dropout 0,
  ``batch_first=True``) loaded with the same weights, in float64, with source and target padding
  and the causal mask: the outputs, and the gradients of every parameter and every input (of
  ``sum(out * cotangent)`` for a random cotangent), to ``rtol = 1e-10``. Both stack
  configurations: torch's ``nn.Transformer`` (a final LayerNorm on each stack,
  ``final_norm=True``) and the paper's (none: ``nn.TransformerEncoder/Decoder(norm=None)``).
* The whole model (shared embedding scaled by ``sqrt(d)``, sinusoids, tied output projection)
  against the same composition written in torch.
* The label-smoothed loss against ``torch.nn.functional.cross_entropy(label_smoothing=0.1,
  ignore_index=pad)``, value and gradient; the warm-up schedule against eq. 3 of the paper.
* Decoding: the cached decoder gives the teacher-forced logits; beam search with a beam of 1 is
  greedy search; a wide enough beam finds the exhaustive search's best sequence; padding a batch
  of sources changes no output.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fnn
import foptim
from examples import transformer as T

RTOL, ATOL = 1e-10, 1e-12
PAD, BOS, EOS = 0, 1, 2


def random_params(model, seed):
    """The model's params with every leaf replaced by noise (no zero biases or unit LayerNorm
    weights, which would hide a wrong derivative), float64."""
    rng = np.random.default_rng(seed)
    return fgrad.tree.map(lambda p: rng.normal(0.0, 0.4, p.shape),
                          model.init(fgrad.random.key(seed)))


def load(module, params):
    """``module`` (float64) with ``params``' leaves as its state_dict, by their dotted names."""
    module = module.double()
    state = {k: torch.from_numpy(np.array(v)) for k, v in fnn.utils.flatten_names(params).items()}
    assert set(state) == set(module.state_dict())
    module.load_state_dict(state)
    return module


def torch_value_and_grads(module, inputs, cotangent, **kwargs):
    """``module(*inputs, **kwargs)``, and the gradients of ``sum(out * cotangent)`` w.r.t. every
    parameter (by name) and every input."""
    tensors = [torch.from_numpy(np.array(x)).requires_grad_() for x in inputs]
    out = module(*tensors, **kwargs)
    (out * torch.from_numpy(cotangent)).sum().backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return out.detach().numpy(), grads, [t.grad.numpy() for t in tensors]


def assert_close(ours, theirs, what):
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=RTOL, atol=ATOL, err_msg=what)


def assert_grads_close(ours, theirs):
    ours = fnn.utils.flatten_names(ours)
    assert set(ours) == set(theirs)
    for name in theirs:
        assert_close(ours[name], theirs[name], name)


def right_padding(rng, batch, length):
    """``(batch, length)`` booleans, True at padding: row 0 full, the others of random lengths."""
    lengths = np.concatenate([[length], rng.integers(1, length + 1, batch - 1)])
    return np.arange(length)[None, :] >= lengths[:, None]


def causal(length):
    return torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)


SIZES = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "src_len": st.integers(1, 6), "tgt_len": st.integers(1, 5),
    "heads": st.sampled_from([1, 2, 4]), "seed": st.integers(0, 2 ** 16)})


def small_model(sizes, final_norm=False, layers=1, vocab=11):
    return T.Transformer(vocab, d_model=8, nhead=sizes["heads"], num_encoder_layers=layers,
                         num_decoder_layers=layers, dim_feedforward=12, dropout=0.0,
                         final_norm=final_norm, dtype=np.float64)


def torch_layer_options(heads):
    return dict(d_model=8, nhead=heads, dim_feedforward=12, dropout=0.0, activation="relu",
                batch_first=True, norm_first=False)


# --------------------------------------------------------------------------------------------
# Layers and stacks vs torch
# --------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=15)
@given(SIZES)
def test_encoder_layer_matches_torch(sizes):
    rng = np.random.default_rng(sizes["seed"])
    model = small_model(sizes)
    params = random_params(model, sizes["seed"])["transformer"]["encoder"]["layers"]["0"]
    b, s, h = sizes["batch"], sizes["src_len"], sizes["heads"]
    x, pad = rng.normal(size=(b, s, 8)), right_padding(rng, b, s)
    cotangent = rng.normal(size=(b, s, 8))

    def ours(p, x):
        out = T.encoder_layer(p, x, T.padding_bias(pad, np.float64), h, 1e-5, T.Dropout())
        return (out * cotangent).sum(), out

    (_, out), grads = fgrad.value_and_grad(ours, argnums=(0, 1), has_aux=True)(params, x)
    layer = load(torch.nn.TransformerEncoderLayer(**torch_layer_options(h)), params)
    t_out, t_grads, (t_x,) = torch_value_and_grads(layer, [x], cotangent,
                                                   src_key_padding_mask=torch.from_numpy(pad))
    assert_close(out, t_out, "output")
    assert_grads_close(grads[0], t_grads)
    assert_close(grads[1], t_x, "input")


@settings(deadline=None, max_examples=15)
@given(SIZES)
def test_decoder_layer_matches_torch(sizes):
    rng = np.random.default_rng(sizes["seed"])
    model = small_model(sizes)
    params = random_params(model, sizes["seed"])["transformer"]["decoder"]["layers"]["0"]
    b, s, t, h = sizes["batch"], sizes["src_len"], sizes["tgt_len"], sizes["heads"]
    y, memory = rng.normal(size=(b, t, 8)), rng.normal(size=(b, s, 8))
    src_pad, tgt_pad = right_padding(rng, b, s), right_padding(rng, b, t)
    cotangent = rng.normal(size=(b, t, 8))

    def ours(p, y, memory):
        self_bias = T.causal_bias(t, np.float64) + T.padding_bias(tgt_pad, np.float64)
        memory_kv = T.keys_values(p["multihead_attn"], memory, h)
        out, _ = T.decoder_layer(p, y, memory_kv, self_bias, T.padding_bias(src_pad, np.float64),
                                 h, 1e-5, T.Dropout())
        return (out * cotangent).sum(), out

    (_, out), grads = fgrad.value_and_grad(ours, argnums=(0, 1, 2), has_aux=True)(params, y,
                                                                                  memory)
    layer = load(torch.nn.TransformerDecoderLayer(**torch_layer_options(h)), params)
    t_out, t_grads, (t_y, t_memory) = torch_value_and_grads(
        layer, [y, memory], cotangent, tgt_mask=causal(t), tgt_is_causal=True,
        tgt_key_padding_mask=torch.from_numpy(tgt_pad),
        memory_key_padding_mask=torch.from_numpy(src_pad))
    assert_close(out, t_out, "output")
    assert_grads_close(grads[0], t_grads)
    assert_close(grads[1], t_y, "target input")
    assert_close(grads[2], t_memory, "memory")


def torch_stack(sizes, layers, final_norm):
    """``nn.Transformer`` (``final_norm``: its own final LayerNorms) or the paper's stacks,
    ``nn.TransformerEncoder/Decoder(norm=None)`` inside an ``nn.Transformer``."""
    options = torch_layer_options(sizes["heads"])
    if final_norm:
        return torch.nn.Transformer(num_encoder_layers=layers, num_decoder_layers=layers,
                                    **options)
    encoder = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**options), layers,
                                          norm=None, enable_nested_tensor=False)
    decoder = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**options), layers,
                                          norm=None)
    return torch.nn.Transformer(custom_encoder=encoder, custom_decoder=decoder, **options)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("final_norm", [True, False], ids=["nn.Transformer", "paper"])
@settings(deadline=None, max_examples=10)
@given(sizes=SIZES)
def test_encoder_decoder_stack_matches_torch(final_norm, sizes):
    rng = np.random.default_rng(sizes["seed"])
    model = small_model(sizes, final_norm, layers=2)
    params = random_params(model, sizes["seed"])["transformer"]
    b, s, t, h = sizes["batch"], sizes["src_len"], sizes["tgt_len"], sizes["heads"]
    x, y = rng.normal(size=(b, s, 8)), rng.normal(size=(b, t, 8))
    src_pad, tgt_pad = right_padding(rng, b, s), right_padding(rng, b, t)
    cotangent = rng.normal(size=(b, t, 8))

    def ours(p, x, y):
        drop = T.Dropout()
        memory = T.encode_stack(p, x, src_pad, h, 1e-5, drop)
        out, _ = T.decode_stack(p, y, memory, src_pad, tgt_pad, h, 1e-5, drop)
        return (out * cotangent).sum(), out

    (_, out), grads = fgrad.value_and_grad(ours, argnums=(0, 1, 2), has_aux=True)(params, x, y)
    stack = load(torch_stack(sizes, 2, final_norm), params)
    t_out, t_grads, (t_x, t_y) = torch_value_and_grads(
        stack, [x, y], cotangent, tgt_mask=causal(t), tgt_is_causal=True,
        src_key_padding_mask=torch.from_numpy(src_pad),
        tgt_key_padding_mask=torch.from_numpy(tgt_pad),
        memory_key_padding_mask=torch.from_numpy(src_pad))
    assert_close(out, t_out, "output")
    assert_grads_close(grads[0], t_grads)
    assert_close(grads[1], t_x, "source input")
    assert_close(grads[2], t_y, "target input")


class TorchSeq2Seq(torch.nn.Module):
    """The example's model written with torch: ``sqrt(d) E[ids] + PE`` into ``nn.Transformer``,
    logits ``y E^T``. Its state_dict names are the example's params' names."""

    def __init__(self, stack, vocab, d):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, d)
        self.transformer = stack
        self.d = d

    def forward(self, src, tgt_in):
        pe = torch.from_numpy(np.array(T.sinusoidal_positions(64, self.d, np.float64)))
        src_pad, tgt_pad = src == PAD, tgt_in == PAD
        x = self.embedding(src) * math.sqrt(self.d) + pe[:src.shape[1]]
        y = self.embedding(tgt_in) * math.sqrt(self.d) + pe[:tgt_in.shape[1]]
        out = self.transformer(x, y, tgt_mask=causal(y.shape[1]), tgt_is_causal=True,
                               src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                               memory_key_padding_mask=src_pad)
        return out @ self.embedding.weight.T


def padded_ids(rng, batch, length, vocab):
    """Right-padded token ids ``(batch, length)`` (no padding inside a sequence)."""
    ids = rng.integers(3, vocab, (batch, length))
    return np.where(right_padding(rng, batch, length), PAD, ids)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("final_norm", [True, False], ids=["nn.Transformer", "paper"])
def test_whole_model_matches_torch(final_norm):
    sizes = {"heads": 2}
    rng = np.random.default_rng(1)
    model = small_model(sizes, final_norm, layers=2, vocab=13)
    params = random_params(model, 3)
    src, tgt_in = padded_ids(rng, 3, 7, 13), padded_ids(rng, 3, 5, 13)
    cotangent = rng.normal(size=(3, 5, 13))

    def ours(p):
        logits = model.apply(p, src, tgt_in)
        return (logits * cotangent).sum(), logits

    (_, logits), grads = fgrad.value_and_grad(ours, has_aux=True)(params)
    module = load(TorchSeq2Seq(torch_stack(sizes, 2, final_norm), 13, 8), params)
    src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt_in)
    t_logits = module(src_t, tgt_t)
    (t_logits * torch.from_numpy(cotangent)).sum().backward()
    assert_close(logits, t_logits.detach().numpy(), "logits")
    assert_grads_close(grads, {n: p.grad.numpy() for n, p in module.named_parameters()})


def test_parameter_names_are_nn_transformers_state_dict():
    model = T.Transformer(50, d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=3,
                          dim_feedforward=24, final_norm=True)
    shapes = fnn.utils.flatten_names(model.param_shapes(), is_leaf=lambda s: isinstance(s, tuple))
    torch_model = torch.nn.Transformer(16, 4, 2, 3, 24, batch_first=True)
    expected = {f"transformer.{k}": tuple(v.shape) for k, v in torch_model.state_dict().items()}
    assert shapes == {"embedding.weight": (50, 16), **expected}
    paper = T.Transformer(50, d_model=16, nhead=4, dim_feedforward=24)
    assert not any(".norm." in n for n in fnn.utils.flatten_names(paper.param_shapes(),
                                                                  is_leaf=lambda s: isinstance(s, tuple)))


def test_sinusoidal_positions_are_the_papers():
    table = T.sinusoidal_positions(9, 6, np.float64)
    for pos, i in itertools.product(range(9), range(3)):
        angle = pos / 10000 ** (2 * i / 6)
        assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-15)
        assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-15)


def test_dropout_is_seeded_and_off_in_evaluation():
    model = T.Transformer(13, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=12, dropout=0.3, attention_dropout=0.2,
                          activation_dropout=0.1, dtype=np.float64)
    params = model.init(fgrad.random.key(0))
    src, tgt_in = np.array([[3, 4, 5, 0]]), np.array([[1, 6, 7]])
    key = fgrad.random.key(4)
    a = model.apply(params, src, tgt_in, key=key, train=True)
    np.testing.assert_array_equal(a, model.apply(params, src, tgt_in, key=key, train=True))
    assert not np.allclose(a, model.apply(params, src, tgt_in, key=fgrad.random.key(5),
                                          train=True))
    np.testing.assert_array_equal(model.apply(params, src, tgt_in),
                                  model.apply(params, src, tgt_in, key=key))
    with pytest.raises(ValueError, match="needs key"):
        model.apply(params, src, tgt_in, train=True)


# --------------------------------------------------------------------------------------------
# Loss and learning rate
# --------------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=20)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(2, 9), st.floats(0.0, 0.5),
       st.integers(0, 2 ** 16))
def test_label_smoothed_loss_matches_torch(batch, length, vocab, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (batch, length, vocab))
    targets = rng.integers(0, vocab, (batch, length))
    targets[0, 0] = 1                          # at least one real target (0 is padding)
    loss, grad = fgrad.value_and_grad(T.label_smoothed_loss)(logits, targets, 0, smoothing)
    t_logits = torch.from_numpy(logits).requires_grad_()
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, vocab),
                                               torch.from_numpy(targets).reshape(-1),
                                               ignore_index=0, label_smoothing=smoothing)
    t_loss.backward()
    assert_close(loss, t_loss.item(), "loss")
    assert_close(grad, t_logits.grad.numpy(), "gradient")
    # fgrad.jit: the fused kernel runs inside the compiled program (targets are an operand)
    loss, grad = fgrad.jit(fgrad.value_and_grad(T.label_smoothed_loss),
                           static_argnums=(2, 3))(logits, targets, 0, smoothing)
    assert_close(loss, t_loss.item(), "loss (jit)")
    assert_close(grad, t_logits.grad.numpy(), "gradient (jit)")
    # traced values (vmap over a batch of logits, second order): fnn.functional.cross_entropy
    per_row = fgrad.vmap(T.label_smoothed_loss, in_axes=(0, None, None, None))(
        logits[:, None], targets[:1], 0, smoothing)
    for b in range(batch):
        kept = targets[0] != 0
        if kept.any():
            assert_close(per_row[b], torch.nn.functional.cross_entropy(
                torch.from_numpy(logits[b]), torch.from_numpy(targets[0]), ignore_index=0,
                label_smoothing=smoothing).item(), "loss (vmap)")
    direction = rng.normal(size=logits.shape)
    hvp = fgrad.jvp(fgrad.grad(lambda z: T.label_smoothed_loss(z, targets, 0, smoothing)),
                    (logits,), (direction,))[1]
    t_targets = torch.from_numpy(targets).reshape(-1)
    t_hvp = torch.func.jvp(torch.func.grad(lambda z: torch.nn.functional.cross_entropy(
        z.reshape(-1, vocab), t_targets, ignore_index=0, label_smoothing=smoothing)),
        (torch.from_numpy(logits),), (torch.from_numpy(direction),))[1]
    assert_close(hvp, t_hvp.numpy(), "Hessian-vector product")


def test_label_smoothed_loss_of_only_padding_is_nan_with_zero_gradient():
    logits = np.random.default_rng(0).normal(size=(2, 3, 5))
    loss, grad = fgrad.value_and_grad(T.label_smoothed_loss)(logits, np.zeros((2, 3), int), 0)
    assert np.isnan(loss) and not grad.any()            # torch: nan, and zeros


def test_inverse_sqrt_schedule_is_equation_3():
    schedule = T.inverse_sqrt_schedule(512, 4000)
    for count in (0, 1, 99, 3998, 3999, 4000, 9999, 99999):
        step = count + 1
        assert float(schedule(count)) == pytest.approx(512 ** -0.5 * min(step ** -0.5,
                                                                         step * 4000 ** -1.5))
    values = np.array([float(schedule(c)) for c in range(8000)])
    assert values.argmax() == 3999                       # the peak is at step = warmup
    assert values[3999] == pytest.approx(6.98771242e-4)  # (512 * 4000)^-0.5, the paper's peak
    assert float(T.inverse_sqrt_schedule(512, 4000, factor=2.0)(10)) == pytest.approx(
        2 * float(schedule(10)))
    with pytest.raises(ValueError, match="warmup_steps"):
        T.inverse_sqrt_schedule(512, 0)
    # the example's --lr is the peak: the schedule scaled so that step --warmup reaches it
    _, peaked = T.make_optimizer(types.SimpleNamespace(d_model=128, warmup=400, lr=1e-3,
                                                       clip=0.0))
    assert float(peaked(399)) == pytest.approx(1e-3)
    assert float(peaked(1599)) == pytest.approx(0.5e-3)          # 1/sqrt(step) after it


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def decoding_model(final_norm=False, vocab=9, seed=0, copy=False):
    model = T.Transformer(vocab, d_model=16, nhead=2, num_encoder_layers=2,
                          num_decoder_layers=2, dim_feedforward=24, dropout=0.0,
                          final_norm=final_norm, copy=copy, dtype=np.float64)
    return model, random_params(model, seed)


@pytest.mark.parametrize("final_norm,copy", [(False, False), (True, False), (False, True)])
def test_cached_decoding_gives_the_teacher_forced_logits(final_norm, copy):
    model, params = decoding_model(final_norm, copy=copy)
    rng = np.random.default_rng(0)
    src = padded_ids(rng, 3, 6, 9)
    tgt_in = np.concatenate([np.full((3, 1), BOS), rng.integers(3, 9, (3, 6))], axis=1)
    full = model.apply(params, src, tgt_in)
    cache = model.start_decoding(params, src)
    for t in range(4):                                  # one token at a time ...
        step, cache = model.decode_step(params, tgt_in[:, t:t + 1], cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], rtol=1e-10, atol=1e-12)
    step, cache = model.decode_step(params, tgt_in[:, 4:], cache)     # ... then three at once
    np.testing.assert_allclose(step, full[:, 4:], rtol=1e-10, atol=1e-12)
    assert cache["length"] == 7


# --------------------------------------------------------------------------------------------
# The copy switch (--copy)
# --------------------------------------------------------------------------------------------

def copy_mixture_reference(model, params, src, tgt_in):
    """The copy switch's ``p(w)``, written out in NumPy from the paper model's logits and the
    decoder output (taken from the model without its switch, the same parameters)."""
    plain = dataclasses.replace(model, copy=False)
    inner = {k: v for k, v in params.items() if k != "copy"}
    memory = np.asarray(plain.encode(inner, src))
    y, _ = T.decode_stack(inner["transformer"], plain.embed(inner, tgt_in), memory,
                          src == PAD, tgt_in == PAD, model.nhead, model.layer_norm_eps,
                          T.Dropout())
    y = np.asarray(y)
    logits = y @ inner["embedding"]["weight"].T
    scores = (y @ params["copy"]["query"]["weight"].T) @ memory.transpose(0, 2, 1)
    scores = scores / math.sqrt(model.d_model) + np.where(src == PAD, -np.inf, 0.0)[:, None, :]
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    g = (np.concatenate([y, a @ memory], axis=-1) @ params["copy"]["switch"]["weight"].T
         + params["copy"]["switch"]["bias"])
    write = np.exp(logits - logits.max(-1, keepdims=True))
    write /= write.sum(-1, keepdims=True)
    copied = np.zeros_like(write)
    for b, t, j in itertools.product(*map(range, a.shape)):
        copied[b, t, src[b, j]] += a[b, t, j]
    gate = 1.0 / (1.0 + np.exp(-g))
    return gate * write + (1.0 - gate) * copied


def test_copy_switch_is_the_pointer_generator_mixture():
    model, params = decoding_model(copy=True, vocab=11, seed=3)
    rng = np.random.default_rng(4)
    src = padded_ids(rng, 4, 7, 11)
    tgt_in = np.concatenate([np.full((4, 1), BOS), rng.integers(3, 11, (4, 5))], axis=1)
    log_p = np.asarray(model.apply(params, src, tgt_in))
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_p), copy_mixture_reference(model, params, src, tgt_in),
                               rtol=1e-10, atol=1e-14)
    # a token absent from a source gets only the softmax's share; padding is never copied
    mixture = copy_mixture_reference(model, params, src, tgt_in)
    assert np.all(mixture[..., PAD] < np.exp(log_p).max())


def test_copy_switch_gradients_match_finite_differences():
    model, params = decoding_model(copy=True, vocab=7, seed=5)
    rng = np.random.default_rng(6)
    src = padded_ids(rng, 2, 5, 7)
    tgt = np.concatenate([np.full((2, 1), BOS), rng.integers(3, 7, (2, 4))], axis=1)
    tgt[1, 3:] = PAD

    def loss(p):
        return T.label_smoothed_loss(model.apply(p, src, tgt[:, :-1]), tgt[:, 1:], PAD, 0.1)

    fgrad.testing.check_grads(loss, (params,), modes=("rev",))
    # the fused loss on log-probabilities is the smoothed cross-entropy of the mixture itself
    log_p = np.asarray(model.apply(params, src, tgt[:, :-1]))
    kept = tgt[:, 1:] != PAD
    picked = np.take_along_axis(log_p, tgt[:, 1:, None], axis=-1)[..., 0]
    expected = -(0.9 * picked + 0.1 * log_p.mean(-1))[kept].mean()
    assert float(loss(params)) == pytest.approx(expected, rel=1e-10)


def copy_batch(rng, n, vocab=9, longest=6):
    """The copy task: sources of 1..``longest`` tokens in 3..vocab-1, right-padded; targets the
    same tokens then ``</s>``: ``(src, tgt_in, tgt_out)``."""
    lengths = rng.integers(1, longest + 1, n)
    src = np.zeros((n, longest), np.int64)
    tgt_out = np.zeros((n, longest + 1), np.int64)
    for i, length in enumerate(lengths):
        src[i, :length] = tgt_out[i, :length] = rng.integers(3, vocab, length)
        tgt_out[i, length] = EOS
    tgt_in = np.concatenate([np.full((n, 1), BOS), tgt_out[:, :-1]], axis=1)
    return src, np.where(tgt_in == EOS, PAD, tgt_in), tgt_out


def train_on_copy_task(copy, steps):
    """A small model (``copy``: with the copy switch) trained on the copy task by the
    example's loss, schedule and Adam: ``(model, {step: params after it for each in
    steps})``."""
    model = T.Transformer(9, d_model=32, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=64, dropout=0.0, copy=copy, dtype=np.float64)
    params = model.init(fgrad.random.key(0))
    optimizer, _ = T.make_optimizer(types.SimpleNamespace(d_model=32, warmup=30, lr=0.016,
                                                          clip=0.0))
    opt_state = optimizer.init(params)
    loss_and_grad = fgrad.value_and_grad(lambda p, src, tgt_in, tgt_out: T.label_smoothed_loss(
        model.apply(p, src, tgt_in), tgt_out, PAD, 0.1))
    rng, saved = np.random.default_rng(0), {}
    for step in range(max(steps)):
        _, grads = loss_and_grad(params, *copy_batch(rng, 32))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = foptim.apply_updates(params, updates)
        if step + 1 in steps:
            saved[step + 1] = params
    return model, saved


@pytest.fixture(scope="module")
def copy_task():
    """``(model, params after 40 steps (unsure, its outputs end at many lengths), after 200)``
    of :func:`train_on_copy_task` without the copy switch."""
    model, saved = train_on_copy_task(False, (40, 200))
    return model, saved[40], saved[200]


def test_the_copy_switch_learns_the_copy_task_by_copying(monkeypatch):
    model, saved = train_on_copy_task(True, (120,))
    params = saved[120]
    src, tgt_in, _ = copy_batch(np.random.default_rng(1), 16)
    for search in (T.greedy_search, functools.partial(T.beam_search, beam=3)):
        out = search(model, params, src, 8, BOS, EOS, banned=(PAD, BOS))
        out = out[0] if search is not T.greedy_search else out
        assert out == [list(s[s != PAD]) for s in src]
    # padding a batch of sources changes no output
    alone = [T.greedy_search(model, params, s[None, :int((s != PAD).sum())], 8, BOS, EOS,
                             banned=(PAD, BOS))[0] for s in src]
    assert T.greedy_search(model, params, src, 8, BOS, EOS, banned=(PAD, BOS)) == alone
    # and it copies: the switch gives most of each target token's probability to the copy term
    gates = []
    copy_mixture = T.copy_mixture
    monkeypatch.setattr(T, "copy_mixture", lambda logits, gate, *rest: (
        gates.append(np.asarray(gate)), copy_mixture(logits, gate, *rest))[1])
    model.apply(params, src, tgt_in)
    copy_share = 1.0 / (1.0 + np.exp(gates[0]))          # sigmoid(-g)
    assert copy_share[tgt_in != PAD].mean() > 0.6


def test_the_examples_training_pieces_learn_to_copy(copy_task):
    model, _, params = copy_task
    src, _, _ = copy_batch(np.random.default_rng(1), 16)
    for search in (T.greedy_search, functools.partial(T.beam_search, beam=3)):
        out = search(model, params, src, 8, BOS, EOS, banned=(PAD, BOS))
        out = out[0] if search is not T.greedy_search else out
        assert out == [list(s[s != PAD]) for s in src]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_of_one_is_greedy_search(copy_task, alpha):
    model, params, _ = copy_task
    src, _, _ = copy_batch(np.random.default_rng(2), 16)
    greedy = T.greedy_search(model, params, src, 8, BOS, EOS, banned=(PAD, BOS))
    beam, _ = T.beam_search(model, params, src, 8, BOS, EOS, beam=1, alpha=alpha,
                            banned=(PAD, BOS))
    assert beam == greedy
    assert len({len(g) for g in greedy}) >= 3             # outputs of many lengths
    blocked = T.greedy_search(model, params, src, 8, BOS, EOS, (PAD, BOS), no_repeat=2)
    assert blocked != greedy
    assert T.beam_search(model, params, src, 8, BOS, EOS, 1, alpha, (PAD, BOS), 2)[0] == blocked
    wide_blocked, _ = T.beam_search(model, params, src, 8, BOS, EOS, 4, alpha, (PAD, BOS), 2)
    for tokens in blocked + wide_blocked:                  # no bigram written twice
        bigrams = list(zip(tokens, tokens[1:]))
        assert len(bigrams) == len(set(bigrams))
    wide, _ = T.beam_search(model, params, src, 8, BOS, EOS, beam=4, alpha=alpha,
                            banned=(PAD, BOS))
    assert wide != greedy                                  # the half-trained model is unsure


def sequence_log_prob(model, params, src, tokens, eos):
    """``log P(tokens [+ </s>] | src)`` by teacher forcing."""
    target = list(tokens) + ([eos] if eos is not None else [])
    logits = model.apply(params, src[None], np.array([[BOS] + target[:-1]]))[0]
    logits[:, [PAD, BOS]] = -np.inf
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                                                                  keepdims=True)) \
        - logits.max(1, keepdims=True)
    return float(sum(log_probs[i, y] for i, y in enumerate(target)))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_finds_the_exhaustive_searchs_best(alpha):
    # vocabulary: pad, <s>, </s> and two tokens; up to 3 tokens there are 15 hypotheses (ended
    # after 0, 1 or 2 tokens, or cut at 3, with or without </s>), all kept by a beam of 16
    model, params = decoding_model(vocab=5, seed=7)
    src = padded_ids(np.random.default_rng(2), 2, 5, 5)
    found, scores = T.beam_search(model, params, src, 3, BOS, EOS, beam=16, alpha=alpha,
                                  banned=(PAD, BOS))
    for i in range(2):
        candidates = {}
        for n in range(4):
            for tokens in itertools.product((3, 4), repeat=n):
                ends = EOS if n < 3 else None          # at max length: cut, without </s>
                length = n + 1 if ends is not None else n
                candidates[tokens] = (sequence_log_prob(model, params, src[i], tokens, ends)
                                      / T.length_penalty(length, alpha))
        best = max(candidates, key=candidates.get)
        assert tuple(found[i]) == best
        assert scores[i] == pytest.approx(candidates[best], rel=1e-10)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_padding_a_batch_of_sources_changes_no_output(copy_task, search):
    model, params, _ = copy_task
    rng = np.random.default_rng(5)
    sources = [rng.integers(3, 9, n) for n in (2, 6, 4, 1, 5, 3)]
    batch = np.zeros((len(sources), 9), np.int64)     # padded well past the longest
    for i, s in enumerate(sources):
        batch[i, :len(s)] = s

    def decode(src):
        if search == "greedy":
            return T.greedy_search(model, params, src, 8, BOS, EOS, banned=(PAD, BOS))
        return T.beam_search(model, params, src, 8, BOS, EOS, beam=3, banned=(PAD, BOS))[0]

    alone = [decode(s[None])[0] for s in sources]
    assert decode(batch) == alone


@pytest.mark.parametrize("src, tgt_in, error, message", [
    ([[5, 25, 0]], [[1, 4]], ValueError, "src holds ids from 0 to 25, outside [0, vocab_size=20)"),
    ([[5, 6, 0]], [[1, 4], [1, 3]], ValueError, "the batch sizes differ (src 1, tgt_in 2)"),
    ([5, 6], [1, 4], TypeError, "src must be a (batch, length) array of integer token ids, got "
                                "shape (2,)"),
    ([[5.0, 6.0]], [[1, 4]], TypeError, "dtype float64"),
    ([[5, 6]], [[1, -1]], ValueError, "tgt_in holds ids from -1 to 1"),
])
def test_bad_token_ids_get_clear_errors(src, tgt_in, error, message):
    model = T.Transformer(20, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=16, copy=True)
    params = model.init(fgrad.random.key(0))
    with pytest.raises(error, match="^Transformer.apply: ") as caught:
        model.apply(params, np.array(src), np.array(tgt_in))
    assert message in str(caught.value)
    # under jit only the shapes are known, and the batch sizes are still checked
    if "batch sizes" in message:
        with pytest.raises(ValueError, match="the batch sizes differ"):
            fgrad.jit(model.apply)(params, np.array(src), np.array(tgt_in))
