"""NumPy's API on fgrad primitives: the same names, signatures, broadcasting and dtype rules.

Use ``import fgrad.numpy as fnp`` inside functions you transform. Outside any transform these
functions take and return plain NumPy arrays; inside, they take and return tracers.
"""
from . import _funcs
from ._funcs import *  # noqa: F401,F403
from ._funcs import (abs, all, any, max, min, round, sum)  # noqa: F401 - builtins' names
from . import _tracer_methods  # noqa: F401 - attaches operators and methods to Tracer
from . import linalg  # noqa: F401
from ._einsum import einsum  # noqa: F401

# numpy.random itself, as ``autograd.numpy.random`` is: NumPy-style autodiff code written for
# HIPS autograd (``npr = np.random.RandomState(0)``) runs with ``import fgrad.numpy as np``.
# Its draws are NumPy constants to every transform; fgrad.random is the splittable-key API.
from numpy import random  # noqa: E402,F401

__all__ = _funcs.__all__ + ["einsum", "linalg"]
