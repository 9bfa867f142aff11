"""Complex parts: ``real``, ``imag``, ``conj``, and the convention every complex rule follows.

**The convention (JAX's).** A JVP is the R-linear directional derivative, which needs no
convention: ``jvp(f, (z,), (dz,))`` is ``lim (f(z + h dz) - f(z)) / h`` for real ``h``. A
cotangent ``u`` pairs with a tangent ``v`` by the *bilinear* form ``<u, v> = Re(sum(u * v))``
(no conjugate), and every VJP rule is the transpose of its JVP under that form. So:

* a holomorphic op ``y = f(z)`` has ``dy = f'(z) dz`` and ``z_bar = f'(z) y_bar``: the same
  formula as for real numbers, with no ``conj`` (``mul``, ``div``, ``exp``, ``log``,
  ``dot_general``, ``inv``, ``solve``, the FFTs: their real rules are already right);
* a non-holomorphic op gets its transpose written out here and in the few rules that need
  one (``abs`` of a complex number, ``convert_element_type`` between real and complex,
  ``slogdet``, ``cholesky``/``eigh`` of Hermitian matrices, ``rfft``/``irfft``);
* a real operand that met a complex op (``x * z`` with real ``x``) gets the real part of its
  complex cotangent, the transpose of the embedding R -> C (``fgrad.vjp._fit`` does this);
* ``grad(f)(z)`` of a real-valued ``f`` is then ``df/dx - i df/dy = 2 df/dz`` (``z = x + iy``,
  ``d/dz`` the Wirtinger derivative): what ``jax.grad`` returns, and the complex conjugate of
  what torch puts in ``z.grad`` (``df/dx + i df/dy``, torch's conjugate-pairing convention).
  In general ``fgrad.vjp(f, z)[1](u) == conj(torch_vjp(conj(u)))``; descend along
  ``-conj(grad(f)(z))``.

>>> fgrad.grad(lambda z: fnp.abs(z) ** 2)(1.0 + 2.0j)     # (2-4j) = 2 conj(z), as JAX; torch: 2 z
"""
from __future__ import annotations

import numpy as np

from .. import numpy as fnp
from ..core import Primitive, dtype_of
from ..jvp import defjvp
from ..staging import elementwise_abstract_eval
from ..vmap import elementwise_batch_rule


def as_complex_like(g, z):
    """The real cotangent ``g`` in the complex dtype of ``z`` (the transpose of ``Re``)."""
    return fnp.astype(g, dtype_of(z)) if dtype_of(g) != dtype_of(z) else g


# Re z:  d Re(z) = Re(dz);  its transpose embeds the real cotangent: z_bar = g + 0i
real_p = Primitive("real", np.real)
defjvp(real_p, lambda z_dot, ans, z: fnp.real(z_dot))
real_p.vjp = (lambda g, ans, z: as_complex_like(g, z),)

# Im z:  d Im(z) = Im(dz);  transpose: Re(z_bar dz) = g Im(dz) for all dz gives z_bar = -i g
imag_p = Primitive("imag", np.imag)
defjvp(imag_p, lambda z_dot, ans, z: fnp.imag(z_dot))
imag_p.vjp = (lambda g, ans, z: as_complex_like(-1j * g, z),)

# conj z:  d conj(z) = conj(dz);  transpose: Re(z_bar dz) = Re(g conj(dz)) gives z_bar = conj(g)
conj_p = Primitive("conj", np.conjugate)
defjvp(conj_p, lambda z_dot, ans, z: fnp.conj(z_dot))
conj_p.vjp = (lambda g, ans, z: fnp.conj(g),)

for _p in (real_p, imag_p, conj_p):
    elementwise_batch_rule(_p)
    elementwise_abstract_eval(_p)
