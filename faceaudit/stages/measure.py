"""The measure stage: manifest + embedding stores -> per-group metrics with intervals.

Writes ``metrics.parquet``: one row per (generator, group, metric[, edit]) with ``value``,
``low``/``high`` (an interval of the row's ``estimand``), ``se``, the counts, the size the
estimand is defined at, the interval method, the encoder and a ``warning`` where the
number should not rank groups. Groups include ``"all"``. Distribution metrics compare each
generator's *group* images (prompts naming nobody; all generated source images when there
are none) with the reference images of the same group, in the embedding space and in the
audit space (``audit_space.npz``, shared by every generator; explain fits there: spanned by
half of each group's reference images, its FD measured on the other half).

Beside it: ``image_metrics.parquet`` (per generated image: is it inside a reference
image's k-NN ball of its group, with reference balls drawn at the common reference size:
the per-image outcome the disparity stage models; ``nearest_reference``: the distance to
the group's nearest reference image, which the report uses to show the farthest faces), ``prompt_metrics.parquet`` (per-image
prompt and edit metrics of the study) when there are prompts, and
``identity_spreads.json`` when reference images carry identity labels.
"""

from __future__ import annotations

import dataclasses
import io as _io

import jax
import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.files.folder import AuditFolder
from faceaudit.files.images import pixel_pair
from faceaudit.files.io import atomic_write_bytes, progress_bar
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.outputs import (
    AUDIT_SPACE,
    CONTRASTS,
    GROUP_CONTRASTS,
    IMAGE_METRICS,
    METRICS,
    PROMPT_METRICS,
    SPREADS,
)
from faceaudit.files.store import INDEX, edit_target, text_key
from faceaudit.stages import StageResult
from faceaudit.tables import catalogue
from faceaudit.tables.metrics import (
    ALL,
    DistributionSettings,
    audit_space,
    check_group_sizes,
    distribution_rows,
)

NAME = "measure"
DESCRIBE = "per-group metrics with intervals"
CLUSTER_BOOTSTRAP = 200


@dataclasses.dataclass(frozen=True)
class Settings:
    seed: int = 0
    distribution: DistributionSettings = DistributionSettings()
    verification_bootstrap: int = CLUSTER_BOOTSTRAP  # identity-cluster replicates


def inputs(folder: AuditFolder, settings: Settings) -> list:
    stores = [f"embeddings/{folder.store(r).folder.name}" for r in ("distribution", "identity", "similarity")
              if folder.has_role(r)]
    if folder.has_role("text"):
        stores.append(f"embeddings/{folder.text_store().folder.name}")
    return [MANIFEST, INDEX, *stores]


def _generator_rows(manifest: pd.DataFrame, generator: str) -> np.ndarray:
    """The generator's *group* images: source images whose prompt names nobody (all its
    source images when it has fewer than two of those)."""
    role = manifest["role"].to_numpy()
    source = manifest["edit"].to_numpy() == ""
    mine = (manifest["generator"].to_numpy() == generator) & source & (role == "generated")
    no_name = mine & (manifest["identity_kind"].to_numpy() == "none")
    return no_name if no_name.sum() >= 2 else mine


def check(folder: AuditFolder, settings: Settings) -> None:
    """Everything that can be refused before any metric runs: roles, groups in both sets,
    every group large enough for every requested metric."""
    manifest = folder.manifest
    where = str(folder.file(MANIFEST))
    reference = manifest["role"].to_numpy() == "reference"
    if not reference.any():
        raise ValueError(f"{where} has no reference images (role == 'reference'); distribution metrics need them")
    generators = sorted(manifest.loc[~reference, "generator"].unique())
    if not generators:
        raise ValueError(f"{where} has no generated images (role == 'generated')")
    ref_groups = manifest.loc[reference, "group"]
    for generator in generators:
        gen_groups = manifest.loc[_generator_rows(manifest, generator), "group"]
        only_ref, only_gen = sorted(set(ref_groups) - set(gen_groups)), sorted(set(gen_groups) - set(ref_groups))
        if only_ref or only_gen:
            raise ValueError(f"{where}: generator {generator!r}: every group needs generated and reference images; "
                             + "; ".join(s for s in (f"no generated images for {only_ref}" if only_ref else "",
                                                     f"no reference images for {only_gen}" if only_gen else "") if s))
        counts = {g: (int((ref_groups == g).sum()), int((gen_groups == g).sum())) for g in sorted(set(ref_groups))}
        check_group_sizes(counts, settings.distribution, f"{where} (generator {generator!r})")


def run(folder: AuditFolder, settings: Settings, progress=progress_bar) -> StageResult:
    check(folder, settings)
    manifest = folder.manifest
    x_all, _ = folder.embeddings("distribution")
    encoder = folder.index["distribution"]["encoder"]
    reference = manifest["role"].to_numpy() == "reference"
    generators = sorted(manifest.loc[~reference, "generator"].unique())
    picks = {g: _generator_rows(manifest, g) for g in generators}
    ref_x, ref_groups = x_all[reference], manifest.loc[reference, "group"].to_numpy()
    generated_sizes = [int((manifest.loc[p, "group"] == g).sum()) for p in picks.values() for g in set(ref_groups)]
    # One audit space for every generator, from reference rows its FD never sees.
    space, measured = audit_space(ref_x, ref_groups, generated_sizes, settings.distribution, settings.seed)
    key = jax.random.key(settings.seed)
    rows: list[dict] = []
    for j, generator in enumerate(progress(generators, "distribution metrics")):
        pick = picks[generator]
        found = distribution_rows(jax.random.fold_in(key, j), ref_x, ref_groups, x_all[pick],
                                  manifest.loc[pick, "group"].to_numpy(), settings.distribution, (space, measured))
        rows += [dict(r, generator=generator, edit="", encoder=encoder) for r in found]
    outputs = [METRICS, IMAGE_METRICS, AUDIT_SPACE]
    _write_audit_space(folder, space, ref_x[measured], ref_groups[measured])
    folder.write_parquet(IMAGE_METRICS, _on_manifold(folder, x_all, picks, settings, jax.random.fold_in(key, 1000)))
    if folder.has_role("identity"):
        rows += _identity_rows(folder, generators, jax.random.fold_in(key, 2000), settings, progress)
        if _write_spreads(folder):
            outputs.append(SPREADS)
    if folder.has_role("text") or folder.has_role("similarity"):
        frame = _faithfulness(folder, x_all)
        if len(frame):
            folder.write_parquet(PROMPT_METRICS, frame)
            outputs.append(PROMPT_METRICS)
            rows += _faithfulness_rows(frame, settings, jax.random.fold_in(key, 3000))
    table = pd.DataFrame(rows)
    first = ["generator", "group", "metric", "edit", "value", "low", "high", "se"]
    table = table[first + [c for c in table.columns if c not in first]]
    folder.write_parquet(METRICS, table)
    folder.write_parquet(CONTRASTS, contrasts(table))
    folder.write_parquet(GROUP_CONTRASTS, group_contrasts(table))
    outputs += [CONTRASTS, GROUP_CONTRASTS]
    return StageResult(tuple(outputs), {"rows": len(table), "audit_space_dim": space.dim,
                                        "audit_space_explained": space.explained})


def contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """Worst minus best group of every rankable metric, per generator (and edit), with the
    Welch interval of the difference: what the report's findings state."""
    out = []
    rankable = table[(table["group"] != ALL) & table["metric"].map(lambda m: catalogue.info(m).rankable)]
    for (generator, metric, edit), part in rankable.groupby(["generator", "metric", "edit"]):
        if len(part) < 2:
            continue
        higher = catalogue.info(metric).higher_is_better
        ordered = part.sort_values("value", ascending=higher)
        worst, best = ordered.iloc[0], ordered.iloc[-1]
        c = core.contrast(_estimate(worst), _estimate(best), float(worst.confidence))
        out.append(dict(generator=generator, metric=metric, edit=edit, worst=c.a, best=c.b, worst_value=worst.value,
                        best_value=best.value, difference=c.difference, se=c.se, df=c.df, low=c.low, high=c.high))
    return pd.DataFrame(out, columns=["generator", "metric", "edit", "worst", "best", "worst_value", "best_value",
                                      "difference", "se", "df", "low", "high"])


def _estimate(row) -> core.Estimate:
    return core.Estimate(row.group, row.value, row.se, row.df)


def group_contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """Every group minus the best group of every rankable metric, per generator (and edit),
    with the Welch interval of the difference: the report's overview marks the groups whose
    interval excludes 0 (worse than the best, beyond the noise)."""
    out = []
    rankable = table[(table["group"] != ALL) & table["metric"].map(lambda m: catalogue.info(m).rankable)]
    for (generator, metric, edit), part in rankable.groupby(["generator", "metric", "edit"]):
        best = part.sort_values("value", ascending=catalogue.info(metric).higher_is_better).iloc[-1]
        for row in part.itertuples():
            if row.group == best.group:
                continue
            c = core.contrast(_estimate(row), _estimate(best), float(row.confidence))
            out.append(dict(generator=generator, metric=metric, edit=edit, group=row.group, best=best.group,
                            difference=c.difference, low=c.low, high=c.high))
    return pd.DataFrame(out, columns=["generator", "metric", "edit", "group", "best", "difference", "low", "high"])


def _write_audit_space(folder: AuditFolder, space, ref_x, ref_groups) -> None:
    """The audit space and each group's reference mean and covariance in it, from the
    reference rows the FD was measured on: the target populations explain fits against,
    in the space its FD data were measured in, with the counts behind them."""
    groups = sorted(set(ref_groups))
    projected = space.project(ref_x)
    means = np.stack([projected[ref_groups == g].mean(axis=0) for g in groups])
    covs = np.stack([np.atleast_2d(np.cov(projected[ref_groups == g], rowvar=False)) for g in groups])
    buffer = _io.BytesIO()
    np.savez(buffer, basis=space.basis, centre=space.centre, explained=space.explained, groups=np.asarray(groups),
             reference_means=means, reference_covs=covs,
             reference_counts=np.asarray([int((ref_groups == g).sum()) for g in groups]))
    atomic_write_bytes(folder.file(AUDIT_SPACE), buffer.getvalue())


def _on_manifold(folder, x_all, picks, settings, key) -> pd.DataFrame:
    """Per generated image of every generator: inside some reference k-NN ball of its group?

    The balls come from a random subset of each group's reference images of the smallest
    group's reference size (radii shrink as a reference set grows, so equal-size balls are
    what makes the groups' rates comparable)."""
    manifest = folder.manifest
    k = settings.distribution.k
    reference = manifest["role"].to_numpy() == "reference"
    labels = manifest["group"].to_numpy()
    groups = sorted(set(labels[reference]))
    size = min(int((labels[reference] == g).sum()) for g in groups)
    frames = []
    for i, g in enumerate(groups):
        ref_rows = np.flatnonzero(reference & (labels == g))
        chosen = np.sort(np.asarray(jax.random.choice(jax.random.fold_in(key, i), ref_rows, (size,), replace=False)))
        for generator, pick in picks.items():
            gen_rows = np.flatnonzero(pick & (labels == g))
            membership = core.knn_membership(x_all[chosen], x_all[gen_rows], k=k)
            part = manifest.iloc[gen_rows][["image_id", "generator", "group", "identity_kind", *folder.group_columns]]
            frames.append(part.assign(on_manifold=np.where(membership.fake_in_real > 0, "yes", "no"),
                                      balls=membership.fake_in_real, reference_size=size,
                                      nearest_reference=core.nearest_distance(x_all[ref_rows], x_all[gen_rows])))
    return pd.concat(frames, ignore_index=True)


def _row(generator, group, metric, edit, value, low, high, se, n_generated, n_reference, encoder, confidence,
         interval, df=np.inf) -> dict:
    """A row of ``metrics.parquet`` for a number computed outside ``distribution_rows``
    (``df``: the t interval's degrees of freedom; infinite for bootstrap and Wilson ones)."""
    meta = catalogue.info(metric)
    low, high = meta.clip(low, high)
    return dict(generator=generator, group=group, metric=metric, edit=edit, value=float(value), low=float(low),
                high=float(high), se=float(se), df=float(df), n_generated=int(n_generated), n_reference=int(n_reference),
                encoder=encoder, confidence=confidence, interval=interval, estimand=meta.estimand, warning="")


def _identity_rows(folder, generators, key, settings, progress) -> list[dict]:
    manifest = folder.manifest
    x_all, found = folder.embeddings("identity")
    encoder = folder.index["identity"]["encoder"]
    confidence = settings.distribution.confidence
    rows = []
    role = manifest["role"].to_numpy()
    named = (manifest["identity"].to_numpy() != "") & (manifest["edit"].to_numpy() == "")
    tasks = [(g, grp) for g in generators for grp in sorted(manifest["group"].unique())]
    for t, (generator, group) in enumerate(progress(tasks, "identity metrics")):
        in_gen = (manifest["generator"].to_numpy() == generator) & (role == "generated")
        in_group = in_gen & (manifest["group"].to_numpy() == group)
        n = int(in_group.sum())
        if n:
            share = core.proportion(int((~found[in_group]).sum()), n, confidence)
            rows.append(_row(generator, group, "face_not_found", "", share.value, share.low, share.high, share.se, n,
                             0, encoder, confidence, "wilson"))
        usable = in_gen & named & found
        groups = manifest.loc[usable, "group"].to_numpy()
        # The same name prompted as two different groups is two different people.
        ids = (manifest.loc[usable, "identity"] + " | " + manifest.loc[usable, "group"]).to_numpy()
        mine = groups == group
        if len(np.unique(ids[mine])) < 2:
            continue
        for which, (impostors, metric) in enumerate((("same_group", "verification_same_group"),
                                                     ("any", "verification_any_group"))):
            k_pairs, k_acc = jax.random.split(jax.random.fold_in(key, 2 * t + which))
            if impostors == "same_group":
                x, ident = x_all[usable][mine], ids[mine]
                pairs = core.verification_pairs(k_pairs, ident, impostors="same_group", group=groups[mine])
                keep = None
            else:
                # Impostors from any generated identity; keep the pairs that involve this group.
                x, ident = x_all[usable], ids
                pairs = core.verification_pairs(k_pairs, ident, impostors="any", impostors_per_genuine=4.0)
                keep = mine[pairs.first] | mine[pairs.second]
            acc = core.clustered_accuracy(k_acc, core.pair_scores(x, pairs), pairs, ident, keep=keep,
                                          num_bootstrap=settings.verification_bootstrap, confidence=confidence)
            rows.append(_row(generator, group, metric, "", acc.value, acc.low, acc.high, acc.se, int(mine.sum()),
                             acc.pairs, encoder, confidence, "identity-cluster bootstrap"))
    return rows


def _write_spreads(folder: AuditFolder) -> bool:
    """Identity spreads of the reference images that carry identity labels, if any."""
    manifest = folder.manifest
    labelled = (manifest["role"].to_numpy() == "reference") & (manifest["identity"].to_numpy() != "")
    if not labelled.any():
        return False
    x, found = folder.embeddings("identity", manifest.loc[labelled, "image_id"])
    sub = manifest.loc[labelled][found]
    groups = sorted(manifest.loc[manifest["role"] == "reference", "group"].unique())
    within, between = core.identity_spreads(x[found], sub["identity"].to_numpy(), sub["group"].to_numpy(), groups)
    folder.write_json(SPREADS, {"within": float(within), "between": dict(zip(groups, map(float, between))),
                                "dim": int(x.shape[1]),
                                "source": f"{int(found.sum())} identity-labelled reference images"})
    return True


def _faithfulness(folder: AuditFolder, image_x: np.ndarray) -> pd.DataFrame:
    """Per generated image: the study's prompt and edit metrics (one row per image)."""
    manifest = folder.manifest
    position = {h: i for i, h in enumerate(manifest["image_id"])}
    generated = np.flatnonzero((manifest["role"].to_numpy() == "generated") & (manifest["prompt"].to_numpy() != ""))
    if not generated.size:
        return pd.DataFrame()
    rows = manifest.iloc[generated]
    out = rows[["image_id", "generator", "group", "edit"]].reset_index(drop=True)
    if folder.has_role("text"):
        ds = folder.text_store().load()
        t_index = {str(h): i for i, h in enumerate(ds["image"].values)}
        t_vec = np.asarray(ds["embedding"].values, dtype=np.float64)

        def text(texts):
            return t_vec[[t_index[text_key(t)] for t in texts]]

        out["clip_score"] = np.asarray(core.clip_score(image_x[generated], text(rows["prompt"])))
    edits = (rows["edit"].to_numpy() != "") & rows["source_id"].isin(position).to_numpy()
    if not edits.any():
        return out
    edit_rows, src = generated[edits], np.array([position[s] for s in rows.loc[edits, "source_id"]])

    def put(column, values):
        out.loc[np.flatnonzero(edits), column] = np.asarray(values, dtype=np.float64)

    if folder.has_role("text"):
        sub = rows[edits]
        targets = [edit_target(p, e) for p, e in zip(sub["prompt"], sub["edit_phrase"])]
        put("target_clip_score", core.clip_score(image_x[edit_rows], text(targets)))
        put("directional_similarity", core.directional_similarity(image_x[src], image_x[edit_rows],
                                                                  text(sub["prompt"]), text(targets)))
        put("image_similarity", core.image_similarity(image_x[src], image_x[edit_rows]))
        put("edit_phrase_score", core.clip_score(image_x[edit_rows], text(sub["edit_phrase"])))
    if folder.has_role("similarity"):
        dino, _ = folder.embeddings("similarity")
        put("dino_similarity", core.image_similarity(dino[src], dino[edit_rows]))
    paths = manifest["path"].to_numpy()
    if all(paths[src]) and all(paths[edit_rows]):
        pixel = [core.pixel_distances(*pixel_pair(folder.file(paths[a]), folder.file(paths[b])))
                 for a, b in zip(src, edit_rows)]
        put("l1_distance", [float(p[0]) for p in pixel])
        put("l2_distance", [float(p[1]) for p in pixel])
    if folder.has_role("identity"):
        face, found = folder.embeddings("identity")
        match = core.identity_match(face[src], face[edit_rows], found[src] & found[edit_rows],
                                    encoder=folder.index["identity"]["encoder"])
        put("identity_distance", match.distance)
        if match.preserved is not None:
            put("identity_preserved", match.preserved)
    return out


def _faithfulness_rows(frame: pd.DataFrame, settings: Settings, key) -> list[dict]:
    """Per generator x group x edit summaries: jackknife t intervals of means; Wilson for
    the share of edits that keep the identity."""
    confidence = settings.distribution.confidence
    rows = []
    metrics = [m for m in catalogue.CATALOGUE if catalogue.info(m).kind == "faithfulness" and m in frame.columns]
    for m_i, metric in enumerate(metrics):
        for (generator, edit), part in frame.groupby(["generator", "edit"]):
            values = part[["group", metric]].dropna()
            if values.empty:
                continue
            if metric == "identity_preserved":
                for group, v in values.groupby("group")[metric]:
                    share = core.proportion(int(v.sum()), int(v.size), confidence)
                    rows.append(_row(generator, group, metric, edit, share.value, share.low, share.high, share.se,
                                     int(v.size), 0, "", confidence, "wilson"))
                continue
            counts = values.groupby("group").size()
            usable = values[values["group"].isin(counts[counts >= 2].index)]
            if usable.empty:
                continue
            est = core.values_by_group(usable[metric].to_numpy(dtype=np.float64), usable["group"].to_numpy(),
                                       key=jax.random.fold_in(key, m_i), confidence=confidence)
            for i, group in enumerate(est.groups):
                rows.append(_row(generator, group, metric, edit, est.estimate[i], est.low[i], est.high[i], est.se[i],
                                 est.n_x[i], 0, "", confidence, "jackknife", est.df[i]))
    return rows


__all__ = ["ALL", "NAME", "Settings", "inputs", "run"]
