"""More elementwise primitives: the NumPy ufuncs of HIPS autograd's list that are not composites.

``arccosh``, ``hypot``, ``logaddexp`` and ``logaddexp2`` are primitives rather than compositions
of ``log``/``sqrt``/``exp``, because the compositions are wrong at the edges NumPy's own kernels
handle: ``sqrt(x*x + y*y)`` overflows for ``|x| > 1e154`` where ``hypot`` does not,
``m + log1p(exp(-|x - y|))`` gives NaN for ``logaddexp(inf, inf)``, and ``log(x + sqrt(x*x - 1))``
loses digits near 1 and overflows near the largest float. As primitives they run NumPy's ufunc
(exactly NumPy's values, one call) and need one line of derivative each, built with the
``unary``/``binary`` helpers of :mod:`fgrad.primitives.elementwise` (so they get the broadcasting
batch rule, the reverse-mode unbroadcasting and the dtype-preserving shape rule like every
other ufunc there). The rest of that list (``sinc``, ``fmax``, ``deg2rad``, ``nan_to_num``, ...)
is written in ``fgrad/numpy/_funcs.py`` on existing functions.
"""
from __future__ import annotations

import math

import numpy as np

from .. import numpy as fnp
from ..staging import elementwise_abstract_eval
from .elementwise import binary, unary


def _ratio_or_zero(num, den):
    """``num / den``, and 0 where ``den`` is 0 (the 2-norm's convention: gradient 0 at 0)."""
    at_zero = den == 0
    return fnp.where(at_zero, 0, num / fnp.where(at_zero, 1, den))


# d arccosh x = 1 / sqrt(x^2 - 1), written (x - 1)(x + 1) to keep its digits near x = 1
arccosh_p = unary("arccosh", np.arccosh, lambda ans, x: 1 / fnp.sqrt((x - 1) * (x + 1)))
# hypot(x, y) = sqrt(x^2 + y^2):  d/dx = x / hypot,  d/dy = y / hypot  (0 at the origin, as norm)
hypot_p = binary("hypot", np.hypot,
                 lambda ans, x, y: _ratio_or_zero(x, ans),
                 lambda ans, x, y: _ratio_or_zero(y, ans))
# logaddexp(x, y) = log(e^x + e^y):  d/dx = e^(x - ans),  d/dy = e^(y - ans)  (softmax weights)
logaddexp_p = binary("logaddexp", np.logaddexp,
                     lambda ans, x, y: fnp.exp(x - ans),
                     lambda ans, x, y: fnp.exp(y - ans))
# logaddexp2(x, y) = log2(2^x + 2^y):  d/dx = 2^(x - ans),  d/dy = 2^(y - ans)
logaddexp2_p = binary("logaddexp2", np.logaddexp2,
                      lambda ans, x, y: fnp.exp((x - ans) * math.log(2)),
                      lambda ans, x, y: fnp.exp((y - ans) * math.log(2)))

for _p in (arccosh_p, hypot_p, logaddexp_p, logaddexp2_p):
    elementwise_abstract_eval(_p)
