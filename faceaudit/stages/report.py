"""The report stage: one self-contained HTML file a person reads, headline findings first.

Reads the stage files of an audit folder and never computes a statistic: the numbers, their
intervals, the worst-versus-best contrasts and the warnings all come from the measure,
disparity, explain and plan stages; labels and "what this interval is of" come from the
metric catalogue. Figures are inline SVG and images small JPEG thumbnails, so the file can be
mailed around. A
folder whose stages disagree (a stage reran after those that read its output) is refused.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import platform
from importlib import metadata

import pandas as pd

from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import atomic_write_text
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.records import RECORDS, disagreements
from faceaudit.stages import StageResult
from faceaudit.tables import catalogue, figures

NAME = "report"
DESCRIBE = "write the HTML report"
REPORT = "report.html"
OPTIONAL = ("disparity.json", "selection_summary.parquet", "share_curves.parquet", "plan.parquet", "plan.json",
            "contrasts.parquet", "prompt_metrics.parquet", "faithfulness.parquet", "representation.parquet",
            "perceive.json", "group_contrasts.parquet")

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
    return [MANIFEST, "metrics.parquet", *(name for name in (*OPTIONAL, "image_metrics.parquet") if folder.exists(name))]


def _img(svg: str) -> str:
    """An inline SVG figure (from ``tables.figures``: its text XML-escaped by matplotlib)."""
    return f"<figure>{svg}</figure>"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, escape=True)


def _fmt(row, scale=1.0) -> str:
    return f"{row.value * scale:.3f} [{row.low * scale:.3f}, {row.high * scale:.3f}]"


def _unconverged(problems: str) -> str:
    """The sentence a finding gets when the fit it rests on did not converge."""
    if not problems:
        return ""
    return (f" <b>The fit behind this finding did not converge</b> ({html.escape(problems)}): treat it as provisional "
            "and rerun with more draws (--draws).")


def findings(metrics: pd.DataFrame, contrasts: pd.DataFrame | None, disparity: dict | None,
             selection: pd.DataFrame | None, faithfulness: pd.DataFrame | None = None,
             perceived: dict | None = None) -> list[str]:
    """The headline findings (HTML), from stage files only; a finding that rests on a fit
    that did not converge says so in its own sentence."""
    out = _drawn_finding(faithfulness, perceived)
    head = catalogue.info(catalogue.HEADLINE)
    if contrasts is not None and len(contrasts):
        for c in contrasts[contrasts.metric == catalogue.HEADLINE].itertuples():
            sure = ("the interval of the difference excludes 0" if c.low > 0 or c.high < 0
                    else "the interval of the difference includes 0: no clear disparity")
            s = head.scale
            out.append(f"<b>Distribution shift is largest for {html.escape(c.worst)}</b>"
                       f"{'' if contrasts.generator.nunique() == 1 else ' (' + html.escape(c.generator) + ')'}: "
                       f"{html.escape(head.label)} x{s:g} {c.worst_value * s:.3f} against {c.best_value * s:.3f} for "
                       f"{html.escape(c.best)}; difference {c.difference * s:.3f} "
                       f"[{c.low * s:.3f}, {c.high * s:.3f}] ({sure}).")
    ver = metrics[(metrics.metric == "verification_same_group") & (metrics.group != "all")].dropna(subset=["value"])
    if len(ver):
        worst, best = ver.loc[ver.value.idxmin()], ver.loc[ver.value.idxmax()]
        out.append(f"<b>Generated identities are hardest to tell apart for {html.escape(worst.group)}</b>: same-group "
                   f"verification accuracy {_fmt(worst)} against {best.value:.3f} for {html.escape(best.group)}.")
    if selection is not None and len(selection):
        flagged = selection[selection.under_represented]
        if len(flagged):
            names = ", ".join(f"{html.escape(r.group)} (share {r.share_mean:.3f} [{r.share_low:.3f}, {r.share_high:.3f}])"
                              for r in flagged.itertuples())
            out.append(f"<b>The training-mix model points to under-representation</b> of {names}: "
                       f"each with posterior probability >= 0.9 of less than a uniform share.")
        else:
            out.append("The training-mix model flags no group as under-represented with probability >= 0.9.")
        if "fit_problems" in selection:
            out[-1] += _unconverged(str(selection["fit_problems"].iloc[0]))
    elif disparity is not None and "groups" in disparity:
        g = max(disparity["groups"], key=lambda r: r["p_worst"])
        out.append(f"<b>{html.escape(g['group'])}</b> is the worst group with posterior probability {g['p_worst']:.2f}."
                   + _unconverged("; ".join(disparity.get("diagnostics", {}).get("problems", []))))
    return out[:4]


def _main_fit(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the fit a reader looks at first: the first classifier's joint attribute
    (the grid's intersections) if there is one, else its first attribute; corrected fits
    before raw ones."""
    table = table.sort_values("corrected", ascending=False, kind="stable")
    classifier = table["classifier"].iloc[0]
    mine = table[table.classifier == classifier]
    joint = [a for a in dict.fromkeys(mine.attribute) if " x " in a]
    return mine[mine.attribute == (joint[0] if joint else mine.attribute.iloc[0])]


def _drawn_finding(faithfulness: pd.DataFrame | None, perceived: dict | None) -> list[str]:
    if faithfulness is None or faithfulness.empty or faithfulness.share.isna().all():
        return []
    main = _main_fit(faithfulness)
    own = main[main.depicted == main.requested]
    if own.share.isna().all():  # an attribute nothing was requested of (skin tone), or no face found
        return []
    worst = own.loc[own.share.idxmin()]
    kind = "corrected for the classifier's confusion" if worst.corrected else "raw classifier shares, uncorrected"
    drawn = main[(main.group == worst.group) & (main.depicted != worst.requested)].sort_values("share").iloc[-1]
    return [f"<b>{html.escape(worst.group)} is drawn as requested least often</b>: "
            f"{worst.share:.2f} [{worst.low:.2f}, {worst.high:.2f}] of its images show {html.escape(worst.requested)} "
            f"({html.escape(worst.attribute)}, {kind}; the classifier's raw share says {worst.raw_share:.2f}); most often "
            f"it is drawn as {html.escape(drawn.depicted)} ({drawn.share:.2f})."
            + _unconverged("; ".join(next((f.get("diagnostics", {}).get("problems", []) for f in (perceived or {}).get(
                "fits", []) if f["classifier"] == worst.classifier and f["attribute"] == worst.attribute), [])))]


def who_gets_drawn(folder: AuditFolder, f: dict) -> list[str]:
    """The "Who gets drawn" section: requested vs depicted, neutral prompts, the calibration."""
    faith, rep, summary = f.get("faithfulness_parquet"), f.get("representation_parquet"), f.get("perceive_json")
    if faith is None or summary is None:
        return []
    out = ["<h2>Who gets drawn</h2><p>Does a requested group come out as that group, and whom does the model draw "
           "when the prompt names no group? Perceived attributes from a classifier, corrected for the confusion it "
           "makes on the labelled reference faces (a Bayesian measurement-error model; 90% HDIs). "
           f"{html.escape(summary['assumption'])}</p>"]
    for fit in summary["fits"]:
        name = f"{fit['classifier']} / {fit['attribute']}"
        if not fit["corrected"]:
            out.append(f"<div class='warning'>{html.escape(name)}: {html.escape(fit['why_raw'])} (labelled raw).</div>")
            continue
        cal = fit["calibration"]
        accuracy = ", ".join(f"{html.escape(c)} {a:.2f}" for c, a in cal["accuracy"].items())
        shift = fit["sensitivity"]["max_share_shift"]
        out.append(f"<p class='muted'>{html.escape(name)}: accuracy on {sum(cal['faces'].values())} reference faces: "
                   f"{accuracy}; condition number {cal['condition']:.1f}. With the calibration counts divided by "
                   f"{1 / fit['sensitivity']['calibration_weight']:.0f} (the confusion known only loosely) the shares "
                   f"move by at most {shift:.3f}.</p>")
        for pair in cal["cannot_tell_apart"]:
            out.append(f"<div class='warning'>{html.escape(name)}: the classifier cannot tell {html.escape(pair[0])} and "
                       f"{html.escape(pair[1])} apart; their corrected shares stay near the prior.</div>")
        for problem in fit.get("diagnostics", {}).get("problems", []):
            out.append(f"<div class='warning'>{html.escape(name)} fit: {html.escape(problem)}</div>")
    main = _main_fit(faith)
    if len(main):
        attribute = main.attribute.iloc[0]
        label = "corrected" if main.corrected.iloc[0] else "RAW, uncorrected"
        out.append(f"<h3>Requested vs depicted ({html.escape(attribute)}, {label})</h3>")
        for generator, part in main.groupby("generator", sort=False):
            out.append(_img(figures.depicted_heatmap(part, f"{generator}: share of each requested group's images "
                                                           f"depicting each {attribute}")))
        own = faith[faith.depicted == faith.requested]
        cells = own.assign(cell=[f"{r.share:.2f} [{r.low:.2f}, {r.high:.2f}] (raw {r.raw_share:.2f})"
                                 + ("" if r.corrected else " RAW") for r in own.itertuples()])
        wide = cells.pivot_table(index=["generator", "group"], columns=["classifier", "attribute"], values="cell",
                                 aggfunc="first", sort=False)
        wide.columns = [f"{a} ({c})" if own.classifier.nunique() > 1 else a for c, a in wide.columns]
        counts = main[main.depicted == main.requested].set_index(["generator", "group"])[["n", "no_face"]]
        wide = wide.join(counts.rename(columns={"n": "faces", "no_face": "no face found"}))
        out.append("<p class='muted'>P(depicted = requested) per attribute, posterior mean [90% HDI], with the "
                   "classifier's raw share.</p>" + _table(wide.reset_index()))
    if rep is not None and len(rep):
        mains = _main_fit(rep)
        shares = mains[mains.measure == "share"]
        divergences = rep[rep.measure != "share"]
        main_div = _main_fit(divergences)
        skew = main_div.pivot_table(index=["generator", "prompt"], columns="measure", values=["share", "low", "high",
                                                                                              "p_above"], sort=False)
        cells = pd.DataFrame(index=skew.index)
        for m, label in (("mad", "MAD"), ("kl", "KL"), ("entropy", "normalised entropy")):
            cells[f"{label} ({main_div.attribute.iloc[0]})"] = [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(skew[("share", m)], skew[("low", m)], skew[("high", m)])]
        cells["P(MAD > threshold)"] = skew[("p_above", "mad")].map("{:.2f}".format)
        others = divergences[(divergences.measure == "mad") & (divergences.attribute != main_div.attribute.iloc[0])
                             & (divergences.classifier == main_div.classifier.iloc[0])]
        for attribute, part in others.groupby("attribute", sort=False):
            cells[f"MAD ({attribute})"] = part.set_index(["generator", "prompt"]).apply(
                lambda r: f"{r.share:.3f} [{r.low:.3f}, {r.high:.3f}]", axis=1)
        cells = cells.assign(order=skew[("share", "mad")]).sort_values("order", ascending=False).drop(columns="order")
        out.append("<h3>Neutral prompts: whom the model draws</h3><p class='muted'>Against the reference mix "
                   "(uniform unless the spec gives shares); prompts ranked by MAD, with 90% HDIs.</p>")
        out.append(_table(cells.reset_index()))
        for generator, part in shares.groupby("generator", sort=False):
            out.append(_img(figures.prompt_mixes(part, f"{generator}: depicted {shares.attribute.iloc[0]} per prompt "
                                                       "(bars: corrected share, 90% HDI)")))
        out.append(_prompt_grid(folder))
    return out


def _prompt_grid(folder: AuditFolder) -> str:
    """Image audits: up to six images of each neutral prompt."""
    manifest = folder.manifest
    neutral = manifest[(manifest.role == "neutral") & (manifest.path != "")]
    parts = []
    for prompt, rows in neutral.groupby("prompt", sort=False):
        thumbs = [_thumbnail(folder.file(p), prompt) for p in rows["path"].head(THUMBNAILS)]
        parts.append(f"<h4>{html.escape(prompt)}</h4><div class='grid'>{''.join(thumbs)}</div>")
    return "".join(parts)


def _read(folder: AuditFolder) -> dict:
    out = {"metrics": folder.read_parquet("metrics.parquet", stage="measure"), **_read_optional(folder)}
    if folder.exists("image_metrics.parquet"):
        out["image_metrics"] = folder.read_parquet("image_metrics.parquet", stage="measure")
    return out


def _read_optional(folder: AuditFolder) -> dict:
    """The stage files a report shows where they exist, by name with "." as "_"."""
    files = {}
    stage_of = {"disparity.json": "disparity", "selection_summary.parquet": "explain", "share_curves.parquet": "explain",
                "plan.parquet": "plan", "plan.json": "plan", "contrasts.parquet": "measure",
                "prompt_metrics.parquet": "measure", "faithfulness.parquet": "perceive",
                "representation.parquet": "perceive", "perceive.json": "perceive",
                "group_contrasts.parquet": "measure"}
    for name in OPTIONAL:
        if folder.exists(name):
            key = name.replace(".", "_")
            files[key] = (folder.read_json(name, stage=stage_of[name]) if name.endswith(".json")
                          else folder.read_parquet(name, stage=stage_of[name]))
    return files


def _random_weights(folder: AuditFolder) -> list[str]:
    out = [f"{role}: {e['encoder']}" for role, e in folder.index.items() if e["encoder"].endswith(":random")]
    if folder.exists("perceive.json"):
        out += [f"perceived attributes: {c}" for c in folder.read_json("perceive.json", stage="perceive").get(
            "random_weights", [])]
    return out


def headline_findings(folder: AuditFolder) -> list[str]:
    """The report's headline findings as plain text (for the terminal)."""
    import re

    f = _read(folder)
    lines = findings(f["metrics"], f.get("contrasts_parquet"), f.get("disparity_json"), f.get("selection_summary_parquet"),
                     f.get("faithfulness_parquet"), f.get("perceive_json"))
    random = _random_weights(folder)
    if random:
        lines.insert(0, "RANDOM ENCODER WEIGHTS (" + "; ".join(random) + "): these numbers say nothing about faces.")
    return [html.unescape(re.sub("<[^>]+>", "", s)) for s in lines]


SORT_SCRIPT = """<script>
document.querySelectorAll('table.overview th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = +th.dataset.col;
    var up = th.dataset.dir !== 'up'; th.dataset.dir = up ? 'up' : 'down';
    Array.from(body.rows).sort(function (a, b) {
      var x = parseFloat(a.cells[col].dataset.value), y = parseFloat(b.cells[col].dataset.value);
      return (isNaN(x) ? 1 : isNaN(y) ? -1 : (x - y) * (up ? 1 : -1));
    }).forEach(function (row) { body.appendChild(row); });
  });
});
</script>"""
OVERVIEW_KINDS = ("distribution", "diversity", "identity")


def overview(metrics: pd.DataFrame, group_contrasts: pd.DataFrame | None) -> list[str]:
    """One table per generator: groups as rows, the ranking metrics as columns, each cell
    the value with its interval; red where the group's difference from the best group
    excludes 0, bold for the best. Click a column to sort; hover for its definition."""
    rows = metrics[(metrics.group != "all") & (metrics.edit == "")
                   & metrics.metric.map(lambda m: catalogue.info(m).kind in OVERVIEW_KINDS)]
    if rows.empty:
        return []
    worse, best = set(), set()
    if group_contrasts is not None:
        for c in group_contrasts[group_contrasts.edit == ""].itertuples():
            best.add((c.generator, c.metric, c.best))
            if c.low > 0 or c.high < 0:
                worse.add((c.generator, c.metric, c.group))
    names = list(dict.fromkeys(sorted(rows.metric.unique(), key=lambda m: OVERVIEW_KINDS.index(catalogue.info(m).kind))))
    out = ["<h2>Per-group metrics</h2><p class='muted'>Each value with its "
           f"{int(100 * rows.confidence.iloc[0])}% interval. <span class='worse-key'>Shaded</span>: the group's "
           "difference from the best group (<b>bold</b>) excludes 0. Arrows: which direction is better; click a "
           "column to sort, hover its name for what it estimates.</p>"]
    for generator, part in rows.groupby("generator", sort=False):
        by = {(r.group, r.metric): r for r in part.itertuples()}
        head = ["<th data-col='0'>group</th>"]
        for j, m in enumerate(names, 1):
            meta = catalogue.info(m)
            tip = html.escape(f"{meta.shown_label}: interval of {meta.estimand}; {meta.comparable}", quote=True)
            head.append(f"<th data-col='{j}' title=\"{tip}\">{html.escape(meta.shown_label)} {meta.arrow}</th>")
        body = []
        for group in sorted(part.group.unique()):
            cells = [f"<td data-value='nan'>{html.escape(group)}</td>"]
            for m in names:
                r = by.get((group, m))
                if r is None:
                    cells.append("<td data-value='nan'>-</td>")
                    continue
                scale = catalogue.info(m).scale
                cls = ("best" if (generator, m, group) in best else "worse" if (generator, m, group) in worse else "")
                warn = " ⚠" if isinstance(r.warning, str) and r.warning else ""
                cells.append(f"<td class='{cls}' data-value='{r.value * scale!r}'>{r.value * scale:.3g} "
                             f"<span class='ci'>[{r.low * scale:.3g}, {r.high * scale:.3g}]</span>{warn}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        title = "" if rows.generator.nunique() == 1 else f"<h3>{html.escape(generator)}</h3>"
        out.append(f"{title}<table class='overview'><thead><tr>{''.join(head)}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
    notes = "".join(f"<li><b>{html.escape(catalogue.info(m).shown_label)} {catalogue.info(m).arrow}</b>: interval of "
                    f"{html.escape(catalogue.info(m).estimand)}; {html.escape(catalogue.info(m).comparable)}.</li>"
                    for m in names)
    out.append(f"<ul class='muted'>{notes}</ul>{SORT_SCRIPT}")
    return out


def _metric_tables(metrics: pd.DataFrame) -> list[str]:
    parts = []
    for kind, title in (("distribution", "Distribution shift and fidelity"), ("diversity", "Diversity"),
                        ("identity", "Identity"), ("faithfulness", "Faithfulness to prompts and edits")):
        sub = metrics[metrics.metric.map(lambda m: catalogue.info(m).kind == kind)]
        if sub.empty:
            continue
        parts.append(f"<h3>{title}</h3>")
        notes = []
        for name in dict.fromkeys(sub.metric):
            meta = catalogue.info(name)
            s = meta.scale
            rows = sub[sub.metric == name]
            # Plain text: to_html escapes it (escaping here too showed "&lt;" to the reader).
            cell = [f"{_fmt(r, s)}" + (f" ⚠ {r.warning}" if isinstance(r.warning, str) and r.warning else "")
                    for r in rows.itertuples()]
            rows = rows.assign(cell=cell)
            notes.append(f"<li><b>{html.escape(meta.shown_label)} {meta.arrow}</b>: interval of {html.escape(meta.estimand)}; "
                         f"{html.escape(meta.comparable)}.</li>")
            index = ["generator", "edit", "group"] if rows["edit"].ne("").any() else ["generator", "group"]
            wide = rows.pivot_table(index=index, columns="metric", values="cell", aggfunc="first")
            wide.columns = [meta.shown_label + " " + meta.arrow]
            parts.append(_table(wide.reset_index()))
        parts.append("<ul class='muted'>" + "".join(notes) + "</ul>")
    return parts


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    problems = disagreements(folder.path, skip=(NAME,))
    if problems:
        raise ValueError(f"{folder.path}: the stage files disagree ({'; '.join(problems)}); "
                         "rerun `faceaudit audit` to bring every stage up to date before reporting")
    f = _read(folder)
    metrics, manifest, meta = f["metrics"], folder.manifest, folder.meta
    body = ["<h1>faceaudit report</h1>", _header(folder, manifest, meta)]
    random = _random_weights(folder)
    if random:
        body.append("<div class='warning'><b>Random encoder weights.</b> This audit embedded faces with untrained "
                    f"networks ({html.escape('; '.join(random))}): its numbers say nothing about faces.</div>")
    body.append("<h2>Headline findings</h2>")
    body += [f"<div class='finding'>{s}</div>" for s in findings(metrics, f.get("contrasts_parquet"),
                                                                 f.get("disparity_json"), f.get("selection_summary_parquet"),
                                                                 f.get("faithfulness_parquet"), f.get("perceive_json"))]
    warned = metrics[metrics.warning.fillna("").ne("") & metrics.metric.map(lambda m: catalogue.info(m).rankable)]
    if len(warned):
        body.append("<div class='warning'>Some per-group numbers carry warnings (⚠ in the tables): "
                    + html.escape("; ".join(sorted(set(f"{r.metric} {r.group}: {r.warning}" for r in warned.itertuples()))[:6]))
                    + "</div>")
    body += who_gets_drawn(folder, f)
    rankable = metrics.metric.map(lambda m: catalogue.info(m).rankable)
    body += overview(metrics[rankable], f.get("group_contrasts_parquet"))
    body.append("<details><summary>every per-group table (with edits, prompt metrics and sizes)</summary>")
    body += _metric_tables(metrics[(metrics.group != "all") & rankable])
    body.append("</details>")
    body.append("<h2>Disparities</h2>")
    panels = []
    for name in (catalogue.HEADLINE, "fd_audit", "verification_same_group", "coverage"):
        sub = metrics[(metrics.metric == name) & (metrics.group != "all") & (metrics.edit == "")].copy()
        if len(sub):
            meta_m = catalogue.info(name)
            for col in ("value", "low", "high"):
                sub[col] = sub[col] * meta_m.scale
            sub["label"] = sub["group"] if sub.generator.nunique() == 1 else sub.generator + ": " + sub.group
            panels.append((sub, meta_m.shown_label, f"{'higher' if meta_m.higher_is_better else 'lower'} is better"))
    if panels:
        body.append(_img(figures.forests(panels)))
    disparity = f.get("disparity_json")
    if disparity is not None and "skipped" in disparity:
        body.append(f"<p>Bayesian disparity model not fitted: {html.escape(disparity['skipped'])}.</p>")
    elif disparity is not None:
        post = pd.DataFrame(disparity["groups"]).rename(columns={"mean": "value", "hdi_low": "low", "hdi_high": "high"})
        post["label"] = post["group"]
        body.append(f"<p>Bayesian model: {html.escape(disparity.get('outcome', ''))}. Posterior means with "
                    f"{int(100 * disparity.get('hdi_prob', 0.95))}% HDIs; P(worst) in the table.</p>")
        for problem in disparity.get("diagnostics", {}).get("problems", []):
            body.append(f"<div class='warning'>Disparity fit: {html.escape(problem)}</div>")
        body.append(_img(figures.forest(post, "posterior group means (hierarchical model)", "rate")))
        body.append(_table(post[["group", "n", "observed", "value", "low", "high", "p_worst"]]
                           .rename(columns={"value": "mean", "low": "HDI low", "high": "HDI high"})))
    selection = f.get("selection_summary_parquet")
    if selection is not None:
        evidence = str(selection["evidence"].iloc[0]) if "evidence" in selection else "per-group FD"
        body.append("<h2>Why: the training mix</h2><p>Effective training share per group inferred from "
                    f"{html.escape(evidence)} by the analytical model (90% HDI), and the expected FD of each group "
                    "as its share changes.</p>")
        problems = str(selection["fit_problems"].iloc[0]) if "fit_problems" in selection else ""
        if problems:
            body.append(f"<div class='warning'>Training-mix fit: {html.escape(problems)}</div>")
        shown = pd.DataFrame({
            "generator": selection.generator, "group": selection.group,
            "training share (posterior mean)": selection.share_mean.map("{:.3f}".format),
            "90% HDI": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(selection.share_low, selection.share_high)],
            "P(share < uniform)": selection.p_below_uniform.map("{:.2f}".format),
            "under-represented": selection.under_represented.map({True: "yes", False: "no"})})
        body.append(_table(shown))
        if f.get("share_curves_parquet") is not None:
            body.append(_img(figures.share_curves(f["share_curves_parquet"])))
    if f.get("plan_parquet") is not None:
        plan = f["plan_parquet"]
        budget = f.get("plan_json", {}).get("budget", float("nan"))
        body.append(f"<h2>A better training mix</h2><p>{budget:.0f} extra training images allocated to help the "
                    "worst-served group most, against uniform and proportional allocations (expected FD).</p>")
        shown = pd.DataFrame({
            "group": plan.group, "training share now": plan.share_now.map("{:.3f}".format),
            "extra images": plan.extra_images.round().astype(int), "share planned": plan.share_planned.map("{:.3f}".format),
            **{f"expected FD {k}": plan[f"quality_{k}"].map("{:.3f}".format)
               for k in ("now", "uniform", "proportional", "planned")}})
        body.append(_table(shown))
    body.append("<h2>Sample images</h2>" + _image_grid(folder, manifest))
    body += _image_audit(folder, manifest, f.get("image_metrics"))
    if (~rankable).any():
        body.append("<h2>Appendix: for comparison with the literature</h2><p class='muted'>Numbers that cannot rank "
                    "groups (their finite-sample bias depends on a group's size and spread), kept because papers "
                    "report them. They are not in the findings or the tables above.</p>")
        body += _metric_tables(metrics[(metrics.group != "all") & ~rankable])
    body.append("<h2>Settings and versions</h2>")
    records = {p.stem: json.loads(p.read_text()).get("settings") for p in sorted(folder.file(RECORDS).glob("*.json"))}
    body.append("<details><summary>every stage's settings, the manifest's origin, package versions</summary><pre>"
                + html.escape(json.dumps({"stages": records, "manifest": meta, "versions": _versions()}, indent=2,
                                         default=str)) + "</pre></details>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>faceaudit report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    atomic_write_text(folder.file(REPORT), page)
    return StageResult((REPORT,), {"report": str(folder.file(REPORT).resolve())})


THUMBNAILS = 6  # images shown per group or prompt
THUMBNAIL_PIXELS = 128  # longest side
THUMBNAIL_BYTES = 24_000  # cap per thumbnail: a report with 8 groups and 15 prompts stays ~0.5 MB


def _thumbnail(path, label: str) -> str:
    """A real thumbnail: at most 128 px, a JPEG under 24 kB (quality lowered until it fits),
    labelled with its MIME type; never the original file's bytes."""
    import io

    from faceaudit.files.images import load_rgb

    image = load_rgb(path)
    image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    for quality in (85, 70, 50, 30):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= THUMBNAIL_BYTES:
            break
    return (f'<img alt="{html.escape(label)}" src="data:image/jpeg;base64,'
            f'{base64.b64encode(buffer.getvalue()).decode()}">')


EDIT_SOURCES = 3  # source faces per group in the edits grid


def _image_audit(folder: AuditFolder, manifest: pd.DataFrame, image_metrics: pd.DataFrame | None) -> list[str]:
    """Image audits: the study's figure (a source face beside each of its edits, per group),
    the generated faces farthest from every reference face of their group, and those in
    which no face was found. At most THUMBNAILS (or EDIT_SOURCES rows) per group and kind,
    each a JPEG under THUMBNAIL_BYTES, so even a 10,000-image audit's report stays a few MB."""
    with_files = manifest[manifest.path != ""]
    if with_files.empty:
        return []
    out = [f"<p class='muted'>At most {THUMBNAILS} images per group in each grid below ({EDIT_SOURCES} source faces "
           f"with their edits), each a thumbnail of at most {THUMBNAIL_PIXELS} px.</p>"]
    edits = with_files[with_files.edit != ""]
    if len(edits):
        names = list(dict.fromkeys(edits.edit))
        by_source = {(r.source_id, r.edit): r.path for r in edits.itertuples()}
        out.append("<h2>Edits: each source face beside its edits</h2>")
        for (generator, group), part in with_files[(with_files.edit == "") & with_files.image_id.isin(edits.source_id)
                                                   ].groupby(["generator", "group"], sort=True):
            head = "".join(f"<th>{html.escape(n)}</th>" for n in ["source", *names])
            rows = []
            for source in part.head(EDIT_SOURCES).itertuples():
                cells = [_thumbnail(folder.file(source.path), f"{group}: source")]
                cells += [_thumbnail(folder.file(by_source[(source.image_id, n)]), f"{group}: {n}")
                          if (source.image_id, n) in by_source else "-" for n in names]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            out.append(f"<h3>{html.escape(generator)}: {html.escape(group)}</h3><table class='edits'><tr>{head}</tr>"
                       f"{''.join(rows)}</table>")
    if image_metrics is not None and "nearest_reference" in image_metrics:
        far = image_metrics.merge(with_files[["image_id", "path"]], on="image_id")
        if len(far):
            out.append("<h2>Generated faces farthest from every reference face of their group</h2>")
            for group, part in far.groupby("group", sort=True):
                thumbs = [_thumbnail(folder.file(r.path), f"{group}: distance {r.nearest_reference:.3g}")
                          for r in part.nlargest(THUMBNAILS, "nearest_reference").itertuples()]
                out.append(f"<h3>{html.escape(group)}</h3><div class='grid'>{''.join(thumbs)}</div>")
    if folder.has_role("identity"):
        generated = with_files[with_files.role != "reference"]
        _, found = folder.embeddings("identity", generated.image_id)
        missing = generated[~found]
        if len(missing):
            out.append("<h2>Generated images in which no face was found</h2>")
            for group, part in missing.groupby("group", sort=True):
                thumbs = [_thumbnail(folder.file(p), f"{group}: no face") for p in part.path.head(THUMBNAILS)]
                out.append(f"<h3>{html.escape(group or 'neutral prompts')} ({len(part)})</h3>"
                           f"<div class='grid'>{''.join(thumbs)}</div>")
    return out


def _image_grid(folder: AuditFolder, manifest: pd.DataFrame) -> str:
    with_images = manifest[manifest["path"] != ""]
    if with_images.empty:
        return '<p class="muted">No images in this audit (simulated embeddings).</p>'
    parts = []
    for group, rows in with_images[with_images.role == "generated"].groupby("group"):
        thumbs = [_thumbnail(folder.file(path), group) for path in rows["path"].head(THUMBNAILS)]
        parts.append(f"<h3>{html.escape(group)}</h3><div class='grid'>{''.join(thumbs)}</div>")
    return "".join(parts)


def _header(folder: AuditFolder, manifest: pd.DataFrame, meta: dict) -> str:
    """What was audited: models, encoders, image counts, where, when and by which version."""
    role = manifest["role"]
    generators = sorted(g for g in manifest.loc[role != "reference", "generator"].unique() if g)
    encoders = sorted({f"{e['encoder']} ({r})" for r, e in folder.index.items()})
    counts = [f"{int((role == 'generated').sum())} generated images of {manifest.loc[role == 'generated', 'group'].nunique()} "
              f"groups"]
    if (role == "neutral").any():
        counts.append(f"{int((role == 'neutral').sum())} from {manifest.loc[role == 'neutral', 'prompt'].nunique()} "
                      "neutral prompts")
    counts.append(f"{int((role == 'reference').sum())} reference images")
    rows = [("models", ", ".join(generators) or "-"), ("encoders", "; ".join(encoders) or "-"),
            ("images", "; ".join(counts)), ("source", str(meta.get("source", "pipeline"))),
            ("folder", str(folder.path.resolve())),
            ("written", f"{datetime.date.today().isoformat()} by faceaudit {_versions().get('faceaudit', '?')}")]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='audited'>{cells}</table>"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("faceaudit", "jax", "jaxlib", "numpyro", "arviz", "xarray", "pandas", "numpy", "scipy", "diffusers",
                "open_clip_torch", "torch", "transformers", "dlib-bin"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
