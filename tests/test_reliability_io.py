"""Checkpoint files from elsewhere: every truncated, corrupted or hostile file is refused with
one error class, ``fnn.io.CheckpointError``, that names the file and what is wrong, before
anything large is allocated; valid files, including BF16/FP8 safetensors and misnamed ones,
load; saves keep file modes and write through symlinks.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest
import torch

import fnn
from fnn.io import CheckpointError


def _safetensors(header, data=b"", length=None):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _npz(members):
    """An .npz archive of ``{member name: array or raw bytes}``, written member by member."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, value in members.items():
            with archive.open(name, "w") as member:
                if isinstance(value, bytes):
                    member.write(value)
                else:
                    np.lib.format.write_array(member, value, allow_pickle=True)
    return buf.getvalue()


def _tree_npz(record, **arrays):
    return _npz({"__fgrad_tree__.npy": np.array(record), **{k + ".npy": v for k, v in arrays.items()}})


def _npy_header(header, data):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


_good_npz = io.BytesIO()
np.savez(_good_npz, a=np.ones(3))
GOOD_NPZ = _good_npz.getvalue()
_deep = '{"list": [' * 5000 + '{"leaf": "a", "py": null}' + "]}" * 5000
_nested = '{"list": [' * 300 + '{"leaf": "a", "py": null}' + "]}" * 300

HOSTILE = [
    # (id, file name, bytes, pieces of the message)
    ("empty", "m.safetensors", b"", ["empty"]),
    ("empty-npz", "m.npz", b"", ["empty"]),
    ("shorter-than-length", "m.safetensors", b"\x01\x02\x03", ["3 bytes", "truncated"]),
    ("header-length-0", "m.safetensors", struct.pack("<Q", 0), ["header length is 0"]),
    ("header-length-2^63", "m.safetensors", struct.pack("<Q", 2 ** 63) + b"{}",
     ["9223372036854775808", "truncated"]),
    ("header-length-2^64-1", "m.safetensors", struct.pack("<Q", 2 ** 64 - 1) + b"{}" * 8,
     ["header length"]),
    ("header-past-end", "m.safetensors", _safetensors({}, length=100), ["100 bytes"]),
    ("header-not-json", "m.safetensors", struct.pack("<Q", 5) + b"{abc}", ["not valid JSON"]),
    ("header-not-utf8", "m.safetensors", struct.pack("<Q", 4) + b"{\xff\xfe}", ["not valid JSON"]),
    ("header-a-list", "m.safetensors", _safetensors([1, 2]), ["JSON object", "list"]),
    ("header-deep", "m.safetensors",
     _safetensors({}, length=0)[:0] + struct.pack("<Q", 200005) + b'{"a":' + b"[" * 100000 + b"]" * 100000,
     ["not valid JSON"]),
    ("entry-not-object", "m.safetensors", _safetensors({"w": [1, 2]}), ["'w'", "object"]),
    ("missing-offsets", "m.safetensors", _safetensors({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
     ["'w'", "data_offsets"]),
    ("missing-dtype", "m.safetensors", _safetensors({"w": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     ["'w'", "dtype"]),
    ("offsets-past-end", "m.safetensors", _safetensors({"w": _entry(offsets=(0, 80))}, b"\0" * 8),
     ["'w'", "past the end"]),
    ("truncated-data", "m.safetensors", _safetensors({"w": _entry()}, b"\0" * 4), ["'w'", "truncated"]),
    ("reversed-offsets", "m.safetensors", _safetensors({"w": _entry(shape=(0,), offsets=(8, 0))}, b"\0" * 8),
     ["'w'", "reversed"]),
    ("negative-offset", "m.safetensors", _safetensors({"w": _entry(offsets=(-8, 0))}, b"\0" * 8),
     ["'w'", "reversed or negative"]),
    ("overlapping", "m.safetensors", _safetensors({"a": _entry(), "b": _entry(offsets=(4, 12))}, b"\0" * 12),
     ["'a'", "'b'", "overlap"]),
    ("size-mismatch", "m.safetensors", _safetensors({"w": _entry(shape=(3,))}, b"\0" * 8),
     ["'w'", "12 bytes", "hold 8"]),
    ("negative-shape", "m.safetensors", _safetensors({"w": _entry(shape=(-2,))}, b"\0" * 8),
     ["'w'", "non-negative"]),
    ("float-shape", "m.safetensors", _safetensors({"w": _entry(shape=(2.0,))}, b"\0" * 8), ["'w'", "shape"]),
    ("huge-shape", "m.safetensors", _safetensors({"w": _entry(shape=(2 ** 40, 2 ** 40))}, b"\0" * 8),
     ["'w'", "bytes"]),
    ("unknown-dtype", "m.safetensors", _safetensors({"w": _entry(dtype="C64")}, b"\0" * 8),
     ["'w'", "'C64'"]),
    ("bad-metadata", "m.safetensors", _safetensors({"__metadata__": {"a": 1}}), ["__metadata__"]),
    ("bad-tree-record", "m.safetensors",
     _safetensors({"__metadata__": {"__fgrad_tree__": "{not json"}}), ["tree record", "JSON"]),
    ("tree-names-missing-tensor", "m.safetensors",
     _safetensors({"__metadata__": {"__fgrad_tree__": json.dumps({"leaf": "zz", "py": None})}}),
     ["'zz'", "does not hold"]),
    ("not-a-zip", "m.npz", b"hello, this is not an archive at all", ["neither", "zip"]),
    ("truncated-zip", "m.npz", GOOD_NPZ[: len(GOOD_NPZ) // 2], ["zip", "truncated"]),
    ("single-npy", "m.npz", _npy_header({"descr": "<f8", "fortran_order": False, "shape": (1,)}, b"\0" * 8),
     ["numpy.save", "numpy.load"]),
    ("pickled-object-array", "m.npz", _npz({"a.npy": np.array([{}, 1], dtype=object)}),
     ["'a.npy'", "pickle"]),
    ("member-not-npy", "m.npz", _npz({"a.txt": b"hello"}), ["'a.txt'", ".npy"]),
    ("member-bad-magic", "m.npz", _npz({"a.npy": b"not an npy member"}), ["'a.npy'"]),
    ("npy-huge-header-shape", "m.npz",
     _npz({"a.npy": _npy_header({"descr": "<f8", "fortran_order": False, "shape": (2 ** 40,)}, b"\0" * 16)}),
     ["'a.npy'", "8796093022208 bytes", "holds 16"]),
    ("npy-negative-shape", "m.npz",
     _npz({"a.npy": _npy_header({"descr": "<f8", "fortran_order": False, "shape": (-1,)}, b"\0" * 8)}),
     ["'a.npy'", "negative"]),
    ("npy-truncated-data", "m.npz",
     _npz({"a.npy": _npy_header({"descr": "<f8", "fortran_order": False, "shape": (4,)}, b"\0" * 8)}),
     ["'a.npy'", "truncated"]),
    ("tree-missing-leaf", "m.npz",
     _tree_npz(json.dumps({"dict": [["a", {"leaf": "a", "py": None}], ["b", {"leaf": "b", "py": None}]]}),
               a=np.ones(2)), ["'b'", "does not hold"]),
    ("tree-unknown-kind", "m.npz", _tree_npz(json.dumps({"set": []})), ["unknown node"]),
    ("tree-not-json", "m.npz", _tree_npz("{oops"), ["not valid JSON"]),
    ("tree-deep-json", "m.npz", _tree_npz(_deep, a=np.ones(1)), ["nested too deeply"]),
    ("tree-deep", "m.npz", _tree_npz(_nested, a=np.ones(1)), ["nested more than"]),
    ("tree-leaf-twice", "m.npz",
     _tree_npz(json.dumps({"list": [{"leaf": "a", "py": None}, {"leaf": "a", "py": None}]}), a=np.ones(1)),
     ["twice"]),
    ("tree-bad-dict", "m.npz", _tree_npz(json.dumps({"dict": [["a"]]}), a=np.ones(1)), ["pairs"]),
    ("tree-bad-py-type", "m.npz", _tree_npz(json.dumps({"leaf": "a", "py": "object"}), a=np.ones(1)),
     ["'object'"]),
    ("tree-py-scalar-array", "m.npz", _tree_npz(json.dumps({"leaf": "a", "py": "int"}), a=np.ones(3)),
     ["Python 'int'"]),
    ("tree-extra-array", "m.npz",
     _tree_npz(json.dumps({"leaf": "a", "py": None}), a=np.ones(1), b=np.ones(1)),
     ["'b'", "does not mention"]),
    ("tree-record-not-string", "m.npz", _npz({"__fgrad_tree__.npy": np.ones(3)}), ["one string"]),
    ("foreign-names-clash", "m.safetensors",
     _safetensors({"a": _entry(shape=(0,), offsets=(0, 0)), "a.b": _entry(shape=(0,), offsets=(0, 0))}),
     ["both a leaf and the parent"]),
]


@pytest.mark.parametrize("name, blob, pieces", [row[1:] for row in HOSTILE],
                         ids=[row[0] for row in HOSTILE])
def test_hostile_and_corrupted_files_are_refused_cleanly(tmp_path, name, blob, pieces):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as info:
        fnn.io.load(path)
    message = str(info.value)
    assert str(path) in message and message.startswith("fnn.io.load(")
    for piece in pieces:
        assert piece in message, f"{piece!r} not in {message}"
    assert isinstance(info.value, ValueError)          # existing `except ValueError` still works
    with pytest.raises(ValueError):                    # and with a template: refused too
        fnn.io.load(path, like={"a": np.ones(2)})      # (or, if readable, not matching it)


def test_a_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fnn.io.load(tmp_path / "nope.npz")


def _torch_bytes(tensor):
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("code, torch_dtype", [("BF16", torch.bfloat16), ("F8_E4M3", torch.float8_e4m3fn),
                                               ("F8_E5M2", torch.float8_e5m2), ("F16", torch.float16)])
def test_dtypes_numpy_lacks_load_converted_to_float32(tmp_path, code, torch_dtype):
    values = torch.linspace(-3, 3, 12).reshape(3, 4).to(torch_dtype)
    raw = _torch_bytes(values)
    path = tmp_path / "model.safetensors"
    path.write_bytes(_safetensors({"w": _entry(code, (3, 4), (0, len(raw)))}, raw))
    loaded = fnn.io.load(path)["w"]
    assert loaded.shape == (3, 4) and loaded.flags.writeable
    assert loaded.dtype == (np.float16 if code == "F16" else np.float32)
    np.testing.assert_array_equal(loaded.astype(np.float32), values.to(torch.float32).numpy())


def test_every_fp8_byte_converts_as_torch_does(tmp_path):
    for code, torch_dtype in (("F8_E4M3", torch.float8_e4m3fn), ("F8_E5M2", torch.float8_e5m2)):
        raw = bytes(range(256))
        path = tmp_path / f"{code}.safetensors"
        path.write_bytes(_safetensors({"w": _entry(code, (256,), (0, 256))}, raw))
        expected = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(torch_dtype).float().numpy()
        np.testing.assert_array_equal(fnn.io.load(path)["w"], expected)


def test_files_written_by_the_safetensors_library_load_as_before(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {"h.0.attn.weight": torch.randn(4, 3), "h.0.ln.bias": torch.zeros(3, dtype=torch.float64),
               "wte": torch.randn(5, 2).to(torch.bfloat16), "mask": torch.tensor([True, False])}
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    loaded = fnn.io.load(path)
    np.testing.assert_array_equal(loaded["h"]["0"]["attn"]["weight"], tensors["h.0.attn.weight"].numpy())
    assert loaded["h"]["0"]["ln"]["bias"].dtype == np.float64
    np.testing.assert_array_equal(loaded["wte"], tensors["wte"].float().numpy())
    assert loaded["mask"].dtype == np.bool_


@pytest.mark.parametrize("written, named", [("safetensors", ".npz"), ("npz", ".safetensors"),
                                            ("safetensors", ".bin"), ("npz", "")])
def test_formats_are_recognised_by_content_not_by_name(tmp_path, written, named):
    params = {"layer": {"w": np.arange(6.0).reshape(2, 3)}, "n": 3}
    source = tmp_path / f"source.{written}"
    fnn.io.save(source, params)
    misnamed = tmp_path / f"misnamed{named}"
    misnamed.write_bytes(source.read_bytes())
    loaded = fnn.io.load(misnamed)
    np.testing.assert_array_equal(loaded["layer"]["w"], params["layer"]["w"])
    assert loaded["n"] == 3 and type(loaded["n"]) is int


def test_valid_files_load_exactly_as_np_load_gives_them(tmp_path):
    path = tmp_path / "plain.npz"
    arrays = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": np.asfortranarray(np.ones((2, 2))),
              "c": np.array("text"), "d": np.zeros((0, 3)), "e": np.array([1 + 2j])}
    np.savez_compressed(path, **arrays)
    loaded = fnn.io.load(path)
    with np.load(path, allow_pickle=False) as reference:
        for name in arrays:
            np.testing.assert_array_equal(loaded[name], reference[name])
            assert loaded[name].dtype == reference[name].dtype
            assert loaded[name].flags.f_contiguous == reference[name].flags.f_contiguous


# --------------------------------------------------------------------------------------------
# Saving: modes and symlinks
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_new_files_get_the_usual_mode_and_replaced_files_keep_theirs(tmp_path, suffix):
    old = os.umask(0o022)
    try:
        path = tmp_path / f"params{suffix}"
        fnn.io.save(path, {"w": np.ones(2)})
        assert os.stat(path).st_mode & 0o777 == 0o644        # not mkstemp's 0600
        os.chmod(path, 0o640)
        fnn.io.save(path, {"w": np.ones(3)})
        assert os.stat(path).st_mode & 0o777 == 0o640
        os.umask(0o077)
        fresh = tmp_path / f"fresh{suffix}"
        fnn.io.save(fresh, {"w": np.ones(2)})
        assert os.stat(fresh).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saving_through_a_symlink_writes_the_file_it_points_to(tmp_path, suffix):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / f"model{suffix}"
    fnn.io.save(target, {"w": np.ones(2)})
    link = tmp_path / f"latest{suffix}"
    link.symlink_to(target)
    fnn.io.save(link, {"w": np.full(4, 2.0)})
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(fnn.io.load(target)["w"], np.full(4, 2.0))
    assert sorted(os.listdir(tmp_path / "real")) == [f"model{suffix}"]   # no temporary left
    # a dangling link is written through too
    dangling = tmp_path / f"dangling{suffix}"
    dangling.symlink_to(tmp_path / "real" / f"new{suffix}")
    fnn.io.save(dangling, {"w": np.ones(1)})
    assert dangling.is_symlink() and (tmp_path / "real" / f"new{suffix}").is_file()


def test_npy_members_of_every_format_version_load(tmp_path):
    structured = np.zeros(3, dtype=[("é", "<f8"), ("n", "<i4")])      # needs version 3.0
    members = {}
    for version, value in (((1, 0), np.arange(3.0)), ((2, 0), np.ones((2, 2))), ((3, 0), structured)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value, version=version)
        members[f"v{version[0]}.npy"] = buf.getvalue()
    path = tmp_path / "versions.npz"
    path.write_bytes(_npz(members))
    loaded = fnn.io.load(path)
    np.testing.assert_array_equal(loaded["v1"], np.arange(3.0))
    assert loaded["v3"].dtype == structured.dtype
    bad = bytearray(members["v1.npy"])
    bad[6:8] = bytes([9, 9])                                           # version 9.9
    path.write_bytes(_npz({"a.npy": bytes(bad)}))
    with pytest.raises(CheckpointError, match=r"version \(9, 9\)"):
        fnn.io.load(path)
