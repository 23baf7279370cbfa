"""The metric catalogue: every number faceaudit reports, described once.

Each entry says what the number is (label), which direction is better, its range (so an
interval never leaves it), how to show it, *what its interval is an interval of* (the
estimand), and whether groups can be ranked by it at real audit sizes and why. The
measure stage, ``faceaudit metrics``, the report and the CLI tables all read this one
table; nothing else names metrics.
"""

from __future__ import annotations

import dataclasses
import math

HEADLINE = "mmd2"  # the distribution-shift number the findings rank groups by


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    kind: str  # distribution | diversity | identity | faithfulness
    estimand: str
    comparable: str  # how groups of different sizes compare (shown beside the number)
    bounds: tuple[float, float] = (-math.inf, math.inf)
    scale: float = 1.0  # display multiplier (KID is shown x1e3, as is customary)
    rankable: bool = True  # False: shown for reference, never used to rank groups

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def shown_label(self) -> str:
        return self.label + (f" (x{self.scale:g})" if self.scale != 1.0 else "")

    def clip(self, low: float, high: float) -> tuple[float, float]:
        lo, hi = self.bounds
        return max(low, lo), min(high, hi)


_COMMON = "compared at a common size: the smallest group's, averaged over random subsets of larger groups"
_PROPORTION = (0.0, 1.0)

CATALOGUE: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("mmd2", "KID: MMD^2, cubic kernel", False, "distribution",
               "the population MMD^2 between the group's generated and reference distributions",
               "unbiased at every size (U-statistic)", scale=1e3),
    MetricInfo("fd_audit", "FD in the audit space", False, "distribution",
               "the FD between the group's two distributions projected on the audit space "
               "(top principal directions of a held-out half of the reference faces, measured on the other "
               "half; k with every group >= 10 k)",
               "bias-corrected where the correction holds (n >= 10 k); residual bias small against the interval"),
    MetricInfo("fd_unbiased", "FD, first-order bias-corrected", False, "distribution",
               "the full-space FD between the group's two distributions",
               "biased where n < 10 d (the correction is first-order): ranks groups only when every group is large",
               rankable=False),
    MetricInfo("fd", "FD, raw", False, "distribution",
               "the expected raw FD at the group's own sizes (includes the finite-sample bias)",
               "biased: grows as 1/n; for comparison with the literature only, not across groups", rankable=False),
    MetricInfo("cmmd", "CMMD: MMD^2, Gaussian kernel", False, "distribution",
               "the population MMD^2 (Gaussian kernel, x1000 as CMMD reports it)", "unbiased at every size"),
    MetricInfo("precision", "precision", True, "distribution",
               "expected precision of m generated vs m reference faces (m: the common size)", _COMMON, _PROPORTION),
    MetricInfo("recall", "recall", True, "distribution",
               "expected recall at the common sizes", _COMMON, _PROPORTION),
    MetricInfo("density", "density", True, "distribution",
               "expected density at the common sizes", _COMMON, (0.0, math.inf)),
    MetricInfo("coverage", "coverage", True, "distribution",
               "expected coverage at the common sizes", _COMMON, _PROPORTION),
    MetricInfo("vendi", "Vendi diversity", True, "diversity",
               "expected Vendi score (cosine) of m generated faces (m: the common size)", _COMMON, (1.0, math.inf)),
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

DISTRIBUTION_METRICS = ("mmd2", "fd_audit", "fd_unbiased", "fd", "precision", "recall", "density", "coverage")
DIVERSITY_METRICS = ("vendi",)
# What ``faceaudit metrics`` and the measure stage compute from two embedding sets.
EMBEDDING_METRICS = (*DISTRIBUTION_METRICS, "cmmd", *DIVERSITY_METRICS)
# By default only numbers that compare groups fairly (the raw and first-order corrected FD
# carry a size- and spread-dependent bias at audit sizes, and were most of the time at real
# sizes): ask for them with --metrics ...,fd,fd_unbiased.
DEFAULT_EMBEDDING_METRICS = tuple(m for m in (*DISTRIBUTION_METRICS, *DIVERSITY_METRICS) if CATALOGUE[m].rankable)
ALL = "all"  # the group of all rows together


def info(name: str) -> MetricInfo:
    if name not in CATALOGUE:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(CATALOGUE)}")
    return CATALOGUE[name]
