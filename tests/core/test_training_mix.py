"""The analytical training-mix model against Monte Carlo, scipy, and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import faceaudit.core as fc
from tests.tolerances import FLOAT64_REFERENCE, monte_carlo

# Central differences in float64 with h = 1e-6: truncation ~h^2, round-off ~1e-16/h.
FINITE_DIFFERENCE = 1e-6


def _spd(rng, d, decay):
    """A random rotation of an anisotropic spectrum ``k^-decay`` (decay 0: isotropic)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    spectrum = (1.0 + np.arange(d)) ** -decay * rng.uniform(0.8, 1.2, size=d)
    return (q * spectrum) @ q.T


def _world(rng, g, d, decay, shift):
    means = rng.normal(size=(g, d)) * 0.4
    covs = np.stack([_spd(rng, d, decay) for _ in range(g)])
    return fc.TargetWorld(jnp.asarray(means), jnp.asarray(covs), jnp.asarray(rng.normal(size=(g, d)) * shift))


def _monte_carlo_fd(world, mix, replicates, seed):
    counts = jnp.asarray(np.rint(np.asarray(mix.size * mix.shares)))

    def one(k):
        gen = fc.fit_generator(fc.sample_training_stats(k, world, counts), world, mix)
        return jax.vmap(fc.gaussian_frechet)(gen.means, gen.covs, world.means, world.covs)

    keys = jax.random.split(jax.random.key(seed), replicates)
    fds = np.asarray(jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=100))(keys))
    return fds.mean(axis=0), fds.std(axis=0, ddof=1) / np.sqrt(replicates)


# (groups, d, spectrum decay, shift, shares, N, transfer, shrinkage, diversity, replicates)
SETTINGS = [
    pytest.param(2, 6, 0.0, 0.0, [0.7, 0.3], 1000, 0.0, 0.0, 1.0, 3000, id="isotropic-no-shrinkage"),
    pytest.param(3, 16, 1.0, 0.2, [0.6, 0.3, 0.1], 3000, 0.4, 100.0, 0.9, 3000, id="anisotropic-shift-transfer"),
    pytest.param(2, 128, 0.7, 0.1, [0.75, 0.25], 40000, 0.3, 2000.0, 0.95, 400, id="d128-anisotropic",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("g,d,decay,shift,shares,size,transfer,shrinkage,diversity,replicates", SETTINGS)
def test_expected_fd_matches_monte_carlo(g, d, decay, shift, shares, size, transfer, shrinkage, diversity, replicates):
    rng = np.random.default_rng(d)
    world = _world(rng, g, d, decay, shift)
    mix = fc.TrainingMix(jnp.asarray(shares), float(size), transfer, 1.5, shrinkage, diversity)
    pred = fc.expected_fd(world, mix)
    mean, se = _monte_carlo_fd(world, mix, replicates, seed=d)
    np.testing.assert_array_less(np.abs(np.asarray(pred.total) - mean), monte_carlo(se))
    # The noise term is what the Monte Carlo sees above the noise-free generator, and it
    # is a visible part of the total (the test would catch a missing noise term).
    assert np.all(np.asarray(pred.noise) > monte_carlo(se))
    # The structural part is the population FD of the noise-free generator (training
    # statistics at their expectations) to each target: the same closed form evaluated by
    # another route (gaussian_frechet's Bures term on the generator's own Gaussians).
    generator = fc.noise_free_generator(world, mix)
    direct = [float(fc.gaussian_frechet(generator.means[h], generator.covs[h], world.means[h], world.covs[h]))
              for h in range(g)]
    np.testing.assert_allclose(pred.structural, direct, rtol=1e-9)


def _image_level_fd(world, shares, size, transfer, length_scale, shrinkage, diversity, replicates, seed):
    """Monte Carlo of the generator's FD written from ../shared/design/analytical-model.md
    alone, in numpy: draw every training image, form the transfer-weighted and pooled sample
    statistics, shrink, and score each group with scipy's ``sqrtm``. Independent of
    ``mixing``, ``fit_generator`` and ``sample_training_stats``."""
    import scipy.linalg

    rng = np.random.default_rng(seed)
    mu, covs, delta = (np.asarray(a) for a in (world.means, world.covs, world.shifts))
    g = mu.shape[0]
    counts = np.rint(size * np.asarray(shares)).astype(int)
    kernel = np.exp(-((mu[:, None] - mu[None]) ** 2).sum(-1) / (2 * length_scale**2))
    a = counts[None, :] * np.where(np.eye(g, dtype=bool), 1.0, transfer * kernel)
    n_eff = a.sum(1)
    w = shrinkage / (shrinkage + n_eff)
    roots = [scipy.linalg.sqrtm(c).real for c in covs]
    chols = [np.linalg.cholesky(c) for c in covs]
    fds = np.zeros((replicates, g))
    for r in range(replicates):
        images = [mu[h] + delta[h] + rng.standard_normal((counts[h], mu.shape[1])) @ chols[h].T for h in range(g)]
        xbar = np.stack([x.mean(0) for x in images])
        s_hat = np.stack([np.cov(x, rowvar=False) for x in images])
        everything = np.concatenate(images)
        xbar_all, s_all = everything.mean(0), np.cov(everything, rowvar=False)
        for k in range(g):
            m = (1 - w[k]) * (a[k] @ xbar) / n_eff[k] + w[k] * xbar_all
            c = diversity**2 * ((1 - w[k]) * np.einsum("h,hij->ij", a[k], s_hat) / n_eff[k] + w[k] * s_all)
            cross = scipy.linalg.sqrtm(roots[k] @ c @ roots[k]).real
            fds[r, k] = ((m - mu[k]) ** 2).sum() + np.trace(c) + np.trace(covs[k]) - 2 * np.trace(cross)
    return fds.mean(0), fds.std(0, ddof=1) / np.sqrt(replicates)


@pytest.mark.parametrize("g,d,decay,shift,shares,size,transfer,shrinkage,diversity,replicates", [
    pytest.param(2, 4, 0.0, 0.0, [0.7, 0.3], 600, 0.0, 0.0, 1.0, 1500, id="isotropic-no-shrinkage"),
    pytest.param(3, 6, 1.0, 0.2, [0.6, 0.3, 0.1], 1500, 0.4, 100.0, 0.9, 1000, id="anisotropic-shift-transfer"),
])
def test_expected_fd_matches_image_level_monte_carlo(g, d, decay, shift, shares, size, transfer, shrinkage, diversity,
                                                     replicates):
    rng = np.random.default_rng(100 + d)
    world = _world(rng, g, d, decay, shift)
    mix = fc.TrainingMix(jnp.asarray(shares), float(size), transfer, 1.5, shrinkage, diversity)
    mean, se = _image_level_fd(world, shares, size, transfer, 1.5, shrinkage, diversity, replicates, seed=d)
    pred = np.asarray(fc.expected_fd(world, mix).total)
    np.testing.assert_array_less(np.abs(pred - mean), monte_carlo(se))
    assert np.all(np.asarray(fc.expected_fd(world, mix).noise) > monte_carlo(se))  # the check sees the noise term


def test_training_statistics_have_the_wishart_moments():
    """``sample_training_stats`` against the moments it must have: mean N(mu + delta, S/n)
    and (n - 1) S_hat ~ Wishart(S, n - 1), so E S_hat = S and
    Var S_hat_ij = (S_ij^2 + S_ii S_jj) / (n - 1)."""
    rng = np.random.default_rng(11)
    world = _world(rng, 2, 4, 0.5, 0.3)
    counts = jnp.asarray([12.0, 40.0])
    draws = 20000
    stats = jax.vmap(lambda k: fc.sample_training_stats(k, world, counts))(jax.random.split(jax.random.key(5), draws))
    means, covs = np.asarray(stats.means), np.asarray(stats.covs)
    target = np.asarray(world.means + world.shifts)
    for h, n in enumerate(np.asarray(counts)):
        s = np.asarray(world.covs[h])
        mean_se = np.sqrt(np.diag(s) / n / draws)
        assert np.all(np.abs(means[:, h].mean(0) - target[h]) < monte_carlo(mean_se))
        np.testing.assert_allclose(np.cov(means[:, h], rowvar=False), s / n, rtol=0.05, atol=0.01 * s.max() / n)
        var = (s**2 + np.outer(np.diag(s), np.diag(s))) / (n - 1)
        assert np.all(np.abs(covs[:, h].mean(0) - s) < monte_carlo(np.sqrt(var / draws)))
        # The sample variance of each entry against the Wishart variance: its own relative
        # standard error is about sqrt(2 / draws) for near-Gaussian entries; 0.06 allows the
        # heavier tails of the Wishart entries at n = 12.
        np.testing.assert_allclose(covs[:, h].var(0, ddof=1), var, rtol=0.06)


def test_noise_reduces_to_design_note_isotropic_formula():
    # One group, no shift, no shrinkage: E FD = tr S / n + sigma^2 d (d + 1) / (4 n).
    d, sigma2, n = 10, 2.5, 400.0
    world = fc.TargetWorld(jnp.zeros((1, d)), sigma2 * jnp.eye(d)[None], jnp.zeros((1, d)))
    pred = fc.expected_fd(world, fc.TrainingMix(jnp.ones(1), n, 0.0, 1.0, 0.0, 1.0))
    np.testing.assert_allclose(pred.noise[0], sigma2 * d / n + sigma2 * d * (d + 1) / (4 * n), rtol=1e-12)
    np.testing.assert_allclose(pred.structural[0], 0.0, atol=1e-12)


# Second-order remainder the reference-noise correction leaves (third-order terms, and the
# training-noise term evaluated at sample covariances, which it does not touch): 0.05-0.3%
# of the expected FD in the worlds below; allowed 0.5%.
REFERENCE_REMAINDER = 0.005


def test_targets_from_reference_samples_predict_the_population_fd():
    """An audit's targets are reference-sample means and covariances (200 images per group
    in 20 dimensions here). Averaged over reference samples drawn image by image (numpy),
    the expected FD computed from them with their counts matches the population's, where
    the plug-in value (no counts) overstates a low-share group's by 4-6%. Transfer and
    shrinkage are on: both carry the noise of the other groups' targets in."""
    g, d, n, replicates = 3, 20, 200, 1000
    rng = np.random.default_rng(20)
    world = _world(rng, g, d, 0.5, 0.1)
    mix = fc.TrainingMix(jnp.asarray([0.8, 0.15, 0.05]), 3000.0, 0.4, 1.5, 100.0, 0.9)
    truth = np.asarray(fc.expected_fd(world, mix).total)
    chol = np.linalg.cholesky(np.asarray(world.covs))
    images = np.asarray(world.means)[None, :, None, :] + np.einsum(
        "gij,rgnj->rgni", chol, rng.normal(size=(replicates, g, n, d)))
    means = images.mean(axis=2)
    centred = images - means[:, :, None, :]
    covs = np.einsum("rgni,rgnj->rgij", centred, centred) / (n - 1)
    counts = jnp.full(g, float(n))

    def both(m, c):
        return (fc.expected_fd(fc.TargetWorld(m, c, world.shifts, counts), mix).total,
                fc.expected_fd(fc.TargetWorld(m, c, world.shifts), mix).total)

    corrected, plug_in = map(np.asarray, jax.jit(jax.vmap(both))(jnp.asarray(means), jnp.asarray(covs)))
    tolerance = monte_carlo(corrected.std(axis=0, ddof=1) / np.sqrt(replicates)) + REFERENCE_REMAINDER * truth
    np.testing.assert_array_less(np.abs(corrected.mean(axis=0) - truth), tolerance)
    # The check has power: the plug-in misses the rarest groups by several tolerances.
    assert np.all(plug_in.mean(axis=0)[1:] - truth[1:] > 3 * tolerance[1:]), (plug_in.mean(axis=0) - truth, tolerance)


@pytest.mark.slow
def test_noise_slope_in_log_n_is_minus_one():
    # Without shrinkage, transfer or guidance loss the FD is all noise; its Monte Carlo mean
    # falls like 1/N.
    rng = np.random.default_rng(3)
    world = _world(rng, 2, 8, 0.5, 0.0)
    sizes = np.array([500.0, 2000.0, 8000.0])
    noise = []
    for i, size in enumerate(sizes):
        mix = fc.TrainingMix(jnp.asarray([0.5, 0.5]), size, 0.0, 1.0, 0.0, 1.0)
        mean, _ = _monte_carlo_fd(world, mix, 2000, seed=i)
        noise.append(mean.mean())
    slope = np.polyfit(np.log(sizes), np.log(noise), 1)[0]
    assert abs(slope + 1.0) < 0.05, slope


def test_measured_fd_bias_matches_monte_carlo(rng):
    d, n_gen, n_ref = 5, 60, 150
    cov_a, cov_b = _spd(rng, d, 0.5), _spd(rng, d, 1.0)
    mean_a, mean_b = rng.normal(size=d) * 0.3, np.zeros(d)
    truth = float(fc.gaussian_frechet(jnp.asarray(mean_a), jnp.asarray(cov_a), jnp.asarray(mean_b), jnp.asarray(cov_b)))
    bias = float(fc.measured_fd_bias(jnp.asarray(cov_a)[None], jnp.asarray(cov_b)[None], n_gen, n_ref)[0])
    la, lb = np.linalg.cholesky(cov_a), np.linalg.cholesky(cov_b)
    measured = []
    for _ in range(3000):
        x = mean_a + rng.normal(size=(n_gen, d)) @ la.T
        y = mean_b + rng.normal(size=(n_ref, d)) @ lb.T
        measured.append(float(fc.frechet_distance(x, y)))
    measured = np.asarray(measured)
    se = measured.std(ddof=1) / np.sqrt(measured.size)
    # First-order bias: the O(1/n^2) remainder is far below the Monte Carlo error here.
    assert abs(measured.mean() - truth - bias) < monte_carlo(se)
    assert bias > 5 * se


@pytest.mark.parametrize(
    "df,nc,x", [(8, 0.0, 5.0), (64, 3.0, 70.0), (128, 40.0, 150.0), (128, 400.0, 500.0), (128, 1500.0, 1600.0), (32, 1e-3, 30.0)]
)
def test_ncx2_cdf_against_scipy(df, nc, x):
    reference = scipy.stats.ncx2.cdf(x, df, nc)
    np.testing.assert_allclose(float(fc.ncx2_cdf(x, df, nc)), reference, rtol=FLOAT64_REFERENCE, atol=1e-14)


def test_expected_verification_matches_monte_carlo(rng):
    g, d, reps = 3, 24, 100_000
    means = rng.normal(size=(g, d)) * 0.25
    within, between = 0.5, np.array([0.3, 0.1, 0.6])
    pred = fc.expected_verification(jnp.asarray(means), fc.IdentitySpread(within, jnp.asarray(between)))
    se = 0.5 / np.sqrt(reps)  # the accuracy is the mean of two independent proportions
    for k in range(g):
        noise = rng.normal(size=(2, reps, d)) * np.sqrt(within)
        genuine = np.sum((noise[0] - noise[1]) ** 2, axis=1)
        centres = rng.normal(size=(2, reps, d)) * np.sqrt(between[k])
        noise2 = rng.normal(size=(2, reps, d)) * np.sqrt(within)
        same = np.sum((centres[0] - centres[1] + noise2[0] - noise2[1]) ** 2, axis=1)
        other = rng.integers(0, g, reps)
        c_other = means[other] + rng.normal(size=(reps, d)) * np.sqrt(between[other])[:, None]
        c_self = means[k] + rng.normal(size=(reps, d)) * np.sqrt(between[k])
        noise3 = rng.normal(size=(2, reps, d)) * np.sqrt(within)
        anyg = np.sum((c_self - c_other + noise3[0] - noise3[1]) ** 2, axis=1)
        t_same, t_any = float(pred.threshold_same[k]), float(pred.threshold_any[k])
        acc_same = 0.5 * (np.mean(genuine <= t_same) + np.mean(same > t_same))
        acc_any = 0.5 * (np.mean(genuine <= t_any) + np.mean(anyg > t_any))
        assert abs(acc_same - float(pred.same_group[k])) < monte_carlo(se)
        assert abs(acc_any - float(pred.any_group[k])) < monte_carlo(se)


def test_verification_thresholds_are_optimal():
    means = jnp.asarray(np.random.default_rng(1).normal(size=(4, 16)) * 0.3)
    spread = fc.IdentitySpread(0.4, jnp.asarray([0.05, 0.2, 0.4, 0.8]))
    pred = fc.expected_verification(means, spread)
    from faceaudit.core._identity import _any_group_accuracy

    weights = jnp.full(4, 0.25)
    for k in range(4):
        best = float(pred.any_group[k])
        for factor in (0.97, 1.03):
            assert float(_any_group_accuracy(pred.threshold_any[k] * factor, k, means, spread, weights)) < best
    # Same-group accuracy rises with the identity spread: collapse lowers verification.
    assert np.all(np.diff(np.asarray(pred.same_group)) > 0)


def test_kinds_verification_reduces_to_the_same_group_closed_form():
    """One kind: the densities of v1 chi2_d and v2 chi2_d cross at
    t* = d v1 v2 log(v2 / v1) / (v2 - v1); scipy's chi-square gives the accuracy there."""
    d, within = 20, 0.5
    for between in (0.05, 0.3, 1.2):
        v1, v2 = 2 * within, 2 * (within + between)
        t = d * v1 * v2 * np.log(v2 / v1) / (v2 - v1)
        want = 0.5 * (scipy.stats.chi2.cdf(t / v1, d) + 1 - scipy.stats.chi2.cdf(t / v2, d))
        acc, threshold = fc.kinds_verification(d, within, jnp.asarray([between]), jnp.ones((1, 1)))
        np.testing.assert_allclose(float(threshold), t, rtol=1e-9)
        np.testing.assert_allclose(float(acc), want, rtol=FLOAT64_REFERENCE)


def test_kinds_verification_matches_monte_carlo(rng):
    """Invented (collapsed) and celebrity identities in one group: a mixture of impostors."""
    d, reps, within = 16, 200_000, 0.4
    between = np.array([0.08, 0.5])  # invented, celebrity
    images = np.array([40.0, 16.0])  # images per kind; pair weights as verification_pairs draws them
    weights = np.outer(images, images)
    weights[np.diag_indices(2)] -= images * 4 / 2  # same-identity pairs (4 seeds) are not impostors
    acc, t = fc.kinds_verification(d, within, jnp.asarray(between), jnp.asarray(weights))
    p = weights.ravel() / weights.sum()
    kinds = rng.choice(4, size=reps, p=p)
    b = between[kinds // 2] + between[kinds % 2]
    impostor = rng.chisquare(d, reps) * (2 * within + b)
    genuine = rng.chisquare(d, reps) * 2 * within
    mc = 0.5 * (np.mean(genuine <= float(t)) + np.mean(impostor > float(t)))
    assert abs(mc - float(acc)) < monte_carlo(0.5 / np.sqrt(reps))
    # The threshold is optimal: moving it either way loses accuracy.
    for factor in (0.95, 1.05):
        worse = 0.5 * (scipy.stats.chi2.cdf(float(t) * factor / (2 * within), d)
                       + 1 - p @ scipy.stats.chi2.cdf(float(t) * factor / (2 * within + (between[:, None] + between[None]).ravel()), d))
        assert worse < float(acc)


def _fd_total(world, shares, transfer, shrinkage, diversity):
    return fc.expected_fd(world, fc.TrainingMix(shares, 2000.0, transfer, 1.2, shrinkage, diversity)).total


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    world = _world(rng, 3, 6, 0.8, 0.2)
    args = (jnp.asarray([0.5, 0.3, 0.2]), 0.3, 150.0, 0.9)
    weights = jnp.asarray([1.0, -0.5, 2.0])  # a generic linear functional of the (G,) output

    @jax.jit
    def f(*a):
        return weights @ _fd_total(world, *a)

    grads = jax.grad(f, argnums=(0, 1, 2, 3))(*args)
    h = 1e-6
    for i, arg in enumerate(args):
        flat = np.atleast_1d(np.asarray(arg, dtype=float))
        for j in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[j] += h * max(1.0, abs(flat[j]))
            down[j] -= h * max(1.0, abs(flat[j]))
            step = up[j] - down[j]
            a_up = list(args)
            a_down = list(args)
            a_up[i] = jnp.asarray(up) if flat.size > 1 else float(up[0])
            a_down[i] = jnp.asarray(down) if flat.size > 1 else float(down[0])
            numeric = (float(f(*a_up)) - float(f(*a_down))) / step
            analytic = float(np.atleast_1d(np.asarray(grads[i]))[j])
            np.testing.assert_allclose(analytic, numeric, rtol=FINITE_DIFFERENCE, atol=1e-9)


def test_verification_gradient_matches_finite_differences():
    means = jnp.asarray(np.random.default_rng(2).normal(size=(3, 12)) * 0.3)

    @jax.jit
    def f(between):
        pred = fc.expected_verification(means, fc.IdentitySpread(0.5, between))
        return jnp.sum(pred.same_group) + jnp.sum(pred.any_group)

    between = np.array([0.2, 0.35, 0.5])
    grad = np.asarray(jax.grad(f)(jnp.asarray(between)))
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        numeric = (float(f(jnp.asarray(between + e))) - float(f(jnp.asarray(between - e)))) / (2 * h)
        np.testing.assert_allclose(grad[j], numeric, rtol=FINITE_DIFFERENCE, atol=1e-9)


def test_planner_beats_uniform_and_proportional():
    rng = np.random.default_rng(11)
    g = 6
    world = _world(rng, g, 8, 0.5, 0.1)
    shares = jnp.asarray([0.45, 0.25, 0.12, 0.1, 0.05, 0.03])
    mix = fc.TrainingMix(shares, 3000.0, 0.3, 1.0, 200.0, 0.9)
    budget = 1500.0
    plan = fc.plan_mix(world, mix, budget)
    np.testing.assert_allclose(float(plan.extra.sum()), budget, rtol=1e-12)
    assert np.all(np.asarray(plan.extra) >= 0)
    uniform = fc.evaluate_allocation(world, mix, jnp.full(g, budget / g))
    proportional = fc.evaluate_allocation(world, mix, budget * shares)
    worst = float(plan.quality_after.max())
    assert worst < float(uniform.max()) and worst < float(proportional.max())
    # The plan is (near) a minimax point: no single move of 5% of the budget between two
    # groups lowers the worst group's FD by more than 0.5%.
    for src in range(g):
        for dst in range(g):
            moved = np.asarray(plan.extra).copy()
            delta = min(0.05 * budget, moved[src])
            if src == dst or delta <= 0:
                continue
            moved[src] -= delta
            moved[dst] += delta
            assert float(fc.evaluate_allocation(world, mix, jnp.asarray(moved)).max()) > worst * 0.995


def test_planner_rejects_bad_requests():
    world = fc.TargetWorld(jnp.zeros((2, 2)), jnp.stack([jnp.eye(2)] * 2), jnp.zeros((2, 2)))
    mix = fc.TrainingMix(jnp.asarray([0.5, 0.5]), 100.0, 0.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="objective must be one of"):
        fc.plan_mix(world, mix, 10.0, objective="speed")
    with pytest.raises(ValueError, match="needs the real identity spreads"):
        fc.plan_mix(world, mix, 10.0, objective="verification")
    with pytest.raises(ValueError, match="budget must be a positive"):
        fc.plan_mix(world, mix, 0.0)
