"""Composing layers: ``Sequential``, and helpers for models written as plain functions.

Two ways to build a model from layers:

1. :class:`Sequential` chains layers; its params are ``{"0": ..., "1": ...}``, exactly the
   keys of ``torch.nn.Sequential``'s state_dict. It threads ``state`` (BatchNorm), ``key``
   (Dropout) and ``train`` through the layers that take them.
2. A dict of named layers and a function over a params dict with the same keys, which is the
   easiest way to write any other architecture (branches, skips, several inputs). The names
   become the torch state_dict prefixes, so ``{"conv": ..., "fc": ...}`` loads into a torch
   module with attributes ``conv`` and ``fc``::

       layers = {"conv": fnn.Conv2d(1, 8, 3), "bn": fnn.BatchNorm2d(8), "fc": fnn.Linear(8, 10)}
       params, state = fnn.init_params(layers, key), fnn.init_states(layers)

       def model(params, state, x, train):
           h = layers["conv"].apply(params["conv"], x)
           h, bn_state = layers["bn"].apply(params["bn"], h, state=state["bn"], train=train)
           h = F.relu(h).mean(axis=(2, 3))
           return layers["fc"].apply(params["fc"], h), {"bn": bn_state}

>>> import numpy as np, fgrad, fnn
>>> model = fnn.Sequential(fnn.Linear(4, 8), fnn.ReLU(), fnn.Linear(8, 2))
>>> params = model.init(fgrad.random.key(0))
>>> sorted(fnn.io.to_torch_state_dict(params))
['0.bias', '0.weight', '2.bias', '2.weight']
>>> model.apply(params, np.ones((3, 4), np.float32)).shape
(3, 2)
"""
from __future__ import annotations

import dataclasses

from fgrad import random, tree
from .base import Module, _expected_shapes

__all__ = ["Sequential", "Lambda", "init_params", "init_states"]


def _is_module(x):
    return isinstance(x, Module)


def init_params(modules, key):
    """Params for a pytree of layers (usually a dict of named layers): ``layer.init(subkey)`` at
    every layer, each with its own subkey, in the same container structure."""
    layers, treedef = tree.flatten(modules, is_leaf=_is_module)
    keys = random.split(key, max(len(layers), 1))
    return tree.unflatten(treedef, [layer.init(keys[i]) for i, layer in enumerate(layers)])


def init_states(modules):
    """States for a dict of named layers: ``{name: layer.init_state()}`` for the layers that have
    state (BatchNorm), so the result's names match the params'."""
    return {name: layer.init_state() for name, layer in modules.items() if layer.has_state}


@dataclasses.dataclass(frozen=True, init=False)
class Sequential(Module):
    """Layers applied in order: ``Sequential(fnn.Linear(4, 8), fnn.ReLU(), fnn.Linear(8, 2))``.

    ``apply(params, x, *, state=None, key=None, train=False)`` calls each layer on the output
    of the previous one. Layers with state get ``state[str(i)]`` and ``train``; layers that
    take a key get their own subkey of ``key`` and ``train``. If any layer has state, apply
    returns ``(y, new_state)`` (``new_state = {str(i): ...}`` for those layers), else ``y``.
    """

    layers: tuple

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} must be an fnn layer, got "
                                f"{type(layer).__name__}; wrap plain functions in fnn.Lambda(fn)")
        object.__setattr__(self, "layers", tuple(layers))

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        """The layer at ``index`` (its params are ``params[str(index)]``)."""
        return self.layers[index]

    @property
    def has_state(self):
        return any(layer.has_state for layer in self.layers)

    @property
    def takes_key(self):
        return any(layer.takes_key for layer in self.layers)

    def param_specs(self):
        return {str(i): layer.param_specs() for i, layer in enumerate(self.layers)}

    def state_specs(self):
        return {str(i): layer.state_specs() for i, layer in enumerate(self.layers) if layer.has_state}

    def describe(self):
        return f"Sequential({', '.join(type(layer).__name__ for layer in self.layers)})"

    def apply(self, params, x, *, state=None, key=None, train=False):
        # Every layer checks its own params and state when it applies. Sequential checks its own
        # level up front (the layer names), and the whole tree only when a layer raises, so that
        # the error names the leaf by its path here ('1.weight'). (Checking every leaf twice on
        # every call cost ~17 us for a 5-layer MLP, 8% of its apply.)
        self._check_names(params, "params")
        if self.has_state:
            self._check_names(state, "state")
        keys = random.split(key, len(self.layers)) if key is not None and self.takes_key else None
        new_state = {}
        for i, layer in enumerate(self.layers):
            name = str(i)
            kwargs = {"train": train} if layer.takes_key or layer.has_state else {}
            if layer.takes_key:
                kwargs["key"] = None if keys is None else keys[i]
            layer_params = params.get(name, {})      # a layer without params may be left out
            try:
                if layer.has_state:
                    x, new_state[name] = layer.apply(layer_params, x, state=state[name], **kwargs)
                else:
                    x = layer.apply(layer_params, x, **kwargs)
            except ValueError:
                self.check_params(params)            # raises, naming the leaf, if params are wrong
                if self.has_state:
                    self.check_params(state, what="state")
                raise
        return (x, new_state) if self.has_state else x

    def _check_names(self, tree, what):
        """The fast check of this level: a dict with one entry per layer; anything else (a
        missing param-less layer is allowed) goes to the full :meth:`check_params`."""
        if not (isinstance(tree, dict) and tree.keys() == _expected_shapes(self, what).keys()):
            self.check_params(tree, what=what)


@dataclasses.dataclass(frozen=True)
class Lambda(Module):
    """A parameter-free layer that applies ``fn(x)``: ``fnn.Lambda(lambda x: x.mean(axis=(2, 3)))``."""

    fn: object

    def apply(self, params, x):
        self.check_params(params)
        return self.fn(x)
