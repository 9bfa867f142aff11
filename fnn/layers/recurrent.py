"""Recurrent layers: RNN, LSTM, GRU (multi-layer, bidirectional, batch_first), with torch's weights,
and the single-step RNNCell, LSTMCell, GRUCell (params without the ``_l{k}`` suffix).

Parameters are a flat dict with torch's names: for layer ``k`` and direction suffix ``s``
(``""``, or ``"_reverse"`` for the backward direction of a bidirectional layer)
``weight_ih_l{k}{s}`` ``(G * hidden, input)``, ``weight_hh_l{k}{s}`` ``(G * hidden, hidden)``,
``bias_ih_l{k}{s}``, ``bias_hh_l{k}{s}`` ``(G * hidden,)``, where ``G`` is 1 (RNN), 4 (LSTM,
gates i, f, g, o) or 3 (GRU, gates r, z, n); an LSTM with ``proj_size > 0`` also has
``weight_hr_l{k}{s}`` ``(proj_size, hidden)``. All are drawn from U(-1/sqrt(hidden),
1/sqrt(hidden)), as torch.

Shapes (``D`` = 2 if bidirectional else 1, ``H_out`` = proj_size or hidden_size):

* input ``(L, N, input_size)``, ``(N, L, input_size)`` if ``batch_first``, or unbatched ``(L, input_size)``;
* ``hx`` (optional, zeros by default): ``(D * num_layers, N, H_out)``; for an LSTM a pair
  ``(h_0, c_0)`` with ``c_0`` of shape ``(D * num_layers, N, hidden_size)``;
* ``apply`` returns ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) with output
  ``(L, N, D * H_out)`` (batch-first if ``batch_first``) and ``h_n`` shaped like ``hx``.

How the sequence is run: an LSTM without projection runs each layer and direction as one
fused call (``fnn/layers/_recurrent_kernels.py``: the whole recurrence in NumPy with a
hand-written backward pass under ``grad``, an fgrad.numpy reference under other transforms).
RNN, GRU and a projected LSTM run a Python loop over time steps, one step a few fgrad
operations, keeping the sequence as a list of per-step arrays (split once, not sliced per
step: the cotangent of a slice of a *tracked* array is full-size, which would make the backward
pass quadratic in the length). ``dropout`` (between layers, when training) needs ``key``.

>>> import numpy as np, fgrad, fnn
>>> lstm = fnn.LSTM(8, 16, num_layers=2, batch_first=True)
>>> params = lstm.init(fgrad.random.key(0))
>>> out, (h, c) = lstm.apply(params, np.zeros((4, 10, 8), np.float32))
>>> out.shape, h.shape
((4, 10, 16), (2, 4, 16))
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import fgrad.numpy as fnp
from fgrad import random
from fgrad.core import dtype_of, shape_of
from .. import functional as F
from .base import Module, dtype_field
from ._recurrent_kernels import _unstack, lstm_sequence
from .linear import uniform_spec

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "rnn_step", "lstm_step", "gru_step"]


@dataclasses.dataclass(frozen=True)
class _RNNBase(Module):
    """The layer/direction loop shared by RNN, LSTM and GRU; subclasses define ``cell``."""

    takes_key: ClassVar[bool] = True
    gates: ClassVar[int]

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ValueError(f"{name}: num_layers and hidden_size must be positive, got "
                             f"{self.num_layers} and {self.hidden_size}")
        if not 0 <= self.dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {self.dropout}")

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """The size of ``h`` (``proj_size`` for a projected LSTM, else ``hidden_size``)."""
        return self.hidden_size

    def param_specs(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        g_h, h_out = self.gates * self.hidden_size, self.output_size
        specs = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else h_out * self.num_directions
            for suffix in ("", "_reverse")[:self.num_directions]:
                name = f"_l{layer}{suffix}"
                specs["weight_ih" + name] = uniform_spec((g_h, in_size), bound, self.dtype)
                specs["weight_hh" + name] = uniform_spec((g_h, h_out), bound, self.dtype)
                if self.bias:
                    specs["bias_ih" + name] = uniform_spec((g_h,), bound, self.dtype)
                    specs["bias_hh" + name] = uniform_spec((g_h,), bound, self.dtype)
                if h_out != self.hidden_size:
                    specs["weight_hr" + name] = uniform_spec((h_out, self.hidden_size), bound, self.dtype)
        return specs

    def hidden_shapes(self, batch):
        """Shapes of the initial state: one array (RNN, GRU) or ``(h_0, c_0)`` (LSTM)."""
        return ((self.num_layers * self.num_directions,) + batch + (self.output_size,),)

    def apply(self, params, x, hx=None, *, key=None, train=False):
        """Run the sequence ``x``; returns ``(output, h_n)`` (see the module docstring)."""
        self.check_params(params)
        time_major = "(L, N, input_size)" if not self.batch_first else "(N, L, input_size)"
        rank = self.check_input(x, {2: "(L, input_size)", 3: time_major},
                                channels=self.input_size, axis=-1, channel_name="input_size")
        if rank == 3 and self.batch_first:
            x = fnp.swapaxes(x, 0, 1)
        batch = shape_of(x)[1:-1]
        initial = self._initial_state(hx, batch, dtype_of(x))
        dropout = self.dropout if train and self.num_layers > 1 else 0.0
        if dropout and key is None:
            raise ValueError(f"{self.describe()}.apply: train=True with dropout={self.dropout} needs "
                             f"key=<a fgrad.random key>")
        # A fused layer (LSTM.fused_direction) takes and returns the stacked sequence; the cell
        # loop keeps a list of per-step arrays (L arrays of (N, in) or (in,)).
        fused = self._can_fuse(dropout)
        seq = x if fused else _unstack(x)
        finals = []
        for layer in range(self.num_layers):
            if layer and dropout:
                key, sub = random.split(key)
                step_keys = random.split(sub, len(seq))
                seq = [F.dropout(s, dropout, training=True, key=step_keys[t]) for t, s in enumerate(seq)]
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:self.num_directions]):
                w = {name: params.get(f"{name}_l{layer}{suffix}")
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
                index = layer * self.num_directions + direction
                state = tuple(s[index] for s in initial)
                if fused:
                    out, state = self.fused_direction(w, seq, state, reverse=bool(direction))
                else:
                    out, state = self._cell_loop(w, seq, state, reverse=bool(direction))
                outputs.append(out)
                finals.append(state)
            if len(outputs) == 1:
                seq = outputs[0]
            elif fused:
                seq = fnp.concatenate(outputs, axis=-1)
            else:
                seq = [fnp.concatenate(pair, axis=-1) for pair in zip(*outputs)]
        output = seq if fused else fnp.stack(seq)
        if rank == 3 and self.batch_first:
            output = fnp.swapaxes(output, 0, 1)
        final = tuple(fnp.stack([f[i] for f in finals]) for i in range(len(initial)))
        return output, (final[0] if len(final) == 1 else final)

    def _can_fuse(self, dropout):
        """True when ``fused_direction(w, x, state, reverse) -> (out, state)`` (defined by a
        subclass, LSTM) runs each layer and direction on the stacked sequence in one call."""
        return False

    def _cell_loop(self, w, steps, state, reverse):
        """One layer and direction, one ``cell`` call per step: ``(outputs, final state)``."""
        out = [None] * len(steps)
        for t in (range(len(steps) - 1, -1, -1) if reverse else range(len(steps))):
            state = self.cell(w, steps[t], state)
            out[t] = state[0]
        return out, state

    def _initial_state(self, hx, batch, dtype):
        shapes = self.hidden_shapes(batch)
        if hx is None:
            return tuple(fnp.zeros(s, dtype) for s in shapes)
        states = (hx,) if len(shapes) == 1 else tuple(hx) if isinstance(hx, (tuple, list)) else None
        if states is None or len(states) != len(shapes) or any(
                shape_of(h) != s for h, s in zip(states, shapes)):
            got = shape_of(hx) if states is None else tuple(shape_of(h) for h in states)
            want = shapes[0] if len(shapes) == 1 else shapes
            raise ValueError(f"{self.describe()}.apply: hx must have shape {want} for this input, "
                             f"got {got}")
        return states


# --------------------------------------------------------------------------------------------
# One time step of each kind; ``w`` holds one layer-direction's weights under the names
# weight_ih, weight_hh, bias_ih, bias_hh, weight_hr (a missing one is None).
# --------------------------------------------------------------------------------------------

def _linear2(x, h, w):
    """``x W_ih^T + b_ih + h W_hh^T + b_hh``: the pre-activation of every gate."""
    return F.linear(x, w["weight_ih"], w["bias_ih"]) + F.linear(h, w["weight_hh"], w["bias_hh"])


def rnn_step(w, x, h, nonlinearity="tanh"):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``."""
    act = F.tanh if nonlinearity == "tanh" else F.relu
    return act(_linear2(x, h, w))


def lstm_step(w, x, h, c):
    """``(h', c')``: gates i, f, o = sigmoid, g = tanh; ``c' = f c + i g``, ``h' = o tanh(c')``
    (then ``h' W_hr^T`` when the weights have a projection)."""
    i, f, g, o = fnp.split(_linear2(x, h, w), 4, axis=-1)
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    h = F.sigmoid(o) * F.tanh(c)
    if w.get("weight_hr") is not None:
        h = F.linear(h, w["weight_hr"])
    return h, c


def gru_step(w, x, h):
    """``h' = (1 - z) n + z h`` with r, z = sigmoid and ``n = tanh(x W_in + b_in + r (h W_hn + b_hn))``."""
    x_r, x_z, x_n = fnp.split(F.linear(x, w["weight_ih"], w["bias_ih"]), 3, axis=-1)
    h_r, h_z, h_n = fnp.split(F.linear(h, w["weight_hh"], w["bias_hh"]), 3, axis=-1)
    r = F.sigmoid(x_r + h_r)
    z = F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h


@dataclasses.dataclass(frozen=True)
class RNN(_RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act tanh or relu."""

    gates: ClassVar[int] = 1

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")

    def cell(self, w, x, state):
        return (rnn_step(w, x, state[0], self.nonlinearity),)


@dataclasses.dataclass(frozen=True)
class LSTM(_RNNBase):
    """Long short-term memory, torch's gate order (i, f, g, o):

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of the gate pre-activations;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)`` (then ``h_t W_hr^T`` if ``proj_size``).
    """

    gates: ClassVar[int] = 4

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.proj_size < self.hidden_size:
            raise ValueError(f"LSTM: proj_size must be in [0, hidden_size), got {self.proj_size}")

    @property
    def output_size(self):
        return self.proj_size or self.hidden_size

    def hidden_shapes(self, batch):
        lead = (self.num_layers * self.num_directions,) + batch
        return lead + (self.output_size,), lead + (self.hidden_size,)

    def cell(self, w, x, state):
        return lstm_step(w, x, *state)

    def _can_fuse(self, dropout):
        # the fused kernel has no projection; dropout between layers stays per step (its keys)
        return not self.proj_size and not dropout

    def fused_direction(self, w, x, state, reverse):
        """The whole sequence in one :func:`lstm_sequence` call (NumPy fast path under grad)."""
        out, h, c = lstm_sequence(x, *state, w["weight_ih"], w["weight_hh"], w["bias_ih"],
                                  w["bias_hh"], reverse=reverse)
        return out, (h, c)


@dataclasses.dataclass(frozen=True)
class GRU(_RNNBase):
    """Gated recurrent unit, torch's gate order (r, z, n):

    ``r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)``, ``z`` likewise,
    ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``.
    """

    gates: ClassVar[int] = 3

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    dtype: object = dtype_field()

    def cell(self, w, x, state):
        return (gru_step(w, x, state[0]),)


# --------------------------------------------------------------------------------------------
# Single-step cells (torch.nn.RNNCell, LSTMCell, GRUCell), for hand-written loops
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Cell(Module):
    """One time step: params ``weight_ih (G * hidden, input)``, ``weight_hh (G * hidden, hidden)``,
    ``bias_ih``, ``bias_hh (G * hidden,)``, all U(-1/sqrt(hidden), 1/sqrt(hidden))."""

    gates: ClassVar[int]

    def param_specs(self):
        bound, g_h = 1.0 / math.sqrt(self.hidden_size), self.gates * self.hidden_size
        specs = {"weight_ih": uniform_spec((g_h, self.input_size), bound, self.dtype),
                 "weight_hh": uniform_spec((g_h, self.hidden_size), bound, self.dtype)}
        if self.bias:
            specs["bias_ih"] = uniform_spec((g_h,), bound, self.dtype)
            specs["bias_hh"] = uniform_spec((g_h,), bound, self.dtype)
        return specs

    def _step_inputs(self, params, x, hx, n_states):
        """The weights dict and the state(s): zeros if ``hx`` is None, else checked."""
        self.check_params(params)
        self.check_input(x, {1: "(input_size,)", 2: "(N, input_size)"}, channels=self.input_size,
                         axis=-1, channel_name="input_size")
        shape = shape_of(x)[:-1] + (self.hidden_size,)
        if hx is None:
            states = (fnp.zeros(shape, dtype_of(x)),) * n_states
        else:
            states = (hx,) if n_states == 1 else tuple(hx)
            if len(states) != n_states or any(shape_of(h) != shape for h in states):
                raise ValueError(f"{self.describe()}.apply: hx must be {n_states} array(s) of shape "
                                 f"{shape}, got {tuple(shape_of(h) for h in states)}")
        w = {name: params.get(name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        return w, states


@dataclasses.dataclass(frozen=True)
class RNNCell(_Cell):
    """``apply(params, x, hx=None) -> h'``: one Elman step (tanh or relu), x ``(N, input_size)``."""

    gates: ClassVar[int] = 1

    input_size: int
    hidden_size: int
    bias: bool = True
    nonlinearity: str = "tanh"
    dtype: object = dtype_field()

    def apply(self, params, x, hx=None):
        w, (h,) = self._step_inputs(params, x, hx, 1)
        return rnn_step(w, x, h, self.nonlinearity)


@dataclasses.dataclass(frozen=True)
class LSTMCell(_Cell):
    """``apply(params, x, hx=None) -> (h', c')``: one LSTM step; ``hx = (h, c)``, each ``(N, hidden)``."""

    gates: ClassVar[int] = 4

    input_size: int
    hidden_size: int
    bias: bool = True
    dtype: object = dtype_field()

    def apply(self, params, x, hx=None):
        w, (h, c) = self._step_inputs(params, x, hx, 2)
        return lstm_step(w, x, h, c)


@dataclasses.dataclass(frozen=True)
class GRUCell(_Cell):
    """``apply(params, x, hx=None) -> h'``: one GRU step."""

    gates: ClassVar[int] = 3

    input_size: int
    hidden_size: int
    bias: bool = True
    dtype: object = dtype_field()

    def apply(self, params, x, hx=None):
        w, (h,) = self._step_inputs(params, x, hx, 1)
        return gru_step(w, x, h)
