"""The whole audit in one command: (simulate | images) -> measure -> disparity -> explain -> report.

Each stage reads the previous stage's files in the output folder and writes its own
atomically; a stage whose output already exists is skipped (``force`` redoes it), so a
killed audit resumes where it stopped. Without a spec or images the audit runs on a
simulated world (``faceaudit simulate``), offline, in a few minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from faceaudit.io import atomic_write_bytes, atomic_write_text


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    out: Path = Path("faceaudit-out")
    seed: int = 0
    bootstrap: int = 100
    draws: int = 200  # posterior draws (and warm-up steps) per chain, disparity and explain
    chains: int = 2
    simulate_config: Path | None = None
    force: bool = False
    spec: Path | None = None  # a real audit: generate from this spec
    images: Path | None = None  # ... or audit images you already have
    manifest: Path | None = None
    training_size: float | None = None  # explain needs it for real audits


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    output: str
    describe: str
    run: Callable[[AuditSettings], None]


def _simulate(s: AuditSettings) -> None:
    from faceaudit.simulate import SimulationConfig, simulate

    config = SimulationConfig.from_toml(s.simulate_config) if s.simulate_config else SimulationConfig()
    simulate(s.out, seed=s.seed, config=config)


def _generate(s: AuditSettings) -> None:
    from faceaudit.spec import load_spec
    from faceaudit.torch_layer.generate import generate

    generate(load_spec(s.spec), s.out)


def _import_images(s: AuditSettings) -> None:
    from faceaudit.cli_stages import import_folder

    import_folder(s.images, s.manifest, s.out)


def _embed(s: AuditSettings) -> None:
    from faceaudit.spec import EncoderSpec, load_spec
    from faceaudit.torch_layer.embed import embed
    from faceaudit.torch_layer.encoders import build_encoder

    encoders = load_spec(s.spec).encoders if s.spec else (EncoderSpec("clip", "ViT-B-32", ""), EncoderSpec("dlib"))
    embed(s.out, [build_encoder(e) for e in encoders])


def _measure(s: AuditSettings) -> None:
    from faceaudit.measure_audit import MeasureSettings, measure_audit

    measure_audit(s.out, MeasureSettings(num_bootstrap=s.bootstrap, seed=s.seed))


def on_manifold(audit_dir: Path, k: int = 5) -> pd.DataFrame:
    """Per generated image: is it inside some reference image's k-NN ball (PRDC precision)?

    The per-image outcome behind the disparity model of the default audit: the share of a
    group's generated faces that look like real faces of that group.
    """
    from faceaudit.store import EmbeddingStore, read_manifest

    manifest, meta = read_manifest(audit_dir / "manifest.parquet")
    encoder = meta.get("encoders", {}).get("distribution")
    x = np.asarray(EmbeddingStore(audit_dir, encoder, meta.get("preprocessing", {}).get(encoder, "none"))
                   .load(manifest["image_id"])["embedding"].values, dtype=np.float64)
    ref = (manifest["role"] == "reference").to_numpy()
    gen = ((manifest["role"] == "generated") & (manifest["edit"] == "")).to_numpy()
    rows = []
    for group in sorted(manifest.loc[ref, "group"].unique()):
        r = x[ref & (manifest["group"] == group).to_numpy()]
        g_idx = np.flatnonzero(gen & (manifest["group"] == group).to_numpy())
        d_rr = ((r[:, None, :] - r[None, :, :]) ** 2).sum(-1)
        radius = np.sort(d_rr, axis=1)[:, k]  # k-th neighbour, self excluded (column 0)
        d_gr = ((x[g_idx][:, None, :] - r[None, :, :]) ** 2).sum(-1)
        inside = (d_gr <= radius[None, :]).any(axis=1)
        for i, flag in zip(g_idx, inside):
            row = manifest.iloc[i]
            rows.append(dict({c: row[c] for c in meta["group_columns"]}, image_id=row["image_id"],
                             generator=row["generator"], group=group, identity_kind=row["identity_kind"],
                             on_manifold="yes" if flag else "no"))
    frame = pd.DataFrame(rows)
    frame.attrs["group_columns"] = list(meta["group_columns"])
    return frame


def _disparity(s: AuditSettings) -> None:
    from faceaudit import disparity as dsp

    table = on_manifold(s.out)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(s.out / "image_metrics.parquet", buffer.getvalue())
    spec = dsp.DisparitySpec(outcome="on_manifold", group=tuple(table.attrs["group_columns"]), success="yes",
                             attribute=None, item=None,
                             num_warmup=s.draws, num_samples=s.draws, num_chains=s.chains, seed=s.seed)
    try:
        data = dsp.PreparedData(table, spec, source=str(s.out / "image_metrics.parquet"))
    except ValueError as err:
        # Nothing to model (e.g. every image on the manifold): a result, stated in the report.
        atomic_write_text(s.out / "disparity.json", json.dumps({"skipped": str(err)}, indent=2))
        return
    idata = dsp.fit(data)
    summary = dsp.summarise(idata, data)
    summary["diagnostics"] = dsp.diagnostics(idata, warn=False)
    summary["outcome"] = "share of generated faces on the real manifold of their group (k-NN precision, k = 5)"
    dsp.save_idata(idata, s.out / "posterior.nc")
    atomic_write_text(s.out / "disparity.json", json.dumps(summary, indent=2))


def _explain(s: AuditSettings) -> None:
    from faceaudit import explain as ex

    idata = ex.explain(s.out, ex.ExplainSettings(training_size=s.training_size, num_warmup=s.draws, num_samples=s.draws,
                                                 num_chains=s.chains, seed=s.seed))
    # What the report shows, computed here (reports only read stage files).
    labels, world, mix = ex.posterior_world(idata)
    curves = ex.share_curves(world, mix)
    curves["group"] = [labels[g] for g in curves["group"]]
    for name, frame in (("selection_summary", ex.summarise_selection(idata)), ("share_curves", curves)):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(s.out / f"{name}.parquet", buffer.getvalue())


def _report(s: AuditSettings) -> None:
    from faceaudit.report import write_report

    write_report(s.out, settings=dataclasses.asdict(s))


SIMULATE = Stage("simulate", "manifest.parquet", "draw a simulated world and its audit embeddings", _simulate)
GENERATE = Stage("generate", "manifest.parquet", "generate images and edits with diffusers", _generate)
IMPORT = Stage("import", "manifest.parquet", "read the image folder and its manifest", _import_images)
EMBED = Stage("embed", "embeddings", "embed images with open_clip and dlib", _embed)
STAGES = (
    Stage("measure", "metrics.parquet", "per-group metrics with bootstrap intervals", _measure),
    Stage("disparity", "disparity.json", "Bayesian disparity model of per-image on-manifold rates", _disparity),
    Stage("explain", "selection.nc", "fit the training-mix model to per-group FD and verification", _explain),
    Stage("report", "report.html", "write the HTML report", _report),
)


def stages(settings: AuditSettings) -> list[Stage]:
    """The stages of this audit: simulated, from a spec, or from the user's images."""
    if settings.spec is not None:
        first = [GENERATE, EMBED]
    elif settings.images is not None:
        first = [IMPORT, EMBED]
    else:
        first = [SIMULATE]
    rest = list(STAGES)
    real = settings.spec is not None or settings.images is not None
    if real and settings.training_size is None:
        rest = [st for st in rest if st.name != "explain"]  # the training size is not identifiable from FD
    return first + rest


def _done(settings: AuditSettings, stage: Stage) -> bool:
    if stage is EMBED:
        # Embedding is incremental by itself (content-hash keyed); let it check.
        return False
    return (settings.out / stage.output).is_file()


def plan(settings: AuditSettings) -> list[tuple[Stage, bool]]:
    """Each stage and whether it will run (its output is missing, or ``force``)."""
    return [(st, settings.force or not _done(settings, st)) for st in stages(settings)]


def check_inputs(settings: AuditSettings) -> None:
    """Fail early, naming the key, path or file, before any stage runs."""
    if settings.spec is not None:
        from faceaudit.spec import load_spec

        spec = load_spec(settings.spec)
        for g in spec.generators:
            local = Path(g.model)
            if (g.model.startswith((".", "/")) or local.exists()) and not (local / "model_index.json").is_file():
                raise FileNotFoundError(f"{settings.spec}: generator {g.name!r} model path {g.model} has no model_index.json")
    if (settings.images is None) != (settings.manifest is None):
        raise ValueError("--images and --manifest go together")
    if settings.images is not None and not settings.images.is_dir():
        raise FileNotFoundError(f"image folder not found: {settings.images}")


def run_audit(settings: AuditSettings, log: Callable[[str], None] = print) -> dict:
    """Run the stages that are not done; return the timings."""
    timings = {}
    if settings.simulate_config is not None and not Path(settings.simulate_config).is_file():
        raise FileNotFoundError(f"simulation config not found: {settings.simulate_config}")
    check_inputs(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    for stage, todo in plan(settings):
        if not todo:
            log(f"[skip] {stage.name}: {stage.output} exists")
            continue
        start = time.perf_counter()
        log(f"[run ] {stage.name}: {stage.describe}")
        stage.run(settings)
        timings[stage.name] = time.perf_counter() - start
        log(f"[done] {stage.name} in {timings[stage.name]:.0f} s -> {stage.output}")
    return timings
