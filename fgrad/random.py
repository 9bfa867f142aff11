"""fgrad.random: pseudo-random numbers from explicit, splittable keys (``jax.random``).

There is no global generator and no hidden state. Every sampler is a pure function of its key,
so the same key gives the same numbers on every machine, and a function that draws random
numbers can be transformed like any other (``grad``, ``vmap``, ``jit``, ``lax.scan``)::

    >>> import fgrad, fgrad.random as fr
    >>> key = fr.key(0)                             # a typed key: shape (), dtype key<fry>
    >>> k_init, k_data = fr.split(key)              # never reuse a key: split it
    >>> w = fr.normal(k_init, (3, 2))
    >>> keys = fr.split(k_data, 8)                  # shape (8,): one key per example
    >>> x = fgrad.vmap(lambda k: fr.normal(k, (3,)))(keys)   # (8, 3), independent rows

Keys
----
As in JAX there are two kinds, and every function takes either:

* **typed keys** (``key(seed)``, ``jax.random.key``): a :class:`KeyArray` whose shape is the
  number of keys (``key(0).shape == ()``, ``split(key(0), 8).shape == (8,)``) and whose dtype
  prints ``key<fry>``. It indexes, iterates, reshapes and compares like an array of keys;
  ``key_data(k)`` is its raw ``uint32`` data of shape ``k.shape + (2,)`` and
  ``wrap_key_data(data)`` the way back. ``np.asarray(k)`` is an error pointing to ``key_data``.
* **raw keys** (``PRNGKey(seed)``, ``jax.random.PRNGKey``): a NumPy ``uint32`` array of shape
  ``(2,)``; ``split(raw, 8)`` has shape ``(8, 2)``. ``split`` and ``fold_in`` return the kind
  they are given.

A :class:`KeyArray` is a pytree node with one child, its raw data (JAX makes typed keys leaves
of their own dtype). That choice lets every transform handle keys with no special case:
``vmap`` batches the data (a batched typed key of shape ``(n,)`` maps to keys of shape
``()``), ``jit``, ``lax.scan`` and ``eval_shape`` carry it, and the wrapper is rebuilt on the
other side. What it changes, compared with JAX: ``fgrad.tree.leaves(key(0))`` is
``[key_data(key(0))]`` (JAX: ``[key(0)]``), and ``fnn.io.save`` stores a typed key as its
data (``load`` rebuilds it given ``like=``). ``grad`` with respect to a key is an error that
names it (keys are not differentiable); a key passed as an argument that is not
differentiated is fine. Negative ``in_axes``/``out_axes`` of ``vmap`` count a typed key's own
axes, as in JAX.

How the numbers are made
------------------------
The bit generator is **Threefry-2x32** with 20 rounds (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC 2011), the counter-based hash JAX uses: it maps a 64-bit key
and a 64-bit counter to 64 random bits with additions, rotations and xors of 32-bit words, so
the ``n``-th block of bits is computed directly, in a vectorised NumPy expression, with no
sequential state. JAX has two ways of choosing the counters, and fgrad follows the one
``fgrad.config.jax_threefry_partitionable`` selects (``fgrad.config.update(...)`` or ``with
fgrad.threefry_partitionable(...)``, as in JAX):

* **partitionable** (``True``, the default, as in JAX 0.5 and later): the ``i``-th value of a
  draw of shape ``shape`` (flat index ``i``) is the hash of the counter pair
  ``(i >> 32, i mod 2^32)``; its two output words ``(a, b)`` give a key (``split``), 64 bits
  ``a 2^32 + b``, or 32 bits ``a ^ b`` (8 and 16 bits: the low bits of ``a ^ b``). So
  ``split(key, n)[i] == fold_in(key, i)``, and any element is computable on its own.
* **original** (``False``, JAX before 0.5): ``n`` words of 32 bits hash the counters
  ``0 .. n - 1`` cut in two halves, ``(c[j], c[j + n/2])``, the outputs concatenated; 64-bit
  values join the two halves, 8- and 16-bit values are pieces of the 32-bit words.

``fold_in(key, d)`` hashes the counter ``(0, d)`` in both. Every operation that consumes a key
is a primitive, with the scheme as a parameter (so ``make_jaxpr`` shows it and ``jit`` traces
again when the setting changes):

* ``random_bits_p(keys, shape=, bit_width=, partitionable=)``;
* ``random_split_p(keys, shape=, partitionable=)``;
* ``random_fold_in_p(keys, data)``.

Their NumPy implementations accept raw keys with leading batch axes (``(..., 2)``), which makes
their ``vmap`` rule one vectorised call: a batch of keys broadcasts against the counters. They
are ``differentiable=False``: random bits have no derivative.

The samplers on top (``uniform``, ``normal``, ``truncated_normal``, ...) are written in
``fgrad.numpy`` operations, so their parameters may be traced: ``grad`` flows through
``uniform(key) * (b - a) + a`` or ``mu + sigma * normal(key)`` (the reparameterisation trick).

Compatibility with JAX
----------------------
The seeds, both schemes and every sampler's algorithm follow JAX with 64-bit types enabled
(JAX 0.10.2 checked): under either setting ``key``, ``split``, ``fold_in``, ``bits``,
``randint``, ``bernoulli``, ``categorical``, ``permutation`` and ``choice`` give JAX's values
exactly, and ``uniform``, ``normal``, ``truncated_normal`` and ``gumbel`` its floats to
within 64 eps of ``max(|x|, 1)`` (measured: up to 46 eps in float32 normal tails, 15 in
float64), where XLA's ``erf_inv``, ``log`` and fused multiply-adds round differently from
NumPy (fgrad's erfinv is the more accurate one). ``tests/test_random.py`` pins JAX's values
for both. Differences: the default float dtype is float64 (as JAX with x64), float16/bfloat16
samplers are not offered, and typed keys are pytree nodes (above).
"""
from __future__ import annotations

import math
import operator

import numpy as np
import optree

from . import config as _config
from . import numpy as fnp
from .core import Primitive, Tracer, bind, dtype_of, shape_of
from .primitives.elementwise import nondifferentiable, unary
from .staging import ShapedArray
from .tree import NAMESPACE
from .vmap import batch_size, move_to_front

__all__ = ["key", "PRNGKey", "split", "fold_in", "key_data", "wrap_key_data", "key_impl",
           "clone", "KeyArray", "bits", "uniform", "normal", "truncated_normal", "bernoulli",
           "gumbel", "categorical", "randint", "permutation", "choice", "threefry_2x32"]

_U32 = np.dtype(np.uint32)
_UINT = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: _U32, 64: np.dtype(np.uint64)}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------------------------
# Threefry-2x32: the hash
# --------------------------------------------------------------------------------------------

# Rotation distances of the two alternating groups of four rounds (Salmon et al., table 4).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
# Skein's key-schedule parity constant: the third key word is k0 ^ k1 ^ parity.
_KS_PARITY = np.uint32(0x1BD11BDA)


#: Up to this many blocks, the rounds run out of place (fewest NumPy calls: single keys).
_SMALL = 4096
#: Larger draws run in place, this many blocks per pass, so that the working arrays stay in
#: cache: 1e6 blocks take 39 ms instead of 214 ms out of place (87 ms in place, unchunked).
_CHUNK = 1 << 17


def _threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block function, 20 rounds, on broadcastable ``uint32`` arrays.

    One round mixes the two words ``(x0, x1)``: ``x0 += x1; x1 = rotl(x1, r) ^ x0``. After
    every four rounds a key word is injected: ``x0 += ks[i]; x1 += ks[i + 1] + i`` with the
    key schedule ``ks = (k0, k1, k0 ^ k1 ^ parity)`` taken cyclically. All arithmetic is
    modulo 2^32, so the result is the same on every machine. Returns two arrays of the
    operands' broadcast shape.
    """
    shape = np.broadcast_shapes(np.shape(k0), np.shape(k1), np.shape(x0), np.shape(x1))
    n = math.prod(shape)
    if n <= _SMALL:
        with np.errstate(over="ignore"):
            ks = (k0, k1, k0 ^ k1 ^ _KS_PARITY)
            x0 = x0 + ks[0]
            x1 = x1 + ks[1]
            for i in range(5):
                for r in _ROTATIONS[i % 2]:
                    x0 = x0 + x1
                    x1 = (x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))
                    x1 = x1 ^ x0
                x0 = x0 + ks[(i + 1) % 3]
                x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
        return np.broadcast_to(x0, shape), np.broadcast_to(x1, shape)
    flat = [np.asarray(v).reshape(()) if np.size(v) == 1 else np.broadcast_to(v, shape).ravel()
            for v in (k0, k1, x0, x1)]
    y0, y1 = np.empty(n, _U32), np.empty(n, _U32)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        y0[part], y1[part] = _threefry_in_place(*[v if v.ndim == 0 else v[part] for v in flat])
    return y0.reshape(shape), y1.reshape(shape)


def _threefry_in_place(k0, k1, x0, x1):
    """:func:`_threefry2x32`'s rounds on 1-D blocks (keys 0-d or of the same length), updating
    two fresh arrays in place instead of allocating one per operation."""
    with np.errstate(over="ignore"):
        ks = (k0, k1, k0 ^ k1 ^ _KS_PARITY)
        shape = np.broadcast_shapes(np.shape(k0), np.shape(k1), np.shape(x0), np.shape(x1))
        x0 = np.add(np.broadcast_to(x0, shape), ks[0], dtype=_U32)   # fresh, full-size arrays
        x1 = np.add(np.broadcast_to(x1, shape), ks[1], dtype=_U32)
        rotated = np.empty_like(x1)
        for i in range(5):
            for r in _ROTATIONS[i % 2]:
                np.add(x0, x1, out=x0)                            # x0 += x1
                np.left_shift(x1, np.uint32(r), out=rotated)      # x1 = rotl(x1, r) ^ x0
                np.right_shift(x1, np.uint32(32 - r), out=x1)
                np.bitwise_or(x1, rotated, out=x1)
                np.bitwise_xor(x1, x0, out=x1)
            np.add(x0, ks[(i + 1) % 3], out=x0)
            np.add(x1, ks[(i + 2) % 3] + np.uint32(i + 1), out=x1)
    return x0, x1


def _hash_counts(keys, counts):
    """JAX's ``threefry_2x32(key, counts)`` for keys of shape ``(..., 2)`` and 1-D ``counts``.

    The counters are padded to an even length and cut in two halves that form the word pairs
    ``(counts[i], counts[i + n/2])``; the two output words are concatenated in the same
    layout. Result: ``(..., len(counts))``.
    """
    n = counts.shape[0]
    if n % 2:
        counts = np.concatenate([counts, np.zeros(1, _U32)])
    half = counts.shape[0] // 2
    y0, y1 = _threefry2x32(keys[..., 0:1], keys[..., 1:2], counts[:half], counts[half:])
    return np.concatenate([y0, y1], axis=-1)[..., :n]


def threefry_2x32(keypair, count):
    """Threefry-2x32 of ``uint32`` counters under one key (``jax.random.threefry_2x32``).

    ``keypair``: ``uint32[2]``; ``count``: any ``uint32`` array. The flattened counters are
    paired as described in :func:`_hash_counts`; the result has ``count``'s shape. With
    ``count`` of two elements this is the block function itself, which is how the Random123
    known-answer tests are stated::

        >>> threefry_2x32(np.uint32([0x13198a2e, 0x03707344]), np.uint32([0x243f6a88, 0x85a308d3]))
        array([3297917596, 1212020640], dtype=uint32)          # (0xc4923a9c, 0x483df7a0)
    """
    keypair, count = np.asarray(keypair), np.asarray(count)
    if keypair.shape != (2,) or keypair.dtype != _U32 or count.dtype != _U32:
        raise TypeError(f"fgrad.random.threefry_2x32: expected a uint32[2] key and uint32 "
                        f"counters, got {_describe(keypair)} and {_describe(count)}")
    return _hash_counts(keypair, count.ravel()).reshape(count.shape)


def _hash_indices(keys, shape):
    """The partitionable scheme's words for keys ``(..., 2)``: the hashes ``(a, b)``, each of
    shape ``(..., *shape)``, of the counters ``(i >> 32, i mod 2^32)`` for the flat index ``i``
    of every position of ``shape`` (JAX's ``iota_2x32_shape``)."""
    size = math.prod(shape)
    if size > 2 ** 64:
        raise ValueError(f"fgrad.random: cannot draw {size} values from one key (at most 2^64)")
    if size <= 2 ** 32:
        high, low = np.zeros((), _U32), np.arange(size, dtype=_U32).reshape(shape)
    else:
        index = np.arange(size, dtype=np.uint64).reshape(shape)
        high, low = (index >> np.uint64(32)).astype(_U32), index.astype(_U32)
    keys = np.asarray(keys)
    lead = keys.shape[:-1] + (1,) * len(shape)
    a, b = _threefry2x32(keys[..., 0].reshape(lead), keys[..., 1].reshape(lead), high, low)
    out_shape = keys.shape[:-1] + tuple(shape)
    return np.broadcast_to(a, out_shape), np.broadcast_to(b, out_shape)


# --------------------------------------------------------------------------------------------
# The primitives that consume keys. Their implementations take keys of shape (..., 2), so a
# batch of keys is one vectorised call; that is their whole vmap rule.
# --------------------------------------------------------------------------------------------

def _keys_batch_rule(prim):
    """vmap for primitives whose operands are keys ``(..., 2)`` and per-key data ``(...)``:
    move every batch axis to the front (broadcasting unmapped operands) and bind once."""
    def rule(vals, dims, **params):
        size = batch_size(vals, dims)
        return prim.bind(*[move_to_front(v, d, size) for v, d in zip(vals, dims)], **params), 0
    prim.batch = rule
    return prim


def _random_bits_impl(keys, *, shape, bit_width, partitionable):
    """``prod(shape)`` blocks of ``bit_width`` random bits per key: ``(..., *shape)``.

    Partitionable: value ``i`` comes from the hash ``(a, b)`` of the index ``i``: ``a 2^32 + b``
    (64 bits), ``a ^ b`` (32), its low bits (8, 16). Original: the counters ``0 .. m - 1`` with
    ``m = ceil(bit_width * size / 32)`` are hashed; 64-bit values join the first half of the
    words (high) with the second half (low); 8- and 16-bit values are the pieces of each 32-bit
    word, lowest first.
    """
    keys = np.asarray(keys)
    if partitionable:
        a, b = _hash_indices(keys, shape)
        if bit_width == 64:
            return (a.astype(np.uint64) << np.uint64(32)) | b
        return (a ^ b).astype(_UINT[bit_width], copy=False)
    size = math.prod(shape)
    n_words = -(-bit_width * size // 32)
    if n_words >= 2 ** 32:
        raise ValueError(f"fgrad.random: cannot draw {size} values of {bit_width} bits from one "
                         f"key (at most 2^32 - 1 words of 32 bits); split the key and draw in "
                         f"parts")
    words = _hash_counts(keys, np.arange(n_words, dtype=_U32))
    batch = keys.shape[:-1]
    if bit_width == 64:
        high, low = words[..., :size].astype(np.uint64), words[..., size:].astype(np.uint64)
        out = (high << np.uint64(32)) | low
    elif bit_width == 32:
        out = words
    else:
        per_word = 32 // bit_width
        shifts = np.arange(per_word, dtype=_U32) * np.uint32(bit_width)
        pieces = (words[..., None] >> shifts) & np.uint32(2 ** bit_width - 1)
        out = pieces.reshape(batch + (n_words * per_word,))[..., :size].astype(_UINT[bit_width])
    return out.reshape(batch + tuple(shape))


random_bits_p = _keys_batch_rule(Primitive("random_bits", _random_bits_impl, differentiable=False))
random_bits_p.abstract_eval = lambda keys, *, shape, bit_width, partitionable: ShapedArray(
    shape_of(keys)[:-1] + tuple(shape), _UINT[bit_width])


def _random_split_impl(keys, *, shape, partitionable):
    """New keys ``(..., *shape, 2)``. Partitionable: key ``i`` is the hash of the index ``i``
    (so ``split(k, n)[i] == fold_in(k, i)``); original: the hashes of the counters
    ``0 .. 2 * prod(shape) - 1``, read two words per key."""
    keys = np.asarray(keys)
    if partitionable:
        return np.stack(_hash_indices(keys, shape), axis=-1)
    words = _hash_counts(keys, np.arange(2 * math.prod(shape), dtype=_U32))
    return words.reshape(keys.shape[:-1] + tuple(shape) + (2,))


random_split_p = _keys_batch_rule(Primitive("random_split", _random_split_impl,
                                            differentiable=False))
random_split_p.abstract_eval = lambda keys, *, shape, partitionable: ShapedArray(
    shape_of(keys)[:-1] + tuple(shape) + (2,), _U32)


def _random_fold_in_impl(keys, data):
    """``threefry(key, (0, data))``: a new key per ``(key, data)`` pair, broadcast together."""
    keys, data = np.asarray(keys), np.asarray(data, _U32)
    y0, y1 = _threefry2x32(keys[..., 0], keys[..., 1], np.zeros_like(data), data)
    y0, y1 = np.broadcast_arrays(y0, y1)
    return np.stack([y0, y1], axis=-1)


random_fold_in_p = _keys_batch_rule(Primitive("random_fold_in", _random_fold_in_impl,
                                              differentiable=False))
random_fold_in_p.abstract_eval = lambda keys, data: ShapedArray(
    np.broadcast_shapes(shape_of(keys)[:-1], shape_of(data)) + (2,), _U32)


def _partitionable():
    """The scheme in force (read when a function is traced; see fgrad.config)."""
    return _config._VALUES["jax_threefry_partitionable"]


def _bits(raw_key, shape, bit_width):
    return bind(random_bits_p, raw_key, shape=shape, bit_width=bit_width,
                partitionable=_partitionable())


def _split_raw(raw_key, shape):
    return bind(random_split_p, raw_key, shape=shape, partitionable=_partitionable())


# --------------------------------------------------------------------------------------------
# Two elementwise helpers the samplers need: the inverse error function and nextafter.
# --------------------------------------------------------------------------------------------

# Cephes' ndtri (Moshier, Cephes Math Library 2.8) rational approximations, highest power
# first; relative error below 1e-15 in float64. Central region: ndtri(1/2 + w) / sqrt(2 pi) =
# w + w^3 P0(w^2) / Q0(w^2). Tails: with t = sqrt(-2 log q), |ndtri(q)| = t - log(t) / t -
# P(1/t) / (t Q(1/t)), (P1, Q1) for t < 8 and (P2, Q2) beyond.
_P0 = (-5.99633501014107895267e1, 9.80010754185999661536e1, -5.66762857469070293439e1,
       1.39312609387279679503e1, -1.23916583867381258016e0)
_Q0 = (1.95448858338141759834e0, 4.67627912898881538453e0, 8.63602421390890590575e1,
       -2.25462687854119370527e2, 2.00260212380060660359e2, -8.20372256168333339912e1,
       1.59056225126211695515e1, -1.18331621121330003142e0)
_P1 = (4.05544892305962419923e0, 3.15251094599893866154e1, 5.71628192246421288162e1,
       4.40805073893200834700e1, 1.46849561928858024014e1, 2.18663306850790267539e0,
       -1.40256079171354495875e-1, -3.50424626827848203418e-2, -8.57456785154685413611e-4)
_Q1 = (1.57799883256466749731e1, 4.53907635128879210584e1, 4.13172038254672030440e1,
       1.50425385692907503408e1, 2.50464946208309415979e0, -1.42182922854787788574e-1,
       -3.80806407691578277194e-2, -9.33259480895457427372e-4)
_P2 = (3.23774891776946035970e0, 6.91522889068984211695e0, 3.93881025292474443415e0,
       1.33303460815807542389e0, 2.01485389549179081538e-1, 1.23716634817820021358e-2,
       3.01581553508235416007e-4, 2.65806974686737550832e-6, 6.23974539184983293730e-9)
_Q2 = (6.02427039364742014255e0, 3.67983563856160859403e0, 1.37702099489081330271e0,
       2.16236993594496635890e-1, 1.34204006088543189037e-2, 3.28014464682127739104e-4,
       2.89247864745380683936e-6, 6.79019408009981274425e-9)
# ndtri's central region p in (e^-2, 1 - e^-2) is |y| < 1 - 2 e^-2 for erfinv(y), p = (1 + y)/2.
_ERFINV_CENTRAL = 1 - 2 * math.exp(-2)


def _polyval(coefs, x, monic=False):
    """Horner's rule; ``monic`` prepends a leading coefficient 1 (Cephes' ``p1evl``)."""
    out = x + coefs[0] if monic else np.full_like(x, coefs[0])
    for c in coefs[1:]:
        out = out * x + c
    return out


def _erfinv_impl(y):
    """erfinv(y) = ndtri((1 + y) / 2) / sqrt(2), evaluated without forming (1 + y) / 2.

    Near 0 the central approximation takes ``w = y / 2`` directly (so tiny ``y`` keep full
    relative precision); in the tails ``q = (1 - |y|) / 2`` is exact for ``|y| >= 1/2``.
    Computed in float64 and returned in the input's float dtype.
    """
    y = np.asarray(y)
    out_dtype = y.dtype if y.dtype.kind == "f" else np.dtype(np.float64)
    u = y.astype(np.float64)
    a = np.abs(u)
    out = np.full(u.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        central = a < _ERFINV_CENTRAL
        w = u[central] / 2
        w2 = w * w
        ndtri_central = w + w * w2 * _polyval(_P0, w2) / _polyval(_Q0, w2, monic=True)
        out[central] = ndtri_central * math.sqrt(math.pi)   # * sqrt(2 pi) / sqrt(2)
        tail = (a >= _ERFINV_CENTRAL) & (a < 1)
        t = np.sqrt(-2 * np.log((1 - a[tail]) / 2))
        z = 1 / t
        correction = np.where(t < 8, z * _polyval(_P1, z) / _polyval(_Q1, z, monic=True),
                              z * _polyval(_P2, z) / _polyval(_Q2, z, monic=True))
        out[tail] = np.sign(u[tail]) * (t - np.log(t) / t - correction) / math.sqrt(2)
    out[a == 1] = np.sign(u[a == 1]) * np.inf
    return out.astype(out_dtype)


# Named random_* because fgrad.random owns and tests them (tests/test_random.py); both are
# general elementwise ops that could join fgrad.numpy.
# d erfinv(y)/dy = 1 / erf'(erfinv y) = sqrt(pi)/2 * exp(erfinv(y)^2)
erfinv_p = unary("random_erfinv", _erfinv_impl,
                 lambda ans, y: (math.sqrt(math.pi) / 2) * fnp.exp(ans * ans))
# The next representable float after x towards y (used for open-interval bounds; no derivative).
nextafter_p = nondifferentiable("random_nextafter", np.nextafter)


def _erfinv(y):
    return bind(erfinv_p, y)


# --------------------------------------------------------------------------------------------
# Argument checks: every error names the call, what it expected and what it got.
# --------------------------------------------------------------------------------------------

def _describe(x):
    if isinstance(x, KeyArray):
        return f"key<fry>[{','.join(map(str, x.shape))}]"
    if isinstance(x, (np.ndarray, np.generic, Tracer)):
        return f"{np.dtype(dtype_of(x)).name}[{','.join(map(str, shape_of(x)))}]"
    return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float)) else type(x).__name__


def _is_raw_keys(x):
    return isinstance(x, (np.ndarray, Tracer)) and dtype_of(x) == _U32 and shape_of(x)[-1:] == (2,)


def _check_key(fn, key_):
    """The raw ``uint32[2]`` data of one key, typed or raw, or an error saying what came."""
    if type(key_) is KeyArray:
        data = key_._data
        if shape_of(data) == (2,):
            return data
        raise TypeError(f"fgrad.random.{fn}: expects a single key, got a typed key array of shape "
                        f"{key_.shape}; map over it with "
                        f"fgrad.vmap(lambda k: fgrad.random.{fn}(k, ...))(keys)")
    if isinstance(key_, (np.ndarray, Tracer)) and shape_of(key_) == (2,) and dtype_of(key_) == _U32:
        return key_
    msg = (f"fgrad.random.{fn}: key must be a typed key from fgrad.random.key(seed) or a "
           f"uint32 array of shape (2,) from fgrad.random.PRNGKey(seed), got {_describe(key_)}")
    if _is_raw_keys(key_) and len(shape_of(key_)) >= 2:
        msg += (f". That is a batch of keys: map over it with "
                f"fgrad.vmap(lambda k: fgrad.random.{fn}(k, ...))(keys)")
    elif isinstance(key_, (int, np.integer)):
        msg += f". Make a key first: fgrad.random.key({key_!r})"
    raise TypeError(msg)


def _check_shape(fn, shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"fgrad.random.{fn}: shape must be a tuple of ints, got "
                        f"{shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"fgrad.random.{fn}: shape must have non-negative sizes, got {shape}")
    return shape


def _check_broadcast(fn, shape, **shapes):
    """The parameters' ``shapes`` (by name) must broadcast to ``shape`` exactly (as in JAX)."""
    try:
        result = np.broadcast_shapes(shape, *shapes.values())
    except ValueError:
        result = None
    if result != shape:
        listing = ", ".join(f"{name} has shape {s}" for name, s in shapes.items())
        raise ValueError(f"fgrad.random.{fn}: the parameters must broadcast to the requested "
                         f"shape {shape}, but {listing}; pass a shape they broadcast to (or "
                         f"shape=None where the sampler allows it)")


def _float_dtype(fn, dtype):
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"fgrad.random.{fn}: dtype must be float32 or float64, got {dt.name}")
    return dt


def _check_axis(fn, axis, ndim, shape):
    """``axis`` as a non-negative int, or a clear error (a float axis, out of range)."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"fgrad.random.{fn}: axis must be an int, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"fgrad.random.{fn}: axis {axis} is out of range for an array of shape "
                         f"{shape}")
    return axis % ndim


def _check_values(fn, name, x, low=None, high=None, what=""):
    """Where ``x``'s values are known (not traced), they must lie in [low, high] and not be NaN."""
    if isinstance(x, Tracer):
        return
    v = np.asarray(x)
    bad = np.isnan(v) if v.dtype.kind in "fc" else np.zeros(v.shape, bool)
    if low is not None:
        bad = bad | (v < low)
    if high is not None:
        bad = bad | (v > high)
    if bad.any():
        raise ValueError(f"fgrad.random.{fn}: {name} must be {what}, got "
                         f"{v[bad].ravel()[:5].tolist()}")


def _float_param(fn, name, x, dtype=None):
    """A float parameter as an array or tracer (of ``dtype`` if given)."""
    if not isinstance(x, Tracer):
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"fgrad.random.{fn}: {name} must be a real number or array, got "
                            f"{_describe(x)}")
    if dtype is not None:
        return fnp.astype(x, dtype)
    if dtype_of(x).kind != "f":
        raise TypeError(f"fgrad.random.{fn}: {name} must have a float dtype, got "
                        f"{_describe(x)}")
    return x


# --------------------------------------------------------------------------------------------
# Typed keys
# --------------------------------------------------------------------------------------------

class _KeyDataEntry(str):
    """The path entry of a typed key's one pytree child (``.key_data``). ``fgrad.api`` looks
    for it: ``grad`` names a key it is asked to differentiate, and ``vmap``'s negative axes
    count a typed key's own axes, not its data axis."""
    __slots__ = ()


KEY_DATA = _KeyDataEntry("key_data")


def is_key_data_path(path):
    """Whether a pytree path (optree's raw entries) ends in a typed key's data."""
    return bool(path) and path[-1] is KEY_DATA


class KeyDtype:
    """The dtype of typed keys, printed ``key<fry>`` (Threefry's tag) as in JAX."""
    __slots__ = ()
    name = "key<fry>"
    impl = "threefry2x32"

    def __repr__(self):
        return self.name

    __str__ = __repr__


KEY_DTYPE = KeyDtype()


class KeyArray:
    """An array of typed keys (what ``key(seed)`` and ``split`` of a typed key return).

    ``shape`` counts keys: a single key has shape ``()``, ``split(k, 8)`` shape ``(8,)``. The
    raw data, ``key_data(keys)``, is ``uint32`` of shape ``shape + (2,)`` (a NumPy array, or a
    tracer inside a transform). Keys index (``keys[0]``, ``keys[1:]``), iterate
    (``k1, k2 = split(k)``), ``len``, ``reshape``, ``ravel`` and compare (``==``) like arrays;
    arithmetic and ``np.asarray`` are errors. As a pytree node whose one child is the data
    (see the module docstring), keys go through ``vmap``, ``jit`` and ``lax.scan``::

        >>> keys = fgrad.random.split(fgrad.random.key(0), 8)
        >>> fgrad.vmap(lambda k: fgrad.random.normal(k, (3,)))(keys).shape
        (8, 3)
    """

    __slots__ = ("_data",)
    __array_ufunc__ = None   # NumPy operators defer to keys (and fail) instead of converting them
    dtype = KEY_DTYPE

    def __init__(self, data):
        # Not checked: pytree unflattening rebuilds keys around whatever a transform hands
        # back (tracers, ShapeDtypeStructs); wrap_key_data checks what users pass.
        self._data = data

    @property
    def shape(self):
        return tuple(self._data.shape[:-1])

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a single key (a typed key of shape ())")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a single key (a typed key of shape ()); split it "
                            "first: fgrad.random.split(key, n)")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, idx):
        if not self.shape:
            raise IndexError("a single key (a typed key of shape ()) cannot be indexed")
        idx = (idx if isinstance(idx, tuple) else (idx,)) + (slice(None),)   # keep the data axis
        data = self._data
        if not isinstance(data, Tracer) and any(isinstance(i, Tracer) for i in idx):
            return KeyArray(_traced_getitem(data, idx))   # a NumPy array cannot take a tracer
        return KeyArray(data[idx])

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return KeyArray(fnp.reshape(self._data, tuple(shape) + (2,)))

    def ravel(self):
        return self.reshape(-1)

    @property
    def T(self):
        perm = tuple(range(self.ndim))[::-1] + (self.ndim,)
        return KeyArray(fnp.transpose(self._data, perm))

    def __eq__(self, other):
        if not isinstance(other, KeyArray):
            return NotImplemented
        return fnp.all(fnp.equal(self._data, other._data), axis=-1)

    def __ne__(self, other):
        if not isinstance(other, KeyArray):
            return NotImplemented
        return fnp.logical_not(self == other)

    __hash__ = None

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"fgrad.random: a typed key array ({_describe(self)}) cannot be "
                        f"converted to a NumPy array; use fgrad.random.key_data(keys) for its "
                        f"uint32 data (shape {self.shape + (2,)})")

    def __repr__(self):
        if isinstance(self._data, np.ndarray):
            return f"Array({self.shape}, dtype=key<fry>) overlaying:\n{self._data}"
        return f"KeyArray({self.shape}, dtype=key<fry>) overlaying {self._data!r}"


def _traced_getitem(data, idx):
    from .numpy._funcs import getitem
    return getitem(data, idx)


# One child, the raw data: transforms batch, stage and carry it like any array.
optree.register_pytree_node(KeyArray, lambda k: ((k._data,), None, (KEY_DATA,)),
                            lambda _, children: KeyArray(children[0]),
                            path_entry_type=optree.GetAttrEntry, namespace=NAMESPACE)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

def _check_impl(fn, impl):
    if impl is not None and str(impl) not in ("threefry2x32", "key<fry>"):
        raise ValueError(f"fgrad.random.{fn}: impl must be None or 'threefry2x32' (fgrad's only "
                         f"bit generator), got {impl!r}")


def PRNGKey(seed, *, impl=None):
    """A raw key from an integer seed: ``uint32[2]``, the seed's 64 bits as ``(high, low)``.

    Seeds of 32-bit integer types give ``(0, seed mod 2^32)``; Python ints and 64-bit types give
    ``(seed >> 32, seed & 0xffffffff)`` of the two's complement value (as JAX with x64).
    ``seed`` may be traced: ``fgrad.vmap(fgrad.random.PRNGKey)(np.arange(4))`` makes four keys.

    >>> fgrad.random.PRNGKey(42)
    array([ 0, 42], dtype=uint32)
    """
    return _seed_words("PRNGKey", seed, impl)


def key(seed, *, impl=None):
    """A typed key from an integer seed (``jax.random.key``): shape ``()``, dtype ``key<fry>``,
    over the words :func:`PRNGKey` makes. ``seed`` may be traced (``vmap`` over seeds).

    >>> fgrad.random.key(42)
    Array((), dtype=key<fry>) overlaying:
    [ 0 42]
    """
    return KeyArray(_seed_words("key", seed, impl))


def _seed_words(fn, seed, impl):
    _check_impl(fn, impl)
    if isinstance(seed, Tracer):
        dt = dtype_of(seed)
        if dt.kind not in "iu" or shape_of(seed) != ():
            raise TypeError(f"fgrad.random.{fn}: seed must be an integer scalar, got "
                            f"{_describe(seed)}")
        low = fnp.astype(seed, _U32)
        if dt.itemsize == 8:
            high = fnp.astype(fnp.right_shift(seed, np.array(32, dt)), _U32)
        else:
            high = np.zeros((), _U32)
        return fnp.stack([high, low])
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, np.ndarray)):
        raise TypeError(f"fgrad.random.{fn}: seed must be an integer, got {_describe(seed)}")
    if isinstance(seed, np.ndarray):
        if seed.shape != () or seed.dtype.kind not in "iu":
            raise TypeError(f"fgrad.random.{fn}: seed must be an integer scalar, got "
                            f"{_describe(seed)}; for several keys use "
                            f"fgrad.vmap(fgrad.random.{fn})(seeds)")
        seed = seed[()]
    width = 64 if isinstance(seed, int) else 8 * seed.dtype.itemsize
    value = int(seed)
    if not -2 ** 63 <= value < 2 ** 64:
        raise OverflowError(f"fgrad.random.{fn}: seed {value} does not fit in 64 bits")
    value %= 2 ** 64 if width == 64 else 2 ** 32
    return np.array([value >> 32, value & 0xFFFFFFFF], dtype=_U32)


def key_data(keys):
    """The raw ``uint32`` data of keys: shape ``keys.shape + (2,)`` for typed keys; a raw key
    array is returned as it is (``jax.random.key_data``)."""
    if isinstance(keys, KeyArray):
        return keys._data
    if _is_raw_keys(keys):
        return keys
    raise TypeError(f"fgrad.random.key_data: expected typed keys (fgrad.random.key) or raw "
                    f"uint32 keys of shape (..., 2), got {_describe(keys)}")


def wrap_key_data(key_bits_array, *, impl=None):
    """Typed keys over raw ``uint32`` data of shape ``(..., 2)`` (``jax.random.wrap_key_data``):
    ``wrap_key_data(key_data(k))`` is ``k``, and ``wrap_key_data(PRNGKey(s))`` is ``key(s)``."""
    _check_impl("wrap_key_data", impl)
    data = key_bits_array
    if isinstance(data, KeyArray):
        raise TypeError("fgrad.random.wrap_key_data: the argument is already a typed key array")
    if not isinstance(data, Tracer):
        data = np.asarray(data)
    if not _is_raw_keys(data):
        raise TypeError(f"fgrad.random.wrap_key_data: expected uint32 data of shape (..., 2), "
                        f"got {_describe(data)}; convert with .astype(np.uint32) if the values "
                        f"are key words")
    return KeyArray(data)


def key_impl(keys):
    """The bit generator behind ``keys`` (typed or raw): always ``'threefry2x32'``."""
    key_data(keys)
    return "threefry2x32"


def clone(key):
    """``key`` itself (``jax.random.clone``, which exists for JAX's key-reuse checker)."""
    return key


def split(key, num=2):
    """``num`` new, independent keys from ``key`` (``num`` may be a shape).

    A typed key gives typed keys of shape ``num`` (``(num,)``); a raw key gives raw keys of
    shape ``(num, 2)``. Split a key instead of using it twice, and after splitting use only
    the children. Under the partitionable scheme (the default) child ``i`` is
    ``fold_in(key, i)``; under the original one the children are the words a 32-bit draw from
    the parent would start with (as in JAX).

    >>> k1, k2 = fgrad.random.split(fgrad.random.key(0))
    >>> keys = fgrad.random.split(k1, 8)                              # shape (8,)
    >>> fgrad.vmap(lambda k: fgrad.random.normal(k, (3,)))(keys)       # (8, 3)
    """
    raw = _check_key("split", key)
    out = _split_raw(raw, _check_shape("split", num))
    return KeyArray(out) if type(key) is KeyArray else out


def fold_in(key, data):
    """A new key from ``key`` and an integer ``data`` (a step number, a layer index, ...),
    of the same kind as ``key`` (typed or raw).

    ``fold_in(key, i)`` for ``i = 0, 1, ...`` gives distinct keys without splitting ahead of
    time. ``data`` is taken modulo 2^32 and may be traced (``vmap`` over it).
    """
    raw = _check_key("fold_in", key)
    if isinstance(data, Tracer):
        if dtype_of(data).kind not in "iu" or shape_of(data) != ():
            raise TypeError(f"fgrad.random.fold_in: data must be an integer scalar, got "
                            f"{_describe(data)}")
        data = fnp.astype(data, _U32)
    else:
        d = np.asarray(data)
        if d.shape != () or d.dtype.kind not in "iu" or isinstance(data, (bool, np.bool_)):
            raise TypeError(f"fgrad.random.fold_in: data must be an integer scalar, got "
                            f"{_describe(data)}")
        data = np.uint32(int(d) % 2 ** 32)
    out = bind(random_fold_in_p, raw, data)
    return KeyArray(out) if type(key) is KeyArray else out


def _split2(raw_key):
    keys = _split_raw(raw_key, (2,))
    return keys[0], keys[1]


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------

def bits(key, shape=(), dtype=np.uint32):
    """Uniformly random unsigned integers: every bit is an independent fair coin."""
    key = _check_key("bits", key)
    dt = np.dtype(dtype)
    if dt not in _UINT.values():
        raise TypeError(f"fgrad.random.bits: dtype must be uint8, uint16, uint32 or uint64, "
                        f"got {dt.name}")
    return _bits(key, _check_shape("bits", shape), 8 * dt.itemsize)


def _unit_floats(key_, shape, dtype):
    """Uniform floats on [0, 1) with every value a multiple of 2^-nmant.

    The top ``nmant`` (52 or 23) of ``bits`` random bits are the mantissa ``m`` of ``1.m`` in
    [1, 2); subtracting 1 leaves ``m * 2^-nmant``, which is computed here exactly as an integer
    times a power of two.
    """
    finfo = np.finfo(dtype)
    nbits = 8 * dtype.itemsize
    raw = _bits(key_, shape, nbits)
    mantissa = fnp.right_shift(raw, np.array(nbits - finfo.nmant, _UINT[nbits]))
    return fnp.astype(mantissa, dtype) * np.array(2.0 ** -finfo.nmant, dtype)


def uniform(key, shape=(), dtype=np.float64, minval=0.0, maxval=1.0):
    """Uniform samples on ``[minval, maxval)``: ``max(minval, minval + u (maxval - minval))``
    with ``u`` uniform on [0, 1) in steps of 2^-52 (float64) or 2^-23 (float32).

    ``minval`` and ``maxval`` broadcast to ``shape`` and may be traced; the derivative is
    ``d/dmaxval = u``, ``d/dminval = 1 - u`` (reparameterisation).
    """
    key = _check_key("uniform", key)
    shape = _check_shape("uniform", shape)
    dtype = _float_dtype("uniform", dtype)
    minval = _float_param("uniform", "minval", minval, dtype)
    maxval = _float_param("uniform", "maxval", maxval, dtype)
    _check_broadcast("uniform", shape, minval=shape_of(minval), maxval=shape_of(maxval))
    u = _unit_floats(key, shape, dtype)
    return fnp.maximum(minval, u * (maxval - minval) + minval)


def normal(key, shape=(), dtype=np.float64):
    """Standard normal samples by inversion: ``sqrt(2) erfinv(v)`` with ``v`` uniform on (-1, 1).

    If ``V ~ U(-1, 1)`` then ``P(sqrt(2) erfinv(V) <= z) = (1 + erf(z / sqrt 2)) / 2 = Phi(z)``.
    The inverse error function is Cephes' float64 ``ndtri`` (relative error < 1e-15). For
    ``N(mu, sigma^2)`` write ``mu + sigma * normal(key, shape)``: it is differentiable in ``mu``
    and ``sigma``.
    """
    key = _check_key("normal", key)
    shape = _check_shape("normal", shape)
    dtype = _float_dtype("normal", dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    v = uniform(key, shape, dtype, lo, 1.0)
    return np.array(math.sqrt(2), dtype) * _erfinv(v)


def truncated_normal(key, lower, upper, shape=None, dtype=np.float64):
    """Standard normal samples conditioned on ``lower < z < upper``, by inverting the CDF.

    With ``a = erf(lower / sqrt 2)`` and ``b = erf(upper / sqrt 2)``, ``z = sqrt(2) erfinv(v)``
    for ``v`` uniform on ``[a, b)`` has density ``phi(z) / (Phi(upper) - Phi(lower))`` on the
    interval; rounding is clipped back into the open interval. ``lower`` and ``upper`` may be
    traced (the pathwise derivative of the inverse CDF); ``shape=None`` means their broadcast
    shape. Far in one tail (both bounds beyond about 5) float64's resolution of ``erf`` near 1
    limits the accuracy, as in JAX.
    """
    key = _check_key("truncated_normal", key)
    dtype = _float_dtype("truncated_normal", dtype)
    lower = _float_param("truncated_normal", "lower", lower, dtype)
    upper = _float_param("truncated_normal", "upper", upper, dtype)
    if not isinstance(lower, Tracer) and not isinstance(upper, Tracer) and np.any(
            np.asarray(lower) > np.asarray(upper)):
        raise ValueError(f"fgrad.random.truncated_normal: lower must not exceed upper, got "
                         f"lower={lower!r} and upper={upper!r}")
    if shape is None:
        shape = np.broadcast_shapes(shape_of(lower), shape_of(upper))
    else:
        shape = _check_shape("truncated_normal", shape)
        _check_broadcast("truncated_normal", shape, lower=shape_of(lower),
                         upper=shape_of(upper))
    sqrt2 = np.array(math.sqrt(2), dtype)
    a = fnp.erf(lower / sqrt2)
    b = fnp.erf(upper / sqrt2)
    z = sqrt2 * _erfinv(uniform(key, shape, dtype, a, b))
    return fnp.clip(z, bind(nextafter_p, lower, np.array(np.inf, dtype)),
                    bind(nextafter_p, upper, np.array(-np.inf, dtype)))


def bernoulli(key, p=0.5, shape=None):
    """Booleans that are True with probability ``p``: ``uniform(key, shape) < p``.

    ``p`` is a float (array) whose dtype sets the uniform's dtype; ``shape=None`` means
    ``p``'s shape. A known ``p`` outside [0, 1] (or NaN) is an error, as in torch; a traced
    one is not checked.
    """
    key = _check_key("bernoulli", key)
    p = _float_param("bernoulli", "p", p)
    _check_values("bernoulli", "p", p, 0.0, 1.0, "a probability in [0, 1]")
    if shape is None:
        shape = shape_of(p)
    else:
        shape = _check_shape("bernoulli", shape)
        _check_broadcast("bernoulli", shape, p=shape_of(p))
    return uniform(key, shape, dtype_of(p)) < p


def gumbel(key, shape=(), dtype=np.float64):
    """Standard Gumbel samples: ``-log(-log u)`` for ``u`` uniform on ``[tiny, 1)``.

    If ``U ~ U(0, 1)`` then ``P(-log(-log U) <= g) = exp(-exp(-g))``, the Gumbel CDF.
    """
    key = _check_key("gumbel", key)
    shape = _check_shape("gumbel", shape)
    dtype = _float_dtype("gumbel", dtype)
    u = uniform(key, shape, dtype, np.finfo(dtype).tiny, 1.0)
    return -fnp.log(-fnp.log(u))


def categorical(key, logits, axis=-1, shape=None):
    """Category indices drawn with probabilities ``softmax(logits)`` along ``axis``.

    The Gumbel-max trick: ``argmax_k (logits_k + g_k)`` with independent standard Gumbel
    ``g_k`` is ``k`` with probability ``exp(logits_k) / sum_j exp(logits_j)``. The result has
    ``shape`` (default: the logits' shape without ``axis``); a longer ``shape`` draws several
    samples per distribution, its trailing axes matching the batch axes of ``logits``.
    """
    key = _check_key("categorical", key)
    logits = _float_param("categorical", "logits", logits)
    ndim = len(shape_of(logits))
    if ndim == 0:
        raise ValueError("fgrad.random.categorical: logits must have at least one axis (the "
                         "categories)")
    if not -ndim <= axis < ndim:
        raise ValueError(f"fgrad.random.categorical: axis {axis} is out of range for logits of "
                         f"shape {shape_of(logits)}")
    axis = axis - ndim if axis >= 0 else axis
    batch_shape = shape_of(logits)[:axis % ndim] + shape_of(logits)[axis % ndim + 1:]
    if shape is None:
        shape = batch_shape
    else:
        shape = _check_shape("categorical", shape)
        _check_broadcast("categorical", shape, logits_without_axis=batch_shape)
    prefix = shape[:len(shape) - len(batch_shape)]
    noise_shape = list(shape[len(shape) - len(batch_shape):])
    noise_shape.insert(axis % ndim, shape_of(logits)[axis])
    g = gumbel(key, prefix + tuple(noise_shape), dtype_of(logits))
    logits = fnp.reshape(logits, (1,) * len(prefix) + shape_of(logits))
    return fnp.argmax(g + logits, axis=axis)


def _clip_to_dtype(x, dtype):
    """Integer ``x`` clipped into ``dtype``'s range and converted (JAX's convert-and-clip)."""
    src, dst = np.iinfo(dtype_of(x)), np.iinfo(dtype)
    lo, hi = max(src.min, dst.min), min(src.max, dst.max)
    if lo > src.min or hi < src.max:
        x = fnp.clip(x, np.array(lo, dtype_of(x)), np.array(hi, dtype_of(x)))
    return fnp.astype(x, dtype)


def _int_param(fn, name, x):
    if not isinstance(x, Tracer):
        x = np.asarray(x)
    if dtype_of(x).kind == "f":
        x = fnp.astype(x, np.int64)
    if dtype_of(x).kind not in "iu":
        raise TypeError(f"fgrad.random.{fn}: {name} must be an integer, got {_describe(x)}")
    return x


def randint(key, shape, minval, maxval, dtype=np.int64):
    """Integers uniform on ``[minval, maxval)`` (``minval`` where ``maxval <= minval``).

    Two blocks of ``nbits`` random bits ``hi, lo`` form the ``2 nbits``-bit number
    ``hi 2^nbits + lo``, reduced modulo the span ``s = maxval - minval`` with
    ``(hi 2^nbits + lo) mod s = ((hi mod s) (2^nbits mod s) + lo mod s) mod s``; the double
    width keeps the modulo bias below ``s / 2^nbits``. ``maxval`` one past the dtype's maximum
    (``randint(k, (), 0, 256, uint8)``) covers the whole range. ``minval`` and ``maxval``
    broadcast to ``shape`` and may be traced (``vmap`` over them); bounds outside the dtype's
    range are clipped into it and float bounds are truncated to integers, as in JAX. 8- and
    16-bit integers are drawn as int32 and converted (JAX's rule: less modulo bias).
    """
    key = _check_key("randint", key)
    shape = _check_shape("randint", shape)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"fgrad.random.randint: dtype must be an integer type, got {dtype.name}")
    minval = _int_param("randint", "minval", minval)
    maxval = _int_param("randint", "maxval", maxval)
    _check_broadcast("randint", shape, minval=shape_of(minval), maxval=shape_of(maxval))
    if dtype.itemsize < 4:
        info, i32 = np.iinfo(dtype), np.dtype(np.int32)
        minval = fnp.clip(fnp.astype(minval, i32), np.array(info.min, i32), np.array(info.max, i32))
        maxval = fnp.clip(fnp.astype(maxval, i32), np.array(info.min, i32),
                          np.array(info.max + 1, i32))
        return fnp.astype(_randint(key, shape, minval, maxval, i32), dtype)
    return _randint(key, shape, minval, maxval, dtype)


def _randint(key, shape, minval, maxval, dtype):
    """randint's draw for a 32- or 64-bit ``dtype`` (bounds already integer arrays)."""
    nbits = 8 * dtype.itemsize
    udtype = _UINT[nbits]
    one = np.array(1, udtype)
    top = np.iinfo(dtype).max
    if np.iinfo(dtype_of(maxval)).max > top:
        maxval_out_of_range = maxval > np.array(top, dtype_of(maxval))
    else:
        maxval_out_of_range = np.False_
    minval, maxval = _clip_to_dtype(minval, dtype), _clip_to_dtype(maxval, dtype)
    k_high, k_low = _split2(key)
    high, low = _bits(k_high, shape, nbits), _bits(k_low, shape, nbits)

    def rem(x, s):   # x mod s, with x mod 0 = x (a span of 2^nbits wraps to 0)
        return fnp.where(s == 0, x, fnp.remainder(x, fnp.where(s == 0, one, s)))

    with np.errstate(over="ignore"):   # unsigned arithmetic wraps modulo 2^nbits, on purpose
        span = fnp.astype(maxval - minval, udtype)
        span = fnp.where(maxval <= minval, one, span)
        span = fnp.where(fnp.logical_and(maxval_out_of_range, maxval > minval), span + one, span)
        multiplier = rem(np.array(2 ** (nbits // 2), udtype), span)   # 2^nbits mod s, via
        multiplier = rem(multiplier * multiplier, span)                 # (2^(nbits/2) mod s)^2
        offset = rem(rem(high, span) * multiplier + rem(low, span), span)
        return minval + fnp.astype(offset, dtype)


def _shuffle_order(key_, shape, axis):
    """Indices that shuffle every 1-D slice of an array of ``shape`` along ``axis``.

    Each round sorts by fresh 32-bit random keys; ``ceil(3 log n / log(2^32 - 1))`` rounds make
    a repeated sort key (which would favour the original order) improbable (JAX's rule).
    """
    size = math.prod(shape)
    rounds = math.ceil(3 * math.log(max(1, size)) / math.log(2 ** 32 - 1))
    positions = np.arange(shape[axis]).reshape((-1,) + (1,) * (len(shape) - axis - 1))
    order = np.broadcast_to(positions, shape)
    for _ in range(rounds):
        key_, subkey = _split2(key_)
        sort_keys = _bits(subkey, shape, 32)
        order = fnp.take_along_axis(order, fnp.argsort(sort_keys, axis=axis), axis)
    return order


def permutation(key, x, axis=0, independent=False):
    """A random permutation of ``range(x)`` (an int ``x``) or of ``x`` along ``axis``.

    Every ordering is equally likely. With ``independent=True`` each 1-D slice along ``axis``
    is shuffled on its own; otherwise whole slices move together. Differentiable in ``x`` (the
    derivative follows each element to its new place).
    """
    key = _check_key("permutation", key)
    if not isinstance(x, Tracer):
        x = np.asarray(x)
    if shape_of(x) == ():
        if isinstance(x, Tracer) or x.dtype.kind not in "iu":
            raise TypeError(f"fgrad.random.permutation: x must be an int n (permute range(n)) "
                            f"or an array with at least one axis, got {_describe(x)}")
        if int(x) < 0:
            raise ValueError(f"fgrad.random.permutation: n must be non-negative (a permutation "
                             f"of range(n)), got {int(x)}")
        return _shuffle_order(key, (int(x),), 0)
    ndim = len(shape_of(x))
    axis = _check_axis("permutation", axis, ndim, shape_of(x))
    if independent or ndim == 1:
        return fnp.take_along_axis(x, _shuffle_order(key, shape_of(x), axis), axis)
    return fnp.take(x, _shuffle_order(key, (shape_of(x)[axis],), 0), axis=axis)


def choice(key, a, shape=(), replace=True, p=None, axis=0):
    """Random draws from ``range(a)`` (an int) or from the slices of ``a`` along ``axis``.

    ``replace=False`` draws distinct entries (``prod(shape)`` of them at most the population).
    With probabilities ``p``: with replacement, by inverting the cumulative distribution;
    without, by the Gumbel top-k trick (the ``k`` largest ``log p_i + g_i`` are a sample
    without replacement). The result has shape ``shape`` for an int ``a``, else ``a``'s shape
    with ``axis`` replaced by ``shape``.
    """
    key = _check_key("choice", key)
    shape = _check_shape("choice", shape)
    if not isinstance(a, Tracer):
        a = np.asarray(a)
    if shape_of(a) == ():
        if isinstance(a, Tracer) or a.dtype.kind not in "iu":
            raise TypeError(f"fgrad.random.choice: a must be an int n (draw from range(n)) or "
                            f"an array with at least one axis, got {_describe(a)}")
        population, arr = int(a), None
        if population < 0:
            raise ValueError(f"fgrad.random.choice: a must be a non-negative int n (draw from "
                             f"range(n)), got {population}")
    else:
        ndim = len(shape_of(a))
        axis = _check_axis("choice", axis, ndim, shape_of(a))
        population, arr = shape_of(a)[axis], a
    n_draws = math.prod(shape)
    out_shape = shape if arr is None else shape_of(a)[:axis] + shape + shape_of(a)[axis + 1:]
    if n_draws == 0:
        return np.zeros(out_shape, np.int64 if arr is None else dtype_of(arr))
    if population <= 0:
        raise ValueError("fgrad.random.choice: cannot draw from an empty population")
    if not replace and n_draws > population:
        raise ValueError(f"fgrad.random.choice: cannot draw {n_draws} distinct items from a "
                         f"population of {population}; pass replace=True or a smaller shape")
    if p is None and not replace:
        picked = permutation(key, population if arr is None else arr, axis)
        picked = picked[(slice(None),) * (0 if arr is None else axis) + (slice(n_draws),)]
        return fnp.reshape(picked, out_shape)
    if p is None:
        index = randint(key, shape, 0, population)
    else:
        p = _float_param("choice", "p", p)
        if shape_of(p) != (population,):
            raise ValueError(f"fgrad.random.choice: p must have shape ({population},), one "
                             f"probability per item, got {shape_of(p)}")
        _check_values("choice", "p", p, 0.0, None, "non-negative (weights, normalised by their "
                      "sum)")
        if replace:   # searchsorted(cumsum(p), r) = #{i : cumsum(p)_i < r}, r uniform on (0, sum p]
            cdf = fnp.cumsum(p)
            r = cdf[-1] * (1 - uniform(key, shape, dtype_of(p)))
            index = fnp.sum(cdf < fnp.expand_dims(r, -1), axis=-1)
        else:
            g = gumbel(key, (population,), dtype_of(p)) + fnp.log(p)
            index = fnp.reshape(fnp.argsort(-g)[:n_draws], shape)
    return index if arr is None else fnp.take(arr, index, axis=axis)
