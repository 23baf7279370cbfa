"""The HTML report: one self-contained file a person reads, headline findings first.

Reads the stage files of an audit folder (``metrics.parquet``, ``disparity.json``,
``selection_summary.parquet``, ``share_curves.parquet``, the manifest) and never computes
statistics itself; figures are embedded as base64 PNG, so the file can be mailed around.
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from importlib import metadata
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from faceaudit.io import atomic_write_text
from faceaudit.measure_audit import HIGHER_IS_BETTER, METRIC_LABELS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2733}
h1{font-size:1.7em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
.finding{background:#f6f8fa;border-left:4px solid #b42318;padding:.6em 1em;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.muted{color:#57606a;font-size:.9em}.grid img{width:96px;height:96px;object-fit:cover;margin:2px}
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _forest(frame: pd.DataFrame, title: str, xlabel: str) -> str:
    frame = frame.sort_values("value")
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(frame) + 1.2))
    y = np.arange(len(frame))
    # Interval and point drawn separately: a reflected (basic) bootstrap interval need not
    # contain the plug-in value when the statistic is biased or skewed.
    ax.hlines(y, frame["low"], frame["high"], color="#1f3b5c", lw=2)
    ax.plot(frame["value"], y, "o", color="#b42318")
    ax.set_yticks(y, frame["label"])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, escape=True)


def _findings(metrics: pd.DataFrame, disparity: dict | None, selection: pd.DataFrame | None) -> list[str]:
    out = []
    fd = metrics[(metrics.metric == "fd_unbiased") & (metrics.group != "all")]
    if len(fd):
        worst, best = fd.loc[fd.value.idxmax()], fd.loc[fd.value.idxmin()]
        sure = "its interval lies above the best group's" if worst.low > best.high else "the intervals overlap"
        out.append(f"<b>Distribution shift is worst for {html.escape(worst.group)}</b>: bias-corrected FD "
                   f"{worst.value:.3f} [{worst.low:.3f}, {worst.high:.3f}] against {best.value:.3f} for "
                   f"{html.escape(best.group)} (difference {worst.value - best.value:.3f}; {sure}).")
    ver = metrics[metrics.metric == "verification_same_group"]
    if len(ver):
        worst, best = ver.loc[ver.value.idxmin()], ver.loc[ver.value.idxmax()]
        out.append(f"<b>Generated identities are hardest to tell apart for {html.escape(worst.group)}</b>: same-group "
                   f"verification accuracy {worst.value:.3f} [{worst.low:.3f}, {worst.high:.3f}] against "
                   f"{best.value:.3f} for {html.escape(best.group)}.")
    if selection is not None and len(selection):
        flagged = selection[selection.under_represented]
        if len(flagged):
            names = ", ".join(f"{html.escape(r.group)} (share {r.share_mean:.3f} [{r.share_low:.3f}, {r.share_high:.3f}])"
                              for r in flagged.itertuples())
            out.append(f"<b>The training-mix model points to under-representation</b> of {names}: "
                       f"each with posterior probability >= 0.9 of less than a uniform share.")
        else:
            out.append("The training-mix model flags no group as under-represented with probability >= 0.9.")
    elif disparity is not None and "groups" in disparity:
        g = max(disparity["groups"], key=lambda r: r["p_worst"])
        out.append(f"<b>{html.escape(g['group'])}</b> is the worst group with posterior probability {g['p_worst']:.2f}.")
    return out[:3]


def _image_grid(audit_dir: Path, manifest: pd.DataFrame) -> str:
    with_images = manifest[manifest["path"] != ""]
    if with_images.empty:
        return '<p class="muted">No images in this audit (simulated embeddings).</p>'
    parts = []
    for group, rows in with_images[with_images.role == "generated"].groupby("group"):
        thumbs = []
        for path in rows["path"].head(6):
            data = (audit_dir / path).read_bytes()
            thumbs.append(f'<img alt="{html.escape(group)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')
        parts.append(f"<h3>{html.escape(group)}</h3><div class='grid'>{''.join(thumbs)}</div>")
    return "".join(parts)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("faceaudit", "jax", "jaxlib", "numpyro", "arviz", "xarray", "pandas", "numpy", "scipy", "diffusers",
                "open_clip_torch", "torch", "dlib-bin"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_report(audit_dir: str | Path, settings: dict | None = None) -> Path:
    """Write ``report.html`` from the stage files of ``audit_dir``; return its path."""
    from faceaudit.store import read_manifest

    audit_dir = Path(audit_dir)
    metrics = pd.read_parquet(audit_dir / "metrics.parquet")
    manifest, meta = read_manifest(audit_dir / "manifest.parquet")
    disparity = json.loads((audit_dir / "disparity.json").read_text()) if (audit_dir / "disparity.json").is_file() else None
    selection = pd.read_parquet(audit_dir / "selection_summary.parquet") if (audit_dir / "selection_summary.parquet").is_file() else None
    curves = pd.read_parquet(audit_dir / "share_curves.parquet") if (audit_dir / "share_curves.parquet").is_file() else None

    body = [f"<h1>faceaudit report</h1><p class='muted'>{html.escape(str(audit_dir.resolve()))} &middot; "
            f"{len(manifest)} images ({int((manifest.role == 'generated').sum())} generated, "
            f"{int((manifest.role == 'reference').sum())} reference) &middot; source: {html.escape(str(meta.get('source', 'pipeline')))}</p>"]
    body.append("<h2>Headline findings</h2>")
    body += [f"<div class='finding'>{f}</div>" for f in _findings(metrics, disparity, selection)]

    body.append("<h2>Per-group metrics</h2><p class='muted'>Value with its bootstrap interval "
                f"({int(100 * metrics.confidence.iloc[0])}%). Arrows: which direction is better.</p>")
    wide = metrics[metrics.group != "all"].copy()
    wide["cell"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(wide.value, wide.low, wide.high)]
    wide["metric"] = [METRIC_LABELS.get(m, m) + (" ↑" if m in HIGHER_IS_BETTER else " ↓") for m in wide.metric]
    pivot = wide.pivot_table(index=["generator", "group"], columns="metric", values="cell", aggfunc="first")
    pivot.columns.name = None
    body.append(_table(pivot.reset_index()))

    body.append("<h2>Disparities</h2>")
    for metric, xlabel in (("fd_unbiased", "bias-corrected FD to the reference (lower is better)"),
                           ("verification_same_group", "same-group verification accuracy (higher is better)"),
                           ("coverage", "coverage of the reference (higher is better)")):
        sub = metrics[(metrics.metric == metric) & (metrics.group != "all")].copy()
        if len(sub):
            sub["label"] = sub["group"] if sub.generator.nunique() == 1 else sub.generator + ": " + sub.group
            body.append(_forest(sub, METRIC_LABELS[metric], xlabel))
    if disparity is not None and "skipped" in disparity:
        body.append(f"<p>Bayesian disparity model not fitted: {html.escape(disparity['skipped'])}.</p>")
    elif disparity is not None:
        post = pd.DataFrame(disparity["groups"]).rename(columns={"mean": "value", "hdi_low": "low", "hdi_high": "high"})
        post["label"] = post["group"]
        body.append(f"<p>Bayesian model: {html.escape(disparity.get('outcome', ''))}. Posterior means with "
                    f"95% HDIs; P(worst) in the table.</p>")
        body.append(_forest(post, "posterior group means (hierarchical model)", "rate"))
        body.append(_table(post[["group", "n", "observed", "value", "low", "high", "p_worst"]]
                           .rename(columns={"value": "mean", "low": "HDI low", "high": "HDI high"})))

    if selection is not None:
        evidence = str(selection["evidence"].iloc[0]) if "evidence" in selection else "per-group FD"
        body.append("<h2>Why: the training mix</h2><p>Effective training share per group inferred from "
                    f"{html.escape(evidence)} by the analytical model (90% HDI), and the expected FD of each group "
                    "as its share changes.</p>")
        body.append(_table(selection[["generator", "group", "share_mean", "share_low", "share_high", "p_below_uniform",
                                      "under_represented"]]))
        if curves is not None:
            fig, ax = plt.subplots(figsize=(7, 4))
            for group, c in curves.groupby("group"):
                ax.plot(100 * c["share"], c["fd"], label=group)
            ax.set_xlabel("training share of the group (%)")
            ax.set_ylabel("expected FD (posterior mean world)")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
            ax.set_title("quality versus share")
            body.append(_png(fig))

    body.append("<h2>Sample images</h2>" + _image_grid(audit_dir, manifest))
    body.append("<h2>Settings and versions</h2>")
    body.append("<pre>" + html.escape(json.dumps({"settings": settings or {}, "manifest": meta, "versions": _versions()},
                                                 indent=2, default=str)) + "</pre>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>faceaudit report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    path = audit_dir / "report.html"
    atomic_write_text(path, page)
    return path


def headline_findings(audit_dir: str | Path) -> list[str]:
    """The report's headline findings as plain text (for the terminal)."""
    import re

    audit_dir = Path(audit_dir)
    metrics = pd.read_parquet(audit_dir / "metrics.parquet")
    disparity = json.loads((audit_dir / "disparity.json").read_text()) if (audit_dir / "disparity.json").is_file() else None
    sel = audit_dir / "selection_summary.parquet"
    selection = pd.read_parquet(sel) if sel.is_file() else None
    return [html.unescape(re.sub("<[^>]+>", "", f)) for f in _findings(metrics, disparity, selection)]
