"""fgrad: composable function transforms (grad, vmap, jvp, ...) on NumPy, in the style of JAX.

>>> import numpy as np, fgrad, fgrad.numpy as fnp
>>> f = lambda x: fnp.sum(fnp.tanh(x) ** 2)
>>> fgrad.grad(f)(np.ones(3))                      # reverse mode
>>> fgrad.vmap(fgrad.grad(f))(np.ones((4, 3)))     # per-row gradients
>>> fgrad.hessian(f)(np.ones(3))                   # forward-over-reverse
"""
from . import numpy  # noqa: F401  (first: the primitives' rules are written with it)
from . import core, primitives, tree  # noqa: F401
from .api import (grad, hessian, jacfwd, jacrev, jvp, linearize, make_jaxpr, stop_gradient,
                  value_and_grad, vjp, vmap)
from .custom import checkpoint, checkpoint_policies, custom_jvp, custom_vjp, remat
from .debug import debug_nans
from .errors import (ConcretizationError, FgradError, MissingRuleError,
                     TracerArrayConversionError, TransformError, UnexpectedTracerError)
from . import config, random, testing  # noqa: F401
from .config import threefry_partitionable
from .jit import ShapeDtypeStruct, eval_shape, jit
from . import lax  # noqa: F401  (after api: it re-exports stop_gradient)
from . import nn, scipy  # noqa: F401  (jax.nn, jax.scipy.special)

jacobian = jacrev             # JAX's alias
tree_util = tree              # jax.tree_util's names live in fgrad.tree
import sys as _sys            # noqa: E402  (so `import fgrad.tree_util` works too)
_sys.modules[__name__ + ".tree_util"] = tree
del _sys

__version__ = "0.1.0"

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "vmap", "jacfwd", "jacrev",
           "hessian", "jacobian", "stop_gradient", "custom_vjp", "custom_jvp", "checkpoint", "checkpoint_policies", "remat",
           "make_jaxpr", "debug_nans", "config", "threefry_partitionable", "lax", "nn", "numpy", "random", "scipy", "tree", "tree_util", "testing", "FgradError",
           "UnexpectedTracerError", "TracerArrayConversionError", "ConcretizationError",
           "MissingRuleError", "TransformError"]
