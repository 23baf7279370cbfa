"""Frechet distance: finite-sample bias, FD-infinity, compilation behaviour."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
import scipy.linalg

import faceaudit.core as fc
from faceaudit.core import _frechet
from tests import references as ref
from tests.tolerances import FLOAT64_REFERENCE, monte_carlo


def _world(rng, d):
    s1 = np.diag(np.linspace(0.5, 2.0, d))
    a = rng.normal(size=(d, d))
    s2 = a @ a.T / d + 0.3 * np.eye(d)
    mu2 = np.full(d, 0.3)
    cross = np.sqrt(np.clip(scipy.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    true_fd = mu2 @ mu2 + np.trace(s1) + np.trace(s2) - 2 * cross
    return s1, s2, mu2, true_fd


def test_bias_corrected_fd_is_unbiased_on_gaussian_data(rng):
    """Monte Carlo: E[FD_unbiased] = FD within 4 standard errors, while the raw FD's excess
    matches the first-order bias formula (itself checked against the same simulation)."""
    d, n, reps = 16, 400, 2000
    s1, s2, mu2, true_fd = _world(rng, d)
    x = rng.normal(size=(reps, n, d)) @ np.linalg.cholesky(s1).T
    y = rng.normal(size=(reps, n, d)) @ np.linalg.cholesky(s2).T + mu2
    raw = np.asarray(jax.vmap(lambda a, b: fc.frechet_distance(a, b))(x, y))
    unbiased = np.asarray(jax.vmap(lambda a, b: fc.frechet_distance(a, b, unbiased=True))(x, y))
    se_raw = raw.std(ddof=1) / np.sqrt(reps)
    se_unbiased = unbiased.std(ddof=1) / np.sqrt(reps)
    predicted_bias = ref.fd_bias(s1, s2, n, n)
    assert raw.mean() - true_fd > 10 * se_raw  # the raw FD really is biased here
    assert raw.mean() - true_fd == pytest.approx(predicted_bias, abs=monte_carlo(se_raw))
    assert unbiased.mean() == pytest.approx(true_fd, abs=monte_carlo(se_unbiased))


def test_isotropic_bias_matches_the_design_formula():
    """With S_X = S_Y = sigma^2 I the cross-term bias is sigma^2 d (d+1) / (4 n) per set."""
    d, sigma2, n = 7, 2.5, 300
    r = np.full(d, sigma2)
    phi = float(_frechet._phi(r))
    assert phi * 0.5 / (n - 1) == pytest.approx(sigma2 * d * (d + 1) / (4 * (n - 1)), rel=1e-14)


def test_fd_infinity_removes_the_one_over_n_bias(rng):
    """Monte Carlo over 40 worlds: FD-infinity is unbiased, FD on 50 samples is not."""
    d, n, reps = 4, 400, 40
    s1, s2, mu2, true_fd = _world(rng, d)
    values, raws, slopes = [], [], []
    for i in range(reps):
        x = rng.normal(size=(n, d)) @ np.linalg.cholesky(s1).T
        y = rng.normal(size=(n, d)) @ np.linalg.cholesky(s2).T + mu2
        result = fc.fd_infinity(jax.random.key(i), x, y, sizes=(50, 100, 200, 400), num_draws=2)
        values.append(float(result.value))
        slopes.append(float(result.slope))
        raws.append(float(result.fds[0]))
    se = np.std(values, ddof=1) / np.sqrt(reps)
    assert np.mean(values) == pytest.approx(true_fd, abs=monte_carlo(se))
    assert np.mean(raws) - true_fd > 4 * np.std(raws, ddof=1) / np.sqrt(reps)
    # The fitted slope is the 1/N bias coefficient, which the closed form predicts.
    slope_se = np.std(slopes, ddof=1) / np.sqrt(reps)
    assert np.mean(slopes) == pytest.approx(ref.fd_bias(s1, s2, n, n) * n, abs=monte_carlo(slope_se))


def test_no_recompilation_for_same_shapes(rng):
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(250, 8))
    for jitted in (_frechet._fd_from_data,):
        counted = chex.assert_max_traces(jitted.__wrapped__ if hasattr(jitted, "__wrapped__") else jitted, n=1)
        compiled = jax.jit(counted, static_argnames="unbiased")
        compiled(x, y, unbiased=False)
        compiled(x + 1.0, y * 2.0, unbiased=False)  # same shapes: must not trace again
        with pytest.raises(AssertionError):
            compiled(x[:-1], y, unbiased=False)  # a new shape traces, and chex notices


def test_public_call_does_not_retrace(rng):
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(250, 8))
    fc.frechet_distance(x, y)
    before = _frechet._fd_from_data._cache_size()
    fc.frechet_distance(x * 3.0, y - 1.0)
    assert _frechet._fd_from_data._cache_size() == before


def test_streaming_statistics_reject_mismatched_batches(rng):
    stats = fc.gaussian_stats_init(4)
    with pytest.raises(ValueError, match="5 columns but the statistics are 4-dimensional"):
        fc.gaussian_stats_update(stats, rng.normal(size=(10, 5)))
    with pytest.raises(ValueError, match="hold 0 rows"):
        fc.frechet_distance_from_stats(stats, fc.gaussian_stats(rng.normal(size=(10, 4))))


def test_unbiased_fd_of_identical_distribution_is_near_zero(rng):
    x, y = rng.normal(size=(2000, 6)), rng.normal(size=(2000, 6))
    assert abs(float(fc.frechet_distance(x, y, unbiased=True))) < float(fc.frechet_distance(x, y)) / 5
    assert float(fc.frechet_distance(x, y)) == pytest.approx(ref.frechet_distance(x, y), rel=FLOAT64_REFERENCE)


def test_shard_statistics_merge_to_the_one_pass_statistics_and_fd(rng):
    """Three shards of unequal size (one far from the others' mean) merged (Chan) against a
    float64 numpy mean and scatter of all rows, and the FD of the merge against one pass."""
    shards = [rng.normal(size=(n, 6)) + shift for n, shift in ((40, 0.0), (7, 50.0), (120, -3.0))]
    everything = np.concatenate(shards)
    merged = fc.gaussian_stats_merge(*(fc.gaussian_stats(s) for s in shards), fc.gaussian_stats_init(6))
    centred = everything - everything.mean(0)
    assert float(merged.count) == len(everything)
    np.testing.assert_allclose(merged.mean, everything.mean(0), rtol=FLOAT64_REFERENCE, atol=0)
    np.testing.assert_allclose(merged.scatter, centred.T @ centred, rtol=FLOAT64_REFERENCE, atol=1e-9)
    other = fc.gaussian_stats(rng.normal(size=(90, 6)))
    np.testing.assert_allclose(fc.frechet_distance_from_stats(merged, other),
                               fc.frechet_distance_from_stats(fc.gaussian_stats(everything), other), rtol=FLOAT64_REFERENCE)
    with pytest.raises(ValueError, match="shard 1 is 5-dimensional"):
        fc.gaussian_stats_merge(merged, fc.gaussian_stats(rng.normal(size=(10, 5))))
    with pytest.raises(TypeError, match="shard 0 must be GaussianStats"):
        fc.gaussian_stats_merge(everything)
