"""Per-group evaluation: estimates equal the metric on each group; intervals are right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import faceaudit.core as fc
from faceaudit.core import _groups
from tests import references as ref
from tests.tolerances import FLOAT64_REFERENCE, binomial_floor, monte_carlo


@pytest.fixture
def audit(rng):
    d = 10
    groups = np.array(["Asian", "Black", "Indian", "White"])
    real_lab = np.repeat(groups, 40)
    fake_lab = np.repeat(groups, 35)
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
    """At each group's own size (equal sizes here) the estimate is the metric itself."""
    real, real_lab, fake, fake_lab = audit
    result = fc.by_group(metric, real, real_lab, fake, fake_lab, key=key)
    for g, est in zip(result.groups, result.estimate):
        want = float(DIRECT[metric](real[real_lab == g], fake[fake_lab == g]))
        assert float(est) == pytest.approx(want, rel=FLOAT64_REFERENCE, abs=1e-12)
    assert np.all(result.low < result.estimate) and np.all(result.estimate < result.high)
    assert result.interval == "jackknife" and np.all(result.se > 0)


def test_fd_gram_path_for_groups_smaller_than_d(rng, key):
    """n_g <= d: the n x n Gram route must give the FD of each group exactly."""
    real, fake = rng.normal(size=(60, 50)), rng.normal(size=(45, 50)) + 0.2
    rl, fl = np.repeat(["a", "b", "c"], 20), np.repeat(["a", "b", "c"], 15)
    for metric in ("fd", "fd_unbiased"):
        result = fc.by_group(metric, real, rl, fake, fl, key=key)
        for g, est in zip(result.groups, result.estimate):
            want = float(DIRECT[metric](real[rl == g], fake[fl == g]))
            assert float(est) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_weighted_fd_equals_fd_of_repeated_rows(rng):
    from faceaudit.core import _group_metrics

    x, y = rng.normal(size=(12, 20)), rng.normal(size=(9, 20))
    wx, wy = rng.integers(0, 3, 12).astype(float), rng.integers(1, 3, 9).astype(float)
    got = _group_metrics._fd_both_from_grams(jnp.asarray(x @ x.T), jnp.asarray(y @ y.T), jnp.asarray(x @ y.T),
                                             jnp.asarray(wx), jnp.asarray(wy))[0]
    want = ref.frechet_distance_mpmath(np.repeat(x, wx.astype(int), 0), np.repeat(y, wy.astype(int), 0))
    assert float(got) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_jackknife_standard_error_matches_an_explicit_loop(rng, key):
    """values_by_group's SE is the grouped jackknife of the mean; by_group's FD SE is the
    grouped jackknife of each set, summed (independent sets)."""
    values = rng.gamma(2.0, size=57)
    labels = np.array(["a"] * 57)
    est = fc.values_by_group(values, labels, key=key, jackknife_blocks=7)
    assert est.se[0] == pytest.approx(ref.block_jackknife_se(np.mean, values, 7), rel=1e-12)
    assert est.df[0] == 6
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(33, 3)) + 0.5
    got = fc.by_group("fd", x, np.zeros(40), y, np.zeros(33), key=key, jackknife_blocks=5)
    se_x = ref.block_jackknife_se(lambda a: ref.frechet_distance(a, y), x, 5)
    se_y = ref.block_jackknife_se(lambda b: ref.frechet_distance(x, b), y, 5)
    assert got.se[0] == pytest.approx(np.hypot(se_x, se_y), rel=1e-9)


def test_common_size_estimate_is_the_complete_u_statistic_on_average(rng):
    """At a common size m < n the estimate averages the metric over random m-subsets: its
    mean over many keys is the average over *all* m-subsets (checked exhaustively)."""
    from itertools import combinations

    x = rng.normal(size=(8, 5))
    labels = np.array(["small"] * 6 + ["big"] * 8)
    data = np.concatenate([rng.normal(size=(6, 5)), x])
    complete = np.mean([fc.vendi_score(x[list(c)]) for c in combinations(range(8), 6)])
    draws = np.array([fc.by_group("vendi", data, labels, key=jax.random.key(i), subsamples=4).estimate
                      for i in range(60)])
    big_index = sorted(set(labels)).index("big")
    mean, se = draws[:, big_index].mean(), draws[:, big_index].std() / np.sqrt(60)
    assert mean == pytest.approx(complete, abs=monte_carlo(se))
    result = fc.by_group("vendi", data, labels, key=jax.random.key(0))
    assert list(result.size_x) == [6, 6] and list(result.n_x) == [8, 6]
    assert np.isnan(result.bias).all()  # no bias estimate at a common size


@pytest.mark.parametrize("metric, d", [(fc.metrics.PRDC(k=3), 6), (fc.metrics.Vendi(), 6), (fc.metrics.Vendi(), 20),
                                       (fc.metrics.Vendi(), 40)])
def test_weightings_on_their_rows_equal_the_padded_evaluation(rng, key, metric, d):
    """At a common size below the largest group each subset and jackknife weighting is
    evaluated on the rows that carry weight (``restrict``): every value, subsets and
    replicates alike, equals the evaluation over the whole padded group (Vendi's row and
    kernel forms, and the switch from rows to a kernel, all taken)."""
    groups = ("a", "b")
    lab_x, lab_y = np.array(["a"] * 12 + ["b"] * 30), np.array(["a"] * 10 + ["b"] * 25)
    x, y = rng.normal(size=(42, d)), rng.normal(size=(35, d))
    xs, nx = _groups._padded(x, lab_x, groups, 30)
    if metric.two_sample:
        ys, ny = _groups._padded(y, lab_y, groups, 25)
        sy, support_y = jnp.asarray([10, 10]), 10
    else:
        ys, ny, support_y = jnp.zeros((2, 1, d)), jnp.zeros(2, jnp.int64), None
        sy = ny
    delete = metric.jackknife_delete
    rng = np.random.default_rng(0)
    uniforms = (*_groups._rank_uniforms(rng, 2, 30, 4, 5, delete), *_groups._rank_uniforms(rng, 2, ys.shape[1], 4, 5, delete))
    args = (key, uniforms, xs, nx, jnp.asarray([12, 12]), ys, ny, sy, metric, 0, 5, delete)
    padded = _groups._evaluate(*args)
    on_rows = _groups._evaluate(*args, 12, support_y)
    for want, got in zip(padded, on_rows):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=FLOAT64_REFERENCE, atol=1e-13)


@pytest.mark.parametrize("metric, d, sizes", [
    ("mmd2", 12, (40, 25, 30, 28)), ("cmmd", 12, (40, 25, 30, 28)),  # host block sums (n > d and n < d below)
    ("mmd2", 60, (40, 25, 30, 28)), ("fd", 6, (40, 25, 30, 28)), ("fd_unbiased", 6, (40, 25, 30, 28)),
    ("prdc", 8, (60, 25, 45, 30)), ("prdc", 8, (30, 30, 30, 30)),  # subsets + half-samples; equal sizes
    ("vendi", 6, (40, 25, 0, 0)), ("vendi", 30, (40, 25, 0, 0)), ("vendi", 30, (80, 70, 0, 0)),  # dual, kernel, both
])
def test_host_paths_equal_the_compiled_evaluation(rng, key, metric, d, sizes):
    """On CPU, MMD^2's jackknife comes from block sums of its kernels, FD's from block
    moments (groups larger than d), and PRDC's and Vendi's
    weightings are evaluated in numpy (one k-NN pass; Gram downdates): every number, the
    estimate, standard error, degrees of freedom, interval and bias, equals the compiled
    path's (``xla_only``), which evaluates each weighting from scratch."""
    n_a, n_b, m_a, m_b = sizes
    x, lx = rng.normal(size=(n_a + n_b, d)), np.array(["a"] * n_a + ["b"] * n_b)
    y, ly = rng.normal(size=(m_a + m_b, d)) * 1.2 + 0.1, np.array(["a"] * m_a + ["b"] * m_b)
    args = (x, lx) if metric == "vendi" else (x, lx, y, ly)
    host = fc.by_group(metric, *args, key=key)
    with fc.xla_only():
        compiled = fc.by_group(metric, *args, key=key)
    host, compiled = (r if isinstance(r, dict) else {metric: r} for r in (host, compiled))
    for name in compiled:
        scale = np.max(np.abs(compiled[name].estimate)) + 1.0
        for field in ("estimate", "se", "df", "low", "high", "bias"):
            # The jackknife bias is (mean replicate - estimate) (J - 1): its rounding is the
            # estimate's, times J, whatever its own size.
            atol = 20 * FLOAT64_REFERENCE * scale if field == "bias" else 1e-12
            np.testing.assert_allclose(getattr(host[name], field), getattr(compiled[name], field),
                                       rtol=FLOAT64_REFERENCE, atol=atol, err_msg=f"{name} {field}")


def test_support_radius_when_the_sorted_list_runs_out(rng):
    """A weighting whose support holds fewer than k + 1 of a row's listed neighbours falls
    back to the whole row: the radius is still the k-th smallest supported distance."""
    from faceaudit.core import _group_metrics as gm

    x = rng.normal(size=(200, 3))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    near = gm._sorted_neighbours(x, (x * x).sum(1), k=3, smallest_support=200)  # lists of 16 rows
    support = np.zeros(200, bool)
    support[rng.choice(200, 20, replace=False)] = True  # 10%: most lists run out
    rows = np.flatnonzero(support)
    want = [np.partition(d2[i][support], 3)[3] for i in rows]
    assert near.order.shape[1] < 200
    np.testing.assert_allclose(gm._support_radius(near, support, rows, 3), want, rtol=FLOAT64_REFERENCE, atol=1e-12)


def test_pooled_parts_cover_the_population_mmd(key):
    """Above ``max_rows`` the pooled MMD^2 is the mean over random parts: unbiased for the
    population value, with an interval that covers it (Gaussian sets, closed-form truth
    ``gaussian_mmd2``); at or below ``max_rows`` it is the all-pairs statistic itself."""
    d, n, shift = 4, 300, 0.25
    truth = float(fc.gaussian_mmd2(np.zeros(d), np.eye(d), np.full(d, shift), np.eye(d)))
    worlds, covered, errors = 150, 0, []
    for w in range(worlds):
        r = np.random.default_rng(1000 + w)
        x, y = r.normal(size=(n, d)), r.normal(size=(n, d)) + shift
        est = fc.pooled("mmd2", x, y, key=jax.random.fold_in(key, w), max_rows=100)
        covered += bool(est.low[0] <= truth <= est.high[0])
        errors.append(float(est.estimate[0]) - truth)
        if w == 0:
            assert est.groups == ("all",) and int(est.n_x[0]) == n
            whole = fc.pooled("mmd2", x, y, key=key, max_rows=n)
            np.testing.assert_allclose(whole.estimate[0], float(fc.mmd2(x, y)), rtol=FLOAT64_REFERENCE)
    assert abs(np.mean(errors)) <= monte_carlo(np.std(errors) / np.sqrt(worlds))
    assert covered >= binomial_floor(worlds, 0.95)


def test_size_dependent_metrics_refuse_unequal_own_sizes(audit, key):
    real, real_lab, fake, _ = audit
    lab = np.array(["a"] * 100 + ["b"] * 60)
    with pytest.raises(ValueError, match="depends on the sample size"):
        fc.by_group("vendi", real, lab, key=key, common_size="own")
    with pytest.raises(ValueError, match="duplicate rows"):
        fc.by_group("precision", real, lab, real, lab, key=key, interval="basic", num_bootstrap=50)
    with pytest.raises(ValueError, match="exceeds the smallest group"):
        fc.by_group("vendi", real, lab, key=key, common_size=80)


def test_prdc_refuses_sets_with_repeated_points(rng, key):
    """prdc's issue #7: with a point repeated more than k times every radius there is 0."""
    x = rng.normal(size=(30, 4))
    x[3:10] = x[3]
    with pytest.raises(ValueError, match="real row 3 appears 7 times"):
        fc.prdc(x, rng.normal(size=(30, 4)), k=5)
    fc.prdc(x, rng.normal(size=(30, 4)), k=7)  # k = 7: the ball holds its 7 copies' neighbours
    with pytest.raises(ValueError, match="group '0': x row 3 appears 7 times"):
        fc.by_group("precision", x, np.zeros(30, int), rng.normal(size=(30, 4)), np.zeros(30, int), key=key)


def test_multi_output_prdc_and_metric_objects(audit, key):
    real, real_lab, fake, fake_lab = audit
    all_four = fc.by_group(fc.metrics.PRDC(k=3), real, real_lab, fake, fake_lab, key=key)
    assert set(all_four) == {"precision", "recall", "density", "coverage"}
    alone = fc.by_group("recall", real, real_lab, fake, fake_lab, key=key, k=3)
    np.testing.assert_array_equal(all_four["recall"].estimate, alone.estimate)
    assert fc.metrics.FD(("fd",)) == fc.metrics.FD(which=("fd",)) and fc.metrics.FD() != fc.metrics.MMD2()
    both = fc.by_group(fc.metrics.FD(("fd", "fd_unbiased")), real, real_lab, fake, fake_lab, key=key)
    np.testing.assert_array_equal(both["fd_unbiased"].estimate, fc.by_group("fd_unbiased", real, real_lab, fake, fake_lab, key=key).estimate)
    with pytest.raises(ValueError, match="unknown metric option"):
        fc.by_group("fd", real, real_lab, fake, fake_lab, key=key, bandwith=3)


def test_bootstrap_weights_are_multinomial_counts(key):
    """Chi-square goodness of fit of the pooled counts: each draw picks one of 7 rows
    uniformly, so a row's count over 500 replicates x 7 draws is Binomial(3500, 1/7)."""
    w = np.asarray(_groups._resample_weights(key, 7, 10, 500))
    assert np.all(w.sum(1) == 7) and np.all(w[:, 7:] == 0)
    totals = w[:, :7].sum(axis=0)
    assert stats.chisquare(totals).pvalue > 1e-3
    # Per replicate, the count of one row is Binomial(7, 1/7): compare its histogram.
    observed = np.bincount(w[:, 0].astype(int), minlength=8)[:4]
    expected = stats.binom.pmf(np.arange(4), 7, 1 / 7) * 500
    observed = np.append(observed, 500 - observed.sum())
    expected = np.append(expected, 500 - expected.sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_bca_matches_the_textbook_formula(rng):
    data = rng.gamma(2.0, size=40)
    replicates = np.array([rng.choice(data, 40).mean() for _ in range(2000)])
    jackknife = np.array([np.delete(data, i).mean() for i in range(40)])
    lo, hi = fc.bca_interval(jnp.asarray(replicates), jnp.asarray(data.mean()), 0.9, jnp.asarray(jackknife))
    want = ref.bca_textbook(replicates, data.mean(), jackknife, 0.9)
    np.testing.assert_allclose([float(lo), float(hi)], want, rtol=1e-12)


def test_group_contrast_is_a_welch_interval(audit, key):
    real, real_lab, fake, fake_lab = audit
    est = fc.by_group("mmd2", real, real_lab, fake, fake_lab, key=key)
    c = fc.group_contrast(est, "White", "Asian")
    i, j = est.groups.index("White"), est.groups.index("Asian")
    assert c.difference == pytest.approx(est.estimate[i] - est.estimate[j])
    assert c.se == pytest.approx(np.hypot(est.se[i], est.se[j]))
    q = stats.t.ppf(0.975, c.df)
    assert (c.low, c.high) == pytest.approx((c.difference - q * c.se, c.difference + q * c.se))
    assert min(est.df[i], est.df[j]) <= c.df <= est.df[i] + est.df[j]


# --- coverage (reduced; experiments/interval_coverage.py has the full study) ------------

WORLDS = 60
FLOOR = binomial_floor(WORLDS, 0.95)  # P(fewer covered | true coverage 0.95) < 1e-3


def _pair(rng, n, d, shift):
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.8
    x = rng.normal(size=(n, d)) * np.sqrt(spectrum)
    y = rng.normal(size=(n, d)) * np.sqrt(spectrum * np.linspace(0.8, 1.2, d)) + shift
    return x, y, spectrum


@pytest.mark.parametrize("metric, interval", [("mmd2", "jackknife"), ("fd_unbiased", "jackknife"),
                                              ("fd_unbiased", "basic"), ("fd_unbiased", "percentile"),
                                              ("mmd2", "bca"), ("fd_unbiased", "bca")])
def test_intervals_cover_the_closed_form_truth(rng, metric, interval):
    """d = 8, n = 150 (n >> d: the bias correction is in range); truth from closed forms."""
    d, n = 8, 150
    shift = 0.3 / np.sqrt(d)
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.8
    cov_y = np.diag(spectrum * np.linspace(0.8, 1.2, d))
    if metric == "mmd2":
        truth = float(fc.gaussian_mmd2(np.zeros(d), np.diag(spectrum), np.full(d, shift), cov_y))
    else:
        truth = float(fc.gaussian_frechet(np.zeros(d), np.diag(spectrum), np.full(d, shift), cov_y))
    covered = 0
    for w in range(WORLDS):
        x, y, _ = _pair(rng, n, d, shift)
        est = fc.by_group(metric, x, np.zeros(n), y, np.zeros(n), key=jax.random.key(w), interval=interval,
                          num_bootstrap=0 if interval == "jackknife" else 100)
        covered += float(est.low[0]) <= truth <= float(est.high[0])
    assert covered >= FLOOR, f"{covered}/{WORLDS} covered (floor {FLOOR})"


@pytest.mark.parametrize("metric", ["vendi", "precision", "coverage"])
def test_equal_truth_unequal_sizes_shows_no_disparity(rng, metric):
    """Two groups drawn from the same distributions, 40 vs 160 rows per set: the 95%
    interval of their difference (at the common size 40) covers 0 at the nominal rate."""
    d = 16
    labels = np.array(["small"] * 40 + ["large"] * 160)
    covered, gaps = 0, []
    for w in range(WORLDS):
        x, y, _ = _pair(rng, 200, d, 0.2 / np.sqrt(d))
        est = (fc.by_group(metric, y, labels, key=jax.random.key(w)) if metric == "vendi"
               else fc.by_group(metric, x, labels, y, labels, key=jax.random.key(w)))
        c = fc.group_contrast(est, "large", "small")
        covered += c.low <= 0.0 <= c.high
        gaps.append(c.difference / c.se)
    assert covered >= FLOOR, f"{covered}/{WORLDS} covered 0 (floor {FLOOR})"
    # No systematic gap: the mean standardised difference is within 4 of its own SE.
    assert abs(np.mean(gaps)) < monte_carlo(np.std(gaps) / np.sqrt(WORLDS))


@pytest.mark.parametrize("successes, n", [(0, 10), (3, 10), (57, 200), (200, 200)])
def test_a_proportion_is_the_share_its_binomial_se_and_scipys_wilson_interval(successes, n):
    share = fc.proportion(successes, n, 0.9)
    want = stats.binomtest(successes, n).proportion_ci(confidence_level=0.9, method="wilson")
    p = successes / n
    assert share.value == p and share.se == pytest.approx(np.sqrt(p * (1 - p) / n), rel=1e-15)
    np.testing.assert_allclose([share.low, share.high], [want.low, want.high], rtol=FLOAT64_REFERENCE, atol=1e-15)


def test_scheme_parts_compose_into_the_scheme_of_the_keywords(audit, key):
    """chain(parts) is the Scheme the keyword options build, and by_group gives the same
    numbers either way; parts that contradict each other are refused."""
    real, real_lab, fake, fake_lab = audit
    assert fc.chain(fc.Bootstrap("percentile", 50), confidence=0.9) == fc.Scheme(interval="percentile", bootstrap=50,
                                                                                confidence=0.9)
    assert fc.chain(fc.HalfSamples(12), fc.CommonSize(30, subsamples=4)) == fc.Scheme(
        blocks=12, delete=0.5, common_size=30, subsamples=4)
    assert fc.chain() == fc.Scheme()
    cases = [
        ("mmd2", fc.Bootstrap("bca", 40), {"interval": "bca", "num_bootstrap": 40}),
        ("mmd2", fc.chain(fc.Jackknife(blocks=10)), {"jackknife_blocks": 10}),
        ("precision", fc.chain(fc.HalfSamples(8), fc.CommonSize((30, 30), 3)),
         dict(jackknife_blocks=8, jackknife_delete=0.5, common_size=(30, 30), subsamples=3)),
    ]
    for metric, scheme, keywords in cases:
        by_scheme = fc.by_group(metric, real, real_lab, fake, fake_lab, key=key, scheme=scheme)
        by_keywords = fc.by_group(metric, real, real_lab, fake, fake_lab, key=key, **keywords)
        for field in ("estimate", "se", "low", "high"):
            np.testing.assert_array_equal(getattr(by_scheme, field), getattr(by_keywords, field))
    with pytest.raises(ValueError, match="one interval part"):
        fc.chain(fc.Jackknife(), fc.Bootstrap())
    with pytest.raises(TypeError, match="scheme parts are"):
        fc.chain("bca")
    with pytest.raises(ValueError, match="num_bootstrap >= 20"):
        fc.chain(fc.Bootstrap("bca", 5))
    with pytest.raises(ValueError, match="not both"):
        fc.by_group("mmd2", real, real_lab, fake, fake_lab, key=key, scheme=fc.Jackknife(), interval="bca")
