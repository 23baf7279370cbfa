"""The measure stage: manifest + embedding stores -> one tidy table of per-group metrics.

``metrics.parquet`` has one row per (generator, group, metric[, edit]) with ``value``,
``low``/``high`` (bootstrap interval), ``se`` (bootstrap standard deviation), the counts
behind it and the encoder. Groups include ``"all"``. Distribution metrics compare each
generator's *group* images (prompts naming nobody; all generated images when there are
none) with the reference images of the same group; verification uses named identities.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.disparity import wilson_interval
from faceaudit.io import atomic_write_bytes, progress_bar
from faceaudit.store import EmbeddingStore, read_manifest

DISTRIBUTION_METRICS = ("fd", "fd_unbiased", "mmd2", "precision", "recall", "density", "coverage")
METRIC_LABELS = {
    "fd": "FD (raw)",
    "fd_unbiased": "FD, bias-corrected",
    "mmd2": "MMD^2 (KID kernel)",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "vendi": "Vendi diversity",
    "verification_same_group": "verification accuracy, same-group impostors",
    "verification_any_group": "verification accuracy, any-group impostors",
    "face_not_found": "face-detection failure rate",
}
# Higher is better for these; lower for the rest.
HIGHER_IS_BETTER = {"precision", "recall", "density", "coverage", "vendi", "verification_same_group", "verification_any_group"}


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    num_bootstrap: int = 100
    confidence: float = 0.95
    seed: int = 0
    k: int = 5
    distribution_encoder: str | None = None  # default: the manifest's record, else the first store
    identity_encoder: str | None = None
    preprocessing: str = "none"


# Proportions: a reflected (basic) bootstrap interval can cross 0 or 1; clip it to the range.
BOUNDED = {"precision", "recall", "coverage", "verification_same_group", "verification_any_group", "face_not_found",
           "identity_preserved"}


def _clip(metric, low, high):
    return (max(low, 0.0), min(high, 1.0)) if metric in BOUNDED else (low, high)


def _rows(generator, estimates: core.GroupEstimates, metric, encoder, confidence) -> list[dict]:
    out = []
    for i, group in enumerate(estimates.groups):
        se = float(estimates.se[i])
        low, high = _clip(metric, float(estimates.low[i]), float(estimates.high[i]))
        out.append(dict(generator=generator, group=group, metric=metric, edit="", value=float(estimates.estimate[i]),
                        low=low, high=high, se=se,
                        n_generated=int(estimates.n_y[i]) if metric != "vendi" else int(estimates.n_x[i]),
                        n_reference=int(estimates.n_x[i]) if metric != "vendi" else 0,
                        encoder=encoder, confidence=confidence))
    return out


def _verification_with_interval(key, x, identity, pairs, keep, num_bootstrap, confidence):
    """Balanced verification accuracy over the ``keep`` pairs, interval by resampling identities.

    Pairs share images and identities, so pairs are not independent: each bootstrap
    replicate redraws identities and weights a pair by the product of its two identities'
    multiplicities. Genuine and impostor pairs get equal total weight (balanced accuracy).
    """
    k_cv, k_boot = jax.random.split(key)
    scores = core.pair_scores(x, pairs)
    genuine = np.asarray(pairs.genuine)
    base = keep * np.where(genuine, 1.0 / max((keep & genuine).sum(), 1), 1.0 / max((keep & ~genuine).sum(), 1))
    value = float(core.verification_accuracy(k_cv, scores, jnp.asarray(genuine), weights=jnp.asarray(base)))
    n_pairs = int(keep.sum())
    if num_bootstrap < 2:
        return value, float("nan"), float("nan"), float("nan"), n_pairs
    _, code = np.unique(identity, return_inverse=True)
    n_id = code.max() + 1
    draws = np.asarray(jax.random.randint(k_boot, (num_bootstrap, n_id), 0, n_id))
    counts = np.stack([np.bincount(d, minlength=n_id) for d in draws]).astype(float)
    reps = []
    for c in counts:
        w = base * c[code[pairs.first]] * c[code[pairs.second]]
        if w[genuine].sum() > 0 and w[~genuine].sum() > 0:
            w = np.where(genuine, w / w[genuine].sum(), w / w[~genuine].sum())
            reps.append(float(core.verification_accuracy(k_cv, scores, jnp.asarray(genuine), weights=jnp.asarray(w))))
    reps = np.asarray(reps)
    # A replicate whose cross-validation folds lose all genuine (or impostor) weight has no
    # accuracy; the interval uses the others and says so through its width.
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return value, float("nan"), float("nan"), float("nan"), n_pairs
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    # Basic (reflected) interval, as for the distribution metrics.
    return value, 2 * value - hi, 2 * value - lo, float(np.std(reps, ddof=1)), n_pairs


def measure_audit(audit_dir: str | Path, settings: MeasureSettings = MeasureSettings(),
                  progress: Callable = progress_bar) -> pd.DataFrame:
    """Compute every per-group metric of an audit folder and write ``metrics.parquet``."""
    audit_dir = Path(audit_dir)
    manifest, meta = read_manifest(audit_dir / "manifest.parquet")
    encoders = meta.get("encoders", {})
    dist_encoder = settings.distribution_encoder or encoders.get("distribution")
    ident_encoder = settings.identity_encoder or encoders.get("identity")
    if dist_encoder is None:
        raise ValueError(f"{audit_dir / 'manifest.parquet'} names no distribution encoder; pass one")
    dist = EmbeddingStore(audit_dir, dist_encoder, meta.get("preprocessing", {}).get(dist_encoder, settings.preprocessing))
    emb = dist.load(manifest["image_id"])
    x_all = np.asarray(emb["embedding"].values, dtype=np.float64)
    key = jax.random.key(settings.seed)
    rows: list[dict] = []
    reference = manifest["role"].to_numpy() == "reference"
    if not reference.any():
        raise ValueError("the manifest has no reference images (role == 'reference'); distribution metrics need them")
    source = manifest["edit"].to_numpy() == ""
    generators = sorted(g for g in manifest.loc[~reference, "generator"].unique())
    tasks = [(g, m) for g in generators for m in (*DISTRIBUTION_METRICS, "vendi")]
    ref_x, ref_groups = x_all[reference], manifest.loc[reference, "group"].to_numpy()
    for generator, metric in progress(tasks, "distribution metrics"):
        gen_rows = (manifest["generator"].to_numpy() == generator) & source & ~reference
        no_name = gen_rows & (manifest["identity_kind"].to_numpy() == "none")
        pick = no_name if no_name.sum() >= 2 else gen_rows
        y, y_groups = x_all[pick], manifest.loc[pick, "group"].to_numpy()
        key, sub = jax.random.split(key)
        opts = {"k": settings.k} if metric in ("precision", "recall", "density", "coverage") else {}
        for labels_x, labels_y in ((ref_groups, y_groups), (np.full(len(ref_x), "all"), np.full(len(y), "all"))):
            if metric == "vendi":
                est = core.by_group("vendi", y, labels_y, key=sub, confidence=settings.confidence)
            else:
                est = core.by_group(metric, ref_x, labels_x, y, labels_y, key=sub, confidence=settings.confidence, **opts)
            rows += _rows(generator, est, metric, dist_encoder, settings.confidence)
    if ident_encoder is not None:
        rows += _identity_rows(audit_dir, manifest, meta, ident_encoder, generators, key, settings, progress)
    if encoders.get("text"):
        rows += _faithfulness_rows(audit_dir, manifest, meta, emb, settings)
    frame = pd.DataFrame(rows)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(audit_dir / "metrics.parquet", buffer.getvalue())
    return frame


def _identity_rows(audit_dir, manifest, meta, encoder, generators, key, settings, progress) -> list[dict]:
    store = EmbeddingStore(audit_dir, encoder, meta.get("preprocessing", {}).get(encoder, settings.preprocessing))
    emb = store.load(manifest["image_id"])
    x_all = np.asarray(emb["embedding"].values, dtype=np.float64)
    found = np.asarray(emb["found"].values, dtype=bool)
    rows = []
    named = (manifest["identity"].to_numpy() != "") & (manifest["edit"].to_numpy() == "")
    tasks = [(g, grp) for g in generators for grp in sorted(manifest["group"].unique())]
    for generator, group in progress(tasks, "identity metrics"):
        in_gen = (manifest["generator"].to_numpy() == generator) & (manifest["role"].to_numpy() == "generated")
        in_group = in_gen & (manifest["group"].to_numpy() == group)
        n = int(in_group.sum())
        if n:
            misses = int((~found[in_group]).sum())
            miss = misses / n
            low, high = wilson_interval(misses, n, settings.confidence)
            rows.append(dict(generator=generator, group=group, metric="face_not_found", edit="", value=miss, low=low,
                             high=high, se=float(np.sqrt(miss * (1 - miss) / n)), n_generated=n, n_reference=0,
                             encoder=encoder, confidence=settings.confidence))
        usable = in_gen & named & found
        groups = manifest.loc[usable, "group"].to_numpy()
        # The same name prompted as two different groups is two different people.
        ids = (manifest.loc[usable, "identity"] + " | " + manifest.loc[usable, "group"]).to_numpy()
        mine = groups == group
        if len(np.unique(ids[mine])) < 2:
            continue
        for impostors, metric in (("same_group", "verification_same_group"), ("any", "verification_any_group")):
            key, k_pairs, k_acc = jax.random.split(key, 3)
            if impostors == "same_group":
                x, ident = x_all[usable][mine], ids[mine]
                pairs = core.verification_pairs(k_pairs, ident, impostors="same_group", group=groups[mine])
                keep = np.ones(pairs.genuine.size, bool)
            else:
                # Impostors from any generated identity; keep the pairs that involve this group.
                x, ident = x_all[usable], ids
                pairs = core.verification_pairs(k_pairs, ident, impostors="any", impostors_per_genuine=4.0)
                keep = mine[pairs.first] | mine[pairs.second]
            value, low, high, se, n_pairs = _verification_with_interval(
                k_acc, x, ident, pairs, keep, settings.num_bootstrap, settings.confidence
            )
            low, high = _clip(metric, low, high)
            rows.append(dict(generator=generator, group=group, metric=metric, edit="", value=value, low=low, high=high,
                             se=se, n_generated=int(mine.sum()), n_reference=n_pairs, encoder=encoder,
                             confidence=settings.confidence))
    return rows


FAITHFULNESS = {
    "clip_score": "CLIP score: cos(image, its prompt)",
    "directional_similarity": "directional: cos(I_edit - I_src, T_target - T_src)",
    "image_similarity": "CLIP image-image similarity of source and edit",
    "edit_phrase_score": "cos(edited image, edit phrase)",
    "identity_distance": "face-descriptor distance source-edit (dlib; < 0.6 same person)",
    "identity_preserved": "share of edits whose face descriptor stays within 0.6",
}
METRIC_LABELS.update(FAITHFULNESS)
HIGHER_IS_BETTER.update({"clip_score", "directional_similarity", "image_similarity", "edit_phrase_score", "identity_preserved"})


def _faithfulness_rows(audit_dir, manifest, meta, image_emb, settings) -> list[dict]:
    """Per image cosine metrics of the study, summarised per generator x group x edit.

    Writes the per-image values to ``faithfulness.parquet``. Intervals: mean +- z * SE over
    images (the images of a group are independent draws).
    """
    from scipy.stats import norm

    from faceaudit.torch_layer.embed import edit_target, text_key, text_store

    encoder = meta["encoders"]["text"]
    texts = text_store(audit_dir, encoder).load()
    t_index = {str(h): i for i, h in enumerate(texts["image"].values)}
    t_vec = np.asarray(texts["embedding"].values, dtype=np.float64)
    img = np.asarray(image_emb["embedding"].values, dtype=np.float64)
    position = {h: i for i, h in enumerate(manifest["image_id"])}

    def text(t):
        return t_vec[t_index[text_key(t)]]

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    face = None
    ident = meta["encoders"].get("identity")
    if ident:
        fstore = EmbeddingStore(audit_dir, ident, meta.get("preprocessing", {}).get(ident, settings.preprocessing))
        fds = fstore.load(manifest["image_id"])
        face = (np.asarray(fds["embedding"].values, dtype=np.float64), np.asarray(fds["found"].values, dtype=bool))
    per_image = []
    for i, row in enumerate(manifest.itertuples()):
        if row.role != "generated" or not row.prompt:
            continue
        rec = dict(image_id=row.image_id, generator=row.generator, group=row.group, edit=row.edit,
                   clip_score=cos(img[i], text(row.prompt)))
        if row.edit and row.source_id in position:
            j = position[row.source_id]
            target = edit_target(row.prompt, row.edit_phrase)
            rec.update(directional_similarity=cos(img[i] - img[j], text(target) - text(row.prompt)),
                       image_similarity=cos(img[i], img[j]), edit_phrase_score=cos(img[i], text(row.edit_phrase)))
            if face is not None and face[1][i] and face[1][j]:
                dist = float(np.linalg.norm(face[0][i] - face[0][j]))
                rec.update(identity_distance=dist, identity_preserved=float(dist < 0.6))
        per_image.append(rec)
    frame = pd.DataFrame(per_image)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(audit_dir / "faithfulness.parquet", buffer.getvalue())
    z = norm.ppf(0.5 + settings.confidence / 2)
    rows = []
    for metric in FAITHFULNESS:
        if metric not in frame.columns:
            continue
        for (generator, group, edit), values in frame.groupby(["generator", "group", "edit"])[metric]:
            v = values.dropna().to_numpy()
            if v.size == 0:
                continue
            se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
            low, high = _clip(metric, v.mean() - z * se, v.mean() + z * se)
            rows.append(dict(generator=generator, group=group, metric=metric, edit=edit, value=float(v.mean()),
                             low=low, high=high, se=se, n_generated=int(v.size), n_reference=0, encoder=encoder,
                             confidence=settings.confidence))
    return rows
