"""``pad``: torch's padding of the last axes, on top of ``fgrad.numpy.pad``.

torch lists the padding from the last axis backwards, ``(left, right, top, bottom, ...)``;
``'constant'`` pads with ``value`` (and a negative width crops), ``'reflect'`` mirrors without
repeating the edge, ``'replicate'`` repeats the edge, ``'circular'`` wraps around. The last
three are gathers with static indices, so all modes are differentiable.

>>> import numpy as np, fnn.functional as F
>>> F.pad(np.ones((1, 2, 3)), (1, 1, 2, 0)).shape
(1, 4, 5)
"""
from __future__ import annotations

import fgrad.numpy as fnp
from fgrad.core import shape_of

__all__ = ["pad"]

_NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` axes of ``input``; ``pad = (last_lo, last_hi, ...)``."""
    fname = "fnn.functional.pad"
    s = shape_of(input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > len(s):
        raise ValueError(f"{fname}: pad must hold an even number of sizes, at most 2 per axis of "
                         f"an input of shape {s}, got {pad}")
    if mode not in _NUMPY_MODES:
        raise ValueError(f"{fname}: mode must be one of {tuple(_NUMPY_MODES)}, got {mode!r}")
    if mode != "constant" and value is not None:
        raise ValueError(f"{fname}: value is only used by mode='constant', got value={value} "
                         f"with mode={mode!r}")
    widths = [(0, 0)] * len(s)
    for i in range(len(pad) // 2):
        widths[len(s) - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode != "constant" and any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ValueError(f"{fname}: negative padding (cropping) is only supported by "
                         f"mode='constant', got {pad} with mode={mode!r}")
    if mode == "reflect" and any(lo >= n or hi >= n for (lo, hi), n in zip(widths, s)):
        raise ValueError(f"{fname}: reflect padding {pad} must be smaller than the padded "
                         f"dimensions of an input of shape {s}")
    grow = tuple((max(lo, 0), max(hi, 0)) for lo, hi in widths)
    if any(lo or hi for lo, hi in grow):
        if mode == "constant":
            input = fnp.pad(input, grow, constant_values=0.0 if value is None else value)
        else:
            input = fnp.pad(input, grow, mode=_NUMPY_MODES[mode])
    if any(lo < 0 or hi < 0 for lo, hi in widths):   # negative widths crop
        grown = shape_of(input)
        input = input[tuple(slice(max(-lo, 0), m - max(-hi, 0)) for (lo, hi), m in zip(widths, grown))]
    return input
