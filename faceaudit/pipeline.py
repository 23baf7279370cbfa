"""The whole audit: the stage list, stage records, skipping, resuming and ``--dry-run``.

``faceaudit audit`` runs (simulate | generate -> embed | ingest -> embed) -> measure ->
disparity -> explain -> plan -> report in one folder. Every stage goes through
``run_stage``, as every single-stage command does: it runs the stage module's ``run`` and
then writes the stage's record (``files/records.py``) last. A stage is skipped only when
its record matches (same version, settings, input and output hashes); otherwise it runs,
and the stages after it see changed inputs and run too. A stage killed half-way has no
record and is redone; its atomic writes never leave a half-written file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from faceaudit.files import records
from faceaudit.files.folder import AuditFolder
from faceaudit.files.lock import folder_lock
from faceaudit.stages import EXPLAIN_DRAWS, FIT_CHAINS, FIT_DRAWS, StageResult
from faceaudit.stages.embed import DEFAULT_CLIP, encoders_for

try:
    VERSION = metadata.version("faceaudit")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    VERSION = "0+unknown"


def _option(default, help: str, *, flag: str | None = None, metavar: str | None = None, argument: bool = False):
    """An audit option, declared once: ``faceaudit audit`` is generated from these fields
    (``faceaudit.cli.options``), and the stage commands share their help and defaults."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar,
                                                        "argument": argument})


METRICS_HELP = ("Comma-separated distribution metrics (default: those that rank groups fairly; `--metrics list` "
                "prints every metric and what it estimates).")


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """Every option of ``faceaudit audit``, in the order ``--help`` lists them, with the
    rules between them; checked when built, before any work (in ``--dry-run`` too)."""

    spec: Path | None = _option(None, "Audit spec: generate with real models.", metavar="[SPEC]", argument=True)
    out: Path = _option(Path("faceaudit-out"), "Output folder (stage files, report.html).", flag="--out")
    images: Path | None = _option(None, "Audit a folder of your own images (with --manifest).")
    manifest: Path | None = _option(None, "CSV/Parquet: path, role, group columns of --images.")
    clip: str = _option(DEFAULT_CLIP, "Images without a spec: open_clip ARCHITECTURE[:PRETRAINED] (a tag, a "
                                      "checkpoint path; 'random' only for tests).")
    training_size: float | None = _option(None, "Generator's training images (enables explain and plan on real audits).")
    simulate_config: Path | None = _option(None, "TOML file with a [simulate] table for the simulated world.")
    plan_budget: float | None = _option(None, "Extra training images to plan (default: a quarter of the training size).")
    seed: int = _option(0, "Seed of every stage (subsets, resampling, samplers).")
    draws: int | None = _option(None, "Posterior draws (and warm-up steps) per chain of the fits "
                                      f"[default: {FIT_DRAWS} disparity, {EXPLAIN_DRAWS} explain].")
    chains: int = _option(FIT_CHAINS, "Chains per posterior fit.")
    interval: str = _option("jackknife", "Interval of the distribution metrics: jackknife (default; no resampling "
                                         "duplicates), or the bootstrap's basic, percentile, bca.")
    bootstrap: int = _option(0, "Bootstrap replicates (bootstrap intervals only; at least 20).")
    metrics: tuple[str, ...] | None = _option(None, METRICS_HELP, flag="--metrics")
    force: tuple[str, ...] = _option((), "Redo this stage (repeat for more; 'all' for every one).", flag="--force")
    ray: str | None = _option(None, "Shard generate and embed over Ray actors: 'local' starts Ray here, 'auto' or "
                                    "ray://head:10001 joins a cluster (default: the spec's [ray]; needs faceaudit[ray]).",
                              flag="--ray", metavar="ADDRESS")
    ray_workers: int | None = _option(None, "Ray actors, one model each (default: the spec's [ray].workers).")
    allow_outside_images: bool = _option(False, "With --images: also read manifest paths outside the images folder "
                                                "(refused by default: their pixels end up in the report).",
                                         flag="--allow-outside-images")

    def __post_init__(self):
        for name, minimum in (("draws", 1), ("chains", 1), ("seed", 0), ("bootstrap", 0)):
            value = getattr(self, name)
            if name == "draws" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")
        if self.ray_workers is not None and self.ray_workers < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {self.ray_workers}")
        for name in ("training_size", "plan_budget"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        check_sources(self.spec, self.images, self.manifest)

    def no_effect(self) -> list[str]:
        """Options given that do nothing in this mode (said before any work)."""
        from faceaudit.tables.metrics import unused_bootstrap

        out = unused_bootstrap(self.interval, self.bootstrap)
        if self.images is None and self.clip != DEFAULT_CLIP:
            out.append("--clip has no effect without --images (a spec names its encoders; a simulated world has none)")
        if self.allow_outside_images and self.images is None:
            out.append("--allow-outside-images has no effect without --images")
        if self.spec is None and (self.ray is not None or self.ray_workers is not None) and self.images is None:
            out.append("--ray has no effect on a simulated world (nothing to generate or embed)")
        return out


def check_sources(spec, images, manifest) -> None:
    """Where the images come from: a spec, or --images with --manifest, or neither (a
    simulated world, or a folder already holding them)."""
    if (images is None) != (manifest is None):
        raise ValueError("--images and --manifest go together")
    if spec is not None and images is not None:
        raise ValueError("pass a spec or --images, not both")


@dataclasses.dataclass(frozen=True)
class Step:
    """One stage of this audit, with its settings."""

    module: object
    settings: object

    @property
    def name(self) -> str:
        return self.module.NAME


def steps(settings: AuditSettings) -> list[Step]:
    """The stages of this audit: simulated, from a spec, or from the user's images."""
    from faceaudit.stages import disparity, embed, explain, generate, ingest, measure, perceive, plan, report, simulate
    from faceaudit.tables import simulation
    from faceaudit.tables.metrics import DistributionSettings

    out: list[Step] = []
    training_size = settings.training_size
    fit = perceive.FitSettings(seed=settings.seed)
    if settings.spec is not None:
        from faceaudit.files.spec import load_spec

        spec = load_spec(settings.spec)
        sharding = spec.ray.override(settings.ray, settings.ray_workers)
        perceived = perceive.Settings(classifiers=spec.perceive.classifiers, templates=spec.perceive.templates,
                                      fit=fit, reference_mix=spec.perceive.reference_mix,
                                      skew_threshold=spec.perceive.skew_threshold)
        out += [Step(generate, generate.Settings(Path(settings.spec), sharding)),
                Step(embed, embed.Settings(spec.encoders, perceived.templates, sharding))]
    elif settings.images is not None:
        encoders = encoders_for(settings.clip)
        perceived = perceive.Settings(fit=fit)
        out += [Step(ingest, ingest.Settings(Path(settings.images), Path(settings.manifest), settings.allow_outside_images)),
                Step(embed, embed.Settings(encoders, perceived.templates))]
    else:
        config = (simulation.SimulationConfig.from_toml(settings.simulate_config) if settings.simulate_config
                  else simulation.SimulationConfig())
        out.append(Step(simulate, simulate.Settings(settings.seed, config)))
        training_size = training_size or float(config.training_size)  # the simulated default passes its own
        perceived = perceive.Settings(classifiers=("simulated",), fit=fit)
    out.append(Step(perceive, perceived))
    distribution = DistributionSettings(metrics=settings.metrics or None, interval=settings.interval,
                                        bootstrap=settings.bootstrap)
    out += [Step(measure, measure.Settings(settings.seed, distribution)),
            Step(disparity, disparity.Settings(settings.draws or FIT_DRAWS, settings.chains, settings.seed))]
    if training_size is not None:  # FD does not identify the training size: explain needs it given
        out += [Step(explain, explain.Settings(float(training_size), settings.draws or EXPLAIN_DRAWS, settings.chains,
                                               settings.seed)),
                Step(plan, plan.Settings(settings.plan_budget))]
    out.append(Step(report, report.Settings()))
    return out


def why_run(folder: AuditFolder, step: Step, forced: bool) -> str | None:
    """Why ``step`` must run now, or None when its record says it is up to date."""
    if forced:
        return "--force"
    try:
        needed = step.module.inputs(folder, step.settings)
    except (FileNotFoundError, ValueError) as err:
        return f"its inputs are not ready ({err})"
    return records.why_stale(folder.path, step.name, VERSION, records.jsonable(step.settings), needed)


def run_stage(folder: AuditFolder | Path, module, settings) -> StageResult:
    """Run one stage and write its record last (the same path for the CLI and the audit)."""
    folder = folder if isinstance(folder, AuditFolder) else AuditFolder(folder)
    with folder_lock(folder.path):  # one writer per folder
        return _run_stage(folder, module, settings)


def _run_stage(folder: AuditFolder, module, settings) -> StageResult:
    records.remove_record(folder.path, module.NAME)  # a failure leaves the stage to redo
    needed = module.inputs(folder, settings)
    before = records.digests(folder.path, needed)
    result = module.run(folder, settings)
    after = records.digests(folder.path, needed)
    if after != before:
        changed = [p for p in before if before[p] != after[p]]
        raise RuntimeError(f"{module.NAME} changed its own inputs {changed}: a stage must not write what it reads")
    records.write_record(folder.path, records.StageRecord(
        module.NAME, VERSION, records.jsonable(settings), before, records.digests(folder.path, result.outputs)))
    return result


def preflight(settings: AuditSettings, *, check_out: bool = True) -> list[Step]:
    """Everything that can be checked before the first expensive step, and the steps.
    Changes nothing on disk (``spec check`` and ``--dry-run`` run exactly this).

    Raises:
        ValueError, FileNotFoundError: naming the file, key or option.
    """
    if settings.simulate_config is not None and not Path(settings.simulate_config).is_file():
        raise FileNotFoundError(f"simulation config not found: {settings.simulate_config}")
    if settings.images is not None and not Path(settings.images).is_dir():
        raise FileNotFoundError(f"image folder not found: {settings.images}")
    if check_out:
        _check_writable(Path(settings.out))
    plan = steps(settings)
    names = [s.name for s in plan]
    unknown = sorted(set(settings.force) - set(names) - {"all"})
    if unknown:
        raise ValueError(f"--force {', '.join(unknown)}: not a stage of this audit; its stages are {names}")
    for step in plan:
        check = getattr(step.module, "preflight", None)
        if check is not None:
            check(step.settings)
    _check_sizes(settings, plan)
    return plan


def _check_writable(out: Path) -> None:
    """``--out`` is a folder faceaudit can write into (or can be created), checked without
    creating anything."""
    import os

    from faceaudit.files.io import StageFileError

    if out.exists() and not out.is_dir():
        raise StageFileError(f"--out {out} is a file, not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StageFileError(f"cannot write into --out {out}: {existing} is not a writable folder")


def _check_sizes(settings: AuditSettings, plan: list[Step]) -> None:
    """Every group large enough for every requested metric, from the user's manifest table
    or the spec's counts, before anything is generated or embedded."""
    from faceaudit.files.images import table_counts
    from faceaudit.tables.metrics import check_group_sizes

    distribution = next(s.settings.distribution for s in plan if s.name == "measure")
    if settings.images is not None:
        from faceaudit.files.images import listed_files

        listed_files(Path(settings.images), Path(settings.manifest), allow_outside=settings.allow_outside_images)
        check_group_sizes(table_counts(Path(settings.manifest)), distribution, str(settings.manifest))
    elif settings.spec is not None:
        from faceaudit.files.images import read_table
        from faceaudit.files.spec import load_spec

        spec = load_spec(settings.spec)
        if not spec.reference_manifest:
            raise ValueError(f"{settings.spec}: [reference] names no images; the audit compares generated faces with "
                             "reference faces of the same groups (set [reference] images and manifest)")
        table = read_table(Path(spec.reference_manifest))
        counts = {}
        for attrs in spec.group_grid():
            rows = (table[list(attrs)].astype(str) == list(attrs.values())).all(axis=1) if set(attrs) <= set(table) else []
            group = " x ".join(attrs.values())
            counts[group] = (int(sum(rows)), spec.group_images)
        check_group_sizes(counts, distribution, str(settings.spec))


def plan_audit(settings: AuditSettings) -> list[tuple[Step, str | None]]:
    """Each stage and why it would run now (None: skipped). A stage after one that runs is
    shown as running too: its inputs will change or be re-checked then."""
    folder = AuditFolder(settings.out)
    out, upstream = [], None
    for step in steps(settings):
        forced = "all" in settings.force or step.name in settings.force
        why = why_run(folder, step, forced)
        if why is None and upstream is not None:
            why = f"after {upstream} reruns, if its outputs change"
        if why is not None and upstream is None:
            upstream = step.name
        out.append((step, why))
    return out


def run_audit(settings: AuditSettings, log: Callable[[str], None] = print) -> dict:
    """Run the stages that are not up to date; return the timings."""
    plan = preflight(settings)
    with folder_lock(settings.out):  # held from the first stage's check to the last stage's record
        return _run_steps(settings, plan, log)


def _run_steps(settings: AuditSettings, plan: list[Step], log: Callable[[str], None]) -> dict:
    timings = {}
    for step in plan:
        folder = AuditFolder(settings.out)  # each stage opens the folder afresh (a stage before it wrote files)
        forced = "all" in settings.force or step.name in settings.force
        why = why_run(folder, step, forced)
        if why is None:
            log(f"[skip] {step.name}: up to date")
            continue
        start = time.perf_counter()
        log(f"[run ] {step.name}: {step.module.DESCRIBE} ({why})")
        result = run_stage(folder, step.module, step.settings)
        for note in result.summary.get("warnings", []) if isinstance(result.summary, dict) else []:
            log(f"warning: {note}")
        timings[step.name] = time.perf_counter() - start
        log(f"[done] {step.name} in {timings[step.name]:.0f} s")
    return timings
