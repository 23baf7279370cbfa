"""Who gets drawn, the array side: zero-shot probabilities, confusion counts, the adjusted
classify-and-count estimate, divergences, HDIs and skin tone, each against an independent
reference (numpy loops, scipy, arviz, scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import faceaudit.core as fc
from tests.tolerances import EXACT_ALGEBRA, FLOAT64_REFERENCE


def test_zero_shot_probabilities_match_a_loop_over_templates():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(7, 16)), rng.normal(size=(3, 4, 16))
    got = np.asarray(fc.zero_shot_probabilities(images, texts, logit_scale=50.0))
    expected = np.zeros((7, 4))
    for i, x in enumerate(images):
        centres = []
        for k in range(4):
            mean = sum(t / np.linalg.norm(t) for t in texts[:, k]) / 3
            centres.append(mean / np.linalg.norm(mean))
        logits = [50.0 * x @ c / np.linalg.norm(x) for c in centres]
        expected[i] = scipy.special.softmax(logits)
    np.testing.assert_allclose(got, expected, atol=FLOAT64_REFERENCE)


def test_zero_shot_refuses_mismatched_texts_and_zero_images():
    with pytest.raises(ValueError, match="texts must have shape"):
        fc.zero_shot_probabilities(np.ones((2, 8)), np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="at least 2 categories"):
        fc.zero_shot_probabilities(np.ones((2, 8)), np.ones((1, 1, 8)))
    with pytest.raises(ValueError, match="all-zero embedding in row 1"):
        fc.zero_shot_probabilities(np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2)[None])


def test_adjusted_classify_and_count_inverts_an_exact_confusion():
    """With the perceived mix exactly C^T pi, ACC returns pi (a closed form)."""
    rng = np.random.default_rng(1)
    confusion = 0.6 * np.eye(5) + 0.4 * rng.dirichlet(np.ones(5), size=5)
    counts = confusion * 1e6
    pi = rng.dirichlet(np.ones(5), size=3)
    np.testing.assert_allclose(fc.adjusted_classify_and_count(counts, pi @ confusion), pi, atol=1e-9)
    assert np.allclose(fc.confusion_matrix(counts), confusion, atol=EXACT_ALGEBRA)


def test_adjusted_classify_and_count_clips_onto_the_simplex():
    counts = np.array([[90, 10], [40, 60]])
    got = fc.adjusted_classify_and_count(counts, np.array([0.95, 0.05]))  # below what any mix can produce
    np.testing.assert_allclose(got, [1.0, 0.0])


def test_confusion_counts_match_a_crosstab():
    rng = np.random.default_rng(2)
    true, perceived = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    expected = np.array([[np.sum((true == j) & (perceived == i)) for i in range(4)] for j in range(4)])
    np.testing.assert_array_equal(fc.confusion_counts(true, perceived, 4), expected)
    with pytest.raises(ValueError, match="perceived labels must lie in 0..3"):
        fc.confusion_counts([0], [4], 4)
    with pytest.raises(ValueError, match=r"true categories \[1\] have no labelled faces"):
        fc.confusion_matrix([[3, 1], [0, 0]])


def test_mix_divergences_match_scipy():
    rng = np.random.default_rng(3)
    mix, reference = rng.dirichlet(np.ones(6), size=10), rng.dirichlet(np.ones(6))
    mix[0, 2] = 0.0
    mix[0] /= mix[0].sum()
    got = fc.mix_divergences(mix, reference)
    np.testing.assert_allclose(got["kl"], [scipy.stats.entropy(m, reference) for m in mix], atol=FLOAT64_REFERENCE)
    np.testing.assert_allclose(got["entropy"], [scipy.stats.entropy(m) / np.log(6) for m in mix], atol=FLOAT64_REFERENCE)
    np.testing.assert_allclose(got["mad"], np.abs(mix - reference).mean(axis=1), atol=EXACT_ALGEBRA)


def test_reference_mix_is_checked_by_category():
    assert fc.check_reference_mix(None, ["a", "b"]).tolist() == [0.5, 0.5]
    np.testing.assert_allclose(fc.check_reference_mix({"a": 3, "b": 1}, ["a", "b"]), [0.75, 0.25])
    with pytest.raises(ValueError, match=r"unknown \['c'\]; missing \['b'\]"):
        fc.check_reference_mix({"a": 0.5, "c": 0.5}, ["a", "b"])
    with pytest.raises(ValueError, match="must be positive"):
        fc.check_reference_mix({"a": 1.0, "b": 0.0}, ["a", "b"])


def test_hdi_matches_arviz():
    from faceaudit.files.quiet import arviz

    rng = np.random.default_rng(4)
    draws = rng.gamma(2.0, size=(2001, 3))
    low, high = fc.hdi(draws, 0.9)
    for j in range(3):
        expected = arviz().hdi(draws[:, j], hdi_prob=0.9)
        np.testing.assert_allclose([low[j], high[j]], expected, atol=EXACT_ALGEBRA)


# --- skin tone -----------------------------------------------------------------------------


def test_cielab_matches_scikit_image():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(5)
    rgb = rng.random((500, 3))
    # scikit-image rounds the sRGB -> XYZ matrix to 6 digits, faceaudit uses Lindbloom's 7:
    # the two differ by up to ~0.005 in L*a*b* units (a colour difference 200 times below
    # what an eye can see, Delta E ~ 1).
    published_constants = 0.01
    np.testing.assert_allclose(fc.srgb_to_lab(rgb), rgb2lab(rgb[None])[0], atol=published_constants)
    np.testing.assert_allclose(_lab_to_srgb(fc.srgb_to_lab(rgb)), rgb, atol=1e-10)  # the inverse the patches use


def _lab_to_srgb(lab):
    from faceaudit.core._skin_tone import lab_to_srgb

    return lab_to_srgb(lab)


@pytest.mark.parametrize("lab", [(75, 5, 12), (68, 10, 18), (60, 12, 20), (52, 14, 24), (40, 15, 25), (30, 12, 18),
                                 (22, 8, 10), (85, 3, 8)])
def test_ita_of_synthetic_skin_patches_within_one_degree(lab):
    """A 64 x 64 patch of known CIELAB colour with pixel noise (as skin has), stored as
    8-bit sRGB the way an image file holds it: the recovered ITA is within 1 degree."""
    rng = np.random.default_rng(6)
    lab = np.asarray(lab, dtype=float)
    patch = lab + rng.normal(scale=(1.5, 1.0, 1.0), size=(64 * 64, 3))
    rgb = np.round(255 * _lab_to_srgb(patch)).astype(np.uint8)
    got = fc.skin_tone(rgb)
    truth = np.degrees(np.arctan2(lab[0] - 50, lab[2]))
    assert abs(got["ita"] - truth) < 1.0, (got, truth)


def test_ita_categories_and_monk_bins():
    assert [fc.ITA_CATEGORIES[i] for i in fc.ita_category(np.array([56.0, 41.5, 28.5, 10.5, -29.0, -31.0]))] == list(
        fc.ITA_CATEGORIES)
    from faceaudit.core._skin_tone import MONK_HEX

    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in MONK_HEX], dtype=np.uint8)
    assert fc.monk_bin(fc.srgb_to_lab(rgb)).tolist() == list(range(10))
    assert fc.ita(np.array([50.0, 0.0, 0.0])) == 0.0  # b* = 0: atan2 stays finite
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        fc.skin_tone(np.zeros((0, 3)))


def test_nearest_distance_matches_scipy_cdist():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(300, 12)), rng.normal(size=(130, 12)) + 0.5
    expected = cdist(fake, real).min(axis=1)
    np.testing.assert_allclose(fc.nearest_distance(real, fake, block_size=37), expected, atol=1e-10)
