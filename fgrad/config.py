"""fgrad.config: global settings under ``jax.config``'s names.

A JAX program's ``jax.config.update(...)`` lines run unchanged with ``import fgrad as jax``::

    >>> import fgrad
    >>> fgrad.config.update("jax_threefry_partitionable", False)   # JAX's scheme before 0.5
    >>> fgrad.config.jax_threefry_partitionable
    False
    >>> with fgrad.threefry_partitionable(True):                    # for one block only
    ...     k1, k2 = fgrad.random.split(fgrad.random.key(0))

Settings:

``jax_threefry_partitionable`` (default ``True``, as in JAX 0.5 and later)
    Which of JAX's two Threefry schemes ``fgrad.random`` follows: the partitionable one
    (every random value is the hash of its own 64-bit index, ``split(key, n)[i] ==
    fold_in(key, i)``) or the original one (``False``: ``n`` values hash the counters
    ``0 .. n - 1`` split in two halves). The numbers differ between the two; each matches
    JAX under the same setting. The value is read when a function is traced, and ``jit``
    traces again when it changes (as JAX's ``include_in_jit_key``). The environment variable
    ``JAX_THREEFRY_PARTITIONABLE=0`` sets it to ``False`` at import, as in JAX.
``jax_enable_x64`` (always ``True``)
    fgrad follows NumPy's dtypes (float64 and int64 by default); updating it to ``True`` is
    accepted so that JAX programs run, ``False`` is an error.
``jax_default_prng_impl`` (always ``"threefry2x32"``)
    The only bit generator fgrad has.

Unknown names raise ``AttributeError`` listing the known ones.
"""
from __future__ import annotations

import contextlib
import os

__all__ = ["update", "read", "threefry_partitionable", "values"]

#: name -> current value
_VALUES = {
    "jax_threefry_partitionable": True,
    "jax_enable_x64": True,
    "jax_default_prng_impl": "threefry2x32",
}
#: the settings a traced program depends on (part of jit's cache key)
_TRACE_SETTINGS = ("jax_threefry_partitionable",)


def _check(name, value):
    if name not in _VALUES:
        raise AttributeError(f"fgrad.config: unknown setting {name!r}; fgrad has "
                             f"{', '.join(sorted(_VALUES))}")
    if name == "jax_threefry_partitionable":
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise TypeError(f"fgrad.config.update({name!r}, ...): the value must be True or "
                            f"False, got {value!r}")
        return bool(value)
    if name == "jax_enable_x64":
        if not value:
            raise ValueError("fgrad.config.update('jax_enable_x64', False): fgrad follows "
                             "NumPy's dtypes (64-bit by default) and has no 32-bit mode; pass "
                             "dtype=np.float32 where you want single precision")
        return True
    if value != "threefry2x32":
        raise ValueError(f"fgrad.config.update({name!r}, {value!r}): fgrad's only bit "
                         f"generator is 'threefry2x32'")
    return value


def _from_environment():
    """``JAX_THREEFRY_PARTITIONABLE=0`` (or ``false``) in the environment starts fgrad with the
    original scheme, as it does JAX: ``JAX_THREEFRY_PARTITIONABLE=0 python -m examples.NAME``."""
    text = os.environ.get("JAX_THREEFRY_PARTITIONABLE")
    if text is None:
        return
    value = text.strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise ValueError(f"fgrad.config: JAX_THREEFRY_PARTITIONABLE must be 0, 1, true or false, "
                         f"got {text!r}")
    _VALUES["jax_threefry_partitionable"] = value in ("1", "true")


def update(name, value):
    """Set a setting, as ``jax.config.update(name, value)``."""
    _VALUES[name] = _check(name, value)


def read(name):
    """The current value of a setting (also ``fgrad.config.<name>``)."""
    if name not in _VALUES:
        _check(name, None)
    return _VALUES[name]


def values():
    """``{name: value}`` of every setting (a copy)."""
    return dict(_VALUES)


def trace_context():
    """The values of the settings a traced program depends on (``jit`` adds them to its key)."""
    return tuple(_VALUES[name] for name in _TRACE_SETTINGS)


@contextlib.contextmanager
def threefry_partitionable(value=True):
    """Use one Threefry scheme inside a ``with`` block (``jax.threefry_partitionable``)."""
    previous = _VALUES["jax_threefry_partitionable"]
    update("jax_threefry_partitionable", value)
    try:
        yield
    finally:
        _VALUES["jax_threefry_partitionable"] = previous


_from_environment()


def __getattr__(name):   # fgrad.config.jax_threefry_partitionable (PEP 562)
    if name.startswith("jax_"):
        return read(name)
    raise AttributeError(f"module 'fgrad.config' has no attribute {name!r}")
