"""The statistics the stages used to compute inline, against closed forms written out here."""

import itertools
import statistics

import numpy as np
import pytest
from scipy import stats

import faceaudit.core as fc

RTOL = 1e-12  # float64 closed forms against scipy's: the same arithmetic, different order


def test_group_tests_equal_the_textbook_formulas(rng):
    samples = [rng.normal(loc, 1.0, size=n) for loc, n in ((0.0, 30), (0.4, 45), (0.1, 25))]
    got = fc.group_tests(samples)
    everything = np.concatenate(samples)
    n, k = everything.size, len(samples)
    between = sum(s.size * (s.mean() - everything.mean()) ** 2 for s in samples) / (k - 1)
    within = sum(((s - s.mean()) ** 2).sum() for s in samples) / (n - k)
    assert got["anova"]["F"] == pytest.approx(between / within, rel=RTOL)
    assert got["anova"]["p_value"] == pytest.approx(stats.f.sf(between / within, k - 1, n - k), rel=1e-10)
    ranks = stats.rankdata(everything)  # continuous values: no ties, so no tie correction
    ends = np.cumsum([0] + [s.size for s in samples])
    h = 12.0 / (n * (n + 1)) * sum(ranks[a:b].sum() ** 2 / (b - a) for a, b in itertools.pairwise(ends)) - 3 * (n + 1)
    assert got["kruskal_wallis"]["H"] == pytest.approx(h, rel=RTOL)
    assert got["kruskal_wallis"]["p_value"] == pytest.approx(stats.chi2.sf(h, k - 1), rel=1e-10)
    assert "chi2" not in got


def test_chi_square_of_a_binary_outcome_is_pearsons(rng):
    samples = [(rng.random(n) < p).astype(float) for p, n in ((0.3, 60), (0.5, 80), (0.45, 70))]
    got = fc.group_tests(samples, binary=True)["chi2"]
    observed = np.array([[s.sum(), s.size - s.sum()] for s in samples])
    expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / observed.sum()
    pearson = ((observed - expected) ** 2 / expected).sum()  # 3 x 2: no continuity correction
    assert got["statistic"] == pytest.approx(pearson, rel=RTOL) and got["dof"] == 2
    assert got["p_value"] == pytest.approx(stats.chi2.sf(pearson, 2), rel=1e-10)


def test_group_tests_say_when_there_is_nothing_to_test():
    same = fc.group_tests([np.ones(5), np.ones(7)], binary=True)
    assert same["chi2"]["p_value"] == 1.0 and same["anova"]["p_value"] == 1.0 and "same" in same["anova"]["note"]
    with pytest.raises(ValueError, match="need at least 2"):
        fc.group_tests([np.ones(4)])
    with pytest.raises(ValueError, match="group 1 has no values"):
        fc.group_tests([np.ones(4), []])
    with pytest.raises(ValueError, match="0 and 1 only"):
        fc.group_tests([np.array([0.0, 2.0]), np.ones(3)], binary=True)


def test_identity_match_thresholds_dlib_distances(rng):
    a, b = rng.normal(size=(6, 128)) * 0.05, rng.normal(size=(6, 128)) * 0.05
    b[:3] = a[:3] + 0.01  # three pairs of one person
    found = np.array([True, True, False, True, True, True])
    got = fc.identity_match(a, b, found, encoder="dlib:face_recognition_model_v1")
    want = [np.linalg.norm(a[i] - b[i]) if found[i] else np.nan for i in range(6)]
    np.testing.assert_allclose(got.distance, want, rtol=RTOL)
    expected = [float(w < 0.6) if f else np.nan for w, f in zip(want, found)]
    np.testing.assert_array_equal(got.preserved, expected)
    assert np.nansum(got.preserved[:3]) == 2 and np.isnan(got.preserved[2])
    assert fc.identity_match(a, b, found, encoder="arcface").preserved is None  # no known threshold
    with pytest.raises(ValueError, match="one shape"):
        fc.identity_match(a, b[:, :64], found, encoder="dlib")


def test_default_length_scale_is_the_median_gap(rng):
    means = rng.normal(size=(5, 4))
    gaps = [float(np.linalg.norm(means[i] - means[j])) for i, j in itertools.combinations(range(5), 2)]
    assert fc.default_length_scale(means) == pytest.approx(statistics.median(gaps), rel=RTOL)
    with pytest.raises(ValueError, match="coincide"):
        fc.default_length_scale(np.zeros((3, 2)))
