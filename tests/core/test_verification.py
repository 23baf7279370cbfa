"""Face verification summaries against sklearn and explicit loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import faceaudit.core as fc
from tests import references as ref
from tests.tolerances import EXACT_ALGEBRA, FLOAT64_REFERENCE


@pytest.fixture
def faces(rng):
    """60 identities in 3 groups; same-group identities are closer (identity collapse)."""
    n_id, per_id, d = 60, 5, 16
    group_of_id = np.repeat(np.arange(3), n_id // 3)
    group_centre = rng.normal(size=(3, d)) * 3
    spread = np.array([1.0, 1.0, 0.3])[group_of_id][:, None]  # group 2 collapsed
    centres = group_centre[group_of_id] + spread * rng.normal(size=(n_id, d))
    identity = np.repeat(np.arange(n_id), per_id)
    emb = centres[identity] + 0.35 * rng.normal(size=(n_id * per_id, d))
    return emb, identity, group_of_id[identity]


def test_pairs_are_balanced_and_valid(faces, key):
    emb, identity, group = faces
    for pool in ("any", "same_group"):
        pairs = fc.verification_pairs(key, identity, group, impostors=pool)
        gen = pairs.genuine
        assert gen.sum() == (~gen).sum() == 60 * 10
        assert np.all(identity[pairs.first[gen]] == identity[pairs.second[gen]])
        assert np.all(identity[pairs.first[~gen]] != identity[pairs.second[~gen]])
        if pool == "same_group":
            assert np.all(group[pairs.first[~gen]] == group[pairs.second[~gen]])
        assert len(set(zip(pairs.first, pairs.second))) == len(pairs.first)  # no duplicates


def test_summaries_against_sklearn_and_loops(faces, key):
    emb, identity, group = faces
    pairs = fc.verification_pairs(key, identity, group, impostors="same_group")
    scores = np.asarray(fc.pair_scores(emb, pairs))
    gen = pairs.genuine
    assert float(fc.roc_auc(scores, gen)) == pytest.approx(roc_auc_score(gen, scores), rel=EXACT_ALGEBRA)
    assert float(fc.equal_error_rate(scores, gen)) == pytest.approx(ref.eer(scores, gen), abs=EXACT_ALGEBRA)
    for far in (0.0, 0.01, 0.1):
        assert float(fc.tar_at_far(scores, gen, far=far)) == pytest.approx(ref.tar_at_far(scores, gen, far), abs=EXACT_ALGEBRA)
    fold = np.asarray(jax.random.permutation(jax.random.key(7), len(scores))) % 10
    got = fc.verification_accuracy(jax.random.key(7), scores, gen, folds=10)
    assert float(got) == pytest.approx(ref.cv_accuracy(scores, gen, fold), abs=FLOAT64_REFERENCE)


def test_ties_are_handled_like_sklearn(rng):
    scores = rng.integers(0, 5, 200).astype(float)  # heavy ties
    gen = rng.random(200) < 0.5
    assert float(fc.roc_auc(scores, gen)) == pytest.approx(roc_auc_score(gen, scores), rel=EXACT_ALGEBRA)
    assert float(fc.equal_error_rate(scores, gen)) == pytest.approx(ref.eer(scores, gen), abs=EXACT_ALGEBRA)


def test_weights_equal_repetition(rng):
    scores = rng.normal(size=80)
    gen = rng.random(80) < 0.4
    w = rng.integers(1, 4, 80).astype(float)
    rep = np.repeat(np.arange(80), w.astype(int))
    assert float(fc.roc_auc(scores, gen, weights=w)) == pytest.approx(roc_auc_score(gen[rep], scores[rep]), rel=EXACT_ALGEBRA)


def test_same_group_impostors_expose_collapsed_groups(faces, key):
    """The collapsed group (2) is hard only when impostors come from the same group."""
    emb, identity, group = faces

    def accuracy(pool, g):
        rows = group == g
        pairs = fc.verification_pairs(key, identity[rows], group[rows], impostors=pool)
        return float(fc.verification_accuracy(key, fc.pair_scores(emb[rows], pairs), pairs.genuine))

    assert accuracy("same_group", 2) < accuracy("same_group", 0) - 0.1
    all_pairs = fc.verification_pairs(key, identity, group, impostors="any")
    assert float(fc.verification_accuracy(key, fc.pair_scores(emb, all_pairs), all_pairs.genuine)) > 0.95


def test_verification_input_errors(key):
    with pytest.raises(ValueError, match="no identity has two or more images"):
        fc.verification_pairs(key, np.arange(10))
    with pytest.raises(ValueError, match="needs group labels"):
        fc.verification_pairs(key, np.repeat(np.arange(5), 2), impostors="same_group")
    with pytest.raises(ValueError, match="both genuine and impostor"):
        fc.roc_auc(np.arange(5.0), np.ones(5, bool))


def test_clustered_accuracy_resamples_identities(rng, key):
    """The value is the balanced cross-validated accuracy of the kept pairs; replicates
    redraw identities, so a verifier with identity-level variation gets a wider interval
    than pair-level resampling would give; bounds stay in [0, 1]."""
    n_id, per = 30, 4
    code = np.repeat(np.arange(n_id), per)
    identity = np.array([f"id{i:02d}" for i in code])  # sorted names: cluster i is id{i:02d}
    centres = rng.normal(size=(n_id, 8)) * 1.0
    x = centres[code] + rng.normal(size=(n_id * per, 8)) * 0.6
    pairs = fc.verification_pairs(key, identity, impostors="any", impostors_per_genuine=2.0)
    scores = fc.pair_scores(x, pairs)
    keep = np.ones(pairs.genuine.size, bool)
    result = fc.clustered_accuracy(key, scores, pairs, identity, num_bootstrap=200)
    base = np.where(pairs.genuine, 1.0 / pairs.genuine.sum(), 1.0 / (~pairs.genuine).sum())
    k_cv, _ = jax.random.split(key)
    want = fc.verification_accuracy(k_cv, scores, pairs.genuine, weights=jnp.asarray(base))
    assert float(result.value) == pytest.approx(float(want), rel=1e-12)
    assert 0.0 <= result.low < float(result.value) < result.high <= 1.0
    assert result.pairs == keep.sum() and result.replicates.shape == (200,)
    # Reference: the replicate for given identity counts c is the weighted accuracy with
    # pair weight base * c[first] * c[second], renormalised per class.
    draws = jax.random.randint(jax.random.split(key)[1], (200, n_id), 0, n_id)
    c = np.bincount(np.asarray(draws[0]), minlength=n_id).astype(float)
    w = base * c[code[pairs.first]] * c[code[pairs.second]]
    w = np.where(pairs.genuine, w / w[pairs.genuine].sum(), w / w[~pairs.genuine].sum())
    first = fc.verification_accuracy(k_cv, scores, pairs.genuine, weights=jnp.asarray(w))
    assert result.replicates[0] == pytest.approx(float(first), rel=1e-12)
