"""Figures: arrays and labels in, inline SVG text out for the report (sharp at any zoom, its
labels searchable text) and PNG bytes for files (matplotlib's Agg backend, chosen when a
figure is drawn, never at import)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def svg(fig) -> str:
    """The figure as an ``<svg>`` element to put inline in HTML: text kept as text (and
    XML-escaped by matplotlib), no creation date and fixed element ids, so the same figure
    gives the same bytes on every run."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "faceaudit"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _forest(ax, frame: pd.DataFrame, title: str, xlabel: str) -> None:
    frame = frame.sort_values("value")
    y = np.arange(len(frame))
    ax.hlines(y, frame["low"], frame["high"], color="#1f3b5c", lw=2)
    ax.plot(frame["value"], y, "o", color="#b42318")
    ax.set_yticks(y, frame["label"], fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def forest(frame: pd.DataFrame, title: str, xlabel: str) -> str:
    """Point and interval per row (``label``, ``value``, ``low``, ``high``), sorted by value."""
    fig, ax = _pyplot().subplots(figsize=(7, 0.32 * len(frame) + 1.2))
    _forest(ax, frame, title, xlabel)
    return svg(fig)


def forests(panels: list[tuple[pd.DataFrame, str, str]]) -> str:
    """Small multiples: one forest panel per ``(frame, title, xlabel)``, two per row."""
    plt = _pyplot()
    cols = min(2, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    height = max(len(frame) for frame, _, _ in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, (0.26 * height + 1.3) * rows), squeeze=False)
    for ax, (frame, title, xlabel) in zip(axes.flat, panels):
        _forest(ax, frame, title, xlabel)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return svg(fig)


def _curves(ax, curves: pd.DataFrame) -> None:
    for group, c in curves.groupby("group", sort=False):
        ax.plot(100 * c["share"], c["fd"], label=group)
    ax.set_xlabel("training share of the group (%)")
    ax.set_ylabel("expected FD of the group")
    ax.set_yscale("log")
    ax.legend(fontsize=7)


def share_curves(curves: pd.DataFrame) -> str:
    """Expected FD of each group as its training share changes (others rescaled)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    _curves(ax, curves)
    ax.set_title("quality versus share (posterior mean world)")
    return svg(fig)


def plan(table: pd.DataFrame, curves: pd.DataFrame, objective: str = "fd") -> bytes:
    """Two panels: quality versus share per group; quality now / planned / alternatives."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _curves(left, curves)
    left.set_title("quality versus share (others rescaled)")
    labels = list(table["group"])
    x = np.arange(len(labels))
    width = 0.2
    for i, col in enumerate(["quality_now", "quality_uniform", "quality_proportional", "quality_planned"]):
        right.bar(x + (i - 1.5) * width, table[col], width, label=col.replace("quality_", ""))
    right.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    right.set_ylabel("expected FD" if objective == "fd" else "same-group verification accuracy")
    right.set_title("per-group quality: now and after adding the budget")
    right.legend(fontsize=7)
    fig.tight_layout()
    return png(fig, dpi=120)


def depicted_heatmap(frame: pd.DataFrame, title: str) -> str:
    """Requested groups (rows) by depicted category (columns): the corrected share of each,
    annotated with its value (``group``, ``depicted``, ``share`` columns)."""
    plt = _pyplot()
    table = frame.pivot_table(index="group", columns="depicted", values="share", sort=False)
    fig, ax = plt.subplots(figsize=(0.75 * table.shape[1] + 2.8, 0.42 * table.shape[0] + 1.6))
    image = ax.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.55 else "#1d2733")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    ax.set_xlabel("depicted (corrected)")
    ax.set_ylabel("requested")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share")
    return svg(fig)


def prompt_mixes(frame: pd.DataFrame, title: str) -> str:
    """One small panel per prompt: each category's share with its interval (bars), the raw
    classifier share (x) and the reference mix (|) (``prompt``, ``category``, ``share``,
    ``low``, ``high``, ``raw_share``, ``reference`` columns)."""
    plt = _pyplot()
    prompts = list(dict.fromkeys(frame["prompt"]))
    categories = list(dict.fromkeys(frame["category"]))
    cols = min(3, len(prompts))
    rows = int(np.ceil(len(prompts) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 0.26 * len(categories) * rows + 1.1 * rows),
                             squeeze=False, sharex=True)
    y = np.arange(len(categories))
    for ax, prompt in zip(axes.flat, prompts):
        p = frame[frame["prompt"] == prompt].set_index("category").reindex(categories)
        ax.barh(y, p["share"], color="#8fb3d9")
        ax.errorbar(p["share"], y, xerr=[p["share"] - p["low"], p["high"] - p["share"]], fmt="none", ecolor="#1f3b5c",
                    lw=1.2, capsize=2)
        ax.plot(p["raw_share"], y, "x", color="#b42318", ms=5, label="raw classifier share")
        ax.plot(p["reference"], y, "|", color="#1d2733", ms=11, mew=2, label="reference mix")
        ax.set_yticks(y, categories, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(prompt.removeprefix("a photo of the face of "), fontsize=8)
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(prompts):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return svg(fig)
