r"""Frechet distance between Gaussian fits of two embedding sets (FID, FD-DINOv2, ...).

.. math::

    \mathrm{FD}(X, Y) = \lVert \mu_X - \mu_Y \rVert^2 + \operatorname{tr} S_X
        + \operatorname{tr} S_Y - 2 \sum_i r_i,
    \qquad r_i^2 = \lambda_i(S_X S_Y),

with unbiased (``n - 1``) sample covariances. The cross term ``sum r_i`` equals
``tr (S_X^{1/2} S_Y S_X^{1/2})^{1/2}`` and is the nuclear norm of a cross factor
``F_X F_Y^T`` for any factors with ``S = F^T F``. faceaudit never calls ``sqrtm``:

* both sets larger than ``d``: Cholesky ``S_X = L L^T`` and the eigenvalues of the
  symmetric ``L^T S_Y L`` (LAPACK values-only on CPU, see ``_linalg``);
* a set with ``n <= d`` (singular covariance): its centred, scaled data matrix is the
  factor, so the spectrum comes from an ``n x n`` (or ``n x d``) singular value problem,
  exact and real where ``sqrtm`` returns complex parts and Cholesky fails.

.. warning:: pytorch-fid and clean-fid use ``scipy.linalg.sqrtm`` and silently drop
   imaginary parts; float32 runs of the peers are off by ~3% at d = 2048. faceaudit always
   accumulates statistics and does the spectral step in float64 (float32 inputs are
   upcast before the covariance products).

**Finite-sample bias.** ``E[FD_hat] - FD`` is, to first order in ``1/n``,

.. math::

    \frac{\operatorname{tr} S_X}{n_X} + \frac{\operatorname{tr} S_Y}{n_Y}
      + \Bigl(\frac{1}{2(n_X - 1)} + \frac{1}{2(n_Y - 1)}\Bigr) \Phi(r), \qquad
    \Phi(r) = \tfrac12 \sum_i r_i + \sum_{i, j} \frac{r_i r_j}{r_i + r_j}.

The mean term is exact (``E|xbar - ybar|^2``). The cross term follows from the second
Frechet derivative of ``tr sqrt(M)`` at ``M = S_X^{1/2} S_Y S_X^{1/2}``: for Gaussian data
``Cov(dS_ab, dS_cd) = (S_ac S_bd + S_ad S_bc)/(n - 1)``, which in the eigenbasis of ``M``
gives ``E[H_ij^2] = (m_i m_j + delta_ij m_i^2)/(n - 1)`` and, with the divided difference
of ``f'(m) = 1/(2 sqrt m)``, ``-Phi(r)/(4 (n - 1))`` per set; the terms in ``S_X`` and
``S_Y`` are equal because ``S_X S_Y`` and ``S_Y S_X`` share their spectrum. With
``S_X = S`` fixed and ``S_Y = S`` estimated this reduces to the expected Bures noise of
``design/analytical-model.md``, ``sigma^2 d (d + 1) / (4 n)`` in the isotropic case.
``unbiased=True`` subtracts this bias evaluated at the sample spectrum (plug-in; the
remainder is ``O(1/n^2)`` when ``n >> d``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg, _validate
from ._typing import Array, Features, PRNGKey, Scalar

STATS_DTYPE = jnp.float64


class GaussianStats(NamedTuple):
    """Streaming sufficient statistics of one embedding set (float64).

    Attributes:
        count: number of rows seen (or the sum of frequency weights).
        mean: ``(d,)`` running mean.
        scatter: ``(d, d)`` sum of outer products of rows centred on ``mean``.
    """

    count: Array
    mean: Array
    scatter: Array


def gaussian_stats_init(d: int) -> GaussianStats:
    """Empty statistics for ``d``-dimensional embeddings."""
    d = _validate.positive_int(d, "d")
    return GaussianStats(
        jnp.zeros((), STATS_DTYPE), jnp.zeros((d,), STATS_DTYPE), jnp.zeros((d, d), STATS_DTYPE)
    )


def _combine(a: GaussianStats, b: GaussianStats) -> GaussianStats:
    # Chan, Golub & LeVeque (1979): two sets' centred statistics combined; each is centred
    # on its own mean, so no large sums of squares cancel.
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / count)
    scatter = a.scatter + b.scatter + jnp.outer(delta, delta) * (a.count * b.count / count)
    return GaussianStats(count, mean, scatter)


@jax.jit
def _merge(stats: GaussianStats, x: Features) -> GaussianStats:
    x = x.astype(STATS_DTYPE)
    mean_b, scatter_b = _linalg.mean_scatter(x)
    return _combine(stats, GaussianStats(jnp.asarray(x.shape[0], STATS_DTYPE), mean_b, scatter_b))


def gaussian_stats_update(stats: GaussianStats, x: Features) -> GaussianStats:
    """Add a batch of rows ``x`` (``(b, d)``) to ``stats``."""
    x = _validate.features(x, "x", min_rows=1)
    if x.shape[1] != stats.mean.shape[0]:
        raise ValueError(f"batch has {x.shape[1]} columns but the statistics are {stats.mean.shape[0]}-dimensional")
    return _merge(stats, x)


def gaussian_stats_merge(*shards: GaussianStats) -> GaussianStats:
    """The statistics of the union of disjoint shards, from each shard's statistics alone
    (e.g. computed where its embeddings were made): the same numbers as one pass over all
    rows, to rounding, so FD over shards never moves the embeddings."""
    if not shards:
        raise ValueError("gaussian_stats_merge needs at least one GaussianStats")
    for i, s in enumerate(shards):
        if not isinstance(s, GaussianStats):
            raise TypeError(f"shard {i} must be GaussianStats, got {type(s).__name__}")
        if s.mean.shape != shards[0].mean.shape:
            raise ValueError(f"shard {i} is {s.mean.shape[0]}-dimensional, shard 0 {shards[0].mean.shape[0]}-dimensional")
    merged = shards[0]
    for s in shards[1:]:
        if float(s.count) > 0:
            merged = s if float(merged.count) == 0 else _combine_jit(merged, s)
    return merged


_combine_jit = jax.jit(_combine)


def gaussian_stats(x: Features) -> GaussianStats:
    """Statistics of one whole set: ``gaussian_stats_update(gaussian_stats_init(d), x)``."""
    x = _validate.features(x, "x")
    return _merge(gaussian_stats_init(x.shape[1]), x)


def _phi(r: Array) -> Scalar:
    """``Phi(r) = sum_i r_i / 2 + sum_{i,j} r_i r_j / (r_i + r_j)`` with 0/0 := 0."""
    num = r[:, None] * r[None, :]
    den = r[:, None] + r[None, :]
    pair = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
    return 0.5 * r.sum() + pair.sum()


def _assemble(mean_gap2, tr_x, tr_y, r, n_x, n_y, unbiased: bool) -> Scalar:
    fd = mean_gap2 + tr_x + tr_y - 2.0 * r.sum()
    if unbiased:
        bias = tr_x / n_x + tr_y / n_y + (0.5 / (n_x - 1.0) + 0.5 / (n_y - 1.0)) * _phi(r)
        fd = fd - bias
    return fd


@functools.partial(jax.jit, static_argnames="unbiased")
def _fd_from_stats(a: GaussianStats, b: GaussianStats, unbiased: bool) -> Scalar:
    return _fd_both_from_stats(a, b, unbiased)[1]


def _fd_both_from_stats(a: GaussianStats, b: GaussianStats, unbiased: bool) -> tuple[Scalar, Scalar]:
    """``(raw FD, FD with the bias removed when unbiased)`` from one product spectrum."""
    s_a = a.scatter / (a.count - 1.0)
    s_b = b.scatter / (b.count - 1.0)
    r = _linalg.product_spectrum(s_a, s_b)
    gap = a.mean - b.mean
    args = (gap @ gap, jnp.trace(s_a), jnp.trace(s_b), r, a.count, b.count)
    return _assemble(*args, False), _assemble(*args, unbiased)


def frechet_distance_from_stats(a: GaussianStats, b: GaussianStats, *, unbiased: bool = False) -> Scalar:
    """Frechet distance between two sets given their streaming statistics.

    Args:
        a, b: ``GaussianStats`` of the two sets (same ``d``, at least 2 rows each).
        unbiased: subtract the first-order finite-sample bias (module docstring).

    Returns:
        float64 scalar.
    """
    for name, s in (("a", a), ("b", b)):
        if not isinstance(s, GaussianStats):
            raise TypeError(f"{name} must be GaussianStats, got {type(s).__name__}")
        if not isinstance(s.count, jax.core.Tracer) and float(s.count) < 2:
            raise ValueError(f"statistics {name} hold {float(s.count):g} rows; need at least 2")
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"statistics have dimensions {a.mean.shape[0]} and {b.mean.shape[0]}")
    return _fd_from_stats(a, b, unbiased)


def _covariance_factor(xc: Array, n: int) -> Array:
    """A matrix ``F`` with ``F^T F = S`` (the unbiased covariance of centred ``xc``).

    With ``n <= d`` the scaled data itself (``n x d``); otherwise the transposed Cholesky
    factor (``d x d``) of the covariance, or its symmetric square root when singular.
    """
    d = xc.shape[1]
    if n <= d:
        return xc / jnp.sqrt(n - 1.0)
    cov = _linalg.gram(xc) / (n - 1.0)
    chol = jnp.linalg.cholesky(cov)

    def sqrt_factor(c):
        evals, evecs = jnp.linalg.eigh(c)
        return evecs * jnp.sqrt(jnp.clip(evals, 0.0))

    lower = jax.lax.cond(jnp.all(jnp.isfinite(chol)), lambda c: chol, sqrt_factor, cov)
    return lower.T


@functools.partial(jax.jit, static_argnames="unbiased")
def _fd_from_data(x: Features, y: Features, unbiased: bool) -> Scalar:
    x = x.astype(STATS_DTYPE)
    y = y.astype(STATS_DTYPE)
    (n_x, d), n_y = x.shape, y.shape[0]
    if n_x > d and n_y > d:
        return _fd_from_stats(
            _merge(gaussian_stats_init(d), x), _merge(gaussian_stats_init(d), y), unbiased
        )
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mean_x, y - mean_y
    r = _linalg.singular_values(_covariance_factor(xc, n_x) @ _covariance_factor(yc, n_y).T)
    gap = mean_x - mean_y
    tr_x = jnp.sum(xc * xc) / (n_x - 1.0)
    tr_y = jnp.sum(yc * yc) / (n_y - 1.0)
    return _assemble(gap @ gap, tr_x, tr_y, r, float(n_x), float(n_y), unbiased)


def frechet_distance(x: Features, y: Features, *, unbiased: bool = False) -> Scalar:
    """Frechet distance between Gaussian fits of two embedding sets.

    Args:
        x: ``(n_x, d)`` embeddings, e.g. real faces. float32 or float64.
        y: ``(n_y, d)`` embeddings, e.g. generated faces.
        unbiased: subtract the first-order finite-sample bias so that sets of different
            sizes can be compared (see the module docstring). The correction assumes
            roughly Gaussian embeddings and ``n >> d``; with ``n <= d`` it is a rough
            plug-in and FD-infinity (``fd_infinity``) is the better tool.

    Returns:
        float64 scalar.

    Raises:
        TypeError: non-array or integer input.
        ValueError: fewer than 2 rows, NaN/inf rows, mismatched dimensions.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 8)); y = rng.normal(size=(500, 8)) + 1.0
        >>> round(float(frechet_distance(x, y)), 1)
        8.6

    References:
        Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
        Nash Equilibrium", NeurIPS 2017. Dowson & Landau, "The Frechet distance between
        multivariate normal distributions", J. Multivariate Anal. 1982.
    """
    x = _validate.features(x, "x", as_jax=False)
    y = _validate.features(y, "y", as_jax=False)
    _validate.same_dim(x, y, ("x", "y"))
    d = x.shape[1]
    if x.shape[0] > d and y.shape[0] > d and _linalg.host_eager(x, y):
        return _host_fd(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), unbiased)
    return _fd_from_data(jnp.asarray(x), jnp.asarray(y), unbiased)


def _host_fd(x: np.ndarray, y: np.ndarray, unbiased: bool) -> Scalar:
    """``_fd_from_stats`` on CPU, in numpy from the caller's arrays to the scalar: the
    ``d x d`` covariances never travel between XLA and the host (at d = 2,048 each copy
    is 32 MB)."""
    (n_x, _), n_y = x.shape, y.shape[0]
    mean_x, cov_x = _linalg.host_row_gram_stats(x)
    mean_y, cov_y = _linalg.host_row_gram_stats(y)
    cov_x /= n_x - 1.0
    cov_y /= n_y - 1.0
    r = _linalg._host_product_spectrum(cov_x, cov_y)
    gap = mean_x - mean_y
    tr_x, tr_y = float(np.trace(cov_x)), float(np.trace(cov_y))
    return _assemble(jnp.asarray(gap @ gap), tr_x, tr_y, jnp.asarray(r), float(n_x), float(n_y), unbiased)


class FDInfinity(NamedTuple):
    """FD extrapolated to infinitely many samples (Chong & Forsyth 2020).

    Attributes:
        value: intercept of the least-squares line ``FD_N = value + slope / N``.
        slope: its slope (the ``1/N`` bias coefficient).
        sizes: ``(k,)`` subsample sizes used.
        fds: ``(k,)`` mean FD over the draws at each size.
    """

    value: Scalar
    slope: Scalar
    sizes: Array
    fds: Array


@functools.partial(jax.jit, static_argnames=("size", "num_draws"))
def _mean_subsample_fd(key, x, y, size: int, num_draws: int):
    def one(k):
        kx, ky = jax.random.split(k)
        ix = jax.random.choice(kx, x.shape[0], (size,), replace=False)
        iy = jax.random.choice(ky, y.shape[0], (size,), replace=False)
        return _fd_from_data(x[ix], y[iy], False)

    return jax.lax.map(one, jax.random.split(key, num_draws)).mean()


def fd_infinity(
    key: PRNGKey,
    x: Features,
    y: Features,
    *,
    sizes: tuple[int, ...] | None = None,
    num_draws: int = 4,
) -> FDInfinity:
    """Bias-free FD by extrapolation over subsample sizes.

    FD on ``N`` samples per set has expectation ``FD_inf + c / N + O(1/N^2)``; fitting a
    line in ``1/N`` through the mean FD of ``num_draws`` random subsets (without
    replacement) at each size and reading off the intercept removes the ``1/N`` bias
    without assuming Gaussian fourth moments.

    Args:
        key: PRNG key for the subsets.
        x: ``(n_x, d)`` embeddings (the reference set).
        y: ``(n_y, d)`` embeddings (the generated set).
        sizes: subsample sizes (each at least 2 and at most ``min(n_x, n_y)``); default
            eight sizes evenly spaced in ``1/N`` from ``min(n_x, n_y) / 5`` to
            ``min(n_x, n_y)``.
        num_draws: subsets drawn per size.

    References:
        Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to
        find them", CVPR 2020.
    """
    _validate.key(key)
    x = _validate.features(x, "x", min_rows=10)
    y = _validate.features(y, "y", min_rows=10)
    _validate.same_dim(x, y, ("x", "y"))
    num_draws = _validate.positive_int(num_draws, "num_draws")
    n_min = min(x.shape[0], y.shape[0])
    if sizes is None:
        inverse = np.linspace(5.0 / n_min, 1.0 / n_min, 8)
        sizes = tuple(sorted({int(round(1.0 / v)) for v in inverse}))
    sizes = tuple(_validate.positive_int(s, "sizes", minimum=2) for s in sizes)
    if len(set(sizes)) < 2:
        raise ValueError(f"fd_infinity needs at least two distinct subsample sizes, got {sizes}")
    if max(sizes) > n_min:
        raise ValueError(f"subsample size {max(sizes)} exceeds the smaller set ({n_min} rows)")
    keys = jax.random.split(key, len(sizes))
    fds = jnp.stack([_mean_subsample_fd(k, x, y, s, num_draws) for k, s in zip(keys, sizes)])
    inv = 1.0 / jnp.asarray(sizes, STATS_DTYPE)
    design = jnp.stack([jnp.ones_like(inv), inv], axis=1)
    coef, *_ = jnp.linalg.lstsq(design, fds)
    return FDInfinity(coef[0], coef[1], jnp.asarray(sizes), fds)
