r"""Bootstrap intervals from replicate arrays: percentile and BCa.

BCa (Efron 1987) corrects the percentile interval for median bias ``z0`` and skew
``a`` (the acceleration, from jackknife influence values):

.. math::

    \alpha' = \Phi\Bigl(z_0 + \frac{z_0 + z_\alpha}{1 - a (z_0 + z_\alpha)}\Bigr),
    \quad z_0 = \Phi^{-1}\bigl(\#\{\theta^*_b < \hat\theta\} / B\bigr),
    \quad a = \frac{\sum_i U_i^3}{6 (\sum_i U_i^2)^{3/2}}.

For two-sample statistics the influence values of both samples enter ``a`` scaled by
their sample counts (Efron & Tibshirani 1993, eq. 14.15). Jackknife values may come from
delete-one or delete-block jackknives; with blocks, each block is one observation.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.special as jsp
from jax.scipy.stats import norm

from ._typing import Array

INTERVALS = ("basic", "percentile", "bca")


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
