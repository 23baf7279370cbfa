"""Explain per-group quality by the training mix, and plan a better mix.

``explain``: reference embeddings give the target populations; the measure stage's per-group
bias-corrected FD (with bootstrap standard errors) is the data, joined by the same-group
verification accuracy of named identities when the real identity spreads are known;
``models/selection.py`` is the model. Output: ``selection.nc`` (arviz InferenceData with
the target world in ``constant_data``) and a table of effective training shares with the groups that look
under-represented. ``plan_mix``: the worst-group-optimal allocation of extra training
images under the posterior (or under a simulated world's truth), against the uniform and
proportional allocations, with a quality-versus-share figure.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from faceaudit import core
from faceaudit.disparity import save_idata
from faceaudit.io import atomic_write_bytes
from faceaudit.store import EmbeddingStore, read_manifest

UNDER_REPRESENTED_PROBABILITY = 0.9


@dataclasses.dataclass(frozen=True)
class ExplainSettings:
    training_size: float | None = None  # default: the simulated world's, when there is one
    length_scale: float | None = None  # default: median distance between group means
    num_warmup: int = 300
    num_samples: int = 300
    num_chains: int = 2
    seed: int = 0
    max_dim: int = 48  # above this, fit in the reference set's top principal components


def _targets(audit_dir: Path, manifest: pd.DataFrame, meta: dict, groups: list[str], max_dim: int):
    encoder = meta.get("encoders", {}).get("distribution")
    store = EmbeddingStore(audit_dir, encoder, meta.get("preprocessing", {}).get(encoder, "none"))
    emb = np.asarray(store.load(manifest["image_id"])["embedding"].values, dtype=np.float64)
    ref = manifest["role"].to_numpy() == "reference"
    labels = manifest["group"].to_numpy()
    basis = None
    if emb.shape[1] > max_dim:
        centred = emb[ref] - emb[ref].mean(axis=0)
        basis = np.linalg.svd(centred, full_matrices=False)[2][:max_dim].T
        emb = emb @ basis
    means, covs = [], []
    for g in groups:
        rows = emb[ref & (labels == g)]
        if rows.shape[0] <= rows.shape[1]:
            raise ValueError(
                f"group {g!r} has {rows.shape[0]} reference images for {rows.shape[1]} dimensions; "
                "explain needs more reference images than dimensions (lower max_dim)"
            )
        means.append(rows.mean(axis=0))
        covs.append(np.cov(rows, rowvar=False))
    return np.stack(means), np.stack(covs), basis, emb


def _observed_fd(audit_dir, metrics, groups, basis, manifest, emb, seed):
    """Per generator x group bias-corrected FD and SE: the measure stage's, or recomputed
    in the principal subspace when the fit works there."""
    if basis is None:
        fd = metrics[(metrics["metric"] == "fd_unbiased") & (metrics["group"] != "all")]
        generators = sorted(fd["generator"].unique())
        table = fd.pivot(index="generator", columns="group", values="value").reindex(index=generators, columns=groups)
        se = fd.pivot(index="generator", columns="group", values="se").reindex(index=generators, columns=groups)
        if table.isna().any().any():
            missing = table.columns[table.isna().any()].tolist()
            raise ValueError(f"{audit_dir / 'metrics.parquet'} lacks fd_unbiased for group(s) {missing}")
        return generators, table.to_numpy(), se.to_numpy()
    ref = manifest["role"].to_numpy() == "reference"
    generators = sorted(manifest.loc[~ref, "generator"].unique())
    values, ses = [], []
    for gen in generators:
        pick = (manifest["generator"].to_numpy() == gen) & (manifest["identity_kind"].to_numpy() == "none")
        est = core.by_group("fd_unbiased", emb[ref], manifest.loc[ref, "group"].to_numpy(), emb[pick],
                            manifest.loc[pick, "group"].to_numpy(), key=jax.random.key(seed))
        order = [est.groups.index(g) for g in groups]
        values.append(np.asarray(est.estimate)[order])
        ses.append(np.asarray(est.se)[order])
    return generators, np.stack(values), np.stack(ses)


def _impostor_pair_weights(manifest: pd.DataFrame, generators: list[str], groups: list[str]) -> np.ndarray:
    """``(J, G, 2, 2)`` counts of ordered image pairs of distinct named identities by kind
    (invented, celebrity): the mixture ``verification_pairs`` draws same-group impostors from."""
    out = np.zeros((len(generators), len(groups), 2, 2))
    named = (manifest["role"] == "generated") & (manifest["identity"] != "") & (manifest["edit"] == "")
    rows = manifest[named]
    for j, gen in enumerate(generators):
        for k, grp in enumerate(groups):
            mine = rows[(rows["generator"] == gen) & (rows["group"] == grp)]
            per_identity = mine.groupby("identity")["identity_kind"].agg(["first", "size"])
            celebrity = (per_identity["first"] == "celebrity").to_numpy()
            m = per_identity["size"].to_numpy(dtype=float)
            n = np.array([m[~celebrity].sum(), m[celebrity].sum()])
            same = np.array([np.sum(m[~celebrity] ** 2), np.sum(m[celebrity] ** 2)])
            out[j, k] = np.outer(n, n) - np.diag(same)
            if out[j, k].sum() <= 0:
                # No impostor pairs: the cell is masked out of the likelihood, but its
                # prediction must stay finite (a NaN would poison the gradient).
                out[j, k] = np.diag([1.0, 0.0])
    return out


def _verification_design(audit_dir, metrics, manifest, meta, groups, generators):
    """``(design, observed accuracies, where the identity spreads came from)`` of the
    verification term, or ``(None, None, why it cannot be formed)``."""
    from faceaudit.models.selection import VerificationDesign

    same = metrics[(metrics["metric"] == "verification_same_group") & (metrics["edit"] == "")]
    if same.empty:
        return None, None, "the audit has no same-group verification (no named identities)"
    value = same.pivot(index="generator", columns="group", values="value").reindex(index=generators, columns=groups)
    se = same.pivot(index="generator", columns="group", values="se").reindex(index=generators, columns=groups)
    observed = (np.isfinite(value.to_numpy()) & np.isfinite(se.to_numpy()) & (se.to_numpy() > 0))
    if not observed.any():
        return None, None, "no same-group verification accuracy has a standard error"
    ref = manifest["role"].to_numpy() == "reference"
    encoder = meta.get("encoders", {}).get("identity")
    labelled = ref & (manifest["identity"].to_numpy() != "")
    if encoder and labelled.any():
        store = EmbeddingStore(audit_dir, encoder, meta.get("preprocessing", {}).get(encoder, "none"))
        emb = store.load(manifest.loc[labelled, "image_id"])
        keep = np.asarray(emb["found"].values, dtype=bool)
        x = np.asarray(emb["embedding"].values, dtype=np.float64)[keep]
        sub = manifest.loc[labelled][keep]
        within, between = core.identity_spreads(x, sub["identity"].to_numpy(), sub["group"].to_numpy(), groups)
        dim, source = x.shape[1], "reference images with identity labels"
    elif (audit_dir / "world.npz").is_file():
        from faceaudit.simulate import World

        world = World.from_npz(audit_dir / "world.npz")
        order = [world.labels.index(g) for g in groups]
        within, between = float(world.identity.within), np.asarray(world.identity.between)[order]
        dim, source = int(world.world.means.shape[1]), "the simulated world (world.npz)"
    else:
        return None, None, "the real identity spreads are unknown (no reference images with identity labels)"
    design = VerificationDesign(dim, within, jnp.asarray(between),
                                jnp.asarray(_impostor_pair_weights(manifest, generators, groups)),
                                jnp.asarray(np.where(observed, se.to_numpy(), 1.0)), jnp.asarray(observed))
    return design, np.where(observed, value.to_numpy(), np.nan), source


def explain(audit_dir: str | Path, settings: ExplainSettings = ExplainSettings(), *, progress: bool = False) -> az.InferenceData:
    """Fit the selection model to an audit folder; write ``selection.nc``; return it."""
    from numpyro.infer import MCMC

    from faceaudit.models.selection import SelectionDesign, selection_kernel

    audit_dir = Path(audit_dir)
    manifest, meta = read_manifest(audit_dir / "manifest.parquet")
    groups = sorted(manifest.loc[manifest["role"] == "reference", "group"].unique())
    training_size = settings.training_size
    if training_size is None:
        truth = audit_dir / "truth.json"
        if not truth.is_file():
            raise ValueError("pass the generator's training-set size (--training-size); it is not identifiable from FD")
        training_size = float(json.loads(truth.read_text())["training"]["size"])
    means, covs, basis, emb = _targets(audit_dir, manifest, meta, groups, settings.max_dim)
    metrics = pd.read_parquet(audit_dir / "metrics.parquet")
    generators, fd, se = _observed_fd(audit_dir, metrics, groups, basis, manifest, emb, settings.seed)
    if np.any(~np.isfinite(se)) or np.any(se <= 0):
        raise ValueError("every per-group FD needs a positive standard error: run measure with bootstrap replicates")
    gaps = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))[np.triu_indices(len(groups), 1)]
    length_scale = settings.length_scale or float(np.median(gaps))
    d = means.shape[1]
    if d < len(groups):
        raise ValueError(f"the fit needs at least as many dimensions ({d}) as groups ({len(groups)})")
    directions = np.linalg.qr(np.random.default_rng(settings.seed).normal(size=(d, len(groups))))[0].T
    target = core.TargetWorld(jnp.asarray(means), jnp.asarray(covs), jnp.zeros_like(jnp.asarray(means)))
    verification, accuracy, verification_source = _verification_design(audit_dir, metrics, manifest, meta, groups, generators)
    design = SelectionDesign(target.means, target.covs, jnp.asarray(directions), training_size, length_scale,
                             jnp.asarray(se), core.target_roots(target), verification=verification)
    mcmc = MCMC(selection_kernel(), num_warmup=settings.num_warmup,
                num_samples=settings.num_samples, num_chains=settings.num_chains, chain_method="vectorized",
                progress_bar=progress)
    mcmc.run(jax.random.key(settings.seed), design, fd=jnp.asarray(fd),
             verification=None if verification is None else jnp.asarray(accuracy))
    coords = {"generator": generators, "group": groups, "dim": np.arange(d)}
    dims = {"shares": ["generator", "group"], "diversity": ["generator"], "shift": ["group"],
            "fd_expected": ["generator", "group"], "fd": ["generator", "group"],
            "verification_expected": ["generator", "group"], "verification": ["generator", "group"]}
    idata = az.from_numpyro(mcmc, coords=coords, dims=dims)
    constant = {"target_means": (("group", "dim"), means), "target_covs": (("group", "dim", "dim2"), covs),
                "shift_directions": (("group", "dim"), directions), "fd_se": (("generator", "group"), se)}
    attrs = {"training_size": training_size, "length_scale": length_scale,
             "verification": verification_source if verification is not None else f"not fitted: {verification_source}"}
    if verification is not None:
        constant["identity_between"] = (("group",), np.asarray(verification.between))
        attrs.update(identity_within=float(verification.within), identity_dim=verification.dim)
    idata.add_groups(constant_data=xr.Dataset(
        constant, coords={"group": groups, "dim": np.arange(d), "dim2": np.arange(d), "generator": generators},
        attrs=attrs,
    ))
    save_idata(idata, audit_dir / "selection.nc")
    return idata


def summarise_selection(idata: az.InferenceData, hdi_prob: float = 0.9) -> pd.DataFrame:
    """Per generator x group: effective share (mean, HDI), P(share < 1/G), under-represented,
    the fitted expected FD (and same-group verification), and what the fit was given."""
    shares = idata.posterior["shares"]
    post_verification = idata.posterior.get("verification_expected")
    evidence = "per-group FD" + (" + same-group verification" if post_verification is not None else "")
    n_groups = shares.sizes["group"]
    hdi = az.hdi(idata, var_names=["shares"], hdi_prob=hdi_prob)["shares"]
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


def posterior_world(idata: az.InferenceData, generator: str | None = None, max_draws: int = 64):
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
    world = core.TargetWorld(jnp.asarray(const["target_means"].values), jnp.asarray(const["target_covs"].values),
                             jnp.asarray(shift.mean(axis=0)[:, None] * directions))
    return [str(g) for g in const["group"].values], world, mixes


def posterior_identity(idata: az.InferenceData) -> core.IdentitySpread:
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


def share_curves(world, mix, shares_grid=np.linspace(0.01, 0.5, 25)) -> pd.DataFrame:
    """Expected FD of each group as its own share goes over ``shares_grid`` (others rescaled)."""
    base = np.asarray(mix.shares).mean(axis=0) if np.ndim(mix.shares) == 2 else np.asarray(mix.shares)
    one = jax.tree.map(lambda a: jnp.asarray(a).mean(axis=0) if jnp.ndim(a) >= 1 and np.ndim(mix.shares) == 2 else a, mix)
    rows = []
    fd = jax.jit(lambda s: core.expected_fd(world, one._replace(shares=s)).total)
    for g in range(base.size):
        for s in shares_grid:
            new = base * (1 - s) / (1 - base[g])
            new[g] = s
            rows.append(dict(group=g, share=float(s), fd=float(fd(jnp.asarray(new))[g])))
    return pd.DataFrame(rows)


def plot_plan(labels, table: pd.DataFrame, curves: pd.DataFrame, path: str | Path, objective: str = "fd") -> None:
    """Two panels: quality versus share per group; quality now / planned / alternatives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for g, label in enumerate(labels):
        c = curves[curves["group"] == g]
        left.plot(100 * c["share"], c["fd"], label=label)
    left.set_xlabel("training share of the group (%)")
    left.set_ylabel("expected FD of the group")
    left.set_yscale("log")
    left.set_title("quality versus share (others rescaled)")
    left.legend(fontsize=7)
    x = np.arange(len(labels))
    width = 0.2
    for i, col in enumerate(["quality_now", "quality_uniform", "quality_proportional", "quality_planned"]):
        right.bar(x + (i - 1.5) * width, table[col], width, label=col.replace("quality_", ""))
    right.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    right.set_ylabel("expected FD" if objective == "fd" else "same-group verification accuracy")
    right.set_title("per-group quality: now and after adding the budget")
    right.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
