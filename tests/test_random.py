"""Tests of fgrad.random: bits, keys, every sampler's distribution, transforms and errors.

* Known answers: the Threefry-2x32 test vectors of the Random123 reference implementation, and
  the values JAX's own test-suite pins for its raw threefry keys (``jax_threefry_partitionable``
  off, x64 on): fgrad reproduces them bit for bit (floats to the printed digits).
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
from fgrad.testing import check_grads

EXAMPLES = settings.default.max_examples


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
    assert k.dtype == np.uint32 and k.shape == (2,)
    assert k.tolist() == expected
    assert fr.PRNGKey(seed).tolist() == expected


def test_bits_known_values():
    # jax testRngRandomBits
    k = fr.key(1701)
    assert fr.bits(k, (3,), np.uint8).tolist() == [216, 115, 43]
    assert fr.bits(k, (3,), np.uint16).tolist() == [41682, 1300, 55017]
    assert fr.bits(k, (3,), np.uint32).tolist() == [56197195, 4200222568, 961309823]
    assert fr.bits(k, (3,), np.uint64).tolist() == [3982329540505020460, 16822122385914693683,
                                                     7882654074788531506]


def test_bits_view_property():
    # 8-, 16- and 32-bit draws are views of the same 32-bit words
    # (jax testRngRandomBitsViewProperty)
    k = fr.key(1701)
    words = [fr.bits(k, (640 // n,), np.dtype(f"uint{n}")).astype(f"<u{n // 8}").view("<u4")
             for n in (8, 16, 32)]
    np.testing.assert_array_equal(words[0], words[2])
    np.testing.assert_array_equal(words[1], words[2])


def test_split_and_fold_in_known_values():
    # jax testPRNGValues
    k = fr.key(0)
    np.testing.assert_array_equal(
        fr.split(k, 4), [[2285895361, 1501764800], [1518642379, 4090693311],
                         [433833334, 4221794875], [839183663, 3740430601]])
    np.testing.assert_array_equal(fr.fold_in(k, 4), [2285895361, 433833334])
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


@pytest.mark.parametrize("name, draw, expected", JAX_VALUES, ids=[c[0] for c in JAX_VALUES])
def test_matches_jax_published_values(name, draw, expected):
    out = draw(fr.key(_jax_case_seed(name)))
    if out.dtype.kind == "f":
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6)
    else:
        assert out.tolist() == expected


# --------------------------------------------------------------------------------------------
# Keys: determinism, splitting, folding
# --------------------------------------------------------------------------------------------

def test_same_key_same_numbers_and_different_keys_differ():
    k1, k2 = fr.split(fr.key(3))
    np.testing.assert_array_equal(fr.normal(k1, (100,)), fr.normal(k1, (100,)))
    assert not np.any(fr.normal(k1, (100,)) == fr.normal(k2, (100,)))
    assert not np.any(fr.normal(fr.key(0), (100,)) == fr.normal(fr.key(1), (100,)))


def test_split_shapes_and_distinct_children():
    k = fr.key(11)
    assert fr.split(k).shape == (2, 2)
    assert fr.split(k, (2, 3)).shape == (2, 3, 2)
    np.testing.assert_array_equal(fr.split(k, (2, 3)).reshape(6, 2), fr.split(k, 6))
    children = fr.split(k, 1000)
    folded = np.stack([fr.fold_in(k, i) for i in range(1000)])
    everything = np.concatenate([children, folded, k[None]])
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
    np.testing.assert_array_equal(fr.fold_in(k, 2 ** 32 + 5), fr.fold_in(k, 5))
    np.testing.assert_array_equal(fr.fold_in(k, np.int32(-1)), fr.fold_in(k, 2 ** 32 - 1))


def test_split_children_are_the_parents_first_words():
    # JAX's layout, and the reason a key that was split must not also be used to draw
    k = fr.key(21)
    np.testing.assert_array_equal(fr.split(k, 3).ravel(), fr.bits(k, (6,)))


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
    assert fr.split(fr.key(0), np.int64(3)).shape == (3, 2)


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


@pytest.mark.parametrize("name", VMAP_CASES)
def test_vmap_over_keys_equals_loop(name):
    draw = VMAP_CASES[name]
    keys = fr.split(fr.key(200), 6)
    batched = fgrad.vmap(draw)(keys)
    looped = np.stack([draw(k) for k in keys])
    assert batched.dtype == looped.dtype
    np.testing.assert_array_equal(batched, looped)
    # rows differ: the draws are independent per key
    assert len({row.tobytes() for row in np.asarray(batched)}) > 1 or name == "categorical"


def test_vmap_docstring_example_and_nested_vmap():
    key = fr.key(0)
    x = fgrad.vmap(lambda k: fr.normal(k, (3,)))(fr.split(key, 8))
    assert x.shape == (8, 3)
    keys = fr.split(key, 12).reshape(4, 3, 2)
    nested = fgrad.vmap(fgrad.vmap(lambda k: fr.uniform(k, (2,))))(keys)
    np.testing.assert_array_equal(nested, [[fr.uniform(k, (2,)) for k in row] for row in keys])
    # keys mapped along axis 1
    swapped = fgrad.vmap(lambda k: fr.normal(k, ()), in_axes=1)(fr.split(key, 5).T)
    np.testing.assert_array_equal(swapped, [fr.normal(k, ()) for k in fr.split(key, 5)])


def test_vmap_over_seeds_fold_in_data_and_parameters():
    key = fr.key(7)
    seeds = np.arange(-2, 3)
    np.testing.assert_array_equal(fgrad.vmap(fr.key)(seeds), [fr.key(int(s)) for s in seeds])
    seeds32 = np.arange(-2, 3, dtype=np.int32)
    np.testing.assert_array_equal(fgrad.vmap(fr.key)(seeds32), [fr.key(s) for s in seeds32])
    np.testing.assert_array_equal(fgrad.vmap(lambda i: fr.fold_in(key, i))(np.arange(5)),
                                  [fr.fold_in(key, i) for i in range(5)])
    # a key per example and a step number shared by all
    keys = fr.split(key, 3)
    shared_step = fgrad.vmap(lambda k, i: fr.fold_in(k, i), in_axes=(0, None))(keys, 4)
    np.testing.assert_array_equal(shared_step, [fr.fold_in(k, 4) for k in keys])
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
    assert "random_split" in text and "random_bits[shape=(3,) bit_width=64]" in text
    assert "random_erfinv" in text
    text = str(fgrad.make_jaxpr(lambda k: fr.fold_in(k, 3))(key))
    assert "random_fold_in" in text


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

def test_wrong_key_errors():
    expected = ("fgrad.random.normal: key must be a uint32 array of shape (2,) from "
                "fgrad.random.key(seed), got float64[3]")
    with pytest.raises(TypeError, match=re.escape(expected)):
        fr.normal(np.zeros(3))
    with pytest.raises(TypeError, match=r"batch of keys: map over it with fgrad.vmap"):
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
