"""Generate faces from an audit spec with any diffusers pipeline, and their attribute edits.

One *job* is one (generator, group, identity, seed[, edit]) image. A job's id is a hash of
those fields, so the job list is the same on every run; an image is written as
``images/<generator>/<content hash>.png`` (atomic), then its manifest row goes into a
per-batch Parquet part under ``generate-parts/`` (atomic). A rerun skips jobs whose rows
exist; a killed run loses at most the batch in flight and duplicates nothing (an image
regenerated from the same seed has the same bytes, hence the same name). At the end the
parts are consolidated into ``manifest.parquet``.

Edits use semantic guidance (SEGA, ``SemanticStableDiffusionPipeline``) from the source
image's prompt and seed, so source and edit form a pair; ``edit_method = "none"`` skips
them. Counterfactual images (same identity slot and seed, another group) share the seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from faceaudit.files.io import atomic_write_bytes, progress_bar, write_parquet
from faceaudit.files.manifest import MANIFEST, content_hash, group_label, write_manifest
from faceaudit.files.spec import AuditSpec, GeneratorSpec

PARTS = "generate-parts"


def job_id(generator: str, attrs: dict, identity: str, seed: int, prompt: str, edit: str) -> str:
    key = json.dumps([generator, attrs, identity, seed, prompt, edit], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def expand_jobs(spec: AuditSpec, generator: GeneratorSpec) -> list[dict]:
    """Source jobs, each followed by its edits (an edit needs its source's image id)."""
    out = []
    for job in spec.jobs():
        source = dict(job, generator=generator.name, edit="", edit_phrase="")
        source["job_id"] = job_id(generator.name, job["attrs"], job["identity"], job["seed"], job["prompt"], "")
        out.append(source)
        if generator.edit_method == "none" or job["identity_kind"] == "none":
            continue
        for edit, phrase in spec.edits.items():
            e = dict(source, edit=edit, edit_phrase=phrase, source_job=source["job_id"])
            e["job_id"] = job_id(generator.name, job["attrs"], job["identity"], job["seed"], job["prompt"], edit)
            out.append(e)
    return out


def _done(out: Path) -> pd.DataFrame:
    parts = sorted((out / PARTS).glob("*.parquet"))
    if not parts:
        return pd.DataFrame(columns=["job_id"])
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True).drop_duplicates("job_id")


def load_pipeline(generator: GeneratorSpec):
    """``DiffusionPipeline``-style loading of a hub id or a local folder; SEGA when editing."""
    import diffusers
    import torch

    dtype = getattr(torch, generator.dtype)
    cls = diffusers.SemanticStableDiffusionPipeline if generator.edit_method == "sega" else diffusers.DiffusionPipeline
    if generator.edit_method == "ledits":
        cls = diffusers.LEditsPPPipelineStableDiffusion
    try:
        pipe = cls.from_pretrained(generator.model, dtype=dtype, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"generator {generator.name!r}: cannot load model {generator.model!r}: {err}") from None
    if generator.scheduler:
        scheduler_cls = getattr(diffusers, generator.scheduler, None)
        if scheduler_cls is None:
            raise ValueError(f"generator {generator.name!r}: unknown scheduler {generator.scheduler!r}")
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(generator.device)


def _render(pipe, generator: GeneratorSpec, job: dict):
    import torch

    rng = torch.Generator(device="cpu").manual_seed(int(job["seed"]))
    kwargs = dict(prompt=job["prompt"], num_inference_steps=generator.steps, guidance_scale=generator.guidance,
                  height=generator.resolution, width=generator.resolution, generator=rng)
    if job["edit"]:
        kwargs.update(editing_prompt=[job["edit_phrase"]], reverse_editing_direction=[False],
                      edit_guidance_scale=[generator.edit_guidance], edit_warmup_steps=[generator.edit_warmup],
                      edit_threshold=[generator.edit_threshold])
    return pipe(**kwargs).images[0]


def generate(spec: AuditSpec, out: str | Path, *, pipeline_loader: Callable = load_pipeline,
             progress: Callable = progress_bar) -> pd.DataFrame:
    """Generate every job not yet done; consolidate and return the manifest."""
    out = Path(out)
    for generator in spec.generators:
        jobs = expand_jobs(spec, generator)
        done = set(_done(out)["job_id"])
        todo = [j for j in jobs if j["job_id"] not in done]
        if not todo:
            continue
        pipe = pipeline_loader(generator)
        ids = {r.job_id: r.image_id for r in _done(out).itertuples()} if done else {}
        batch: list[dict] = []
        for job in progress(todo, f"generate {generator.name}"):
            start = time.perf_counter()
            image = _render(pipe, generator, job)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
            digest = content_hash(data)
            rel = Path("images") / generator.name / f"{digest}.png"
            atomic_write_bytes(out / rel, data)
            ids[job["job_id"]] = digest
            batch.append(dict(**job["attrs"], job_id=job["job_id"], image_id=digest, path=str(rel), role="generated",
                              generator=generator.name, identity=job["identity"], identity_kind=job["identity_kind"],
                              seed=int(job["seed"]), prompt=job["prompt"], edit=job["edit"], edit_phrase=job["edit_phrase"],
                              source_id=ids.get(job.get("source_job", ""), ""),
                              settings=json.dumps({k: v for k, v in vars(generator).items()}, sort_keys=True),
                              seconds=time.perf_counter() - start))
            if len(batch) >= generator.batch_size:
                _write_part(out, batch)
                batch = []
        if batch:
            _write_part(out, batch)
    return consolidate(spec, out)


def _write_part(out: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    name = hashlib.sha256("".join(frame["job_id"]).encode()).hexdigest()[:16]
    write_parquet(out / PARTS / f"part-{name}.parquet", frame)


def consolidate(spec: AuditSpec, out: Path) -> pd.DataFrame:
    """All parts (plus reference rows) -> ``manifest.parquet`` (one row per image)."""
    rows = _done(out)
    keys = list(spec.groups)
    rows["group"] = group_label(rows, keys)
    from faceaudit.files.images import reference_rows

    frames = [rows.drop(columns=["job_id"])]
    if spec.reference_manifest:
        frames.append(reference_rows(Path(spec.reference_images), Path(spec.reference_manifest), spec.groups))
    manifest = pd.concat(frames, ignore_index=True).drop_duplicates("image_id")
    write_manifest(out / MANIFEST, manifest, keys, source="generate", spec=spec.source)
    return manifest
