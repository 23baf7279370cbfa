"""CLI commands of the audit stages: simulate, measure, explain, plan-mix, and the whole audit.

Registered on the main ``faceaudit`` app (imported at the end of ``faceaudit.cli``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from faceaudit.cli import _fail, app, console

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
        frame = measure_audit(audit, MeasureSettings(num_bootstrap=bootstrap, seed=seed))
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
    source shifts) from the per-group bias-corrected FD of metrics.parquet, plus same-group
    verification of named identities when the real identity spreads are known, with
    posterior uncertainty; writes selection.nc and names the groups that look under-represented."""
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
    for col in ("generator", "group", "share", "HDI", "P(< uniform)", "E FD", "E verif."):
        t.add_column(col, justify="left" if col in ("generator", "group") else "right")
    for r in summary.itertuples():
        flag = " [bold red]under-represented[/]" if r.under_represented else ""
        t.add_row(r.generator, r.group + flag, f"{r.share_mean:.3f}", f"[{r.share_low:.3f}, {r.share_high:.3f}]",
                  f"{r.p_below_uniform:.2f}", f"{r.fd_expected:.3f}",
                  "" if math.isnan(r.verification_expected) else f"{r.verification_expected:.3f}")
    console.print(t)
    console.print(f"fitted to {summary['evidence'].iloc[0]} (verification: {idata.constant_data.attrs['verification']})",
                  markup=False)
    console.print(f"wrote {audit / 'selection.nc'}")


@app.command("plan-mix")
def plan_mix(
    budget: Annotated[float, typer.Option(help="Extra training images to allocate.")],
    selection: Annotated[Path | None, typer.Option(help="selection.nc from `faceaudit explain` (plans under the posterior).")] = None,
    world: Annotated[Path | None, typer.Option(help="world.npz from `faceaudit simulate` (plans under the known truth).")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator in selection.nc (default: the first).")] = None,
    objective: Annotated[str, typer.Option(help="fd (worst group's FD) or verification (worst same-group accuracy; needs a fit with verification, or --world).")] = "fd",
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
            idata = az.from_netcdf(selection)
            labels, target, mix = ex.posterior_world(idata, generator)
            if objective == "verification":
                identity = ex.posterior_identity(idata)
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


@app.command()
def audit(
    spec_path: Annotated[Path | None, typer.Argument(metavar="[SPEC]", help="Audit spec: generate with real models.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder (stage files, report.html).")] = Path("faceaudit-out"),
    images: Annotated[Path | None, typer.Option(help="Audit a folder of your own images (with --manifest).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV/Parquet: path, role, group columns of --images.")] = None,
    training_size: Annotated[float | None, typer.Option(help="Generator's training images (enables explain on real audits).")] = None,
    simulate_config: Annotated[Path | None, typer.Option(help="TOML [simulate] table for the simulated world.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates per group.")] = 100,
    draws: Annotated[int, typer.Option(help="Posterior draws (and warm-up steps) per chain.")] = 200,
    chains: Annotated[int, typer.Option(help="Chains per posterior fit.")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Redo stages whose output exists.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would run, run nothing.")] = False,
) -> None:
    """The whole audit in one command: simulate (or read your images) -> measure ->
    disparity -> explain -> report. Stages whose output exists are skipped, so a killed
    audit resumes. Without arguments it audits a simulated world, offline, in minutes; it
    ends by printing the report's path and the three headline findings."""
    from faceaudit import audit as au
    from faceaudit.report import headline_findings

    settings = au.AuditSettings(out=out, seed=seed, bootstrap=bootstrap, draws=draws, chains=chains,
                                simulate_config=simulate_config, force=force, spec=spec_path, images=images,
                                manifest=manifest, training_size=training_size)
    from faceaudit.spec import SpecError

    if dry_run:
        try:
            au.check_inputs(settings)
        except (SpecError, ValueError, FileNotFoundError) as err:
            _fail(str(err))
        for stage, todo in au.plan(settings):
            verb = "run " if todo else "skip"
            console.print(f"[{verb}] {stage.name}: {stage.describe} -> {out / stage.output}", markup=False)
        return
    try:
        au.run_audit(settings, log=lambda line: console.print(line, markup=False))
    except (SpecError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"\nreport: [bold]{(out / 'report.html').resolve()}[/]")
    for i, finding in enumerate(headline_findings(out), 1):
        console.print(f"{i}. {finding}")


spec_app = typer.Typer(help="Audit specs (TOML): write a commented example, check one.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")


@spec_app.command("init")
def spec_init(path: Annotated[Path, typer.Argument(help="Where to write the example spec.")] = Path("audit.toml")) -> None:
    """Write a commented example spec (4 races x 2 genders, 5 edits, SD 2.1, CLIP + dlib)."""
    from faceaudit.io import atomic_write_text
    from faceaudit.spec import EXAMPLE

    if path.exists():
        _fail(f"{path} exists; not overwriting it")
    atomic_write_text(path, EXAMPLE)
    console.print(f"wrote {path}; edit it, then `faceaudit generate {path} --out DIR`")


@spec_app.command("check")
def spec_check(path: Annotated[Path, typer.Argument(help="The spec to validate.")]) -> None:
    """Validate a spec and say how many images it asks for."""
    from faceaudit.spec import SpecError, load_spec
    from faceaudit.torch_layer.generate import expand_jobs

    try:
        spec = load_spec(path)
    except SpecError as err:
        _fail(str(err))
    for g in spec.generators:
        console.print(f"{g.name}: {len(expand_jobs(spec, g))} images over {len(spec.group_grid())} groups")


@app.command()
def generate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Audit spec (TOML).")],
    out: Annotated[Path, typer.Option("--out", help="Audit folder: images/, manifest.parquet.")] = Path("faceaudit-out"),
) -> None:
    """Generate every image of the spec (sources, counterfactuals across groups with shared
    seeds, SEGA edits of each named identity) with diffusers; resumable and reproducible."""
    from faceaudit.spec import SpecError, load_spec
    from faceaudit.torch_layer.generate import generate as run

    try:
        spec = load_spec(spec_path)
        manifest = run(spec, out)
    except (SpecError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"{len(manifest)} images -> {out / 'manifest.parquet'}")


@app.command()
def embed(
    spec_path: Annotated[Path | None, typer.Argument(metavar="[SPEC]", help="Audit spec naming the encoders.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Audit folder (manifest.parquet, images).")] = Path("faceaudit-out"),
    images: Annotated[Path | None, typer.Option(help="A folder of your own images (with --manifest).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV/Parquet: path + group columns (+ role, identity, prompt).")] = None,
    clip: Annotated[str, typer.Option(help="Without a spec: open_clip architecture[:pretrained].")] = "ViT-B-32",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 16,
) -> None:
    """Embed every image with open_clip (image + prompts) and dlib (face detection +
    128-d descriptor) into the embedding store; images already embedded by the same
    encoder and preprocessing are skipped."""
    from faceaudit.spec import EncoderSpec, SpecError, load_spec
    from faceaudit.torch_layer.embed import embed as run
    from faceaudit.torch_layer.encoders import build_encoder

    try:
        if images is not None or manifest is not None:
            if images is None or manifest is None:
                raise ValueError("--images and --manifest go together")
            import_folder(images, manifest, out)
        if spec_path is not None:
            encoders = load_spec(spec_path).encoders
        else:
            arch, _, pretrained = clip.partition(":")
            encoders = (EncoderSpec("clip", arch, pretrained), EncoderSpec("dlib"))
        built = [build_encoder(e) for e in encoders]
        counts = run(out, built, batch_size=batch_size)
    except (SpecError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    for enc, n in counts.items():
        console.print(f"{enc}: embedded {n} new image(s)")


def import_folder(images: Path, manifest: Path, out: Path) -> None:
    """Manifest rows for a folder of existing images (``role`` column optional: generated)."""
    import pandas as pd

    from faceaudit.store import write_manifest
    from faceaudit.torch_layer.images import folder_rows, read_table

    table = read_table(manifest)
    roles = table["role"].unique() if "role" in table.columns else ["generated"]
    bad = sorted(set(roles) - {"generated", "reference"})
    if bad:
        raise ValueError(f"{manifest}: column role must be 'generated' or 'reference', found {bad}")
    frames = []
    for role in roles:
        part = table[table["role"] == role] if "role" in table.columns else table
        frames.append(folder_rows(images, manifest, None, role=role, table=part))
    rows = pd.concat(frames, ignore_index=True)
    rows.loc[(rows.role == "generated") & (rows.generator == ""), "generator"] = "user-images"
    groups = [c for c in ("race", "gender", "age") if c in rows.columns]
    write_manifest(out / "manifest.parquet", rows.drop_duplicates("image_id"), groups, source=f"images:{images}")
