r"""Expected best-threshold face verification of generated identities (isotropic model).

Within a generated group ``g`` an identity's images are ``x = c + e`` with identity centres
``c ~ N(m_g, sb_g^2 I)`` and image noise ``e ~ N(0, sw^2 I)`` in ``R^d``. For a pair,
``D = x_1 - x_2 ~ N(Delta, v I)`` and ``|D|^2 / v`` is (non-central) chi-square with ``d``
degrees of freedom:

* genuine (same identity): ``v = 2 sw^2``, ``Delta = 0``;
* same-group impostor: ``v = 2 (sw^2 + sb_g^2)``, ``Delta = 0``;
* any-group impostor, the other identity from group ``h``: ``v = 2 sw^2 + sb_g^2 +
  sb_h^2``, non-centrality ``|m_g - m_h|^2 / v``.

A verifier accepts ``|D|^2 <= t``; with balanced genuine and impostor pairs its accuracy is
``(F_gen(t) + 1 - F_imp(t)) / 2``, maximised where the densities cross. For same-group
impostors that crossing is closed form, ``t* = d v_1 v_2 log(v_2 / v_1) / (v_2 - v_1)``;
for any-group impostors (a mixture) it is found by a grid and Newton steps, and by the
envelope theorem the gradient of the best accuracy is the partial gradient at ``t*``.

Identity collapse (``design/analytical-model.md``): an invented name's generated centres
have between-identity covariance ``(1 - w_g)^2 B_g``, a celebrity's keep ``B_g``; guidance
scales all spreads by ``gamma``. Same-group verification is therefore lowest for the groups
with the strongest shrinkage, i.e. the least training data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammainc, gammaln

from ._typing import Array

#: Poisson terms summed around the mode of the non-central chi-square mixture; covers
#: non-centralities up to ~1,000 to better than 1e-12.
NCX2_TERMS = 512


def ncx2_cdf(x, df, nc, *, num_terms: int = NCX2_TERMS) -> Array:
    """``P(chi2_df(nc) <= x)``: a window of the Poisson mixture of central chi-squares.

    The window of ``num_terms`` Poisson indices is centred on the mode ``nc / 2``, so large
    non-centralities do not need more terms; ``nc = 0`` gives the central CDF exactly. Only
    the first central CDF is a ``gammainc`` call; the others follow from the recurrence
    ``P(a + 1, y) = P(a, y) - y^a e^{-y} / Gamma(a + 1)`` (absolute error ~1e-15), which
    makes the mixture as cheap as its Poisson weights.
    """
    x, df, nc = jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.float64) for a in (x, df, nc)))
    half = nc / 2.0
    start = jnp.maximum(jnp.floor(half) - num_terms // 2, 0.0)
    k = start[..., None] + jnp.arange(num_terms, dtype=jnp.float64)
    safe_half = jnp.where(half > 0, half, 1.0)[..., None]
    log_pois = -half[..., None] + k * jnp.log(safe_half) - gammaln(k + 1.0)
    log_pois = jnp.where(half[..., None] > 0, log_pois, jnp.where(k == 0, 0.0, -jnp.inf))
    y = jnp.clip(x, 0.0) / 2.0
    a = df[..., None] / 2.0 + k
    positive = (y > 0)[..., None]
    safe_y = jnp.where(positive, y[..., None], 1.0)
    log_step = jnp.where(positive, a * jnp.log(safe_y) - safe_y - gammaln(a + 1.0), -jnp.inf)
    drops = jnp.cumsum(jnp.exp(log_step), axis=-1) - jnp.exp(log_step)
    first = gammainc(a[..., :1], y[..., None])
    central = jnp.clip(first - drops, 0.0, 1.0)
    return jnp.sum(jnp.exp(log_pois) * central, axis=-1)


class IdentitySpread(NamedTuple):
    """Generated identity structure: ``within`` (scalar ``sw^2``), ``between`` ``(G,)``."""

    within: Array
    between: Array


def generated_spread(within, between, shrink, diversity, *, celebrity: bool = False) -> IdentitySpread:
    """Spreads of generated identities: collapse ``(1 - w_g)^2`` for invented names.

    Args:
        within: real within-identity variance ``sw^2`` (scalar).
        between: ``(G,)`` real between-identity variances ``sb_g^2``.
        shrink: ``(G,)`` shrinkage weights ``w_g`` of the generator (``Mixing.shrink``).
        diversity: ``gamma``.
        celebrity: identities with many training images keep their spread.
    """
    collapse = jnp.ones_like(shrink) if celebrity else (1.0 - shrink) ** 2
    g2 = diversity**2
    return IdentitySpread(g2 * jnp.asarray(within), g2 * collapse * jnp.asarray(between))


class VerificationPrediction(NamedTuple):
    """Best-threshold accuracies ``(G,)`` and the thresholds on ``|D|^2`` that reach them."""

    same_group: Array
    any_group: Array
    threshold_same: Array
    threshold_any: Array


def _any_group_accuracy(t, g, means, spread: IdentitySpread, weights):
    d = means.shape[1]
    v_gen = 2.0 * spread.within
    v_imp = 2.0 * spread.within + spread.between[g] + spread.between
    nc = jnp.sum((means[g] - means) ** 2, axis=-1) / v_imp
    genuine = ncx2_cdf(t / v_gen, d, 0.0)
    impostor = weights @ ncx2_cdf(t / v_imp, d, nc)
    return 0.5 * (genuine + 1.0 - impostor)


def _best_threshold(accuracy, scale):
    """Maximise ``accuracy(t)`` over thresholds ``t > 0``: a log grid over
    ``[0.05, 20] * scale``, then Newton steps in ``log t`` (bounded, ascent only).

    By the envelope theorem the gradient of the maximum is the partial gradient at ``t*``,
    so ``t*`` is returned without gradient.
    """
    grid = scale * jnp.exp(jnp.linspace(jnp.log(0.05), jnp.log(20.0), 96))
    acc = jax.vmap(accuracy)(grid)
    log_t = jnp.log(grid[jnp.argmax(acc)])

    def objective(lt):
        return accuracy(jnp.exp(lt))

    grad, hess = jax.grad(objective), jax.grad(jax.grad(objective))

    def newton(lt, _):
        h = hess(lt)
        step = jnp.where(h < 0, -grad(lt) / jnp.where(h < 0, h, -1.0), 0.0)
        return lt + jnp.clip(step, -0.05, 0.05), None

    log_t, _ = jax.lax.scan(newton, log_t, None, length=8)
    t = jax.lax.stop_gradient(jnp.exp(log_t))
    return accuracy(t), t


def _best_any_group(g, means, spread, weights):
    d = means.shape[1]
    return _best_threshold(lambda t: _any_group_accuracy(t, g, means, spread, weights), 2.0 * spread.within * d)


def kinds_verification(dim: int, within, between, pair_weights):
    """Best-threshold same-group accuracy when a group's identities are of several kinds.

    A group whose named identities are partly invented (collapsed spread) and partly
    celebrities (full spread) has impostor pairs of three types; the impostor distance is
    the mixture ``sum_k p_k * v_k chi2_d`` with ``v_k = 2 sw^2 + b_a + b_b``, the genuine
    one ``v_0 chi2_d`` with ``v_0 = 2 sw^2``. With one kind this equals
    :func:`expected_verification`'s same-group accuracy.

    The best threshold is where the two densities cross. Every ``v_k >= v_0``, so each
    ratio ``f_0 / f_k`` falls monotonically in ``t`` and the log density ratio
    ``-t / 2 v_0 - (d/2) log v_0 - log sum_k p_k exp(-t / 2 v_k - (d/2) log v_k)`` has a
    single root, found by bisection in ``log t`` (no second derivatives: this runs inside
    every gradient of the NUTS fit). The gradient of the best accuracy is the partial
    gradient at the fixed threshold (envelope theorem).

    Args:
        dim: embedding dimension ``d`` of the identity encoder.
        within: generated within-identity variance ``sw^2`` (scalar).
        between: ``(K,)`` generated between-identity variance of each kind.
        pair_weights: ``(K, K)`` relative frequencies of impostor pairs by the kinds of
            their two identities (any scale; normalised here).

    Returns:
        ``(accuracy, threshold)``, scalars.
    """
    within = jnp.asarray(within, dtype=jnp.float64)
    between = jnp.asarray(between, dtype=jnp.float64)
    weights = jnp.asarray(pair_weights, dtype=jnp.float64).ravel()
    log_w = jnp.log(weights / jnp.sum(weights))
    v_gen = 2.0 * within
    v_imp = (v_gen + between[:, None] + between[None, :]).ravel()
    half = dim / 2.0

    # The crossing is found on constants: no gradient flows through the bisection, so
    # autodiff never traces its 64 steps (it would, through v_gen and v_imp, and then
    # discard the result: that alone took ~60 s to compile inside the NUTS gradient).
    sg_w, sg_gen, sg_imp = (jax.lax.stop_gradient(a) for a in (log_w, v_gen, v_imp))

    def log_ratio(log_t):
        t = jnp.exp(log_t)
        impostor = jax.scipy.special.logsumexp(sg_w - t / (2.0 * sg_imp) - half * jnp.log(sg_imp))
        return -t / (2.0 * sg_gen) - half * jnp.log(sg_gen) - impostor

    def bisect(bracket, _):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = log_ratio(mid) > 0  # genuine still denser: the crossing lies to the right
        return (jnp.where(above, mid, lo), jnp.where(above, hi, mid)), None

    bracket = (jnp.log(dim * sg_gen) - 12.0, jnp.log(dim * jnp.max(sg_imp)) + 12.0)
    (lo, hi), _ = jax.lax.scan(bisect, bracket, None, length=64)
    t = jnp.exp(0.5 * (lo + hi))
    genuine = chi2_cdf_closed(dim, t / v_gen)
    impostor = jnp.sum(jnp.exp(log_w) * chi2_cdf_closed(dim, t / v_imp))
    return 0.5 * (genuine + 1.0 - impostor), t


def chi2_cdf_closed(dim: int, x):
    """``P(chi2_dim <= x)`` as a finite sum (``dim`` a static integer).

    With ``a = dim / 2`` and ``y = x / 2``: for even ``dim``, ``P = 1 - e^{-y} sum_{k<a}
    y^k / k!``; for odd ``dim``, ``P = erf(sqrt y) - e^{-y} sum_{k < a - 1/2}
    y^{k + 1/2} / Gamma(k + 3/2)``. Absolute error ~1e-15, and far cheaper to compile and
    differentiate than the general ``gammainc`` (the training-mix fit evaluates it inside
    every NUTS gradient: this cut the fit's compile time from ~55 s to a few).
    """
    y = jnp.clip(jnp.asarray(x, jnp.float64), 0.0) / 2.0
    safe = jnp.where(y > 0, y, 1.0)
    if dim % 2 == 0:
        k = jnp.arange(dim // 2, dtype=jnp.float64)
        terms = jnp.exp(k * jnp.log(safe)[..., None] - safe[..., None] - gammaln(k + 1.0))
        return jnp.where(y > 0, 1.0 - jnp.sum(terms, axis=-1), 0.0)
    k = jnp.arange((dim - 1) // 2, dtype=jnp.float64)
    terms = jnp.exp((k + 0.5) * jnp.log(safe)[..., None] - safe[..., None] - gammaln(k + 1.5))
    return jnp.where(y > 0, jax.scipy.special.erf(jnp.sqrt(safe)) - jnp.sum(terms, axis=-1), 0.0)


@jax.jit
def expected_verification(means: Array, spread: IdentitySpread, *, impostor_weights: Array | None = None):
    """Best-threshold verification accuracy per generated group, same- and any-group impostors.

    Args:
        means: ``(G, d)`` generated group means.
        spread: generated ``within`` (scalar) and ``between`` ``(G,)`` variances.
        impostor_weights: ``(G,)`` probabilities of the impostor's group for any-group
            pairs (default: uniform over all groups, the genuine's own included).

    Returns:
        :class:`VerificationPrediction`.

    Example:
        >>> import jax.numpy as jnp
        >>> pred = expected_verification(jnp.zeros((1, 8)), IdentitySpread(1.0, jnp.array([0.0])))
        >>> float(pred.same_group[0])  # identities indistinguishable: chance
        0.5
    """
    g_count, d = means.shape
    weights = jnp.full(g_count, 1.0 / g_count) if impostor_weights is None else jnp.asarray(impostor_weights)
    within = jnp.asarray(spread.within, dtype=jnp.float64)
    between = jnp.asarray(spread.between, dtype=jnp.float64)
    v1 = 2.0 * within
    v2 = 2.0 * (within + between)
    distinct = v2 > v1 * (1.0 + 1e-12)
    safe_v2 = jnp.where(distinct, v2, 2.0 * v1)
    t_same = jnp.where(distinct, d * v1 * safe_v2 * jnp.log(safe_v2 / v1) / (safe_v2 - v1), jnp.inf)
    t_same = jax.lax.stop_gradient(t_same)
    finite_t = jnp.where(distinct, t_same, 0.0)
    same = jnp.where(
        distinct,
        0.5 * (ncx2_cdf(finite_t / v1, d, 0.0) + 1.0 - ncx2_cdf(finite_t / safe_v2, d, 0.0)),
        0.5,
    )
    spread64 = IdentitySpread(within, between)
    any_acc, t_any = jax.vmap(lambda g: _best_any_group(g, means, spread64, weights))(jnp.arange(g_count))
    return VerificationPrediction(same, any_acc, t_same, t_any)


def identity_spreads(x, identity, group, groups) -> tuple[float, np.ndarray]:
    """Isotropic one-way random-effects estimate of the real identity spreads.

    ``sw^2``: the pooled within-identity variance per dimension; ``sb_g^2``: the variance of
    identity means within group ``g`` per dimension, less the share ``sw^2 mean(1/m_i)``
    that image noise adds to a mean of ``m_i`` images (clipped at zero). What the
    verification closed forms (``kinds_verification``) take as the real population.

    Args:
        x: ``(n, d)`` reference embeddings with identity labels.
        identity, group: ``(n,)`` labels.
        groups: the groups to estimate, in order.

    Returns:
        ``(within, between)`` with ``between`` of shape ``(len(groups),)``.

    Raises:
        ValueError: naming the group with fewer than two identities of two images.
    """
    x = np.asarray(x, dtype=np.float64)
    identity, group = np.asarray(identity), np.asarray(group)
    d = x.shape[1]
    within_ss, within_df, between = 0.0, 0, []
    centres_by_group = {}
    for g in groups:
        rows = group == g
        names, code, counts = np.unique(identity[rows], return_inverse=True, return_counts=True)
        if np.sum(counts >= 2) < 2:
            raise ValueError(f"group {g!r}: identity spreads need two identities with two or more reference images each")
        sums = np.zeros((names.size, d))
        np.add.at(sums, code, x[rows])
        centres = sums / counts[:, None]
        within_ss += float(np.sum((x[rows] - centres[code]) ** 2))
        within_df += d * int(np.sum(counts - 1))
        centres_by_group[g] = (centres, counts)
    within = within_ss / within_df
    for g in groups:
        centres, counts = centres_by_group[g]
        spread = np.sum((centres - centres.mean(axis=0)) ** 2) / (d * (centres.shape[0] - 1))
        between.append(max(spread - within * float(np.mean(1.0 / counts)), 0.0))
    return within, np.asarray(between)
