"""Tests for fnn.data: the batch iterator, train/validation splits and standardisation.

The batch iterator is checked as a property over drawn sizes (every example exactly once per
pass, the order ``fgrad.random.permutation`` gives, ``drop_last``, aligned tuples);
``standardize`` against scikit-learn's ``StandardScaler``.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fgrad.random as fr
from fnn.data import batches, num_batches, standardize, train_val_split

EXAMPLES = settings.default.max_examples


def indices_seen(n, batch_size, **kwargs):
    """The example indices :func:`batches` yields for ``n`` examples, batch by batch."""
    return [xb.tolist() for (xb,) in batches((np.arange(n),), batch_size, **kwargs)]


# --------------------------------------------------------------------------------------------
# batches / num_batches
# --------------------------------------------------------------------------------------------

@settings(max_examples=4 * EXAMPLES)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 70), seed=st.integers(0, 2**31 - 1),
       shuffle=st.booleans())
def test_every_example_exactly_once_per_pass(n, batch_size, seed, shuffle):
    key = fr.key(seed) if shuffle else None
    seen = indices_seen(n, batch_size, key=key)
    assert len(seen) == num_batches(n, batch_size)
    assert [len(b) for b in seen[:-1]] == [batch_size] * (len(seen) - 1)
    assert sorted(sum(seen, [])) == list(range(n))


@settings(max_examples=4 * EXAMPLES)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 70), seed=st.integers(0, 2**31 - 1))
def test_drop_last_gives_only_full_batches(n, batch_size, seed):
    key = fr.key(seed)
    seen = indices_seen(n, batch_size, key=key, drop_last=True)
    assert len(seen) == num_batches(n, batch_size, drop_last=True) == n // batch_size
    assert all(len(b) == batch_size for b in seen)
    order = np.asarray(fr.permutation(key, n)).tolist()
    assert sum(seen, []) == order[:len(seen) * batch_size]     # the tail of the order is dropped


def test_shuffled_order_is_the_keys_permutation():
    key = fr.key(7)
    order = np.asarray(fr.permutation(key, 23)).tolist()
    assert sum(indices_seen(23, 5, key=key), []) == order
    assert indices_seen(23, 5, key=fr.key(7)) == indices_seen(23, 5, key=key)   # repeatable
    assert indices_seen(23, 5, key=fr.key(8)) != indices_seen(23, 5, key=key)
    assert order != list(range(23))


def test_without_key_batches_are_in_order_and_views():
    x = np.arange(12.0).reshape(6, 2)
    out = list(batches((x,), 4))
    assert [b[0].tolist() for b in out] == [x[:4].tolist(), x[4:].tolist()]
    assert all(np.shares_memory(b[0], x) for b in out)


def test_tuples_stay_aligned():
    n = 17
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    y = np.arange(n) * 10
    w = np.arange(n)[:, None, None] * np.ones((1, 2, 2))
    for xb, yb, wb in batches([x, y, w], 4, key=fr.key(1)):       # a list works like a tuple
        ids = yb // 10
        np.testing.assert_array_equal(xb, x[ids])
        np.testing.assert_array_equal(wb, w[ids])
        assert xb.shape[1:] == (3,) and wb.shape[1:] == (2, 2)


@given(n=st.integers(0, 1000), batch_size=st.integers(1, 100), drop_last=st.booleans())
def test_num_batches_formula(n, batch_size, drop_last):
    expected = n // batch_size if drop_last else int(np.ceil(n / batch_size))
    assert num_batches(n, batch_size, drop_last) == expected


def test_batches_argument_errors_are_raised_at_the_call():
    x = np.zeros((5, 2))
    with pytest.raises(TypeError, match=r"tuple or list of arrays.*pass \(x,\)"):
        batches(x, 2)
    with pytest.raises(ValueError, match=r"share their first.*\(5, 2\), \(4,\)"):
        batches((x, np.zeros(4)), 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        batches((x,), 0)
    with pytest.raises(TypeError, match="batch_size must be an int, got float"):
        batches((x,), 2.0)
    with pytest.raises(ValueError, match="arrays is empty"):
        batches((), 2)
    with pytest.raises(ValueError, match=r"arrays\[1\] is a scalar"):
        batches((x, np.float64(1.0)), 2)
    with pytest.raises(ValueError, match="n must be >= 0"):
        num_batches(-1, 2)


# --------------------------------------------------------------------------------------------
# train_val_split
# --------------------------------------------------------------------------------------------

@given(n=st.integers(2, 80), val_fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**31 - 1))
def test_split_partitions_the_examples(n, val_fraction, seed):
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        with pytest.raises(ValueError, match="both parts need at least one example"):
            train_val_split((np.arange(n),), val_fraction, key=fr.key(seed))
        return
    x, y = np.arange(n) * 2.0, np.arange(n)
    (x_tr, y_tr), (x_val, y_val) = train_val_split((x, y), val_fraction, key=fr.key(seed))
    assert len(y_val) == n_val and len(y_tr) == n - n_val
    assert sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(n))
    np.testing.assert_array_equal(x_tr, 2.0 * y_tr)
    np.testing.assert_array_equal(x_val, 2.0 * y_val)


def test_split_is_a_function_of_the_key():
    data = (np.arange(50),)
    a = train_val_split(data, 0.2, key=fr.key(3))
    b = train_val_split(data, 0.2, key=fr.key(3))
    c = train_val_split(data, 0.2, key=fr.key(4))
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert a[1][0].tolist() != c[1][0].tolist()
    order = np.asarray(fr.permutation(fr.key(3), 50))
    np.testing.assert_array_equal(a[1][0], order[:10])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_must_be_inside_0_1(fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        train_val_split((np.arange(10),), fraction, key=fr.key(0))


def test_split_needs_a_key():
    with pytest.raises(TypeError):
        train_val_split((np.arange(10),), 0.5)


# --------------------------------------------------------------------------------------------
# standardize
# --------------------------------------------------------------------------------------------

def test_standardize_matches_sklearn_standard_scaler(rng):
    from sklearn.preprocessing import StandardScaler
    x_train = rng.normal(3.0, [1.0, 10.0, 0.1, 5.0], size=(200, 4))
    x_test = rng.normal(3.0, [1.0, 10.0, 0.1, 5.0], size=(50, 4))
    scaler = StandardScaler().fit(x_train)
    z_train, (mean, std) = standardize(x_train)
    z_test, stats = standardize(x_test, mean, std)
    assert mean.shape == std.shape == (4,)
    np.testing.assert_allclose(z_train, scaler.transform(x_train), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(z_test, scaler.transform(x_test), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(z_train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z_train.std(0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(stats[0], mean)


def test_standardize_per_channel_images(rng):
    x = rng.uniform(size=(16, 3, 5, 5)) * np.array([1.0, 2.0, 4.0])[:, None, None]
    z, (mean, std) = standardize(x, axis=(0, 2, 3))
    assert mean.shape == std.shape == (3, 1, 1)
    np.testing.assert_allclose(mean[:, 0, 0], x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, rtol=1e-6)
    z_batch, _ = standardize(x[:4], mean, std)                 # the statistics apply to a batch
    np.testing.assert_allclose(z_batch, z[:4])


def test_standardize_dtypes_and_constant_features():
    pixels = np.array([[0, 255], [0, 0], [0, 255]], dtype=np.uint8)   # feature 0 is constant
    z, (mean, std) = standardize(pixels)
    assert z.dtype == np.float64 and np.all(np.isfinite(z))
    np.testing.assert_array_equal(z[:, 0], 0.0)
    z32, (mean32, _) = standardize(pixels.astype(np.float32))
    assert z32.dtype == mean32.dtype == np.float32
    z_all, (m, s) = standardize(np.arange(6.0).reshape(2, 3), axis=None)
    assert m.shape == (1,) and np.isclose(z_all.mean(), 0.0)


def test_standardize_needs_both_statistics():
    with pytest.raises(ValueError, match="both mean and std"):
        standardize(np.ones((3, 2)), mean=np.zeros(2))
