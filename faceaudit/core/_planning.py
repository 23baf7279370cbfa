r"""Plan a training mix: spend a budget of extra images where the worst group gains most.

Extra images ``e = B softmax(z)`` (on the scaled simplex) join the ``n_g = N pi_g`` images
already there; the new mix has size ``N + B`` and shares ``(n + e) / (N + B)``. The
objective is the worst group's predicted quality,

* ``"fd"``: ``max_g E FD_g`` (``_training_mix.expected_fd``), or
* ``"verification"``: ``-min_g`` same-group verification accuracy of invented identities
  (``_identity.expected_verification``; needs the real identity spreads),

smoothed as ``(1/beta) log sum_g exp(beta q_g)`` with ``beta`` raised along the run (a
log-sum-exp homotopy to the max) and minimised with Adam on ``z``. With posterior draws
(a leading axis on every :class:`TrainingMix` field) the per-group quality is averaged over
the draws first: the plan minimises the worst group's *expected* FD.
"""

from __future__ import annotations

import functools

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._identity import IdentitySpread, expected_verification, generated_spread
from ._training_mix import TargetWorld, TrainingMix, expected_fd, mixing
from ._typing import Array

OBJECTIVES = ("fd", "verification")


class PlanResult(NamedTuple):
    """A planned allocation and its predicted effect (all ``(G,)`` except ``objective``).

    ``quality_before``/``quality_after`` are per-group expected FD (``"fd"``) or same-group
    verification accuracy (``"verification"``), averaged over posterior draws.
    """

    extra: Array
    shares: Array
    quality_before: Array
    quality_after: Array
    objective: Array


def with_extra(mix: TrainingMix, extra: Array) -> TrainingMix:
    """The mix after adding ``extra`` images per group."""
    counts = mix.size * mix.shares + extra
    size = mix.size + extra.sum()
    return mix._replace(shares=counts / size, size=size)


def group_quality(world: TargetWorld, mix: TrainingMix, objective: str, identity: IdentitySpread | None = None):
    """Per-group quality under one mix: expected FD or same-group verification accuracy."""
    if objective == "fd":
        return expected_fd(world, mix).total
    shrink = mixing(world, mix).shrink
    spread = generated_spread(identity.within, identity.between, shrink, mix.diversity)
    # Same-group pairs share the group mean, so only the spreads matter here.
    return expected_verification(world.means, spread).same_group


def _averaged_quality(world, mix, objective, identity):
    if jnp.ndim(mix.shares) == 2:
        return jnp.mean(jax.vmap(lambda m: group_quality(world, m, objective, identity))(mix), axis=0)
    return group_quality(world, mix, objective, identity)


def evaluate_allocation(world: TargetWorld, mix: TrainingMix, extra: Array, *, objective: str = "fd",
                        identity: IdentitySpread | None = None) -> Array:
    """Per-group quality after adding ``extra`` images (averaged over posterior draws)."""
    _check_objective(objective, identity)
    return _evaluate_allocation(world, mix, jnp.asarray(extra, jnp.float64), objective, identity)


@functools.partial(jax.jit, static_argnums=3)
def _evaluate_allocation(world, mix, extra, objective, identity):
    # Compiled as a whole: evaluated op by op, the closed forms cost ~100 small compiles.
    if jnp.ndim(mix.shares) == 2:
        new = jax.vmap(lambda m: with_extra(m, extra))(mix)
    else:
        new = with_extra(mix, extra)
    return _averaged_quality(world, new, objective, identity)


def _check_objective(objective, identity):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "verification" and identity is None:
        raise ValueError("objective='verification' needs the real identity spreads (identity=IdentitySpread(...))")


@functools.partial(jax.jit, static_argnums=(6, 7))
def _optimise(world, mix, identity, budget, scale, learning_rate, objective, steps):
    """Adam on the allocation's softmax logits, annealing a soft maximum of the groups'
    quality into the maximum. One compiled function of the data (not a closure over it), so
    a second plan in the same process reuses the compiled code."""
    sign = 1.0 if objective == "fd" else -1.0

    def loss(z, beta):
        quality = _evaluate_allocation(world, mix, budget * jax.nn.softmax(z), objective, identity)
        return jax.nn.logsumexp(beta * sign * quality / scale) / beta

    grad = jax.grad(loss)

    def adam(state, schedule):
        z, m, v, t = state
        beta, rate = schedule
        g = grad(z, beta)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        t = t + 1.0
        step = rate * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-12)
        return (z - step, m, v, t), None

    z0 = jnp.zeros(world.means.shape[0])
    betas = jnp.geomspace(10.0, 3000.0, steps)
    # The step size decays (cosine, to 1% of the start) while the soft maximum sharpens:
    # at a constant step the iterate keeps circling the minimax point once beta is large.
    rates = learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.arange(steps) / steps)))
    (z, _, _, _), _ = jax.lax.scan(adam, (z0, z0, z0, 0.0), (betas, rates))
    return z


def plan_mix(
    world: TargetWorld,
    mix: TrainingMix,
    budget: float,
    *,
    objective: str = "fd",
    identity: IdentitySpread | None = None,
    steps: int = 150,
    learning_rate: float = 0.1,
) -> PlanResult:
    """The allocation of ``budget`` extra training images that best helps the worst group.

    Args:
        world: target populations and source shifts.
        mix: the current training mix (fields may carry a leading posterior-draw axis).
        budget: extra images to allocate (``> 0``).
        objective: ``"fd"`` (minimise the worst group's FD) or ``"verification"``
            (maximise the worst group's same-group verification accuracy).
        identity: real within/between identity variances (for ``"verification"``).
        steps: Adam steps on the softmax logits.
        learning_rate: Adam's learning rate.

    Returns:
        :class:`PlanResult`.
    """
    _check_objective(objective, identity)
    if not budget > 0:
        raise ValueError(f"budget must be a positive number of images, got {budget}")
    before = evaluate_allocation(world, mix, jnp.zeros(world.means.shape[0]), objective=objective, identity=identity)
    scale = jnp.maximum(jnp.max(jnp.abs(before)), 1e-12)
    z = _optimise(world, mix, identity, jnp.asarray(budget, jnp.float64), scale, jnp.asarray(learning_rate, jnp.float64),
                  objective, steps)
    extra = budget * jax.nn.softmax(z)
    after = evaluate_allocation(world, mix, extra, objective=objective, identity=identity)
    if jnp.ndim(mix.shares) == 2:
        new_shares = jnp.mean(jax.vmap(lambda m: with_extra(m, extra).shares)(mix), axis=0)
    else:
        new_shares = with_extra(mix, extra).shares
    worst = jnp.max(after) if objective == "fd" else jnp.min(after)
    return PlanResult(extra, new_shares, before, after, worst)
