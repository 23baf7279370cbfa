"""The explain stage: per-group quality explained by the training mix.

The data are the measure stage's per-group FD in the audit space (``fd_audit``, with its
standard error: at audit sizes the full-space FD is dominated by finite-sample bias, the
audit-space FD is not), joined by the same-group verification accuracy of named
identities when the real identity spreads are known (``identity_spreads.json``, written
by measure from identity-labelled reference images, or by simulate). The target
populations are the reference groups in the audit space (``audit_space.npz``: their means
and covariances, and the image counts behind them, whose noise the fit corrects for); the
training-set size is an input (``--training-size``): FD does not identify it.
``models/training_mix.py`` is the model. Writes ``training_mix.nc`` (arviz InferenceData with the
target world, what the fit was given and its diagnostics), ``training_mix_summary.parquet``
(effective shares, the groups that look under-represented) and ``share_curves.parquet``.
Never reads a simulator's answer key.
"""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import StageFileError, write_netcdf
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.outputs import AUDIT_SPACE, METRICS, SPREADS, TRAINING_MIX
from faceaudit.files.outputs import SHARE_CURVES as CURVES
from faceaudit.files.outputs import TRAINING_MIX_SUMMARY as SUMMARY
from faceaudit.stages import EXPLAIN_DRAWS, FIT_CHAINS, StageResult
from faceaudit.tables import training_mix as tables
from faceaudit.tables.posterior import Sampling

NAME = "explain"
DESCRIBE = "fit the training-mix model to per-group FD (audit space) and verification"


@dataclasses.dataclass(frozen=True)
class Settings:
    training_size: float  # images in the generator's training set (not identifiable from FD)
    draws: int = EXPLAIN_DRAWS  # posterior draws per chain (and as many warm-up steps)
    chains: int = FIT_CHAINS
    seed: int = 0
    length_scale: float | None = None  # transfer length scale; default: median gap between group means
    # Dirichlet concentration of the effective shares' prior; None: the model's default
    # (models/training_mix.py SHARE_CONCENTRATION; experiments/share_prior.py measures it).
    share_concentration: float | None = None

    def __post_init__(self):
        if not self.training_size > 0:
            raise ValueError(f"the training size must be positive, got {self.training_size}")
        if self.share_concentration is not None and not self.share_concentration > 0:
            raise ValueError(f"the share prior's concentration must be positive, got {self.share_concentration}")


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return [MANIFEST, METRICS, AUDIT_SPACE] + ([SPREADS] if folder.exists(SPREADS) else [])


def _observed_fd(metrics: pd.DataFrame, groups: list[str], where) -> tuple[list[str], np.ndarray, np.ndarray]:
    fd = metrics[(metrics["metric"] == "fd_audit") & (metrics["group"] != "all") & (metrics["edit"] == "")]
    if fd.empty:
        raise StageFileError(f"{where} has no fd_audit rows; rerun measure (`faceaudit audit --force measure`)")
    generators = sorted(fd["generator"].unique())
    value = fd.pivot(index="generator", columns="group", values="value").reindex(index=generators, columns=groups)
    se = fd.pivot(index="generator", columns="group", values="se").reindex(index=generators, columns=groups)
    missing = value.columns[value.isna().any()].tolist()
    if missing:
        raise StageFileError(f"{where} lacks fd_audit for group(s) {missing}")
    if not np.all(np.isfinite(se.to_numpy()) & (se.to_numpy() > 0)):
        raise StageFileError(f"{where}: every fd_audit row needs a positive standard error")
    return generators, value.to_numpy(), se.to_numpy()


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


def _verification_design(folder: AuditFolder, metrics, groups, generators):
    """``(design, observed accuracies, where the identity spreads came from)`` of the
    verification term, or ``(None, None, why it cannot be formed)``."""
    from faceaudit.models.training_mix import VerificationDesign

    same = metrics[(metrics["metric"] == "verification_same_group") & (metrics["edit"] == "")]
    if same.empty:
        return None, None, "the audit has no same-group verification (no named identities)"
    value = same.pivot(index="generator", columns="group", values="value").reindex(index=generators, columns=groups)
    se = same.pivot(index="generator", columns="group", values="se").reindex(index=generators, columns=groups)
    observed = np.isfinite(value.to_numpy()) & np.isfinite(se.to_numpy()) & (se.to_numpy() > 0)
    if not observed.any():
        return None, None, "no same-group verification accuracy has a standard error"
    if not folder.exists(SPREADS):
        return None, None, "the real identity spreads are unknown (no reference images with identity labels)"
    spreads = folder.read_json(SPREADS, stage="measure")
    try:
        between = np.asarray([float(spreads["between"][g]) for g in groups])
        within, dim = float(spreads["within"]), int(spreads["dim"])
    except (KeyError, TypeError, ValueError) as err:
        raise StageFileError(f"{folder.file(SPREADS)} lacks {err}; rerun the stage that wrote it") from None
    design = VerificationDesign(dim, within, jnp.asarray(between),
                                jnp.asarray(_impostor_pair_weights(folder.manifest, generators, groups)),
                                jnp.asarray(np.where(observed, se.to_numpy(), 1.0)), jnp.asarray(observed))
    return design, np.where(observed, value.to_numpy(), np.nan), spreads.get("source", SPREADS)


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    from faceaudit.models.training_mix import SHARE_CONCENTRATION, TrainingMixDesign

    metrics = folder.read(METRICS)
    try:
        with folder.read(AUDIT_SPACE) as z:
            groups = [str(g) for g in z["groups"]]
            means, covs = z["reference_means"], z["reference_covs"]
            counts = z["reference_counts"].astype(float)
    except (OSError, ValueError, KeyError) as err:
        raise StageFileError(f"{folder.file('audit_space.npz')} is unreadable ({type(err).__name__}); "
                             "rerun that stage with `faceaudit audit --force measure`") from None
    d = means.shape[1]
    if d < len(groups):
        raise ValueError(f"the audit space has {d} dimensions for {len(groups)} groups; the fit needs at least one "
                         f"per group, i.e. about {10 * len(groups)} images per group and set")
    generators, fd, se = _observed_fd(metrics, groups, folder.file(METRICS))
    length_scale = settings.length_scale or core.default_length_scale(means)
    directions = np.linalg.qr(np.random.default_rng(settings.seed).normal(size=(d, len(groups))))[0].T
    target = core.TargetWorld(jnp.asarray(means), jnp.asarray(covs), jnp.zeros_like(jnp.asarray(means)))
    verification, accuracy, source = _verification_design(folder, metrics, groups, generators)
    design = TrainingMixDesign(target.means, target.covs, jnp.asarray(directions), settings.training_size,
                               length_scale, jnp.asarray(se), core.target_roots(target), verification=verification,
                               share_concentration=settings.share_concentration or SHARE_CONCENTRATION,
                               reference_counts=jnp.asarray(counts))
    constant = {"target_means": (("group", "dim"), means), "target_covs": (("group", "dim", "dim2"), covs),
                "reference_counts": (("group",), counts),
                "shift_directions": (("group", "dim"), directions), "fd_se": (("generator", "group"), se)}
    attrs = {"training_size": settings.training_size, "length_scale": length_scale, "space": "audit space",
             "verification": source if verification is not None else f"not fitted: {source}"}
    if verification is not None:
        constant["identity_between"] = (("group",), np.asarray(verification.between))
        attrs.update(identity_within=float(verification.within), identity_dim=verification.dim)
    idata = tables.fit(design, fd, accuracy, generators=generators, groups=groups, constant=constant, attrs=attrs,
                       sampling=Sampling(settings.draws, settings.chains, settings.seed))
    diag = tables.training_mix_diagnostics(idata)
    idata.constant_data.attrs["diagnostics"] = json.dumps(diag)
    write_netcdf(folder.file(TRAINING_MIX), idata)
    summary = tables.summarise_training_mix(idata)
    summary["fit_problems"] = "; ".join(diag["problems"])
    labels, world, mix = tables.posterior_world(idata)
    folder.write_parquet(SUMMARY, summary)
    folder.write_parquet(CURVES, tables.share_curves(labels, world, mix))
    return StageResult((TRAINING_MIX, SUMMARY, CURVES), {"table": summary, "diagnostics": diag,
                                                     "verification": attrs["verification"]})
