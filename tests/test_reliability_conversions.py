"""No gradient is cut silently: converting a value being differentiated to a Python number.

``float(x)`` (and ``math.exp(x)``, which calls it) on a value that ``grad`` or ``jvp`` is
differentiating used to return the primal value and drop the derivative:
``grad(lambda x: x * math.exp(x))(1.0)`` gave e instead of 2e. It now raises
``ConcretizationError`` pointing to ``fgrad.numpy``, as JAX raises ``ConcretizationTypeError``.
Discrete conversions (``bool``, ``int``, indexing) keep working where the value is known (a
discrete result has no derivative to drop, and ``if x > 0`` under ``grad`` is JAX's behaviour
too), and so does ``float`` of a value whose derivative is zero by construction.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import ConcretizationError

# (id, function of a scalar, how it converts)
CUT = [
    ("math.exp", lambda x: x * math.exp(x)),
    ("math.log", lambda x: math.log(x) * x),
    ("math.sqrt", lambda x: math.sqrt(x)),
    ("float", lambda x: x * float(x)),
    ("float-of-derived", lambda x: float(fnp.sin(x)) * x),
    ("complex", lambda x: x * complex(x).real),
    ("math.tanh", lambda x: x * math.tanh(x)),
    ("np.float64", lambda x: x * np.float64(x)),   # NumPy refuses a tracer by itself
]

TRANSFORMS = {
    "grad": lambda f: fgrad.grad(f)(1.5),
    "grad-of-grad": lambda f: fgrad.grad(fgrad.grad(f))(1.5),
    "jvp": lambda f: fgrad.jvp(f, (1.5,), (1.0,)),
    "jacfwd": lambda f: fgrad.jacfwd(f)(1.5),
    "jacrev": lambda f: fgrad.jacrev(f)(1.5),
    "value_and_grad": lambda f: fgrad.value_and_grad(f)(1.5),
    "vmap-of-grad": lambda f: fgrad.vmap(fgrad.grad(f))(np.array([1.5, 2.0])),
}


@pytest.mark.parametrize("f", [row[1] for row in CUT], ids=[row[0] for row in CUT])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_python_number_of_a_differentiated_value_raises(f, transform):
    with pytest.raises(TypeError) as info:       # ConcretizationError or NumPy's refusal
        TRANSFORMS[transform](f)
    message = str(info.value)
    assert "fgrad.numpy" in message
    if isinstance(info.value, ConcretizationError) and "differentiating" in message:
        assert "derivative" in message and "stop_gradient" in message


def test_the_error_names_the_mode_and_the_fix():
    with pytest.raises(ConcretizationError) as info:
        fgrad.grad(lambda x: x * math.exp(x))(1.0)
    message = str(info.value)
    for piece in ("float(x)", "reverse-mode", "VJPTracer", "fgrad.numpy.exp", "math.exp",
                  "stop_gradient", "has_aux"):
        assert piece in message, piece
    with pytest.raises(ConcretizationError, match="forward-mode.*JVPTracer"):
        fgrad.jvp(lambda x: x * math.exp(x), (1.0,), (1.0,))
    # the right way gives 2e at 1
    assert fgrad.grad(lambda x: x * fnp.exp(x))(1.0) == pytest.approx(2 * math.e)


# (id, function, argument, expected derivative)
STILL_WORKS = [
    ("if-on-value", lambda x: x if x > 0 else -x, -2.0, -1.0),
    ("while-on-value", lambda x: x * 2 if bool(x < 10) else x, 1.0, 2.0),
    ("int-index", lambda x: x * [1.0, 3.0][int(x > 1)], 2.0, 3.0),
    ("operator-index", lambda x: fnp.stack([x, 2 * x])[int(fnp.floor(x)) % 2], 1.0, 2.0),
    ("float-of-stop-gradient", lambda x: x * float(fgrad.stop_gradient(x)), 3.0, 3.0),
    ("float-of-floor", lambda x: x * float(fnp.floor(x)), 2.5, 2.0),
    ("int-of-value", lambda x: x * int(x), 2.5, 2.0),
    ("math-on-constant", lambda x: x * math.exp(1.0), 2.0, math.e),
]


@pytest.mark.parametrize("f, x, expected", [row[1:] for row in STILL_WORKS],
                         ids=[row[0] for row in STILL_WORKS])
def test_discrete_conversions_and_constants_still_work(f, x, expected):
    assert fgrad.grad(f)(x) == pytest.approx(expected)
    assert fgrad.jvp(f, (x,), (1.0,))[1] == pytest.approx(expected)


def test_conversions_outside_differentiation_are_unchanged():
    # no transform: plain NumPy values
    assert float(fnp.exp(np.float64(1.0))) == pytest.approx(math.e)
    # under vmap the value is a batch: a clear error, as before
    with pytest.raises(ConcretizationError, match="float"):
        fgrad.vmap(lambda a: float(a))(np.ones(2))
    # reading values out of a transform: return them (has_aux) and convert outside
    g, aux = fgrad.grad(lambda x: (x * fnp.exp(x), x * 2), has_aux=True)(1.0)
    assert float(aux) == 2.0 and g == pytest.approx(2 * math.e)
