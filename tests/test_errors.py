"""Every user-facing error: its type, and a message that names the call and what it got.

STYLE.md asks that an error say the call, what was expected, what came, and the fix. Each test
triggers one mistake a user makes and checks the exception type (so it can be caught by kind)
and the pieces of the message: the transform and the function's name, the shapes or dtypes
involved, and the hint.
"""
from __future__ import annotations

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import (ConcretizationError, FgradError, TracerArrayConversionError, TransformError,
                   UnexpectedTracerError)


def vector_valued(x):
    return fnp.sin(x)


def add_pair(a, b):
    return a + b


def raises(exc, fn, *pieces):
    """Call ``fn``, expect ``exc``, and check that each piece appears in the message."""
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    for piece in pieces:
        assert piece in message, f"{piece!r} not in error message:\n{message}"
    return message


# --------------------------------------------------------------------------------------------
# grad's output and inputs
# --------------------------------------------------------------------------------------------

def test_grad_of_non_scalar_output():
    raises(TypeError, lambda: fgrad.grad(vector_valued)(np.ones(3)),
           "grad(vector_valued)", "real scalar", "f64[3]", "jacrev")


def test_grad_of_complex_output():
    def complex_loss(x):
        return fnp.sum(x) * (1 + 2j)
    raises(TypeError, lambda: fgrad.grad(complex_loss)(np.ones(3)),
           "grad(complex_loss)", "real scalar", "c128[]", "real part")


def test_grad_of_integer_output():
    def argmax_loss(x):
        return fnp.argmax(x)
    raises(TypeError, lambda: fgrad.grad(argmax_loss)(np.ones(3)),
           "grad(argmax_loss)", "i64[]", "integer")


def test_grad_of_tuple_output_suggests_has_aux():
    def two_outputs(x):
        return fnp.sum(x), x
    raises(TypeError, lambda: fgrad.grad(two_outputs)(np.ones(3)),
           "grad(two_outputs)", "tuple", "has_aux")


@pytest.mark.parametrize("bad", [np.arange(3), 3, np.array([True, False])],
                         ids=["int-array", "python-int", "bool-array"])
def test_grad_with_respect_to_integer_input(bad):
    def scaled(x):
        return fnp.sum(x * 1.5)
    msg = raises(TypeError, lambda: fgrad.grad(scaled)(bad), "grad(scaled)", "argument 0", "float")
    assert str(np.asarray(bad).dtype) in msg


def test_integer_input_named_by_argnum_and_pytree_path():
    def loss(x, batch):
        return fnp.sum(x * batch["labels"])
    batch = {"labels": np.arange(3)}
    raises(TypeError, lambda: fgrad.grad(loss, argnums=(0, 1))(np.ones(3), batch),
           "grad(loss)", "argument 1['labels']", "int64", "i64[3]", "argnums")
    # jacobians and jvp make the same check
    raises(TypeError, lambda: fgrad.jacrev(vector_valued)(np.arange(3)), "jacrev(vector_valued)", "int64")
    raises(TypeError, lambda: fgrad.jacfwd(vector_valued)(np.arange(3)), "jacfwd(vector_valued)", "int64")
    raises(TypeError, lambda: fgrad.jvp(vector_valued, (np.arange(3),), (np.ones(3),)),
           "jvp(vector_valued)", "int64")


def test_integer_argument_outside_argnums_is_fine():
    def loss(x, labels):
        return fnp.sum(x * labels)
    np.testing.assert_allclose(fgrad.grad(loss)(np.ones(3), np.arange(3)), [0.0, 1.0, 2.0])


def test_grad_with_respect_to_complex_input():
    # as JAX: complex inputs are differentiable (tests/test_complex.py), but a complex output
    # needs holomorphic=True, and holomorphic=True needs complex inputs
    raises(TypeError, lambda: fgrad.grad(lambda z: fnp.sum(z))(np.ones(3) * 1j),
           "grad(<lambda>)", "real scalar", "c128[]", "holomorphic=True")
    raises(TypeError, lambda: fgrad.grad(lambda x: fnp.sum(x) * 1j, holomorphic=True)(np.ones(3)),
           "holomorphic=True", "argument 0", "f64[3]", "complex inputs")


def test_argnums_out_of_range():
    msg = raises(TransformError, lambda: fgrad.grad(add_pair, argnums=2)(1.0, 2.0),
                 "grad(add_pair)", "argnums=2", "2 positional argument")
    assert isinstance(ValueError(msg), ValueError)   # TransformError is also a ValueError
    raises(ValueError, lambda: fgrad.grad(add_pair, argnums=(0, 5))(1.0, 2.0), "argnums=(0, 5)")
    raises(TransformError, lambda: fgrad.jacrev(add_pair, argnums=-3)(1.0, 2.0), "jacrev(add_pair)")


@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jacrev", "jacfwd"])
def test_has_aux_with_a_non_pair_output(transform):
    def no_aux(x):
        return fnp.sum(x ** 2)
    fn = getattr(fgrad, transform)(no_aux, has_aux=True)
    name = "grad" if transform == "value_and_grad" else transform
    raises(TypeError, lambda: fn(np.ones(3)), f"{name}(no_aux, has_aux=True)", "pair", "f64[]")

    def three(x):
        return fnp.sum(x), 1, 2
    raises(TypeError, lambda: fgrad.grad(three, has_aux=True)(np.ones(3)), "tuple of length 3")
    raises(TypeError, lambda: fgrad.vjp(no_aux, np.ones(3), has_aux=True), "vjp(no_aux, has_aux=True)")
    raises(TypeError, lambda: fgrad.jvp(no_aux, (np.ones(3),), (np.ones(3),), has_aux=True),
           "jvp(no_aux, has_aux=True)")


# --------------------------------------------------------------------------------------------
# vjp / jvp arguments
# --------------------------------------------------------------------------------------------

def test_wrong_cotangent_shape_in_vjp_fn():
    _, pullback = fgrad.vjp(vector_valued, np.ones(3))
    raises(ValueError, lambda: pullback(np.ones(4)), "vjp(vector_valued)", "(4,)", "(3,)")
    raises(TypeError, lambda: pullback((np.ones(3),)), "vjp(vector_valued)", "structure")


def test_wrong_tangent_shape_in_jvp():
    raises(ValueError, lambda: fgrad.jvp(vector_valued, (np.ones(3),), (np.ones(4),)),
           "jvp(vector_valued)", "(4,)", "(3,)")
    raises(TypeError, lambda: fgrad.jvp(vector_valued, np.ones(3), np.ones(3)),
           "jvp(vector_valued)", "tuples")


# --------------------------------------------------------------------------------------------
# vmap's axes
# --------------------------------------------------------------------------------------------

def test_vmap_mismatched_axis_sizes_names_both_arguments():
    raises(ValueError, lambda: fgrad.vmap(add_pair)(np.ones((3, 2)), np.ones((4, 2))),
           "vmap(add_pair)", "args[0] has size 3", "args[1] has size 4", "in_axes")
    raises(ValueError, lambda: fgrad.vmap(add_pair, in_axes=(0, 1))(np.ones((3, 2)), np.ones((3, 2))),
           "args[0] has size 3", "args[1] has size 2")
    raises(ValueError, lambda: fgrad.vmap(lambda p: p["a"] + p["b"])({"a": np.ones(3), "b": np.ones(5)}),
           "args[0]['a'] has size 3", "args[0]['b'] has size 5")
    raises(ValueError, lambda: fgrad.vmap(vector_valued, axis_size=5)(np.ones(3)),
           "args[0] has size 3", "axis_size=5")


def test_vmap_in_axes_that_do_not_match_the_pytree():
    def first(p):
        return p["a"]
    params = {"a": np.ones(3), "b": np.ones(3)}
    raises(ValueError, lambda: fgrad.vmap(first, in_axes=({"a": 0, "c": 0},))(params),
           "vmap(first)", "in_axes", "'c'", "'b'")
    raises(ValueError, lambda: fgrad.vmap(first, in_axes=([0, 0],))(params),
           "vmap(first)", "in_axes", "list", "dict")
    raises(ValueError, lambda: fgrad.vmap(add_pair, in_axes=(0, 0, 0))(np.ones(3), np.ones(3)),
           "vmap(add_pair)", "length 3", "2 positional")
    raises(TypeError, lambda: fgrad.vmap(first, in_axes={"a": 0})(params),
           "vmap(first)", "top level", "in_axes=(")
    raises(TypeError, lambda: fgrad.vmap(add_pair, in_axes=(0.5, 0))(np.ones(3), np.ones(3)),
           "vmap(add_pair)", "args[0]", "0.5")


def test_vmap_out_axes_that_do_not_match_the_output():
    raises(ValueError, lambda: fgrad.vmap(lambda a: (a, a), out_axes=(0, 0, 0))(np.ones((3, 2))),
           "out_axes", "output")
    raises(ValueError, lambda: fgrad.vmap(lambda a: a * 2, out_axes=None)(np.ones((3, 2))),
           "out_axes is None", "mapped axis")


def test_vmap_in_axes_out_of_range():
    raises(ValueError, lambda: fgrad.vmap(add_pair, in_axes=(2, 0))(np.ones((3, 2)), np.ones(3)),
           "vmap(add_pair)", "in_axes=2", "args[0]", "(3, 2)", "[-2, 1]")
    raises(ValueError, lambda: fgrad.vmap(add_pair, in_axes=(0, -2))(np.ones((3, 2)), np.ones(3)),
           "in_axes=-2", "args[1]", "(3,)")
    raises(ValueError, lambda: fgrad.vmap(vector_valued)(np.float64(2.0)), "in_axes=0", "()")


def test_vmap_out_axes_out_of_range():
    raises(ValueError, lambda: fgrad.vmap(lambda a: a * 2, out_axes=3)(np.ones((3, 2))),
           "out_axes=3", "2 dimension(s)", "[-2, 1]")
    raises(ValueError, lambda: fgrad.vmap(lambda a: {"y": a}, out_axes={"y": -3})(np.ones((3, 2))),
           "out_axes=-3", "['y']")


def test_vmap_with_nothing_mapped_needs_axis_size():
    raises(ValueError, lambda: fgrad.vmap(add_pair, in_axes=None)(np.ones(3), np.ones(3)),
           "vmap(add_pair)", "axis_size")


# --------------------------------------------------------------------------------------------
# Tracer leaks
# --------------------------------------------------------------------------------------------

def _leak_from(transform):
    leaked = []

    def keep(x):
        leaked.append(x * 2)
        return fnp.sum(x)

    x = np.ones(3)
    if transform == "grad":
        fgrad.grad(keep)(x)
    elif transform == "vmap":
        fgrad.vmap(keep)(np.ones((2, 3)))
    elif transform == "jvp":
        fgrad.jvp(keep, (x,), (x,))
    else:
        fgrad.make_jaxpr(keep)(x)
    return leaked[0]


@pytest.mark.parametrize("transform, trace", [("grad", "vjp"), ("vmap", "vmap"), ("jvp", "jvp"),
                                              ("make_jaxpr", "make_jaxpr")])
def test_leaked_tracer_used_later(transform, trace):
    tracer = _leak_from(transform)
    raises(UnexpectedTracerError, lambda: fnp.sin(tracer), "sin", trace, "(3,)", "leak", "return it")
    raises(UnexpectedTracerError, lambda: tracer + 1.0, "add", "leak")
    raises(UnexpectedTracerError, lambda: np.ones(3) * tracer, "mul", "leak")   # ndarray on the left
    # inside a new transform too: the old trace stays dead
    raises(UnexpectedTracerError, lambda: fgrad.grad(lambda y: fnp.sum(y * tracer))(np.ones(3)), "leak")
    assert issubclass(UnexpectedTracerError, FgradError)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------

def test_matmul_shape_mismatch_names_both_shapes():
    w = np.ones((4, 2))
    for call in (lambda: fgrad.grad(lambda a: fnp.sum(a @ w))(np.ones((2, 3))),
                 lambda: fnp.matmul(np.ones((2, 3)), w),
                 lambda: fgrad.vmap(lambda a: a @ w)(np.ones((5, 2, 3)))):
        raises(ValueError, call, "matmul", "(2, 3)", "(4, 2)", "(3)", "(4)")
    raises(ValueError, lambda: fgrad.grad(lambda a: fnp.sum(a @ np.ones(4)))(np.ones((2, 3))),
           "matmul", "(2, 3)", "(4,)")
    raises(ValueError, lambda: fgrad.jvp(lambda a: fnp.matmul(a, 2.0), (np.ones(3),), (np.ones(3),)),
           "matmul", "at least 1-D")


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "multiply"),
                                      (lambda a, b: fnp.maximum(a, b), "maximum"),
                                      (lambda a, b: fnp.where(a > 0, a, b), "where")])
def test_broadcasting_mismatch_names_both_shapes(op, name):
    b = np.ones(4)
    raises(ValueError, lambda: fgrad.grad(lambda a: fnp.sum(op(a, b)))(np.ones((2, 3))),
           name, "(2, 3)", "(4,)", "broadcast")
    # under vmap the shapes are those the function sees, one example at a time
    raises(ValueError, lambda: fgrad.vmap(lambda a: op(a, b))(np.ones((2, 3))), name, "(3,)", "(4,)")


def test_bad_reshape():
    msg = raises(ValueError, lambda: fgrad.grad(lambda a: fnp.sum(fnp.reshape(a, (4, 2))))(np.ones((2, 3))),
                 "reshape", "(2, 3)", "(4, 2)", "6")
    assert "8" in msg or "(4, 2)" in msg
    raises(ValueError, lambda: fgrad.vmap(lambda a: a.reshape(4, 2))(np.ones((5, 2, 3))), "reshape", "(2, 3)")
    raises(ValueError, lambda: fgrad.grad(lambda a: fnp.sum(a.reshape(-1, 4)))(np.ones((2, 3))),
           "reshape", "(2, 3)")


@pytest.mark.parametrize("reduction", ["sum", "mean", "max", "var", "logsumexp", "argmax"])
def test_reduction_axis_out_of_range(reduction):
    fn = getattr(fnp, reduction)

    def loss(a):
        return fnp.sum(fnp.astype(fn(a, axis=2), float))
    raises(ValueError, lambda: fgrad.grad(loss)(np.ones((2, 3))), reduction, "axis 2", "2 dimension", "[-2, 1]")
    # under vmap the function sees one example of 1 dimension
    raises(ValueError, lambda: fgrad.vmap(lambda a: fn(a, axis=1))(np.ones((2, 3))),
           reduction, "axis 1", "1 dimension")


# --------------------------------------------------------------------------------------------
# Tracers handed to raw NumPy, and Python control flow on traced values
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [lambda a: np.sin(a), lambda a: np.asarray(a),
                                 lambda a: np.concatenate([a, a]), lambda a: np.sum(a),
                                 lambda a: np.exp(a) + 1],
                         ids=["np.sin", "np.asarray", "np.concatenate", "np.sum", "np.exp"])
@pytest.mark.parametrize("transform", ["grad", "vmap", "jvp"])
def test_tracer_passed_to_raw_numpy(raw, transform):
    x = np.ones(3)
    loss = lambda a: fnp.sum(fnp.asarray(raw(a)))   # noqa: E731
    call = {"grad": lambda: fgrad.grad(loss)(x),
            "vmap": lambda: fgrad.vmap(raw)(np.ones((2, 3))),
            "jvp": lambda: fgrad.jvp(raw, (x,), (x,))}[transform]
    raises(TracerArrayConversionError, call, "use fgrad.numpy", "Tracer", "(3,)" if transform != "vmap" else "")
    assert isinstance(TracerArrayConversionError("x"), TypeError)


def test_numpy_array_indexed_by_a_tracer():
    """``np_array[tracer]`` cannot work (NumPy needs the index now): the error says what to use."""
    table = np.arange(3.0)
    raises(TracerArrayConversionError, lambda: fgrad.vmap(lambda i: table[i])(np.arange(2)),
           "BatchTracer", "fgrad.numpy", "fnp.take(table, i)")
    np.testing.assert_allclose(fgrad.vmap(lambda i: fnp.take(table, i))(np.array([2, 0])), [2.0, 0.0])


def test_concrete_python_control_flow_works_under_grad_but_not_vmap():
    def absolute(a):
        if a > 0:
            return a
        return -a

    assert fgrad.grad(absolute)(-2.0) == -1.0
    assert fgrad.grad(absolute)(3.0) == 1.0
    assert fgrad.jvp(absolute, (-2.0,), (1.0,))[1] == -1.0
    raises(ConcretizationError, lambda: fgrad.vmap(absolute)(np.array([1.0, -2.0])),
           "bool", "vmap", "fgrad.numpy.where")
    raises(ConcretizationError, lambda: fgrad.make_jaxpr(absolute)(1.0), "make_jaxpr")
    raises(ConcretizationError, lambda: fgrad.vmap(lambda a: float(a))(np.ones(2)), "float(x)")
    raises(ConcretizationError, lambda: fgrad.vmap(lambda a: [1.0, 2.0][a])(np.arange(2)),
           "as an index")
    assert isinstance(ConcretizationError("x"), TypeError)


def test_error_classes_can_be_caught_by_kind():
    for cls in (UnexpectedTracerError, TracerArrayConversionError, ConcretizationError, TransformError):
        assert issubclass(cls, FgradError)
