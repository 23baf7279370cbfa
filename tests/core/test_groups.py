"""Per-group evaluation: estimates equal the metric on each group; intervals are right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats._resampling import _bca_interval  # scipy's own BCa, as an independent reference

import faceaudit.core as fc
from faceaudit.core import _groups
from tests import references as ref
from tests.tolerances import FLOAT64_REFERENCE


@pytest.fixture
def audit(rng):
    d = 10
    groups = np.array(["Asian", "Black", "Indian", "White"])
    real_lab = rng.choice(groups, 160)
    fake_lab = rng.choice(groups, 140)
    shift = {g: i * 0.3 for i, g in enumerate(groups)}
    real = rng.normal(size=(160, d))
    fake = rng.normal(size=(140, d)) * 1.2 + np.array([shift[g] for g in fake_lab])[:, None]
    return real, real_lab, fake, fake_lab


DIRECT = {
    "fd": lambda x, y: fc.frechet_distance(x, y),
    "fd_unbiased": lambda x, y: fc.frechet_distance(x, y, unbiased=True),
    "mmd2": lambda x, y: fc.mmd2(x, y),
    "cmmd": lambda x, y: 1000 * fc.mmd2(x, y, kernel="gaussian", bandwidth=10.0),
    "precision": lambda x, y: fc.prdc(x, y).precision,
    "recall": lambda x, y: fc.prdc(x, y).recall,
    "density": lambda x, y: fc.prdc(x, y).density,
    "coverage": lambda x, y: fc.prdc(x, y).coverage,
}


@pytest.mark.parametrize("metric", sorted(DIRECT))
def test_group_estimates_equal_the_metric_on_each_group(metric, audit, key):
    real, real_lab, fake, fake_lab = audit
    result = fc.by_group(metric, real, real_lab, fake, fake_lab, key=key, num_bootstrap=20)
    for g, est in zip(result.groups, result.estimate):
        want = float(DIRECT[metric](real[real_lab == g], fake[fake_lab == g]))
        assert float(est) == pytest.approx(want, rel=FLOAT64_REFERENCE, abs=1e-12)
    assert result.replicates.shape == (4, 20)
    assert np.all(result.low <= result.high)


def test_fd_gram_path_for_groups_smaller_than_d(rng, key):
    """n_g <= d: the n x n Gram route must give the FD of each group exactly."""
    real, fake = rng.normal(size=(60, 50)), rng.normal(size=(45, 50)) + 0.2
    rl, fl = np.repeat(["a", "b", "c"], 20), np.repeat(["a", "b", "c"], 15)
    for metric in ("fd", "fd_unbiased"):
        result = fc.by_group(metric, real, rl, fake, fl, key=key, num_bootstrap=5)
        for g, est in zip(result.groups, result.estimate):
            want = float(DIRECT[metric](real[rl == g], fake[fl == g]))
            assert float(est) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_weighted_fd_equals_fd_of_repeated_rows(rng):
    x, y = rng.normal(size=(12, 20)), rng.normal(size=(9, 20))
    wx, wy = rng.integers(0, 3, 12).astype(float), rng.integers(1, 3, 9).astype(float)
    got = _groups._fd_from_grams(jnp.asarray(x @ x.T), jnp.asarray(y @ y.T), jnp.asarray(x @ y.T), jnp.asarray(wx), jnp.asarray(wy), False)
    want = ref.frechet_distance_mpmath(np.repeat(x, wx.astype(int), 0), np.repeat(y, wy.astype(int), 0))
    assert float(got) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_vendi_and_values_by_group(audit, key):
    real, real_lab, fake, fake_lab = audit
    result = fc.by_group("vendi", fake, fake_lab, key=key, num_bootstrap=10)
    for g, est in zip(result.groups, result.estimate):
        assert float(est) == pytest.approx(float(fc.vendi_score(fake[fake_lab == g])), rel=FLOAT64_REFERENCE)
    scores = fake[:, 0]
    means = fc.values_by_group(scores, fake_lab, key=key, num_bootstrap=50)
    for g, est in zip(means.groups, means.estimate):
        assert float(est) == pytest.approx(scores[fake_lab == g].mean(), rel=FLOAT64_REFERENCE)


def test_intersections(audit, key, rng):
    real, real_lab, fake, fake_lab = audit
    real_gender, fake_gender = rng.choice(["man", "woman"], 160), rng.choice(["man", "woman"], 140)
    result = fc.by_group("fd", real, (real_lab, real_gender), fake, (fake_lab, fake_gender), key=key, num_bootstrap=0)
    assert len(result.groups) == 8 and "Asian x woman" in result.groups
    rows_r = (real_lab == "Asian") & (real_gender == "woman")
    rows_f = (fake_lab == "Asian") & (fake_gender == "woman")
    i = result.groups.index("Asian x woman")
    assert float(result.estimate[i]) == pytest.approx(float(fc.frechet_distance(real[rows_r], fake[rows_f])), rel=FLOAT64_REFERENCE)
    assert np.isnan(result.low).all()  # no bootstrap, no interval


def test_bootstrap_weights_are_multinomial_counts(key):
    w = _groups._resample_weights(key, 7, 10, 500)
    assert np.all(np.asarray(w).sum(1) == 7) and np.all(np.asarray(w)[:, 7:] == 0)
    # Each row is drawn with probability 1/7 per draw: mean count 1.
    assert np.asarray(w)[:, :7].mean() == pytest.approx(1.0, abs=0.05)


def test_bca_matches_scipy(rng):
    """BCa levels from faceaudit's formula equal scipy.stats' BCa on the same replicates."""
    data = rng.gamma(2.0, size=40)
    replicates = np.array([rng.choice(data, 40).mean() for _ in range(2000)])
    jackknife = np.array([np.delete(data, i).mean() for i in range(40)])
    lo, hi = fc.bca_interval(jnp.asarray(replicates), jnp.asarray(data.mean()), 0.9, jnp.asarray(jackknife))
    alpha = _bca_interval((data,), np.mean, axis=-1, alpha=0.05, theta_hat_b=replicates, batch=None, xp=np)
    want = np.percentile(replicates, np.array(alpha[:2], dtype=float).ravel() * 100)  # (alpha_1, alpha_2, ...)
    np.testing.assert_allclose([float(lo), float(hi)], want, rtol=1e-12)


def test_basic_interval_covers_a_biased_statistic(rng, key):
    """The raw FD is biased upwards; recentred basic intervals still cover the truth in
    most worlds, while naive percentile intervals of raw replicates would not."""
    d, n, worlds = 6, 120, 20
    true_fd = 6 * 0.3**2  # N(0, I) vs N(0.3, I)
    covered = 0
    for w in range(worlds):
        r, f = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.3
        res = fc.by_group("fd", r, np.zeros(n), f, np.zeros(n), key=jax.random.key(w), num_bootstrap=200, confidence=0.9)
        covered += float(res.low[0]) <= true_fd <= float(res.high[0])
    # 90% nominal; 20 worlds: P(<= 13 covered | p = 0.9) < 0.2%.
    assert covered >= 14
