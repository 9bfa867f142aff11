"""fnn.models.GPT2 / GPT1 against Hugging Face's GPT2LMHeadModel / OpenAIGPTLMHeadModel.

Tiny models are built offline with a seeded torch, saved with ``save_pretrained`` and loaded
with ``from_pretrained``, so every check also goes through the file format. Checked: logits
(float64 to 1e-10, float32 to 1e-5, batches with and without left padding, explicit position
ids), the LM loss against HF's ``labels`` loss, every parameter's gradient against torch
autograd through the HF model (1e-8, float64), files in both directions, configurations,
dropout, initialisation statistics, error messages, and the other transforms (vmap, jvp, a
Hessian-vector product) which run the kernels' fgrad.numpy reference paths.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import fgrad
import fgrad.numpy as fnp
import fnn
import fnn.models as M
from fgrad import tree

transformers.logging.set_verbosity_error()

VOCAB, N_POS = 50, 32

# name -> (HF config class, HF model class, our class, HF config kwargs)
KINDS = {
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel, M.GPT2, {}),
    "gpt1": (transformers.OpenAIGPTConfig, transformers.OpenAIGPTLMHeadModel, M.GPT1, {}),
    # n_inner set, exact-erf GELU and HF's per-layer attention scaling
    "gpt2_inner_gelu": (transformers.GPT2Config, transformers.GPT2LMHeadModel, M.GPT2,
                        {"n_inner": 24, "activation_function": "gelu",
                         "scale_attn_by_inverse_layer_idx": True}),
    "gpt2_relu_untied": (transformers.GPT2Config, transformers.GPT2LMHeadModel, M.GPT2,
                         {"activation_function": "relu", "tie_word_embeddings": False}),
    "gpt1_silu": (transformers.OpenAIGPTConfig, transformers.OpenAIGPTLMHeadModel, M.GPT1,
                  {"afn": "silu"}),
}


def hf_model(kind, seed=0, **overrides):
    """A seeded tiny HF model in eval mode (float64), with weights large enough that the
    attention is far from uniform."""
    config_cls, model_cls, _, extra = KINDS[kind]
    kwargs = dict(vocab_size=VOCAB, n_positions=N_POS, n_embd=16, n_layer=2, n_head=2,
                  initializer_range=0.2)
    kwargs.update(extra)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval().double()
    with torch.no_grad():            # LayerNorm and biases away from their trivial init
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``kind -> (hf_model, directory)`` of tiny HF models written with save_pretrained."""
    cache = {}

    def get(kind):
        if kind not in cache:
            model = hf_model(kind)
            directory = tmp_path_factory.mktemp(kind)
            model.save_pretrained(directory)
            cache[kind] = (model, directory)
        return cache[kind]
    return get


def ours(kind, directory, dtype=np.float64):
    return KINDS[kind][2].from_pretrained(directory, dtype=dtype)


def hf_logits(model, ids, mask=None, position_ids=None):
    with torch.no_grad():
        out = model(torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                    position_ids=None if position_ids is None else torch.tensor(position_ids))
    return out.logits.numpy()


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


IDS = np.random.default_rng(0).integers(0, VOCAB, (3, 9))
LEFT_PADDED = np.ones((3, 9), np.int64)
LEFT_PADDED[1, :3] = 0
LEFT_PADDED[2, :7] = 0


# --------------------------------------------------------------------------------------------
# logits, loss and gradients against HF
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("masked", [False, True])
def test_logits_match_hf(saved, kind, dtype, tol, masked):
    hf, directory = saved(kind)
    model, params = ours(kind, directory, dtype)
    mask = LEFT_PADDED if masked else None
    reference = hf_logits(hf if dtype == np.float64 else copy.deepcopy(hf).float(), IDS, mask)
    logits = model.apply(params, IDS, mask)
    assert logits.dtype == dtype and logits.shape == (3, 9, VOCAB)
    # every position, padding included (its rows are meaningless but HF's to the last bit)
    assert rel_err(logits, reference) < tol


@pytest.mark.parametrize("kind", ["gpt2", "gpt1"])
def test_position_ids_and_all_ones_mask_match_hf(saved, kind):
    hf, directory = saved(kind)
    model, params = ours(kind, directory)
    positions = np.where(LEFT_PADDED == 1, np.cumsum(LEFT_PADDED, axis=1) - 1, 0)
    np.testing.assert_allclose(model.apply(params, IDS, LEFT_PADDED, position_ids=positions),
                               hf_logits(hf, IDS, LEFT_PADDED, positions), rtol=0, atol=1e-12)
    # a mask of ones is no mask; 1-D ids are one unbatched sequence
    np.testing.assert_allclose(model.apply(params, IDS, np.ones_like(IDS)), hf_logits(hf, IDS),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.apply(params, IDS[0]), hf_logits(hf, IDS[:1])[0], rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("kind", ["gpt2", "gpt1"])
def test_lm_loss_matches_hf_labels(saved, kind):
    hf, directory = saved(kind)
    model, params = ours(kind, directory)
    labels = np.where(LEFT_PADDED == 1, IDS, -100)
    with torch.no_grad():
        out = hf(torch.tensor(IDS), attention_mask=torch.tensor(LEFT_PADDED),
                 labels=torch.tensor(labels))
    loss = M.lm_loss(model.apply(params, IDS, LEFT_PADDED), labels)
    # HF casts the logits to float32 before its loss; ours stays float64
    assert abs(float(loss) - float(out.loss)) < 1e-6 * float(out.loss)
    assert np.asarray(loss).dtype == np.float64
    shifted = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB),
                                                torch.tensor(labels)[:, 1:].reshape(-1))
    assert abs(float(loss) - float(shifted)) < 1e-13


@pytest.mark.parametrize("kind,masked", [("gpt2", False), ("gpt2", True), ("gpt1", True),
                                         ("gpt2_relu_untied", False)])
def test_gradients_match_torch_autograd(saved, kind, masked):
    hf, directory = saved(kind)
    model, params = ours(kind, directory)
    mask = LEFT_PADDED if masked else None
    labels = IDS if mask is None else np.where(mask == 1, IDS, -100)

    def loss(p):
        return M.lm_loss(model.apply(p, IDS, mask), labels)

    value, grads = fgrad.value_and_grad(loss)(params)
    hf.zero_grad()
    logits = hf(torch.tensor(IDS), attention_mask=None if mask is None else torch.tensor(mask)).logits
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB),
                                                  torch.tensor(labels)[:, 1:].reshape(-1))
    reference.backward()
    assert abs(float(value) - reference.item()) < 1e-13
    ours_flat = fnn.utils.flatten_names(grads)
    theirs = {name: p.grad.numpy() for name, p in hf.named_parameters()}
    # the same parameters (HF's wte grad holds the tied head's share as well)
    assert set(ours_flat) == set(theirs)
    for name, g in ours_flat.items():
        assert rel_err(g, theirs[name]) < 1e-8, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lm_loss_kernel_equals_cross_entropy(dtype):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 6, 11)).astype(dtype) * 3
    labels = rng.integers(0, 11, (2, 6))
    labels[1, 2:4] = -100

    def reference(z):
        return fnn.functional.cross_entropy(z[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))

    value, grad = fgrad.value_and_grad(lambda z: M.lm_loss(z, labels))(logits)
    ref_value, ref_grad = fgrad.value_and_grad(reference)(logits)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert np.asarray(value).dtype == dtype and grad.dtype == dtype
    assert abs(float(value) - float(ref_value)) < tol * abs(float(ref_value))
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=tol)
    np.testing.assert_allclose(M.lm_loss(logits[0], labels[0]),     # one unbatched sequence
                               fnn.functional.cross_entropy(logits[0, :-1], labels[0, 1:]), rtol=tol)
    unshifted = fgrad.value_and_grad(lambda z: M.lm_loss(z, labels, shift=False))(logits)
    reference_unshifted = fgrad.value_and_grad(
        lambda z: fnn.functional.cross_entropy(z.reshape(-1, 11), labels.reshape(-1)))(logits)
    assert abs(float(unshifted[0]) - float(reference_unshifted[0])) < tol * float(unshifted[0])
    np.testing.assert_allclose(unshifted[1], reference_unshifted[1], rtol=0, atol=tol)
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\) or ignore_index=-100"):
        M.lm_loss(logits, np.full((2, 6), 11))
    with pytest.raises(ValueError, match="expected logits"):
        M.lm_loss(logits, labels[:, :5])


def test_float32_stays_float32(saved):
    _, directory = saved("gpt2")
    model, params = ours("gpt2", directory, np.float32)
    loss, grads = fgrad.value_and_grad(
        lambda p: M.lm_loss(model.apply(p, IDS, LEFT_PADDED), IDS))(params)
    assert np.asarray(loss).dtype == np.float32
    assert {leaf.dtype for leaf in tree.leaves(grads)} == {np.dtype(np.float32)}


# --------------------------------------------------------------------------------------------
# files and configurations
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpt2", "gpt1", "gpt2_relu_untied"])
def test_ours_to_hf_round_trip(tmp_path, kind):
    config_cls, model_cls, cls, extra = KINDS[kind]
    config = cls.config_class(vocab_size=VOCAB, n_positions=N_POS, n_embd=16, n_layer=2, n_head=2,
                              initializer_range=0.2, **extra)
    model = cls(config, dtype=np.float64)
    params = model.init(fgrad.random.key(0))
    model.save_pretrained(tmp_path, params)
    files = json.loads((tmp_path / "config.json").read_text())
    assert files["model_type"] == config.model_type and files["architectures"] == [model_cls.__name__]
    with open(tmp_path / "model.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert header["__metadata__"] == {"format": "pt"}
    hf, info = model_cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf = hf.eval().double()
    assert rel_err(model.apply(params, IDS, LEFT_PADDED), hf_logits(hf, IDS, LEFT_PADDED)) < 1e-10
    # fnn.io reads the file as the params tree itself
    loaded = fnn.io.load(tmp_path / "model.safetensors")
    assert tree.structure(loaded) == tree.structure(params)
    for a, b in zip(tree.leaves(loaded), tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    # ours -> ours: the same config and weights
    again, params_again = cls.from_pretrained(tmp_path, dtype=np.float64)
    assert again == model and again.config == config
    for a, b in zip(tree.leaves(params_again), tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["gpt2", "gpt1"])
def test_hf_to_ours_names_and_dtype(saved, kind):
    hf, directory = saved(kind)
    model, params = ours(kind, directory, np.float32)
    with open(directory / "model.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    names = set(header) - {"__metadata__"}
    assert set(fnn.utils.flatten_names(params)) == names - {"lm_head.weight"}
    assert {leaf.dtype for leaf in tree.leaves(params)} == {np.dtype(np.float32)}
    assert model.config.to_dict()["n_embd"] == 16 and model.dtype == np.float32


def test_hub_layout_without_prefix_with_buffers_and_head(saved, tmp_path):
    """The hub's GPT-2 files: no "transformer." prefix, causal-mask buffers, a stored head."""
    hf, directory = saved("gpt2")
    model, params = ours("gpt2", directory)
    flat = {name[len("transformer."):]: v for name, v in fnn.utils.flatten_names(params).items()}
    for i in range(2):
        flat[f"h.{i}.attn.bias"] = np.tril(np.ones((N_POS, N_POS), np.float32))[None, None]
        flat[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    flat["lm_head.weight"] = flat["wte.weight"]
    safetensors_numpy.save_file(flat, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    _, loaded = M.GPT2.from_pretrained(tmp_path, dtype=np.float64)
    for a, b in zip(tree.leaves(loaded), tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_pickle_only_directory_is_refused(saved, tmp_path):
    _, directory = saved("gpt2")
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*pickle.*safe_serialization=True"):
        M.GPT2.from_pretrained(tmp_path)


def test_missing_and_unexpected_tensors_are_named(saved, tmp_path):
    _, directory = saved("gpt2")
    flat = safetensors_numpy.load_file(directory / "model.safetensors")
    del flat["transformer.h.1.mlp.c_fc.bias"]
    flat["transformer.h.7.attn.c_attn.weight"] = np.zeros((16, 48), np.float32)
    flat["transformer.ln_f.weight"] = np.ones(15, np.float32)
    safetensors_numpy.save_file(flat, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(ValueError) as err:
        M.GPT2.from_pretrained(tmp_path)
    text = str(err.value)
    assert "missing tensors: 'transformer.h.1.mlp.c_fc.bias'" in text
    assert "unexpected tensors: 'transformer.h.7.attn.c_attn.weight'" in text
    assert "'transformer.ln_f.weight' is (15,), expected (16,)" in text
    with pytest.raises(ValueError, match="model_type 'gpt2', not 'openai-gpt'"):
        M.GPT1.from_pretrained(directory)


@pytest.mark.parametrize("ours_cls,hf_cls", [(M.GPT2Config, transformers.GPT2Config),
                                             (M.GPT1Config, transformers.OpenAIGPTConfig)])
def test_config_defaults_and_round_trip(ours_cls, hf_cls):
    hf_dict = hf_cls().to_dict()
    mine = ours_cls().to_dict()
    for name, value in mine.items():
        if name in hf_dict and name != "architectures":
            assert hf_dict[name] == value, name
    custom = ours_cls.from_dict({**hf_cls(n_embd=32, n_head=4).to_dict(), "n_ctx": 77,
                                 "task_specific_params": {"text-generation": {"max_length": 5}}})
    assert custom.n_embd == 32 and custom.n_head == 4
    back = custom.to_dict()
    assert back["n_ctx"] == 77 and back["task_specific_params"]["text-generation"] == {"max_length": 5}
    assert ours_cls.from_dict(back) == custom
    assert ours_cls.from_dict({"hidden_size": 8, "num_attention_heads": 2}).n_embd == 8
    small = ours_cls(n_embd=8, n_head=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.n_embd = 4
    assert hash(small) == hash(ours_cls(n_embd=8, n_head=2))
    with pytest.raises(ValueError, match="divisible"):
        ours_cls(n_embd=10, n_head=3)


# --------------------------------------------------------------------------------------------
# init, dropout, shapes and errors
# --------------------------------------------------------------------------------------------

def test_init_statistics_and_shapes():
    config = M.GPT2Config(vocab_size=300, n_positions=64, n_embd=96, n_layer=4, n_head=4,
                          initializer_range=0.02)
    model = M.GPT2(config)
    params = model.init(fgrad.random.key(0))
    assert tree.map(np.shape, params) == model.param_shapes()
    assert "lm_head" not in params
    body = params["transformer"]
    residual_std = 0.02 / math.sqrt(2 * 4)
    for i in range(4):
        block = body["h"][str(i)]
        for proj in (block["attn"]["c_proj"]["weight"], block["mlp"]["c_proj"]["weight"]):
            assert abs(proj.std() / residual_std - 1) < 0.05
        for w in (block["attn"]["c_attn"]["weight"], block["mlp"]["c_fc"]["weight"]):
            assert abs(w.std() / 0.02 - 1) < 0.05
        assert not block["attn"]["c_attn"]["bias"].any() and (block["ln_1"]["weight"] == 1).all()
    assert abs(body["wte"]["weight"].std() / 0.02 - 1) < 0.05
    assert abs(body["wpe"]["weight"].std() / 0.02 - 1) < 0.05
    assert {leaf.dtype for leaf in tree.leaves(params)} == {np.dtype(np.float32)}
    assert model.apply(params, np.zeros((2, 64), np.int64)).shape == (2, 64, 300)
    gpt1 = M.GPT1(M.GPT1Config(vocab_size=300, n_positions=64, n_embd=96, n_layer=4, n_head=4,
                               initializer_range=0.1))
    p1 = gpt1.init(fgrad.random.key(1))
    assert "ln_f" not in p1["transformer"] and tree.map(np.shape, p1) == gpt1.param_shapes()
    assert abs(p1["transformer"]["tokens_embed"]["weight"].std() / 0.1 - 1) < 0.05
    assert abs(p1["transformer"]["h"]["0"]["mlp"]["c_proj"]["weight"].std() / 0.02 - 1) < 0.05


@pytest.mark.parametrize("cls,config_cls", [(M.GPT2, M.GPT2Config), (M.GPT1, M.GPT1Config)])
def test_dropout(cls, config_cls):
    model = cls(config_cls(vocab_size=VOCAB, n_positions=N_POS, n_embd=16, n_layer=2, n_head=2))
    params = model.init(fgrad.random.key(0))
    key = fgrad.random.key(5)
    train = model.apply(params, IDS, key=key, train=True)
    np.testing.assert_array_equal(train, model.apply(params, IDS, key=key, train=True))
    assert np.abs(train - model.apply(params, IDS, key=fgrad.random.key(6), train=True)).max() > 1e-3
    evaluated = model.apply(params, IDS)
    assert np.abs(train - evaluated).max() > 1e-3
    np.testing.assert_array_equal(evaluated, model.apply(params, IDS, key=key))
    with pytest.raises(ValueError, match="needs key"):
        model.apply(params, IDS, train=True)
    # dropout gradients: the fused kernels' rule agrees with forward mode through the reference
    v = tree.map(lambda a: np.random.default_rng(0).standard_normal(a.shape).astype(a.dtype), params)

    def loss(p):
        return M.lm_loss(model.apply(p, IDS, key=key, train=True), IDS)

    g = fgrad.grad(loss)(params)
    _, directional = fgrad.jvp(loss, (params,), (v,))
    dot = sum(float(np.vdot(a, b)) for a, b in zip(tree.leaves(g), tree.leaves(v)))
    assert abs(float(directional) - dot) < 1e-4 * max(1.0, abs(dot))


def test_errors():
    model = M.GPT2(M.GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    params = model.init(fgrad.random.key(0))
    with pytest.raises(ValueError, match="9 tokens exceed n_positions=8"):
        model.apply(params, np.zeros((1, 9), np.int64))
    with pytest.raises(IndexError, match=r"token ids must be in \[0, vocab_size=50\)"):
        model.apply(params, np.array([[1, 50]]))
    with pytest.raises(IndexError, match="token ids"):
        model.apply(params, np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model.apply(params, np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="attention_mask must have the shape of ids"):
        model.apply(params, np.zeros((2, 4), np.int64), np.ones((2, 3)))
    with pytest.raises(IndexError, match="position_ids must be in"):
        model.apply(params, np.zeros((1, 4), np.int64), position_ids=np.arange(5, 9))
    broken = {"transformer": dict(params["transformer"])}
    del broken["transformer"]["ln_f"]
    with pytest.raises(ValueError, match="missing 'transformer.ln_f.bias', 'transformer.ln_f.weight'"):
        model.apply(broken, np.zeros((1, 4), np.int64))
    with pytest.raises(ValueError, match="activation_function 'nope' is not supported"):
        M.GPT2(M.GPT2Config(activation_function="nope"))


# --------------------------------------------------------------------------------------------
# the other transforms (the kernels' fgrad.numpy reference paths)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpt2", "gpt1"])
def test_vmap_jvp_and_hessian_vector_product(saved, kind):
    _, directory = saved(kind)
    model, params = ours(kind, directory)
    batch = model.apply(params, IDS, LEFT_PADDED)
    per_example = fgrad.vmap(lambda ids, m: model.apply(params, ids, m))(IDS, LEFT_PADDED)
    np.testing.assert_allclose(per_example, batch, rtol=0, atol=1e-12)

    def loss(p):
        return M.lm_loss(model.apply(p, IDS[:2, :5], LEFT_PADDED[:2, :5]), IDS[:2, :5])

    rng = np.random.default_rng(1)
    v = tree.map(lambda a: rng.standard_normal(a.shape), params)
    grads = fgrad.grad(loss)(params)
    _, directional = fgrad.jvp(loss, (params,), (v,))
    dot = sum(float(np.vdot(a, b)) for a, b in zip(tree.leaves(grads), tree.leaves(v)))
    assert abs(float(directional) - dot) < 1e-12 * max(1.0, abs(dot))

    def grad_dot_v(p):
        return sum(fnp.vdot(a, b) for a, b in zip(tree.leaves(fgrad.grad(loss)(p)), tree.leaves(v)))

    hvp = fgrad.grad(grad_dot_v)(params)
    # jacrev vmaps the pullback over traced cotangents: the kernels' rules fall back to the
    # reference's VJP there
    embedding = params["transformer"][model.token_embedding]["weight"]

    def last_logits(table):
        body = {**params["transformer"], model.token_embedding: {"weight": table}}
        return model.apply({**params, "transformer": body}, IDS[:1, :4])[0, -1, :5]

    np.testing.assert_allclose(fgrad.jacrev(last_logits)(embedding),
                               fgrad.jacfwd(last_logits)(embedding), rtol=0, atol=1e-12)
    eps = 1e-5
    plus = fgrad.grad(loss)(tree.map(lambda a, b: a + eps * b, params, v))
    minus = fgrad.grad(loss)(tree.map(lambda a, b: a - eps * b, params, v))
    for h, a, b in zip(tree.leaves(hvp), tree.leaves(plus), tree.leaves(minus)):
        fd = (a - b) / (2 * eps)
        assert np.abs(h - fd).max() <= 1e-5 * max(1.0, np.abs(fd).max())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "gpt1"])
def test_gradients_match_torch_on_a_larger_model(tmp_path, kind):
    hf = hf_model(kind, seed=3, vocab_size=300, n_positions=96, n_embd=64, n_layer=4, n_head=4)
    hf.save_pretrained(tmp_path)
    model, params = ours(kind, tmp_path)
    ids = np.random.default_rng(4).integers(0, 300, (4, 96))
    mask = np.ones_like(ids)
    mask[1, :40] = 0
    labels = np.where(mask == 1, ids, -100)
    value, grads = fgrad.value_and_grad(
        lambda p: M.lm_loss(model.apply(p, ids, mask), labels))(params)
    logits = hf(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 300),
                                                  torch.tensor(labels)[:, 1:].reshape(-1))
    reference.backward()
    assert abs(float(value) - reference.item()) < 1e-12
    theirs = {name: p.grad.numpy() for name, p in hf.named_parameters()}
    for name, g in fnn.utils.flatten_names(grads).items():
        assert rel_err(g, theirs[name]) < 1e-8, name


def test_lm_loss_under_jit_runs_the_fused_kernel_with_traced_labels():
    # labels are an operand of the kernel, so under jit (traced labels) the replay hands it
    # NumPy values: the generated program calls it instead of the dozen-pass formula
    config = M.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = M.GPT2(config)
    params = model.init(fgrad.random.key(0))
    ids = np.random.default_rng(0).integers(0, 64, (2, 16))
    labels = ids.copy()
    labels[0, 3] = -100
    loss = lambda p, ids, labels: M.lm_loss(model.apply(p, ids), labels)   # noqa: E731
    step = fgrad.jit(fgrad.value_and_grad(loss))
    (value, grads), (want_value, want_grads) = step(params, ids, labels), fgrad.value_and_grad(loss)(params, ids, labels)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    for a, b in zip(tree.leaves(grads), tree.leaves(want_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert "np.exp" not in step.lower(params, ids, labels).source
