"""The disparity stage: who is served worse, by how much, how sure.

In an audit folder it fits the hierarchical Bayesian model (``faceaudit.models.disparity``)
to the per-image outcome of the measure stage (``image_metrics.parquet``: is a generated
face inside the real manifold of its group, with equal-size reference balls for every
group) and writes ``posterior.nc`` (arviz InferenceData) and ``disparity.json`` (group
means with HDIs, P(worst), contrasts, the classical tests, predictive checks and
diagnostics). ``faceaudit disparity TABLE --outcome ...`` runs the same ``analyse`` on a
survey or any tidy table and writes the same two files where it is told.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import write_json, write_netcdf
from faceaudit.files.outputs import DISPARITY_POSTERIOR as POSTERIOR
from faceaudit.files.outputs import DISPARITY_SUMMARY as SUMMARY
from faceaudit.stages import FIT_CHAINS, FIT_DRAWS, StageResult
from faceaudit.tables import disparity as tables

NAME = "disparity"
DESCRIBE = "Bayesian disparity model of per-image on-manifold rates"
OUTCOME = "share of generated faces on the real manifold of their group (k-NN precision per image)"


@dataclasses.dataclass(frozen=True)
class Settings:
    draws: int = FIT_DRAWS  # posterior draws per chain (and as many warm-up steps)
    chains: int = FIT_CHAINS
    seed: int = 0


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return ["image_metrics.parquet"]


def analyse(frame, spec: tables.DisparitySpec, source: str):
    """Prepared data -> ``(InferenceData, summary dict)``; the one path of every disparity fit.

    Raises:
        ValueError: naming the table and column (missing columns or values, a constant
            outcome: nothing to model).
    """
    data = tables.PreparedData(frame, spec, source=source)
    idata = tables.fit(data)
    return idata, tables.summary(idata, data)


def write(idata, summary: dict, json_path: Path | None, posterior_path: Path | None) -> list[Path]:
    written = []
    if posterior_path is not None:
        write_netcdf(posterior_path, idata)
        written.append(posterior_path)
    if json_path is not None:
        write_json(json_path, summary)
        written.append(json_path)
    return written


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    frame = folder.read_parquet("image_metrics.parquet", stage="measure")
    spec = tables.DisparitySpec(outcome="on_manifold", group=tuple(folder.group_columns), success="yes",
                                attribute=None, item=None, draws=settings.draws, chains=settings.chains,
                                seed=settings.seed)
    try:
        idata, summary = analyse(frame, spec, source=str(folder.file("image_metrics.parquet")))
    except tables.NothingToModel as err:
        # Every image on the manifold (or none): a result, stated in the report.
        folder.file(POSTERIOR).unlink(missing_ok=True)
        write_json(folder.file(SUMMARY), {"skipped": str(err)})
        return StageResult((SUMMARY,), {"skipped": str(err)})
    summary["outcome"] = OUTCOME
    write(idata, summary, folder.file(SUMMARY), folder.file(POSTERIOR))
    return StageResult((POSTERIOR, SUMMARY), summary)
