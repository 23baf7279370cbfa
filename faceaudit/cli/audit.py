"""``faceaudit audit``: every stage in one folder, skipping what is up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceaudit.cli.app import METRICS_HELP, app, bold, console, failing, metric_names, warn
from faceaudit.cli.stages import RayAddress, RayWorkers
from faceaudit.stages import EXPLAIN_DRAWS, FIT_DRAWS


@app.command()
def audit(
    spec_path: Annotated[Path | None, typer.Argument(metavar="[SPEC]", help="Audit spec: generate with real models.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder (stage files, report.html).")] = Path("faceaudit-out"),
    images: Annotated[Path | None, typer.Option(help="Audit a folder of your own images (with --manifest).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV/Parquet: path, role, group columns of --images.")] = None,
    clip: Annotated[str, typer.Option(help="With --images: open_clip ARCHITECTURE[:PRETRAINED] (a tag, a checkpoint path; 'random' only for tests).")] = "ViT-B-32",
    training_size: Annotated[float | None, typer.Option(help="Generator's training images (enables explain and plan on real audits).")] = None,
    simulate_config: Annotated[Path | None, typer.Option(help="TOML file with a [simulate] table for the simulated world.")] = None,
    plan_budget: Annotated[float | None, typer.Option(help="Extra training images to plan (default: a quarter of the training size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
    draws: Annotated[int | None, typer.Option(help=f"Posterior draws (and warm-up steps) per chain of both fits [default: {FIT_DRAWS} disparity, {EXPLAIN_DRAWS} explain].")] = None,
    chains: Annotated[int, typer.Option(help="Chains per posterior fit.")] = 2,
    interval: Annotated[str, typer.Option(help="Interval of the distribution metrics: jackknife (default) or basic/percentile/bca.")] = "jackknife",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates (bootstrap intervals only).")] = 0,
    metric_list: Annotated[str | None, typer.Option("--metrics", help=METRICS_HELP)] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Redo this stage (repeat for more; 'all' for every one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the inputs, say which stages would run and why, run nothing.")] = False,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    allow_outside_images: Annotated[bool, typer.Option("--allow-outside-images", help="With --images: also read manifest paths outside the images folder (refused by default: their pixels end up in the report).")] = False,
) -> None:
    """The whole audit in one command: simulate (or generate from a spec, or read your
    images) -> embed -> measure -> disparity -> explain -> plan -> report. A stage runs only
    when its record says its inputs, settings or outputs changed, so a rerun skips finished
    stages and a killed audit resumes. Without arguments it audits a simulated world,
    offline; it ends by printing the report's path and the headline findings."""
    from faceaudit import pipeline
    from faceaudit.files.folder import AuditFolder
    from faceaudit.stages.report import headline_findings

    with failing():
        settings = pipeline.AuditSettings(out=out, seed=seed, draws=draws, chains=chains, simulate_config=simulate_config,
                                          force=tuple(force or ()), spec=spec_path, images=images, manifest=manifest,
                                          training_size=training_size, plan_budget=plan_budget, interval=interval,
                                          bootstrap=bootstrap, clip=clip, ray=ray, ray_workers=ray_workers,
                                          allow_outside_images=allow_outside_images,
                                          metrics=metric_names(metric_list))
        for note in settings.no_effect():
            warn(note)
        if dry_run:
            pipeline.preflight(settings)
            for step, why in pipeline.plan_audit(settings):
                console.print(f"[run ] {step.name}: {why}" if why else f"[skip] {step.name}: up to date")
            return
        pipeline.run_audit(settings, log=console.print)
        findings = headline_findings(AuditFolder(out))
    console.print(bold(f"\nreport: {(out / 'report.html').resolve()}"))
    for i, finding in enumerate(findings, 1):
        console.print(f"{i}. {finding}")
