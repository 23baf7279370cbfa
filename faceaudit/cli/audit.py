"""``faceaudit audit``: every stage in one folder, skipping what is up to date."""

from __future__ import annotations

from typing import Annotated

import typer

from faceaudit.cli.app import app, bold, console, failing, warn
from faceaudit.cli.options import audit_options, settings_from

DryRun = Annotated[bool, typer.Option("--dry-run", help="Check the inputs, say which stages would run and why, run nothing.")]


@app.command()
@audit_options(dry_run=(DryRun, False))
def audit(*, dry_run: bool = False, **options) -> None:
    """The whole audit in one command: simulate (or generate from a spec, or read your
    images) -> embed -> measure -> disparity -> explain -> plan -> report. A stage runs only
    when its record says its inputs, settings or outputs changed, so a rerun skips finished
    stages and a killed audit resumes. Without arguments it audits a simulated world,
    offline; it ends by printing the report's path and the headline findings."""
    from faceaudit import pipeline
    from faceaudit.files.folder import AuditFolder
    from faceaudit.stages.report import headline_findings

    with failing():
        settings = settings_from(options)
        for note in settings.no_effect():
            warn(note)
        if dry_run:
            pipeline.preflight(settings)
            for step, why in pipeline.plan_audit(settings):
                console.print(f"[run ] {step.name}: {why}" if why else f"[skip] {step.name}: up to date")
            return
        pipeline.run_audit(settings, log=console.print)
        findings = headline_findings(AuditFolder(settings.out))
    console.print(bold(f"\nreport: {(settings.out / 'report.html').resolve()}"))
    for i, finding in enumerate(findings, 1):
        console.print(f"{i}. {finding}")
