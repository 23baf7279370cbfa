"""Figures: arrays and labels in, PNG bytes out (matplotlib's Agg backend, chosen when a
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


def forest(frame: pd.DataFrame, title: str, xlabel: str) -> bytes:
    """Point and interval per row (``label``, ``value``, ``low``, ``high``), sorted by value."""
    plt = _pyplot()
    frame = frame.sort_values("value")
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(frame) + 1.2))
    y = np.arange(len(frame))
    ax.hlines(y, frame["low"], frame["high"], color="#1f3b5c", lw=2)
    ax.plot(frame["value"], y, "o", color="#b42318")
    ax.set_yticks(y, frame["label"])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def _curves(ax, curves: pd.DataFrame) -> None:
    for group, c in curves.groupby("group", sort=False):
        ax.plot(100 * c["share"], c["fd"], label=group)
    ax.set_xlabel("training share of the group (%)")
    ax.set_ylabel("expected FD of the group")
    ax.set_yscale("log")
    ax.legend(fontsize=7)


def share_curves(curves: pd.DataFrame) -> bytes:
    """Expected FD of each group as its training share changes (others rescaled)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    _curves(ax, curves)
    ax.set_title("quality versus share (posterior mean world)")
    return png(fig)


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
