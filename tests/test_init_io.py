"""fnn.init (torch.nn.init's distributions), fnn.io (npz save/load, torch state_dicts) and fnn.utils."""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fgrad
import fnn
import foptim
from fgrad import tree
from fnn import init

KEY = fgrad.random.key(0)


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    points = np.concatenate([a, b])
    return np.abs(np.searchsorted(a, points, side="right") / a.size
                  - np.searchsorted(b, points, side="right") / b.size).max()


def same_distribution(a, b):
    """The KS test does not reject equality at the 0.1% level."""
    n, m = np.size(a), np.size(b)
    return ks_statistic(a, b) < 1.95 * math.sqrt((n + m) / (n * m))


# --------------------------------------------------------------------------------------------
# fnn.init
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3), (16, 8, 3, 2), (4, 2, 2, 2, 2)])
def test_fans_match_torch(shape):
    assert init.fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


SHAPE = (256, 128, 3)


def _torch_draw(fill, *args, **kwargs):
    torch.manual_seed(0)
    t = torch.empty(SHAPE, dtype=torch.float64)
    fill(t, *args, **kwargs)
    return t.numpy()


# (fnn initialiser, torch in-place initialiser, shared keyword arguments, exact bound or None)
INITIALISERS = [
    (init.uniform, torch.nn.init.uniform_, {"a": -0.5, "b": 2.0}, (-0.5, 2.0)),
    (init.normal, torch.nn.init.normal_, {"mean": 1.0, "std": 0.3}, None),
    (init.trunc_normal, torch.nn.init.trunc_normal_, {"mean": 0.1, "std": 0.5, "a": -0.4, "b": 0.5},
     (-0.4, 0.5)),
    (init.xavier_uniform, torch.nn.init.xavier_uniform_, {"gain": 2.0},
     (-2.0 * math.sqrt(6 / (128 * 3 + 256 * 3)), 2.0 * math.sqrt(6 / (128 * 3 + 256 * 3)))),
    (init.xavier_normal, torch.nn.init.xavier_normal_, {"gain": 0.5}, None),
    (init.kaiming_uniform, torch.nn.init.kaiming_uniform_, {"a": math.sqrt(5)},
     (-1 / math.sqrt(128 * 3), 1 / math.sqrt(128 * 3))),
    (init.kaiming_uniform, torch.nn.init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"},
     (-math.sqrt(6 / (256 * 3)), math.sqrt(6 / (256 * 3)))),
    (init.kaiming_normal, torch.nn.init.kaiming_normal_, {"nonlinearity": "tanh"}, None),
]


@pytest.mark.parametrize("ours, theirs, kwargs, bounds", INITIALISERS,
                         ids=[f"{i[0].__name__}-{'-'.join(map(str, i[2].values()))}" for i in INITIALISERS])
def test_initialisers_match_torch_in_distribution(ours, theirs, kwargs, bounds):
    got = ours(KEY, SHAPE, dtype=np.float64, **kwargs)
    expected = _torch_draw(theirs, **kwargs)
    assert got.shape == SHAPE and got.dtype == np.float64
    assert same_distribution(got, expected)
    np.testing.assert_allclose(got.std(), expected.std(), rtol=0.02)
    np.testing.assert_allclose(got.mean(), expected.mean(), atol=0.02 * expected.std())
    if bounds is not None:
        lo, hi = bounds
        assert lo <= got.min() and got.max() <= hi
        assert got.min() < lo + 0.01 * (hi - lo) and got.max() > hi - 0.01 * (hi - lo)


def test_initialisers_default_to_float32_and_constants():
    assert init.kaiming_uniform(KEY, (4, 3)).dtype == np.float32
    np.testing.assert_array_equal(init.zeros(KEY, (2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(init.ones(None, (2,)), np.ones(2, np.float32))
    np.testing.assert_array_equal(init.constant(None, (3,), 0.25, dtype=np.float64), np.full(3, 0.25))


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (4, 3, 2, 2)])
def test_orthogonal_is_orthonormal(shape):
    w = init.orthogonal(KEY, shape, gain=1.5, dtype=np.float64)
    assert w.shape == shape
    flat = w.reshape(shape[0], -1) / 1.5
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-12)


def test_orthogonal_matches_torch_in_distribution():
    ours = np.stack([init.orthogonal(k, (8, 8), dtype=np.float64) for k in fgrad.random.split(KEY, 200)])
    torch.manual_seed(0)
    theirs = np.stack([torch.nn.init.orthogonal_(torch.empty(8, 8, dtype=torch.float64)).numpy()
                       for _ in range(200)])
    assert same_distribution(ours, theirs)           # Haar-distributed entries either way


def test_initialisers_vmap_over_keys():
    keys = fgrad.random.split(KEY, 4)
    batch = fgrad.vmap(lambda k: init.xavier_normal(k, (5, 3)))(keys)
    np.testing.assert_array_equal(batch[2], init.xavier_normal(keys[2], (5, 3)))


def test_init_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions, got shape \\(5,\\)"):
        init.xavier_uniform(KEY, (5,))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out', got 'fan'"):
        init.kaiming_normal(KEY, (3, 3), mode="fan")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


# --------------------------------------------------------------------------------------------
# fnn.io: save / load
# --------------------------------------------------------------------------------------------

def _assert_same_tree(a, b):
    """Same structure, values and dtypes; Python scalars keep their type, arrays and NumPy
    scalars come back as arrays."""
    assert tree.structure(a) == tree.structure(b)
    for x, y in zip(tree.leaves(a), tree.leaves(b)):
        assert type(x) is (type(y) if isinstance(y, (bool, int, float, complex)) else np.ndarray)
        np.testing.assert_array_equal(x, y)
        assert np.asarray(x).dtype == np.asarray(y).dtype


def test_save_load_round_trip_without_template(tmp_path):
    # int keys in a dict of their own: fgrad.tree refuses str and int keys in one dict, as JAX
    params = {"encoder": {"layers": [{"w": np.arange(6.0).reshape(2, 3)}, {"w": np.ones(2, np.float32)}],
                          "scale": 0.5, "steps": 3, "use_bias": True},
              "head": (np.array([1, 2], np.int64), None, np.array(True)),
              "empty": {}, "by_index": {0: np.float16(2.5), 1: np.zeros(2)}}
    path = tmp_path / "params.npz"
    fnn.io.save(path, params)
    _assert_same_tree(fnn.io.load(path), params)
    with np.load(path, allow_pickle=False) as archive:    # a plain npz, dotted names
        assert "encoder.layers.0.w" in archive.files and "head.0" in archive.files


def test_save_load_single_array_and_compression(tmp_path):
    path = str(tmp_path / "x.npz")
    fnn.io.save(path, np.eye(3), compress=True)
    np.testing.assert_array_equal(fnn.io.load(path), np.eye(3))


def test_load_with_template_rebuilds_optimizer_state(tmp_path):
    params = fnn.Linear(3, 2).init(KEY)
    opt = foptim.adam(1e-3)
    opt_state = opt.init(params)
    _, opt_state = opt.update(params, opt_state, params)
    path = tmp_path / "ckpt.npz"
    fnn.io.save(path, {"params": params, "opt": opt_state})
    restored = fnn.io.load(path, like={"params": params, "opt": opt.init(params)})
    _assert_same_tree(restored, {"params": params, "opt": opt_state})
    with pytest.raises(ValueError, match="holds a ScaleByAdamState at opt.0.*pass like="):
        fnn.io.load(path)


def test_load_reports_every_mismatch(tmp_path):
    path = tmp_path / "model.npz"
    fnn.io.save(path, {"fc1": {"weight": np.zeros((4, 3), np.float32), "bias": np.zeros(4)},
                       "fc3": {"weight": np.zeros(2)}})
    like = {"fc1": {"weight": np.zeros((3, 4), np.float32), "bias": np.zeros(4, np.float32)},
            "fc2": {"weight": np.zeros(2)}}
    with pytest.raises(ValueError) as err:
        fnn.io.load(path, like=like)
    message = str(err.value)
    assert "does not match `like`" in message and str(path) in message
    assert "missing from the file: 'fc2.weight'" in message
    assert "in the file but not in like: 'fc3.weight'" in message
    assert "shape of 'fc1.weight': the file (4, 3), like (3, 4)" in message
    assert "dtype of 'fc1.bias': the file float64, like float32" in message


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "params.npz"
    fnn.io.save(path, {"w": np.zeros(3)})
    before = path.read_bytes()
    calls = []
    write_array = np.lib.format.write_array

    def failing_write(*args, **kwargs):    # fail halfway through the archive
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        fnn.io.save(path, {"a": np.ones(3), "b": np.ones(4), "c": np.ones(5)})
    assert len(calls) == 3
    assert path.read_bytes() == before                  # the old file is untouched
    assert os.listdir(tmp_path) == ["params.npz"]       # and no temporary file is left behind
    monkeypatch.undo()
    fnn.io.save(tmp_path / "new.npz", {"a": np.ones(3)})
    assert sorted(os.listdir(tmp_path)) == ["new.npz", "params.npz"]


def test_save_refuses_what_needs_pickle_or_is_ambiguous(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(TypeError, match="leaf 'a' is an object array"):
        fnn.io.save(path, {"a": np.array([{}, None], dtype=object)})
    with pytest.raises(ValueError, match="both be stored as 'a.b'"):
        fnn.io.save(path, {"a.b": np.ones(1), "a": {"b": np.ones(1)}})
    with pytest.raises(TypeError, match="dict keys must be str or int, got 1.5"):
        fnn.io.save(path, {1.5: np.ones(1)})
    assert os.listdir(tmp_path) == []


def test_files_from_other_programs_load_as_nested_dicts(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, **{"0.weight": np.ones((2, 3)), "0.bias": np.zeros(2), "scale": np.float32(2)})
    loaded = fnn.io.load(path)
    assert sorted(loaded) == ["0", "scale"] and loaded["0"]["weight"].shape == (2, 3)


def _safetensors_bytes(tensors):
    """A safetensors file as the format's specification lays it out (no fgrad metadata)."""
    header, blobs, offset = {}, [], 0
    for name, (code, array) in tensors.items():
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def test_safetensors_files_follow_the_format(tmp_path):
    weight, steps = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7], np.int64)
    path = tmp_path / "model.safetensors"
    fnn.io.save(path, {"fc": {"weight": weight}, "steps": steps})
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    assert (8 + size) % 8 == 0                                   # data aligned to 8 bytes
    assert header["fc.weight"]["dtype"] == "F32" and header["fc.weight"]["shape"] == [2, 3]
    begin, end = header["fc.weight"]["data_offsets"]
    np.testing.assert_array_equal(np.frombuffer(raw[8 + size + begin:8 + size + end], "<f4"), weight.ravel())
    assert header["steps"]["dtype"] == "I64"
    # a file written by another program (no fgrad metadata) loads as nested dicts
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(_safetensors_bytes({"0.weight": ("F64", np.eye(2)), "0.bias": ("BOOL", np.array([True]))}))
    loaded = fnn.io.load(foreign)
    np.testing.assert_array_equal(loaded["0"]["weight"], np.eye(2))
    assert loaded["0"]["bias"].dtype == np.bool_


def test_safetensors_round_trip_and_refusals(tmp_path):
    params = {"layers": [{"w": np.ones((2, 2), np.float16)}, None], "count": 3, "flag": np.array(True)}
    path = tmp_path / "tree.safetensors"
    fnn.io.save(path, params)
    _assert_same_tree(fnn.io.load(path), params)
    _assert_same_tree(fnn.io.load(path, like=params), params)
    with pytest.raises(TypeError, match="leaf 'z' has dtype complex128, which safetensors cannot store"):
        fnn.io.save(tmp_path / "c.safetensors", {"z": np.ones(2, complex)})
    assert not (tmp_path / "c.safetensors").exists()


_dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_, np.complex128])
_arrays = _dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
_names = st.text("abcdefgh_", min_size=1, max_size=5)
_trees = st.recursive(
    _arrays | st.floats(allow_nan=False) | st.integers(-10 ** 6, 10 ** 6) | st.booleans() | st.none(),
    lambda children: st.dictionaries(_names, children, max_size=3)
    | st.lists(children, max_size=3) | st.tuples(children, children),
    max_leaves=8)


@settings(max_examples=settings.default.max_examples * 3)
@given(params=_trees, suffix=st.sampled_from([".npz", ".safetensors"]))
def test_drawn_trees_round_trip(params, suffix, tmp_path_factory):
    if suffix == ".safetensors" and any(np.iscomplexobj(leaf) for leaf in tree.leaves(params)):
        suffix = ".npz"                      # safetensors has no complex dtype
    path = tmp_path_factory.mktemp("io") / ("tree" + suffix)
    fnn.io.save(path, params)
    _assert_same_tree(fnn.io.load(path), params)
    _assert_same_tree(fnn.io.load(path, like=params), params)


# --------------------------------------------------------------------------------------------
# fnn.utils
# --------------------------------------------------------------------------------------------

def test_count_params_and_names():
    model = fnn.Sequential(fnn.Conv2d(3, 8, 3), fnn.ReLU(), fnn.Flatten(), fnn.Linear(8 * 4, 10))
    params = model.init(KEY)
    torch_model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                      torch.nn.Linear(32, 10))
    assert fnn.utils.count_params(params) == sum(p.numel() for p in torch_model.parameters())
    flat = fnn.utils.flatten_names(params)
    assert sorted(flat) == sorted(torch_model.state_dict())
    nested = fnn.utils.unflatten_names(flat)     # the param-free layers' {} are not in the names
    assert sorted(nested) == ["0", "3"] and fnn.utils.flatten_names(nested) == flat
    x = np.ones((2, 3, 6, 3), np.float32)
    np.testing.assert_array_equal(model.apply(nested, x), model.apply(params, x))
    text = fnn.utils.summary(params)
    assert "0.weight  (8, 3, 3, 3)  float32  216" in text
    assert text.endswith(f"total: {fnn.utils.count_params(params):,} parameters in 4 arrays")


def test_unflatten_names_rejects_a_leaf_that_is_also_a_parent():
    with pytest.raises(ValueError, match="'a' is both a leaf and the parent"):
        fnn.utils.unflatten_names({"a": 1, "a.b": 2})
