r"""Face verification from embeddings: pairs, ROC AUC, EER, TAR@FAR, cross-validated accuracy.

A verifier scores a pair of face embeddings (higher = more alike: the negative Euclidean
distance or the cosine) and accepts the pair as the same person when the score passes a
threshold. Genuine pairs share an identity; impostor pairs do not, drawn either from any
group or only from the same group as the first face. The study found same-group impostors
hardest where generated identities collapse; ``verification_pairs`` builds both.

All summaries work on a flat score array with a boolean ``genuine`` mask and optional
frequency weights, so one compiled function serves every group and bootstrap replicate.
Ties are handled as sklearn does: a threshold at a tied score accepts the whole tie.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from ._typing import Array, Features, PRNGKey, Scalar

IMPOSTOR_POOLS = ("any", "same_group")


class Pairs(NamedTuple):
    """Index pairs into an embedding array; ``genuine[p]`` when both share an identity."""

    first: np.ndarray
    second: np.ndarray
    genuine: np.ndarray


def verification_pairs(
    key: PRNGKey,
    identity,
    group=None,
    *,
    impostors: str = "any",
    impostors_per_genuine: float = 1.0,
    max_genuine: int | None = None,
) -> Pairs:
    """All genuine pairs (optionally capped) and a balanced random draw of impostor pairs.

    Args:
        key: PRNG key for the impostor draw (and the genuine cap).
        identity: ``(n,)`` identity labels (any hashable values).
        group: ``(n,)`` group labels; required for ``impostors="same_group"``.
        impostors: ``"any"`` (impostor from any other identity) or ``"same_group"``.
        impostors_per_genuine: impostor pairs per genuine pair.
        max_genuine: keep at most this many genuine pairs (uniformly at random).

    Raises:
        ValueError: no identity with two images, or no valid impostor pair.
    """
    _validate.key(key)
    if impostors not in IMPOSTOR_POOLS:
        raise ValueError(f"impostors must be one of {IMPOSTOR_POOLS}, got {impostors!r}")
    identity = np.asarray(identity)
    n = identity.shape[0]
    if impostors == "same_group":
        if group is None:
            raise ValueError("impostors='same_group' needs group labels")
        group = np.asarray(group)
        if group.shape != identity.shape:
            raise ValueError(f"group has shape {group.shape} but identity has {identity.shape}")
    _, ident_code = np.unique(identity, return_inverse=True)
    same = ident_code[:, None] == ident_code[None, :]
    i_idx, j_idx = np.triu_indices(n, 1)
    gen = same[i_idx, j_idx]
    if not gen.any():
        raise ValueError("no identity has two or more images, so there are no genuine pairs")
    k_gen, k_imp = jax.random.split(key)
    gen_i, gen_j = i_idx[gen], j_idx[gen]
    if max_genuine is not None and gen_i.size > max_genuine:
        keep = np.sort(np.asarray(jax.random.choice(k_gen, gen_i.size, (max_genuine,), replace=False)))
        gen_i, gen_j = gen_i[keep], gen_j[keep]
    valid_imp = ~gen
    if impostors == "same_group":
        _, group_code = np.unique(group, return_inverse=True)
        valid_imp &= group_code[i_idx] == group_code[j_idx]
    imp_i, imp_j = i_idx[valid_imp], j_idx[valid_imp]
    if imp_i.size == 0:
        raise ValueError(f"no impostor pairs available with impostors={impostors!r}")
    want = min(imp_i.size, int(round(impostors_per_genuine * gen_i.size)))
    pick = np.sort(np.asarray(jax.random.choice(k_imp, imp_i.size, (want,), replace=False)))
    first = np.concatenate([gen_i, imp_i[pick]])
    second = np.concatenate([gen_j, imp_j[pick]])
    genuine = np.concatenate([np.ones(gen_i.size, bool), np.zeros(want, bool)])
    return Pairs(first, second, genuine)


def pair_scores(embeddings: Features, pairs: Pairs, *, similarity: str = "euclidean") -> Array:
    """Score each pair: ``-||a - b||`` (``"euclidean"``, dlib/FaceNet) or ``cos(a, b)``."""
    x = _validate.features(embeddings, "embeddings", min_rows=2).astype(jnp.float64)
    a, b = x[np.asarray(pairs.first)], x[np.asarray(pairs.second)]
    if similarity == "euclidean":
        return -jnp.linalg.norm(a - b, axis=1)
    if similarity == "cosine":
        return jnp.sum(a * b, axis=1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))
    raise ValueError(f"similarity must be 'euclidean' or 'cosine', got {similarity!r}")


def _roc(scores, genuine, weights):
    """Weighted ROC at every distinct threshold, from the highest score down.

    Returns ``(fpr, tpr, valid, sorted_scores)``; ``valid[i]`` marks the last element of a
    run of tied scores, the only positions that are real ROC points.
    """
    order = jnp.argsort(-scores)
    s = scores[order]
    g = genuine[order]
    w = weights[order]
    tp = jnp.cumsum(jnp.where(g, w, 0.0))
    fp = jnp.cumsum(jnp.where(g, 0.0, w))
    valid = jnp.append(s[1:] != s[:-1], True)
    return fp / fp[-1], tp / tp[-1], valid, s


def _auc(scores, genuine, weights):
    # Mann-Whitney: P(genuine > impostor) + P(tie) / 2, with frequency weights.
    fpr, tpr, valid, _ = _roc(scores, genuine, weights)
    idx = jnp.arange(fpr.shape[0])
    prev = jax.lax.cummax(jnp.where(valid, idx, -1), axis=0)
    prev = jnp.concatenate([jnp.array([-1]), prev[:-1]])
    fpr0 = jnp.where(prev >= 0, fpr[jnp.maximum(prev, 0)], 0.0)
    tpr0 = jnp.where(prev >= 0, tpr[jnp.maximum(prev, 0)], 0.0)
    trapezoids = (fpr - fpr0) * (tpr + tpr0) / 2.0
    return jnp.sum(jnp.where(valid, trapezoids, 0.0))


def _eer(scores, genuine, weights):
    fpr, tpr, valid, _ = _roc(scores, genuine, weights)
    fnr = 1.0 - tpr
    n = fpr.shape[0]
    idx = jnp.arange(n)
    crossed = valid & (fpr >= fnr)
    b = jnp.argmax(crossed)  # first ROC point at or past the crossing (the last always is)
    prev = jnp.max(jnp.where(valid & (idx < b), idx, -1))
    fpr_a = jnp.where(prev >= 0, fpr[jnp.maximum(prev, 0)], 0.0)
    fnr_a = jnp.where(prev >= 0, fnr[jnp.maximum(prev, 0)], 1.0)
    fpr_b, fnr_b = fpr[b], fnr[b]
    denom = (fpr_b - fpr_a) - (fnr_b - fnr_a)
    alpha = jnp.where(denom != 0, (fnr_a - fpr_a) / jnp.where(denom != 0, denom, 1.0), 0.0)
    return fpr_a + alpha * (fpr_b - fpr_a)


def _tar_at_far(scores, genuine, weights, far):
    fpr, tpr, valid, _ = _roc(scores, genuine, weights)
    return jnp.max(jnp.where(valid & (fpr <= far), tpr, 0.0))


def _best_threshold(scores, genuine, weights):
    """Threshold maximising weighted accuracy: midway below the chosen tie run."""
    fpr, tpr, valid, s = _roc(scores, genuine, weights)
    n_gen = jnp.sum(jnp.where(genuine, weights, 0.0))
    n_imp = jnp.sum(jnp.where(genuine, 0.0, weights))
    correct = tpr * n_gen + (1.0 - fpr) * n_imp
    correct = jnp.where(valid, correct, -jnp.inf)
    i = jnp.argmax(correct)
    reject_all = n_imp
    below = jnp.concatenate([s[1:], jnp.array([-jnp.inf])])
    # Lowest score still accepted is s[i]; the next distinct score down is below[i].
    threshold = jnp.where(jnp.isfinite(below[i]), (s[i] + below[i]) / 2.0, s[i] - 1.0)
    return jnp.where(correct[i] > reject_all, threshold, jnp.inf)  # ties: reject all


@functools.partial(jax.jit, static_argnames="folds")
def _cv_accuracy(key, scores, genuine, weights, folds: int):
    fold = jax.random.permutation(key, scores.shape[0]) % folds

    def one(f):
        test = fold == f
        # Training pairs carry their weights; test pairs get weight 0 (and vice versa).
        w_train = jnp.where(test, 0.0, weights)
        # Zero-weight elements are still sorted, so move them out of the threshold search.
        t = _best_threshold(jnp.where(test, -jnp.inf, scores), genuine, w_train)
        w_test = jnp.where(test, weights, 0.0)
        correct = jnp.where(genuine, scores >= t, scores < t)
        return jnp.sum(w_test * correct) / jnp.sum(w_test)

    return jnp.mean(jax.vmap(one)(jnp.arange(folds)))


class VerificationSummary(NamedTuple):
    auc: Scalar
    eer: Scalar
    tar_at_far: Scalar
    accuracy: Scalar


def _check_scores(scores, genuine, weights=None):
    s = _validate.features(jnp.asarray(scores)[:, None] if hasattr(scores, "shape") else scores, "scores", min_rows=2)[:, 0]
    g = np.asarray(genuine)
    if g.dtype != bool or g.shape != s.shape:
        raise ValueError(f"genuine must be a boolean array of shape {s.shape}")
    if g.all() or not g.any():
        raise ValueError("scores need both genuine and impostor pairs")
    w = jnp.ones(s.shape[0]) if weights is None else _validate.weights(weights, s.shape[0], "weights")
    return s.astype(jnp.float64), jnp.asarray(g), w.astype(jnp.float64)


def roc_auc(scores, genuine, weights=None) -> Scalar:
    """Area under the ROC curve (ties count one half), as ``sklearn.metrics.roc_auc_score``."""
    return jax.jit(_auc)(*_check_scores(scores, genuine, weights))


def equal_error_rate(scores, genuine, weights=None) -> Scalar:
    """Rate where false accepts equal false rejects, interpolated between ROC points."""
    return jax.jit(_eer)(*_check_scores(scores, genuine, weights))


def tar_at_far(scores, genuine, *, far: float = 1e-3, weights=None) -> Scalar:
    """True accept rate at the best threshold whose false accept rate is at most ``far``."""
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far}")
    return jax.jit(_tar_at_far)(*_check_scores(scores, genuine, weights), far)


def verification_accuracy(key: PRNGKey, scores, genuine, *, folds: int = 10, weights=None) -> Scalar:
    """Accuracy at a threshold chosen on the other folds (LFW protocol), averaged over folds.

    Each fold's threshold maximises training accuracy over all distinct training scores
    (midway between the last accepted and the next score), then is applied to the held-out
    fold: the accuracy is not optimistically biased by choosing on the test pairs.
    """
    _validate.key(key)
    folds = _validate.positive_int(folds, "folds", minimum=2)
    s, g, w = _check_scores(scores, genuine, weights)
    if folds > s.shape[0]:
        raise ValueError(f"folds={folds} exceeds the number of pairs ({s.shape[0]})")
    return _cv_accuracy(key, s, g, w, folds)


def verification_summary(key: PRNGKey, scores, genuine, *, far: float = 1e-3, folds: int = 10) -> VerificationSummary:
    """AUC, EER, TAR at ``far`` and cross-validated accuracy in one call."""
    s, g, w = _check_scores(scores, genuine)
    return VerificationSummary(
        jax.jit(_auc)(s, g, w),
        jax.jit(_eer)(s, g, w),
        jax.jit(_tar_at_far)(s, g, w, far),
        verification_accuracy(key, s, g, folds=folds),
    )


class ClusteredAccuracy(NamedTuple):
    """Verification accuracy with an identity-cluster bootstrap interval (basic).

    Attributes:
        value: balanced cross-validated accuracy on the pairs.
        se: standard deviation of the usable bootstrap replicates.
        low, high: interval ends, clipped to ``[0, 1]`` (NaN with fewer than 2 replicates).
        pairs: pairs with non-zero weight.
        replicates: ``(B,)`` replicate accuracies (NaN where a replicate lost all genuine
            or all impostor weight).
    """

    value: Scalar
    se: float
    low: float
    high: float
    pairs: int
    replicates: np.ndarray


@functools.partial(jax.jit, static_argnames="folds")
def _replicate_accuracies(key, scores, genuine, base, first, second, counts, folds: int):
    def one(c):
        w = base * c[first] * c[second]
        gen_w, imp_w = jnp.sum(jnp.where(genuine, w, 0.0)), jnp.sum(jnp.where(genuine, 0.0, w))
        ok = (gen_w > 0) & (imp_w > 0)
        w = jnp.where(genuine, w / jnp.where(gen_w > 0, gen_w, 1.0), w / jnp.where(imp_w > 0, imp_w, 1.0))
        return jnp.where(ok, _cv_accuracy(key, scores, genuine, jnp.where(ok, w, 1.0), folds), jnp.nan)

    return jax.vmap(one)(counts)


def clustered_accuracy(
    key: PRNGKey,
    scores,
    pairs: Pairs,
    identity,
    *,
    keep=None,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    folds: int = 10,
) -> ClusteredAccuracy:
    """Balanced verification accuracy with an interval from resampling *identities*.

    Pairs share images and identities, so pairs are not independent: each bootstrap
    replicate redraws the clusters (identities) with replacement and weights a pair by the
    product of its two clusters' multiplicities, all replicates in one vmapped call.
    Genuine and impostor pairs get equal total weight (balanced accuracy).

    Args:
        key: PRNG key (cross-validation folds and the cluster draws).
        scores: ``(P,)`` pair scores (``pair_scores(embeddings, pairs)``).
        pairs: the scored pairs (``verification_pairs``): which images, and which are genuine.
        identity: ``(N,)`` identity label of every image; identities are the clusters.
        keep: ``(P,)`` bool, the pairs that count (default: all).
        num_bootstrap: cluster-bootstrap replicates (0: no interval).
    """
    k_cv, k_boot = jax.random.split(_validate.key(key))
    s, g, _ = _check_scores(scores, pairs.genuine)
    g_np = np.asarray(g)
    keep = np.ones(g_np.size, bool) if keep is None else np.asarray(keep, dtype=bool)
    if not (keep & g_np).any() or not (keep & ~g_np).any():
        raise ValueError("the kept pairs need both genuine and impostor pairs")
    base = keep * np.where(g_np, 1.0 / (keep & g_np).sum(), 1.0 / (keep & ~g_np).sum())
    value = _cv_accuracy(k_cv, s, g, jnp.asarray(base), _validate.positive_int(folds, "folds", minimum=2))
    num_bootstrap = _validate.positive_int(num_bootstrap, "num_bootstrap", minimum=0)
    kept = int(keep.sum())
    if num_bootstrap < 2:
        return ClusteredAccuracy(value, float("nan"), float("nan"), float("nan"), kept, np.zeros(0))
    # Clusters are the identities that appear in some pair; an identity in no pair carries no weight.
    labels = np.asarray(identity).astype(str)
    _, code = np.unique(np.concatenate([labels[np.asarray(pairs.first)], labels[np.asarray(pairs.second)]]),
                        return_inverse=True)
    first, second = code[: g_np.size], code[g_np.size:]
    n_clusters = int(code.max()) + 1
    draws = jax.random.randint(k_boot, (num_bootstrap, n_clusters), 0, n_clusters)
    counts = jax.vmap(lambda d: jnp.zeros(n_clusters).at[d].add(1.0))(draws)
    reps = np.asarray(_replicate_accuracies(k_cv, s, g, jnp.asarray(base), jnp.asarray(first), jnp.asarray(second),
                                            counts, folds))
    usable = reps[np.isfinite(reps)]
    if usable.size < 2:
        return ClusteredAccuracy(value, float("nan"), float("nan"), float("nan"), kept, reps)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(usable, [tail, 1.0 - tail])
    v = float(value)
    return ClusteredAccuracy(value, float(np.std(usable, ddof=1)), float(np.clip(2 * v - hi, 0.0, 1.0)),
                             float(np.clip(2 * v - lo, 0.0, 1.0)), kept, reps)


# Descriptor distance below which two faces are one person, per identity encoder: dlib's
# 128-d descriptor uses 0.6 (dlib's and face_recognition's threshold; 99.38% on LFW).
IDENTITY_THRESHOLDS = {"dlib": 0.6}


class IdentityMatch(NamedTuple):
    """Per pair: the descriptor distance and whether it is one person (1.0 / 0.0); NaN
    where a face was not found. ``preserved`` is None for an encoder without a threshold."""

    distance: np.ndarray
    preserved: np.ndarray | None


def identity_match(first, second, found, *, encoder: str) -> IdentityMatch:
    """Whether each pair of identity descriptors (rows of ``first`` and ``second``, where
    ``found``) shows one person, by ``encoder``'s threshold (``IDENTITY_THRESHOLDS``; the
    kind before any ``:`` of an encoder id)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"identity descriptors must be two (P, d) arrays of one shape, got {a.shape} and {b.shape}")
    found = np.asarray(found, dtype=bool)
    distance = np.where(found, np.linalg.norm(a - b, axis=1), np.nan)
    threshold = IDENTITY_THRESHOLDS.get(encoder.split(":")[0])
    if threshold is None:
        return IdentityMatch(distance, None)
    return IdentityMatch(distance, np.where(found, (distance < threshold).astype(float), np.nan))
