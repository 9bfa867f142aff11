"""Array behaviour for tracers: operators, properties and methods, all calling fgrad.numpy.

A NumPy array on the left of an operator with a tracer on the right defers to the tracer: NumPy
sends the operator's ufunc to ``Tracer.__array_ufunc__``, which runs the fgrad.numpy function
for operator ufuncs and raises a clear error for any other NumPy function.
"""
from __future__ import annotations

import numpy as np

from ..core import Tracer, numpy_alternative
from ..errors import TracerArrayConversionError
from . import _funcs as f


def _swap(fn):
    return lambda self, other: fn(other, self)


_OPERATORS = {
    "__add__": f.add, "__sub__": f.subtract, "__mul__": f.multiply, "__truediv__": f.divide,
    "__floordiv__": f.floor_divide, "__mod__": f.remainder, "__pow__": f.power,
    "__matmul__": f.matmul, "__lt__": f.less, "__le__": f.less_equal, "__gt__": f.greater,
    "__ge__": f.greater_equal, "__eq__": f.equal, "__ne__": f.not_equal,
    "__and__": f.bitwise_and, "__or__": f.bitwise_or, "__xor__": f.bitwise_xor,
    "__lshift__": f.left_shift, "__rshift__": f.right_shift,
}
for _name, _fn in _OPERATORS.items():
    setattr(Tracer, _name, _fn)
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"):
    setattr(Tracer, f"__r{_name}__", _swap(_OPERATORS[f"__{_name}__"]))

Tracer.__neg__ = f.negative
Tracer.__pos__ = f.positive
Tracer.__abs__ = f.abs
Tracer.__invert__ = f.invert
Tracer.__getitem__ = f.getitem
Tracer.__hash__ = object.__hash__

# Operator ufuncs NumPy sends here when a NumPy array is on the left: `ndarray + tracer`.
_UFUNCS = {
    np.add: f.add, np.subtract: f.subtract, np.multiply: f.multiply, np.true_divide: f.divide,
    np.floor_divide: f.floor_divide, np.remainder: f.remainder, np.power: f.power,
    np.matmul: f.matmul, np.less: f.less, np.less_equal: f.less_equal, np.greater: f.greater,
    np.greater_equal: f.greater_equal, np.equal: f.equal, np.not_equal: f.not_equal,
    np.bitwise_and: f.bitwise_and, np.bitwise_or: f.bitwise_or, np.bitwise_xor: f.bitwise_xor,
}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    fn = _UFUNCS.get(ufunc)
    if fn is None or method != "__call__" or kwargs:
        raise TracerArrayConversionError(
            f"numpy.{ufunc.__name__} was called on a traced value ({type(self).__name__} of shape "
            f"{self.shape}); {numpy_alternative(ufunc.__name__)}")
    return fn(*inputs)


Tracer.__array_ufunc__ = _array_ufunc

Tracer.T = property(lambda self: f.transpose(self))
Tracer.mT = property(lambda self: f.swapaxes(self, -1, -2))
Tracer.at = property(lambda self: f.at(self))
Tracer.real = property(lambda self: f.real(self))     # x.real, x.imag, x.conj(): NumPy's
Tracer.imag = property(lambda self: f.imag(self))     # attributes, JAX's complex rules
Tracer.conj = Tracer.conjugate = lambda self: f.conjugate(self)


def _method(fn):
    return lambda self, *args, **kwargs: fn(self, *args, **kwargs)


for _name in ("sum", "mean", "var", "std", "max", "min", "prod", "argmax", "argmin", "cumsum",
              "transpose", "astype", "squeeze", "ravel", "clip", "dot", "take", "swapaxes",
              "all", "any", "round", "repeat", "flatten", "argsort", "diagonal", "trace"):
    setattr(Tracer, _name, _method(getattr(f, "ravel" if _name == "flatten" else _name)))


def _reshape(self, *shape, order="C"):
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = shape[0]
    return f.reshape(self, shape, order)


def _transpose(self, *axes):
    if len(axes) == 1 and not isinstance(axes[0], int):
        axes = axes[0]
    return f.transpose(self, axes or None)


Tracer.reshape = _reshape
Tracer.transpose = _transpose
Tracer.item = lambda self: self._concrete("x.item()").item()
Tracer.tolist = lambda self: self._concrete("x.tolist()").tolist()
