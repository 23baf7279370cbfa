r"""The analytical model of the training mix: how the training mix sets per-group FD.

faceaudit's own formulation (``design/analytical-model.md``), derived here and checked
against Monte Carlo in ``tests/core/test_training_mix.py``.

**World.** Groups ``g = 1..G`` with target populations ``P_g = N(mu_g, S_g)`` in an
embedding space ``R^d``; the training source of group ``g`` is shifted,
``Q_g = N(nu_g, S_g)`` with ``nu_g = mu_g + delta_g``. A training set of ``N`` images
holds ``n_g = N pi_g`` images of group ``g``; the generator sees their means ``xbar_h``
(``Var = S_h / n_h``) and unbiased covariances ``S_hat_h``, independent across groups.

**Generator.** Transfer ``a_gh = n_h (1[g = h] + lambda K_gh 1[g != h])`` with
``K_gh = exp(-|mu_g - mu_h|^2 / 2 l^2)``, ``n_eff_g = sum_h a_gh``; shrinkage
``w_g = tau / (tau + n_eff_g)`` towards the pooled data (shares ``p_h = n_h / N``):

.. math::

    m_g = \sum_h \beta_{gh} \bar x_h, \qquad
    \beta_{gh} = (1 - w_g) \frac{a_{gh}}{n^{eff}_g} + w_g p_h, \qquad
    C_g = \gamma^2 \Bigl(\sum_h \beta_{gh} \hat S_h + w_g \hat B\Bigr),

where ``B_hat = sum_h p_h (xbar_h - xbar)(xbar_h - xbar)^T`` is the between-group scatter
of the pooled training set, so a low-data group is generated off-centre *and* mixed with
the other groups; ``gamma <= 1`` is the diversity lost to guidance.

**Expected FD** ``E FD_g = E|m_g - mu_g|^2 + E Bures^2(C_g, S_g)`` (additive whatever
the correlation of the two parts). The mean part is exact:
``|sum_h beta_gh nu_h - mu_g|^2 + sum_h beta_gh^2 tr S_h / n_h``. For the covariance part
write ``C_g = C0_g + E`` with the noise-free ``C0_g = gamma^2 (sum_h beta_gh S_h +
w_g B)``. With ``M = S^{1/2} C S^{1/2} = U diag(m) U^T``, ``A = U^T S^{1/2}`` and the
transport map ``T = A^T diag(m^{-1/2}) A``, two Frechet derivatives of ``tr sqrt(M)`` give

.. math::

    E\,\mathrm{Bures}^2(C_g, S_g) \approx \mathrm{Bures}^2(C0_g, S_g)
      + \operatorname{tr}((I - T)\,e)
      + \tfrac12 \sum_{ij} \frac{E[(A E A^T)_{ij}^2]}{\sqrt{m_i m_j}(\sqrt{m_i} + \sqrt{m_j})},

with the bias ``e = E[E] = gamma^2 w_g sum_h p_h (1 - p_h) S_h / n_h`` (from the scatter of
sample means) and, for Gaussian training data, ``E[(A E A^T)_ij^2] = sum_h [c_h^2
(P_ij^2 + P_ii P_jj) / n_h + (gamma^2 w_g p_h)^2 (a_i^2 V_jj + a_j^2 V_ii + 2 a_i a_j V_ij)]``
with ``c_h = gamma^2 beta_gh``, ``P = A S_h A^T``, ``V = P / n_h``, ``a = A (nu_h - nubar)``
(Wishart fluctuations of ``S_hat_h``; linearised scatter fluctuations). Everything above
the noise-free value is ``O(1/N)``: the *noise* term, whose slope in ``log N`` is ``-1``.
At ``C0 = S`` it reduces to ``(1/2n)[sum_i s_i + sum_{i != j} s_i s_j / (s_i + s_j)]`` of
the design note (``sigma^2 d (d + 1) / 4n`` isotropic) and to the measured-FD bias of
``_frechet``. ``1/n_h`` stands for ``1/(n_h - 1)`` (equal to first order, finite as a
share goes to 0 while planning).

**Estimated targets.** An audit knows ``mu_g`` and ``S_g`` only as a reference sample's mean
and unbiased covariance (``TargetWorld.reference_counts`` images per group). The plug-in
value of everything above at those estimates is biased upwards wherever a group is mixed
with others: its own target's noise no longer cancels. Given the counts, ``expected_fd``
subtracts that bias to second order, by the same expansion with the sample noise in both
arguments of the Bures term (:func:`_reference_cov_excess`), ``sum_h (beta_gh -
1[g = h])^2 tr S_h / n_h`` from the mean term, and the gaps of the transfer kernel taken as
``|xbar_g - xbar_h|^2 - tr S_g / n_g - tr S_h / n_h``. At 200 images per group in 20
dimensions the plug-in overstated low-share groups' expected FD by 4-6%; corrected, the
remainder is under 0.5% (Monte Carlo over reference samples in the tests).

All functions are pure and differentiable (``jax.grad`` through the shares, transfer,
shrinkage and diversity; the eigendecompositions are ``_linalg.eigh``, LAPACK on CPU with
its own JVP).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg
from ._frechet import _phi  # the metric core's own bias formula, shared, not copied
from ._typing import Array, PRNGKey


class TargetWorld(NamedTuple):
    """The target populations and the training sources.

    Attributes:
        means: ``(G, d)`` target group means ``mu_g``.
        covs: ``(G, d, d)`` target group covariances ``S_g`` (positive definite).
        shifts: ``(G, d)`` source shifts ``delta_g`` (training data of ``g`` centres on
            ``mu_g + delta_g``).
        reference_counts: ``(G,)`` images per group when ``means`` and ``covs`` are a
            reference sample's mean and unbiased covariance rather than the population's
            (an audit's targets); :func:`expected_fd` then removes the bias the sample's
            noise puts into its plug-in value. ``None``: the population itself.
    """

    means: Array
    covs: Array
    shifts: Array
    reference_counts: Array | None = None


class TrainingMix(NamedTuple):
    """How the generator's training set was chosen, and how the generator used it.

    Attributes:
        shares: ``(G,)`` training shares ``pi`` on the simplex.
        size: total training images ``N``.
        transfer: cross-group transfer ``lambda`` in ``[0, 1]``.
        length_scale: transfer length scale ``l`` (embedding units).
        shrinkage: ``tau >= 0``, in images: a group with ``n_eff = tau`` is generated half
            from its own data, half from the pooled data.
        diversity: ``gamma`` in ``(0, 1]``, the standard-deviation factor kept by guidance.
    """

    shares: Array
    size: Array
    transfer: Array
    length_scale: Array
    shrinkage: Array
    diversity: Array


class Mixing(NamedTuple):
    """Derived weights (all ``(G,)`` or ``(G, G)``; rows index the generated group)."""

    counts: Array  # n_g
    effective: Array  # n_eff_g
    shrink: Array  # w_g
    beta: Array  # m_g = beta @ xbar
    pooled: Array  # p_h = n_h / N


class GeneratedGaussians(NamedTuple):
    """The generator's per-group Gaussians: ``means (G, d)``, ``covs (G, d, d)``."""

    means: Array
    covs: Array


class TrainingStats(NamedTuple):
    """What the generator learns from: per-group sample means and unbiased covariances."""

    means: Array
    covs: Array


class FDPrediction(NamedTuple):
    """Expected per-group FD (``(G,)`` each): ``total = structural + noise``.

    ``reference_excess`` is what a world estimated from reference samples adds to the
    plug-in structural FD in expectation (already subtracted from ``structural``; zero for
    a population world)."""

    total: Array
    structural: Array
    noise: Array
    mean_structural: Array
    mean_noise: Array
    cov_structural: Array
    cov_noise: Array
    reference_excess: Array


def transfer_kernel(means: Array, length_scale, mean_noise: Array | None = None) -> Array:
    """``K_gh = exp(-|mu_g - mu_h|^2 / (2 l^2))``, shape ``(G, G)``.

    ``mean_noise`` (``(G,)``, ``tr S_g / n_g``) marks ``means`` as sample means: their squared
    gaps exceed the populations' by ``mean_noise_g + mean_noise_h`` in expectation, which is
    taken off (a group pair then transfers as much as its populations' gap says).
    """
    gap2 = jnp.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    if mean_noise is not None:
        gap2 = jnp.clip(gap2 - (mean_noise[:, None] + mean_noise[None, :]), 0.0)
    return jnp.exp(-gap2 / (2.0 * length_scale**2))


def mixing(world: TargetWorld, mix: TrainingMix) -> Mixing:
    """Counts, effective counts, shrinkage weights and the mean weights ``beta``."""
    counts = mix.size * mix.shares
    mean_noise = None
    if world.reference_counts is not None:
        mean_noise = jnp.trace(world.covs, axis1=-2, axis2=-1) / jnp.asarray(world.reference_counts, world.covs.dtype)
    kernel = transfer_kernel(world.means, mix.length_scale, mean_noise)
    eye = jnp.eye(counts.shape[0], dtype=counts.dtype)
    a = counts[None, :] * (eye + mix.transfer * kernel * (1.0 - eye))
    effective = a.sum(axis=1)
    shrink = mix.shrinkage / (mix.shrinkage + effective)
    pooled = counts / counts.sum()
    # a / n_eff is 0/0 for a group with no data and no transfer; its weight is then all
    # shrinkage (w = 1), so any finite value works there.
    own = a / jnp.where(effective > 0, effective, 1.0)[:, None]
    beta = (1.0 - shrink)[:, None] * own + shrink[:, None] * pooled[None, :]
    return Mixing(counts, effective, shrink, beta, pooled)


def _scatter(means: Array, weights: Array) -> Array:
    centred = means - weights @ means
    return jnp.einsum("h,hi,hj->ij", weights, centred, centred)


def fit_generator(stats: TrainingStats, world: TargetWorld, mix: TrainingMix) -> GeneratedGaussians:
    """The generator fitted to training statistics (the simulator's and Monte Carlo's path)."""
    mx = mixing(world, mix)
    means = mx.beta @ stats.means
    scatter = _scatter(stats.means, mx.pooled)
    covs = mix.diversity**2 * (
        jnp.einsum("gh,hij->gij", mx.beta, stats.covs) + mx.shrink[:, None, None] * scatter[None]
    )
    return GeneratedGaussians(means, covs)


def noise_free_generator(world: TargetWorld, mix: TrainingMix) -> GeneratedGaussians:
    """``E[m_g]`` and the noise-free ``C0_g`` (training statistics at their expectations)."""
    return fit_generator(TrainingStats(world.means + world.shifts, world.covs), world, mix)


def sample_training_stats(key: PRNGKey, world: TargetWorld, counts: Array) -> TrainingStats:
    """Draw per-group sample means and unbiased covariances of ``counts`` Gaussian images.

    Exact in distribution without drawing images: ``xbar ~ N(nu, S/n)`` and, independently,
    ``(n - 1) S_hat ~ Wishart(S, n - 1)`` by the Bartlett decomposition. ``counts`` must
    be concrete integers ``>= 2``.
    """
    g, d = world.means.shape
    k_mean, k_diag, k_low = jax.random.split(key, 3)
    chol = jnp.linalg.cholesky(world.covs)
    dof = jnp.asarray(counts, dtype=world.covs.dtype) - 1.0
    z = jax.random.normal(k_mean, (g, d), dtype=world.means.dtype)
    means = world.means + world.shifts + jnp.einsum("gij,gj->gi", chol, z) / jnp.sqrt(dof + 1.0)[:, None]
    # Bartlett: A_ii^2 ~ chi2(dof - i), A_ij ~ N(0, 1) below the diagonal.
    shape = (dof[:, None] - jnp.arange(d)[None, :]) / 2.0
    diag = jnp.sqrt(2.0 * jax.random.gamma(k_diag, shape, dtype=world.covs.dtype))
    low = jnp.tril(jax.random.normal(k_low, (g, d, d), dtype=world.covs.dtype), k=-1)
    bartlett = low + jax.vmap(jnp.diag)(diag)
    factor = chol @ bartlett
    covs = factor @ jnp.swapaxes(factor, -1, -2) / dof[:, None, None]
    return TrainingStats(means, covs)


def _sqrt_psd(s: Array) -> Array:
    vals, vecs = _linalg.eigh(s)
    return (vecs * jnp.sqrt(jnp.clip(vals, 0.0))) @ vecs.T


def bures_squared(c: Array, s: Array, s_root: Array | None = None) -> Array:
    """``tr C + tr S - 2 tr (S^{1/2} C S^{1/2})^{1/2}`` for positive definite ``(d, d)``.

    ``s_root`` (``S^{1/2}``) may be passed when ``S`` is fixed across many calls.
    """
    root = _sqrt_psd(s) if s_root is None else s_root
    m, _ = _linalg.eigh(root @ c @ root)
    return jnp.trace(c) + jnp.trace(s) - 2.0 * jnp.sum(jnp.sqrt(jnp.clip(m, 0.0)))


def gaussian_frechet(mean_a: Array, cov_a: Array, mean_b: Array, cov_b: Array) -> Array:
    """Population FD between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``."""
    gap = mean_a - mean_b
    return gap @ gap + bures_squared(cov_a, cov_b)


def _cov_terms(c0, s, root, bias, wishart_coef, scatter_coef, cov_sources, scatter_dirs, counts, reference):
    """Noise-free Bures, its second-order expected excess for one generated group, and (with
    ``reference``) the expected excess of its plug-in value over the population's.

    One eigendecomposition of ``M = S^{1/2} C0 S^{1/2}`` serves all three (see module docstring).
    """
    m, u = _linalg.eigh(root @ c0 @ root)
    rm = jnp.sqrt(jnp.clip(m, 1e-300))
    a_mat = u.T @ root
    transport = (a_mat.T / rm) @ a_mat
    first = jnp.trace(bias) - jnp.sum(transport * bias)
    p = jnp.einsum("ik,hkl,jl->hij", a_mat, cov_sources, a_mat)  # A S_h A^T
    pdiag = jnp.diagonal(p, axis1=-2, axis2=-1)
    wishart = p**2 + pdiag[:, :, None] * pdiag[:, None, :]
    v = p / counts[:, None, None]
    a = scatter_dirs @ a_mat.T  # (G, d): A (nu_h - nubar)
    vdiag = pdiag / counts[:, None]
    scat = (
        a[:, :, None] ** 2 * vdiag[:, None, :]
        + a[:, None, :] ** 2 * vdiag[:, :, None]
        + 2.0 * a[:, :, None] * a[:, None, :] * v
    )
    second = jnp.einsum("h,hij->ij", wishart_coef / counts, wishart) + jnp.einsum("h,hij->ij", scatter_coef, scat)
    kernel = 1.0 / (rm[:, None] * rm[None, :] * (rm[:, None] + rm[None, :]))
    structural = jnp.trace(c0) + jnp.trace(s) - 2.0 * jnp.sum(jnp.sqrt(jnp.clip(m, 0.0)))
    if reference is None:
        return structural, first + 0.5 * jnp.sum(second * kernel), jnp.zeros_like(structural)
    return structural, first + 0.5 * jnp.sum(second * kernel), _reference_cov_excess(
        m, rm, u, s, p, pdiag, transport, kernel, *reference)


def _reference_cov_excess(m, rm, u, s, p, pdiag, transport, kernel, scatter_bias, coef, own, own_dof):
    r"""Expected excess of the plug-in ``Bures^2(C0(S_hat), S_hat_g)`` over its population value.

    The target ``S_g`` and every ``S_h`` inside ``C0_g`` are reference-sample covariances,
    ``S_hat_h = S_h + E_h`` with independent Wishart fluctuations ``E_h`` (``n_h - 1``
    degrees of freedom), so the plug-in sees ``C0 + E_C`` against ``S + E_S`` with
    ``E_C = gamma^2 sum_h beta_gh E_h`` and ``E_S = E_g``, correlated through ``h = g``. Second
    order in both: with ``X = C S`` (eigenvalues ``m``; ``V = S^{-1/2} U``) the perturbed
    ``X`` is ``V (P + diag(m) Q + P Q) V^{-1}`` with ``P = A E_C A^T``, ``Q = B E_S B^T``,
    ``A = U^T S^{1/2}``, ``B = U^T S^{-1/2}``, and ``tr sqrt(X)`` expands to

    .. math::

        E\,\Delta \mathrm{Bures}^2 = \sum_{ij} \frac{E[P_{ij}^2] + (m_i + m_j) E[P_{ij} Q_{ij}]
            + m_i m_j E[Q_{ij}^2]}{2 \sqrt{m_i m_j} (\sqrt{m_i} + \sqrt{m_j})}
          - \sum_i \frac{E[(P Q)_{ii}]}{\sqrt{m_i}},

    where, with ``W = A S B^T = U^T S U`` and ``c = gamma^2 beta_gg``: ``E[Q_ij^2] = (1 +
    delta_ij) / (n_g - 1)``, ``E[P_ij Q_ij] = c (W_ii W_jj + W_ij^2) / (n_g - 1)``, ``E[(P
    Q)_ii] = c ((W^2)_ii + W_ii tr W) / (n_g - 1)`` and ``E[P_ij^2]`` the Wishart sum of
    the training noise with reference degrees of freedom. The reference means enter ``C0``
    through the between-group scatter, whose expectation they raise by ``scatter_bias``
    (first order, ``tr((I - T) e)`` as for the training noise). Checked against Monte Carlo
    over reference samples in ``tests/core/test_training_mix.py``.
    """
    first = jnp.trace(scatter_bias) - jnp.sum(transport * scatter_bias)
    wishart = p**2 + pdiag[:, :, None] * pdiag[:, None, :]
    p2 = jnp.einsum("h,hij->ij", coef, wishart)
    w = u.T @ s @ u
    wd = jnp.diag(w)
    q2 = (1.0 + jnp.eye(m.shape[0], dtype=m.dtype)) / own_dof
    pq = own * (wd[:, None] * wd[None, :] + w**2) / own_dof
    pq_trace = own * (jnp.diag(w @ w) + wd * jnp.trace(w)) / own_dof
    second = p2 + (m[:, None] + m[None, :]) * pq + m[:, None] * m[None, :] * q2
    return first + 0.5 * jnp.sum(second * kernel) - jnp.sum(pq_trace / rm)


def target_roots(world: TargetWorld) -> Array:
    """``S_g^{1/2}`` for every group (pass to :func:`expected_fd` when the world is fixed)."""
    return jax.vmap(_sqrt_psd)(world.covs)


def expected_fd(world: TargetWorld, mix: TrainingMix, roots: Array | None = None) -> FDPrediction:
    """Expected per-group FD of the generator to the target, split structural + noise.

    Args:
        world: target means ``(G, d)``, covariances ``(G, d, d)``, source shifts.
        mix: training shares, size, transfer, shrinkage, diversity (scalars or ``(G,)``).

    Returns:
        :class:`FDPrediction` of ``(G,)`` arrays; ``noise`` is ``O(1/N)``.

    ``roots`` (from :func:`target_roots`) saves one eigendecomposition per group when the
    same world is evaluated many times (a posterior fit, a planner).

    Example:
        >>> import jax.numpy as jnp
        >>> world = TargetWorld(jnp.zeros((1, 3)), jnp.eye(3)[None], jnp.zeros((1, 3)))
        >>> mix = TrainingMix(jnp.ones(1), 100.0, 0.0, 1.0, 0.0, 1.0)
        >>> round(float(expected_fd(world, mix).total[0]), 6)  # tr S/n + d(d+1)/(4n)
        0.06
    """
    mx = mixing(world, mix)
    gen = noise_free_generator(world, mix)
    gap = gen.means - world.means
    mean_structural = jnp.sum(gap**2, axis=-1)
    traces = jnp.trace(world.covs, axis1=-2, axis2=-1)
    mean_noise = (mx.beta**2 / mx.counts[None, :]) @ traces

    g2 = mix.diversity**2
    sources = world.means + world.shifts
    scatter_dirs = sources - mx.pooled @ sources
    spread = jnp.einsum("h,hij->ij", mx.pooled * (1.0 - mx.pooled) / mx.counts, world.covs)
    biases = g2 * mx.shrink[:, None, None] * spread[None]
    wishart_coef = (g2 * mx.beta) ** 2
    scatter_coef = (g2 * mx.shrink[:, None] * mx.pooled[None, :]) ** 2
    roots = target_roots(world) if roots is None else roots
    reference, reference_axes, mean_excess = None, None, jnp.zeros_like(mean_structural)
    if world.reference_counts is not None:
        # The targets are reference-sample estimates: what their noise adds to the plug-in.
        n_ref = jnp.asarray(world.reference_counts, dtype=world.covs.dtype)
        own = jnp.eye(mx.beta.shape[0], dtype=mx.beta.dtype)
        mean_excess = ((mx.beta - own) ** 2 / n_ref[None, :]) @ traces
        ref_spread = jnp.einsum("h,hij->ij", mx.pooled * (1.0 - mx.pooled) / n_ref, world.covs)
        reference = (g2 * mx.shrink[:, None, None] * ref_spread[None], wishart_coef / (n_ref - 1.0)[None, :],
                     g2 * jnp.diagonal(mx.beta), n_ref - 1.0)
        reference_axes = (0, 0, 0, 0)
    cov_structural, cov_noise, cov_excess = jax.vmap(
        _cov_terms, in_axes=(0, 0, 0, 0, 0, 0, None, None, None, reference_axes))(
        gen.covs, world.covs, roots, biases, wishart_coef, scatter_coef, world.covs, scatter_dirs, mx.counts, reference
    )
    mean_structural = mean_structural - mean_excess
    cov_structural = cov_structural - cov_excess
    structural = mean_structural + cov_structural
    noise = mean_noise + cov_noise
    return FDPrediction(structural + noise, structural, noise, mean_structural, mean_noise, cov_structural, cov_noise,
                        mean_excess + cov_excess)


def measured_fd_bias(gen_covs: Array, target_covs: Array, n_generated, n_reference) -> Array:
    """Expected excess of a *measured* per-group FD over the true one (``(G,)``).

    The same first-order bias the metric core subtracts in ``frechet_distance(...,
    unbiased=True)``, evaluated at population covariances: an audit that measures a group
    with 200 images inflates its FD by about ``tr-terms / 200``, which manufactures
    disparity between groups audited with unequal sample sizes.
    """
    def one(c, s, n_g, n_r):
        r = _linalg.product_spectrum(c, s)
        return jnp.trace(c) / n_g + jnp.trace(s) / n_r + (0.5 / (n_g - 1.0) + 0.5 / (n_r - 1.0)) * _phi(r)

    n_g = jnp.broadcast_to(jnp.asarray(n_generated, dtype=gen_covs.dtype), gen_covs.shape[:1])
    n_r = jnp.broadcast_to(jnp.asarray(n_reference, dtype=gen_covs.dtype), gen_covs.shape[:1])
    return jax.vmap(one)(gen_covs, target_covs, n_g, n_r)


def default_length_scale(means) -> float:
    """The transfer kernel's length scale when none is given: the median distance between
    two groups' means (so about half the group pairs transfer more than ``exp(-1/2)``)."""
    m = np.asarray(means, dtype=float)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(f"means must be (G, d) with at least 2 groups, got shape {m.shape}")
    gaps = np.sqrt(((m[:, None] - m[None]) ** 2).sum(-1))[np.triu_indices(len(m), 1)]
    scale = float(np.median(gaps))
    if not scale > 0:
        raise ValueError("the group means coincide: no length scale can be read from them; pass one")
    return scale
