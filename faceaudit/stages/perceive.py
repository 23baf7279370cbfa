"""The perceive stage: who gets drawn, corrected for the perceived-attribute classifier's errors.

For every image it records what each classifier perceives (``perceived.parquet``: one row
per image and attribute, ``image_id``, ``attribute``, ``category``, ``probability``,
``classifier``, ``value``; ``category`` is ``""`` where no face was found). The
classifiers: ``clip`` (zero-shot over the grid from the embed stage's image and text
embeddings, averaged over the templates), ``skin_tone`` (ITA category and Monk bin of the
skin pixels inside dlib's 68 landmarks; ``value`` is the ITA in degrees) and
``simulated`` (a simulated world's classifier, labels only). Then, per classifier and
attribute (each grid attribute, and the grid's intersections jointly):

* **calibration**: the reference faces' group labels against what the classifier called
  them give its confusion counts (stored in ``perceive.json`` with each category's
  accuracy and the condition number);
* **requested vs depicted** (``faithfulness.parquet``): for each generator's requested
  group, the depicted mix over the attribute's categories, corrected for the confusion;
* **representation** (``representation.parquet``): for each neutral prompt (role
  ``neutral``), the corrected mix beside a reference mix (uniform unless given), and its
  MAD, KL divergence and normalised entropy, each with a posterior interval; P(MAD >
  ``skew_threshold``) ranks the prompts.

One numpyro fit per classifier and attribute covers all of its image sets
(``faceaudit.models.representation``); a second with the calibration counts divided by 10
shows how far the shares move when the confusion is known only loosely (``share_loose``).
The posteriors go to ``representation.nc``. An attribute that no reference face is
labelled with (skin tone, usually) gets raw shares only, with ``corrected = False``, and
intervals of the *perceived* mix. Images with no detected face are counted per set
(``no_face``) and never enter a share: every mix is over the faces found.

The correction assumes the classifier errs on generated faces as it does on real ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import write_json, write_netcdf
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.outputs import FAITHFULNESS, PERCEIVED, REPRESENTATION
from faceaudit.files.outputs import PERCEIVE_SUMMARY as SUMMARY
from faceaudit.files.outputs import REPRESENTATION_POSTERIOR as POSTERIOR
from faceaudit.files.prompts import ZERO_SHOT_TEMPLATES, zero_shot_prompts
from faceaudit.files.store import INDEX, text_key
from faceaudit.stages import StageResult
from faceaudit.tables import representation as tables
from faceaudit.tables.representation import FitSettings

NAME = "perceive"
DESCRIBE = "who gets drawn: perceived attributes, corrected for the classifier's confusion"
CLASSIFIER_LABELS = "classifier_labels.parquet"  # the simulated classifier's labels (written by simulate)
CLASSIFIERS = ("clip", "checkpoint", "skin_tone", "simulated")
ITA = "skin tone (ITA)"
MONK = "skin tone (Monk)"
PIXEL_ATTRIBUTES = {ITA: core.ITA_CATEGORIES, MONK: core.MONK_CATEGORIES}  # no reference labels: raw unless given
ASSUMPTION = ("The corrected shares assume the classifier errs on generated faces as it does on the labelled "
              "reference faces it was calibrated on.")
MEASURES = ("mad", "kl", "entropy")
FAITHFULNESS_COLUMNS = ["generator", "attribute", "n", "no_face", "corrected", "group", "requested", "depicted", "share",
                        "low", "high", "sd", "raw_share", "share_loose", "classifier"]
REPRESENTATION_COLUMNS = ["generator", "attribute", "n", "no_face", "corrected", "prompt", "measure", "category",
                          "reference", "p_above", "share", "low", "high", "sd", "raw_share", "share_loose", "classifier"]


@dataclasses.dataclass(frozen=True)
class Settings:
    classifiers: tuple[str, ...] = ("clip",)
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES  # CLIP zero-shot, averaged over templates
    fit: FitSettings = FitSettings()
    reference_mix: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()  # (attribute, ((category, share), ...))
    skew_threshold: float = 0.05  # P(MAD > this) ranks neutral prompts
    checkpoint: str = ""  # the checkpoint classifier's state_dict file ("random": untrained, tests only)
    checkpoint_architecture: str = "resnet34"

    def __post_init__(self):
        unknown = [c for c in self.classifiers if c not in CLASSIFIERS]
        if unknown or not self.classifiers:
            raise ValueError(f"perceived-attribute classifiers must be among {CLASSIFIERS}, got {list(self.classifiers)}")
        if not 0 <= self.skew_threshold < 1:
            raise ValueError(f"skew_threshold must lie in [0, 1), got {self.skew_threshold}")
        for template in self.templates:
            if "{group}" not in template:
                raise ValueError(f"zero-shot template {template!r} needs a {{group}} field")
        if ("checkpoint" in self.classifiers) != bool(self.checkpoint):
            raise ValueError("the checkpoint classifier and a checkpoint file go together ([perceive] checkpoint = "
                             "\"/path/to/state_dict.pt\" with classifiers = [..., \"checkpoint\"])")


def inputs(folder: AuditFolder, settings: Settings) -> list:
    out = [MANIFEST]
    if "clip" in settings.classifiers:
        out += [INDEX, f"embeddings/{folder.store('distribution').folder.name}",
                f"embeddings/{folder.text_store().folder.name}"]
    if "simulated" in settings.classifiers:
        out.append(CLASSIFIER_LABELS)
    if "checkpoint" in settings.classifiers and settings.checkpoint != "random":
        out.append(Path(settings.checkpoint).resolve())
    return out


def _clip_labels(folder: AuditFolder, settings: Settings, levels: dict) -> pd.DataFrame:
    """CLIP zero-shot over the grid's cells from the stored image and text embeddings;
    each attribute's probabilities are the cells' summed over the other attributes."""
    encoder = folder.index.get("distribution", {}).get("encoder", "")
    if not encoder.startswith("open_clip:"):
        raise ValueError(f"{folder.path}: CLIP zero-shot needs open_clip image embeddings; the distribution encoder "
                         f"is {encoder!r}")
    cells, texts = zero_shot_prompts(levels, settings.templates)
    flat = [t for row in texts for t in row]
    try:
        ds = folder.text_store().load([text_key(t) for t in flat])
    except ValueError:
        raise ValueError(f"{folder.path}: these zero-shot prompts are not embedded (first: {flat[0]!r}); the embed "
                         "stage embeds the spec's [perceive] templates: pass the same spec (`faceaudit perceive DIR "
                         "--spec SPEC`), or run `faceaudit embed SPEC` first") from None
    text = np.asarray(ds["embedding"].values, dtype=np.float64).reshape(len(texts), len(cells), -1)
    x, _ = folder.embeddings("distribution")
    probs = np.asarray(core.zero_shot_probabilities(x, text))
    rows = []
    ids = folder.manifest["image_id"].to_numpy()
    for attribute, names in levels.items():
        member = np.array([[cell[attribute] == n for cell in cells] for n in names], dtype=np.float64)  # (K, cells)
        marginal = probs @ member.T
        top = marginal.argmax(axis=1)
        rows.append(pd.DataFrame({"image_id": ids, "attribute": attribute, "category": np.asarray(names)[top],
                                  "probability": marginal.max(axis=1), "classifier": "clip"}))
    return pd.concat(rows, ignore_index=True)


def _skin_tone_labels(folder: AuditFolder) -> pd.DataFrame:
    """ITA category and Monk bin of each image's skin pixels (``value``: the ITA in degrees);
    ``""`` where dlib finds no face."""
    from faceaudit.files.images import load_rgb
    from faceaudit.files.io import progress_bar
    from faceaudit.torch_layer.skin import SkinRegion

    region, rows = SkinRegion(), []
    for image_id, path in progress_bar(_image_files(folder, "skin tone"), "skin tone"):
        pixels = region.pixels(load_rgb(path))
        tone = core.skin_tone(pixels) if pixels is not None else {"ita": np.nan, "ita_category": "", "monk": ""}
        rows += [dict(image_id=image_id, attribute=ITA, category=tone["ita_category"], probability=np.nan,
                      classifier="skin_tone", value=tone["ita"]),
                 dict(image_id=image_id, attribute=MONK, category=tone["monk"], probability=np.nan,
                      classifier="skin_tone", value=np.nan)]
    return pd.DataFrame(rows)


def _image_files(folder: AuditFolder, what: str) -> list[tuple[str, Path]]:
    manifest = folder.manifest
    if (manifest["path"] == "").any():
        raise ValueError(f"{folder.path}: {what} reads pixels, and this audit has no image files (a simulated world); "
                         "use the simulated or clip classifier")
    return [(i, folder.file(p)) for i, p in zip(manifest["image_id"], manifest["path"])]


def _checkpoint_labels(folder: AuditFolder, settings: Settings, levels: dict) -> pd.DataFrame:
    """A FairFace-style checkpoint on dlib-aligned crops, one softmax head per attribute of
    the grid with two or more categories; ``""`` where dlib finds no face."""
    from faceaudit.files.images import load_rgb
    from faceaudit.files.io import progress_bar
    from faceaudit.torch_layer.classifier import CheckpointClassifier

    heads = {a: names for a, names in levels.items() if len(names) >= 2}
    model = CheckpointClassifier(settings.checkpoint, settings.checkpoint_architecture, heads)
    files, rows = _image_files(folder, "the checkpoint classifier"), []
    batches = [files[i:i + 32] for i in range(0, len(files), 32)]
    for batch in progress_bar(batches, "checkpoint classifier"):
        for attribute, (probs, found) in model.classify([load_rgb(path) for _, path in batch]).items():
            for (image_id, _), p, ok in zip(batch, probs, found):
                rows.append(dict(image_id=image_id, attribute=attribute, category=heads[attribute][int(p.argmax())] if ok
                                 else "", probability=float(p.max()) if ok else np.nan, classifier="checkpoint"))
    return pd.DataFrame(rows)


def _simulated_labels(folder: AuditFolder) -> pd.DataFrame:
    return folder.read_parquet(CLASSIFIER_LABELS, stage="simulate")


def perceive(folder: AuditFolder, settings: Settings, levels: dict) -> pd.DataFrame:
    """Every classifier's perceived labels of every image (``perceived.parquet``)."""
    read = {"clip": lambda: _clip_labels(folder, settings, levels), "skin_tone": lambda: _skin_tone_labels(folder),
            "checkpoint": lambda: _checkpoint_labels(folder, settings, levels),
            "simulated": lambda: _simulated_labels(folder)}
    frame = pd.concat([read[name]() for name in settings.classifiers], ignore_index=True)
    if "value" not in frame:
        frame["value"] = np.nan
    return frame[["image_id", "attribute", "category", "probability", "classifier", "value"]]


@dataclasses.dataclass(frozen=True)
class ImageSets:
    """The image sets a fit covers: each generator's requested groups, then its neutral prompts."""

    keys: list[tuple[str, str, str]]  # (kind, generator, group or prompt)
    rows: list[np.ndarray]  # manifest row numbers of each set

    @classmethod
    def of(cls, manifest: pd.DataFrame) -> ImageSets:
        role, kind, edit = (manifest[c].to_numpy() for c in ("role", "identity_kind", "edit"))
        keys, rows = [], []
        requested = (role == "generated") & (kind == "none") & (edit == "")
        for (generator, group), part in manifest[requested].groupby(["generator", "group"], sort=False):
            keys.append(("requested", generator, group))
            rows.append(part.index.to_numpy())
        for (generator, prompt), part in manifest[role == "neutral"].groupby(["generator", "prompt"], sort=False):
            keys.append(("neutral", generator, prompt))
            rows.append(part.index.to_numpy())
        return cls(keys, rows)


def _labels_wide(perceived: pd.DataFrame, manifest: pd.DataFrame, levels: dict) -> pd.DataFrame:
    """Per manifest row, the perceived category of each attribute (and of the joint one)."""
    wide = perceived.pivot_table(index="image_id", columns="attribute", values="category", aggfunc="first")
    wide = wide.reindex(manifest["image_id"].to_numpy())
    wide.index = manifest.index
    if len(levels) > 1 and all(a in wide for a in levels):
        parts = wide[list(levels)].fillna("")
        found = (parts != "").all(axis=1)
        wide[tables.JOINT_SEPARATOR.join(levels)] = np.where(found, parts.agg(tables.JOINT_SEPARATOR.join, axis=1), "")
    return wide


def _true_labels(manifest: pd.DataFrame, attribute: str, levels: dict, source: str) -> pd.Series | None:
    """The reference faces' labels of ``attribute`` (None: no reference face is labelled).

    Raises:
        ValueError: labels outside the attribute's categories, naming file, column and values.
    """
    columns = attribute.split(tables.JOINT_SEPARATOR)
    if not all(c in manifest for c in columns):
        return None
    reference = manifest[manifest["role"] == "reference"]
    if reference.empty:
        return None
    labels = reference[columns].astype(str).agg(tables.JOINT_SEPARATOR.join, axis=1)
    categories = _categories(attribute, levels)
    bad = sorted(set(labels) - set(categories))
    if bad:
        raise ValueError(f"{source}: reference labels of {attribute!r} (column{'s' if len(columns) > 1 else ''} "
                         f"{columns}) do not match the grid's categories {categories}: {bad}")
    return labels


def _categories(attribute: str, levels: dict) -> list[str]:
    """An attribute's categories; the joint attribute's are the grid's cells, in grid order."""
    if attribute in levels:
        return levels[attribute]
    if attribute in PIXEL_ATTRIBUTES:
        return list(PIXEL_ATTRIBUTES[attribute])
    return [tables.JOINT_SEPARATOR.join(combo)
            for combo in itertools.product(*(levels[a] for a in attribute.split(tables.JOINT_SEPARATOR)))]


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    manifest = folder.manifest.reset_index(drop=True)
    grid = folder.levels  # CLIP's prompts name every attribute of the grid ...
    levels = {a: names for a, names in grid.items() if len(names) >= 2}  # ... shares need two categories or more
    source = str(folder.file(MANIFEST))
    random = [c for c in settings.classifiers if c == "checkpoint" and settings.checkpoint == "random"]
    summary = {"assumption": ASSUMPTION, "fits": [],
               "random_weights": [f"checkpoint {settings.checkpoint_architecture}:random" for _ in random],
               "skipped": {a: f"attribute {a!r} has a single category {names}: every image requested it, so there is "
                              "no mix to estimate" for a, names in grid.items() if len(names) < 2}}
    sets = ImageSets.of(manifest)
    if not sets.keys:
        raise ValueError(f"{source}: no generated images of requested groups and no neutral-prompt images")
    attributes = [*levels, *([tables.JOINT_SEPARATOR.join(levels)] if len(levels) > 1 else [])]
    if "skin_tone" in settings.classifiers:
        attributes += list(PIXEL_ATTRIBUTES)
    # The reference faces' labels of each attribute, read (and bad ones refused) before any work.
    true = {attribute: _true_labels(manifest, attribute, levels, source) for attribute in attributes}
    perceived = perceive(folder, settings, grid)
    faithfulness, representation, posteriors = [], [], {}
    for classifier in settings.classifiers:
        wide = _labels_wide(perceived[perceived.classifier == classifier], manifest, levels)
        for attribute in attributes:
            if attribute not in wide:
                continue
            result = _fit_one(wide[attribute].fillna(""), true[attribute], attribute, levels, grid, sets, settings, source)
            faithfulness.append(result.faithfulness.assign(classifier=classifier))
            representation.append(result.representation.assign(classifier=classifier))
            if result.idata is not None:
                posteriors[f"{classifier}__{attribute.replace(' ', '_')}"] = result.idata
            summary["fits"].append(dict(result.summary, classifier=classifier, attribute=attribute))
    outputs = [PERCEIVED, FAITHFULNESS, REPRESENTATION, SUMMARY]
    folder.write_parquet(PERCEIVED, perceived)  # every file is written only once every fit has succeeded
    folder.write_parquet(FAITHFULNESS, _frame(faithfulness, FAITHFULNESS_COLUMNS))
    folder.write_parquet(REPRESENTATION, _frame(representation, REPRESENTATION_COLUMNS))
    if posteriors:
        write_netcdf(folder.file(POSTERIOR), _merge_posteriors(posteriors))
        outputs.append(POSTERIOR)
    else:
        folder.file(POSTERIOR).unlink(missing_ok=True)
    write_json(folder.file(SUMMARY), summary)
    return StageResult(tuple(outputs), summary)


def _frame(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The parts as one table with every column, also when there are none (no neutral prompts)."""
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()).reindex(columns=columns)


@dataclasses.dataclass(frozen=True)
class _Result:
    faithfulness: pd.DataFrame
    representation: pd.DataFrame
    idata: object
    summary: dict


def _fit_one(labels: pd.Series, true: pd.Series | None, attribute: str, levels: dict, grid: dict, sets: ImageSets,
             settings: Settings, source: str) -> _Result:
    categories = _categories(attribute, levels)
    index = {c: i for i, c in enumerate(categories)}
    unknown = sorted(set(labels) - set(categories) - {""})
    if unknown:
        raise ValueError(f"classifier labels of {attribute!r} outside its categories {categories}: {unknown}")
    perceived = np.zeros((len(sets.keys), len(categories)))
    no_face = np.zeros(len(sets.keys), dtype=int)
    for s, rows in enumerate(sets.rows):
        found = labels.iloc[rows]
        no_face[s] = int((found == "").sum())
        perceived[s] = core.category_counts([index[c] for c in found if c != ""], len(categories))
    # A set none of whose images shows a face has no mix: its rows say so (n = 0, no share)
    # and it stays out of the fit.
    keep = perceived.sum(axis=1) > 0
    if not keep.any():
        raise ValueError(f"{source}: the {attribute!r} classifier found no face in any generated image")
    summary = {"categories": categories, "sets": [list(k) for k in sets.keys], "no_face": no_face.tolist(),
               "no_face_only": [list(k) for k, kept in zip(sets.keys, keep) if not kept]}
    reference_mix = core.check_reference_mix(dict(dict(settings.reference_mix).get(attribute, ())) or None, categories)
    if true is None:
        draws = _raw_draws(perceived[keep], settings.fit)
        fit = loose = None
        summary["corrected"] = False
        summary["why_raw"] = f"no reference face is labelled with {attribute!r}: raw classifier shares only"
    else:
        found = labels.loc[true.index] != ""
        calibration = core.confusion_counts([index[c] for c in true[found]], [index[c] for c in labels.loc[true.index][found]],
                                            len(categories))
        summary["calibration"] = {"counts": calibration.tolist(), "no_face": int((~found).sum()),
                                  **tables.calibration_report(calibration, categories)}
        missing = [c for c, n in zip(categories, calibration.sum(axis=1)) if n == 0]
        if missing:
            raise ValueError(f"{source}: no labelled reference face of {attribute!r} categories {missing} has a "
                             "detected face: the classifier's confusion for them is unknown")
        set_names = [" | ".join(k[1:]) for k, kept in zip(sets.keys, keep) if kept]
        fit = tables.fit_attribute(calibration, perceived[keep], categories, set_names, settings.fit)
        loose = tables.fit_attribute(calibration, perceived[keep], categories, set_names, settings.fit,
                                     weight=settings.fit.loose_weight)
        draws = fit.mix
        summary["corrected"] = True
        summary["diagnostics"] = fit.diagnostics
        summary["sensitivity"] = {"calibration_weight": settings.fit.loose_weight,
                                  "max_share_shift": float(np.abs(loose.mix.mean(0) - fit.mix.mean(0)).max())}
    full = np.full((draws.shape[0], len(sets.keys), len(categories)), np.nan)
    full[:, keep] = draws
    draws = full
    mean, low, high, sd = (np.full(draws.shape[1:], np.nan) for _ in range(4))
    for i, part in enumerate(tables.summarise_draws(draws[:, keep], settings.fit.hdi_prob)):
        (mean, low, high, sd)[i][keep] = part
    loose_mean = np.full_like(mean, np.nan)
    if loose is not None:
        loose_mean[keep] = loose.mix.mean(axis=0)
    raw = tables.raw_shares(perceived)
    raw[~keep] = np.nan
    faith, rep = [], []
    for s, (kind, generator, name) in enumerate(sets.keys):
        common = dict(generator=generator, attribute=attribute, n=int(perceived[s].sum()), no_face=int(no_face[s]),
                      corrected=true is not None)
        for k, category in enumerate(categories):
            values = dict(share=mean[s, k], low=low[s, k], high=high[s, k], sd=sd[s, k], raw_share=raw[s, k],
                          share_loose=loose_mean[s, k])
            if kind == "requested":
                requested = _requested(name, attribute, grid)
                faith.append(dict(common, group=name, requested=requested, depicted=category, **values))
            else:
                rep.append(dict(common, prompt=name, measure="share", category=category, reference=reference_mix[k],
                                p_above=np.nan, **values))
        if kind == "neutral" and keep[s]:
            divergences = tables.divergence_draws(draws[:, s], reference_mix)
            raw_div = tables.divergence_draws(raw[s], reference_mix)
            for measure in MEASURES:
                m, lo, hi, d = tables.summarise_draws(divergences[measure], settings.fit.hdi_prob)
                p_above = float((divergences[measure] > settings.skew_threshold).mean()) if measure == "mad" else np.nan
                rep.append(dict(common, prompt=name, measure=measure, category="", reference=np.nan, share=float(m),
                                low=float(lo), high=float(hi), sd=float(d), raw_share=float(raw_div[measure]),
                                share_loose=np.nan, p_above=p_above))
    return _Result(pd.DataFrame(faith), pd.DataFrame(rep), None if fit is None else fit.idata, summary)


def _requested(group: str, attribute: str, levels: dict) -> str:
    """The category of ``attribute`` that a requested group asked for ("" for an attribute
    outside the grid, such as skin tone: nothing was asked)."""
    values = dict(zip(levels, group.split(tables.JOINT_SEPARATOR)))
    if not all(a in values for a in attribute.split(tables.JOINT_SEPARATOR)):
        return ""
    return tables.JOINT_SEPARATOR.join(values[a] for a in attribute.split(tables.JOINT_SEPARATOR))


def _raw_draws(perceived: np.ndarray, fit: tables.FitSettings) -> np.ndarray:
    """Draws of the *perceived* mix, ``Dirichlet(1 + counts)`` per set: the intervals of raw
    shares (of what the classifier reports, not of what is depicted)."""
    rng = np.random.default_rng(fit.seed)
    return np.stack([rng.dirichlet(1.0 + row, size=fit.draws * fit.chains) for row in perceived], axis=1)


def _merge_posteriors(posteriors: dict):
    """One InferenceData holding every fit, each variable and dimension prefixed by its
    ``classifier__attribute`` tag."""
    import xarray as xr

    from faceaudit.files.quiet import arviz

    az = arviz()

    groups = {}
    for group in ("posterior", "sample_stats", "observed_data"):
        parts = []
        for tag, idata in posteriors.items():
            ds = idata[group]
            rename = {v: f"{tag}__{v}" for v in ds.data_vars}
            rename.update({d: f"{tag}__{d}" for d in ds.dims if d not in ("chain", "draw")})
            parts.append(ds.rename(rename))
        groups[group] = xr.merge(parts, compat="override", combine_attrs="drop_conflicts")
    return az.InferenceData(**groups)


def settings_for(folder: AuditFolder, spec_path, classifier: str | None, fit: FitSettings,
                 skew_threshold: float | None) -> Settings:
    """The stage's settings as ``faceaudit perceive`` builds them: the spec's ``[perceive]``
    table if given, the command's options over it; by default the simulated classifier in a
    simulated world (as ``faceaudit audit`` runs it) and CLIP zero-shot elsewhere."""
    from faceaudit.files.spec import load_spec

    settings = Settings(fit=fit)
    if spec_path is not None:
        p = load_spec(spec_path).perceive
        settings = Settings(p.classifiers, p.templates, fit, p.reference_mix, p.skew_threshold, p.checkpoint,
                            p.checkpoint_architecture)
    elif folder.meta.get("source") == "simulate":
        settings = dataclasses.replace(settings, classifiers=("simulated",))
    if classifier is not None:
        settings = dataclasses.replace(settings, classifiers=tuple(c.strip() for c in classifier.split(",") if c.strip()))
    if skew_threshold is not None:
        settings = dataclasses.replace(settings, skew_threshold=skew_threshold)
    return settings


def describe(folder: AuditFolder, summary: dict) -> list[str]:
    """What the terminal shows after the stage: per fit, how faithfully each requested
    group is drawn and the most skewed neutral prompts, with where the numbers are."""
    faith = folder.read_parquet(FAITHFULNESS, stage=NAME)
    rep = folder.read_parquet(REPRESENTATION, stage=NAME)
    lines = []
    for fit in summary["fits"]:
        classifier, attribute = fit["classifier"], fit["attribute"]
        kind = "corrected for the classifier's confusion" if fit["corrected"] else "RAW classifier shares (uncorrected)"
        lines.append(f"{classifier} / {attribute}: {kind}")
        for problem in fit.get("diagnostics", {}).get("problems", []):
            lines.append(f"  fit: {problem}")
        mine = faith[(faith.classifier == classifier) & (faith.attribute == attribute) & (faith.depicted == faith.requested)]
        for r in mine.sort_values("share").head(3).itertuples():
            lines.append(f"  {r.group} drawn as requested: {r.share:.2f} [{r.low:.2f}, {r.high:.2f}] (raw {r.raw_share:.2f})")
        skew = rep[(rep.classifier == classifier) & (rep.attribute == attribute) & (rep.measure == "mad")]
        for r in skew.sort_values("share", ascending=False).head(3).itertuples():
            lines.append(f"  most skewed: {r.prompt!r} MAD {r.share:.3f} [{r.low:.3f}, {r.high:.3f}], "
                         f"P(MAD > threshold) {r.p_above:.2f}")
    lines.append(f"wrote {folder.file(FAITHFULNESS)}, {folder.file(REPRESENTATION)}, {folder.file(PERCEIVED)}")
    return lines
