"""CLI commands of the measure stage and the analytical selection model.

Registered on the main ``faceaudit`` app (imported at the end of ``faceaudit.cli``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from faceaudit.cli import _fail, _progress, app, console

AuditDir = Annotated[Path, typer.Argument(help="Audit folder (manifest.parquet + embeddings/).")]


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the simulated audit into.")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same files.")] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML with a [simulate] table overriding the defaults.")] = None,
) -> None:
    """Draw a synthetic world from the analytical model (groups, identities, a training set
    with shares pi, the generator fitted to it) and write the files the real pipeline writes:
    manifest.parquet, the embedding store, plus truth.json and world.npz with the true
    shares, per-group FD and verification accuracy, so every command can be checked."""
    from faceaudit.simulate import SimulationConfig
    from faceaudit.simulate import simulate as run

    try:
        cfg = SimulationConfig.from_toml(config) if config else SimulationConfig()
    except (ValueError, TypeError) as err:
        _fail(str(err))
    with console.status("drawing the world"):
        truth = run(out, seed=seed, config=cfg)
    t = Table(title=f"simulated world (seed {seed}): the truth")
    for col in ("group", "share", "n_eff", "E FD", "true FD", "verif. same-group"):
        t.add_column(col, justify="left" if col == "group" else "right")
    for g, v in truth["groups"].items():
        t.add_row(g, f"{v['share']:.3f}", f"{v['n_effective']:.0f}", f"{v['fd_expected']:.3f}", f"{v['fd_true']:.3f}",
                  f"{v['verification_same_group']:.3f}")
    console.print(t)
    console.print(f"wrote {out}/manifest.parquet, {out}/embeddings/, {out}/truth.json, {out}/world.npz")


@app.command()
def measure(
    audit: AuditDir,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per group.")] = 100,
    seed: Annotated[int, typer.Option(help="Resampling seed.")] = 0,
) -> None:
    """Every per-group metric of an audit folder into metrics.parquet: distribution shift to
    the reference (FD raw and bias-corrected, MMD^2, precision/recall/density/coverage),
    diversity (Vendi), face-detection failures and verification accuracy with same-group and
    any-group impostors, each with a bootstrap interval."""
    from faceaudit.measure_audit import MeasureSettings, measure_audit

    try:
        frame = measure_audit(audit, MeasureSettings(num_bootstrap=bootstrap, seed=seed),
                              progress=lambda items, label: _progress(label)(items))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"{len(frame)} rows -> {audit / 'metrics.parquet'}")


@app.command()
def explain(
    audit: AuditDir,
    training_size: Annotated[float | None, typer.Option(help="Training images of the generator (default: a simulated world's).")] = None,
    samples: Annotated[int, typer.Option(help="Posterior draws per chain.")] = 300,
    warmup: Annotated[int, typer.Option(help="Warm-up steps per chain.")] = 300,
    chains: Annotated[int, typer.Option(help="Chains.")] = 2,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
) -> None:
    """Infer each group's effective training share (and transfer, shrinkage, diversity,
    source shifts) from the per-group bias-corrected FD of metrics.parquet, with posterior
    uncertainty; writes selection.nc and names the groups that look under-represented."""
    from faceaudit import explain as ex

    settings = ex.ExplainSettings(training_size=training_size, num_warmup=warmup, num_samples=samples,
                                  num_chains=chains, seed=seed)
    try:
        with console.status(f"fitting the selection model ({chains} chains x {samples} draws)"):
            idata = ex.explain(audit, settings)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    summary = ex.summarise_selection(idata)
    t = Table(title="effective training share per group (posterior mean, 90% HDI)")
    for col in ("generator", "group", "share", "HDI", "P(< uniform)", "E FD"):
        t.add_column(col, justify="left" if col in ("generator", "group") else "right")
    for r in summary.itertuples():
        flag = " [bold red]under-represented[/]" if r.under_represented else ""
        t.add_row(r.generator, r.group + flag, f"{r.share_mean:.3f}", f"[{r.share_low:.3f}, {r.share_high:.3f}]",
                  f"{r.p_below_uniform:.2f}", f"{r.fd_expected:.3f}")
    console.print(t)
    console.print(f"wrote {audit / 'selection.nc'}")


@app.command("plan-mix")
def plan_mix(
    budget: Annotated[float, typer.Option(help="Extra training images to allocate.")],
    selection: Annotated[Path | None, typer.Option(help="selection.nc from `faceaudit explain` (plans under the posterior).")] = None,
    world: Annotated[Path | None, typer.Option(help="world.npz from `faceaudit simulate` (plans under the known truth).")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator in selection.nc (default: the first).")] = None,
    objective: Annotated[str, typer.Option(help="fd (worst group's FD) or verification (worst same-group accuracy; needs --world).")] = "fd",
    out: Annotated[Path, typer.Option("--out", help="Folder for plan.parquet, plan.json and plan.png.")] = Path("."),
) -> None:
    """Allocate a budget of extra training images over groups to help the worst-served group
    most (gradient descent on the simplex through the closed forms), compared with uniform
    and proportional allocations; writes the table, JSON and a quality-versus-share plot."""
    from faceaudit import explain as ex
    from faceaudit.io import atomic_write_bytes, atomic_write_text

    if (selection is None) == (world is None):
        _fail("pass exactly one of --selection (a fitted posterior) or --world (a simulated truth)")
    try:
        identity = None
        if selection is not None:
            import arviz as az

            if not selection.is_file():
                raise FileNotFoundError(f"selection file not found: {selection}")
            labels, target, mix = ex.posterior_world(az.from_netcdf(selection), generator)
            if objective == "verification":
                raise ValueError("objective 'verification' needs identity spreads: use --world")
        else:
            from faceaudit.simulate import World

            w = World.from_npz(world)
            labels, target, mix, identity = w.labels, w.world, w.mix, w.identity
        with console.status("planning"):
            table, plan = ex.plan_table(labels, target, mix, budget, objective=objective, identity=identity)
            curves = ex.share_curves(target, mix)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    import io

    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(out / "plan.parquet", buffer.getvalue())
    atomic_write_text(out / "plan.json", json.dumps({"budget": budget, "objective": objective,
                                                    "groups": table.to_dict(orient="records")}, indent=2))
    ex.plot_plan(labels, table, curves, out / "plan.png", objective)
    t = Table(title=f"plan for {budget:.0f} extra images ({objective})")
    for col in ("group", "share now", "extra", "share planned", "now", "uniform", "proportional", "planned"):
        t.add_column(col, justify="left" if col == "group" else "right")
    for r in table.itertuples():
        t.add_row(r.group, f"{r.share_now:.3f}", f"{r.extra_images:.0f}", f"{r.share_planned:.3f}", f"{r.quality_now:.3f}",
                  f"{r.quality_uniform:.3f}", f"{r.quality_proportional:.3f}", f"{r.quality_planned:.3f}")
    console.print(t)
    pick = max if objective == "fd" else min
    console.print("worst group: now {:.3f}, uniform {:.3f}, proportional {:.3f}, planned {:.3f}".format(
        *(pick(table[c]) for c in ("quality_now", "quality_uniform", "quality_proportional", "quality_planned"))))
    console.print(f"wrote {out / 'plan.parquet'}, {out / 'plan.json'}, {out / 'plan.png'}")
