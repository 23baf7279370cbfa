"""The metric catalogue: every number faceaudit reports, described once.

Each entry (``core.MetricInfo``) says what the number is, which direction is better, its
range, how to show it, *what its interval is an interval of* (the estimand), and whether
groups can be ranked by it at real audit sizes and why. The distribution and diversity
metrics carry their entries on their classes (``core.metrics.REGISTRY``); the per-image
means, accuracies and rates computed by the measure stage are described here. The measure
stage, ``faceaudit metrics``, the report and the CLI tables all read this one table.
"""

from __future__ import annotations

import functools
import math

from faceaudit.metric_info import PROPORTION as _PROPORTION
from faceaudit.metric_info import MetricInfo

HEADLINE = "mmd2"  # the distribution-shift number the findings rank groups by
ALL = "all"  # the group of all rows together


@functools.cache
def _embedding() -> dict[str, MetricInfo]:
    # Imported when first asked for: the report and the command line's help read this module
    # without the numerics (jax), and most of them never need these entries.
    from faceaudit.core import metrics

    return {info.name: info for metric in metrics.REGISTRY for info in metric.infos()}


_MEASURED: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("verification_same_group", "verification accuracy, same-group impostors", True, "identity",
               "balanced accuracy over the group's genuine and same-group impostor pairs of named identities "
               "(interval: identity-cluster bootstrap)", "an accuracy: comparable across sizes", _PROPORTION),
    MetricInfo("verification_any_group", "verification accuracy, any-group impostors", True, "identity",
               "balanced accuracy with impostors from any group (identity-cluster bootstrap)",
               "an accuracy: comparable across sizes", _PROPORTION),
    MetricInfo("face_not_found", "face-detection failure rate", False, "identity",
               "the share of the group's generated images with no detected face (Wilson interval)",
               "a proportion: comparable across sizes", _PROPORTION),
    MetricInfo("clip_score", "CLIP score: cos(image, prompt)", True, "faithfulness",
               "mean over the group's images (jackknife t interval)", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("target_clip_score", "CLIP score of the edit: cos(edit, target caption)", True, "faithfulness",
               "mean over the group's edits", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("directional_similarity", "directional CLIP similarity", True, "faithfulness",
               "mean over edits of cos(I_edit - I_src, T_target - T_src), unit-normalised features "
               "(InstructPix2Pix, the study's definition)", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("image_similarity", "CLIP image-image similarity", True, "faithfulness",
               "mean over edits of cos(I_src, I_edit)", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("edit_phrase_score", "CLIP edit-phrase score: cos(edit, phrase)", True, "faithfulness",
               "mean over edits", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("dino_similarity", "DINOv2 image-image similarity", True, "faithfulness",
               "mean over edits of cos(DINOv2(src), DINOv2(edit))", "a mean: comparable across sizes", (-1.0, 1.0)),
    MetricInfo("l1_distance", "L1 pixel distance source-edit", False, "faithfulness",
               "mean over edits of mean |src - edit| (pixels in [0, 1], MagicBrush)", "a mean: comparable across sizes",
               (0.0, 1.0)),
    MetricInfo("l2_distance", "L2 pixel distance source-edit", False, "faithfulness",
               "mean over edits of mean (src - edit)^2 (pixels in [0, 1], MagicBrush)",
               "a mean: comparable across sizes", (0.0, 1.0)),
    MetricInfo("identity_distance", "face-descriptor distance source-edit", False, "faithfulness",
               "mean over edits of the dlib descriptor distance (< 0.6: same person)", "a mean: comparable across sizes",
               (0.0, math.inf)),
    MetricInfo("identity_preserved", "share of edits keeping the identity", True, "faithfulness",
               "the share of edits whose face descriptor stays within 0.6 (Wilson interval)",
               "a proportion: comparable across sizes", _PROPORTION),
)}


def __getattr__(name: str):
    """``CATALOGUE`` (every entry), ``EMBEDDING_METRICS`` (what ``faceaudit metrics`` and
    the measure stage compute from two embedding sets) and ``DEFAULT_EMBEDDING_METRICS``
    (by default only the numbers that compare groups fairly: ask for the others, such as
    the raw and first-order corrected FD, with --metrics)."""
    if name == "CATALOGUE":
        return {**_embedding(), **_MEASURED}
    if name == "EMBEDDING_METRICS":
        return tuple(_embedding())
    if name == "DEFAULT_EMBEDDING_METRICS":
        return tuple(n for n, entry in _embedding().items() if entry.default)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def info(name: str) -> MetricInfo:
    if name in _MEASURED:
        return _MEASURED[name]
    if name not in _embedding():
        raise ValueError(f"unknown metric {name!r}; known: {sorted({*_MEASURED, *_embedding()})}")
    return _embedding()[name]
