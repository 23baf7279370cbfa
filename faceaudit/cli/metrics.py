"""``faceaudit metrics`` on the user's embedding files and ``faceaudit demo``: the same
per-group table code as the measure stage (``faceaudit.tables.metrics``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceaudit.cli.app import app, console, failing, metric_names, renamed, table, warn
from faceaudit.cli.options import DEFAULTS, Bootstrap, Interval, Metrics, Seed
from faceaudit.tables import catalogue
from faceaudit.tables.catalogue import ALL


def _cell(row: dict, scale: float) -> str:
    return f"{row['value'] * scale:.4g} [{row['low'] * scale:.4g}, {row['high'] * scale:.4g}]"


def _header(name: str) -> str:
    meta = catalogue.info(name)
    return f"{name}{' x' + format(meta.scale, 'g') if meta.scale != 1 else ''} {meta.arrow}"


def print_rows(rows: list[dict], title: str) -> None:
    """Per-group rows as one table (groups down, metrics across) where the terminal is wide
    enough for every cell on one line, else one block per metric (group, value, interval),
    which fits 80 columns: a number is never cut or wrapped. Then what each estimates."""
    names = list(dict.fromkeys(r["metric"] for r in rows))
    groups = list(dict.fromkeys(r["group"] for r in rows if r["group"] != ALL)) + [ALL]
    by = {(r["group"], r["metric"]): r for r in rows}
    present = [g for g in groups if any((g, m) in by for m in names)]
    flag = {k: " !" if r.get("warning") else "" for k, r in by.items()}
    confidence = int(round(100 * rows[0]["confidence"]))
    wide = [[g] + [_cell(by[(g, m)], catalogue.info(m).scale) + flag[(g, m)] if (g, m) in by else "-" for m in names]
            for g in present]
    headers = ["group"] + [_header(m) for m in names]
    widths = [max(len(h), *(len(r[i]) for r in wide)) for i, h in enumerate(headers)]
    if sum(widths) + 3 * len(widths) + 1 <= console.width:
        console.print(table(f"{title}: value [{confidence}% interval]", headers, wide))
    else:
        console.print(f"{title}: value [{confidence}% interval], one block per metric")
        for m in names:
            scale = catalogue.info(m).scale
            block = [[g, f"{by[(g, m)]['value'] * scale:.4g}{flag[(g, m)]}",
                      f"[{by[(g, m)]['low'] * scale:.4g}, {by[(g, m)]['high'] * scale:.4g}]"]
                     for g in present if (g, m) in by]
            console.print(table(_header(m), ["group", "value", f"{confidence}% interval"], block))
    for m in names:
        meta = catalogue.info(m)
        size = next((r for r in rows if r["metric"] == m), {})
        at = (f" (at {size.get('size_reference') or '-'} reference / {size.get('size_generated')} generated)"
              if meta.kind in ("distribution", "diversity") and meta.comparable.startswith("compared at") else "")
        console.print(f"  {m}: {meta.label}; interval of {meta.estimand}; {meta.comparable}{at}.")
    flagged = sorted({f"{r['metric']} / {r['group']}: {r['warning']}" for r in rows if r.get("warning")})
    for line in flagged[:8]:
        warn(line)


@app.command()
def metrics(
    reference: Annotated[Path, typer.Argument(help="Reference (real) embeddings, an (n, d) .npy array.")],
    generated: Annotated[Path, typer.Argument(help="Generated embeddings, an (m, d) .npy array.")],
    reference_groups: Annotated[Path | None, typer.Option(help="Group label per reference row (.npy, or text with one label per line).")] = None,
    generated_groups: Annotated[Path | None, typer.Option(help="Group label per generated row.")] = None,
    metric_list: Metrics = None,
    interval: Interval = DEFAULTS.interval,
    bootstrap: Bootstrap = DEFAULTS.bootstrap,
    seed: Seed = DEFAULTS.seed,
    confidence: Annotated[float, typer.Option(help="Interval coverage.")] = 0.95,
    k: Annotated[int, typer.Option(help="Neighbourhood size for precision/recall/density/coverage.")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON here.")] = None,
    groups_real: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated name of --reference-groups.")] = None,
    groups_fake: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated name of --generated-groups.")] = None,
) -> None:
    """Distribution shift between reference and generated embeddings, overall and per group.

    KID (the all-pairs unbiased MMD^2) ranks groups without bias at any size; FD in the
    audit space (the top principal directions of half the reference rows, measured on the
    other half, with every group >= 10 rows per dimension) is its FD counterpart; the full-space FD is shown for comparison with the literature
    and flagged where its finite-sample bias rules it out. Precision, recall, density,
    coverage and Vendi are compared at a common size. Every number has an interval of
    what it estimates.
    """
    import jax
    import numpy as np

    from faceaudit import core
    from faceaudit.files.arrays import load_embeddings, load_labels, refuse_repeated_rows
    from faceaudit.files.io import check_output_file, write_json
    from faceaudit.tables.metrics import DistributionSettings, distribution_rows

    asked = metric_names(metric_list)
    with failing():
        reference_groups = renamed(groups_real, "--groups-real", reference_groups, "--reference-groups")
        generated_groups = renamed(groups_fake, "--groups-fake", generated_groups, "--generated-groups")
        settings = DistributionSettings(metrics=asked, confidence=confidence, k=k, interval=interval,
                                        bootstrap=bootstrap)
        check_output_file(json_out, "--json")
        for note in settings.no_effect():
            warn(note)
        x = np.asarray(core._validate.features(load_embeddings(reference), str(reference)))
        y = np.asarray(core._validate.features(load_embeddings(generated), str(generated)))
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{reference} has {x.shape[1]} columns but {generated} has {y.shape[1]}: "
                             "both must come from one encoder")
        refuse_repeated_rows({str(reference): x, str(generated): y})
        if (reference_groups is None) != (generated_groups is None):
            raise ValueError("pass --reference-groups and --generated-groups together")
        gx = load_labels(reference_groups, len(x), of=str(reference)) if reference_groups else np.full(len(x), ALL)
        gy = load_labels(generated_groups, len(y), of=str(generated)) if generated_groups else np.full(len(y), ALL)
        rows = distribution_rows(jax.random.key(seed), x, gx, y, gy, settings, overall=reference_groups is not None)
        print_rows(rows, "faceaudit metrics")
        if json_out is not None:
            write_json(json_out, {"reference": str(reference), "generated": str(generated), "n_reference": len(x),
                                  "n_generated": len(y), "dim": int(x.shape[1]), "seed": seed, "rows": rows})
            console.print(f"wrote {json_out}")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 0,
    per_group: Annotated[int, typer.Option(help="Real and generated faces per group.")] = 200,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON here.")] = None,
) -> None:
    """The audit's metrics table on a simulated world (8 groups, 32-d), in seconds.

    The simulated generator saw some groups far less in training; the per-group KID and
    coverage show which, with intervals, and the worst-versus-best difference says how sure.
    """
    import dataclasses

    import jax
    import numpy as np

    from faceaudit import core
    from faceaudit.files.io import check_output_file, write_json
    from faceaudit.tables.metrics import DistributionSettings, distribution_rows
    from faceaudit.tables.simulation import SimulationConfig, draw_audit

    with failing():
        check_output_file(json_out, "--json")
        config = dataclasses.replace(SimulationConfig(), reference_per_group=per_group, group_images=per_group,
                                     invented_identities=2, celebrity_identities=0, seeds_per_identity=2)
        audit = draw_audit(config, seed, with_truth=False)
        frame = audit.manifest
        ref = (frame.role == "reference").to_numpy()
        gen = ((frame.role == "generated") & (frame.identity_kind == "none")).to_numpy()
        settings = DistributionSettings(metrics=("mmd2", "fd_audit", "precision", "coverage", "vendi"))
        x = audit.embeddings.astype(np.float64)
        rows = distribution_rows(jax.random.key(seed), x[ref], frame.group[ref].to_numpy(), x[gen],
                                 frame.group[gen].to_numpy(), settings)
        print_rows(rows, "faceaudit demo (simulated)")
        head = [r for r in rows if r["metric"] == catalogue.HEADLINE and r["group"] != ALL]
        worst, best = max(head, key=lambda r: r["value"]), min(head, key=lambda r: r["value"])
        c = core.contrast(*(core.Estimate(r["group"], r["value"], r["se"], r["df"]) for r in (worst, best)))
        s = catalogue.info(catalogue.HEADLINE).scale
        console.print(f"worst-served group: {worst['group']} (KID x{s:g} {worst['value'] * s:.3g}); best: {best['group']} "
                      f"({best['value'] * s:.3g}); difference {c.difference * s:.3g} [{c.low * s:.3g}, {c.high * s:.3g}].")
        if json_out is not None:
            write_json(json_out, {"seed": seed, "rows": rows})
