"""The plan stage: where a budget of extra training images helps the worst-served group most.

Under the explain stage's posterior (``training_mix.nc``; or, with ``world``, under a
simulated world's known truth) the planner allocates the budget over groups by gradient
descent on the simplex through the closed forms, minimising the worst group's expected FD
(or maximising the worst same-group verification accuracy), and compares it with the
uniform and the proportional allocations. Writes ``plan.parquet``, ``plan.json`` and
``plan.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import atomic_write_bytes, read_netcdf, write_json
from faceaudit.files.outputs import PLAN, PLAN_FIGURE, PLAN_SUMMARY, TRAINING_MIX
from faceaudit.stages import StageResult
from faceaudit.tables import figures
from faceaudit.tables import training_mix as tables

NAME = "plan"
DESCRIBE = "plan extra training images for the worst-served group"
OBJECTIVES = ("fd", "verification")
BUDGET_SHARE = 0.25  # the audit's default budget: a quarter of the training set again
# Posterior draws the plan averages over (each costs an evaluation of every group per
# planner step; 16 draws put the posterior mean quality within ~1/4 of its spread).
PLAN_DRAWS = 16


@dataclasses.dataclass(frozen=True)
class Settings:
    budget: float | None = None  # extra training images; default BUDGET_SHARE x the training size
    objective: str = "fd"
    generator: str | None = None  # in training_mix.nc (default: the first)
    posterior: str = TRAINING_MIX  # the fitted training-mix model: relative to the folder, or absolute
    world: str | None = None  # plan under a simulated world's truth instead (world.npz)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"the budget must be positive, got {self.budget}")


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return [settings.world or settings.posterior]


def _sources(folder: AuditFolder, settings: Settings):
    if settings.world is not None:
        from faceaudit.tables.simulation import World

        world = World.from_npz(Path(settings.world) if Path(settings.world).is_absolute() else folder.file(settings.world))
        return world.labels, world.world, world.mix, world.identity, float(world.mix.size)
    path = Path(settings.posterior)
    idata = read_netcdf(path if path.is_absolute() else folder.file(settings.posterior), stage="explain",
                        inference_data=True)
    labels, target, mix = tables.posterior_world(idata, settings.generator, max_draws=PLAN_DRAWS)
    identity = tables.posterior_identity(idata) if settings.objective == "verification" else None
    return labels, target, mix, identity, float(idata.constant_data.attrs["training_size"])


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    labels, target, mix, identity, training_size = _sources(folder, settings)
    budget = settings.budget or BUDGET_SHARE * training_size
    table, _ = tables.plan_table(labels, target, mix, budget, objective=settings.objective, identity=identity)
    curves = tables.share_curves(labels, target, mix)
    folder.write_parquet(PLAN, table)
    write_json(folder.file(PLAN_SUMMARY), {"budget": budget, "objective": settings.objective,
                                          "groups": table.to_dict(orient="records")})
    atomic_write_bytes(folder.file(PLAN_FIGURE), figures.plan(table, curves, settings.objective))
    return StageResult((PLAN, PLAN_SUMMARY, PLAN_FIGURE), {"table": table, "budget": budget})
