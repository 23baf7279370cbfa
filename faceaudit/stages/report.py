"""The report stage: one self-contained HTML file a person reads, headline findings first.

Reads the stage files of an audit folder and never computes a statistic: the numbers, their
intervals, the group contrasts and the warnings all come from the perceive, measure,
disparity, explain and plan stages; labels and "what this interval is of" come from the
metric catalogue. This module turns them into a context of plain values (text, numbers
formatted as text, thumbnails as data URIs) and ``templates/report.html.j2`` lays them out
with Jinja2's autoescaping, so every user-supplied string (group labels, prompts, file and
generator names) is escaped exactly once, by the template. The only markup in the context
is faceaudit's own figures (inline SVG). Figures are inline SVG and images small JPEG
thumbnails, so the file can be mailed around. A folder whose stages disagree (a stage reran
after those that read its output) is refused.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import json
import platform
from importlib import metadata
from typing import NamedTuple

import pandas as pd

from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import atomic_write_text
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.outputs import (
    CONTRASTS,
    DISPARITY_SUMMARY,
    FAITHFULNESS,
    GROUP_CONTRASTS,
    IMAGE_METRICS,
    METRICS,
    PERCEIVE_SUMMARY,
    PLAN,
    PLAN_SUMMARY,
    PROMPT_METRICS,
    REPORT,
    REPRESENTATION,
    SHARE_CURVES,
    TRAINING_MIX_SUMMARY,
)
from faceaudit.files.records import RECORDS, disagreements
from faceaudit.stages import StageResult
from faceaudit.tables import catalogue, figures

NAME = "report"
DESCRIBE = "write the HTML report"
# The stage files a report shows where they exist (who writes each: files.outputs.FILES).
OPTIONAL = (DISPARITY_SUMMARY, TRAINING_MIX_SUMMARY, SHARE_CURVES, PLAN, PLAN_SUMMARY, CONTRASTS, PROMPT_METRICS,
            GROUP_CONTRASTS, IMAGE_METRICS, FAITHFULNESS, REPRESENTATION, PERCEIVE_SUMMARY)
THUMBNAILS = 6  # images shown per group or prompt in each grid
THUMBNAIL_PIXELS = 128  # longest side
THUMBNAIL_BYTES = 24_000  # cap per thumbnail: with THUMBNAILS per grid a 10,000-image audit's report stays a few MB
EDIT_SOURCES = 3  # source faces per group in the edits grid
OVERVIEW_KINDS = ("distribution", "diversity", "identity")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1220px;margin:2em auto;padding:0 1em;color:#1d2733}
h1{font-size:1.7em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
.finding{background:#f6f8fa;border-left:4px solid #b42318;padding:.6em 1em;margin:.6em 0}
.warning{background:#fff8c5;border-left:4px solid #9a6700;padding:.6em 1em;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.muted{color:#57606a;font-size:.9em}.grid img{width:96px;height:96px;object-fit:cover;margin:2px}
table.overview td{white-space:nowrap}table.overview th{cursor:pointer;font-size:.9em}table.overview .ci{display:block;color:#57606a;font-size:.8em}
td.worse,.worse-key{background:#ffebe9}td.best{font-weight:600}
table.edits td{padding:2px;border:none}table.edits img{width:96px;height:96px;object-fit:cover}
table.audited{font-size:.85em}table.audited th,table.audited td{text-align:left;border:none;padding:.1em .6em .1em 0}
table.audited th{background:none;color:#57606a;font-weight:400}figure{margin:.5em 0}figure svg{max-width:100%;height:auto}
@media print{h2{break-before:page}details{display:block}}
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The report has no settings of its own: it shows every stage's (from their records)."""


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return [MANIFEST, METRICS, *(name for name in OPTIONAL if folder.exists(name))]


class Finding(NamedTuple):
    """A headline finding: a bold head, the rest, and (when the fit behind it did not
    converge) what its diagnostics say."""

    head: str
    text: str
    caveat: str = ""

    @property
    def plain(self) -> str:
        tail = (f" The fit behind this finding did not converge ({self.caveat}): treat it as provisional and rerun "
                "with more draws (--draws)." if self.caveat else "")
        return self.head + self.text + tail


class Table(NamedTuple):
    columns: list[str]
    rows: list[list[str]]
    css: str = ""


def _frame_table(frame: pd.DataFrame) -> Table:
    def text(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return Table([str(c) for c in frame.columns], [[text(v) for v in row] for row in frame.itertuples(index=False)])


def _interval(row, scale: float = 1.0, digits: int = 3) -> str:
    return f"{row.value * scale:.{digits}f} [{row.low * scale:.{digits}f}, {row.high * scale:.{digits}f}]"


# --- findings ---------------------------------------------------------------------------------


def findings(metrics: pd.DataFrame, contrasts: pd.DataFrame | None, disparity: dict | None,
             training_mix: pd.DataFrame | None, faithfulness: pd.DataFrame | None = None,
             perceived: dict | None = None) -> list[Finding]:
    """The headline findings, from stage files only; a finding that rests on a fit that did
    not converge says so in its own sentence."""
    out = _drawn_finding(faithfulness, perceived)
    head = catalogue.info(catalogue.HEADLINE)
    if contrasts is not None and len(contrasts):
        for c in contrasts[contrasts.metric == catalogue.HEADLINE].itertuples():
            sure = ("the interval of the difference excludes 0" if c.low > 0 or c.high < 0
                    else "the interval of the difference includes 0: no clear disparity")
            s = head.scale
            who = "" if contrasts.generator.nunique() == 1 else f" ({c.generator})"
            out.append(Finding(f"Distribution shift is largest for {c.worst}",
                               f"{who}: {head.label} x{s:g} {c.worst_value * s:.3f} against {c.best_value * s:.3f} for "
                               f"{c.best}; difference {c.difference * s:.3f} [{c.low * s:.3f}, {c.high * s:.3f}] ({sure})."))
    ver = metrics[(metrics.metric == "verification_same_group") & (metrics.group != "all")].dropna(subset=["value"])
    if len(ver):
        worst, best = ver.loc[ver.value.idxmin()], ver.loc[ver.value.idxmax()]
        out.append(Finding(f"Generated identities are hardest to tell apart for {worst.group}",
                           f": same-group verification accuracy {_interval(worst)} against {best.value:.3f} for "
                           f"{best.group}."))
    if training_mix is not None and len(training_mix):
        problems = str(training_mix["fit_problems"].iloc[0]) if "fit_problems" in training_mix else ""
        flagged = training_mix[training_mix.under_represented]
        if len(flagged):
            names = ", ".join(f"{r.group} (share {r.share_mean:.3f} [{r.share_low:.3f}, {r.share_high:.3f}])"
                              for r in flagged.itertuples())
            out.append(Finding("The training-mix model points to under-representation",
                               f" of {names}: each with posterior probability >= 0.9 of less than a uniform share.",
                               problems))
        else:
            out.append(Finding("", "The training-mix model flags no group as under-represented with probability "
                                   ">= 0.9.", problems))
    elif disparity is not None and "groups" in disparity:
        g = max(disparity["groups"], key=lambda r: r["p_worst"])
        out.append(Finding(g["group"], f" is the worst group with posterior probability {g['p_worst']:.2f}.",
                           "; ".join(disparity.get("diagnostics", {}).get("problems", []))))
    return out[:4]


def _main_fit(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the fit a reader looks at first: the first classifier's joint attribute
    (the grid's intersections) if there is one, else its first attribute; corrected fits
    before raw ones."""
    table = table.sort_values("corrected", ascending=False, kind="stable")
    mine = table[table.classifier == table["classifier"].iloc[0]]
    joint = [a for a in dict.fromkeys(mine.attribute) if " x " in a]
    return mine[mine.attribute == (joint[0] if joint else mine.attribute.iloc[0])]


def _drawn_finding(faithfulness: pd.DataFrame | None, perceived: dict | None) -> list[Finding]:
    if faithfulness is None or faithfulness.empty or faithfulness.share.isna().all():
        return []
    main = _main_fit(faithfulness)
    own = main[main.depicted == main.requested]
    if own.share.isna().all():  # an attribute nothing was requested of (skin tone), or no face found
        return []
    worst = own.loc[own.share.idxmin()]
    kind = "corrected for the classifier's confusion" if worst.corrected else "raw classifier shares, uncorrected"
    drawn = main[(main.group == worst.group) & (main.depicted != worst.requested)].sort_values("share").iloc[-1]
    problems = next((f.get("diagnostics", {}).get("problems", []) for f in (perceived or {}).get("fits", [])
                     if f["classifier"] == worst.classifier and f["attribute"] == worst.attribute), [])
    return [Finding(f"{worst.group} is drawn as requested least often",
                    f": {worst.share:.2f} [{worst.low:.2f}, {worst.high:.2f}] of its images show {worst.requested} "
                    f"({worst.attribute}, {kind}; the classifier's raw share says {worst.raw_share:.2f}); most often it "
                    f"is drawn as {drawn.depicted} ({drawn.share:.2f}).", "; ".join(problems))]


# --- who gets drawn ---------------------------------------------------------------------------


def who_gets_drawn(folder: AuditFolder, f: dict) -> dict | None:
    """The "Who gets drawn" section: calibration, requested vs depicted, neutral prompts."""
    faith, rep, summary = f.get("faithfulness_parquet"), f.get("representation_parquet"), f.get("perceive_json")
    if faith is None or summary is None:
        return None
    out = {"assumption": summary["assumption"], "fits": [], "faithfulness": None, "prompts": None}
    for fit in summary["fits"]:
        name = f"{fit['classifier']} / {fit['attribute']}"
        if not fit["corrected"]:
            out["fits"].append({"name": name, "raw": fit["why_raw"]})
            continue
        cal = fit["calibration"]
        out["fits"].append({
            "name": name, "raw": "", "faces": sum(cal["faces"].values()), "condition": f"{cal['condition']:.1f}",
            "accuracy": ", ".join(f"{c} {a:.2f}" for c, a in cal["accuracy"].items()),
            "divisor": f"{1 / fit['sensitivity']['calibration_weight']:.0f}",
            "shift": f"{fit['sensitivity']['max_share_shift']:.3f}", "confused": cal["cannot_tell_apart"],
            "problems": fit.get("diagnostics", {}).get("problems", [])})
    main = _main_fit(faith) if len(faith) else faith
    if len(main):
        attribute = main.attribute.iloc[0]
        out.update(attribute=attribute, label="corrected" if main.corrected.iloc[0] else "RAW, uncorrected",
                   heatmaps=[_svg(figures.depicted_heatmap(part, f"{generator}: share of each requested group's "
                                                                 f"images depicting each {attribute}"))
                             for generator, part in main.groupby("generator", sort=False)])
        own = faith[faith.depicted == faith.requested]
        cells = own.assign(cell=[f"{r.share:.2f} [{r.low:.2f}, {r.high:.2f}] (raw {r.raw_share:.2f})"
                                 + ("" if r.corrected else " RAW") for r in own.itertuples()])
        wide = cells.pivot_table(index=["generator", "group"], columns=["classifier", "attribute"], values="cell",
                                 aggfunc="first", sort=False)
        wide.columns = [f"{a} ({c})" if own.classifier.nunique() > 1 else a for c, a in wide.columns]
        counts = main[main.depicted == main.requested].set_index(["generator", "group"])[["n", "no_face"]]
        out["faithfulness"] = _frame_table(wide.join(counts.rename(columns={"n": "faces", "no_face": "no face found"}))
                                           .reset_index())
    if rep is not None and len(rep):
        out.update(_prompts(folder, rep))
    return out


def _prompts(folder: AuditFolder, rep: pd.DataFrame) -> dict:
    shares = _main_fit(rep)
    shares = shares[shares.measure == "share"]
    divergences = rep[rep.measure != "share"]
    main = _main_fit(divergences)
    attribute = main.attribute.iloc[0]
    skew = main.pivot_table(index=["generator", "prompt"], columns="measure", values=["share", "low", "high", "p_above"],
                            sort=False)
    cells = pd.DataFrame(index=skew.index)
    for m, label in (("mad", "MAD"), ("kl", "KL"), ("entropy", "normalised entropy")):
        cells[f"{label} ({attribute})"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in
                                           zip(skew[("share", m)], skew[("low", m)], skew[("high", m)])]
    cells["P(MAD > threshold)"] = skew[("p_above", "mad")].map("{:.2f}".format)
    others = divergences[(divergences.measure == "mad") & (divergences.attribute != attribute)
                         & (divergences.classifier == main.classifier.iloc[0])]
    for other, part in others.groupby("attribute", sort=False):
        cells[f"MAD ({other})"] = part.set_index(["generator", "prompt"]).apply(
            lambda r: f"{r.share:.3f} [{r.low:.3f}, {r.high:.3f}]", axis=1)
    cells = cells.assign(order=skew[("share", "mad")]).sort_values("order", ascending=False).drop(columns="order")
    manifest = folder.manifest
    neutral = manifest[(manifest.role == "neutral") & (manifest.path != "")]
    return {"prompts": _frame_table(cells.reset_index()),
            "mixes": [_svg(figures.prompt_mixes(part, f"{generator}: depicted {shares.attribute.iloc[0]} per prompt "
                                                      "(bars: corrected share, 90% HDI)"))
                      for generator, part in shares.groupby("generator", sort=False)],
            "prompt_images": [(prompt, [_thumbnail(folder.file(p), prompt) for p in rows.path.head(THUMBNAILS)])
                              for prompt, rows in neutral.groupby("prompt", sort=False)]}


# --- per-group numbers ------------------------------------------------------------------------


def overview(metrics: pd.DataFrame, group_contrasts: pd.DataFrame | None) -> dict | None:
    """One table per generator: groups as rows, the ranking metrics as columns, each cell
    the value with its interval; shaded where the group's difference from the best group
    excludes 0 (``group_contrasts.parquet``), bold for the best. Sortable; each column's
    definition on hover and in the notes."""
    rows = metrics[(metrics.group != "all") & (metrics.edit == "")
                   & metrics.metric.map(lambda m: catalogue.info(m).kind in OVERVIEW_KINDS)]
    if rows.empty:
        return None
    worse, best = set(), set()
    if group_contrasts is not None:
        for c in group_contrasts[group_contrasts.edit == ""].itertuples():
            best.add((c.generator, c.metric, c.best))
            if c.low > 0 or c.high < 0:
                worse.add((c.generator, c.metric, c.group))
    names = sorted(rows.metric.unique(), key=lambda m: OVERVIEW_KINDS.index(catalogue.info(m).kind))
    columns = [(f"{catalogue.info(m).shown_label} {catalogue.info(m).arrow}", _definition(m)) for m in names]
    tables = []
    for generator, part in rows.groupby("generator", sort=False):
        by = {(r.group, r.metric): r for r in part.itertuples()}
        body = []
        for group in sorted(part.group.unique()):
            cells = []
            for m in names:
                r = by.get((group, m))
                if r is None:
                    cells.append({"css": "", "sort": "nan", "value": "-", "interval": ""})
                    continue
                s = catalogue.info(m).scale
                warn = " ⚠" if isinstance(r.warning, str) and r.warning else ""
                cells.append({"css": "best" if (generator, m, group) in best else
                              "worse" if (generator, m, group) in worse else "",
                              "sort": repr(r.value * s), "value": f"{r.value * s:.3g}{warn}",
                              "interval": f"[{r.low * s:.3g}, {r.high * s:.3g}]"})
            body.append((group, cells))
        tables.append({"title": "" if rows.generator.nunique() == 1 else generator, "columns": columns, "rows": body})
    return {"confidence": int(100 * rows.confidence.iloc[0]), "tables": tables,
            "notes": [(label, _definition(m).split(": ", 1)[1]) for (label, _), m in zip(columns, names)]}


def _definition(name: str) -> str:
    meta = catalogue.info(name)
    return f"{meta.shown_label}: interval of {meta.estimand}; {meta.comparable}"


def _metric_tables(metrics: pd.DataFrame) -> list[dict]:
    """Every metric's per-group table by kind (with edits and sizes), and what each estimates."""
    sections = []
    for kind, title in (("distribution", "Distribution shift and fidelity"), ("diversity", "Diversity"),
                        ("identity", "Identity"), ("faithfulness", "Faithfulness to prompts and edits")):
        sub = metrics[metrics.metric.map(lambda m: catalogue.info(m).kind == kind)]
        if sub.empty:
            continue
        tables, notes = [], []
        for name in dict.fromkeys(sub.metric):
            meta = catalogue.info(name)
            rows = sub[sub.metric == name]
            cell = [_interval(r, meta.scale) + (f" ⚠ {r.warning}" if isinstance(r.warning, str) and r.warning else "")
                    for r in rows.itertuples()]
            index = ["generator", "edit", "group"] if rows["edit"].ne("").any() else ["generator", "group"]
            wide = rows.assign(cell=cell).pivot_table(index=index, columns="metric", values="cell", aggfunc="first")
            wide.columns = [f"{meta.shown_label} {meta.arrow}"]
            tables.append(_frame_table(wide.reset_index()))
            notes.append((f"{meta.shown_label} {meta.arrow}", f"interval of {meta.estimand}; {meta.comparable}."))
        sections.append({"title": title, "tables": tables, "notes": notes})
    return sections


def _disparities(metrics: pd.DataFrame, disparity: dict | None) -> tuple:
    panels = []
    for name in (catalogue.HEADLINE, "fd_audit", "verification_same_group", "coverage"):
        sub = metrics[(metrics.metric == name) & (metrics.group != "all") & (metrics.edit == "")].copy()
        if len(sub):
            meta = catalogue.info(name)
            for col in ("value", "low", "high"):
                sub[col] = sub[col] * meta.scale
            sub["label"] = sub["group"] if sub.generator.nunique() == 1 else sub.generator + ": " + sub.group
            panels.append((sub, meta.shown_label, f"{'higher' if meta.higher_is_better else 'lower'} is better"))
    forests = _svg(figures.forests(panels)) if panels else None
    if disparity is None:
        return forests, None
    if "skipped" in disparity:
        return forests, {"skipped": disparity["skipped"]}
    post = pd.DataFrame(disparity["groups"]).rename(columns={"mean": "value", "hdi_low": "low", "hdi_high": "high"})
    post["label"] = post["group"]
    shown = post[["group", "n", "observed", "value", "low", "high", "p_worst"]].rename(
        columns={"value": "mean", "low": "HDI low", "high": "HDI high", "p_worst": "P(worst)"})
    return forests, {"skipped": "", "outcome": disparity.get("outcome", ""), "hdi": int(100 * disparity.get("hdi_prob", 0.95)),
                     "problems": disparity.get("diagnostics", {}).get("problems", []),
                     "figure": _svg(figures.forest(post, "posterior group means (hierarchical model)", "rate")),
                     "table": _frame_table(shown)}


def _training_mix(f: dict) -> dict | None:
    training_mix = f.get("training_mix_summary_parquet")
    if training_mix is None:
        return None
    shown = pd.DataFrame({
        "generator": training_mix.generator, "group": training_mix.group,
        "training share (posterior mean)": training_mix.share_mean.map("{:.3f}".format),
        "90% HDI": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(training_mix.share_low, training_mix.share_high)],
        "P(share < uniform)": training_mix.p_below_uniform.map("{:.2f}".format),
        "under-represented": training_mix.under_represented.map({True: "yes", False: "no"})})
    curves = f.get("share_curves_parquet")
    return {"evidence": str(training_mix["evidence"].iloc[0]) if "evidence" in training_mix else "per-group FD",
            "problems": str(training_mix["fit_problems"].iloc[0]) if "fit_problems" in training_mix else "",
            "table": _frame_table(shown), "figure": _svg(figures.share_curves(curves)) if curves is not None else None}


def _plan(f: dict) -> dict | None:
    plan = f.get("plan_parquet")
    if plan is None:
        return None
    shown = pd.DataFrame({
        "group": plan.group, "training share now": plan.share_now.map("{:.3f}".format),
        "extra images": plan.extra_images.round().astype(int).astype(str),
        "share planned": plan.share_planned.map("{:.3f}".format),
        **{f"expected FD {k}": plan[f"quality_{k}"].map("{:.3f}".format) for k in ("now", "uniform", "proportional",
                                                                                     "planned")}})
    return {"budget": f"{f.get('plan_json', {}).get('budget', float('nan')):.0f}", "table": _frame_table(shown)}


# --- images -----------------------------------------------------------------------------------


def _thumbnail(path, label: str) -> tuple[str, str]:
    """``(alt text, data URI)`` of a real thumbnail: at most THUMBNAIL_PIXELS, a JPEG under
    THUMBNAIL_BYTES (quality lowered until it fits); never the original file's bytes."""
    import io

    from faceaudit.files.images import load_rgb

    image = load_rgb(path)
    image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    for quality in (85, 70, 50, 30):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= THUMBNAIL_BYTES:
            break
    return label, "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _images(folder: AuditFolder, manifest: pd.DataFrame, image_metrics: pd.DataFrame | None) -> dict:
    """Image audits: sample faces per group; the study's figure (a source face beside each
    of its edits, per group); the generated faces farthest from every reference face of
    their group; those in which no face was found. At most THUMBNAILS (or EDIT_SOURCES rows)
    per group and grid."""
    with_files = manifest[manifest.path != ""]
    out = {"samples": [], "edits": [], "farthest": [], "faceless": [], "any": not with_files.empty,
           "per_group": THUMBNAILS, "edit_sources": EDIT_SOURCES, "pixels": THUMBNAIL_PIXELS}
    if with_files.empty:
        return out
    for group, rows in with_files[with_files.role == "generated"].groupby("group"):
        out["samples"].append((group, [_thumbnail(folder.file(p), group) for p in rows.path.head(THUMBNAILS)]))
    edits = with_files[with_files.edit != ""]
    if len(edits):
        names = list(dict.fromkeys(edits.edit))
        by_source = {(r.source_id, r.edit): r.path for r in edits.itertuples()}
        sources = with_files[(with_files.edit == "") & with_files.image_id.isin(edits.source_id)]
        for (generator, group), part in sources.groupby(["generator", "group"], sort=True):
            rows = []
            for source in part.head(EDIT_SOURCES).itertuples():
                rows.append([_thumbnail(folder.file(source.path), f"{group}: source")]
                            + [_thumbnail(folder.file(by_source[(source.image_id, n)]), f"{group}: {n}")
                               if (source.image_id, n) in by_source else None for n in names])
            out["edits"].append({"title": f"{generator}: {group}", "columns": ["source", *names], "rows": rows})
    if image_metrics is not None and "nearest_reference" in image_metrics:
        far = image_metrics.merge(with_files[["image_id", "path"]], on="image_id")
        for group, part in far.groupby("group", sort=True):
            out["farthest"].append((group, [_thumbnail(folder.file(r.path), f"{group}: distance {r.nearest_reference:.3g}")
                                            for r in part.nlargest(THUMBNAILS, "nearest_reference").itertuples()]))
    if folder.has_role("identity"):
        generated = with_files[with_files.role != "reference"]
        _, found = folder.embeddings("identity", generated.image_id)
        for group, part in generated[~found].groupby("group", sort=True):
            out["faceless"].append((group or "neutral prompts", len(part),
                                    [_thumbnail(folder.file(p), f"{group}: no face") for p in part.path.head(THUMBNAILS)]))
    return out


# --- the page ---------------------------------------------------------------------------------


def _svg(svg: str):
    """faceaudit's own figure, marked safe for the template (matplotlib escaped its text)."""
    from markupsafe import Markup

    return Markup(svg)


@functools.cache
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("faceaudit.stages", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")


def render(**context) -> str:
    """The page for ``context`` (sections left out are empty)."""
    page = {"css": CSS, "header": [], "random_weights": [], "findings": [], "warned": "", "drawn": None,
            "overview": None, "metric_tables": [], "forests": None, "disparity": None, "training_mix": None,
            "plan": None, "images": _images_empty(), "appendix": [], "settings": "{}"}
    page.update(context)
    return _template().render(**page)


def _images_empty() -> dict:
    return {"samples": [], "edits": [], "farthest": [], "faceless": [], "any": False, "per_group": THUMBNAILS,
            "edit_sources": EDIT_SOURCES, "pixels": THUMBNAIL_PIXELS}


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    problems = disagreements(folder.path, skip=(NAME,))
    if problems:
        raise ValueError(f"{folder.path}: the stage files disagree ({'; '.join(problems)}); "
                         "rerun `faceaudit audit` to bring every stage up to date before reporting")
    f = _read(folder)
    metrics, manifest, meta = f["metrics"], folder.manifest, folder.meta
    rankable = metrics.metric.map(lambda m: catalogue.info(m).rankable)
    warned = metrics[metrics.warning.fillna("").ne("") & rankable]
    forests, disparity = _disparities(metrics, f.get("disparity_json"))
    records = {p.stem: json.loads(p.read_text()).get("settings") for p in sorted(folder.file(RECORDS).glob("*.json"))}
    page = render(
        header=_header(folder, manifest, meta), random_weights=_random_weights(folder),
        findings=findings(metrics, f.get("contrasts_parquet"), f.get("disparity_json"), f.get("training_mix_summary_parquet"),
                          f.get("faithfulness_parquet"), f.get("perceive_json")),
        warned="; ".join(sorted({f"{r.metric} {r.group}: {r.warning}" for r in warned.itertuples()})[:6]),
        drawn=who_gets_drawn(folder, f), overview=overview(metrics[rankable], f.get("group_contrasts_parquet")),
        metric_tables=_metric_tables(metrics[(metrics.group != "all") & rankable]), forests=forests,
        disparity=disparity, training_mix=_training_mix(f), plan=_plan(f),
        images=_images(folder, manifest, f.get("image_metrics_parquet")),
        appendix=_metric_tables(metrics[(metrics.group != "all") & ~rankable]),
        settings=json.dumps({"stages": records, "manifest": meta, "versions": _versions()}, indent=2, default=str))
    atomic_write_text(folder.file(REPORT), page)
    return StageResult((REPORT,), {"report": str(folder.file(REPORT).resolve())})


def _read(folder: AuditFolder) -> dict:
    return {"metrics": folder.read(METRICS), **_read_optional(folder)}


def _read_optional(folder: AuditFolder) -> dict:
    """The stage files a report shows where they exist, by name with "." as "_"."""
    return {name.replace(".", "_"): folder.read(name) for name in OPTIONAL if folder.exists(name)}


def _random_weights(folder: AuditFolder) -> list[str]:
    out = [f"{role}: {e['encoder']}" for role, e in folder.index.items() if e["encoder"].endswith(":random")]
    if folder.exists(PERCEIVE_SUMMARY):
        out += [f"perceived attributes: {c}" for c in folder.read(PERCEIVE_SUMMARY).get(
            "random_weights", [])]
    return out


def headline_findings(folder: AuditFolder) -> list[str]:
    """The report's headline findings as plain text (for the terminal)."""
    f = _read(folder)
    lines = [x.plain for x in findings(f["metrics"], f.get("contrasts_parquet"), f.get("disparity_json"),
                                       f.get("training_mix_summary_parquet"), f.get("faithfulness_parquet"),
                                       f.get("perceive_json"))]
    random = _random_weights(folder)
    if random:
        lines.insert(0, "RANDOM ENCODER WEIGHTS (" + "; ".join(random) + "): these numbers say nothing about faces.")
    return lines


def _header(folder: AuditFolder, manifest: pd.DataFrame, meta: dict) -> list[tuple[str, str]]:
    """What was audited: models, encoders, image counts, where, when and by which version."""
    role = manifest["role"]
    generators = sorted(g for g in manifest.loc[role != "reference", "generator"].unique() if g)
    encoders = sorted({f"{e['encoder']} ({r})" for r, e in folder.index.items()})
    counts = [f"{int((role == 'generated').sum())} generated images of "
              f"{manifest.loc[role == 'generated', 'group'].nunique()} groups"]
    if (role == "neutral").any():
        counts.append(f"{int((role == 'neutral').sum())} from {manifest.loc[role == 'neutral', 'prompt'].nunique()} "
                      "neutral prompts")
    counts.append(f"{int((role == 'reference').sum())} reference images")
    return [("models", ", ".join(generators) or "-"), ("encoders", "; ".join(encoders) or "-"),
            ("images", "; ".join(counts)), ("source", str(meta.get("source", "pipeline"))),
            ("folder", str(folder.path.resolve())),
            ("written", f"{datetime.date.today().isoformat()} by faceaudit {_versions().get('faceaudit', '?')}")]


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("faceaudit", "jax", "jaxlib", "numpyro", "arviz", "xarray", "pandas", "numpy", "scipy", "diffusers",
                "open_clip_torch", "torch", "transformers", "dlib-bin"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
