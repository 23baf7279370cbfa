r"""Confidence intervals: delete-block jackknife (t), bootstrap (basic, percentile, BCa), Wilson.

**Jackknife** (the default of ``by_group``). Split a set's ``n`` rows into ``J`` blocks and
recompute the statistic with each block left out (0/1 weights: no row is ever
duplicated, so k-NN radii and spectra are not distorted the way bootstrap duplicates
distort them). With replicates ``theta_(j)`` and their mean ``theta_(.)``,

.. math::

    \widehat{\mathrm{Var}} = \frac{J - 1}{J} \sum_j (\theta_{(j)} - \theta_{(.)})^2, \qquad
    \widehat{\mathrm{bias}} = (J - 1)(\theta_{(.)} - \hat\theta),

summed over the two sets of a two-sample statistic (they are independent). The interval is
``theta_hat +- t_nu se`` with Welch-Satterthwaite degrees of freedom ``nu`` (``J - 1`` for
one set). A statistic averaged over random subsets adds its Monte Carlo variance
``s^2 / R`` (``_groups``). References: Efron & Stein (1981); Shao & Wu (1989) for the
delete-d jackknife; Arvesen (1969) for U-statistics.

**Bootstrap** (kept for comparison; see the coverage study in ``experiments/``): the basic
(reflected) interval ``[2 theta - q_hi, 2 theta - q_lo]``, the percentile interval, and BCa
(Efron 1987), which corrects the percentile interval for median bias ``z0`` and skew ``a``
(the acceleration, from jackknife influence values):

.. math::

    \alpha' = \Phi\Bigl(z_0 + \frac{z_0 + z_\alpha}{1 - a (z_0 + z_\alpha)}\Bigr),
    \quad z_0 = \Phi^{-1}\bigl(\#\{\theta^*_b < \hat\theta\} / B\bigr),
    \quad a = \frac{\sum_i U_i^3}{6 (\sum_i U_i^2)^{3/2}}.

For two-sample statistics the influence values of both samples enter ``a`` scaled by
their sample counts (Efron & Tibshirani 1993, eq. 14.15).

**Wilson** score interval for a binomial proportion (always inside ``[0, 1]``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jax.scipy.stats import norm
from scipy import stats

from ._typing import Array

INTERVALS = ("jackknife", "basic", "percentile", "bca")
BOOTSTRAP_INTERVALS = ("basic", "percentile", "bca")


def percentile_interval(replicates: Array, confidence: float) -> tuple[Array, Array]:
    """Equal-tailed percentile interval over the last axis (linear interpolation)."""
    tail = (1.0 - confidence) / 2.0
    return (
        jnp.quantile(replicates, tail, axis=-1),
        jnp.quantile(replicates, 1.0 - tail, axis=-1),
    )


def basic_interval(replicates: Array, estimate: Array, confidence: float) -> tuple[Array, Array]:
    """Basic (reflected) interval ``[2 theta - q_hi, 2 theta - q_lo]``: uses the bootstrap
    distribution of ``theta* - theta`` as that of ``theta - truth``, so a bias in the
    replicates moves the interval the other way."""
    lo, hi = percentile_interval(replicates, confidence)
    return 2.0 * estimate - hi, 2.0 * estimate - lo


def _influence(jackknife: Array) -> Array:
    # U_i = (J - 1) (mean_j theta_(j) - theta_(i))
    j = jackknife.shape[-1]
    return (j - 1.0) * (jackknife.mean(axis=-1, keepdims=True) - jackknife)


def acceleration(*jackknives: Array) -> Array:
    """BCa acceleration from one jackknife array per sample (``(..., J_k)`` each)."""
    num = 0.0
    den = 0.0
    for jk in jackknives:
        u = _influence(jk)
        j = jk.shape[-1]
        num = num + jnp.sum(u**3, axis=-1) / j**3
        den = den + jnp.sum(u**2, axis=-1) / j**2
    return jnp.where(den > 0, num / (6.0 * jnp.where(den > 0, den, 1.0) ** 1.5), 0.0)


def bca_levels(replicates: Array, estimate: Array, accel: Array, confidence: float) -> tuple[Array, Array]:
    """The two adjusted percentile levels (in [0, 1]) of the BCa interval."""
    b = replicates.shape[-1]
    frac = jnp.sum(replicates < estimate[..., None], axis=-1) / b
    z0 = jsp.ndtri(jnp.clip(frac, 0.5 / b, 1.0 - 0.5 / b))
    tail = (1.0 - confidence) / 2.0
    levels = []
    for z_alpha in (jsp.ndtri(tail), jsp.ndtri(1.0 - tail)):
        shifted = z0 + z_alpha
        levels.append(norm.cdf(z0 + shifted / (1.0 - accel * shifted)))
    return levels[0], levels[1]


def bca_interval(
    replicates: Array, estimate: Array, confidence: float, *jackknives: Array
) -> tuple[Array, Array]:
    """BCa interval over the last axis of ``replicates`` (``(..., B)``)."""
    lo, hi = bca_levels(replicates, estimate, acceleration(*jackknives), confidence)
    quant = jnp.vectorize(lambda r, q: jnp.quantile(r, q), signature="(b),()->()")
    return quant(replicates, lo), quant(replicates, hi)


def jackknife_variance(replicates: np.ndarray, *, delete: float = 0.0, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(variance, mean)`` of jackknife replicates ``(..., J)``.

    Delete-block (``delete == 0``): ``(J - 1)/J sum (theta_j - mean)^2``. Random delete-d
    with ``d = ceil(delete * n)`` rows left out of each replicate:
    ``(n - d)/(d J) sum (theta_j - mean)^2`` (Shao & Wu 1989).
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    j = replicates.shape[-1]
    mean = replicates.mean(axis=-1)
    spread = np.sum((replicates - mean[..., None]) ** 2, axis=-1)
    if delete:
        d = np.ceil(delete * n)
        return (n - d) / (d * j) * spread, mean
    return (j - 1.0) / j * spread, mean


def welch_df(variances, dofs) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates."""
    variances = [np.asarray(v, dtype=np.float64) for v in variances]
    total = sum(variances)
    denom = sum(np.where(d > 0, v**2 / np.maximum(d, 1), 0.0) for v, d in zip(variances, dofs))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, total**2 / np.where(denom > 0, denom, 1.0), np.inf)
    return df


def t_interval(estimate, se, df, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """``estimate +- t_{df, (1 + confidence)/2} se`` (normal where ``df`` is infinite)."""
    estimate, se, df = (np.asarray(v, dtype=np.float64) for v in (estimate, se, df))
    q = np.where(np.isfinite(df), stats.t.ppf(0.5 + confidence / 2.0, np.where(np.isfinite(df), df, 1.0)),
                 stats.norm.ppf(0.5 + confidence / 2.0))
    return estimate - q * se, estimate + q * se


class Proportion(NamedTuple):
    """A share with its binomial standard error and Wilson interval."""

    value: float
    se: float
    low: float
    high: float


def proportion(successes: int, n: int, confidence: float = 0.95) -> Proportion:
    """``successes / n`` with the binomial SE ``sqrt(p (1 - p) / n)`` and the Wilson interval
    (a face-detection failure rate, a share of edits keeping the identity)."""
    low, high = wilson_interval(successes, n, confidence)
    p = successes / n
    return Proportion(float(p), float(np.sqrt(p * (1.0 - p) / n)), float(low), float(high))


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion; inside ``[0, 1]`` by construction.

    Args:
        successes: count(s) of successes.
        n: trial count(s), positive.
        confidence: coverage.

    Example:
        >>> lo, hi = wilson_interval(0, 10)
        >>> float(lo), round(float(hi), 4)
        (0.0, 0.2775)
    """
    successes, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if np.any(n <= 0):
        raise ValueError("wilson_interval needs at least one trial")
    if np.any((successes < 0) | (successes > n)):
        raise ValueError("successes must lie between 0 and n")
    z = stats.norm.ppf(0.5 + confidence / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
