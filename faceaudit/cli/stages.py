"""One command per stage. Each runs the stage through ``pipeline.run_stage`` with the same
settings ``faceaudit audit`` would use by default, so both write the same files and the
audit afterwards finds the stage up to date."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from faceaudit.cli.app import app, bold, console, failing, metric_names, renamed, table, warn
from faceaudit.cli.options import (
    DEFAULTS,
    AllowOutsideImages,
    Bootstrap,
    Chains,
    Clip,
    Images,
    Interval,
    Manifest,
    Metrics,
    RayAddress,
    RayWorkers,
    Seed,
    shared,
)
from faceaudit.stages import EXPLAIN_DRAWS, FIT_DRAWS

AuditDir = Annotated[Path, typer.Argument(help="Audit folder (manifest.parquet + embeddings/).")]


def _run(folder: Path, module, settings):
    from faceaudit.pipeline import run_stage

    return run_stage(folder, module, settings)


@app.command()
def simulate(
    out: shared("out", help="Folder to write the simulated audit into."),
    seed: shared("seed", help="Seed: the same seed writes the same files.") = DEFAULTS.seed,
    config: shared("simulate_config") = None,
) -> None:
    """Draw a synthetic world from the analytical model (groups, identities, a training set
    with shares pi, the generator fitted to it) and write the files the real pipeline writes
    (manifest.parquet, the embedding store, identity_spreads.json), plus its answer key
    (truth.json, world.npz) for checking every command against the truth."""
    from faceaudit.stages import simulate as stage
    from faceaudit.tables.simulation import SimulationConfig

    with failing():
        cfg = SimulationConfig.from_toml(config) if config else SimulationConfig()
        with console.status("drawing the world"):
            truth = _run(out, stage, stage.Settings(seed, cfg)).summary["truth"]
    rows = [[g, f"{v['share']:.3f}", f"{v['n_effective']:.0f}", f"{v['fd_expected']:.3f}", f"{v['fd_true']:.3f}",
             f"{v['verification_same_group']:.3f}"] for g, v in truth["groups"].items()]
    console.print(table(f"simulated world (seed {seed}): the truth",
                        ["group", "share", "n_eff", "E FD", "true FD", "verif. same-group"], rows))
    console.print(f"wrote {out}/manifest.parquet, {out}/embeddings/, {out}/truth.json, {out}/world.npz")


@app.command()
def generate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Audit spec (TOML).")],
    out: shared("out", help="Audit folder: images/, manifest.parquet.") = DEFAULTS.out,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
) -> None:
    """Generate every image of the spec (sources, counterfactuals across groups with shared
    seeds, SEGA edits of each named identity) with diffusers, batch_size images per call;
    resumable and reproducible, here or sharded over Ray actors (--ray)."""
    from faceaudit.files.spec import load_spec
    from faceaudit.stages import generate as stage

    with failing():
        settings = stage.Settings(spec_path, load_spec(spec_path).ray.override(ray, ray_workers))
        stage.preflight(settings)
        result = _run(out, stage, settings)
    console.print(f"{result.summary['images']} images -> {out / 'manifest.parquet'}")


@app.command()
def embed(
    spec_path: Annotated[Path | None, typer.Argument(metavar="[SPEC]", help="Audit spec naming the encoders.")] = None,
    out: shared("out", help="Audit folder (manifest.parquet, images).") = DEFAULTS.out,
    images: Images = None,
    manifest: Manifest = None,
    clip: Clip = DEFAULTS.clip,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    allow_outside_images: AllowOutsideImages = DEFAULTS.allow_outside_images,
) -> None:
    """Embed every image with open_clip (image + prompts), dlib (face detection + 128-d
    descriptor) and any DINOv2 encoder of the spec; images already embedded by the same
    encoder and preprocessing are skipped. Encoders use real pretrained weights, or the
    command refuses before any work and says how to pass a local checkpoint."""
    from faceaudit.files.spec import RaySpec, load_spec
    from faceaudit.pipeline import check_sources
    from faceaudit.stages import embed as stage
    from faceaudit.stages import ingest

    with failing():
        check_sources(spec_path, images, manifest)
        templates = stage.Settings().zero_shot_templates
        if spec_path is not None:
            spec = load_spec(spec_path)
            encoders, sharding, templates = spec.encoders, spec.ray, spec.perceive.templates
        else:
            encoders, sharding = stage.encoders_for(clip), RaySpec()
        settings = stage.Settings(tuple(encoders), templates, ray=sharding.override(ray, ray_workers))
        for line in stage.preflight(settings):
            console.print(f"weights: {line}")
        if images is not None:
            for note in _run(out, ingest, ingest.Settings(images, manifest, allow_outside_images)).summary["warnings"]:
                warn(note)
        result = _run(out, stage, settings)
    for enc, n in result.summary["embedded"].items():
        console.print(f"{enc}: embedded {n} new image(s)")


@app.command()
def measure(
    audit: AuditDir,
    seed: Seed = DEFAULTS.seed,
    interval: Interval = DEFAULTS.interval,
    bootstrap: Bootstrap = DEFAULTS.bootstrap,
    metric_list: Metrics = None,
) -> None:
    """Every per-group metric of an audit folder into metrics.parquet: distribution shift to
    the reference (KID, FD in the audit space, precision/recall/density/coverage at a common
    size; the raw and bias-corrected FD for the literature on request), diversity (Vendi at a common size),
    face-detection failures and verification accuracy with same-group and any-group
    impostors, and the study's prompt and edit metrics, each with an interval of what it
    estimates."""
    from faceaudit.stages import measure as stage
    from faceaudit.tables.metrics import DistributionSettings

    with failing():
        asked = metric_names(metric_list)
        settings = stage.Settings(seed, DistributionSettings(metrics=asked, interval=interval, bootstrap=bootstrap))
        result = _run(audit, stage, settings)
    console.print(f"{result.summary['rows']} rows -> {audit / 'metrics.parquet'} (audit space: "
                  f"{result.summary['audit_space_dim']} dimensions, {100 * result.summary['audit_space_explained']:.0f}% "
                  "of the variance)")


@app.command()
def perceive(
    audit: AuditDir,
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Audit spec whose [perceive] table sets the classifiers, templates and reference mixes.")] = None,
    classifier: Annotated[str | None, typer.Option(help="Perceived-attribute classifier(s), comma-separated: clip (zero-shot from the embeddings), simulated (a simulated world's classifier). Default: simulated for a simulated world, else clip.")] = None,
    draws: Annotated[int | None, typer.Option(help="Posterior draws per chain (and as many warm-up steps; default: the fit's, enough for a tail ESS of 400 at 8 categories).")] = None,
    chains: Chains = DEFAULTS.chains,
    seed: Seed = DEFAULTS.seed,
    skew_threshold: Annotated[float | None, typer.Option(help="Rank neutral prompts by P(MAD from the reference mix > this) (default 0.05).")] = None,
) -> None:
    """Who gets drawn: what each image shows by a perceived-attribute classifier, corrected
    for that classifier's confusion measured on the labelled reference faces. For each
    requested group, the depicted mix (P(depicted = requested) with its HDI) in
    faithfulness.parquet; for each neutral prompt, the depicted mix beside a reference mix,
    with MAD, KL and normalised entropy, in representation.parquet."""
    from faceaudit.files.folder import AuditFolder
    from faceaudit.stages import perceive as stage

    with failing():
        fit = stage.FitSettings(chains=chains, seed=seed, **({} if draws is None else {"draws": draws}))
        settings = stage.settings_for(AuditFolder(audit), spec_path, classifier, fit, skew_threshold)
        with console.status(f"fitting the confusion-corrected mixes ({fit.chains} chains x {fit.draws} draws)"):
            result = _run(audit, stage, settings)
    for line in stage.describe(AuditFolder(audit), result.summary):
        console.print(line)


@app.command()
def disparity(
    table_path: Annotated[Path, typer.Argument(metavar="TABLE_OR_DIR", help="An audit folder, or a tidy Parquet/CSV table (one row per response or image).")],
    outcome: Annotated[str | None, typer.Option(help="Outcome column, e.g. Q1, Q2, clip_direction (tables only).")] = None,
    group: Annotated[str, typer.Option(help="Group column(s); 'race,gender' models the intersections.")] = "race",
    kind: Annotated[str, typer.Option(help="binary | ordinal | continuous.")] = "binary",
    success: Annotated[str | None, typer.Option(help="Binary outcomes: the value that counts as success.")] = None,
    lower_is_better: Annotated[bool, typer.Option("--lower-is-better", help="Worst group = highest value (distances, errors).")] = False,
    reference: Annotated[str | None, typer.Option(help="Compare every group with this one.")] = None,
    attribute: Annotated[str, typer.Option(help="Edit/attribute column ('' for none).")] = "attribute",
    item: Annotated[str, typer.Option(help="Item (image) column ('' for none).")] = "item",
    draws: Annotated[int | None, typer.Option(help=f"Posterior draws per chain (default 500; {FIT_DRAWS} in an audit folder).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Warm-up steps per chain (default: as many as draws).")] = None,
    chains: Annotated[int | None, typer.Option(help="Chains (default 4; 2 in an audit folder).")] = None,
    seed: Seed = DEFAULTS.seed,
    hdi: Annotated[float, typer.Option(help="HDI probability.")] = 0.95,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summaries as JSON here (tables).")] = None,
    posterior: Annotated[Path | None, typer.Option(help="Write the arviz InferenceData (netCDF) here (tables).")] = None,
    samples: Annotated[int | None, typer.Option(hidden=True, help="Deprecated name of --draws.")] = None,
) -> None:
    """Who is served worse, by how much, how sure: a hierarchical Bayesian model of one
    outcome across groups (partially pooled, with edit and image effects), its posterior
    group means with HDIs, the probability that each group is the worst, pairwise
    contrasts, the classical tests, predictive checks and sampler diagnostics. Given an
    audit folder it models each generated face's on-manifold outcome (as the audit does)."""
    from faceaudit.stages import disparity as stage

    with failing():
        draws = renamed(samples, "--samples", draws, "--draws")
        if table_path.is_dir():
            settings = stage.Settings(draws or FIT_DRAWS, chains or DEFAULTS.chains, seed)
            with console.status(f"sampling {settings.chains} chains x {settings.draws} draws"):
                result = _run(table_path, stage, settings)
            summary = result.summary
            if "skipped" in summary:
                console.print(f"nothing to model: {summary['skipped']}")
                return
        else:
            from faceaudit.tables.disparity import DisparitySpec

            if outcome is None:
                raise ValueError("a table needs --outcome (the column to model)")
            given = {name: value for name, value in (("draws", draws), ("warmup", warmup), ("chains", chains))
                     if value is not None}  # the others: the spec's defaults
            spec = DisparitySpec(outcome=outcome, group=tuple(g.strip() for g in group.split(",") if g.strip()),
                                 kind=kind, success=success, attribute=attribute or None, item=item or None,
                                 higher_is_better=not lower_is_better, reference=reference, hdi_prob=hdi, seed=seed,
                                 **given)
            summary = _disparity_table(table_path, spec, json_out, posterior)
    _print_disparity(summary)


def _disparity_table(path: Path, spec, json_out: Path | None, posterior: Path | None) -> dict:
    import pandas as pd

    from faceaudit.files.io import check_output_file
    from faceaudit.stages import disparity as stage

    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    check_output_file(json_out, "--json")
    check_output_file(posterior, "--posterior")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # pandas/pyarrow parse errors
        raise ValueError(f"{path} is not a readable table ({type(err).__name__})") from None
    with console.status(f"sampling {spec.chains} chains x {spec.draws} draws"):
        idata, summary = stage.analyse(frame, spec, source=str(path))
    summary["table"] = str(path)
    for written in stage.write(idata, summary, json_out, posterior):
        console.print(f"wrote {written}")
    return summary


def _print_disparity(summary: dict) -> None:
    rows = [[g["group"], str(g["n"]), f"{g['observed']:.3f}", f"{g['mean']:.3f}", f"[{g['hdi_low']:.3f}, {g['hdi_high']:.3f}]",
             f"{g['p_worst']:.3f}"] for g in summary["groups"]]
    kind = summary["kind"] + (f", success = {summary['success']}" if summary.get("success") else "")
    console.print(table(f"{summary['outcome']} by {', '.join(summary['group_by'])} ({kind}): posterior mean, "
                        f"{int(summary['hdi_prob'] * 100)}% HDI", ["group", "n", "observed", "mean", "HDI", "P(worst)"], rows))
    gap = summary["gap"]
    console.print(f"gap best-worst: {gap['mean']:.3f} [{gap['hdi_low']:.3f}, {gap['hdi_high']:.3f}]")
    freq = summary["frequentist"]
    tests = [f"ANOVA p = {freq['anova']['p_value']:.2g}", f"Kruskal-Wallis p = {freq['kruskal_wallis']['p_value']:.2g}"]
    if "chi2" in freq:
        tests.insert(0, f"chi-square p = {freq['chi2']['p_value']:.2g}")
    console.print("classical: " + ", ".join(tests))
    _print_diagnostics(summary["diagnostics"])


def _print_diagnostics(diag: dict) -> None:
    r_hat = "n/a (one chain)" if diag["max_r_hat"] is None else f"{diag['max_r_hat']:.3f}"
    console.print(f"diagnostics: {diag['chains']} chains x {diag['draws']} draws, R-hat max {r_hat}, "
                  f"ESS bulk min {diag['min_ess_bulk']:.0f}, divergences {diag['divergences']}")
    for problem in diag["problems"]:
        warn(problem)


@app.command()
def explain(
    audit: AuditDir,
    training_size: Annotated[float, typer.Option(help="Images in the generator's training set (FD does not identify it; a simulated world's is in its config).")],
    draws: Annotated[int, typer.Option(help="Posterior draws per chain (and as many warm-up steps).")] = EXPLAIN_DRAWS,
    chains: Chains = DEFAULTS.chains,
    seed: Seed = DEFAULTS.seed,
    share_concentration: Annotated[float | None, typer.Option(
        help="Dirichlet concentration of the shares' prior (default: the model's; below 1 lets one group dominate).",
    )] = None,
) -> None:
    """Infer each group's effective training share (and transfer, shrinkage, diversity,
    source shifts) from the per-group FD in the audit space of metrics.parquet, plus
    same-group verification of named identities when the real identity spreads are known,
    with posterior uncertainty and sampler diagnostics; names the groups that look
    under-represented."""
    from faceaudit.stages import explain as stage

    with failing():
        with console.status(f"fitting the training-mix model ({chains} chains x {draws} draws)"):
            result = _run(audit, stage, stage.Settings(training_size, draws, chains, seed,
                                                                   share_concentration=share_concentration))
    summary = result.summary["table"]
    rows = []
    for r in summary.itertuples():
        flag = " (under-represented)" if r.under_represented else ""
        rows.append([r.generator, r.group + flag, f"{r.share_mean:.3f}", f"[{r.share_low:.3f}, {r.share_high:.3f}]",
                     f"{r.p_below_uniform:.2f}", f"{r.fd_expected:.3f}",
                     "" if math.isnan(r.verification_expected) else f"{r.verification_expected:.3f}"])
    console.print(table("effective training share per group (posterior mean, 90% HDI)",
                        ["generator", "group", "share", "HDI", "P(< uniform)", "E FD", "E verif."], rows))
    console.print(f"fitted to {summary['evidence'].iloc[0]} (verification: {result.summary['verification']})")
    _print_diagnostics(result.summary["diagnostics"])
    console.print(f"wrote {audit / 'training_mix.nc'}")


@app.command()
def plan(
    budget: Annotated[float, typer.Option(help="Extra training images to allocate.")],
    posterior: Annotated[Path | None, typer.Option(help="training_mix.nc from `faceaudit explain` (plans under the posterior).")] = None,
    world: Annotated[Path | None, typer.Option(help="world.npz from `faceaudit simulate` (plans under the known truth).")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator in training_mix.nc (default: the first).")] = None,
    objective: Annotated[str, typer.Option(help="fd (worst group's FD) or verification (worst same-group accuracy; needs a fit with verification, or --world).")] = "fd",
    out: Annotated[Path, typer.Option("--out", help="Folder for plan.parquet, plan.json and plan.png.")] = Path("."),
    selection: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated name of --posterior.")] = None,
) -> None:
    """Plan a training mix: allocate a budget of extra training images over groups to help
    the worst-served group most (gradient descent on the simplex through the closed forms),
    compared with uniform and proportional allocations; writes the table, JSON and a
    quality-versus-share plot."""
    from faceaudit.stages import plan as stage

    with failing():
        posterior = renamed(selection, "--selection", posterior, "--posterior")
        if (posterior is None) == (world is None):
            raise ValueError("pass exactly one of --posterior (a fitted training_mix.nc) or --world (a simulated truth)")
        source = {"posterior": str(posterior.resolve())} if posterior else {"world": str(world.resolve())}
        with console.status("planning"):
            result = _run(out, stage, stage.Settings(budget, objective, generator, **source))
    t = result.summary["table"]
    rows = [[r.group, f"{r.share_now:.3f}", f"{r.extra_images:.0f}", f"{r.share_planned:.3f}", f"{r.quality_now:.3f}",
             f"{r.quality_uniform:.3f}", f"{r.quality_proportional:.3f}", f"{r.quality_planned:.3f}"] for r in t.itertuples()]
    console.print(table(f"plan for {budget:.0f} extra images ({objective})",
                        ["group", "share now", "extra", "share planned", "now", "uniform", "proportional", "planned"], rows))
    pick = max if objective == "fd" else min
    console.print("worst group: now {:.3f}, uniform {:.3f}, proportional {:.3f}, planned {:.3f}".format(
        *(pick(t[c]) for c in ("quality_now", "quality_uniform", "quality_proportional", "quality_planned"))))
    console.print(f"wrote {out / 'plan.parquet'}, {out / 'plan.json'}, {out / 'plan.png'}")


# The command's name before it matched its stage's ("plan"); kept working, unlisted.
app.command("plan-mix", hidden=True, deprecated=True)(plan)


@app.command()
def report(audit: AuditDir) -> None:
    """Write report.html from the stage files of an audit folder (refused when its stages
    disagree: run `faceaudit audit` to bring them up to date)."""
    from faceaudit.files.folder import AuditFolder
    from faceaudit.stages import report as stage

    with failing():
        result = _run(audit, stage, stage.Settings())
        findings = stage.headline_findings(AuditFolder(audit))
    console.print(bold(f"report: {result.summary['report']}"))
    for i, finding in enumerate(findings, 1):
        console.print(f"{i}. {finding}")
