"""The layer base class: immutable objects that hold hyper-parameters, an ``init`` and a pure ``apply``.

A layer (as in equinox and stax) is a frozen dataclass of hyper-parameters only. Its weights
live in a separate pytree, a nested dict whose keys are the attribute names of the torch
module of the same kind, so that joining a leaf's keys with ``"."`` gives its torch
``state_dict`` key (``fnn.io.to_torch_state_dict``):

    params = layer.init(key)                    # {"weight": ..., "bias": ...}
    y = layer.apply(params, x)                  # pure: nothing is stored on the layer

Two kinds of layers take more than ``(params, x)``, and say so with class attributes that
:class:`~fnn.Sequential` reads to thread arguments through a stack of layers:

* ``has_state``: the layer updates a state pytree (BatchNorm's running statistics), described
  by ``state_specs()`` and created by ``init_state()``; ``apply(params, x, state=state,
  train=...)`` returns ``(y, new_state)``.
* ``takes_key``: the layer is random when training (Dropout). ``apply(params, x, key=key,
  train=True)`` draws with ``key``; with ``train=False`` (the default) it is deterministic.

Every layer describes its parameters once, in :meth:`Module.param_specs` (shape, dtype and
initialiser per leaf); ``init`` draws from the specs and ``apply`` checks its ``params``
against the same specs, so the shapes ``init`` promises are by construction the shapes
``apply`` accepts. Layers are hashable values (list hyper-parameters become tuples), which
lets the check use shapes computed once per layer. ``apply`` also checks the input's rank and channels, and errors name the
layer, what it expected and what it got.

>>> import fgrad, fnn
>>> layer = fnn.Linear(3, 2)
>>> layer.param_shapes()
{'weight': (2, 3), 'bias': (2,)}
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar

import numpy as np

from fgrad import random, tree
from fgrad.core import shape_of
from ..utils import flatten_names

__all__ = ["Module", "ParamSpec", "dtype_field", "ntuple"]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter: its shape, dtype and initialiser ``init(key, shape, dtype=...) -> array``."""

    shape: tuple
    dtype: np.dtype
    init: Callable[..., Any]


def dtype_field():
    """The ``dtype`` hyper-parameter of layers with parameters: keyword-only, float32 by default
    (torch's default), e.g. ``fnn.Linear(3, 2, dtype=np.float64)``."""
    return dataclasses.field(default=np.dtype(np.float32), kw_only=True)


def ntuple(value, n):
    """``value`` as a tuple of ``n`` ints (an int is repeated), like torch's ``_pair``."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected an int or {n} ints, got {tuple(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


@functools.lru_cache(maxsize=4096)
def _expected_shapes(layer, what):
    """The nested dict of shapes of a layer's params (``what="params"``) or state, computed once
    per distinct layer: layers are immutable and hashable, so ``apply`` need not rebuild the
    specs on every call (measured: checking a Linear's params went from ~30 to ~4 us)."""
    specs = layer.param_specs() if what == "params" else layer.state_specs()
    return tree.map(lambda spec: spec.shape, specs)


def _same_shapes(params, shapes):
    """True when ``params`` has exactly the keys of the nested dict ``shapes``, and leaves of
    those shapes: the fast path of :meth:`Module.check_params`."""
    if isinstance(shapes, dict):
        return (isinstance(params, dict) and params.keys() == shapes.keys()
                and all(_same_shapes(params[k], s) for k, s in shapes.items()))
    return shape_of(params) == shapes


@dataclasses.dataclass(frozen=True)
class Module:
    """Base of all fnn layers. Subclasses are ``@dataclasses.dataclass(frozen=True)``."""

    has_state: ClassVar[bool] = False
    takes_key: ClassVar[bool] = False

    def __post_init__(self):
        for field in dataclasses.fields(self):   # list hyper-parameters become tuples: hashable
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
        if "dtype" in {f.name for f in dataclasses.fields(self)}:
            dtype = np.dtype(self.dtype)
            if dtype.kind not in "fc":
                raise TypeError(f"{type(self).__name__}: dtype must be a floating dtype, got {dtype}")
            object.__setattr__(self, "dtype", dtype)

    # ---- parameters and state -------------------------------------------------------------

    def param_specs(self):
        """A nested dict of :class:`ParamSpec`, keyed by torch's state_dict names ({} if none)."""
        return {}

    def param_shapes(self):
        """The nested dict of parameter shapes that ``init`` returns and ``apply`` accepts."""
        return tree.map(lambda spec: spec.shape, self.param_specs())

    def init(self, key):
        """Fresh parameters drawn with ``key`` (a ``fgrad.random`` key), torch's default init.

        Each leaf gets its own subkey (``fgrad.random.split(key, n)`` in flattening order).
        """
        specs, treedef = tree.flatten(self.param_specs())
        if not specs:
            return tree.unflatten(treedef, [])
        keys = random.split(key, len(specs))
        return tree.unflatten(treedef, [s.init(keys[i], s.shape, dtype=s.dtype) for i, s in enumerate(specs)])

    def state_specs(self):
        """Like :meth:`param_specs`, for the state (torch's buffer names); {} without state.
        Their initialisers take no key (``init(None, shape, dtype=...)``)."""
        return {}

    def init_state(self):
        """The initial state pytree (fresh running statistics); ``{}`` for layers without state."""
        return tree.map(lambda spec: spec.init(None, spec.shape, dtype=spec.dtype), self.state_specs())

    # ---- checks shared by every apply -----------------------------------------------------

    def describe(self):
        """A short name for error messages: the dataclass repr, cut at 100 characters."""
        text = repr(self)
        return text if len(text) <= 100 else text[:97] + "..."

    def check_params(self, params, what="params"):
        """Raise naming every difference between ``params`` (or the state, ``what="state"``) and
        the layer's specs: missing and unexpected names, and shapes."""
        expected = _expected_shapes(self, what)
        if _same_shapes(params, expected):
            return
        if not isinstance(params, dict):
            raise TypeError(f"{self.describe()}.apply: {what} must be the dict returned by "
                            f"{'init_state()' if what == 'state' else 'init(key)'}, got "
                            f"{type(params).__name__}")
        expected = flatten_names(expected, is_leaf=lambda s: isinstance(s, tuple))
        got = flatten_names(params)
        problems = []
        missing = [n for n in expected if n not in got]
        extra = [n for n in got if n not in expected]
        if missing:
            problems.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            problems.append(f"unexpected {', '.join(map(repr, extra))}")
        problems += [f"{name!r} has shape {shape_of(got[name])}, expected {shape}"
                     for name, shape in expected.items()
                     if name in got and shape_of(got[name]) != tuple(shape)]
        if problems:
            raise ValueError(f"{self.describe()}.apply: {what} do not match the layer: "
                             + "; ".join(problems))

    def check_input(self, x, shapes, *, channels=None, axis=None, what="input", channel_name=None):
        """Check ``x``'s rank against ``shapes`` ({rank: "(N, C, L)"}, or None: any rank >= 1) and
        its size at ``axis``.

        ``channels`` is the expected size at ``axis`` (a negative axis, counted from the end),
        described as ``channel_name`` (``"in_channels"``) in the error.
        """
        shape = shape_of(x)
        if (shapes is None and not shape) or (shapes is not None and len(shape) not in shapes):
            allowed = "(*, features)" if shapes is None else " or ".join(shapes[r] for r in sorted(shapes))
            raise ValueError(f"{self.describe()}.apply: expected {what} of shape {allowed}, "
                             f"got shape {shape}")
        if channels is not None and shape[axis] != channels:
            raise ValueError(f"{self.describe()}.apply: {what} has size {shape[axis]} at axis "
                             f"{axis} (shape {shape}), expected {channel_name}={channels}")
        return len(shape)
