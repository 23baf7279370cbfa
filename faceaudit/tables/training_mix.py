"""Training-mix model tables: the fitted posterior into effective shares, the worlds it
implies, and the planner's allocation beside the alternatives.

``fit`` runs the numpyro training-mix model (``faceaudit.models.training_mix``) and returns an
arviz InferenceData with the target world and what the fit was given in
``constant_data``; the rest turns such a posterior into the tables the explain and plan
stages write.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from faceaudit import core
from faceaudit.files.quiet import arviz
from faceaudit.tables.posterior import Sampling, chain_method, diagnostics, inference_data

UNDER_REPRESENTED_PROBABILITY = 0.9


def fit(design, fd, verification, *, generators, groups, constant: dict, attrs: dict, sampling: Sampling):
    """NUTS on the training-mix model; InferenceData with ``constant_data`` and diagnostics.

    ``fd`` and ``verification`` (or None) are (generator, group) observations; ``constant``
    and ``attrs`` go into ``constant_data`` beside them."""
    from numpyro.infer import MCMC

    from faceaudit.models.training_mix import training_mix_kernel

    # The kernel starts at the prior's median, which the training size and shift scale set.
    method = chain_method(sampling.chains, ("training_mix", float(design.training_size), float(design.shift_scale)),
                          sampling.progress)
    mcmc = MCMC(training_mix_kernel(design), num_warmup=sampling.draws, num_samples=sampling.draws,
                num_chains=sampling.chains, chain_method=method, progress_bar=sampling.progress, jit_model_args=True)
    mcmc.run(jax.random.key(sampling.seed), design, fd=jnp.asarray(fd),
             verification=None if verification is None else jnp.asarray(verification))
    d = design.target_means.shape[1]
    coords = {"generator": generators, "group": groups, "dim": np.arange(d)}
    dims = {"shares": ["generator", "group"], "diversity": ["generator"], "shift": ["group"],
            "fd_expected": ["generator", "group"], "fd": ["generator", "group"],
            "verification_expected": ["generator", "group"], "verification": ["generator", "group"]}
    observed = {"fd": np.asarray(fd)} | ({} if verification is None else {"verification": np.asarray(verification)})
    idata = inference_data(mcmc, observed=observed, coords=coords, dims=dims)
    idata.add_groups(constant_data=xr.Dataset(
        constant, coords={"group": groups, "dim": np.arange(d), "dim2": np.arange(d), "generator": generators},
        attrs=attrs,
    ))
    return idata


def training_mix_diagnostics(idata) -> dict:
    return diagnostics(idata, ["shares", "transfer", "log_shrinkage", "diversity", "shift"])


def summarise_training_mix(idata, hdi_prob: float = 0.9) -> pd.DataFrame:
    """Per generator x group: effective share (mean, HDI), P(share < 1/G), under-represented,
    the fitted expected FD (and same-group verification), and what the fit was given."""
    shares = idata.posterior["shares"]
    post_verification = idata.posterior.get("verification_expected")
    evidence = "per-group FD" + (" + same-group verification" if post_verification is not None else "")
    n_groups = shares.sizes["group"]
    hdi = arviz().hdi(idata, var_names=["shares"], hdi_prob=hdi_prob)["shares"]
    rows = []
    for gen in shares["generator"].values:
        for group in shares["group"].values:
            draws = shares.sel(generator=gen, group=group).values.ravel()
            p_below = float(np.mean(draws < 1.0 / n_groups))
            rows.append(dict(generator=str(gen), group=str(group), share_mean=float(draws.mean()),
                             share_low=float(hdi.sel(generator=gen, group=group, hdi="lower")),
                             share_high=float(hdi.sel(generator=gen, group=group, hdi="higher")),
                             p_below_uniform=p_below, under_represented=p_below >= UNDER_REPRESENTED_PROBABILITY,
                             fd_expected=float(idata.posterior["fd_expected"].sel(generator=gen, group=group).mean()),
                             verification_expected=float(post_verification.sel(generator=gen, group=group).mean())
                             if post_verification is not None else float("nan"),
                             evidence=evidence))
    return pd.DataFrame(rows)


def posterior_world(idata, generator: str | None = None, max_draws: int = 64):
    """Target world and a thinned stack of posterior :class:`TrainingMix` draws."""
    const = idata.constant_data
    post = idata.posterior.stack(sample=("chain", "draw"))
    gen = generator or str(post["generator"].values[0])
    if gen not in list(post["generator"].values):
        raise ValueError(f"generator {gen!r} not in the fit; choose from {list(post['generator'].values)}")
    take = np.linspace(0, post.sizes["sample"] - 1, min(max_draws, post.sizes["sample"])).astype(int)
    shift = post["shift"].values[:, take].T  # (S, G)
    shares = post["shares"].sel(generator=gen).values[:, take].T
    size = float(const.attrs["training_size"])
    mixes = core.TrainingMix(
        jnp.asarray(shares), jnp.full(take.size, size), jnp.asarray(post["transfer"].values[take]),
        jnp.full(take.size, float(const.attrs["length_scale"])), jnp.asarray(post["shrinkage"].values[take]),
        jnp.asarray(post["diversity"].sel(generator=gen).values[take]),
    )
    directions = const["shift_directions"].values
    # The plan averages over draws with one world; shift magnitudes enter through the mean.
    # Fits from before the reference-noise correction stored no counts: their world is the plug-in.
    counts = jnp.asarray(const["reference_counts"].values) if "reference_counts" in const else None
    world = core.TargetWorld(jnp.asarray(const["target_means"].values), jnp.asarray(const["target_covs"].values),
                             jnp.asarray(shift.mean(axis=0)[:, None] * directions), counts)
    return [str(g) for g in const["group"].values], world, mixes


def posterior_identity(idata) -> core.IdentitySpread:
    """The real identity spreads the fit used, for planning by verification accuracy.

    Raises:
        ValueError: the fit had no verification term, or it was fitted in another space
            (the identity encoder) than the target populations, which the planner's
            closed form needs to share.
    """
    const = idata.constant_data
    if "identity_between" not in const:
        raise ValueError(f"the fit has no verification term ({const.attrs.get('verification', 'unknown')}); "
                         "plan by fd, or use --world")
    if int(const.attrs["identity_dim"]) != const.sizes["dim"]:
        raise ValueError(f"identities were fitted in the identity encoder's {const.attrs['identity_dim']} dimensions, "
                         f"the populations in {const.sizes['dim']}; the verification plan needs one space")
    return core.IdentitySpread(jnp.asarray(float(const.attrs["identity_within"])),
                               jnp.asarray(const["identity_between"].values))


def plan_table(labels, world, mix, budget, *, objective="fd", identity=None) -> tuple[pd.DataFrame, core.PlanResult]:
    """The planned allocation beside uniform and proportional ones, per group."""
    plan = core.plan_mix(world, mix, budget, objective=objective, identity=identity)
    g = len(labels)
    shares = np.asarray(mix.shares).mean(axis=0) if np.ndim(mix.shares) == 2 else np.asarray(mix.shares)
    alternatives = {"uniform": np.full(g, budget / g), "proportional": budget * shares}
    frame = pd.DataFrame({
        "group": labels,
        "share_now": shares,
        "extra_images": np.asarray(plan.extra),
        "share_planned": np.asarray(plan.shares),
        "quality_now": np.asarray(plan.quality_before),
        "quality_planned": np.asarray(plan.quality_after),
    })
    for name, extra in alternatives.items():
        frame[f"quality_{name}"] = np.asarray(core.evaluate_allocation(world, mix, jnp.asarray(extra), objective=objective,
                                                                       identity=identity))
    return frame, plan


def share_curves(labels, world, mix, shares_grid=np.linspace(0.01, 0.5, 25)) -> pd.DataFrame:
    """Expected FD of each group as its own share goes over ``shares_grid`` (others rescaled),
    under the posterior mean training mix."""
    base = np.asarray(mix.shares).mean(axis=0) if np.ndim(mix.shares) == 2 else np.asarray(mix.shares)
    one = jax.tree.map(lambda a: jnp.asarray(a).mean(axis=0) if jnp.ndim(a) >= 1 and np.ndim(mix.shares) == 2 else a, mix)
    rows = []
    for g in range(base.size):
        mixes = []
        for s in shares_grid:
            new = base * (1 - s) / (1 - base[g])
            new[g] = s
            mixes.append(new)
        fd = np.asarray(_expected_fd_at_shares(world, one, jnp.asarray(np.stack(mixes))))
        rows.extend(dict(group=labels[g], share=float(s), fd=float(f[g])) for s, f in zip(shares_grid, fd))
    return pd.DataFrame(rows)


@jax.jit
def _expected_fd_at_shares(world, mix, shares):
    """Expected FD of every group under each row of ``shares`` (one compile per shape)."""
    return jax.vmap(lambda s: core.expected_fd(world, mix._replace(shares=s)).total)(shares)
