"""Bad input raises ValueError/TypeError naming the problem, never a NaN or a JAX trace."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import faceaudit.core as fc

GOOD = np.random.default_rng(0).normal(size=(30, 4))
CALLS = {
    "frechet_distance": lambda x, y: fc.frechet_distance(x, y),
    "mmd2": lambda x, y: fc.mmd2(x, y),
    "kid": lambda x, y: fc.kid(x, y, key=jax.random.key(0), num_subsets=2, subset_size=5),
    "prdc": lambda x, y: fc.prdc(x, y, k=3),
}


def _with_nan(row, value=np.nan):
    bad = GOOD.copy()
    bad[row, 1] = value
    return bad


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_named(name, value):
    with pytest.raises(ValueError, match=r"(y|fake) contains NaN or inf in rows? 7"):
        CALLS[name](GOOD, _with_nan(7, value))


@pytest.mark.parametrize("name", CALLS)
def test_mismatched_dimensions(name):
    with pytest.raises(ValueError, match="(x|real) has 4 feature columns but (y|fake) has 5"):
        CALLS[name](GOOD, np.zeros((30, 5)))


@pytest.mark.parametrize("name", CALLS)
def test_integer_input_is_a_type_error(name):
    with pytest.raises(TypeError, match="dtype int64; embeddings must be floating point"):
        CALLS[name](GOOD, np.ones((30, 4), dtype=np.int64))


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("bad", [[[1.0, 2.0]], "embeddings.npy", None])
def test_non_array_input_is_a_type_error(name, bad):
    with pytest.raises(TypeError, match="must be a numpy or JAX array"):
        CALLS[name](GOOD, bad)


@pytest.mark.parametrize("name", CALLS)
def test_too_few_rows(name):
    with pytest.raises(ValueError, match="has 1 row; this metric needs at least"):
        CALLS[name](GOOD, GOOD[:1])


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"must have shape \(n, d\)"):
        fc.frechet_distance(GOOD, GOOD[None])


def test_kid_subset_larger_than_set():
    with pytest.raises(ValueError, match="subset_size=1000 is larger than the smaller set"):
        fc.kid(GOOD, GOOD, key=jax.random.key(0), subset_size=1000)
    # The default subset size follows the sets: the whole of the smaller set here.
    whole = fc.kid(GOOD, GOOD[::-1] + 0.5, key=jax.random.key(0), num_subsets=3)
    assert float(whole.mean) == pytest.approx(float(fc.mmd2(GOOD, GOOD[::-1] + 0.5)), rel=1e-12)


def test_kid_needs_a_jax_key():
    with pytest.raises(TypeError, match="must be a JAX PRNG key"):
        fc.kid(GOOD, GOOD, key=0, subset_size=5)


def test_zero_rows_for_cosine_metrics():
    a = GOOD.copy()
    a[3] = 0.0
    with pytest.raises(ValueError, match="all-zero embedding in row 3"):
        fc.clip_score(a, GOOD)
    with pytest.raises(ValueError, match="all-zero embedding in row 3"):
        fc.vendi_score(a)


def test_paired_inputs_must_have_equal_rows():
    with pytest.raises(ValueError, match="one row per pair: image has 30, text has 29"):
        fc.clip_score(GOOD, GOOD[:-1])


def test_bad_options():
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        fc.mmd2(GOOD, GOOD, kernel="rbf")
    with pytest.raises(ValueError, match="q must be a positive number"):
        fc.vendi_score(GOOD, q=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        fc.prdc(GOOD, GOOD, k=2.5)


def test_empty_and_small_groups_are_named():
    labels = np.array(["a"] * 28 + ["b"] * 2)
    with pytest.raises(ValueError, match="group 'b' has 2 rows in x; fd needs at least 3"):
        fc.by_group("fd", GOOD, labels, GOOD, labels, key=jax.random.key(0), min_group_size=3)
    with pytest.raises(ValueError, match=r"only in y: \['c'\]"):
        fc.by_group("fd", GOOD, labels, GOOD, np.array(["a"] * 28 + ["c"] * 2), key=jax.random.key(0))
    with pytest.raises(ValueError, match="x_groups has 29 labels but x has 30 rows"):
        fc.by_group("fd", GOOD, labels[:-1], GOOD, labels, key=jax.random.key(0))
    with pytest.raises(ValueError, match="missing labels"):
        fc.by_group("vendi", GOOD, np.r_[np.ones(29), np.nan], key=jax.random.key(0))
