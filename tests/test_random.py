"""Tests of fgrad.random: bits, keys, every sampler's distribution, transforms and errors.

* Known answers: the Threefry-2x32 test vectors of the Random123 reference implementation; the
  values JAX's own test-suite pins for its original scheme (``jax_threefry_partitionable``
  off, x64 on) and its partitionable-scheme properties (``split(k, n)[i] == fold_in(k, i)``);
  and a table of draws pinned from JAX 0.10.2 under both schemes (integers, booleans, keys
  and permutations exactly, floats to within 64 eps of max(|x|, 1): XLA's ``erf_inv`` and
  fused multiply-adds round differently from NumPy).
* Keys: typed keys (``key``) and raw keys (``PRNGKey``) give the same numbers everywhere; typed
  keys index, iterate, compare, and go through ``vmap``, ``jit``, ``lax.scan``, ``grad`` (as a
  non-differentiated argument), pytrees and ``fnn.io``; the scheme is selected with
  ``fgrad.config`` / ``fgrad.threefry_partitionable`` and ``jit`` retraces when it changes.
* Statistics: each sampler is checked against its distribution with Kolmogorov-Smirnov,
  chi-square, mean and variance bounds set about 5-6 standard errors out, so a correct sampler
  passes with overwhelming probability (a false alarm about once in 10^6 seeds); the seeds are
  fixed, so the suite is deterministic. ``test_statistical_checks_have_power`` shows the same
  checks reject slightly wrong distributions.
* Transforms: ``vmap`` over a batch of keys equals a Python loop over the same keys; ``grad``
  flows through reparameterised samples; ``make_jaxpr`` stages the key-consuming primitives.
"""
from __future__ import annotations

import itertools
import math
import re
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import fgrad.random as fr
import fnn
from fgrad.testing import check_grads

EXAMPLES = settings.default.max_examples
# JAX's two key constructors (its tests' KEY_CTORS): every function accepts both kinds
KEY_CTORS = [fr.key, fr.PRNGKey]


@pytest.fixture
def original_scheme():
    """Run a test under ``jax_threefry_partitionable=False`` (JAX's scheme before 0.5)."""
    with fgrad.threefry_partitionable(False):
        yield


def raw(k):
    """The uint32 data of a typed or raw key (array)."""
    return np.asarray(fr.key_data(k))
# --------------------------------------------------------------------------------------------
# Statistical checks
# --------------------------------------------------------------------------------------------

# sqrt(n) * KS distance exceeds 2.7 with probability 2 exp(-2 * 2.7^2) ~ 1e-6 (Kolmogorov).
KS_LIMIT = 2.7
# Chi-square tests fail below this p-value.
CHI2_ALPHA = 1e-6


def ks_scaled_distance(samples, cdf):
    """sqrt(n) sup_x |F_n(x) - F(x)| for the empirical CDF F_n of ``samples``."""
    x = np.sort(np.asarray(samples, np.float64).ravel())
    n = x.size
    f = cdf(x)
    i = np.arange(1, n + 1)
    return math.sqrt(n) * max(np.max(i / n - f), np.max(f - (i - 1) / n))


def assert_ks(samples, cdf):
    d = ks_scaled_distance(samples, cdf)
    assert d < KS_LIMIT, f"Kolmogorov-Smirnov: sqrt(n) D = {d:.3f} >= {KS_LIMIT}"


def chi2_pvalue(counts, probs):
    counts = np.asarray(counts, np.float64).ravel()
    expected = np.asarray(probs, np.float64).ravel() * counts.sum()
    stat = np.sum((counts - expected) ** 2 / expected)
    dof = counts.size - 1
    return float(1 - torch.special.gammainc(torch.tensor(dof / 2), torch.tensor(stat / 2)))


def assert_chi2(counts, probs):
    p = chi2_pvalue(counts, probs)
    assert p > CHI2_ALPHA, f"chi-square p-value {p:.3g} <= {CHI2_ALPHA}: counts {counts}"


def assert_mean(samples, mean, std, sigmas=6):
    samples = np.asarray(samples, np.float64)
    err = abs(samples.mean() - mean)
    bound = sigmas * std / math.sqrt(samples.size)
    assert err < bound, f"sample mean {samples.mean():.5f} vs {mean:.5f} (bound {bound:.2g})"


def normal_cdf(x):
    return torch.special.ndtr(torch.as_tensor(x, dtype=torch.float64)).numpy()


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------

# Random123's kat_vectors for threefry2x32_20: (key, counter) -> output.
THREEFRY_KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6b200159, 0x99ba4efe)),
    ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
    ((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3), (0xc4923a9c, 0x483df7a0)),
]


@pytest.mark.parametrize("key_words, counter, expected", THREEFRY_KAT)
def test_threefry_known_answers(key_words, counter, expected):
    out = fr.threefry_2x32(np.array(key_words, np.uint32), np.array(counter, np.uint32))
    assert out.dtype == np.uint32
    assert tuple(int(v) for v in out) == expected


def test_threefry_is_vectorised_over_counters():
    # the same counter pair repeated n times hashes to the same pair n times (JAX's large test)
    n = 10_000
    counts = np.concatenate([np.full(n, 0x243f6a88, np.uint32), np.full(n, 0x85a308d3, np.uint32)])
    out = fr.threefry_2x32(np.array([0x13198a2e, 0x03707344], np.uint32), counts)
    np.testing.assert_array_equal(out[:n], 0xc4923a9c)
    np.testing.assert_array_equal(out[n:], 0x483df7a0)

# jax tests/random_test.py, test_prng_seeds_and_keys (with jax_enable_x64)
SEEDS = [
    (0, [0, 0]), (np.int32(1), [0, 1]), (np.uint32(2), [0, 2]), (np.int64(3), [0, 3]),
    (-1, [4294967295, 4294967295]), (np.int32(-2), [0, 4294967294]),
    (np.int64(-3), [4294967295, 4294967293]), (2 ** 31 - 1 + 100, [0, 2147483747]),
    (np.uint32(2 ** 31 - 1 + 101), [0, 2147483748]),
    (-2 ** 31 - 100, [4294967295, 2147483548]),
    (np.int64(-2 ** 31 - 101), [4294967295, 2147483547]),
    (np.array(7), [0, 7]),
]


@pytest.mark.parametrize("seed, expected", SEEDS, ids=lambda v: repr(v))
def test_key_from_seed(seed, expected):
    k = fr.key(seed)
    assert isinstance(k, fr.KeyArray) and k.shape == () and str(k.dtype) == "key<fry>"
    assert fr.key_data(k).dtype == np.uint32 and fr.key_data(k).tolist() == expected
    raw_key = fr.PRNGKey(seed)
    assert isinstance(raw_key, np.ndarray) and raw_key.dtype == np.uint32
    assert raw_key.shape == (2,) and raw_key.tolist() == expected


# The values below are JAX's own test-suite pins (jax tests/random_test.py, x64), all for the
# original scheme; JAX runs them with both key constructors, and so does this file.

@pytest.mark.parametrize("make_key", KEY_CTORS)
def test_bits_known_values(original_scheme, make_key):
    # jax testRngRandomBits
    k = make_key(1701)
    assert fr.bits(k, (3,), np.uint8).tolist() == [216, 115, 43]
    assert fr.bits(k, (3,), np.uint16).tolist() == [41682, 1300, 55017]
    assert fr.bits(k, (3,), np.uint32).tolist() == [56197195, 4200222568, 961309823]
    assert fr.bits(k, (3,), np.uint64).tolist() == [3982329540505020460, 16822122385914693683,
                                                     7882654074788531506]


def test_bits_view_property(original_scheme):
    # 8-, 16- and 32-bit draws are views of the same 32-bit words
    # (jax testRngRandomBitsViewProperty)
    k = fr.key(1701)
    words = [fr.bits(k, (640 // n,), np.dtype(f"uint{n}")).astype(f"<u{n // 8}").view("<u4")
             for n in (8, 16, 32)]
    np.testing.assert_array_equal(words[0], words[2])
    np.testing.assert_array_equal(words[1], words[2])


@pytest.mark.parametrize("make_key", KEY_CTORS)
def test_split_and_fold_in_known_values(original_scheme, make_key):
    # jax testPRNGValues
    k = make_key(0)
    np.testing.assert_array_equal(
        raw(fr.split(k, 4)), [[2285895361, 1501764800], [1518642379, 4090693311],
                              [433833334, 4221794875], [839183663, 3740430601]])
    np.testing.assert_array_equal(raw(fr.fold_in(k, 4)), [2285895361, 433833334])
    np.testing.assert_array_equal(fr.randint(k, (3, 3), 0, 8), [[7, 2, 6], [2, 1, 0], [6, 7, 7]])
    np.testing.assert_array_equal(fr.randint(k, (3, 3), 0, 8, np.int32),
                                  [[2, 1, 3], [6, 1, 5], [6, 3, 4]])


def _jax_case_seed(name):
    return zlib.adler32((name + "threefry2x32").encode())


# jax _RANDOM_VALUES_CASES for threefry2x32 (values printed to 6 digits by JAX's tests)
JAX_VALUES = [
    ("uniform", lambda k: fr.uniform(k, (5,), np.float32),
     [0.298671, 0.073213, 0.873356, 0.260549, 0.412797]),
    ("normal", lambda k: fr.normal(k, (5,), np.float32),
     [-1.173234, -1.511662, 0.070593, -0.099764, 1.052845]),
    ("truncated_normal", lambda k: fr.truncated_normal(k, 0, 2, (5,), np.float32),
     [0.582807, 1.709771, 0.159513, 0.861376, 0.36148]),
    ("gumbel", lambda k: fr.gumbel(k, (5,), np.float32),
     [2.06701, 0.911726, 0.145736, 0.185427, -0.00711]),
    ("randint", lambda k: fr.randint(k, (5,), 0, 10, np.int32), [0, 5, 7, 7, 5]),
    ("bernoulli", lambda k: fr.bernoulli(k, np.float32(0.5), (5,)),
     [False, True, True, True, False]),
    ("bits", lambda k: fr.bits(k, (5,), np.uint8), [10, 158, 82, 54, 158]),
    ("bits", lambda k: fr.bits(k, (5,), np.uint16), [6738, 38161, 50695, 57337, 61600]),
    ("bits", lambda k: fr.bits(k, (5,), np.uint32),
     [1978747883, 4134381225, 3628107870, 689687174, 2788938207]),
    ("bits", lambda k: fr.bits(k, (5,), np.uint64),
     [17649965731882839947, 1415307058040849897, 8282622628079774249, 14024425113645909402,
      2012979996110532418]),
]


@pytest.mark.parametrize("make_key", KEY_CTORS)
@pytest.mark.parametrize("name, draw, expected", JAX_VALUES, ids=[c[0] for c in JAX_VALUES])
def test_matches_jax_published_values(original_scheme, name, draw, expected, make_key):
    out = draw(make_key(_jax_case_seed(name)))
    if out.dtype.kind == "f":
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6)
    else:
        assert out.tolist() == expected


@pytest.mark.parametrize("make_key", KEY_CTORS)
def test_partitionable_split_is_fold_in(make_key):
    # jax test_threefry_split_fold_in_symmetry and test_threefry_split_vmapped_fold_in_symmetry
    # (run by JAX under jax_threefry_partitionable=True, fgrad's default)
    key = make_key(72)
    folded = [raw(fr.fold_in(key, i)) for i in range(3)]
    np.testing.assert_array_equal(raw(fr.split(key, 3)), folded)
    vmapped = fgrad.vmap(lambda i: fr.fold_in(key, i))(np.arange(3))
    np.testing.assert_array_equal(raw(vmapped), folded)
    # and not under the original scheme
    with fgrad.threefry_partitionable(False):
        assert not np.array_equal(raw(fr.split(key, 3)), folded)


def test_partitionable_values_depend_on_the_index_only():
    # value i of any draw is the hash of i: the shape does not matter, and a longer draw
    # extends a shorter one (under the original scheme neither holds)
    k = fr.key(31)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        long = fr.bits(k, (12,), dtype)
        np.testing.assert_array_equal(fr.bits(k, (3, 4), dtype).ravel(), long)
        np.testing.assert_array_equal(fr.bits(k, (5,), dtype), long[:5])
    np.testing.assert_array_equal(raw(fr.split(k, (2, 3))).reshape(6, 2), raw(fr.split(k, 6)))
    np.testing.assert_array_equal(fr.normal(k, (7,))[:4], fr.normal(k, (4,)))
    with fgrad.threefry_partitionable(False):
        assert not np.array_equal(fr.bits(k, (5,)), fr.bits(k, (12,))[:5])


# --------------------------------------------------------------------------------------------
# Draws pinned from JAX 0.10.2 under both schemes
# --------------------------------------------------------------------------------------------

# Produced with jax 0.10.2 and jaxlib 0.10.2 (CPU) in a separate environment, by running each
# row's expression with ``jax.random`` in place of ``fr`` (``jax.random.key`` for ``fr.key``,
# ``jax.random.key_data`` for ``fr.key_data``), after ``jax.config.update("jax_enable_x64",
# True)`` and ``jax.config.update("jax_threefry_partitionable", P)`` for P = True and False;
# integer results as ``.tolist()``, floats to 9 (float32) or 17 (float64) digits.
JAX_0_10_2 = [
    ("split", lambda: fr.key_data(fr.split(fr.key(0), 4)),
     {True: [[1797259609, 2579123966], [928981903, 3453687069], [4146024105, 2718843009],
             [2467461003, 3840466878]],
      False: [[2285895361, 1501764800], [1518642379, 4090693311], [433833334, 4221794875],
              [839183663, 3740430601]]}),
    ("split_shape", lambda: fr.key_data(fr.split(fr.key(5), (2, 3))),
     {True: [[[2724472204, 3573582090], [202567368, 3886822060], [3594430910, 1784718894]],
             [[2939540675, 3076691462], [898128576, 3750995185], [972824557, 2491659272]]],
      False: [[[272393893, 4285639839], [2225935900, 3620263243], [2191768906, 1655023024]],
              [[343137780, 4006842700], [2448652379, 1428318854], [421711747, 3855915829]]]}),
    ("fold_in", lambda: fr.key_data(fr.fold_in(fr.key(0), 4)),
     {True: [2285895361, 433833334],
      False: [2285895361, 433833334]}),
    ("bits_u8", lambda: fr.bits(fr.key(1701), (3,), np.uint8),
     {True: [37, 59, 52],
      False: [216, 115, 43]}),
    ("bits_u16", lambda: fr.bits(fr.key(1701), (3,), np.uint16),
     {True: [42789, 29755, 60468],
      False: [41682, 1300, 55017]}),
    ("bits_u32", lambda: fr.bits(fr.key(1701), (3,), np.uint32),
     {True: [1111271205, 2679469115, 974515252],
      False: [56197195, 4200222568, 961309823]}),
    ("bits_u64", lambda: fr.bits(fr.key(1701), (3,), np.uint64),
     {True: [3182764935064573181, 366096495144982249, 241365115613244543],
      False: [3982329540505020460, 16822122385914693683, 7882654074788531506]}),
    ("bits_u32_2d", lambda: fr.bits(fr.key(7), (2, 3), np.uint32),
     {True: [[2895194379, 4185947648, 1300703658], [1906787632, 3139134342, 2709822315]],
      False: [[276534068, 861967409, 1905761346], [1641862660, 2900896126, 1402713516]]}),
    ("bits_scalar", lambda: fr.bits(fr.key(9), (), np.uint32),
     {True: 175140440,
      False: 2822284597}),
    ("uniform_f32", lambda: fr.uniform(fr.key(_jax_case_seed("uniform")), (5,), np.float32),
     {True: [0.681547046, 0.857084751, 0.111414194, 0.0577225685, 0.43833673],
      False: [0.298671484, 0.073212862, 0.873355746, 0.26054883, 0.412796617]}),
    ("uniform_f64", lambda: fr.uniform(fr.key(_jax_case_seed("uniform")), (5,), np.float64),
     {True: [0.4438427858694014, 0.49270510059912453, 0.6575306399507435, 0.29867156880454826,
            0.10213837363160172],
      False: [0.8982165447173631, 0.5996753990234571, 0.4872823001237607, 0.3106636587168108,
             0.028638186635933316]}),
    ("normal_f32", lambda: fr.normal(fr.key(_jax_case_seed("normal")), (5,), np.float32),
     {True: [0.605359852, -0.786002994, -1.2520535, -0.20597291, 0.120614462],
      False: [-1.17323351, -1.51166213, 0.0705929548, -0.0997638404, 1.052845]}),
    ("normal_f64", lambda: fr.normal(fr.key(_jax_case_seed("normal")), (5,), np.float64),
     {True: [0.9202600093821554, 0.3334982998867167, -1.349368665706641, -1.1732335456014613,
            -0.6225102737803069],
      False: [0.9615622597434192, -1.3820543104417786, -0.3674047682929665, 0.2460091216185943,
             -0.5701989641261027]}),
    ("truncated_normal",
     lambda: fr.truncated_normal(fr.key(_jax_case_seed("truncated_normal")), 0, 2, (5,),
                                 np.float32),
     {True: [0.0543910637, 0.684636712, 0.906890094, 1.27419353, 0.500320435],
      False: [0.582806528, 1.70977116, 0.159512937, 0.861376286, 0.361480445]}),
    ("gumbel", lambda: fr.gumbel(fr.key(_jax_case_seed("gumbel")), (5,), np.float32),
     {True: [2.96181893, -1.10298216, 0.531106889, 0.530016482, 2.06046724],
      False: [2.06700993, 0.911726058, 0.145735621, 0.185426667, -0.0071104099]}),
    ("randint", lambda: fr.randint(fr.key(_jax_case_seed("randint")), (5,), 0, 10, np.int32),
     {True: [4, 1, 3, 8, 4],
      False: [0, 5, 7, 7, 5]}),
    ("randint_i64", lambda: fr.randint(fr.key(0), (3, 3), 0, 8, np.int64),
     {True: [[7, 7, 7], [5, 5, 7], [2, 0, 0]],
      False: [[7, 2, 6], [2, 1, 0], [6, 7, 7]]}),
    ("randint_u8", lambda: fr.randint(fr.key(16), (8,), 0, 200, np.uint8),
     {True: [168, 157, 150, 92, 179, 116, 44, 128],
      False: [189, 62, 66, 57, 190, 16, 146, 61]}),
    ("bernoulli", lambda: fr.bernoulli(fr.key(_jax_case_seed("bernoulli")), np.float32(0.5), (5,)),
     {True: [True, False, False, False, True],
      False: [False, True, True, True, False]}),
    ("categorical",
     lambda: fr.categorical(fr.key(19), np.log(np.array([0.1, 0.2, 0.3, 0.4])), shape=(10,)),
     {True: [1, 2, 1, 3, 3, 3, 3, 3, 2, 3],
      False: [1, 3, 3, 3, 2, 2, 3, 1, 0, 3]}),
    ("permutation", lambda: fr.permutation(fr.key(21), 10),
     {True: [3, 7, 9, 1, 2, 8, 4, 6, 0, 5],
      False: [5, 4, 8, 6, 2, 7, 1, 0, 3, 9]}),
    ("permutation_rows", lambda: fr.permutation(fr.key(23), np.arange(20.0).reshape(5, 4))[:, 0],
     {True: [4.0, 16.0, 0.0, 8.0, 12.0],
      False: [4.0, 8.0, 0.0, 16.0, 12.0]}),
    ("choice", lambda: fr.choice(fr.key(25), 7, (8,)),
     {True: [2, 2, 1, 3, 4, 5, 5, 4],
      False: [2, 1, 2, 5, 3, 1, 2, 0]}),
    ("choice_distinct", lambda: fr.choice(fr.key(26), 50, (6,), replace=False),
     {True: [33, 9, 44, 12, 40, 11],
      False: [28, 4, 49, 26, 44, 40]}),
    ("choice_p", lambda: fr.choice(fr.key(27), 4, (8,), p=np.array([0.1, 0.2, 0.3, 0.4])),
     {True: [3, 2, 3, 2, 2, 2, 3, 3],
      False: [2, 3, 2, 2, 2, 2, 3, 3]}),
]

JAX_0_10_2_MANY = [
    ("bits_u8_many", lambda: fr.bits(fr.key(7), (4, 251), np.uint8),
     {True: ("crc32", 689914367),
      False: ("crc32", 154591131)}),
    ("bits_u64_many", lambda: fr.bits(fr.key(7), (1001,), np.uint64),
     {True: ("crc32", 3056247296),
      False: ("crc32", 78546198)}),
    ("randint_many", lambda: fr.randint(fr.key(15), (1000,), -50, 1000, np.int64),
     {True: ("crc32", 3310971613),
      False: ("crc32", 4060934973)}),
    ("randint_i8_many", lambda: fr.randint(fr.key(17), (1000,), -100, 27, np.int8),
     {True: ("crc32", 453311627),
      False: ("crc32", 3792111853)}),
    ("bernoulli_many", lambda: fr.bernoulli(fr.key(18), 0.3, (1000,)),
     {True: ("crc32", 2542484124),
      False: ("crc32", 3061838794)}),
    ("categorical_many",
     lambda: fr.categorical(fr.key(20), np.log(np.array([[0.5, 0.1], [0.2, 0.6], [0.3, 0.3]])),
                            axis=0, shape=(500, 2)),
     {True: ("crc32", 319758564),
      False: ("crc32", 1722895954)}),
    ("permutation_many", lambda: fr.permutation(fr.key(22), 3000),
     {True: ("crc32", 1409582964),
      False: ("crc32", 2080291304)}),
    ("permutation_independent",
     lambda: fr.permutation(fr.key(24), np.arange(600).reshape(4, 150), 1, True),
     {True: ("crc32", 2150248829),
      False: ("crc32", 1933073938)}),
    ("choice_p_distinct",
     lambda: fr.choice(fr.key(28), 60, (20,), replace=False, p=np.arange(1.0, 61.0) / 1830),
     {True: ("crc32", 379479760),
      False: ("crc32", 3305752586)}),
    ("normal_many_f64", lambda: fr.normal(fr.key(12), (2000,), np.float64),
     {True: ("sum", -15.563931207061943, [0, 1, 1000, 1999], [-0.5135871426200344,
             0.37033165366914533, -0.3511360359561665, 0.1711427832513312]),
      False: ("sum", 66.38136705612047, [0, 1, 1000, 1999], [-0.7711493242413902,
              0.22355455918627662, -0.13117196103178078, 0.5974474119002459])}),
    ("normal_many_f32", lambda: fr.normal(fr.key(12), (2000,), np.float32),
     {True: ("sum", 2.372023602249101, [0, 1, 1000, 1999], [0.255400628, 0.083095789, 0.308134139,
             1.17408884]),
      False: ("sum", 107.06962361867772, [0, 1, 1000, 1999], [-0.351135999, 0.632690907,
              0.701152086,
              -0.269054055])}),
    ("uniform_many", lambda: fr.uniform(fr.key(11), (3, 400), np.float64, -2.0, 5.0),
     {True: ("sum", 1881.761906789006, [0, 1, 600, 1199], [1.1672744480716972, 4.434485864255583,
             3.1717525590711135, -1.0983388105978256]),
      False: ("sum", 1624.4854993291233, [0, 1, 600, 1199], [4.770249410674953, 1.0574000029752288,
              2.2718574253337733, -0.33354716156381126])}),
    ("truncated_normal_many",
     lambda: fr.truncated_normal(fr.key(13), -1.0, 2.5, (1000,), np.float64),
     {True: ("sum", 253.23188617822964, [0, 1, 500, 999], [1.0040557926998481, 0.3437978585897207,
             0.8147343377274744, -0.45506611882300957]),
      False: ("sum", 240.10382510505184, [0, 1, 500, 999], [-0.19633032055414035,
              -0.4092611000525195, -0.6138581366130478, 0.16361193559841614])}),
    ("gumbel_many", lambda: fr.gumbel(fr.key(14), (1000,), np.float32),
     {True: ("sum", 557.9543422280112, [0, 1, 500, 999], [-0.664133012, 1.7296977, 1.63831782,
             0.480519593]),
      False: ("sum", 596.8364095903817, [0, 1, 500, 999], [-0.126287982, -0.488944888, 0.373311996,
              1.20130062])}),
]


def assert_close_to_jax(out, expected):
    """Floats agree with JAX's to within 64 eps of max(|x|, 1) (measured: at most 46 eps in
    float32 normal tails and 15 eps in float64, from XLA's erf_inv, log and fused
    multiply-adds; fgrad's erfinv is the more accurate, 4 ulp against mpmath in float64)."""
    out, expected = np.asarray(out), np.asarray(expected, np.float64)
    assert out.shape == expected.shape
    bound = 64 * np.finfo(out.dtype).eps * np.maximum(np.abs(expected), 1)
    excess = np.abs(out - expected) - bound
    assert np.all(excess <= 0), f"off JAX's values by up to {np.max(excess + bound):.3g}"


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("name, draw, expected", JAX_0_10_2, ids=[c[0] for c in JAX_0_10_2])
def test_matches_jax_0_10_2(name, draw, expected, partitionable):
    with fgrad.threefry_partitionable(partitionable):
        out = np.asarray(draw())
    want = expected[partitionable]
    if out.dtype.kind == "f":
        assert_close_to_jax(out, want)
    else:
        assert out.tolist() == want


def crc32(x):
    x = np.ascontiguousarray(x)
    return zlib.crc32(x.astype(x.dtype.newbyteorder("<")).tobytes())


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("name, draw, expected", JAX_0_10_2_MANY,
                         ids=[c[0] for c in JAX_0_10_2_MANY])
def test_many_values_match_jax_0_10_2(name, draw, expected, partitionable):
    # integers: every value (a CRC-32 of JAX's little-endian bytes); floats: four entries and
    # the float64 sum of all of them
    with fgrad.threefry_partitionable(partitionable):
        out = np.asarray(draw())
    kind, *want = expected[partitionable]
    if kind == "crc32":
        assert crc32(out) == want[0]
        return
    total, index, values = want
    assert_close_to_jax(out.ravel()[index], values)
    bound = 64 * np.finfo(out.dtype).eps * np.maximum(np.abs(out), 1).astype(np.float64).sum()
    assert abs(out.astype(np.float64).sum() - total) <= bound


# Large draws run the hash in place, 2^17 blocks per pass (fgrad.random._CHUNK); pinned from
# JAX 0.10.2 as above (CRC-32 of the little-endian bytes).
LARGE_DRAWS = [
    (lambda: fr.bits(fr.key(3), (300_001,), np.uint32), {True: 3657596824, False: 4224578815}),
    (lambda: fr.bits(fr.key(3), (2, 150_000), np.uint64), {True: 2815799231, False: 4288020670}),
    (lambda: fr.key_data(fr.split(fr.key(4), 140_000)), {True: 941839211, False: 3840060840}),
]


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("case", range(len(LARGE_DRAWS)))
def test_large_draws_match_jax_0_10_2(case, partitionable):
    draw, expected = LARGE_DRAWS[case]
    with fgrad.threefry_partitionable(partitionable):
        assert crc32(draw()) == expected[partitionable]


def test_large_batched_draws_equal_a_loop():
    # a batch of keys over more blocks than one in-place pass holds
    keys = fr.split(fr.key(9), 3)
    for partitionable in (True, False):
        with fgrad.threefry_partitionable(partitionable):
            batched = fgrad.vmap(lambda k: fr.bits(k, (100_003,)))(keys)
            np.testing.assert_array_equal(batched, [fr.bits(k, (100_003,)) for k in keys])


def test_randint_small_dtypes_are_drawn_as_int32():
    # JAX's rule (jax.random.randint): 8- and 16-bit integers are int32 draws, converted
    k = fr.key(16)
    for dtype, (lo, hi) in [(np.uint8, (0, 200)), (np.int8, (-100, 27)), (np.int16, (-5, 9))]:
        np.testing.assert_array_equal(fr.randint(k, (50,), lo, hi, dtype),
                                      fr.randint(k, (50,), lo, hi, np.int32).astype(dtype))
    # bounds are clipped to the small type's range first (maxval one past its maximum)
    np.testing.assert_array_equal(fr.randint(k, (50,), -7, 300, np.uint8),
                                  fr.randint(k, (50,), 0, 256, np.int32).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Keys: determinism, splitting, folding
# --------------------------------------------------------------------------------------------

def test_same_key_same_numbers_and_different_keys_differ():
    k1, k2 = fr.split(fr.key(3))
    np.testing.assert_array_equal(fr.normal(k1, (100,)), fr.normal(k1, (100,)))
    assert not np.any(fr.normal(k1, (100,)) == fr.normal(k2, (100,)))
    assert not np.any(fr.normal(fr.key(0), (100,)) == fr.normal(fr.key(1), (100,)))


@pytest.mark.parametrize("partitionable", [True, False])
def test_split_shapes_and_distinct_children(partitionable):
    with fgrad.threefry_partitionable(partitionable):
        k = fr.key(11)
        assert fr.split(k).shape == (2,) and fr.split(fr.PRNGKey(11)).shape == (2, 2)
        assert fr.split(k, (2, 3)).shape == (2, 3)
        assert fr.split(fr.PRNGKey(11), (2, 3)).shape == (2, 3, 2)
        np.testing.assert_array_equal(raw(fr.split(k, (2, 3))).reshape(6, 2), raw(fr.split(k, 6)))
        children = raw(fr.split(k, 1000))
        # (partitionable: fold_in(k, i) is child i, so fold in indices past the children)
        folded = np.stack([raw(fr.fold_in(k, i)) for i in range(1000, 2000)])
        everything = np.concatenate([children, folded, raw(k)[None]])
    assert len({tuple(row) for row in everything.tolist()}) == everything.shape[0]


def test_split_children_streams_are_uncorrelated():
    n = 20_000
    keys = fr.split(fr.key(5), 4)
    draws = np.stack([fr.normal(k, (n,)) for k in keys])
    corr = np.corrcoef(draws)
    off_diagonal = corr[~np.eye(4, dtype=bool)]
    assert np.max(np.abs(off_diagonal)) < 6 / math.sqrt(n)
    # and each child is still standard normal
    for row in draws:
        assert_ks(row, normal_cdf)


def test_fold_in_streams_are_uncorrelated_and_data_wraps_modulo_2_32():
    k = fr.key(9)
    n = 20_000
    a, b = fr.uniform(fr.fold_in(k, 1), (n,)), fr.uniform(fr.fold_in(k, 2), (n,))
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(n)
    np.testing.assert_array_equal(raw(fr.fold_in(k, 2 ** 32 + 5)), raw(fr.fold_in(k, 5)))
    np.testing.assert_array_equal(raw(fr.fold_in(k, np.int32(-1))), raw(fr.fold_in(k, 2 ** 32 - 1)))


def test_split_children_are_the_parents_first_words(original_scheme):
    # JAX's original layout, and the reason a key that was split must not also draw
    k = fr.key(21)
    np.testing.assert_array_equal(raw(fr.split(k, 3)).ravel(), fr.bits(k, (6,)))


# --------------------------------------------------------------------------------------------
# Typed keys
# --------------------------------------------------------------------------------------------

def test_typed_key_shapes_indexing_and_iteration():
    k = fr.key(0)
    assert k.shape == () and k.ndim == 0 and k.size == 1
    keys = fr.split(k, 8)
    assert keys.shape == (8,) and keys.ndim == 1 and len(keys) == 8
    data = raw(keys)
    np.testing.assert_array_equal(data, fr.split(fr.PRNGKey(0), 8))
    assert keys[0].shape == () and raw(keys[0]).tolist() == data[0].tolist()
    np.testing.assert_array_equal(raw(keys[-1]), data[-1])
    np.testing.assert_array_equal(raw(keys[2:5]), data[2:5])
    np.testing.assert_array_equal(raw(keys[np.array([1, 3])]), data[[1, 3]])
    mask = np.arange(8) % 3 == 0
    np.testing.assert_array_equal(raw(keys[mask]), data[mask])
    assert [raw(c).tolist() for c in keys] == data.tolist()
    k1, k2 = fr.split(k)
    assert k1.shape == k2.shape == ()
    grid = fr.split(k, (2, 3))
    assert grid.shape == (2, 3) and grid[1].shape == (3,) and grid[:, 0].shape == (2,)
    np.testing.assert_array_equal(raw(grid[1, 2]), raw(grid)[1, 2])
    np.testing.assert_array_equal(raw(grid[..., 1]), raw(grid)[:, 1])
    np.testing.assert_array_equal(raw(grid[None]), raw(grid)[None])
    assert grid.reshape(6).shape == (6,) and grid.reshape(3, 2).shape == (3, 2)
    assert grid.reshape((3, -1)).shape == (3, 2) and grid.ravel().shape == (6,)
    np.testing.assert_array_equal(raw(grid.ravel()), raw(fr.split(k, 6)))
    np.testing.assert_array_equal(raw(grid.T), raw(grid).transpose(1, 0, 2))
    same = keys == fr.split(k, 8)
    assert same.dtype == bool and same.shape == (8,) and same.all()
    assert bool(k == fr.key(0)) and not bool(k == fr.key(1)) and bool(k != fr.key(1))
    np.testing.assert_array_equal(keys != keys[0], np.arange(8) != 0)


def test_typed_key_repr_and_dtype():
    assert repr(fr.key(0)) == "Array((), dtype=key<fry>) overlaying:\n[0 0]"   # JAX's text
    assert str(fr.key(0).dtype) == "key<fry>" == fr.key(0).dtype.name
    assert repr(fr.split(fr.key(0), 2)).startswith("Array((2,), dtype=key<fry>) overlaying:\n[[")


def test_key_data_wrap_key_data_and_key_impl():
    k = fr.key(5)
    assert raw(fr.wrap_key_data(fr.key_data(k))).tolist() == raw(k).tolist() == [0, 5]
    wrapped = fr.wrap_key_data(fr.PRNGKey(5))
    assert isinstance(wrapped, fr.KeyArray) and bool(wrapped == k)
    assert fr.wrap_key_data(np.zeros((4, 3, 2), np.uint32)).shape == (4, 3)
    p = fr.PRNGKey(5)
    assert fr.key_data(p) is p
    assert fr.key_impl(k) == fr.key_impl(p) == "threefry2x32"
    assert fr.clone(k) is k
    assert raw(fr.key(5, impl="threefry2x32")).tolist() == [0, 5]


def test_typed_key_errors():
    k = fr.key(0)
    with pytest.raises(TypeError, match=r"cannot be converted to a NumPy array; use "
                                        r"fgrad.random.key_data\(keys\)"):
        np.asarray(k)
    with pytest.raises(TypeError, match=r"len\(\) of a single key"):
        len(k)
    with pytest.raises(TypeError, match=r"iteration over a single key .* split it"):
        iter(k)
    with pytest.raises(IndexError, match=r"a single key .* cannot be indexed"):
        k[0]
    with pytest.raises(TypeError):
        k + 1
    with pytest.raises(TypeError):
        np.ones(2) + k
    with pytest.raises(TypeError):
        hash(k)
    with pytest.raises(TypeError, match=r"fgrad.random.normal: expects a single key, got a typed "
                                        r"key array of shape \(3,\); map over it with fgrad.vmap"):
        fr.normal(fr.split(k, 3))
    with pytest.raises(TypeError, match=r"key_data: expected typed keys .* got float64\[2\]"):
        fr.key_data(np.zeros(2))
    with pytest.raises(TypeError, match=r"wrap_key_data: expected uint32 data of shape "
                                        r"\(\.\.\., 2\), got int64\[2\]; convert"):
        fr.wrap_key_data(np.array([0, 1]))
    with pytest.raises(TypeError, match=r"already a typed key"):
        fr.wrap_key_data(k)
    with pytest.raises(ValueError, match=r"key: impl must be None or 'threefry2x32'"):
        fr.key(0, impl="rbg")


# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_distribution(dtype):
    u = fr.uniform(fr.key(100), (100_000,), dtype)
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    nmant = np.finfo(dtype).nmant
    scaled = u.astype(np.float64) * 2.0 ** nmant   # every value is a multiple of 2^-nmant
    np.testing.assert_array_equal(scaled, np.round(scaled))
    assert_ks(u, lambda x: x)
    assert_mean(u, 0.5, math.sqrt(1 / 12))
    assert_mean((u - 0.5) ** 2, 1 / 12, math.sqrt(1 / 80 - 1 / 144))


def test_uniform_minval_maxval_broadcast():
    lo, hi = np.array([-3.0, 0.0, 10.0]), np.array([-2.0, 5.0, 10.5])
    u = fr.uniform(fr.key(101), (50_000, 3), minval=lo, maxval=hi)
    assert np.all(u >= lo) and np.all(u < hi)
    for j in range(3):
        assert_ks(u[:, j], lambda x, j=j: (x - lo[j]) / (hi[j] - lo[j]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_distribution(dtype):
    z = fr.normal(fr.key(102), (100_000,), dtype)
    assert z.dtype == dtype and np.all(np.isfinite(z))
    assert_ks(z, normal_cdf)
    assert_mean(z, 0.0, 1.0)
    assert_mean(z ** 2, 1.0, math.sqrt(2.0))
    # the tails: P(|Z| > 3) = 2 (1 - Phi(3))
    p3 = 2 * (1 - normal_cdf(3.0))
    assert_mean(np.abs(z) > 3, p3, math.sqrt(p3 * (1 - p3)))


@pytest.mark.parametrize("lower, upper", [(-1.0, 2.0), (0.0, 2.0), (2.0, np.inf),
                                          (-np.inf, -1.5), (-0.1, 0.1), (-np.inf, np.inf)])
def test_truncated_normal_distribution(lower, upper):
    z = fr.truncated_normal(fr.key(103), lower, upper, (50_000,))
    assert np.all(z > lower) and np.all(z < upper)
    phi_lo, phi_hi = normal_cdf(lower), normal_cdf(upper)
    assert_ks(z, lambda x: (normal_cdf(x) - phi_lo) / (phi_hi - phi_lo))


def test_truncated_normal_float32_stays_inside_and_broadcasts():
    lower = np.array([-2.0, 0.0, 1.0], np.float32)
    z = fr.truncated_normal(fr.key(104), lower, np.float32(3.0), (10_000, 3), np.float32)
    assert z.dtype == np.float32 and z.shape == (10_000, 3)
    assert np.all(z > lower) and np.all(z < 3.0)
    assert fr.truncated_normal(fr.key(0), lower, 3.0, dtype=np.float32).shape == (3,)


def test_bernoulli_distribution():
    p = np.array([0.05, 0.5, 0.9])
    b = fr.bernoulli(fr.key(105), p, (40_000, 3))
    assert b.dtype == bool
    for j in range(3):
        assert_mean(b[:, j], p[j], math.sqrt(p[j] * (1 - p[j])))
    assert fr.bernoulli(fr.key(0), p).shape == (3,)
    assert not fr.bernoulli(fr.key(0), 0.0, (1000,)).any()
    assert fr.bernoulli(fr.key(0), 1.0, (1000,)).all()


def test_gumbel_distribution():
    g = fr.gumbel(fr.key(106), (100_000,))
    assert np.all(np.isfinite(g))
    assert_ks(g, lambda x: np.exp(-np.exp(-x)))
    assert_mean(g, np.euler_gamma, math.pi / math.sqrt(6))


def test_categorical_distribution_along_any_axis():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]))
    n = 20_000
    draws = fr.categorical(fr.key(107), logits, shape=(n, 2))
    assert draws.shape == (n, 2) and draws.dtype == np.int64
    for row in range(2):
        assert_chi2(np.bincount(draws[:, row], minlength=4), np.exp(logits[row]))
    # the same distributions laid out along axis 0
    draws_t = fr.categorical(fr.key(108), logits.T, axis=0, shape=(n, 2))
    for row in range(2):
        assert_chi2(np.bincount(draws_t[:, row], minlength=4), np.exp(logits[row]))
    # unnormalised logits and large values are fine (softmax is shift-invariant)
    shifted = fr.categorical(fr.key(109), np.log([1.0, 3.0]) + 1000.0, shape=(n,))
    assert_chi2(np.bincount(shifted, minlength=2), [0.25, 0.75])
    assert fr.categorical(fr.key(0), logits).shape == (2,)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.uint64])
def test_randint_range_and_uniformity(dtype):
    lo, hi = (3, 15) if np.dtype(dtype).kind == "u" else (-5, 7)
    r = fr.randint(fr.key(110), (60_000,), lo, hi, dtype)
    assert r.dtype == dtype and r.min() >= lo and r.max() < hi
    assert_chi2(np.bincount(r.astype(np.int64) - lo, minlength=hi - lo), np.full(hi - lo, 1 / 12))


def test_randint_full_dtype_range_and_empty_span():
    full = fr.randint(fr.key(111), (50_000,), 0, 256, np.uint8)
    assert_chi2(np.bincount(full, minlength=256), np.full(256, 1 / 256))
    signed = fr.randint(fr.key(112), (50_000,), -128, 128, np.int8)
    assert_chi2(np.bincount(signed.astype(np.int64) + 128, minlength=256), np.full(256, 1 / 256))
    np.testing.assert_array_equal(fr.randint(fr.key(0), (10,), 5, 5), 5)
    np.testing.assert_array_equal(fr.randint(fr.key(0), (10,), 5, 2), 5)
    per_column = fr.randint(fr.key(113), (1000, 3), np.array([0, 10, -5]), np.array([1, 12, 0]))
    assert np.all(per_column >= [0, 10, -5]) and np.all(per_column < [1, 12, 0])


def test_permutation_is_uniform_over_orderings():
    # 6000 permutations of 4 items via vmap over keys: each of the 24 orderings ~ 250 times
    perms = fgrad.vmap(lambda k: fr.permutation(k, 4))(fr.split(fr.key(114), 6000))
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(p)] for p in perms.tolist()], minlength=24)
    assert_chi2(counts, np.full(24, 1 / 24))


def test_permutation_of_arrays():
    k = fr.key(115)
    p = fr.permutation(k, 1000)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(1000))
    x = np.arange(12.0).reshape(4, 3)
    rows = fr.permutation(k, x)                       # whole rows move together
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, x.tolist()))
    cols = fr.permutation(k, x, axis=1)
    assert sorted(map(tuple, cols.T.tolist())) == sorted(map(tuple, x.T.tolist()))
    indep = fr.permutation(k, np.tile(np.arange(50.0), (3, 1)), axis=1, independent=True)
    for row in indep:
        assert sorted(row.tolist()) == list(range(50))
    assert len({tuple(row) for row in indep.tolist()}) == 3   # each row its own shuffle


def test_choice():
    k = fr.key(116)
    n = 30_000
    with_replacement = fr.choice(k, 5, (n,))
    assert_chi2(np.bincount(with_replacement, minlength=5), np.full(5, 0.2))
    p = np.array([0.1, 0.2, 0.3, 0.4])
    weighted = fr.choice(k, 4, (n,), p=p)
    assert_chi2(np.bincount(weighted, minlength=4), p)
    distinct = fr.choice(k, 10, (10,), replace=False)
    assert sorted(distinct.tolist()) == list(range(10))
    # without replacement, weighted: the first draw has distribution p, the rest are distinct
    firsts = fgrad.vmap(lambda kk: fr.choice(kk, 4, (3,), replace=False, p=p))(fr.split(k, 8000))
    assert all(len(set(row)) == 3 for row in firsts.tolist())
    assert_chi2(np.bincount(firsts[:, 0], minlength=4), p)
    a = np.arange(20.0).reshape(10, 2)
    picked = fr.choice(k, a, (2, 3), replace=False)
    assert picked.shape == (2, 3, 2)
    assert len({tuple(r) for r in picked.reshape(6, 2).tolist()}) == 6
    assert fr.choice(k, a, (4,), axis=1).shape == (10, 4)
    assert fr.choice(k, 3, (0,)).shape == (0,)


def test_statistical_checks_have_power():
    """The checks above reject distributions that are only slightly wrong."""
    z = fr.normal(fr.key(102), (100_000,))
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(1.05 * z, normal_cdf)
    with pytest.raises(AssertionError, match="sample mean"):
        assert_mean(z + 0.03, 0.0, 1.0)
    u = fr.uniform(fr.key(100), (100_000,))
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(u ** 1.03, lambda x: x)
    r = fr.randint(fr.key(110), (60_000,), 0, 12)
    skewed = np.where((r == 11) & (np.arange(r.size) % 4 == 0), 10, r)  # a quarter of 11s -> 10
    with pytest.raises(AssertionError, match="chi-square"):
        assert_chi2(np.bincount(skewed, minlength=12), np.full(12, 1 / 12))


# --------------------------------------------------------------------------------------------
# Shapes and dtypes
# --------------------------------------------------------------------------------------------

SHAPE_CASES = [
    (lambda k, s, d: fr.uniform(k, s, d), "float"),
    (lambda k, s, d: fr.normal(k, s, d), "float"),
    (lambda k, s, d: fr.gumbel(k, s, d), "float"),
    (lambda k, s, d: fr.truncated_normal(k, -1.0, 1.0, s, d), "float"),
    (lambda k, s, d: fr.bernoulli(k, np.asarray(0.5, d), s), bool),
    (lambda k, s, d: fr.randint(k, s, 0, 5), np.int64),
    (lambda k, s, d: fr.bits(k, s), np.uint32),
    (lambda k, s, d: fr.choice(k, 7, s), np.int64),
]


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)))
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_and_dtypes(case, shape, dtype):
    draw, out_dtype = SHAPE_CASES[case]
    out = draw(fr.key(1), shape, dtype)
    assert isinstance(out, (np.ndarray, np.generic)) and out.shape == shape
    assert out.dtype == (dtype if out_dtype == "float" else out_dtype)



def test_int_shape_is_accepted():
    assert fr.normal(fr.key(0), 4).shape == (4,)
    assert fr.split(fr.key(0), np.int64(3)).shape == (3,)
    assert fr.split(fr.PRNGKey(0), np.int64(3)).shape == (3, 2)


# --------------------------------------------------------------------------------------------
# vmap: a batch of keys gives the same draws as a loop over the keys
# --------------------------------------------------------------------------------------------

VMAP_CASES = {
    "uniform": lambda k: fr.uniform(k, (4,), minval=-2.0, maxval=3.0),
    "normal": lambda k: fr.normal(k, (2, 3)),
    "normal_f32": lambda k: fr.normal(k, (5,), np.float32),
    "truncated_normal": lambda k: fr.truncated_normal(k, -1.0, 2.0, (5,)),
    "bernoulli": lambda k: fr.bernoulli(k, 0.3, (6,)),
    "gumbel": lambda k: fr.gumbel(k, (3,)),
    "categorical": lambda k: fr.categorical(k, np.log([0.2, 0.3, 0.5]), shape=(4,)),
    "randint": lambda k: fr.randint(k, (5,), -3, 9),
    "randint_uint8_full": lambda k: fr.randint(k, (5,), 0, 256, np.uint8),
    "permutation": lambda k: fr.permutation(k, 10),
    "permutation_rows": lambda k: fr.permutation(k, np.arange(12.0).reshape(4, 3)),
    "permutation_independent": lambda k: fr.permutation(k, np.arange(12.0).reshape(4, 3), 1, True),
    "choice": lambda k: fr.choice(k, 10, (3,)),
    "choice_no_replace": lambda k: fr.choice(k, np.arange(20.0).reshape(10, 2), (4,), False),
    "choice_p": lambda k: fr.choice(k, 4, (6,), p=np.array([0.1, 0.2, 0.3, 0.4])),
    "split": lambda k: fr.split(k, 3),
    "fold_in": lambda k: fr.fold_in(k, 7),
    "bits_u16": lambda k: fr.bits(k, (3,), np.uint16),
    "bits_u64": lambda k: fr.bits(k, (3,), np.uint64),
}


def as_array(x):
    """A draw as a NumPy array (a typed key's data)."""
    return raw(x) if isinstance(x, fr.KeyArray) else np.asarray(x)


@pytest.mark.parametrize("make_key", KEY_CTORS)
@pytest.mark.parametrize("name", VMAP_CASES)
def test_vmap_over_keys_equals_loop(name, make_key):
    draw = VMAP_CASES[name]
    keys = fr.split(make_key(200), 6)
    batched = fgrad.vmap(draw)(keys)
    looped = [draw(k) for k in keys]
    assert type(batched) is type(looped[0])
    batched, looped = as_array(batched), np.stack([as_array(x) for x in looped])
    assert batched.dtype == looped.dtype
    np.testing.assert_array_equal(batched, looped)
    # rows differ: the draws are independent per key
    assert len({row.tobytes() for row in batched}) > 1 or name == "categorical"


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("name", VMAP_CASES)
def test_typed_and_raw_keys_give_the_same_numbers(name, partitionable):
    draw = VMAP_CASES[name]
    with fgrad.threefry_partitionable(partitionable):
        typed, plain = draw(fr.key(42)), draw(fr.PRNGKey(42))
    assert isinstance(plain, np.ndarray)
    assert isinstance(typed, fr.KeyArray) == (name in ("split", "fold_in"))
    np.testing.assert_array_equal(as_array(typed), plain)


def test_vmap_docstring_example_and_nested_vmap():
    key = fr.key(0)
    x = fgrad.vmap(lambda k: fr.normal(k, (3,)))(fr.split(key, 8))
    assert x.shape == (8, 3)
    for keys in (fr.split(key, 12).reshape(4, 3), fr.split(fr.PRNGKey(0), 12).reshape(4, 3, 2)):
        nested = fgrad.vmap(fgrad.vmap(lambda k: fr.uniform(k, (2,))))(keys)
        np.testing.assert_array_equal(nested, [[fr.uniform(k, (2,)) for k in row] for row in keys])
    # raw keys mapped along axis 1
    swapped = fgrad.vmap(lambda k: fr.normal(k, ()), in_axes=1)(fr.split(fr.PRNGKey(0), 5).T)
    np.testing.assert_array_equal(swapped, [fr.normal(k, ()) for k in fr.split(key, 5)])


def test_vmap_axes_of_typed_keys_count_key_axes():
    # a typed key of shape (3, 5) has data (3, 5, 2): in_axes/out_axes (negative ones too)
    # name the key's axes, as in JAX
    grid = fr.split(fr.key(1), (3, 5))
    draw = fgrad.vmap(fgrad.vmap(fr.normal))
    by_column = draw(grid).T
    for axis in (1, -1):
        np.testing.assert_array_equal(fgrad.vmap(fgrad.vmap(fr.normal), in_axes=axis)(grid),
                                      by_column)
    np.testing.assert_array_equal(fgrad.vmap(fgrad.vmap(fr.normal), in_axes=-2)(grid), draw(grid))
    for axis in (1, -1):
        out = fgrad.vmap(lambda k: fr.split(k, 4), out_axes=axis)(fr.split(fr.key(1), 3))
        assert isinstance(out, fr.KeyArray) and out.shape == (4, 3)
        np.testing.assert_array_equal(raw(out), np.stack([raw(fr.split(k, 4))
                                                          for k in fr.split(fr.key(1), 3)], 1))
    with pytest.raises(ValueError, match=r"in_axes=-3 is out of range"):
        fgrad.vmap(fr.normal, in_axes=-2)(fr.split(fr.key(1), 3))


def test_vmap_over_seeds_fold_in_data_and_parameters():
    key = fr.key(7)
    seeds = np.arange(-2, 3)
    typed = fgrad.vmap(fr.key)(seeds)
    assert isinstance(typed, fr.KeyArray) and typed.shape == (5,)
    np.testing.assert_array_equal(raw(typed), [raw(fr.key(int(s))) for s in seeds])
    np.testing.assert_array_equal(fgrad.vmap(fr.PRNGKey)(seeds), raw(typed))
    seeds32 = np.arange(-2, 3, dtype=np.int32)
    np.testing.assert_array_equal(fgrad.vmap(fr.PRNGKey)(seeds32), [fr.PRNGKey(s) for s in seeds32])
    np.testing.assert_array_equal(raw(fgrad.vmap(lambda i: fr.fold_in(key, i))(np.arange(5))),
                                  [raw(fr.fold_in(key, i)) for i in range(5)])
    # a key per example and a step number shared by all
    keys = fr.split(key, 3)
    shared_step = fgrad.vmap(lambda k, i: fr.fold_in(k, i), in_axes=(0, None))(keys, 4)
    np.testing.assert_array_equal(raw(shared_step), [raw(fr.fold_in(k, 4)) for k in keys])
    # one key, batched parameters: every row sees the same uniform draws
    lows = np.arange(4.0)
    out = fgrad.vmap(lambda lo: fr.uniform(key, (3,), minval=lo, maxval=lo + 2))(lows)
    np.testing.assert_array_equal(out, [fr.uniform(key, (3,), minval=lo, maxval=lo + 2)
                                        for lo in lows])
    out = fgrad.vmap(lambda k, lo: fr.truncated_normal(k, lo, lo + 0.5, (3,)))(fr.split(key, 4),
                                                                              lows)
    np.testing.assert_array_equal(out, [fr.truncated_normal(k, lo, lo + 0.5, (3,))
                                        for k, lo in zip(fr.split(key, 4), lows)])
    assert np.all(out > lows[:, None]) and np.all(out < lows[:, None] + 0.5)
    his = np.array([3, 10, 100])
    out = fgrad.vmap(lambda hi: fr.randint(key, (4,), 0, hi))(his)
    np.testing.assert_array_equal(out, [fr.randint(key, (4,), 0, int(h)) for h in his])
    logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]]))
    out = fgrad.vmap(lambda k, lg: fr.categorical(k, lg, shape=(5,)))(fr.split(key, 3), logits)
    np.testing.assert_array_equal(out, [fr.categorical(k, lg, shape=(5,))
                                        for k, lg in zip(fr.split(key, 3), logits)])
# --------------------------------------------------------------------------------------------
# Derivatives through samples (reparameterisation)
# --------------------------------------------------------------------------------------------

def test_grad_through_reparameterised_normal():
    key = fr.key(300)
    eps = fr.normal(key, (1000,))

    def loss(mu, sigma):
        return fnp.mean((mu + sigma * fr.normal(key, (1000,))) ** 2)

    g_mu, g_sigma = fgrad.grad(loss, argnums=(0, 1))(0.5, 2.0)
    x = 0.5 + 2.0 * eps
    np.testing.assert_allclose(g_mu, np.mean(2 * x), rtol=1e-12)
    np.testing.assert_allclose(g_sigma, np.mean(2 * x * eps), rtol=1e-12)
    check_grads(loss, (0.5, 2.0), order=2)


def test_grad_through_uniform_bounds():
    key = fr.key(301)
    u = fr.uniform(key, (50,))
    g_lo, g_hi = fgrad.grad(lambda lo, hi: fnp.sum(fr.uniform(key, (50,), minval=lo, maxval=hi)),
                            argnums=(0, 1))(-1.0, 3.0)
    np.testing.assert_allclose(g_lo, np.sum(1 - u), rtol=1e-12)   # d/dminval = 1 - u
    np.testing.assert_allclose(g_hi, np.sum(u), rtol=1e-12)       # d/dmaxval = u
    check_grads(lambda lo, hi: fr.uniform(key, (3,), minval=lo, maxval=hi) ** 2,
                (np.array(-1.0), np.array([2.0, 3.0, 4.0])), order=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_through_truncated_normal_bounds(dtype):
    key = fr.key(302)
    lower, upper = np.array([-0.5, 0.2], dtype), np.array([1.5, 2.5], dtype)
    check_grads(lambda lo, hi: fr.truncated_normal(key, lo, hi, (4, 2), dtype), (lower, upper),
                order=2)


def test_grad_of_categorical_expectation_via_gumbel_softmax():
    key = fr.key(303)

    def relaxed(logits):   # the Gumbel-softmax relaxation of a categorical sample
        y = (logits + fr.gumbel(key, (8, 3))) / 0.5
        return fnp.exp(y - fnp.logsumexp(y, axis=-1, keepdims=True)) @ np.array([1.0, 2.0, 3.0])

    check_grads(relaxed, (np.log(np.array([0.2, 0.3, 0.5])),), order=2)


def test_vmap_of_grad_with_per_example_keys():
    keys = fr.split(fr.key(304), 5)

    def sample_loss(sigma, k):
        return fnp.sum((sigma * fr.normal(k, (4,))) ** 2)

    batched = fgrad.vmap(fgrad.grad(sample_loss), in_axes=(None, 0))(1.5, keys)
    looped = [fgrad.grad(sample_loss)(1.5, k) for k in keys]
    np.testing.assert_allclose(batched, looped, rtol=1e-14)
    np.testing.assert_allclose(looped, [2 * 1.5 * np.sum(fr.normal(k, (4,)) ** 2) for k in keys])


def test_erfinv_accuracy_and_derivative():
    y = np.concatenate([np.linspace(-1, 1, 4001)[1:-1], 1 - np.logspace(-16, -1, 60),
                        -1 + np.logspace(-16, -1, 60), np.logspace(-300, -1, 40), [0.0]])
    ours = fr._erfinv(y)
    ref = torch.erfinv(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=2e-15, atol=0)
    np.testing.assert_array_equal(fr._erfinv(np.array([-1.0, 1.0])), [-np.inf, np.inf])
    assert np.isnan(fr._erfinv(np.array(1.5)))
    y32 = np.linspace(-0.999, 0.999, 101).astype(np.float32)
    assert fr._erfinv(y32).dtype == np.float32
    np.testing.assert_allclose(fr._erfinv(y32), torch.erfinv(torch.from_numpy(y32)).numpy(),
                               rtol=2e-6)
    check_grads(fr._erfinv, (np.array([-0.95, -0.3, 0.0, 0.4, 0.9]),), order=2)


def test_make_jaxpr_stages_the_key_primitives():
    key = fr.key(0)
    text = str(fgrad.make_jaxpr(lambda k: fr.normal(fr.split(k)[0], (3,)))(key))
    assert "random_split[shape=(2,) partitionable=True]" in text
    assert "random_bits[shape=(3,) bit_width=64 partitionable=True]" in text
    assert "random_erfinv" in text
    text = str(fgrad.make_jaxpr(lambda k: fr.fold_in(k, 3))(key))
    assert "random_fold_in" in text
    with fgrad.threefry_partitionable(False):
        text = str(fgrad.make_jaxpr(lambda k: fr.bits(k, (3,)))(key))
    assert "random_bits[shape=(3,) bit_width=32 partitionable=False]" in text


def test_grad_rejects_a_key_and_accepts_one_passed_alongside():
    k = fr.key(6)

    def loss(x, key):
        return fnp.sum(x * fr.normal(key, (3,)))

    with pytest.raises(TypeError, match=r"grad\(loss\): argument 1 is a random key "
                                        r"\(fgrad.random.key\); keys are not differentiable"):
        fgrad.grad(loss, argnums=(0, 1))(np.ones(3), k)
    with pytest.raises(TypeError, match=r"vjp\(<lambda>\): argument 1\[.rng.\] is a random key"):
        fgrad.vjp(lambda x, state: loss(x, state["rng"]), np.ones(3), {"rng": k})
    with pytest.raises(TypeError, match=r"argument 1 has dtype uint32"):   # a raw key is uint32
        fgrad.grad(loss, argnums=1)(np.ones(3), fr.PRNGKey(6))
    for key in (k, fr.PRNGKey(6)):
        np.testing.assert_array_equal(fgrad.grad(loss)(np.ones(3), key), fr.normal(k, (3,)))
    batched = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0))(np.ones(3), fr.split(k, 4))
    np.testing.assert_array_equal(batched, [fr.normal(kk, (3,)) for kk in fr.split(k, 4)])


# --------------------------------------------------------------------------------------------
# jit, lax control flow, pytrees, checkpoints, config
# --------------------------------------------------------------------------------------------

def test_jit_takes_and_returns_keys_and_retraces_when_the_scheme_changes():
    def f(key):
        return fr.split(key, 3), fr.normal(key, (2,))

    jitted = fgrad.jit(f)
    for make_key in KEY_CTORS:
        keys, z = jitted(make_key(3))
        keys0, z0 = f(make_key(3))
        assert type(keys) is type(keys0)
        np.testing.assert_array_equal(as_array(keys), as_array(keys0))
        np.testing.assert_array_equal(z, z0)
    traces = jitted.trace_count
    with fgrad.threefry_partitionable(False):
        keys, z = jitted(fr.key(3))
        keys0, z0 = f(fr.key(3))
    np.testing.assert_array_equal(raw(keys), raw(keys0))
    np.testing.assert_array_equal(z, z0)
    assert jitted.trace_count == traces + 1
    jitted(fr.key(3))                         # back to the default: the first trace again
    assert jitted.trace_count == traces + 1
    # a jitted function called under vmap (its program staged once per setting)
    draw = fgrad.jit(lambda k: fr.bits(k, (2,)))
    keys = fr.split(fr.key(4), 3)
    for partitionable in (True, False):
        with fgrad.threefry_partitionable(partitionable):
            np.testing.assert_array_equal(fgrad.vmap(draw)(keys), [fr.bits(k, (2,)) for k in keys])


def test_lax_scan_and_fori_loop_carry_and_index_typed_keys():
    def body(key, _):
        key, sub = fr.split(key)
        return key, fr.normal(sub, (2,))

    for make_key in KEY_CTORS:
        key = make_key(4)
        carry, ys = fgrad.lax.scan(body, key, None, length=5)
        loop_key, loop_ys = key, []
        for _ in range(5):
            loop_key, y = body(loop_key, None)
            loop_ys.append(y)
        assert type(carry) is type(key)
        np.testing.assert_array_equal(as_array(carry), as_array(loop_key))
        np.testing.assert_array_equal(ys, loop_ys)
        carry_j, ys_j = fgrad.jit(lambda k: fgrad.lax.scan(body, k, None, length=5))(key)
        np.testing.assert_array_equal(as_array(carry_j), as_array(loop_key))
        np.testing.assert_array_equal(ys_j, loop_ys)
    # scanning over a typed key array, and keys as the scan's outputs
    keys = fr.split(fr.key(5), 4)
    total, children = fgrad.lax.scan(lambda c, k: (c + fr.uniform(k), fr.split(k, 2)), 0.0, keys)
    assert isinstance(children, fr.KeyArray) and children.shape == (4, 2)
    np.testing.assert_array_equal(raw(children), [raw(fr.split(k, 2)) for k in keys])
    np.testing.assert_allclose(total, sum(fr.uniform(k) for k in keys), rtol=1e-15)
    # a traced index into a key array
    picked = fgrad.lax.fori_loop(0, 4, lambda i, c: c + fr.uniform(keys[i]), 0.0)
    np.testing.assert_allclose(picked, total, rtol=1e-15)


def test_typed_keys_in_pytrees_checkpoints_and_eval_shape(tmp_path):
    k = fr.key(8)
    state = {"rng": k, "w": np.ones(2)}
    leaves = fgrad.tree.leaves(state)         # a typed key's leaf is its data (JAX: the key)
    assert len(leaves) == 2 and leaves[0].dtype == np.uint32 and leaves[0].shape == (2,)
    (path, _), _ = fgrad.tree.flatten_with_path(state)[0]
    assert fgrad.tree.keystr(path) == "['rng'].key_data"
    same = fgrad.tree.map(lambda x: x, state)
    assert isinstance(same["rng"], fr.KeyArray) and bool(same["rng"] == k)
    path = str(tmp_path / "state.npz")
    fnn.io.save(path, state)
    loaded = fnn.io.load(path, like=state)
    assert isinstance(loaded["rng"], fr.KeyArray) and bool(loaded["rng"] == k)
    np.testing.assert_array_equal(fr.normal(loaded["rng"], (3,)), fr.normal(k, (3,)))
    with pytest.raises(ValueError, match=r"KeyArray at rng, which only a template can rebuild; "
                                         r"pass like="):
        fnn.io.load(path)
    shapes = fgrad.eval_shape(lambda key: fr.split(key, 4), k)
    assert isinstance(shapes, fr.KeyArray) and shapes.shape == (4,)
    assert fr.key_data(shapes).shape == (4, 2) and fr.key_data(shapes).dtype == np.uint32


def test_config_selects_the_scheme():
    assert fgrad.config.jax_threefry_partitionable is True      # JAX 0.5 and later's default
    assert fgrad.config.read("jax_threefry_partitionable") is True
    k = fr.key(1)
    new = fr.bits(k, (4,))
    try:
        fgrad.config.update("jax_threefry_partitionable", False)
        assert fgrad.config.jax_threefry_partitionable is False
        old = fr.bits(k, (4,))
    finally:
        fgrad.config.update("jax_threefry_partitionable", True)
    assert not np.array_equal(new, old)
    with fgrad.threefry_partitionable(False):
        np.testing.assert_array_equal(fr.bits(k, (4,)), old)
        with fgrad.config.threefry_partitionable(True):
            np.testing.assert_array_equal(fr.bits(k, (4,)), new)
        np.testing.assert_array_equal(fr.bits(k, (4,)), old)
    with pytest.raises(RuntimeError):
        with fgrad.threefry_partitionable(False):
            raise RuntimeError("inside")
    assert fgrad.config.jax_threefry_partitionable is True     # restored after an exception
    fgrad.config.update("jax_enable_x64", True)                # JAX programs' first line works
    assert fgrad.config.jax_enable_x64 is True
    with pytest.raises(ValueError, match=r"jax_enable_x64.*no 32-bit mode"):
        fgrad.config.update("jax_enable_x64", False)
    with pytest.raises(AttributeError, match=r"unknown setting 'jax_no_such_flag'; fgrad has "
                                             r"jax_default_prng_impl, jax_enable_x64"):
        fgrad.config.update("jax_no_such_flag", 1)
    with pytest.raises(AttributeError, match=r"unknown setting"):
        fgrad.config.jax_no_such_flag
    with pytest.raises(TypeError, match=r"must be True or False, got 'yes'"):
        fgrad.config.update("jax_threefry_partitionable", "yes")
    with pytest.raises(ValueError, match=r"only bit generator is 'threefry2x32'"):
        fgrad.config.update("jax_default_prng_impl", "rbg")
    assert fgrad.config.values()["jax_threefry_partitionable"] is True


def test_environment_variable_selects_the_scheme_at_import():
    # JAX_THREEFRY_PARTITIONABLE=0, as JAX reads it, for a whole command
    import os
    import subprocess
    import sys
    code = ("import fgrad, fgrad.random as fr; "
            "print(fgrad.config.jax_threefry_partitionable, fr.bits(fr.key(1701), (3,)).tolist())")
    for text, expected in (("0", "False [56197195, 4200222568, 961309823]"),
                           ("true", "True [1111271205, 2679469115, 974515252]")):
        env = dict(os.environ, JAX_THREEFRY_PARTITIONABLE=text)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == expected
    env = dict(os.environ, JAX_THREEFRY_PARTITIONABLE="maybe")
    failed = subprocess.run([sys.executable, "-c", "import fgrad"], env=env, capture_output=True,
                            text=True)
    assert failed.returncode != 0 and "JAX_THREEFRY_PARTITIONABLE must be 0, 1" in failed.stderr
# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

def test_wrong_key_errors():
    expected = ("fgrad.random.normal: key must be a typed key from fgrad.random.key(seed) or a "
                "uint32 array of shape (2,) from fgrad.random.PRNGKey(seed), got float64[3]")
    with pytest.raises(TypeError, match=re.escape(expected)):
        fr.normal(np.zeros(3))
    with pytest.raises(TypeError, match=r"uint32\[4,2\]. That is a batch of keys: map over it "
                                        r"with fgrad.vmap"):
        fr.uniform(fr.split(fr.PRNGKey(0), 4), (3,))
    with pytest.raises(TypeError, match=r"uniform: expects a single key, got a typed key array "
                                        r"of shape \(4,\); map over it with fgrad.vmap"):
        fr.uniform(fr.split(fr.key(0), 4), (3,))
    with pytest.raises(TypeError, match=r"got int 0\. Make a key first: fgrad.random.key\(0\)"):
        fr.split(0)
    with pytest.raises(TypeError, match=r"got int32\[2\]"):
        fr.bits(np.zeros(2, np.int32))
    with pytest.raises(TypeError, match=r"fgrad.random.gumbel: key must be .* got list"):
        fr.gumbel([0, 0])


def test_argument_errors():
    k = fr.key(0)
    with pytest.raises(ValueError, match=r"fgrad.random.normal: shape must have non-negative"):
        fr.normal(k, (2, -1))
    with pytest.raises(TypeError, match=r"fgrad.random.normal: shape must be a tuple of ints"):
        fr.normal(k, (2.5,))
    with pytest.raises(TypeError, match=r"fgrad.random.uniform: dtype must be float32 or "
                                        r"float64, got int32"):
        fr.uniform(k, (2,), np.int32)
    with pytest.raises(ValueError, match=r"fgrad.random.uniform: the parameters must broadcast "
                                         r"to the requested shape \(3,\), but minval has "
                                         r"shape \(4,\)"):
        fr.uniform(k, (3,), minval=np.zeros(4))
    with pytest.raises(ValueError, match=r"truncated_normal: .* lower has shape \(2,\)"):
        fr.truncated_normal(k, np.zeros(2), 1.0, (3,))
    with pytest.raises(TypeError, match=r"randint: dtype must be an integer type, got float64"):
        fr.randint(k, (2,), 0, 3, np.float64)
    with pytest.raises(TypeError, match=r"bernoulli: p must have a float dtype"):
        fr.bernoulli(k, np.array([1, 0]))
    with pytest.raises(TypeError, match=r"bits: dtype must be uint8, uint16, uint32 or uint64"):
        fr.bits(k, (2,), np.int32)
    with pytest.raises(ValueError, match=r"categorical: axis 2 is out of range"):
        fr.categorical(k, np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match=r"categorical: the parameters must broadcast .* "
                                         r"logits_without_axis has shape \(2,\)"):
        fr.categorical(k, np.zeros((2, 3)), shape=(5, 3))
    with pytest.raises(TypeError, match=r"permutation: x must be an int n"):
        fr.permutation(k, 3.0)
    with pytest.raises(ValueError, match=r"choice: cannot draw 5 distinct items from a "
                                         r"population of 3"):
        fr.choice(k, 3, (5,), replace=False)
    with pytest.raises(ValueError, match=r"choice: p must have shape \(3,\)"):
        fr.choice(k, 3, (2,), p=np.ones(4) / 4)
    with pytest.raises(TypeError, match=r"key: seed must be an integer, got float 1.5"):
        fr.key(1.5)
    with pytest.raises(TypeError, match=r"key: seed must be an integer scalar.*vmap"):
        fr.key(np.arange(3))
    with pytest.raises(OverflowError, match=r"does not fit in 64 bits"):
        fr.key(2 ** 64)
    with pytest.raises(TypeError, match=r"fold_in: data must be an integer scalar, got float"):
        fr.fold_in(k, 1.5)
    with pytest.raises(TypeError, match=r"threefry_2x32: expected a uint32\[2\] key"):
        fr.threefry_2x32(np.zeros(2, np.int64), np.zeros(2, np.uint32))


# --------------------------------------------------------------------------------------------
# Properties over drawn arguments
# --------------------------------------------------------------------------------------------

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), shape=shapes,
       dtype=st.sampled_from([np.float32, np.float64]),
       lo=st.floats(-1e3, 1e3), width=st.floats(1e-3, 1e3))
def test_uniform_stays_in_range(seed, shape, dtype, lo, width):
    lo_t, hi_t = np.asarray(lo, dtype), np.asarray(lo + width, dtype)
    u = fr.uniform(fr.key(seed), shape, dtype, lo_t, hi_t)
    assert u.shape == shape and u.dtype == dtype
    assert np.all(u >= lo_t) and np.all(u <= hi_t)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(-2 ** 63, 2 ** 63 - 1), data=st.data(),
       dtype=st.sampled_from([np.int8, np.int16, np.int32, np.int64,
                              np.uint8, np.uint16, np.uint32]))
def test_randint_stays_in_range(seed, data, dtype):
    info = np.iinfo(dtype)
    lo = data.draw(st.integers(int(info.min), int(info.max)))
    hi = data.draw(st.integers(lo + 1, int(info.max) + 1))
    r = fr.randint(fr.key(seed), (64,), lo, hi, dtype)
    assert r.dtype == dtype
    assert np.all(r.astype(object) >= lo) and np.all(r.astype(object) < hi)


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), batch=st.integers(1, 5), shape=shapes)
def test_vmap_equals_loop_for_drawn_batches(seed, batch, shape):
    keys = fr.split(fr.key(seed), batch)
    draw = lambda k: fr.normal(fr.fold_in(k, 3), shape) + fr.uniform(k, shape)  # noqa: E731
    np.testing.assert_array_equal(fgrad.vmap(draw)(keys), np.stack([draw(k) for k in keys]))


@settings(max_examples=EXAMPLES, deadline=None)
@given(seed=st.integers(-2 ** 63, 2 ** 64 - 1), shape=shapes,
       dtype=st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]),
       partitionable=st.booleans())
def test_typed_and_raw_keys_agree_for_drawn_seeds(seed, shape, dtype, partitionable):
    with fgrad.threefry_partitionable(partitionable):
        typed, plain = fr.key(seed), fr.PRNGKey(seed)
        np.testing.assert_array_equal(fr.bits(typed, shape, dtype), fr.bits(plain, shape, dtype))
        np.testing.assert_array_equal(raw(fr.split(typed, shape)), fr.split(plain, shape))
        flat = fr.bits(typed, (math.prod(shape),), dtype)
        if partitionable:            # value i is the hash of index i, whatever the shape
            np.testing.assert_array_equal(fr.bits(typed, shape, dtype).ravel(), flat)
