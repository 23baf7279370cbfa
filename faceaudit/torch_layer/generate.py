"""Generate faces from an audit spec with any diffusers pipeline, and their attribute edits.

One *job* is one (generator, group, identity, seed[, edit]) image. A job's id is a hash of
those fields, so the job list is the same on every run. Jobs go through the pipeline in
*batches*: jobs that share an edit setting (no edit, or one SEGA phrase), ``batch_size``
at a time, as one call with a list of prompts and one seeded ``torch.Generator`` per image,
so each image depends on its own seed only (never on its neighbours in the batch). The cut
into batches follows from the spec alone, so an uninterrupted, a resumed and a Ray-sharded
run make the same calls and write the same bytes. A batch's images are written as
``images/<generator>/<content hash>.png`` (atomic), then its manifest rows as one Parquet
part under ``generate-parts/`` named by its jobs (atomic). A rerun skips jobs whose rows
exist; a killed run loses at most the batches in flight and duplicates nothing. At the end
the parts are consolidated into ``manifest.parquet``.

Floating point: a convolution's rounding depends on the batch's shape (and, on a CPU, on
the thread count), so a batched image can differ from a one-at-a-time render of the same
seed by one grey level in a few pixels; the tests bound it. Bytes are identical wherever
the batches, the device and (on a CPU) ``threads`` are.

Edits use semantic guidance (SEGA, ``SemanticStableDiffusionPipeline``) from the source
image's prompt and seed, so source and edit form a pair; ``edit_method = "none"`` skips
them. Counterfactual images (same identity slot and seed, another group) share the seed.
``--ray ADDRESS`` (or ``[ray]`` in the spec) hands the batches to a pool of Ray actors,
one pipeline each (``faceaudit.torch_layer.sharded``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from faceaudit.files.io import atomic_write_bytes, progress_bar, write_parquet
from faceaudit.files.manifest import MANIFEST, content_hash, group_label, write_manifest
from faceaudit.files.spec import AuditSpec, GeneratorSpec, RaySpec

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


def batches(jobs: list[dict], generator: GeneratorSpec) -> list[list[dict]]:
    """The jobs cut into pipeline calls: those that share an edit setting, in the order of the
    list, ``batch_size`` at a time. Fixed by the spec alone, like the job list."""
    by_edit: dict[str, list[dict]] = {}
    for job in jobs:
        by_edit.setdefault(job["edit"], []).append(job)
    size = generator.batch_size
    return [same[i:i + size] for same in by_edit.values() for i in range(0, len(same), size)]


def render_batch(pipe, generator: GeneratorSpec, jobs: list[dict]) -> list:
    """One pipeline call for jobs that share an edit setting; one image per job, in order."""
    import torch

    edits = {job["edit_phrase"] for job in jobs}
    if len(edits) != 1:
        raise ValueError(f"a batch shares one edit setting, got {sorted(edits)}")
    phrase = edits.pop()
    kwargs = dict(prompt=[job["prompt"] for job in jobs], num_inference_steps=generator.steps,
                  guidance_scale=generator.guidance, height=generator.resolution, width=generator.resolution,
                  generator=[torch.Generator(device="cpu").manual_seed(int(job["seed"])) for job in jobs])
    if phrase:  # SEGA applies every editing prompt to every image of the call: one phrase per batch
        kwargs.update(editing_prompt=[phrase], reverse_editing_direction=[False],
                      edit_guidance_scale=[generator.edit_guidance], edit_warmup_steps=[generator.edit_warmup],
                      edit_threshold=[generator.edit_threshold])
    images = pipe(**kwargs).images
    if len(images) != len(jobs):
        raise RuntimeError(f"generator {generator.name!r}: the pipeline returned {len(images)} images for "
                           f"{len(jobs)} prompts")
    return images


@contextlib.contextmanager
def torch_threads(threads: int):
    """``threads`` torch threads inside (0: leave them), restored after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class Renderer:
    """One generator's pipeline, loaded once; called with a batch of jobs, it renders them
    and writes their images and their part. Each Ray actor holds one."""

    generator: GeneratorSpec
    out: Path
    loader: Callable = load_pipeline

    def __post_init__(self):
        self.pipe = self.loader(self.generator)
        self.settings = json.dumps(dataclasses.asdict(self.generator), sort_keys=True)  # every row records them

    def __call__(self, jobs: list[dict]) -> int:
        start = time.perf_counter()
        images = render_batch(self.pipe, self.generator, jobs)
        seconds = (time.perf_counter() - start) / len(jobs)
        rows = []
        for job, image in zip(jobs, images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
            digest = content_hash(data)
            rel = Path("images") / self.generator.name / f"{digest}.png"
            atomic_write_bytes(self.out / rel, data)
            rows.append(dict(**job["attrs"], job_id=job["job_id"], image_id=digest, path=str(rel), role=job.get("role", "generated"),
                             generator=self.generator.name, identity=job["identity"],
                             identity_kind=job["identity_kind"], seed=int(job["seed"]), prompt=job["prompt"],
                             edit=job["edit"], edit_phrase=job["edit_phrase"], source_job=job.get("source_job", ""),
                             settings=self.settings, seconds=seconds))
        _write_part(self.out, rows)  # last: a part exists only when all its images do
        return len(rows)


def generate(spec: AuditSpec, out: str | Path, *, pipeline_loader: Callable = load_pipeline,
             progress: Callable = progress_bar, ray: RaySpec | None = None) -> pd.DataFrame:
    """Generate every job not yet done (here, or on the Ray pool ``ray`` names);
    consolidate and return the manifest."""
    out = Path(out).resolve()
    ray = ray or spec.ray
    for generator in spec.generators:
        done = set(_done(out)["job_id"])
        todo = [[job for job in batch if job["job_id"] not in done] for batch in batches(expand_jobs(spec, generator), generator)]
        todo = [batch for batch in todo if batch]
        if not todo:
            continue
        label = f"generate {generator.name}"
        if ray.enabled:
            from faceaudit.torch_layer.sharded import run_batches

            renderer = functools.partial(Renderer, generator, out, pipeline_loader)
            run_batches(ray, renderer, todo, use_gpu=generator.device.startswith("cuda"), threads=generator.threads,
                        progress=lambda done: progress(done, label, total=len(todo)))
            continue
        with torch_threads(generator.threads):
            render = Renderer(generator, out, pipeline_loader)
            for batch in progress(todo, label):
                render(batch)
    return consolidate(spec, out)


def _write_part(out: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    name = hashlib.sha256("".join(frame["job_id"]).encode()).hexdigest()[:16]
    write_parquet(out / PARTS / f"part-{name}.parquet", frame)


def consolidate(spec: AuditSpec, out: Path) -> pd.DataFrame:
    """All parts (plus reference rows) -> ``manifest.parquet`` (one row per image); an edit's
    ``source_id`` is its source job's image, wherever and whenever that was rendered."""
    rows = _done(out)
    image_of = dict(zip(rows["job_id"], rows["image_id"]))
    rows["source_id"] = [image_of.get(job, "") if job else "" for job in rows.pop("source_job")]
    keys = list(spec.groups)
    rows["group"] = group_label(rows, keys).where(rows["role"] != "neutral", "")  # a neutral prompt requests no group
    from faceaudit.files.images import reference_rows

    frames = [rows.drop(columns=["job_id"])]
    if spec.reference_manifest:
        frames.append(reference_rows(Path(spec.reference_images), Path(spec.reference_manifest), spec.groups))
    manifest = pd.concat(frames, ignore_index=True).drop_duplicates("image_id")
    write_manifest(out / MANIFEST, manifest, keys, source="generate", spec=spec.source)
    return manifest
