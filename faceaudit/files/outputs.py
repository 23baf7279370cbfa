"""Every file of an audit folder, named once: its name, the stage that writes it and what it
holds. The stages import their file names from here, ``AuditFolder.read`` finds the writing
stage (for an error that says which stage to redo) and the report reads the table of what
to show, so a renamed or added file is one line here.
"""

from __future__ import annotations

from typing import NamedTuple

from faceaudit.files.manifest import MANIFEST
from faceaudit.files.store import INDEX


class StageFile(NamedTuple):
    name: str
    stage: str  # the stage that writes it (the manifest: simulate, generate or ingest; the index: embed or simulate)
    what: str


SPREADS, CLASSIFIER_LABELS, TRUTH, WORLD = "identity_spreads.json", "classifier_labels.parquet", "truth.json", "world.npz"
PERCEIVED, FAITHFULNESS, REPRESENTATION = "perceived.parquet", "faithfulness.parquet", "representation.parquet"
REPRESENTATION_POSTERIOR, PERCEIVE_SUMMARY = "representation.nc", "perceive.json"
METRICS, IMAGE_METRICS, PROMPT_METRICS = "metrics.parquet", "image_metrics.parquet", "prompt_metrics.parquet"
AUDIT_SPACE, CONTRASTS, GROUP_CONTRASTS = "audit_space.npz", "contrasts.parquet", "group_contrasts.parquet"
DISPARITY_POSTERIOR, DISPARITY_SUMMARY = "posterior.nc", "disparity.json"
TRAINING_MIX, TRAINING_MIX_SUMMARY, SHARE_CURVES = "training_mix.nc", "training_mix_summary.parquet", "share_curves.parquet"
PLAN, PLAN_SUMMARY, PLAN_FIGURE, REPORT = "plan.parquet", "plan.json", "plan.png", "report.html"

_FILES = (
    StageFile(MANIFEST, "simulate", "one row per image: path, role, group labels, prompt, seed, edit"),
    StageFile(INDEX, "embed", "which encoder and preprocessing serve each embedding role"),
    StageFile(SPREADS, "simulate", "real within/between identity variances (for explain)"),
    StageFile(CLASSIFIER_LABELS, "simulate", "the simulated classifier's perceived labels"),
    StageFile(TRUTH, "simulate", "the simulated world's answer key (never read by inference)"),
    StageFile(WORLD, "simulate", "the simulated world's arrays (faceaudit plan --world)"),
    StageFile(PERCEIVED, "perceive", "one row per image and attribute: the perceived category"),
    StageFile(FAITHFULNESS, "perceive", "requested vs depicted group, corrected for the classifier"),
    StageFile(REPRESENTATION, "perceive", "whom each neutral prompt draws, against the reference mix"),
    StageFile(REPRESENTATION_POSTERIOR, "perceive", "the representation model's posterior"),
    StageFile(PERCEIVE_SUMMARY, "perceive", "classifier accuracy, sensitivity, diagnostics, faces not found"),
    StageFile(METRICS, "measure", "per group and metric: value, interval, estimand"),
    StageFile(IMAGE_METRICS, "measure", "per image: CLIP score, nearest reference face"),
    StageFile(PROMPT_METRICS, "measure", "per prompt: faithfulness means"),
    StageFile(AUDIT_SPACE, "measure", "the audit space: basis, centre, reference counts"),
    StageFile(CONTRASTS, "measure", "pairwise group differences with intervals"),
    StageFile(GROUP_CONTRASTS, "measure", "every group against the best one"),
    StageFile(DISPARITY_POSTERIOR, "disparity", "the disparity model's posterior"),
    StageFile(DISPARITY_SUMMARY, "disparity", "group means, P(worst), contrasts, diagnostics"),
    StageFile(TRAINING_MIX, "explain", "the training-mix model's posterior"),
    StageFile(TRAINING_MIX_SUMMARY, "explain", "each group's training share with its interval"),
    StageFile(SHARE_CURVES, "explain", "FD against training share, per group"),
    StageFile(PLAN, "plan", "the planned extra images per group beside the alternatives"),
    StageFile(PLAN_SUMMARY, "plan", "the plan's budget and objective"),
    StageFile(PLAN_FIGURE, "plan", "the plan's figure"),
    StageFile(REPORT, "report", "the report"),
)
FILES: dict[str, StageFile] = {f.name: f for f in _FILES}
