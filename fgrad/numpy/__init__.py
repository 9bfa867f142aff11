"""NumPy's API on fgrad primitives: the same names, signatures, broadcasting and dtype rules.

Use ``import fgrad.numpy as fnp`` inside functions you transform. Outside any transform these
functions take and return plain NumPy arrays; inside, they take and return tracers.

Coverage: DESIGN.md's list plus everything HIPS autograd differentiates (``diag``, ``append``,
``r_``/``c_``, ``diff``, ``gradient``, ``kron``, ``cross``, ``rot90``, ``select``, ``sinc``,
``hypot``, ``logaddexp``, ``fmax``, ``nan_to_num``, the ``*split``/``*stack`` family,
``linalg.svd``/``pinv``/``eig``, ``norm(ord='nuc')``, ...; ``tests/op_table.py`` has a row for
each). A (nested) list or tuple of traced values is an array-like wherever NumPy takes one
(``fnp.mean([x, y])``). Whole-array comparisons (``allclose``, ``array_equal``) of traced
values return traced booleans, as in JAX.
"""
from . import _funcs
from ._funcs import *  # noqa: F401,F403
from ._funcs import (abs, all, any, max, min, round, sum)  # noqa: F401 - builtins' names
from . import _tracer_methods  # noqa: F401 - attaches operators and methods to Tracer
from . import linalg  # noqa: F401
from . import fft  # noqa: F401  (numpy.fft's names: fft, rfft, fftn, fftshift, ...)
from ._einsum import einsum  # noqa: F401

# numpy.random itself, as ``autograd.numpy.random`` is: NumPy-style autodiff code written for
# HIPS autograd (``npr = np.random.RandomState(0)``) runs with ``import fgrad.numpy as np``.
# Its draws are NumPy constants to every transform; fgrad.random is the splittable-key API.
from numpy import random  # noqa: E402,F401

__all__ = _funcs.__all__ + ["einsum", "linalg", "fft"]
