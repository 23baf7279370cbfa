"""Properties over a classified registry of metrics (sklearn's test_common pattern).

Every public function of ``faceaudit.core`` is either a metric classified below or listed
in ``NOT_METRICS``; a new metric left unclassified fails ``test_every_metric_is_classified``.
"""

from __future__ import annotations

import inspect

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import faceaudit.core as fc
from tests.tolerances import FLOAT64_REFERENCE

# Two-sample distances: name -> callable(x, y) -> scalar
TWO_SAMPLE = {
    "frechet_distance": lambda x, y: fc.frechet_distance(x, y),
    "frechet_distance unbiased": lambda x, y: fc.frechet_distance(x, y, unbiased=True),
    "mmd2 cubic": lambda x, y: fc.mmd2(x, y),
    "mmd2 gaussian": lambda x, y: fc.mmd2(x, y, kernel="gaussian", bandwidth=2.0),
    "prdc": lambda x, y: jnp.stack(fc.prdc(x, y, k=3)),
    "kid": lambda x, y: fc.kid(x, y, key=jax.random.key(0), num_subsets=3, subset_size=8).mean,
}
ONE_SAMPLE = {
    "vendi_score cosine": lambda x: fc.vendi_score(x),
    "vendi_score gaussian": lambda x: fc.vendi_score(x, kernel="gaussian", bandwidth=2.0),
}
ZERO_ON_IDENTICAL = {"frechet_distance"}
SYMMETRIC = {"frechet_distance", "frechet_distance unbiased", "mmd2 cubic", "mmd2 gaussian"}
PERMUTATION_INVARIANT = set(TWO_SAMPLE) - {"kid"} | set(ONE_SAMPLE)  # kid's subsets follow row order
ROTATION_INVARIANT = set(TWO_SAMPLE) - {"kid"} | set(ONE_SAMPLE)
SHIFT_INVARIANT = {"frechet_distance", "frechet_distance unbiased", "mmd2 gaussian", "prdc", "vendi_score gaussian"}
PAIRED = {
    "clip_score": lambda a, b: fc.clip_score(a, b),
    "cosine_similarity": lambda a, b: fc.cosine_similarity(a, b),
    "image_similarity": lambda a, b: fc.image_similarity(a, b),
    "directional_similarity": lambda a, b: fc.directional_similarity(a, b, b * 0.5 + 1.0, a + 2.0),
}

CLASSIFIED = {
    "frechet_distance", "mmd2", "kid", "prdc", "vendi_score", "clip_score", "cosine_similarity",
    "image_similarity", "directional_similarity",
}
NOT_METRICS = {
    # who gets drawn: tested against scipy, arviz, scikit-image and closed forms in test_representation.py
    "adjusted_classify_and_count", "category_counts", "check_reference_mix", "confusion_counts", "confusion_matrix",
    "hdi", "mix_divergences", "zero_shot_probabilities", "ita", "ita_category", "monk_bin", "skin_tone", "srgb_to_lab",
    "nearest_distance",  # per-image, tested against scipy's cdist in test_representation.py
    # building blocks, weighted forms and summaries tested in their own modules
    "frechet_distance_from_stats", "gaussian_stats", "gaussian_stats_init", "gaussian_stats_update", "gaussian_stats_merge",
    "fd_infinity", "mmd2_weighted", "vendi_score_weighted", "median_bandwidth", "by_group",
    "values_by_group", "pooled", "group_labels", "bca_interval", "percentile_interval",
    "verification_pairs",
    "pair_scores", "roc_auc", "equal_error_rate", "tar_at_far", "verification_accuracy",
    "verification_summary", "xla_only",
    # intervals, contrasts and estimands, tested in test_groups.py and test_estimands.py
    "basic_interval", "jackknife_variance", "t_interval", "wilson_interval", "proportion", "group_contrast", "contrast",
    "chain",
    "gaussian_mmd2", "audit_space", "audit_dimension", "space_rows", "identity_spreads",
    # per-sample PRDC (test_reference.py) and the cluster bootstrap (test_verification.py)
    "knn_membership", "clustered_accuracy",
    # classical tests, the identity threshold and the transfer length scale (test_classical.py)
    "group_tests", "identity_match", "default_length_scale",
    # pixel distances of an edit pair (test_reference.py, against torch's losses)
    "pixel_distances",
    # the analytical training-mix model, checked against Monte Carlo in test_training_mix.py
    "transfer_kernel", "mixing", "fit_generator", "noise_free_generator", "sample_training_stats",
    "bures_squared", "gaussian_frechet", "expected_fd", "measured_fd_bias", "ncx2_cdf",
    "generated_spread", "expected_verification", "kinds_verification", "target_roots", "with_extra", "evaluate_allocation", "plan_mix",
}


def test_every_metric_is_classified():
    public = {n for n in fc.__all__ if inspect.isfunction(getattr(fc, n))}
    unclassified = public - CLASSIFIED - NOT_METRICS
    assert not unclassified, f"classify these public functions in test_properties.py: {unclassified}"


def _sample(seed, n=24, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n + 3, d)) * 1.5 + 0.3


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9)


seeds = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("name", sorted(ZERO_ON_IDENTICAL))
@given(seed=seeds)
def test_zero_on_identical_sets(name, seed):
    x, _ = _sample(seed)
    assert abs(float(TWO_SAMPLE[name](x, x))) < 1e-9


@pytest.mark.parametrize("name", sorted(SYMMETRIC))
@given(seed=seeds)
def test_symmetry(name, seed):
    x, y = _sample(seed)
    _close(TWO_SAMPLE[name](x, y), TWO_SAMPLE[name](y, x))


def test_prdc_swaps_precision_and_recall():
    x, y = _sample(1)
    a, b = fc.prdc(x, y, k=3), fc.prdc(y, x, k=3)
    assert float(a.precision) == float(b.recall) and float(a.recall) == float(b.precision)


@pytest.mark.parametrize("name", sorted(PERMUTATION_INVARIANT))
@given(seed=seeds)
def test_permutation_invariance(name, seed):
    x, y = _sample(seed)
    rng = np.random.default_rng(seed)
    if name in ONE_SAMPLE:
        _close(ONE_SAMPLE[name](x), ONE_SAMPLE[name](x[rng.permutation(len(x))]))
    else:
        _close(TWO_SAMPLE[name](x, y), TWO_SAMPLE[name](x[rng.permutation(len(x))], y[rng.permutation(len(y))]))


@pytest.mark.parametrize("name", sorted(ROTATION_INVARIANT))
@given(seed=seeds)
def test_rotation_invariance(name, seed):
    x, y = _sample(seed)
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(x.shape[1],) * 2))[0]
    if name in ONE_SAMPLE:
        _close(ONE_SAMPLE[name](x), ONE_SAMPLE[name](x @ q))
    else:
        _close(TWO_SAMPLE[name](x, y), TWO_SAMPLE[name](x @ q, y @ q))


@pytest.mark.parametrize("name", sorted(SHIFT_INVARIANT))
@given(seed=seeds, shift=hnp.arrays(np.float64, 5, elements=st.floats(-3, 3)))
def test_shift_invariance(name, seed, shift):
    x, y = _sample(seed)
    if name in ONE_SAMPLE:
        _close(ONE_SAMPLE[name](x), ONE_SAMPLE[name](x + shift))
    else:
        _close(TWO_SAMPLE[name](x, y), TWO_SAMPLE[name](x + shift, y + shift))


@pytest.mark.parametrize("name", sorted(PAIRED))
@given(seed=seeds, scale=st.floats(0.1, 10))
def test_cosine_metrics_are_scale_invariant_and_bounded(name, seed, scale):
    a, b = _sample(seed, n=10)
    b = b[:10]
    v = np.asarray(PAIRED[name](a, b))
    assert np.all(np.abs(v) <= 1 + 1e-12)
    if name != "directional_similarity":
        _close(v, PAIRED[name](a * scale, b))


@pytest.mark.parametrize("name", ["frechet_distance", "frechet_distance unbiased", "mmd2 cubic", "prdc"])
def test_vmap_equals_loop(name):
    rng = np.random.default_rng(5)
    xs, ys = rng.normal(size=(4, 30, 6)), rng.normal(size=(4, 35, 6)) + 0.5
    batched = np.asarray(jax.vmap(TWO_SAMPLE[name])(xs, ys))
    looped = np.stack([np.asarray(TWO_SAMPLE[name](a, b)) for a, b in zip(xs, ys)])
    np.testing.assert_allclose(batched, looped, rtol=FLOAT64_REFERENCE)


def test_vmap_equals_loop_for_vendi():
    xs = np.random.default_rng(6).normal(size=(3, 40, 6))
    batched = jax.vmap(ONE_SAMPLE["vendi_score cosine"])(xs)
    np.testing.assert_allclose(batched, [ONE_SAMPLE["vendi_score cosine"](a) for a in xs], rtol=FLOAT64_REFERENCE)


def test_vendi_bounds():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert float(fc.vendi_score(np.ones((10, 3)))) == pytest.approx(1.0, rel=1e-12)
    assert 1.0 <= float(fc.vendi_score(x)) <= 8.0 + 1e-9  # cosine kernel rank <= d
    assert float(fc.vendi_score(np.eye(6))) == pytest.approx(6.0, rel=1e-12)
