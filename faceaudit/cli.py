"""The ``faceaudit`` command line.

faceaudit audits how text-to-image models draw human faces across social groups:
generate faces from an audit spec, embed them, measure faithfulness, identity
preservation, diversity and distribution shift per group, estimate disparities with
uncertainty, and explain them by the training mix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="faceaudit",
    help=__doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
    + "\n\nStart with `faceaudit demo`; `faceaudit COMMAND --help` explains each command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # error messages name long paths: never wrap them


def _fmt(v, digits=4):
    if v is None:
        return "-"
    return f"{v:.{digits}g}"


def _print_report(report: dict, title: str) -> None:
    from faceaudit.measure import METRICS

    overall = Table(title=f"{title}: {report['n_real']} real vs {report['n_fake']} generated, d = {report['dim']}")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    overall.add_column("meaning")
    for name, value in report["overall"].items():
        if name == "kid_std":
            continue
        shown = _fmt(value * 1e3) + f" ± {_fmt(report['overall']['kid_std'] * 1e3, 2)}" if name == "kid" else _fmt(value)
        overall.add_row(name, shown, METRICS.get(name, ""))
    console.print(overall)
    if not report["groups"]:
        return
    conf = int(round(report["confidence"] * 100))
    per_group = Table(title=f"per group: value [{conf}% bootstrap interval, {report['num_bootstrap']} replicates]")
    per_group.add_column("group")
    names = list(report["groups"])
    for name in names:
        per_group.add_column(name, justify="right")
    groups = [row["group"] for row in report["groups"][names[0]]]
    for i, g in enumerate(groups):
        cells = []
        for name in names:
            row = report["groups"][name][i]
            scale = 1e3 if name == "kid" else 1.0
            v = row["value"] * scale
            if row["low"] is None:
                cells.append(_fmt(v, 3))
            else:
                cells.append(f"{_fmt(v, 3)} [{_fmt(row['low'] * scale, 3)}, {_fmt(row['high'] * scale, 3)}]")
        per_group.add_row(g, *cells)
    console.print(per_group)
    console.print("kid and per-group mmd2 are shown x1e3. fd_unbiased removes the bias that favours groups with more images.")


def _write_json(report: dict, path: Path) -> None:
    from faceaudit.io import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=2))
    console.print(f"wrote {path}")


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


MetricsOpt = Annotated[
    str,
    typer.Option("--metrics", help="Comma-separated subset of: fd, fd_unbiased, kid, precision, recall, density, coverage, vendi."),
]


@app.command()
def metrics(
    real: Annotated[Path, typer.Argument(help="Real (reference) embeddings, an (n, d) .npy array.")],
    fake: Annotated[Path, typer.Argument(help="Generated embeddings, an (m, d) .npy array.")],
    groups_real: Annotated[Path | None, typer.Option(help="Group label per real row (.npy, or text with one label per line).")] = None,
    groups_fake: Annotated[Path | None, typer.Option(help="Group label per generated row.")] = None,
    metric_list: MetricsOpt = "fd,fd_unbiased,kid,precision,recall,density,coverage,vendi",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per group (0: no intervals).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for KID subsets and bootstrap draws.")] = 0,
    confidence: Annotated[float, typer.Option(help="Interval coverage.")] = 0.95,
    k: Annotated[int, typer.Option(help="Neighbourhood size for precision/recall/density/coverage.")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """Distribution shift between real and generated embeddings: FD, KID, PRDC, Vendi.

    With group labels, every metric is also computed per group with a bootstrap interval,
    and the raw FD is shown beside the bias-corrected one (groups with fewer images
    otherwise look worse than they are).
    """
    from faceaudit import measure

    try:
        request = measure.MetricsRequest(
            metrics=tuple(m.strip() for m in metric_list.split(",") if m.strip()),
            num_bootstrap=bootstrap, seed=seed, confidence=confidence, k=k,
        )
        x = measure.load_embeddings(real)
        y = measure.load_embeddings(fake)
        if (groups_real is None) != (groups_fake is None):
            _fail("pass --groups-real and --groups-fake together")
        gx = measure.load_labels(groups_real, len(x), of=str(real)) if groups_real else None
        gy = measure.load_labels(groups_fake, len(y), of=str(fake)) if groups_fake else None
        report = measure.compute(x, y, request, real_groups=gx, fake_groups=gy, progress=_progress("metrics"))
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    report.update(real=str(real), fake=str(fake))
    _print_report(report, "faceaudit metrics")
    if json_out:
        _write_json(report, json_out)


def _progress(label: str):
    from faceaudit.io import progress_bar

    return lambda items: progress_bar(items, label)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 0,
    per_group: Annotated[int, typer.Option(help="Real and generated faces per group.")] = 250,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per group.")] = 200,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """Audit a simulated generator (8 groups, 64-d embeddings) and print the metrics table.

    Runs offline in seconds: the generator of the simulation saw some groups far less in
    training, and the per-group FD and coverage show it, with intervals.
    """
    from faceaudit import demo as demo_world
    from faceaudit import measure

    real, real_groups, fake, fake_groups = demo_world.simulated_embeddings(seed, per_group=per_group)
    request = measure.MetricsRequest(metrics=("fd", "fd_unbiased", "kid", "precision", "coverage", "vendi"), num_bootstrap=bootstrap, seed=seed)
    report = measure.compute(real, fake, request, real_groups=real_groups, fake_groups=fake_groups, progress=_progress("demo"))
    _print_report(report, "faceaudit demo (simulated)")
    worst = max(report["groups"]["fd_unbiased"], key=lambda r: r["value"])
    best = min(report["groups"]["fd_unbiased"], key=lambda r: r["value"])
    console.print(
        f"worst-served group: [bold]{worst['group']}[/] (bias-corrected FD {worst['value']:.3g}, "
        f"interval {worst['low']:.3g} to {worst['high']:.3g}); best: {best['group']} ({best['value']:.3g})."
    )
    if json_out:
        _write_json(report, json_out)


survey_app = typer.Typer(help="Human-judgement survey tables: import them into tidy Parquet.", no_args_is_help=True)
app.add_typer(survey_app, name="survey")


@survey_app.command("import")
def survey_import(
    file: Annotated[Path, typer.Argument(help="The survey CSV.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Tidy Parquet to write (one row per response).")],
    fmt: Annotated[str, typer.Option("--format", help="Survey format; limitations-2024 is the AAAI 2024 study's.")] = "limitations-2024",
) -> None:
    """De-duplicate a survey file into one row per response, with the pictured person's
    race and gender read off the image path, the edit attribute, answers and metrics."""
    from faceaudit import survey

    try:
        tidy = survey.read_survey(file, fmt)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    survey.write_parquet(tidy, out)
    console.print(f"{len(tidy)} responses ({tidy['item'].nunique()} images) -> {out}")


@app.command()
def disparity(
    table: Annotated[Path, typer.Argument(help="Tidy Parquet (or CSV): one row per response or image.")],
    outcome: Annotated[str, typer.Option(help="Outcome column, e.g. Q1, Q2, clip_direction.")],
    group: Annotated[str, typer.Option(help="Group column(s); 'race,gender' models the intersections.")] = "race",
    kind: Annotated[str, typer.Option(help="binary | ordinal | continuous.")] = "binary",
    success: Annotated[str | None, typer.Option(help="Binary outcomes: the value that counts as success.")] = None,
    lower_is_better: Annotated[bool, typer.Option("--lower-is-better", help="Worst group = highest value (distances, errors).")] = False,
    reference: Annotated[str | None, typer.Option(help="Compare every group with this one.")] = None,
    attribute: Annotated[str, typer.Option(help="Edit/attribute column ('' for none).")] = "attribute",
    item: Annotated[str, typer.Option(help="Item (image) column ('' for none).")] = "item",
    samples: Annotated[int, typer.Option(help="Posterior draws per chain.")] = 500,
    warmup: Annotated[int, typer.Option(help="Warm-up steps per chain.")] = 500,
    chains: Annotated[int, typer.Option(help="Chains.")] = 4,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    hdi: Annotated[float, typer.Option(help="HDI probability.")] = 0.95,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summaries as JSON here.")] = None,
    posterior: Annotated[Path | None, typer.Option(help="Write the arviz InferenceData (netCDF) here.")] = None,
) -> None:
    """Who is served worse, by how much, how sure: a hierarchical Bayesian model of one
    outcome across groups (partially pooled, with edit and image effects), its posterior
    group means with HDIs, the probability that each group is the worst, pairwise
    contrasts, and the classical tests beside it."""
    import pandas as pd

    from faceaudit import disparity as dsp

    try:
        spec = dsp.DisparitySpec(
            outcome=outcome, group=tuple(g.strip() for g in group.split(",") if g.strip()), kind=kind,
            success=success, attribute=attribute or None, item=item or None,
            higher_is_better=not lower_is_better, reference=reference, hdi_prob=hdi,
            num_warmup=warmup, num_samples=samples, num_chains=chains, seed=seed,
        )
        if not table.is_file():
            raise FileNotFoundError(f"table not found: {table}")
        frame = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
        data = dsp.PreparedData(frame, spec, source=str(table))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    with console.status(f"sampling {chains} chains x {samples} draws"):
        idata = dsp.fit(data)
    diag = dsp.diagnostics(idata, warn=False)
    summary = dsp.summarise(idata, data)
    summary["diagnostics"] = diag
    summary["frequentist"] = dsp.frequentist(data)
    summary["predictive_checks"] = dsp.predictive_checks(idata, data)
    summary["table"] = str(table)
    t = Table(title=f"{outcome} by {group} ({kind}{', success = ' + success if success else ''}): posterior mean, {int(hdi * 100)}% HDI")
    for col in ("group", "n", "observed", "mean", "HDI", "P(worst)"):
        t.add_column(col, justify="left" if col == "group" else "right")
    for g in summary["groups"]:
        t.add_row(g["group"], str(g["n"]), f"{g['observed']:.3f}", f"{g['mean']:.3f}", f"[{g['hdi_low']:.3f}, {g['hdi_high']:.3f}]", f"{g['p_worst']:.3f}")
    console.print(t)
    gap = summary["gap"]
    console.print(f"gap best-worst: {gap['mean']:.3f} [{gap['hdi_low']:.3f}, {gap['hdi_high']:.3f}]")
    freq = summary["frequentist"]
    tests = [f"ANOVA p = {freq['anova']['p_value']:.2g}", f"Kruskal-Wallis p = {freq['kruskal_wallis']['p_value']:.2g}"]
    if "chi2" in freq:
        tests.insert(0, f"chi-square p = {freq['chi2']['p_value']:.2g}")
    console.print("classical: " + ", ".join(tests))
    console.print(f"diagnostics: R-hat max {diag['max_r_hat']:.3f}, ESS bulk min {diag['min_ess_bulk']:.0f}, divergences {diag['divergences']}")
    misfit = [c["group"] for c in summary["predictive_checks"] if not 0.01 < c["ppc_p_value"] < 0.99]
    if misfit:
        diag["problems"].append(f"posterior predictive p-value outside (0.01, 0.99) for {misfit}: the model misfits these groups")
    for problem in diag["problems"]:
        err_console.print(f"[yellow]warning:[/] {problem}")
    if json_out:
        _write_json(summary, json_out)
    if posterior:
        dsp.save_idata(idata, posterior)
        console.print(f"wrote {posterior}")


# Commands defined in their own modules register themselves on `app` when imported.
from faceaudit import cli_stages  # noqa: E402,F401


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
