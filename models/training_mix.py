r"""Bayesian fit of the analytical training-mix model to per-group audit results (numpyro).

Observed: each generator's per-group bias-corrected FD with its standard error (from the
measure stage's bootstrap). Known: the target populations, as the reference set's per-group
means and covariances, the training size ``N`` and the transfer length scale. Unknown:

* per generator, the *effective* training shares ``pi ~ Dirichlet(1)`` and the diversity
  kept by guidance ``gamma ~ Beta(18, 2)``;
* shared by the generators, transfer ``lambda ~ Beta(1.5, 3)``, shrinkage
  ``log tau ~ Normal(log(N / G), 1)`` and per-group source-shift magnitudes
  ``|delta_g| ~ HalfNormal(shift_scale)``.

The likelihood is ``FD_obs ~ Normal(E FD_g(pi, ...), se)`` with the closed form of
``faceaudit.core.expected_fd``; the realised FD of one trained generator scatters around
its expectation by ``O(1/N)``, far below audit standard errors, and is not modelled.
The targets are estimates (a few hundred reference images per group): given their sizes
(``TrainingMixDesign.reference_counts``) the closed form removes the bias their noise puts
into the plug-in FD (``core.TargetWorld.reference_counts``). Without that, on simulated
audits with 200 reference images per group in a 20-dimensional audit space, the plug-in
overstated a rare group's expected FD by 1.6 standard errors of its measured FD (0.2 for
a dominant group), and the fit paid for it with the dominant groups' shares
(``experiments/share_prior.py``). Its spread around the truth is left out of the
likelihood: the measured FD is computed against the same reference sample, so its
bootstrap standard error already moves with it.

When the real population's identity spreads are known (``VerificationDesign``: estimated
from reference images with identity labels, or a simulated world's), the measured
same-group verification accuracy of generated named identities joins the likelihood,
``acc_obs ~ Normal(acc_g, se)`` with ``acc_g`` from ``faceaudit.core.kinds_verification``:
invented names collapse by ``(1 - w_g)^2`` and celebrities keep their spread, mixed in the
proportions of the audit's impostor pairs. This is what pins the shrinkage ``tau`` apart
from the shares: FD sees ``w_g`` only through the mean and covariance mixing, verification
sees it directly.
Source-shift *directions* are not identifiable from per-group FD; they are fixed,
mutually orthogonal unit vectors (``TrainingMixDesign.shift_directions``) and only their
magnitudes are inferred.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from faceaudit import core

# Dirichlet concentration of the effective shares' prior (see the module docstring).
SHARE_CONCENTRATION = 1.0


@functools.partial(jax.tree_util.register_dataclass, data_fields=["within", "between", "pair_weights", "se", "observed"],
                   meta_fields=["dim"])
@dataclasses.dataclass(frozen=True)
class VerificationDesign:
    """Known quantities of the verification term (same-group accuracy of named identities).

    A pytree whose ``dim`` is static (the closed form sums ``dim / 2`` terms), so a design
    passed as a traced argument (``jit_model_args``) keeps it a Python integer."""

    dim: int  # identity-encoder dimension
    within: float  # real within-identity variance sw^2 (per dimension)
    between: jax.Array  # (G,) real between-identity variances sb_g^2
    pair_weights: jax.Array  # (J, G, 2, 2) impostor pairs by kind: [invented, celebrity]
    se: jax.Array  # (J, G); 1 where unobserved
    observed: jax.Array  # (J, G) bool


class TrainingMixDesign(NamedTuple):
    """Known quantities of the fit (arrays; sizes static through their shapes)."""

    target_means: jax.Array  # (G, d)
    target_covs: jax.Array  # (G, d, d)
    shift_directions: jax.Array  # (G, d), orthonormal rows
    training_size: float
    length_scale: float
    fd_se: jax.Array  # (J, G)
    target_roots: jax.Array  # (G, d, d) S_g^{1/2}, computed once (core.target_roots)
    shift_scale: float = 0.3
    verification: VerificationDesign | None = None
    share_concentration: float = SHARE_CONCENTRATION
    reference_counts: jax.Array | None = None  # (G,) reference images behind the targets; None: populations


def expected_same_group_verification(v: VerificationDesign, shrink, diversity):
    """``(J, G)`` same-group accuracies from shrinkage weights ``(J, G)`` and ``gamma`` ``(J,)``."""
    return _verification(v.dim, jnp.asarray(v.within), v.between, v.pair_weights, shrink, diversity)


# The model's two heavy parts are compiled functions: numpyro evaluates a model eagerly
# while it initialises a sampler (tracing it, drawing the initial point, checking its
# gradient), and op-by-op evaluation of these closed forms meant ~560 separate small XLA
# compilations (~60 s). Inside the sampler's own trace they are inlined.
@functools.partial(jax.jit, static_argnums=0)
def _verification(dim: int, within, between, pair_weights, shrink, diversity):
    def one(w, gamma, between_g, weights):
        g2 = gamma**2
        kinds = g2 * between_g * jnp.stack([(1.0 - w) ** 2, jnp.ones_like(w)])
        return core.kinds_verification(dim, g2 * within, kinds, weights)[0]

    per_group = jax.vmap(one, in_axes=(0, None, 0, 0))
    return jax.vmap(per_group, in_axes=(0, 0, None, 0))(shrink, diversity, between, pair_weights)


@jax.jit
def _expected_fd(means, covs, roots, shifts, shares, diversity, training_size, transfer, length_scale, shrinkage,
                 reference_counts):
    """``(J, G)`` expected FD and shrinkage weights, one row per generator."""
    world = core.TargetWorld(means, covs, shifts, reference_counts)

    def one(pi, gamma):
        mix = core.TrainingMix(pi, training_size, transfer, length_scale, shrinkage, gamma)
        return core.expected_fd(world, mix, roots).total, core.mixing(world, mix).shrink

    return jax.vmap(one)(shares, diversity)


def training_mix_kernel(design: TrainingMixDesign):
    """The NUTS kernel every training-mix fit uses.

    Chains start at the prior median (uniform shares, shift magnitudes ~0.2), not numpyro's
    default uniform draw on ``(-2, 2)`` unconstrained, which starts shifts anywhere in
    ``e^(+-2) = 0.14..7.4``. The posterior has a second, distant mode: a group's excess FD
    explained by a large source shift instead of a small share. Chains started at large
    shifts settled there and stayed (several prior standard deviations out, all chains
    agreeing, so R-hat did not flag it). In the calibration experiment
    (``experiments/training_mix_calibration.py``) nominal 90% intervals covered the truth at
    0.81 with the default start and at 0.88 (MC SE 0.017, 30 fits) from the prior median.
    """
    from numpyro.infer import NUTS, init_to_value

    return NUTS(training_mix_model, target_accept_prob=0.9, init_strategy=init_to_value(values=prior_medians(design)))


def prior_medians(design: TrainingMixDesign) -> dict:
    """The prior's centre, in closed form: uniform shares, the other sites' medians.
    (``init_to_median`` would estimate the same by drawing from the prior, which compiles
    numpyro's Dirichlet and gamma samplers for each shape: ~20 s for nothing.)"""
    from scipy import stats

    n_gen, n_groups = design.fd_se.shape
    return {
        "shares": jnp.full((n_gen, n_groups), 1.0 / n_groups),
        "diversity": jnp.full(n_gen, stats.beta(18.0, 2.0).median()),
        "transfer": jnp.asarray(stats.beta(1.5, 3.0).median()),
        "log_shrinkage": jnp.log(design.training_size / n_groups),
        "shift": jnp.full(n_groups, design.shift_scale * stats.halfnorm.median()),
    }


def training_mix_model(design: TrainingMixDesign, fd=None, verification=None):
    n_gen, n_groups = design.fd_se.shape
    with numpyro.plate("generator", n_gen):
        shares = numpyro.sample("shares", dist.Dirichlet(jnp.full(n_groups, design.share_concentration)))
        diversity = numpyro.sample("diversity", dist.Beta(18.0, 2.0))
    transfer = numpyro.sample("transfer", dist.Beta(1.5, 3.0))
    log_shrinkage = numpyro.sample("log_shrinkage", dist.Normal(jnp.log(design.training_size / n_groups), 1.0))
    shrinkage = numpyro.deterministic("shrinkage", jnp.exp(log_shrinkage))
    with numpyro.plate("group", n_groups):
        shift = numpyro.sample("shift", dist.HalfNormal(design.shift_scale))
    fd_mean, shrink = _expected_fd(design.target_means, design.target_covs, design.target_roots,
                                   shift[:, None] * design.shift_directions, shares, diversity,
                                   jnp.asarray(design.training_size, jnp.float64), transfer,
                                   jnp.asarray(design.length_scale, jnp.float64), shrinkage, design.reference_counts)
    numpyro.deterministic("fd_expected", fd_mean)
    numpyro.sample("fd", dist.Normal(fd_mean, design.fd_se).to_event(2), obs=fd)
    v = design.verification
    if v is not None:
        acc = numpyro.deterministic("verification_expected", expected_same_group_verification(v, shrink, diversity))
        # Unobserved cells (a group without named identities) carry a placeholder value
        # and are masked out of the likelihood.
        likelihood = dist.Normal(acc, v.se).mask(v.observed).to_event(2)
        numpyro.sample("verification", likelihood, obs=None if verification is None else jnp.where(v.observed, verification, 0.5))
