"""Saving, loading and converting parameter trees: ``.npz`` files without pickle, torch state_dicts.

* :func:`save` writes a pytree to a NumPy ``.npz`` archive (one ``.npy`` member per leaf) or,
  for a ``.safetensors`` path, a safetensors file; either way each leaf is named by its dotted
  path (``"0.weight"``) and a JSON description of the tree's containers goes along. The
  write is atomic: the file is written to a temporary file in the same directory and
  renamed over ``path`` only once complete, so a crash never leaves a partial file there.
* :func:`load` reads it back (``.npz`` with ``allow_pickle=False``). Given ``like`` (a tree of the
  expected structure, for example ``model.init(key)``) it checks names, shapes and dtypes and
  reports every difference at once, and returns a tree with ``like``'s structure (which is how
  namedtuples, such as optimizer states, are rebuilt).
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
import os
import struct
import tempfile
import zipfile

import numpy as np
import optree

from fgrad import tree
from .utils import flatten_names, path_name, unflatten_names

__all__ = ["save", "load", "to_torch_state_dict", "from_torch_state_dict"]

#: The archive member holding the JSON description of the tree's containers.
_TREE_MEMBER = "__fgrad_tree__"
#: Stands for the description of a file that another program wrote (it has none).
_FOREIGN = object()
#: The name of the single leaf of a tree that is just one array.
_ROOT = "__root__"
_PY_SCALARS = {bool: "bool", int: "int", float: "float", complex: "complex"}
_PY_TYPES = {name: typ for typ, name in _PY_SCALARS.items()}


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------

def save(path, params, *, compress=False):
    """Write the pytree ``params`` to ``path`` (exactly that name), atomically.

    The format follows the suffix: ``.safetensors`` writes a safetensors file, anything else a
    NumPy ``.npz`` archive. Leaves may be NumPy arrays, NumPy scalars (loaded back as 0-d
    arrays) or Python ``bool``/``int``/``float``/``complex`` (loaded back as the same Python
    type); object arrays are refused (they would need pickle), and safetensors has no complex
    dtypes. ``compress=True`` deflates the members of an ``.npz``.
    """
    description, arrays = _describe(params, path)
    safetensors = _is_safetensors(path)
    if safetensors:
        _check_safetensors_dtypes(arrays, path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if safetensors:
                _write_safetensors(f, description, arrays)
            else:
                _write_npz(f, description, arrays, compress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path, like=None):
    """Read a tree written by :func:`save` (``.npz`` or ``.safetensors``, by suffix).

    Without ``like`` the containers are rebuilt from the file (dicts, lists, tuples, None); a
    file written by another program (``np.savez``, a torch/Hugging Face ``.safetensors``) has
    no such record, and its dotted names become nested dicts (``"0.weight"`` ->
    ``{"0": {"weight": ...}}``). With ``like``, the file must hold exactly ``like``'s leaves (by
    dotted name) with the same shapes and dtypes, else ``ValueError`` lists every difference;
    the result has ``like``'s structure. ``like``'s leaves only need ``shape`` and ``dtype``.
    """
    description, arrays = (_read_safetensors if _is_safetensors(path) else _read_npz)(path)
    if like is None:
        if description is _FOREIGN:
            return unflatten_names(arrays)
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
    with np.load(path, allow_pickle=False) as archive:
        description = (json.loads(str(archive[_TREE_MEMBER])) if _TREE_MEMBER in archive.files
                       else _FOREIGN)
        arrays = {name: archive[name] for name in archive.files if name != _TREE_MEMBER}
    return description, arrays


# ---- .safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
# ---- dtype, shape and byte range, then the raw little-endian bytes (the Hugging Face format)

_SAFETENSORS_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
                       "I16": np.int16, "F16": np.float16, "U32": np.uint32, "I32": np.int32,
                       "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64}
_SAFETENSORS_CODES = {np.dtype(t): code for code, t in _SAFETENSORS_DTYPES.items()}


def _check_safetensors_dtypes(arrays, path):
    for name, array in arrays.items():
        if array.dtype.newbyteorder("=") not in _SAFETENSORS_CODES:
            raise TypeError(f"fnn.io.save({path!r}): leaf {name!r} has dtype {array.dtype}, which "
                            f"safetensors cannot store; use an .npz file")


def _write_safetensors(f, description, arrays):
    header = {"__metadata__": {_TREE_MEMBER: json.dumps(description)}}
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
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    metadata = header.pop("__metadata__", None) or {}
    description = json.loads(metadata[_TREE_MEMBER]) if _TREE_MEMBER in metadata else _FOREIGN
    arrays = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
        arrays[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).astype(
            dtype.newbyteorder("="))
    return description, arrays


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
