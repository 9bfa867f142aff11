"""Saving, loading and converting parameter trees: ``.npz`` files without pickle, torch state_dicts.

* :func:`save` writes a pytree to a NumPy ``.npz`` archive (one ``.npy`` member per leaf) or,
  for a ``.safetensors`` path, a safetensors file; either way each leaf is named by its dotted
  path (``"0.weight"``) and a JSON description of the tree's containers goes along. The
  write is atomic: the file is written to a temporary file in the same directory and
  renamed over ``path`` only once complete, so a crash never leaves a partial file there.
  A save keeps the permissions of the file it replaces (a new file gets ``0666`` less the
  umask, as ``open`` would give it) and writes through a symbolic link to the file it names.
* :func:`load` reads it back (never unpickling anything). Given ``like`` (a tree of the
  expected structure, for example ``model.init(key)``) it checks names, shapes and dtypes and
  reports every difference at once, and returns a tree with ``like``'s structure (which is how
  namedtuples, such as optimizer states, are rebuilt). The format is recognised by the file's
  content (a zip archive is ``.npz``, an 8-byte length followed by ``{`` is safetensors), so a
  misnamed file loads too. Files from elsewhere are checked before anything large is
  allocated: a truncated, corrupted or hostile file (header lengths past the end, overlapping
  or out-of-range offsets, negative shapes, members needing pickle, a malformed or deeply
  nested tree record) raises :class:`CheckpointError` naming the file, the entry and what is
  wrong. safetensors' BF16 and FP8 (``F8_E4M3``, ``F8_E5M2``) tensors, which NumPy has no
  dtype for, load converted to float32.
* :func:`to_torch_state_dict` and :func:`from_torch_state_dict` convert to and from the flat
  ``{dotted name: array}`` form of ``torch.nn.Module.state_dict()``. fnn layers keep params and
  state (BatchNorm's running statistics) apart; a torch state_dict holds both.

>>> import numpy as np, fgrad, fnn
>>> layer = fnn.Linear(3, 2)
>>> params = layer.init(fgrad.random.key(0))
>>> fnn.io.save("/tmp/linear.npz", params)
>>> restored = fnn.io.load("/tmp/linear.npz", like=params)
>>> sorted(fnn.io.to_torch_state_dict(params))
['bias', 'weight']

To load into torch: ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``
(fnn never imports torch); ``from_torch_state_dict`` accepts tensors directly.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np
import optree

from fgrad import tree
from .utils import flatten_names, path_name, unflatten_names

__all__ = ["save", "load", "to_torch_state_dict", "from_torch_state_dict", "CheckpointError"]


class CheckpointError(ValueError):
    """A file :func:`load` cannot read as parameters: empty, truncated, corrupted, or not an
    ``.npz``/safetensors file at all. The message names the file, the entry and the problem."""

#: The archive member holding the JSON description of the tree's containers.
_TREE_MEMBER = "__fgrad_tree__"
#: Stands for the description of a file that another program wrote (it has none).
_FOREIGN = object()
#: The name of the single leaf of a tree that is just one array.
_ROOT = "__root__"
_PY_SCALARS = {bool: "bool", int: "int", float: "float", complex: "complex"}
_PY_TYPES = {name: typ for typ, name in _PY_SCALARS.items()}
#: The deepest tree record load rebuilds (its walk is recursive; save's is too).
_MAX_DEPTH = 200
#: The largest safetensors header read (the Rust safetensors library's own limit).
_MAX_HEADER = 100_000_000
#: No deflated zip member expands more than this (deflate's limit is about 1032:1).
_MAX_DEFLATE_RATIO = 1100


def _fail(path, problem):
    return CheckpointError(f"fnn.io.load({os.fspath(path)!r}): {problem}")


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------

def save(path, params, *, compress=False, metadata=None):
    """Write the pytree ``params`` to ``path`` (exactly that name), atomically.

    The format follows the suffix: ``.safetensors`` writes a safetensors file, anything else a
    NumPy ``.npz`` archive. Leaves may be NumPy arrays, NumPy scalars (loaded back as 0-d
    arrays) or Python ``bool``/``int``/``float``/``complex`` (loaded back as the same Python
    type); object arrays are refused (they would need pickle), and safetensors has no complex
    dtypes. ``compress=True`` deflates the members of an ``.npz``. ``metadata`` (safetensors
    only) adds string entries to the file's ``__metadata__``, e.g. ``{"format": "pt"}``, which
    Hugging Face's loaders require.
    """
    description, arrays = _describe(params, path)
    safetensors = _is_safetensors(path)
    if safetensors:
        _check_safetensors_dtypes(arrays, path)
    if metadata is not None:
        if not safetensors:
            raise ValueError(f"fnn.io.save({path!r}): metadata is stored only in .safetensors "
                             f"files")
        if not all(isinstance(k, str) and isinstance(v, str) and k != _TREE_MEMBER
                   for k, v in metadata.items()):
            raise TypeError(f"fnn.io.save({path!r}): metadata must map str to str (and not use "
                            f"the key {_TREE_MEMBER!r}), got {metadata!r}")
    target = os.path.realpath(path)       # through a symlink: replace the file it points to
    directory = os.path.dirname(target)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if safetensors:
                _write_safetensors(f, description, arrays, metadata)
            else:
                _write_npz(f, description, arrays, compress)
            f.flush()
            os.fchmod(f.fileno(), mode)   # mkstemp makes 0600 files
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _mode_for(target):
    """The permission bits a save gives ``target``: those of the file it replaces, else those
    a new file gets from ``open`` (0666 less the umask)."""
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    try:                                  # Linux: read it without changing it (thread-safe)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path, like=None):
    """Read a tree written by :func:`save` (``.npz`` or ``.safetensors``, by suffix).

    Without ``like`` the containers are rebuilt from the file (dicts, lists, tuples, None); a
    file written by another program (``np.savez``, a torch/Hugging Face ``.safetensors``) has
    no such record, and its dotted names become nested dicts (``"0.weight"`` ->
    ``{"0": {"weight": ...}}``). With ``like``, the file must hold exactly ``like``'s leaves (by
    dotted name) with the same shapes and dtypes, else ``ValueError`` lists every difference;
    the result has ``like``'s structure. ``like``'s leaves only need ``shape`` and ``dtype``.
    """
    reader = {"npz": _read_npz, "safetensors": _read_safetensors}[_file_format(path)]
    description, arrays = reader(path)
    if description is not _FOREIGN:
        _check_description(description, arrays, path)
    if like is None:
        if description is _FOREIGN:
            try:
                return unflatten_names(arrays)
            except ValueError as err:
                raise _fail(path, f"the tensor names do not form a tree: {err}") from None
        return _rebuild(description, arrays, path)
    expected = _named_leaves(like)
    problems = _differences(arrays, expected, "the file", "like")
    if problems:
        raise ValueError(f"fnn.io.load({path!r}): the file does not match `like`:\n  "
                         + "\n  ".join(problems))
    py_types = dict(_scalar_types(description))
    values = [_as_saved(arrays[name], py_types.get(name)) for name in expected]
    return tree.unflatten(tree.structure(like), values)


def _is_safetensors(path):
    return os.fspath(path).endswith(".safetensors")


def _file_format(path):
    """``"npz"`` or ``"safetensors"``, from the file's first bytes (then from its suffix)."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):          # a zip archive: .npz
        return "npz"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"
    if _is_safetensors(path):
        return "safetensors"                 # let the reader say what is wrong with it
    if head.startswith(b"\x93NUMPY"):
        raise _fail(path, "this is a single .npy array (numpy.save), not an .npz archive; read "
                          "it with numpy.load(path, allow_pickle=False)")
    raise _fail(path, f"the file ({size} bytes) is neither an .npz archive (a zip file) nor a "
                      f"safetensors file (an 8-byte header length, then a JSON header); it "
                      f"starts with {head!r}")


# ---- .npz: one .npy member per leaf, plus the description as a JSON string member -----------

def _write_npz(f, description, arrays, compress):
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as archive:
        _write_member(archive, _TREE_MEMBER, np.array(json.dumps(description)))
        for name, array in arrays.items():
            _write_member(archive, name, array)


def _write_member(archive, name, array):
    with archive.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _read_npz(path):
    """``(description, {name: array})`` of an ``.npz`` archive, every member checked first.

    Reads what ``np.load(path, allow_pickle=False)`` would (the same arrays), but each member's
    header is checked against the bytes the archive really holds before its data is read, so
    a corrupted or hostile header cannot make NumPy allocate terabytes or unpickle anything.
    """
    size = os.path.getsize(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise _fail(path, f"not a readable .npz (zip) archive: {err}; the file is truncated or "
                          f"corrupted") from None
    with archive:
        members = {}
        for info in archive.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if not name.endswith(".npy"):
                raise _fail(path, f"member {name!r} is not a .npy array; an .npz archive holds "
                                  f"only .npy members")
            key = name[:-len(".npy")]
            if key in members:
                raise _fail(path, f"member {name!r} appears twice in the archive")
            if info.compress_type == zipfile.ZIP_STORED:
                limit = info.compress_size
            else:
                limit = max(info.compress_size, 1) * _MAX_DEFLATE_RATIO
            if info.compress_size > size or info.file_size > limit:
                raise _fail(path, f"member {name!r} claims {info.file_size} bytes from "
                                  f"{info.compress_size} stored ones in a {size}-byte file; the "
                                  f"archive is corrupted")
            members[key] = info
        arrays = {key: _read_member(archive, info, path) for key, info in members.items()}
    description = _FOREIGN
    if _TREE_MEMBER in arrays:
        record = arrays.pop(_TREE_MEMBER)
        if record.shape != () or record.dtype.kind != "U":
            raise _fail(path, f"the tree record {_TREE_MEMBER!r} must be one string, got an "
                              f"array {record.dtype}{list(record.shape)}")
        description = _parse_description(str(record), path, _TREE_MEMBER)
    return description, arrays


def _read_member(archive, info, path):
    """One checked ``.npy`` member: magic, header, and a data size that matches the header."""
    name = info.filename
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version in ((2, 0), (3, 0)):
                # 3.0 differs from 2.0 only in encoding field names as UTF-8, not latin-1:
                # the shape and the item size checked here come out the same
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise _fail(path, f"member {name!r} is in .npy format version {version}, "
                                  f"which NumPy does not define")
            header_size = member.tell()
        if dtype.hasobject:
            raise _fail(path, f"member {name!r} holds Python objects ({dtype}), which would need "
                              f"pickle to load; fnn.io never unpickles")
        if any(n < 0 for n in shape):
            raise _fail(path, f"member {name!r} has a negative shape {shape}")
        expected = math.prod(shape) * dtype.itemsize
        if expected != info.file_size - header_size:
            raise _fail(path, f"member {name!r}: its header describes {dtype}{list(shape)}, "
                              f"{expected} bytes of data, but the member holds "
                              f"{info.file_size - header_size}; the file is truncated or corrupted")
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except CheckpointError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, SyntaxError,
            TypeError, KeyError) as err:
        raise _fail(path, f"member {name!r} is not a readable .npy array: {err}") from None


# ---- .safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
# ---- dtype, shape and byte range, then the raw little-endian bytes (the Hugging Face format)

_SAFETENSORS_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
                       "I16": np.int16, "F16": np.float16, "U32": np.uint32, "I32": np.int32,
                       "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64}
_SAFETENSORS_CODES = {np.dtype(t): code for code, t in _SAFETENSORS_DTYPES.items()}
#: safetensors dtypes NumPy lacks: bytes per element; they load converted to float32.
_CONVERTED_DTYPES = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def _fp8_table(exponent_bits, mantissa_bits, has_inf):
    """float32 value of each of the 256 bytes of an 8-bit float format (OCP FP8: E4M3 has no
    infinities and one NaN per sign, E5M2 follows IEEE 754)."""
    bias = 2 ** (exponent_bits - 1) - 1
    table = np.empty(256, np.float32)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        e = (byte >> mantissa_bits) & ((1 << exponent_bits) - 1)
        m = byte & ((1 << mantissa_bits) - 1)
        top = (1 << exponent_bits) - 1
        if has_inf and e == top:
            value = math.inf if m == 0 else math.nan
        elif not has_inf and e == top and m == (1 << mantissa_bits) - 1:
            value = math.nan
        elif e == 0:
            value = m / 2 ** mantissa_bits * 2.0 ** (1 - bias)
        else:
            value = (1 + m / 2 ** mantissa_bits) * 2.0 ** (e - bias)
        table[byte] = sign * value
    return table


_FP8_TABLES = {}


def _converted(code, raw, shape):
    """A float32 array from the raw little-endian bytes of a BF16 or FP8 tensor."""
    if code == "BF16":   # bfloat16 is the top half of a float32
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if code not in _FP8_TABLES:
        _FP8_TABLES[code] = (_fp8_table(4, 3, False) if code == "F8_E4M3"
                             else _fp8_table(5, 2, True))
    return _FP8_TABLES[code][np.frombuffer(raw, np.uint8)].reshape(shape)


def _check_safetensors_dtypes(arrays, path):
    for name, array in arrays.items():
        if array.dtype.newbyteorder("=") not in _SAFETENSORS_CODES:
            raise TypeError(f"fnn.io.save({path!r}): leaf {name!r} has dtype {array.dtype}, which "
                            f"safetensors cannot store; use an .npz file")


def _names_rebuild(description):
    """True when a tree is nested dicts with str keys (no '.') down to array leaves: exactly
    what a file's dotted names rebuild when it is loaded without a description."""
    if description is None:                  # a tree that is None (or a None leaf inside one)
        return False
    if "leaf" in description:
        return description["py"] is None
    return "dict" in description and bool(description["dict"]) and all(
        isinstance(k, str) and "." not in k and _names_rebuild(c) for k, c in description["dict"])


def _write_safetensors(f, description, arrays, metadata=None):
    # The tree's description goes into the metadata unless the dotted names alone rebuild the
    # tree: then the file is what any other program writes (a Hugging Face model's, say).
    described = {} if _names_rebuild(description) and "dict" in description else \
        {_TREE_MEMBER: json.dumps(description)}
    header = {"__metadata__": {**(metadata or {}), **described}}
    offset = 0
    for name, array in arrays.items():
        header[name] = {"dtype": _SAFETENSORS_CODES[array.dtype.newbyteorder("=")],
                        "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)             # the format aligns the data to 8 bytes
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for array in arrays.values():
        f.write(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())


def _read_safetensors(path):
    """``(description, {name: array})`` of a safetensors file, its header checked entry by
    entry (dtype, shape, offsets inside the file, no overlaps) before any tensor is read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise _fail(path, f"the file has {size} bytes, fewer than the 8-byte header length "
                              f"that starts a safetensors file (truncated)")
        (header_size,) = struct.unpack("<Q", f.read(8))
        if header_size < 2 or header_size > size - 8 or header_size > _MAX_HEADER:
            raise _fail(path, f"the safetensors header length is {header_size} bytes, but the "
                              f"file has {size - 8} bytes after it (a header is at least 2 bytes, "
                              f"'{{}}', and at most {_MAX_HEADER}); the file is truncated or not "
                              f"safetensors")
        raw = f.read(header_size)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise _fail(path, f"the safetensors header is not valid JSON: "
                              f"{type(err).__name__}: {err}") from None
        if not isinstance(header, dict):
            raise _fail(path, f"the safetensors header must be a JSON object, got a "
                              f"{type(header).__name__}")
        metadata = header.pop("__metadata__", None)
        description = _FOREIGN
        if metadata is not None:
            if not isinstance(metadata, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
                raise _fail(path, "__metadata__ must map strings to strings")
            if _TREE_MEMBER in metadata:
                description = _parse_description(metadata[_TREE_MEMBER], path,
                                                 f"__metadata__[{_TREE_MEMBER!r}]")
        data_start, data_size = 8 + header_size, size - 8 - header_size
        entries = [_check_entry(path, name, info, data_size) for name, info in header.items()]
        spans = sorted((begin, end, name) for name, _, _, begin, end in entries if end > begin)
        for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
            if begin < end:
                raise _fail(path, f"tensors {first!r} and {second!r} overlap in the data "
                                  f"(offsets {end} and {begin})")
        arrays = {}
        for name, code, shape, begin, end in entries:
            f.seek(data_start + begin)
            raw = f.read(end - begin)
            if len(raw) != end - begin:
                raise _fail(path, f"tensor {name!r}: the file ended while reading its data")
            if code in _CONVERTED_DTYPES:
                arrays[name] = _converted(code, raw, shape)
            else:
                dtype = np.dtype(_SAFETENSORS_DTYPES[code]).newbyteorder("<")
                arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(
                    dtype.newbyteorder("="))
    return description, arrays


def _check_entry(path, name, info, data_size):
    """``(name, dtype code, shape, begin, end)`` of one header entry, or a CheckpointError."""
    def bad(problem):
        return _fail(path, f"tensor {name!r}: {problem}")
    if not isinstance(info, dict):
        raise bad(f"its header entry must be an object with dtype, shape and data_offsets, got "
                  f"{json.dumps(info)[:80]}")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise bad(f"its header entry has no {key!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or (code not in _SAFETENSORS_DTYPES and code not in _CONVERTED_DTYPES):
        known = sorted(_SAFETENSORS_DTYPES) + sorted(_CONVERTED_DTYPES)
        raise bad(f"dtype {code!r} is not one fnn.io reads ({', '.join(known)})")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise bad(f"shape must be a list of non-negative integers, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(n) is int for n in offsets)):
        raise bad(f"data_offsets must be two integers [begin, end], got {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise bad(f"data_offsets {offsets} are reversed or negative")
    if end > data_size:
        raise bad(f"data_offsets {offsets} run past the end of the data ({data_size} bytes; the "
                  f"file is truncated)")
    itemsize = _CONVERTED_DTYPES.get(code) or np.dtype(_SAFETENSORS_DTYPES[code]).itemsize
    expected = math.prod(shape) * itemsize
    if end - begin != expected:
        raise bad(f"shape {shape} of {code} needs {expected} bytes but data_offsets {offsets} "
                  f"hold {end - begin}")
    return name, code, tuple(shape), begin, end


def _named_leaves(params):
    """``{name: leaf}`` with the root leaf of a one-array tree under :data:`_ROOT`."""
    named = flatten_names(params)
    return {(name or _ROOT): leaf for name, leaf in named.items()}


def _describe(params, path):
    """The JSON description of ``params``' containers and its ``{name: array}`` leaves."""
    arrays = {}

    def walk(node, keys):
        if node is None:
            return None
        if optree.tree_is_leaf(node, namespace=tree.NAMESPACE):
            name = path_name(keys) or _ROOT
            if name in arrays or name in (_TREE_MEMBER, "__metadata__"):
                raise ValueError(f"fnn.io.save({path!r}): two leaves would both be stored as "
                                 f"{name!r}; a dict key contains '.'")
            array = np.asarray(node)
            if array.dtype.hasobject:
                raise TypeError(f"fnn.io.save({path!r}): leaf {name!r} is an object array "
                                f"({type(node).__name__}); only numeric, bool and string arrays can be "
                                f"saved without pickle")
            arrays[name] = array
            return {"leaf": name, "py": _PY_SCALARS.get(type(node))}
        one = optree.tree_flatten_one_level(node, none_is_leaf=False, namespace=tree.NAMESPACE)
        children = [walk(child, keys + (entry,)) for child, entry in zip(one.children, one.entries)]
        if type(node) is dict:
            for key in one.entries:
                if type(key) not in (str, int):
                    raise TypeError(f"fnn.io.save({path!r}): dict keys must be str or int, got "
                                    f"{key!r} at {path_name(keys) or 'the top level'}")
            return {"dict": [[k, c] for k, c in zip(one.entries, children)]}
        if type(node) in (list, tuple):
            return {type(node).__name__: children}
        return {"node": type(node).__name__, "children": children}

    return walk(params, ()), arrays


def _parse_description(text, path, where):
    try:
        return json.loads(text)
    except RecursionError:
        raise _fail(path, f"the tree record {where} is nested too deeply") from None
    except ValueError as err:
        raise _fail(path, f"the tree record {where} is not valid JSON: {err}") from None


def _check_description(description, arrays, path):
    """Check a tree record (iteratively) against the file's arrays before rebuilding from it:
    known node kinds, leaves the file holds (each once, and every array described), Python
    scalars that are 0-d, and a depth the rebuild can recurse through."""
    used = set()
    stack = [(description, (), 0)]
    while stack:
        node, where, depth = stack.pop()
        at = path_name(where) or "the top level"
        if depth > _MAX_DEPTH:
            raise _fail(path, f"the tree record is nested more than {_MAX_DEPTH} levels deep "
                              f"(at {at})")
        if node is None:
            continue
        if not isinstance(node, dict):
            raise _fail(path, f"the tree record has a {type(node).__name__} at {at}, not a node")
        if "leaf" in node:
            name, py = node.get("leaf"), node.get("py")
            if not isinstance(name, str) or name not in arrays:
                raise _fail(path, f"the tree record names a leaf {name!r} (at {at}) that the file "
                                  f"does not hold")
            if name in used:
                raise _fail(path, f"the tree record uses leaf {name!r} twice")
            if py is not None and (py not in _PY_TYPES or arrays[name].shape != ()):
                raise _fail(path, f"leaf {name!r} is recorded as a Python {py!r} but holds "
                                  f"{arrays[name].dtype}{list(arrays[name].shape)}")
            used.add(name)
            continue
        if "dict" in node:
            pairs = node["dict"]
            if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 and type(p[0]) in (str, int) for p in pairs):
                raise _fail(path, f"the tree record's dict at {at} must be a list of [key, child] "
                                  f"pairs with str or int keys")
            stack.extend((child, where + (key,), depth + 1) for key, child in pairs)
            continue
        kind = next((k for k in ("list", "tuple", "children") if k in node), None)
        if kind is None or not isinstance(node[kind], list) or (
                kind == "children" and not isinstance(node.get("node"), str)):
            raise _fail(path, f"the tree record has an unknown node {json.dumps(node)[:80]} at {at}")
        stack.extend((child, where + (i,), depth + 1) for i, child in enumerate(node[kind]))
    extra = [name for name in arrays if name not in used]
    if extra:
        raise _fail(path, f"the file holds arrays the tree record does not mention: "
                          f"{', '.join(map(repr, extra[:5]))}")


def _scalar_types(description):
    """``(name, python type name)`` for every leaf that was a Python scalar."""
    if description is None or description is _FOREIGN:
        return
    if "leaf" in description:
        if description["py"] is not None:
            yield description["leaf"], description["py"]
        return
    if "dict" in description:
        children = [child for _, child in description["dict"]]
    else:
        children = description.get("list") or description.get("tuple") or description.get("children")
    for child in children or ():
        yield from _scalar_types(child)


def _as_saved(array, py_type):
    return _PY_TYPES[py_type](array.item()) if py_type else array


def _rebuild(description, arrays, path, where=()):
    if description is None:
        return None
    if "leaf" in description:
        return _as_saved(arrays[description["leaf"]], description["py"])
    if "dict" in description:
        return {k: _rebuild(c, arrays, path, where + (k,)) for k, c in description["dict"]}
    if "list" in description:
        return [_rebuild(c, arrays, path, where + (i,)) for i, c in enumerate(description["list"])]
    if "tuple" in description:
        return tuple(_rebuild(c, arrays, path, where + (i,)) for i, c in enumerate(description["tuple"]))
    raise ValueError(f"fnn.io.load({path!r}): the file holds a {description['node']} at "
                     f"{path_name(where) or 'the top level'}, which only a template can rebuild; "
                     f"pass like=<a tree of the same structure> (e.g. the optimizer's init(params))")


def _differences(found, expected, found_what, expected_what):
    """Lines describing every name, shape and dtype difference between two ``{name: leaf}``."""
    problems = []
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    if missing:
        problems.append(f"missing from {found_what}: {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"in {found_what} but not in {expected_what}: {', '.join(map(repr, extra))}")
    for name in expected:
        if name not in found:
            continue
        got_shape, want_shape = np.shape(found[name]), np.shape(expected[name])
        if got_shape != want_shape:
            problems.append(f"shape of {name!r}: {found_what} {got_shape}, {expected_what} {want_shape}")
        got_dtype, want_dtype = _dtype(found[name]), _dtype(expected[name])
        if got_dtype is not None and want_dtype is not None and got_dtype != want_dtype:
            problems.append(f"dtype of {name!r}: {found_what} {got_dtype}, {expected_what} {want_dtype}")
    return problems


def _dtype(leaf):
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return np.asarray(leaf).dtype
    return np.dtype(dtype) if isinstance(dtype, (np.dtype, type, str)) else None


# --------------------------------------------------------------------------------------------
# torch state_dicts
# --------------------------------------------------------------------------------------------

def to_torch_state_dict(params, state=None):
    """The torch ``state_dict`` of ``params`` (and ``state``): ``{dotted name: np.ndarray}``.

    fnn's nested param dicts use torch's attribute names, so the names are exactly those of the
    torch module with the same structure. Raises ``ValueError`` if params and state share a name.
    """
    flat = {name: np.asarray(leaf) for name, leaf in flatten_names(params).items()}
    if state is not None:
        for name, leaf in flatten_names(state).items():
            if name in flat:
                raise ValueError(f"to_torch_state_dict: {name!r} is in both params and state")
            flat[name] = np.asarray(leaf)
    return flat


def from_torch_state_dict(state_dict, params_like, state_like=None):
    """Params (and state) for fnn from a torch ``state_dict`` (tensors or arrays).

    ``params_like`` (and ``state_like``) give the structure, e.g. ``layer.init(key)`` and
    ``layer.init_state()``; every one of their dotted names must be in ``state_dict`` with the
    same shape, and every key of ``state_dict`` must be one of them (as torch's
    ``strict=True``), else ``ValueError`` lists the differences. Values are cast to the
    template's dtypes, so a float32 torch module loads into a float64 template. Returns
    ``params``, or ``(params, state)`` when ``state_like`` is given.
    """
    arrays = {name: _to_numpy(v) for name, v in state_dict.items()}
    templates = [params_like] if state_like is None else [params_like, state_like]
    expected = {}
    for template in templates:
        expected.update(flatten_names(template))
    problems = [p for p in _differences(arrays, expected, "the state_dict", "the template")
                if not p.startswith("dtype")]
    if problems:
        raise ValueError("from_torch_state_dict: the state_dict does not match the template:\n  "
                         + "\n  ".join(problems))
    out = []
    for template in templates:
        names = flatten_names(template)
        values = [np.asarray(arrays[name], dtype=_dtype(leaf)) for name, leaf in names.items()]
        out.append(tree.unflatten(tree.structure(template), values))
    return out[0] if state_like is None else tuple(out)


def _to_numpy(value):
    """A NumPy copy of a torch tensor (duck-typed: fnn does not import torch) or array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value)
